/**
 * A fixed-bucket histogram of seconds, as Prometheus wants it: cumulative
 * bucket counts are computed at render time, so `observe()` is one short
 * loop and two additions, no allocation.
 */

/** Upper bounds (seconds) of `sse_relay_delivery_latency_seconds`: 0.5 ms to 5 s. */
export const LATENCY_BUCKETS: readonly number[] = Object.freeze([
  0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5,
]);

export class Histogram {
  /** counts[i]: observations in (bounds[i-1], bounds[i]]; the last slot is +Inf. Not cumulative. */
  readonly counts: number[];
  sum = 0;
  count = 0;

  constructor(readonly bounds: readonly number[] = LATENCY_BUCKETS) {
    this.counts = new Array<number>(bounds.length + 1).fill(0);
  }

  observe(value: number): void {
    if (!(value >= 0)) return; // NaN, negatives: a clock that went backwards is not a sample
    const bounds = this.bounds;
    let i = 0;
    while (i < bounds.length && value > bounds[i]!) i++;
    this.counts[i]!++;
    this.sum += value;
    this.count++;
  }

  /** Adds `other`'s observations to this one (same bounds). */
  add(other: Histogram): void {
    for (let i = 0; i < this.counts.length; i++) this.counts[i]! += other.counts[i] ?? 0;
    this.sum += other.sum;
    this.count += other.count;
  }

  /** Cumulative counts per bound, then +Inf (what the `_bucket` lines show). */
  cumulative(): number[] {
    const out: number[] = [];
    let running = 0;
    for (const n of this.counts) out.push((running += n));
    return out;
  }
}
