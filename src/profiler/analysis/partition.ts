/**
 * Optimal contiguous partition of a node chain into K stages, the move a pipeline-imbalance
 * finding suggests: given each node's measured cost, place the K − 1 cuts so that the most
 * expensive stage is as cheap as possible. Stages may run on devices of different speed, so
 * stage s's time is `weight[s] × Σ cost` of its nodes.
 *
 * Exact dynamic programme over prefix sums:
 *   best[k][i] = min over j of max(best[k−1][j], weight[k] · (P[i] − P[j]))
 * with every stage holding at least one node. The inner loop runs j downwards and stops
 * once the last stage alone costs more than the best found (costs are non-negative, so it
 * only grows from there); a stage usually holds about N/K nodes, so this is close to O(N²)
 * rather than O(K·N²) on real models.
 */

export interface Partition {
  /** Stage s holds nodes `[bounds[s], bounds[s + 1])`; K + 1 entries, first 0, last N. */
  bounds: number[];
  /** Per stage: weight × Σ cost of its nodes. */
  stageCosts: number[];
  /** The largest stage cost: the quantity minimised. */
  maxCost: number;
}

/**
 * Splits `costs` (in chain order, each ≥ 0) into `k` contiguous non-empty stages minimising
 * the largest `weights[s] × Σ costs`; null when there are fewer nodes than stages.
 */
export function partitionContiguous(costs: ArrayLike<number>, k: number, weights?: ArrayLike<number>): Partition | null {
  const n = costs.length;
  if (k < 1 || n < k) return null;
  const w = (s: number): number => {
    const v = weights?.[s] ?? 1;
    return v > 0 && Number.isFinite(v) ? v : 1;
  };
  const P = new Float64Array(n + 1);
  for (let i = 0; i < n; i++) P[i + 1] = P[i] + Math.max(0, costs[i]);
  const stride = n + 1;
  const best = new Float64Array(k * stride).fill(Infinity);
  const arg = new Int32Array(k * stride).fill(-1);
  const w0 = w(0);
  for (let i = 1; i <= n; i++) best[i] = w0 * P[i];
  for (let s = 1; s < k; s++) {
    const ws = w(s);
    const prev = (s - 1) * stride;
    const cur = s * stride;
    for (let i = s + 1; i <= n - (k - 1 - s); i++) {
      let b = Infinity;
      let bj = -1;
      for (let j = i - 1; j >= s; j--) {
        const seg = ws * (P[i] - P[j]);
        if (seg >= b) break;
        const v = Math.max(best[prev + j], seg);
        if (v < b) {
          b = v;
          bj = j;
        }
      }
      best[cur + i] = b;
      arg[cur + i] = bj;
    }
  }
  const bounds = new Array<number>(k + 1);
  bounds[k] = n;
  for (let s = k - 1; s >= 1; s--) bounds[s] = arg[s * stride + bounds[s + 1]];
  bounds[0] = 0;
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
  /** Node names without a measured cost, counted as 0. */
  missingCosts: string[];
}

/**
 * Re-partitions the plan's stages for the same K using the calibration run's per-node costs.
 * Each stage's weight maps calibrated cost to this run's measured per-micro-batch compute of
 * that stage (so a slower device keeps its speed, and the calibration's units and batch size
 * drop out); at the current cuts the predicted stage times equal the measured ones.
 */
export function repartitionStages(
  stageNodes: string[][],
  nodeCostUs: Record<string, number>,
  measuredPerMicroUs: number[],
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
  const weights = valid.map((v) => (Number.isFinite(v) ? v : fallback));
  const part = partitionContiguous(costs, k, weights);
  if (!part) return null;
  const next = Array.from({ length: k }, (_, s) => nodes.slice(part.bounds[s], part.bounds[s + 1]));
  return {
    stageNodes: next,
    cuts: next.slice(0, -1).map((list) => list[list.length - 1]),
    stagePerMicroUs: part.stageCosts,
    weights,
    missingCosts,
  };
}
