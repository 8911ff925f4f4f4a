/** Small statistics helpers shared by the analyses and the benchmarks. */

/** Quantile with linear interpolation between order statistics (numpy's default). */
export function quantile(values: ArrayLike<number>, q: number): number {
  const n = values.length;
  if (n === 0) return NaN;
  const sorted = Float64Array.from(values).sort();
  const pos = (n - 1) * Math.min(1, Math.max(0, q));
  const lo = Math.floor(pos);
  const hi = Math.ceil(pos);
  return sorted[lo] + (sorted[hi] - sorted[lo]) * (pos - lo);
}

export function median(values: ArrayLike<number>): number {
  return quantile(values, 0.5);
}

export function sum(values: ArrayLike<number>): number {
  let s = 0;
  for (let i = 0; i < values.length; i++) s += values[i];
  return s;
}

export function mean(values: ArrayLike<number>): number {
  return values.length === 0 ? NaN : sum(values) / values.length;
}

/** Median, p10 and p90 of a sample. */
export function spread(values: ArrayLike<number>): { median: number; p10: number; p90: number } {
  return { median: quantile(values, 0.5), p10: quantile(values, 0.1), p90: quantile(values, 0.9) };
}

/**
 * Total length of the union of intervals [start, start+dur), clipped to [lo, hi).
 * `idx` lists the intervals to use; they need not be sorted.
 */
export function unionLength(start: ArrayLike<number>, dur: ArrayLike<number>, idx: number[], lo = -Infinity, hi = Infinity): number {
  const iv = idx
    .map((i) => [Math.max(lo, start[i]), Math.min(hi, start[i] + dur[i])] as const)
    .filter(([a, b]) => b > a)
    .sort((x, y) => x[0] - y[0]);
  let total = 0;
  let curA = -Infinity;
  let curB = -Infinity;
  for (const [a, b] of iv) {
    if (a > curB) {
      if (curB > curA) total += curB - curA;
      curA = a;
      curB = b;
    } else if (b > curB) {
      curB = b;
    }
  }
  if (curB > curA) total += curB - curA;
  return total;
}

/**
 * A bootstrap interval of median(a) / median(b): resamples both with replacement
 * (deterministic seed, so the same samples give the same interval) and returns the
 * `(1 − level)/2` and `(1 + level)/2` quantiles of the ratio.
 */
export function ratioInterval(a: ArrayLike<number>, b: ArrayLike<number>, level = 0.9, rounds = 1000): { lo: number; hi: number } {
  if (a.length === 0 || b.length === 0) return { lo: NaN, hi: NaN };
  let seed = 0x9e3779b9;
  const rand = (): number => {
    seed = (seed + 0x6d2b79f5) | 0;
    let t = Math.imul(seed ^ (seed >>> 15), 1 | seed);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  const pick = (x: ArrayLike<number>, out: Float64Array): Float64Array => {
    for (let i = 0; i < out.length; i++) out[i] = x[Math.floor(rand() * x.length)];
    return out;
  };
  const ra = new Float64Array(a.length);
  const rb = new Float64Array(b.length);
  const ratios = new Float64Array(rounds);
  for (let r = 0; r < rounds; r++) ratios[r] = median(pick(a, ra)) / median(pick(b, rb));
  return { lo: quantile(ratios, (1 - level) / 2), hi: quantile(ratios, (1 + level) / 2) };
}
