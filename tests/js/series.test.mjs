// Extracting one metric against an x key and aligning series for uPlot.
import assert from "node:assert/strict";
import { test } from "node:test";

import { align, extract } from "../../frontend/static/js/charts/series.js";

const points = [
  { step: 2, loss: 1.5, tokens_seen: 200 },
  { step: 1, loss: 2.0, tokens_seen: 100 },
  { step: 2, eval_loss: 1.7, tokens_seen: 200 },
  { step: 3, loss: 0, tokens_seen: 300 },
];

test("extract picks the metric, sorts by x, and drops non-positive values for log scale", () => {
  assert.deepEqual(extract(points, "step", "loss"), { x: [1, 2, 3], y: [2.0, 1.5, 0] });
  assert.deepEqual(extract(points, "tokens_seen", "loss", true), { x: [100, 200], y: [2.0, 1.5] });
  assert.deepEqual(extract(points, "elapsed_s", "loss"), { x: [], y: [] });
});

test("align joins on the union of x with nulls where a series has no point", () => {
  const data = align([extract(points, "step", "loss"), extract(points, "step", "eval_loss")]);
  assert.deepEqual(data, [[1, 2, 3], [2.0, 1.5, 0], [null, 1.7, null]]);
});
