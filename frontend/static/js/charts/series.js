// Turning metric points into the aligned columns uPlot draws: pick one metric against one x key,
// then join several such series on the union of their x values.

const finite = (v) => typeof v === "number" && Number.isFinite(v);

/** The (x, y) pairs of `key` against `xKey`, sorted by x; with `positive`, drop y ≤ 0 (log scale). */
export function extract(points, xKey, key, positive = false) {
  const pairs = [];
  for (const p of points) {
    const x = p[xKey];
    const y = p[key];
    if (finite(x) && finite(y) && (!positive || y > 0)) pairs.push([x, y]);
  }
  pairs.sort((a, b) => a[0] - b[0]); // stable: for equal x the later report stays last and wins in align()
  return { x: pairs.map((p) => p[0]), y: pairs.map((p) => p[1]) };
}

/** uPlot's data layout [xs, ys1, ys2…] from series {x, y}: the union of x values, null where a series has none. */
export function align(series) {
  const xs = [...new Set(series.flatMap((s) => s.x))].sort((a, b) => a - b);
  const where = new Map(xs.map((x, i) => [x, i]));
  const columns = series.map((s) => {
    const column = new Array(xs.length).fill(null);
    s.x.forEach((x, i) => { column[where.get(x)] = s.y[i]; });
    return column;
  });
  return [xs, ...columns];
}

/** Whether a column holds fewer than two finite values: too few for a line, so its points must be drawn. */
export function tooFewForALine(column) {
  let n = 0;
  for (const y of column) if (finite(y) && ++n > 1) return false;
  return true;
}
