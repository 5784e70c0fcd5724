// The compare page: every picked run's train and eval loss overlaid, each run in its palette colour.

import { ChartPanel } from "./chart_panel.js";
import { cssVar } from "./colors.js";

const runs = JSON.parse(document.getElementById("compare-data").textContent);

function seriesFor(key, extra) {
  return runs.map((run) => ({
    source: String(run.id), key, label: `#${run.id} ${run.name}`, color: cssVar(`--series-${run.color}`),
    smooth: true, ...extra,
  }));
}

const charts = [
  new ChartPanel(document.getElementById("compare-chart"), seriesFor("loss"), { sync: "compare", height: 340 }),
  // Eval points are sparse: dots make each evaluation visible.
  new ChartPanel(document.getElementById("compare-eval-chart"), seriesFor("eval_loss", { dots: true }),
    { sync: "compare", height: 280 }),
];

for (const chart of charts) {
  for (const run of runs) chart.sources[String(run.id)] = run.points;
  chart.draw();
}
