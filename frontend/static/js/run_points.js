// The points of one run's live charts. Keyed by seq, so a point replayed after a reconnect never draws twice.
// A run resumed from a checkpoint reports the steps after it again, under new seqs: a newer point replaces the
// older ones it supersedes (any at a later step, and the same kind at its own step), so the chart shows each
// step once, as the stored history does after a reload.

const kind = (point) => (typeof point.eval_loss === "number" ? "eval" : "train");

export class RunPoints {
  constructor() {
    this.bySeq = new Map();
    this.top = new Map(); // kind -> highest step seen
  }

  get size() {
    return this.bySeq.size;
  }

  values() {
    return this.bySeq.values();
  }

  /** The newest finite value of `key`: from the point of the highest step, the latest report among equals. */
  latest(key) {
    let best = null;
    for (const p of this.bySeq.values()) {
      if (typeof p[key] !== "number" || !Number.isFinite(p[key])) continue;
      if (!best || p.step > best.step || (p.step === best.step && p.seq > best.seq)) best = p;
    }
    return best ? best[key] : null;
  }

  add(point) {
    const k = kind(point);
    const highest = Math.max(-Infinity, ...this.top.values());
    const rewinds = point.step < highest || point.step <= (this.top.get(k) ?? -Infinity);
    if (rewinds && !this.bySeq.has(point.seq)) this.dropSupersededBy(point, k);
    this.bySeq.set(point.seq, point);
    this.top.set(k, Math.max(this.top.get(k) ?? -Infinity, point.step));
  }

  dropSupersededBy(point, k) {
    for (const [seq, old] of this.bySeq) {
      if (seq < point.seq && (old.step > point.step || (old.step === point.step && kind(old) === k))) {
        this.bySeq.delete(seq);
      }
    }
    this.top.clear();
    for (const old of this.bySeq.values()) {
      this.top.set(kind(old), Math.max(this.top.get(kind(old)) ?? -Infinity, old.step));
    }
  }
}
