// Min/max downsampling: bounded output, endpoints kept, spikes survive.
import assert from "node:assert/strict";
import { test } from "node:test";

import { MAX_POINTS, downsample, downsampleIndices } from "../../frontend/static/js/charts/downsample.js";

const range = (n) => [...Array(n).keys()];

test("short series are kept whole", () => {
  assert.deepEqual(downsampleIndices([1, 2, 3]), [0, 1, 2]);
});

test("100k points come down to at most ~1,500 and keep the spike and the dip", () => {
  const n = 100_000;
  const ys = range(n).map((i) => 2 + 0.1 * Math.sin(i / 50));
  ys[61_234] = 50; // one diverging step
  ys[77_777] = -3;
  const { x, y } = downsample(range(n), ys);
  assert.ok(x.length <= MAX_POINTS, `${x.length} points`);
  assert.ok(x.length > MAX_POINTS * 0.9);
  assert.ok(x.includes(61_234) && y.includes(50));
  assert.ok(x.includes(77_777) && y.includes(-3));
  assert.equal(x[0], 0);
  assert.equal(x.at(-1), n - 1);
  assert.deepEqual([...x].sort((a, b) => a - b), x, "x stays in order");
});

test("other columns follow the kept indices", () => {
  const ys = range(5000).map((i) => i % 7);
  const { x, columns } = downsample(range(5000), ys, 100, [range(5000).map((i) => i * 10)]);
  assert.ok(x.length <= 100);
  assert.deepEqual(columns[0], x.map((i) => i * 10));
});

test("null values are skipped when picking extremes", () => {
  const ys = range(4000).map((i) => (i % 2 ? null : 1));
  const idx = downsampleIndices(ys, 50);
  assert.ok(idx.length <= 50);
  for (const i of idx.slice(1, -1)) assert.equal(ys[i], 1);
});
