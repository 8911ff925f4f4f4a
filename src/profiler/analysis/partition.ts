/**
 * Optimal contiguous partition of a chain of items into K stages, the move a pipeline-imbalance
 * finding suggests and the search behind `parallax plan`: place the K − 1 cuts so that the most
 * expensive stage is as cheap as possible. This module holds the one dynamic programme; the
 * runtime's graph partitioner calls it with its own stage costs (compute plus bytes sent).
 *
 * Exact dynamic programme:
 *   best[j][e] = min over s of max(best[j−1][s], cost(j − 1, s, e))
 * with every stage holding at least one item. The inner loop runs s downwards and stops once
 * the last stage alone costs more than the best found (a stage's cost only grows as it takes
 * in more items); a stage usually holds about N/K items, so this is close to O(N²) rather than
 * O(K·N²) on real models.
 */

/**
 * Cost of stage `stage` (0-based) holding items `[start, end)`. For a fixed stage and end it
 * must not decrease as `start` moves down (true of sums of non-negative costs).
 */
export type StageCost = (stage: number, start: number, end: number) => number;

/**
 * The contiguous partition of `n` items into `k` non-empty stages with the least bottleneck
 * (largest stage cost); null when there are fewer items than stages. `bounds` has k + 1
 * entries, first 0, last n; among optimal partitions it takes the latest cuts.
 *
 * Costs are asked for one end at a time, in increasing order of `end` (all costs of one end
 * before any of the next), so a caller may prepare one end's column of costs at a time.
 */
export function minBottleneckPartition(n: number, k: number, cost: StageCost): { bounds: number[]; bottleneck: number } | null {
  if (k < 1 || n < k) return null;
  const stride = n + 1;
  // best[j·stride + e]: least bottleneck of items [0, e) in j stages; arg: where the last one starts.
  const best = new Float64Array((k + 1) * stride).fill(Infinity);
  const arg = new Int32Array((k + 1) * stride).fill(-1);
  for (let e = 1; e <= n; e++) {
    // j stages can end at e only if the other k − j stages fit after it.
    for (let j = Math.max(1, k - (n - e)); j <= Math.min(k, e); j++) {
      if (j === 1) {
        best[stride + e] = cost(0, 0, e);
        arg[stride + e] = 0;
        continue;
      }
      const prev = (j - 1) * stride;
      let b = Infinity;
      let bs = -1;
      for (let s = e - 1; s >= j - 1; s--) {
        const seg = cost(j - 1, s, e);
        if (seg >= b) break;
        const v = Math.max(best[prev + s], seg);
        if (v < b) {
          b = v;
          bs = s;
        }
      }
      best[j * stride + e] = b;
      arg[j * stride + e] = bs;
    }
  }
  const bounds = new Array<number>(k + 1);
  bounds[k] = n;
  for (let j = k; j >= 2; j--) bounds[j - 1] = arg[j * stride + bounds[j]];
  bounds[0] = 0;
  return { bounds, bottleneck: best[k * stride + n] };
}

export interface ContiguousPartition {
  /** Stage s holds nodes `[bounds[s], bounds[s + 1])`; K + 1 entries, first 0, last N. */
  bounds: number[];
  /** Per stage: weight × Σ cost of its nodes. */
  stageCosts: number[];
  /** The largest stage cost: the quantity minimised. */
  maxCost: number;
}

/**
 * Splits `costs` (in chain order, each ≥ 0) into `k` contiguous non-empty stages minimising
 * the largest `weights[s] × Σ costs` (stages may run on devices of different speed); null
 * when there are fewer nodes than stages.
 */
export function partitionContiguous(costs: ArrayLike<number>, k: number, weights?: ArrayLike<number>): ContiguousPartition | null {
  const n = costs.length;
  if (k < 1 || n < k) return null;
  const w = (s: number): number => {
    const v = weights?.[s] ?? 1;
    return v > 0 && Number.isFinite(v) ? v : 1;
  };
  const P = new Float64Array(n + 1);
  for (let i = 0; i < n; i++) P[i + 1] = P[i] + Math.max(0, costs[i]);
  const W = Array.from({ length: k }, (_, s) => w(s));
  const { bounds } = minBottleneckPartition(n, k, (s, start, end) => W[s] * (P[end] - P[start]))!;
  const stageCosts = Array.from({ length: k }, (_, s) => w(s) * (P[bounds[s + 1]] - P[bounds[s]]));
  return { bounds, stageCosts, maxCost: Math.max(...stageCosts) };
}

