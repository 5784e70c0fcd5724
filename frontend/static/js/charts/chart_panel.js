// One chart with its controls (smoothing, log scale, x axis, zoom reset, CSV and PNG export), drawn by uPlot.
// The controls are server-rendered beside the chart (runs/_chart_panel.html); this module wires them.

import { cssVar, withAlpha } from "./colors.js";
import { MAX_POINTS, downsample } from "./downsample.js";
import { columnsToRows, chartPng, save, toCsv } from "./export.js";
import { duration, metric, tokens } from "./format.js";
import { align, extract, tooFewForALine } from "./series.js";
import { smooth } from "./smoothing.js";

const X_AXES = {
  step: { key: "step", label: "step", format: (v) => String(v) },
  tokens: { key: "tokens_seen", label: "tokens seen", format: tokens },
  time: { key: "elapsed_s", label: "wall time", format: duration },
};
// Whole steps only: a step axis never shows 2.5.
const STEP_INCRS = [1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10000, 20000, 50000, 100000];

export class ChartPanel {
  /** `el` is the chart container; `series` lists {source, key, label, color, smooth, dots, dash}. */
  constructor(el, series, { sync = null, height = 260 } = {}) {
    this.el = el;
    this.defs = series;
    this.sync = sync;
    this.height = height;
    this.sources = {};
    this.plot = null;
    this.shape = "";
    this.control = (name) => document.getElementById(`${el.id}-${name}`);
    this.setZoomed(false);
    this.wire();
  }

  wire() {
    const redraw = () => this.draw();
    const slider = this.control("smoothing");
    slider?.addEventListener("input", () => {
      const out = this.control("smoothing-value");
      if (out) out.textContent = Number(slider.value).toFixed(2);
      redraw();
    });
    this.control("log")?.addEventListener("change", redraw);
    this.control("x")?.addEventListener("change", () => { this.setZoomed(false); redraw(); });
    this.control("reset")?.addEventListener("click", () => this.resetZoom());
    this.control("csv")?.addEventListener("click", () => this.exportCsv());
    this.control("png")?.addEventListener("click", () => this.exportPng());
    window.addEventListener("resize", () => this.plot?.setSize({ width: this.el.clientWidth, height: this.height }));
  }

  /** Replace the points of one source (a run) and redraw. */
  setSource(name, points) {
    this.sources[name] = points;
    this.draw();
  }

  settings() {
    return {
      weight: Number(this.control("smoothing")?.value ?? 0),
      log: Boolean(this.control("log")?.checked),
      x: X_AXES[this.control("x")?.value] ?? X_AXES.step,
    };
  }

  /** Full-resolution series for the current settings: one {def, x, y, smoothed} per definition. */
  build({ weight, log, x }) {
    return this.defs.map((def) => {
      const raw = extract(this.sources[def.source] ?? [], x.key, def.key, log);
      const smoothed = def.smooth && weight > 0 ? smooth(raw.y, weight) : null;
      return { def, ...raw, smoothed };
    });
  }

