// The run page's clock (runs/_clock.html): the elapsed time ticks every second while the run runs, and the ETA
// counts down between the moments the server measures it again (run_live.js fetches the clock as new steps
// arrive). Only the server computes the ETA, as it does for the runs list: this module only lets time pass.

import { words } from "./charts/format.js";

/** The clock `dt` seconds after the server measured it: elapsed grows while running, the ETA shrinks to zero. */
export function clockAt({ running, elapsed, eta }, dt) {
  if (!running) return { running, elapsed, eta };
  return { running, elapsed: elapsed + dt, eta: eta === null ? null : Math.max(0, eta - dt) };
}

/** What the server measured, from the clock element's data attributes. */
export function readClock(dataset) {
  const number = (v) => (v === undefined || v === "" ? null : Number(v));
  return { running: dataset.running === "true", elapsed: number(dataset.elapsedS), eta: number(dataset.etaS) };
}

export class RunClock {
  /** `holder` is the element whose content the server's clock fragment replaces. */
  constructor(holder) {
    this.holder = holder;
    this.el = null;
  }

  start() {
    this.tick();
    setInterval(() => this.tick(), 1000);
  }

  tick() {
    const el = this.holder?.querySelector("[data-clock]");
    if (!el) return;
    if (el !== this.el) {
      // A fresh fragment from the server: its numbers are the new starting point.
      this.el = el;
      this.measured = readClock(el.dataset);
      this.since = performance.now();
    }
    if (!this.measured.running || this.measured.elapsed === null) return;
    const now = clockAt(this.measured, (performance.now() - this.since) / 1000);
    el.querySelector("#run-elapsed").textContent = words(now.elapsed);
    const eta = el.querySelector("#run-eta");
    if (eta && now.eta !== null) eta.textContent = words(now.eta);
  }
}
