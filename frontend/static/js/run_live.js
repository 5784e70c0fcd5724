// Live view of one run: its charts, progress and timeline, fed by the run's server-sent events
// (stored history first, then live points; the server closes the stream once the run has ended,
// and the browser's EventSource resumes with Last-Event-ID by itself after a dropped connection).

import { ChartPanel } from "./charts/chart_panel.js";
import { cssVar } from "./charts/colors.js";
import { metric } from "./charts/format.js";
import { RunClock } from "./run_clock.js";
import { RunPoints } from "./run_points.js";

const ENDED = new Set(["succeeded", "failed", "cancelled"]);
// Long enough to coalesce a burst of history into one draw, short enough to keep live latency low.
const DRAW_EVERY_MS = 50;
// New steps move the ETA: the server measures it again at most this often (the clock ticks on by itself meanwhile).
const CLOCK_EVERY_MS = 2000;
const lossEl = document.getElementById("loss-chart");
const points = new RunPoints(); // by seq; a resumed run's repeated steps replace the ones they supersede
let drawTimer = null;
let timelineTimer = null;
let clockTimer = null;
let status = lossEl.dataset.status;

function panels() {
  const one = (key, label, color, extra = {}) => [{ source: "run", key, label, color, smooth: true, ...extra }];
  const make = (id, series, height = 220) =>
    new ChartPanel(document.getElementById(id), series, { sync: "run", height });
  return [
    make("loss-chart", [...one("loss", "train loss", cssVar("--chart-loss")),
      ...one("eval_loss", "eval loss", cssVar("--chart-eval"), { smooth: false, dots: true })], 320),
    make("lr-chart", one("learning_rate", "learning rate", cssVar("--chart-lr"))),
    make("grad-norm-chart", one("grad_norm", "grad norm", cssVar("--chart-grad"))),
    // The rate over each logging interval, with the attempt's average since it began dashed beside it.
    make("throughput-chart", [...one("tokens_per_second", "tokens/s", cssVar("--chart-speed")),
      ...one("tokens_per_second_avg", "average tokens/s", cssVar("--muted"), { smooth: false, dash: [6, 4] })]),
    // The peak a run is sized by (GPU tensors on a GPU, else peak RSS); the host's resident memory dashed beside
    // it; on a GPU what the caching allocator reserved at its peak and what the whole device has in use.
    make("memory-chart", [...one("memory_mb", "peak MB", cssVar("--chart-memory")),
      ...one("host_rss_mb", "host RSS MB", cssVar("--muted"), { smooth: false, dash: [6, 4] }),
      ...one("gpu_reserved_mb", "GPU reserved MB", cssVar("--chart-grad"), { smooth: false }),
      ...one("gpu_used_mb", "GPU in use MB", cssVar("--chart-lr"), { smooth: false, dash: [2, 3] })]),
  ];
}

const charts = panels();

function draw() {
  drawTimer = null;
  const list = [...points.values()];
  // The newest point's trainer timestamp, for benchmarks/sse_latency.py (set before data-points changes).
  const newest = list.reduce((at, p) => Math.max(at, p.logged_at ?? 0), 0);
  if (newest) lossEl.dataset.lastLoggedAt = String(newest);
  for (const chart of charts) chart.setSource("run", list);
  showThroughput();
}

function showThroughput() {
  const figure = document.getElementById("throughput-chart-figure");
  const last = points.latest("tokens_per_second");
  const average = points.latest("tokens_per_second_avg");
  if (!figure || last === null) return;
  figure.textContent = `last interval ${metric(last)} tokens/s`
    + (average === null ? "" : ` · average ${metric(average)} tokens/s`);
}

function scheduleDraw() {
  // History arrives as a burst of events: draw once per burst, and at most a few times a second live.
  drawTimer ??= setTimeout(draw, DRAW_EVERY_MS);
}

function onMetric(point) {
  if (typeof point.step !== "number" || typeof point.seq !== "number") return;
  // The first point means the trainer has reported its device and versions: show them.
  if (points.size === 0 && status === "running") refresh("detailsUrl", "run-details");
  points.add(point);
  if (typeof point.loss === "number") {
    const last = document.getElementById("run-last-loss");
    if (last) last.textContent = point.loss.toFixed(4);
  }
  // An evaluation adds a timeline entry; coalesce a burst of them into one fetch.
  if (typeof point.eval_loss === "number") timelineTimer ??= setTimeout(refreshTimeline, 1000);
  else if (status === "running") clockTimer ??= setTimeout(refreshClock, CLOCK_EVERY_MS);
  scheduleDraw();
}

function showProgress(event) {
  const bar = document.getElementById("run-progress");
  const label = document.getElementById("run-step");
  const current = event.current_step ?? 0;
  if (bar && event.total_steps) {
    bar.max = event.total_steps;
    bar.value = current;
  }
  if (label) label.textContent = `step ${current}${event.total_steps ? ` / ${event.total_steps}` : ""}`;
}

async function refresh(urlKey, targetId) {
  // The server renders these parts (outcome, advice, download button, timeline) the same way as on a reload.
  const response = await fetch(lossEl.dataset[urlKey], { headers: { Accept: "text/html" } });
  if (response.redirected) {
    // Signed out meanwhile (logout elsewhere, expired session): show the login page, not a login form in a card.
    window.location.assign(response.url);
    return;
  }
  const target = document.getElementById(targetId);
  if (response.ok && target) target.innerHTML = await response.text();
}

function refreshTimeline() {
  timelineTimer = null;
  refresh("timelineUrl", "run-timeline");
}

function refreshClock() {
  clockTimer = null;
  refresh("clockUrl", "run-clock");
}

function onStatus(event, source) {
  showProgress(event);
  if (ENDED.has(event.status)) {
    source.close();
    const empty = lossEl.querySelector(".chart-empty");
    if (empty) empty.textContent = "No training step was logged.";
  }
  if (event.status !== status) {
    status = event.status;
    lossEl.dataset.status = status;
    refresh("summaryUrl", "run-summary");
    refresh("detailsUrl", "run-details");
    refreshTimeline();
  }
}

function listen() {
  const source = new EventSource(lossEl.dataset.eventsUrl);
  source.addEventListener("metric", (e) => onMetric(JSON.parse(e.data)));
  source.addEventListener("status", (e) => onStatus(JSON.parse(e.data), source));
}

listen();
new RunClock(document.getElementById("run-summary")).start();
