// Exports of a chart: its data as CSV (pure, tested under node) and its canvas as PNG (browser only).

/** RFC 4180 text: a header row, then one row per entry; null and undefined become empty cells. */
export function toCsv(header, rows) {
  const cell = (v) => {
    if (v === null || v === undefined) return "";
    const text = String(v);
    return /[",\r\n]/.test(text) ? `"${text.replaceAll('"', '""')}"` : text;
  };
  return [header, ...rows].map((row) => row.map(cell).join(",")).join("\r\n") + "\r\n";
}

/** The rows of aligned uPlot data [xs, ys1…] (one row per x). */
export function columnsToRows(data) {
  return data[0].map((_, i) => data.map((column) => column[i]));
}

/** Have the browser save `blob` under `name`. */
export function save(blob, name) {
  const url = URL.createObjectURL(blob);
  const link = Object.assign(document.createElement("a"), { href: url, download: name });
  document.body.append(link);
  link.click();
  link.remove();
  setTimeout(() => URL.revokeObjectURL(url), 1000);
}

/** A PNG of a uPlot chart on the page's surface colour, with its title and series names above the plot. */
export function chartPng(u, title, background, text) {
  const plot = u.ctx.canvas;
  const ratio = plot.width / plot.clientWidth || 1;
  const visible = u.series.slice(1).filter((s) => s.show !== false);
  const head = Math.round((28 + 18 * Math.ceil(visible.length / 3)) * ratio);
  const canvas = Object.assign(document.createElement("canvas"), { width: plot.width, height: plot.height + head });
  const ctx = canvas.getContext("2d");
  ctx.fillStyle = background;
  ctx.fillRect(0, 0, canvas.width, canvas.height);
  ctx.fillStyle = text;
  ctx.font = `600 ${14 * ratio}px system-ui, sans-serif`;
  ctx.fillText(title, 8 * ratio, 18 * ratio);
  ctx.font = `${12 * ratio}px system-ui, sans-serif`;
  visible.forEach((s, i) => {
    const x = (8 + (i % 3) * 220) * ratio;
    const y = (38 + Math.floor(i / 3) * 18) * ratio;
    ctx.fillStyle = typeof s.stroke === "function" ? s.stroke(u, i + 1) : s.stroke;
    ctx.fillRect(x, y - 8 * ratio, 14 * ratio, 3 * ratio);
    ctx.fillStyle = text;
    ctx.fillText(s.label, x + 20 * ratio, y - 3 * ratio);
  });
  ctx.drawImage(plot, 0, head);
  return new Promise((resolve) => canvas.toBlob(resolve, "image/png"));
}