export interface Repartition {
  /** The new stages' node names. */
  stageNodes: string[][];
  /** Node names after which the graph is cut (the last node of every stage but the last). */
  cuts: string[];
  /** Predicted compute per micro-batch of each new stage, in the run's units (µs). */
  stagePerMicroUs: number[];
  /** Per stage: µs of this run per µs of calibrated node cost (device speed × units). */
  weights: number[];
  /**
   * Per stage: µs per micro-batch whatever its nodes (devices of one kind: what a stage's
   * session costs beyond its nodes' calibrated kernels — the run itself, layout reorders at
   * its edges); 0 where each stage keeps its own weight.
   */
  fixedUs: number[];
  /** Node names without a measured cost, counted as 0. */
  missingCosts: string[];
  /**
   * Per stage at the current cuts, what the model gives (µs per micro-batch): the measured
   * costs where the model reproduces them; with a pooled line ({@link repartitionStages}) the
   * stages' differences beyond their nodes are not in it, so a prediction compares the new
   * cuts against this, not against the measured stages.
   */
  currentPerMicroUs: number[];
  /** How the stages' costs were modelled: per-stage weights, one fitted line, or one pooled rate. */
  fit: 'per-stage' | 'line' | 'pooled';
  /** Largest over smallest of the stages' measured µs per calibrated µs (1 when they agree). */
  ratioSpread: number;
}

/**
 * Re-partitions the plan's stages for the same K using the calibration run's per-node costs.
 * Each stage's weight maps calibrated cost to this run's measured per-micro-batch compute of
 * that stage (so a slower device keeps its speed, and the calibration's units and batch size
 * drop out); at the current cuts the predicted stage times equal the measured ones. With
 * `sameDevices` (every stage on a device of one kind and thread count) the stages share one
 * line instead, fixed + per unit ({@link commonLine}), where it is physical, else one pooled
 * rate (Σ measured / Σ calibrated): what they differ by beyond their nodes is then noise.
 */
export function repartitionStages(
  stageNodes: string[][],
  nodeCostUs: Record<string, number>,
  measuredPerMicroUs: number[],
  opts: { sameDevices?: boolean } = {},
): Repartition | null {
  const k = stageNodes.length;
  if (k < 2 || measuredPerMicroUs.length !== k) return null;
  const nodes = stageNodes.flat();
  const missingCosts: string[] = [];
  const costs = nodes.map((nm) => {
    const c = nodeCostUs[nm];
    if (c === undefined) missingCosts.push(nm);
    return c ?? 0;
  });
  let offset = 0;
  const raw = stageNodes.map((list) => {
    let sum = 0;
    for (let i = 0; i < list.length; i++) sum += costs[offset + i];
    offset += list.length;
    return sum;
  });
  const valid = raw.map((r, s) => (r > 0 && measuredPerMicroUs[s] > 0 ? measuredPerMicroUs[s] / r : NaN));
  const known = valid.filter((v) => Number.isFinite(v));
  if (known.length === 0) return null;
  const fallback = known.reduce((a, b) => a + b, 0) / known.length;
  let weights = valid.map((v) => (Number.isFinite(v) ? v : fallback));
  let fixedUs = weights.map(() => 0);
  let fit: Repartition['fit'] = 'per-stage';
  // Devices of one kind and thread count: one line where it is physical, else one pooled
  // rate. Their stages differ beyond what their nodes cost only through the machine's state
  // of the moment (which core a worker ran on, what else ran there); that is noise the next
  // run does not keep, and read as device speed it is advice that measures slower.
  const line = opts.sameDevices ? commonLine(raw, measuredPerMicroUs) : null;
  const pooled = opts.sameDevices && !line ? pooledRate(raw, measuredPerMicroUs) : null;
  const common = line ?? (pooled === null ? null : { fixedUs: 0, perUnit: pooled });
  if (common) {
    weights = weights.map(() => common.perUnit);
    fixedUs = fixedUs.map(() => common.fixedUs);
    fit = line ? 'line' : 'pooled';
  }
  const currentPerMicroUs = raw.map((r, s) => (fit === 'pooled' ? fixedUs[s]! + weights[s]! * r : measuredPerMicroUs[s]!));
  const part = partitionContiguous(costs, k, weights);
  if (!part) return null;
  const next = Array.from({ length: k }, (_, s) => nodes.slice(part.bounds[s], part.bounds[s + 1]));
  return {
    stageNodes: next,
    cuts: next.slice(0, -1).map((list) => list[list.length - 1]),
    stagePerMicroUs: part.stageCosts.map((c, s) => c + fixedUs[s]),
    weights,
    fixedUs,
    missingCosts,
    currentPerMicroUs,
    fit,
    ratioSpread: Math.max(...known) / Math.min(...known),
  };
}

