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
