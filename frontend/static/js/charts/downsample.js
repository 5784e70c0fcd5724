// Min/max bucket downsampling: a chart never draws more than about 1,500 points per series,
// yet a one-step loss spike survives because each bucket keeps both its lowest and highest point.

export const MAX_POINTS = 1500;

/** Indices to keep from `ys` so at most `max` remain: first, last, and each bucket's min and max. */
export function downsampleIndices(ys, max = MAX_POINTS) {
  const n = ys.length;
  if (n <= max) return [...Array(n).keys()];
  const buckets = Math.max(1, Math.floor((max - 2) / 2));
  const size = (n - 2) / buckets;
  const keep = [0];
  for (let b = 0; b < buckets; b += 1) {
    const start = 1 + Math.floor(b * size);
    const end = Math.min(n - 1, 1 + Math.floor((b + 1) * size));
    let lo = -1;
    let hi = -1;
    for (let i = start; i < end; i += 1) {
      const y = ys[i];
      if (y === null || !Number.isFinite(y)) continue;
      if (lo < 0 || y < ys[lo]) lo = i;
      if (hi < 0 || y > ys[hi]) hi = i;
    }
    // Keep the pair in x order so the drawn line goes through them as they happened.
    for (const i of lo <= hi ? [lo, hi] : [hi, lo]) if (i >= 0 && i !== keep.at(-1)) keep.push(i);
  }
  keep.push(n - 1);
  return keep;
}

/** `xs` and each of `columns` (arrays the same length as `xs`) cut to the indices that keep `ys`'s extremes. */
export function downsample(xs, ys, max = MAX_POINTS, columns = []) {
  const idx = downsampleIndices(ys, max);
  return { x: idx.map((i) => xs[i]), y: idx.map((i) => ys[i]), columns: columns.map((c) => idx.map((i) => c[i])) };
}
