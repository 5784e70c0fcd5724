// Live view of one run: the loss chart and progress, fed by the run's server-sent events
// (stored history first, then live points; the server closes the stream once the run has ended).

const ENDED = new Set(["succeeded", "failed", "cancelled"]);
const chartEl = document.getElementById("loss-chart");
const byStep = new Map(); // step -> {loss, evalLoss}; keyed so a replayed point never draws twice
let plot = null;
let drawTimer = null;
let status = chartEl.dataset.status;

function cssVar(name) {
  return getComputedStyle(document.documentElement).getPropertyValue(name).trim();
}

function chartData() {
  const steps = [...byStep.keys()].sort((a, b) => a - b);
  const loss = steps.map((s) => byStep.get(s).loss ?? null);
  const evalLoss = steps.map((s) => byStep.get(s).evalLoss ?? null);
  return [steps, loss, evalLoss];
}

function makePlot(data) {
  const axis = { stroke: cssVar("--muted"), grid: { stroke: cssVar("--chart-grid"), width: 1 },
                 ticks: { stroke: cssVar("--chart-grid") } };
  const opts = {
    width: chartEl.clientWidth, height: 320,
    scales: { x: { time: false } },
    // Steps are whole numbers: tick only on whole steps.
    axes: [{ ...axis, label: "step", incrs: [1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10000] },
           { ...axis, label: "loss" }],
    series: [
      { label: "step" },
      { label: "train loss", stroke: cssVar("--chart-loss"), width: 2, spanGaps: true },
      // Eval points are sparse (every eval_steps): join them rather than leave dots.
      { label: "eval loss", stroke: cssVar("--chart-eval"), width: 2, spanGaps: true,
        points: { show: true, size: 6 } },
    ],
  };
  return new uPlot(opts, data, chartEl);
}

function draw() {
  drawTimer = null;
  const data = chartData();
  if (plot) plot.setData(data);
  else plot = makePlot(data);
  document.getElementById("chart-empty")?.remove();
  chartEl.dataset.points = String(data[0].length);
}

function scheduleDraw() {
  // History arrives as a burst of events: draw once per burst, not once per point.
  drawTimer ??= setTimeout(draw, 50);
}

function onMetric(point) {
  if (typeof point.step !== "number") return;
  const entry = byStep.get(point.step) ?? {};
  if (typeof point.loss === "number") entry.loss = point.loss;
  if (typeof point.eval_loss === "number") entry.evalLoss = point.eval_loss;
  if (entry.loss === undefined && entry.evalLoss === undefined) return;
  byStep.set(point.step, entry);
  if (typeof point.loss === "number") {
    const last = document.getElementById("run-last-loss");
    if (last) last.textContent = point.loss.toFixed(4);
  }
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

async function refreshSummary() {
  // The server renders the outcome (final losses, error, download button) the same way as on a reload.
  const response = await fetch(chartEl.dataset.summaryUrl, { headers: { Accept: "text/html" } });
  if (response.ok) document.getElementById("run-summary").innerHTML = await response.text();
}

function onStatus(event, source) {
  showProgress(event);
  if (ENDED.has(event.status)) {
    source.close();
    const empty = document.getElementById("chart-empty");
    if (empty) empty.textContent = "No training step was logged.";
  }
  if (event.status !== status) {
    status = event.status;
    chartEl.dataset.status = status;
    refreshSummary();
  }
}

function listen() {
  const source = new EventSource(chartEl.dataset.eventsUrl);
  source.addEventListener("metric", (e) => onMetric(JSON.parse(e.data)));
  source.addEventListener("status", (e) => onStatus(JSON.parse(e.data), source));
  window.addEventListener("resize", () => plot?.setSize({ width: chartEl.clientWidth, height: 320 }));
}

listen();
