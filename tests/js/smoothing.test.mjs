// De-biased EMA: the first point is itself, the rest follow TensorBoard's formula.
import assert from "node:assert/strict";
import { test } from "node:test";

import { smooth } from "../../frontend/static/js/charts/smoothing.js";

test("weight 0 returns the values unchanged", () => {
  assert.deepEqual(smooth([3, 1, 2], 0), [3, 1, 2]);
});

test("the first smoothed point equals the first value (de-biased, not pulled to 0)", () => {
  assert.equal(smooth([5, 5, 5], 0.9)[0], 5);
  for (const v of smooth([5, 5, 5], 0.9)) assert.ok(Math.abs(v - 5) < 1e-12);
});

test("matches ema = w*ema + (1-w)*x divided by 1 - w^n", () => {
  const w = 0.6;
  const xs = [4, 2, 8, 1];
  let ema = 0;
  const expected = xs.map((x, i) => { ema = w * ema + (1 - w) * x; return ema / (1 - w ** (i + 1)); });
  smooth(xs, w).forEach((v, i) => assert.ok(Math.abs(v - expected[i]) < 1e-12));
});

test("gaps stay gaps and do not count toward n", () => {
  const out = smooth([2, null, 2], 0.5);
  assert.equal(out[1], null);
  assert.equal(out[2], 2);
});
