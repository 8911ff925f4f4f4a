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
  const rand = seededRandom();
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

/** A deterministic uniform generator on [0, 1) (mulberry32), so the same samples give the same interval. */
function seededRandom(seed = 0x9e3779b9): () => number {
  return (): number => {
    seed = (seed + 0x6d2b79f5) | 0;
    let t = Math.imul(seed ^ (seed >>> 15), 1 | seed);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** True when `blocks` (steps per block, in order) cover both series exactly, in two blocks or more. */
export function pairedBlocks(a: ArrayLike<number>, b: ArrayLike<number>, blocks: readonly number[]): boolean {
  const total = blocks.reduce((x, y) => x + y, 0);
  return blocks.length >= 2 && blocks.every((k) => Number.isInteger(k) && k > 0) && total === a.length && total === b.length;
}

/**
 * The ratio of two series timed in paired blocks (block i of `a` ran next to block i of
 * `b`): the median over the blocks of a's block median over b's. Null when the blocks do not
 * cover both series (see {@link pairedBlocks}).
 *
 * Not the ratio of the two series' medians: where step times have two modes (PP-OCR cls,
 * 2 threads, 2-core VM: about 6 and 10 ms) the median of a whole series sits where the modes
 * meet, and a few more slow blocks on one side move it from one to the other. Two sessions
 * of the same model in 16 alternating blocks read 0.82–1.39 that way, 0.96–1.05 as the
 * median of block ratios (six processes).
 */
export function blockRatio(a: ArrayLike<number>, b: ArrayLike<number>, blocks: readonly number[]): number | null {
  if (!pairedBlocks(a, b, blocks)) return null;
  const ratios: number[] = [];
  let s0 = 0;
  for (const k of blocks) {
    const mb = median(Array.prototype.slice.call(b, s0, s0 + k) as number[]);
    if (mb > 0) ratios.push(median(Array.prototype.slice.call(a, s0, s0 + k) as number[]) / mb);
    s0 += k;
  }
  return ratios.length > 0 ? median(ratios) : null;
}

/**
 * The interval of {@link blockRatio}: for two series timed in paired blocks, block i of `a`
 * and block i of `b` ran next to each other (`blocks[i]` steps each, in order). Steps within
 * a block share the machine's state of that moment (which cores, what else ran), so they are
 * not independent samples: resampling steps alone gives an interval as narrow as 1/√steps
 * while the blocks differ by more. Each round draws the blocks with replacement (the same
 * draws for both, keeping the pairs), then steps within each drawn block, and takes the
 * median of the drawn blocks' ratios. Falls back to {@link ratioInterval} when the blocks do
 * not cover both series exactly or there is one.
 */
export function blockRatioInterval(a: ArrayLike<number>, b: ArrayLike<number>, blocks: readonly number[], level = 0.9, rounds = 1000): { lo: number; hi: number } {
  if (!pairedBlocks(a, b, blocks)) return ratioInterval(a, b, level, rounds);
  const rand = seededRandom();
  const starts = blocks.map((_, i) => blocks.slice(0, i).reduce((x, y) => x + y, 0));
  const most = Math.max(...blocks);
  const ra = new Float64Array(most);
  const rb = new Float64Array(most);
  const drawn = new Float64Array(blocks.length);
  const ratios = new Float64Array(rounds);
  for (let r = 0; r < rounds; r++) {
    let n = 0;
    for (let j = 0; j < blocks.length; j++) {
      const blk = Math.floor(rand() * blocks.length);
      const k = blocks[blk]!;
      const s0 = starts[blk]!;
      for (let i = 0; i < k; i++) {
        ra[i] = a[s0 + Math.floor(rand() * k)]!;
        rb[i] = b[s0 + Math.floor(rand() * k)]!;
      }
      const mb = median(rb.subarray(0, k));
      if (mb > 0) drawn[n++] = median(ra.subarray(0, k)) / mb;
    }
    ratios[r] = n > 0 ? median(drawn.subarray(0, n)) : NaN;
  }
  const ok = ratios.filter((x) => Number.isFinite(x));
  if (ok.length === 0) return { lo: NaN, hi: NaN };
  return { lo: quantile(ok, (1 - level) / 2), hi: quantile(ok, (1 + level) / 2) };
}
