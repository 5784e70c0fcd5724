// Number formats for axes, legends and CSV-free display.

/** A metric value with four significant digits, small learning rates in exponent form. */
export function metric(v) {
  if (v === null || v === undefined || !Number.isFinite(v)) return "—";
  if (v !== 0 && Math.abs(v) < 1e-3) return v.toExponential(2);
  return String(Number(v.toPrecision(4)));
}

/** A token count as 950, 12.5k, 3.2M. */
export function tokens(v) {
  if (Math.abs(v) >= 1e6) return `${Number((v / 1e6).toPrecision(3))}M`;
  if (Math.abs(v) >= 1e3) return `${Number((v / 1e3).toPrecision(3))}k`;
  return String(Math.round(v));
}

/** Seconds as m:ss or h:mm:ss. */
export function duration(s) {
  const total = Math.round(s);
  const h = Math.floor(total / 3600);
  const m = Math.floor((total % 3600) / 60);
  const sec = String(total % 60).padStart(2, "0");
  return h ? `${h}:${String(m).padStart(2, "0")}:${sec}` : `${m}:${sec}`;
}

/** Seconds in words read at a glance, as the pages' server side writes them (run_figures.duration): 45s, 3m 20s,
 *  2h 05m; a dash when unknown. */
export function words(s) {
  if (s === null || s === undefined || !Number.isFinite(s)) return "—";
  const total = Math.round(s);
  const h = Math.floor(total / 3600);
  const m = Math.floor((total % 3600) / 60);
  const sec = total % 60;
  if (h) return `${h}h ${String(m).padStart(2, "0")}m`;
  return m ? `${m}m ${String(sec).padStart(2, "0")}s` : `${sec}s`;
}