  draw() {
    const settings = this.settings();
    const built = this.build(settings);
    const lines = [];
    const uSeries = [{ label: settings.x.label, value: (u, v) => (v == null ? "—" : settings.x.format(v)) }];
    for (const s of built) {
      const cut = downsample(s.x, s.y, MAX_POINTS, s.smoothed ? [s.smoothed] : []);
      if (s.smoothed) {
        // The raw line stays, faint, so smoothing never hides what actually happened.
        lines.push({ x: cut.x, y: cut.y }, { x: cut.x, y: cut.columns[0] });
        uSeries.push(this.line(s.def, { raw: true }), this.line(s.def));
      } else {
        lines.push({ x: cut.x, y: cut.y });
        uSeries.push(this.line(s.def));
      }
    }
    const data = align(lines);
    this.data = data;
    this.el.dataset.points = String(data[0].length);
    this.el.dataset.rawPoints = String(built.reduce((n, s) => n + s.x.length, 0));
    this.el.dataset.series = String(built.filter((s) => s.x.length).length);
    if (!data[0].length) return;
    this.el.querySelector(".chart-empty")?.remove();
    const shape = JSON.stringify([settings.log, settings.x.key, uSeries.map((s) => s.label)]);
    if (this.plot && shape === this.shape) {
      this.plot.setData(data, !this.zoomed);
      return;
    }
    this.plot?.destroy();
    this.shape = shape;
    this.setZoomed(false);
    this.plot = new uPlot(this.options(settings, uSeries), data, this.el);
    // Raw lines keep their hover values in the legend, but quieter than the smoothed ones.
    const rows = this.plot.root.querySelectorAll(".u-legend .u-series");
    uSeries.forEach((s, i) => { if (s.raw) rows[i]?.classList.add("raw"); });
    this.plot.over.addEventListener("dblclick", () => this.setZoomed(false));
  }

  line(def, { raw = false } = {}) {
    return {
      label: raw ? `${def.label} · raw` : def.label,
      raw,
      stroke: raw ? withAlpha(def.color, 0.35) : def.color,
      width: raw ? 1 : 2,
      dash: def.dash,
      spanGaps: true, // sparse series (eval every N steps) are joined, not left as dots
      // Asked at every draw: a lone point (an early or a cancelled run) has no line, so it shows as a dot.
      points: { show: (u, i) => !raw && (Boolean(def.dots) || tooFewForALine(u.data[i])), size: 5, fill: def.color },
      value: (u, v) => metric(v),
    };
  }

  options(settings, series) {
    const grid = cssVar("--chart-grid");
    const axis = { stroke: cssVar("--muted"), grid: { stroke: grid, width: 1 }, ticks: { stroke: grid } };
    const xAxis = { ...axis, label: settings.x.label, values: (u, ticks) => ticks.map(settings.x.format) };
    if (settings.x.key === "step") xAxis.incrs = STEP_INCRS;
    return {
      width: this.el.clientWidth, height: this.height, series,
      scales: { x: { time: false }, y: settings.log ? { distr: 3, log: 10 } : {} },
      axes: [xAxis, { ...axis, size: 64, values: (u, ticks) => ticks.map(metric) }],
      cursor: { drag: { x: true, y: false }, ...(this.sync ? { sync: { key: this.sync } } : {}) },
      legend: { live: true },
      hooks: { setSelect: [(u) => { if (u.select.width > 0) this.setZoomed(true); }] },
    };
  }

  /** Remember whether the user zoomed (live points then keep the zoom), and show it as data-zoomed. */
  setZoomed(zoomed) {
    this.zoomed = zoomed;
    this.el.dataset.zoomed = String(zoomed);
  }

  resetZoom() {
    this.setZoomed(false);
    if (this.plot && this.data) this.plot.setData(this.data, true);
  }

  exportName(ext) {
    return `${this.el.dataset.exportName ?? "chart"}-${this.el.id.replace(/-chart$/, "")}.${ext}`;
  }

  exportCsv() {
    // Export the full-resolution points, not the downsampled ones the chart draws.
    const settings = this.settings();
    const columns = [];
    const header = [settings.x.key];
    for (const s of this.build(settings)) {
      columns.push({ x: s.x, y: s.y });
      header.push(s.def.label);
      if (s.smoothed) {
        columns.push({ x: s.x, y: s.smoothed });
        header.push(`${s.def.label} (smoothed ${settings.weight})`);
      }
    }
    const csv = toCsv(header, columnsToRows(align(columns)));
    save(new Blob([csv], { type: "text/csv" }), this.exportName("csv"));
  }

  async exportPng() {
    if (!this.plot) return;
    const title = this.el.dataset.title ?? this.el.id;
    const blob = await chartPng(this.plot, title, cssVar("--surface"), cssVar("--text"));
    save(blob, this.exportName("png"));
  }
}
