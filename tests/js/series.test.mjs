// Extracting one metric against an x key and aligning series for uPlot.
import assert from "node:assert/strict";
import { test } from "node:test";

import { align, extract, tooFewForALine } from "../../frontend/static/js/charts/series.js";

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

test("a column with one finite value (an early or cancelled run) is too few for a line: its point is drawn", () => {
  const lr = align([extract([{ step: 1, learning_rate: 1e-4 }], "step", "learning_rate")])[1];
  assert.equal(tooFewForALine(lr), true);
  assert.equal(tooFewForALine([null, 2, null, NaN]), true);
  assert.equal(tooFewForALine([]), true);
  assert.equal(tooFewForALine([null, 2, null, 3]), false); // joined across the gap (spanGaps)
});
