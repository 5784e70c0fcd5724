// Exponential moving average with the de-biasing TensorBoard and W&B apply, so the first
// points are not dragged toward zero by the EMA's zero start.

/** Smooth `values` with weight `w` in [0, 1); null/NaN entries stay null and do not advance the EMA. */
export function smooth(values, w) {
  if (!(w > 0)) return values.slice();
  const weight = Math.min(w, 0.999);
  let ema = 0;
  let n = 0;
  return values.map((x) => {
    if (x === null || x === undefined || !Number.isFinite(x)) return null;
    n += 1;
    ema = weight * ema + (1 - weight) * x;
    return ema / (1 - weight ** n);
  });
}