/** Σ measured / Σ calibrated over the stages with both; null when none has both. */
function pooledRate(raw: number[], measured: number[]): number | null {
  let x = 0;
  let y = 0;
  raw.forEach((r, s) => {
    if (r > 0 && measured[s]! > 0) {
      x += r;
      y += measured[s]!;
    }
  });
  return x > 0 ? y / x : null;
}

/**
 * Stages on devices of one kind: measured = fixed + perUnit · calibrated, fitted over the
 * stages by least squares. Per-stage weights would price nodes moved between two such
 * devices at the receiving stage's ratio, which holds whatever a stage costs beyond its
 * nodes (a session run, layout reorders at its edges): a light first stage then looks like
 * a slow device and the advice moves too little (openWakeWord's embedding model: stages
 * measured 1.8× and 0.8× their calibration, and the move the weights allowed saved 5 %
 * where the balanced cut saved 22 %). Null when the fit is not physical (a negative fixed
 * part or per-unit cost, or a fixed part above a stage's time) or fewer than two stages
 * have a cost: the per-stage weights stay.
 */
function commonLine(raw: number[], measured: number[]): { fixedUs: number; perUnit: number } | null {
  const pts = raw.flatMap((x, s) => (x > 0 && measured[s]! > 0 ? [{ x, y: measured[s]! }] : []));
  if (pts.length < 2) return null;
  const n = pts.length;
  const mx = pts.reduce((a, p) => a + p.x, 0) / n;
  const my = pts.reduce((a, p) => a + p.y, 0) / n;
  const sxx = pts.reduce((a, p) => a + (p.x - mx) ** 2, 0);
  if (!(sxx > 0)) return null;
  const perUnit = pts.reduce((a, p) => a + (p.x - mx) * (p.y - my), 0) / sxx;
  const fixedUs = my - perUnit * mx;
  if (!(perUnit > 0) || !(fixedUs >= 0) || fixedUs >= Math.min(...pts.map((p) => p.y))) return null;
  return { fixedUs, perUnit };
}

/**
 * The stage compute per micro-batch {@link repartitionStages} would predict for given cuts
 * (node names in the chain of `stageNodes`, K − 1 of them, in order): the same per-stage
 * weights, the stages the cuts make. Null when a cut is not in the chain, the cuts are out of
 * order or leave a stage empty, or nothing was measured.
 */
export function stageCostsAtCuts(
  stageNodes: string[][],
  nodeCostUs: Record<string, number>,
  measuredPerMicroUs: number[],
  cuts: string[],
  opts: { sameDevices?: boolean } = {},
): number[] | null {
  const re = repartitionStages(stageNodes, nodeCostUs, measuredPerMicroUs, opts);
  return re ? costsAtCuts(re, stageNodes, nodeCostUs, cuts) : null;
}

/**
 * {@link stageCostsAtCuts} for a re-partition already made of the same stages: its weights
 * and fixed parts priced at the stages `cuts` make; null for cuts that do not make them.
 */
export function costsAtCuts(re: Pick<Repartition, 'weights' | 'fixedUs'>, stageNodes: string[][], nodeCostUs: Record<string, number>, cuts: string[]): number[] | null {
  const k = stageNodes.length;
  if (cuts.length !== k - 1) return null;
  const nodes = stageNodes.flat();
  const bounds = [0];
  for (const c of cuts) {
    const at = nodes.indexOf(c);
    if (at < 0 || at + 1 <= bounds[bounds.length - 1]) return null;
    bounds.push(at + 1);
  }
  if (bounds[bounds.length - 1] >= nodes.length) return null;
  bounds.push(nodes.length);
  return Array.from({ length: k }, (_, s) => {
    let sum = 0;
    for (let i = bounds[s]; i < bounds[s + 1]; i++) sum += nodeCostUs[nodes[i]] ?? 0;
    return re.fixedUs[s]! + re.weights[s]! * sum;
  });
}
