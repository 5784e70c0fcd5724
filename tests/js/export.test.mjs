// CSV building for chart export.
import assert from "node:assert/strict";
import { test } from "node:test";

import { columnsToRows, toCsv } from "../../frontend/static/js/charts/export.js";

test("CSV has a header, CRLF rows, empty cells for null, and quotes where needed", () => {
  const csv = toCsv(["step", "run \"a\", train"], [[1, 0.5], [2, null]]);
  assert.equal(csv, 'step,"run ""a"", train"\r\n1,0.5\r\n2,\r\n');
});

test("columnsToRows turns uPlot columns into rows", () => {
  assert.deepEqual(columnsToRows([[1, 2], [0.5, null], [3, 4]]), [[1, 0.5, 3], [2, null, 4]]);
});

import { paletteIndex, withAlpha } from "../../frontend/static/js/charts/colors.js";
import { duration, metric, tokens } from "../../frontend/static/js/charts/format.js";

test("colours: hex to rgba, palette slot fixed by run id", () => {
  assert.equal(withAlpha("#4f46e5", 0.25), "rgba(79, 70, 229, 0.25)");
  assert.equal(withAlpha("red", 0.5), "red");
  assert.equal(paletteIndex(9), 1);
  assert.equal(paletteIndex(16), 0);
});

test("formats: metric, tokens, duration", () => {
  assert.equal(metric(0.000213), "2.13e-4");
  assert.equal(metric(1.234567), "1.235");
  assert.equal(metric(null), "—");
  assert.equal(tokens(12_500), "12.5k");
  assert.equal(tokens(3_210_000), "3.21M");
  assert.equal(duration(65), "1:05");
  assert.equal(duration(3725), "1:02:05");
});
