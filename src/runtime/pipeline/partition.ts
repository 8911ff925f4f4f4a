/**
 * Pipeline partitioning: cutting a model's graph into K contiguous stages.
 *
 * A stage is a contiguous range of positions in {@link Partition.order}, which is
 * `ir.topoOrder` with one change: every Constant node is moved to just before its first
 * consumer and glued to it (no cut may fall right after a Constant). Stage models then copy
 * a Constant node into every other stage that reads its output, exactly as initializers are
 * copied into every stage that uses them, so a cut never carries a constant or a weight.
 *
 * Tensors that skip stages (a residual produced in stage 0 and read in stage 2) are sent
 * directly from the producing stage to every consuming stage; they are not passed through
 * the stages in between. That keeps each stage model's inputs to what it reads, and makes
 * the bytes reported per stage the bytes actually moved. Graph inputs are fed by the runner
 * to every stage that reads them (`from: 'graph'`), and graph outputs are collected from
 * whichever stage produces them (`to` includes `'graph'`).
 *
 * Nodes with subgraphs (If, Loop, Scan) are single nodes of the main graph, so they always
 * stay whole inside one stage; the outer-scope tensors their bodies read
 * (`IRNode.implicitInputs`) count as inputs of the stage like ordinary inputs.
 *
 * Balancing is exact: a dynamic programme over the cut positions minimises the bottleneck
 * (the largest stage cost), then, among the partitions within that bottleneck, the bytes the
 * cuts carry, then the sum of squared stage costs (so the non-bottleneck stages are as even
 * as they can be). A stage's cost is its nodes' cost plus `commCostUsPerByte` times the bytes
 * it sends; for the optimisation a tensor counts once per producing stage, however many
 * later stages read it (the exact count depends on cuts not yet chosen), while the bytes
 * reported per stage afterwards ({@link PipelineStage.cutBytesOut}) count every destination.
 */
import { UserError } from '../../common/errors';
import { byteSize, isWeightType } from '../onnx/dtypes';
import { estimateCosts, type IRNode, type ModelIR } from '../onnx/model';
import { minBottleneckPartition } from '../../profiler/analysis/partition';

/** Where per-node costs came from: timed runs, or the FLOP/byte estimate. */
export type CostSource = 'measured' | 'estimated';

/** A tensor a stage reads from outside itself. */
export interface StageInput {
  name: string;
  /** The stage producing it, or `'graph'` for a model input the runner feeds. */
  from: number | 'graph';
}

/** A tensor a stage produces for someone outside itself. */
export interface StageOutput {
  name: string;
  /** Later stages reading it (ascending), then `'graph'` if it is a model output. */
  to: Array<number | 'graph'>;
  /** Its size, in the units of {@link PipelineStage.cutBytesOut}; null where unknown. */
  bytes: number | null;
}

/** One pipeline stage. */
export interface PipelineStage {
  index: number;
  /** First position of the stage in {@link Partition.order}. */
  start: number;
  /** One past the last position of the stage in {@link Partition.order}. */
  end: number;
  /** Node indices (into `ir.nodes`) owned by this stage, in execution order. */
  nodeIndices: number[];
  /**
   * For display: the stage's first node that is not a Constant, and its last node (the one
   * the cut goes after).
   */
  nodeNames: { first: string; last: string };
  /**
   * Constant nodes owned by other stages whose outputs this stage reads. Stage models carry
   * a copy of each, so their outputs never cross a cut.
   */
  constantCopies: number[];
  /** Initializers this stage reads (each stage model carries its own copy). */
  initializers: string[];
  /** Cost of the stage's nodes, µs. */
  computeUs: number;
  /** `commCostUsPerByte` × the bytes the stage sends to later stages (each tensor once), µs. */
  sendUs: number;
  /** `computeUs + sendUs`: what balancing equalises. */
  costUs: number;
  /** Weight elements the stage holds (initializers and Constant tensors of weight types, copies included). */
  parameters: number;
  /** Bytes of those weights. */
  parameterBytes: number;
  /** Tensors entering the stage, in order of first use. */
  inputs: StageInput[];
  /** Tensors leaving the stage, in production order. */
  outputs: StageOutput[];
  /**
   * Bytes this stage sends to other stages per step, summed over destinations (a tensor read
   * by two later stages is sent twice). Per batch row when the model has a symbolic batch
   * dimension ({@link Partition.batchDim}); null where a sent tensor's shape is unknown.
   */
  cutBytesOut: number | null;
}

/** A pipeline partition of a model. */
export interface Partition {
  /** SHA-256 of the model the partition was made for (`ir.sha256`). */
  modelSha256: string;
  /** Node indices in pipeline order: the topological order with Constants moved next to their consumers. */
  order: number[];
  stages: PipelineStage[];
  /** Names of the nodes the cuts go after (K − 1 of them): `--cuts` that reproduce this partition. */
  cuts: string[];
  costSource: CostSource;
  /** The symbolic batch dimension that byte counts are per row of, or null (bytes per step at the declared sizes). */
  batchDim: string | null;
  /** Largest stage cost, µs. */
  bottleneckUs: number;
  /** Max / mean stage cost (1 is perfect balance). */
  balance: number;
}

/** Options for {@link partitionPipeline} and {@link partitionFromCuts}. */
export interface PartitionOptions {
  /**
   * Bytes sent when a tensor crosses a cut. Default: its size per batch row from shape
   * propagation ({@link defaultCutBytes}); tensors of unknown size count 0 when balancing.
   */
  cutBytes?: (tensor: string) => number | null;
  /** Cost of sending one byte, µs (0 by default: cuts are chosen by compute alone, bytes break ties). */
  commCostUsPerByte?: number;
  /** Label for the costs given (default `'measured'`). */
  costSource?: CostSource;
  /** Values for symbolic dimensions other than the batch, for byte counts (e.g. image height and width). */
  dimValues?: Record<string, number>;
  /**
   * Relative slack on the bottleneck (default 0): partitions whose every stage costs at most
   * (1 + slack) × the optimal bottleneck count as tied, and the one whose cuts carry fewest
   * bytes wins. Measured costs are noisy; a little slack buys cheaper cuts.
   */
  slack?: number;
}

/**
 * Cuts `ir` into `k` contiguous stages balanced by cost.
 * @param nodeCostUs cost of every node, indexed like `ir.nodes` (measured, or from {@link estimateNodeCostsUs}).
 * @throws UserError when k is not a whole number from 1 to the number of places a stage can start.
 */
export function partitionPipeline(ir: ModelIR, nodeCostUs: Float64Array, k: number, opts: PartitionOptions = {}): Partition {
  const ctx = prepare(ir, nodeCostUs, opts);
  const units = ctx.units;
  if (!Number.isInteger(k) || k < 1) {
    throw new UserError(`--stages must be a whole number of at least 1, got ${k}`);
  }
  if (k > units.count) {
    throw new UserError(
      `${ir.path}: cannot cut ${ir.nodes.length} nodes into ${k} stages: only ${units.count} nodes can start a stage (Constant nodes ride with their consumers); use --stages ${units.count} or fewer`,
    );
  }
  const boundaries = optimalBoundaries(ctx, k, opts.slack ?? 0);
  return assemble(ctx, boundaries.map((u) => (u === 0 ? 0 : units.end[u - 1])));
}

/**
 * Builds the partition given by explicit cuts (`--cuts nodeA,nodeB`): a cut goes right after
 * each named node, in pipeline order. Costs default to the estimate ({@link estimateNodeCostsUs}).
 * @throws UserError for an unknown name (with close names suggested), a name given twice,
 *   cuts out of topological order, a cut after the last node or after a Constant node.
 */
export function partitionFromCuts(ir: ModelIR, cuts: string[], opts: PartitionOptions & { nodeCostUs?: Float64Array } = {}): Partition {
  const costs = opts.nodeCostUs ?? estimateNodeCostsUs(ir, opts.dimValues);
  const ctx = prepare(ir, costs, { ...opts, costSource: opts.costSource ?? (opts.nodeCostUs ? 'measured' : 'estimated') });
  const byName = new Map<string, number>();
  for (const n of ir.nodes) byName.set(n.name, n.index);
  const positions: number[] = [];
  const seen = new Set<string>();
  let prev: string | null = null;
  for (const raw of cuts) {
    const name = raw.trim();
    if (!name) throw new UserError('--cuts has an empty node name; give node names separated by commas, e.g. --cuts nodeA,nodeB');
    const idx = byName.get(name);
    if (idx === undefined) {
      const close = closeNames(name, ir.nodes.map((n) => n.name));
      throw new UserError(`--cuts: no node named "${name}" in ${ir.path}${close.length > 0 ? `; did you mean ${close.map((c) => `"${c}"`).join(', ')}?` : '; run `parallax plan` to list stage boundaries'}`);
    }
    if (seen.has(name)) throw new UserError(`--cuts names "${name}" twice, which would leave an empty stage; give each cut once`);
    seen.add(name);
    const pos = ctx.posOf[idx];
    const node = ir.nodes[idx];
    if (ctx.glued[pos]) {
      throw new UserError(`--cuts: "${name}" is a Constant node, which Parallax copies into every stage that reads it; cut after a computing node instead (e.g. "${ir.nodes[ctx.order[nextUnglued(ctx, pos)]].name}")`);
    }
    if (pos === ctx.order.length - 1) {
      throw new UserError(`--cuts: "${name}" is the last node, so a cut after it does not separate the graph (the last stage would be empty); cut after an earlier node`);
    }
    if (prev !== null && pos < positions[positions.length - 1]) {
      const sorted = [...positions, pos].sort((a, b) => a - b).map((p) => ir.nodes[ctx.order[p]].name);
      throw new UserError(`--cuts must follow the graph's topological order, but "${name}" runs before "${prev}"; list the cuts as ${sorted.join(',')}`);
    }
    positions.push(pos);
    prev = node.name;
  }
  if (cuts.length + 1 > ctx.units.count) {
    throw new UserError(`--cuts: ${cuts.length} cuts make ${cuts.length + 1} stages but only ${ctx.units.count} nodes can start a stage`);
  }
  return assemble(ctx, [0, ...positions.map((p) => p + 1), ctx.order.length]);
}

/**
 * Where a cut meant to go after `name` can go: `name` itself when {@link partitionFromCuts}
 * accepts a cut there, else the nearest earlier node that takes one. A Constant is placed just
 * before its first consumer and glued to it, so stepping back over Constants moves only
 * Constants (copied into every stage that reads them) and keeps every computing node in its
 * stage. Null for an unknown name or when no earlier node takes a cut.
 */
export function nearestCutAtOrBefore(ir: ModelIR, name: string): string | null {
  const node = ir.nodes.find((n) => n.name === name);
  if (!node) return null;
  const { order, glued } = pipelineOrder(ir);
  let p = order.indexOf(node.index);
  if (p < 0) return null;
  while (p >= 0 && (glued[p] || p === order.length - 1)) p--;
  return p >= 0 ? ir.nodes[order[p]].name : null;
}

/** Nominal machine for estimated costs: 50 GFLOP/s, 20 GB/s, 2 µs launch overhead per node. */
export const NOMINAL_MACHINE = { flopsPerUs: 50_000, bytesPerUs: 20_000, nodeOverheadUs: 2 } as const;

/**
 * Per-node costs for when nothing has been measured, from {@link estimateCosts}: a roofline
 * time on {@link NOMINAL_MACHINE}, max(FLOPs / peak, bytes / bandwidth), plus a fixed
 * per-node overhead. Constant nodes cost 0 (ONNX Runtime folds them at load). Nodes whose
 * FLOPs and bytes are both unknown cost the overhead alone. The absolute numbers are only
 * nominal; what matters for balancing is their ratios. Symbolic dimensions not in
 * `dimValues` are taken as 1 for the batch (the first dimension of an input) and 64 otherwise.
 */
export function estimateNodeCostsUs(ir: ModelIR, dimValues: Record<string, number> = {}): Float64Array {
  const dims = { ...nominalDims(ir), ...dimValues };
  const est = estimateCosts(ir, dims);
  const out = new Float64Array(ir.nodes.length);
  for (const n of ir.nodes) {
    if (isConstantNode(n)) continue;
    const c = est.nodes[n.index];
    const t = Math.max((c.flops ?? 0) / NOMINAL_MACHINE.flopsPerUs, (c.bytes ?? 0) / NOMINAL_MACHINE.bytesPerUs);
    // Shapes no model runs with (negative or astronomically large dimensions) give NaN or
    // infinite estimates; such a node's size is as good as unknown.
    out[n.index] = NOMINAL_MACHINE.nodeOverheadUs + (Number.isFinite(t) && t >= 0 ? t : 0);
  }
  return out;
}

/** The symbolic batch dimension: the first dimension of the first graph input whose first dimension is symbolic. */
export function batchDimName(ir: ModelIR): string | null {
  for (const i of ir.inputs) {
    const d = i.dims?.[0];
    if (typeof d === 'string') return d;
  }
  return null;
}

/**
 * Bytes per batch row of each tensor, from shape propagation with the batch set to 1 and the
 * other symbolic dimensions from `dimValues`; null where a shape stays unknown.
 */
export function defaultCutBytes(ir: ModelIR, dimValues: Record<string, number> = {}): (tensor: string) => number | null {
  const batch = batchDimName(ir);
  const dims = batch ? { ...dimValues, [batch]: 1 } : dimValues;
  const shapes = estimateCosts(ir, dims).shapes;
  return (t) => {
    const s = shapes.get(t);
    if (!s) return null;
    let n = 1;
    for (const d of s.dims) n *= d;
    return byteSize(s.dtype, n);
  };
}

/** True for a Constant node of the default domain (no inputs, one constant output). */
export function isConstantNode(n: IRNode): boolean {
  return n.opType === 'Constant' && n.domain === '' && n.inputs.every((i) => !i);
}

// ---------------------------------------------------------------------------------------
// Internals

interface Units {
  /** Number of units: runs of positions that a cut cannot split (glued Constants + their consumer). */
  count: number;
  /** One past the last position of each unit. */
  end: Int32Array;
  /** Unit of each position. */
  unitOf: Int32Array;
}

interface Context {
  ir: ModelIR;
  costs: Float64Array;
  order: number[];
  posOf: Int32Array;
  /** 1 where no cut may follow the position (a Constant glued to the node after it). */
  glued: Uint8Array;
  units: Units;
  cutBytes: (t: string) => number | null;
  comm: number;
  costSource: CostSource;
  batchDim: string | null;
}

/** `cutBytes` with NaN, infinite and negative sizes (from shapes no model runs with) made unknown. */
function knownSizes(cutBytes: (t: string) => number | null): (t: string) => number | null {
  return (t) => {
    const b = cutBytes(t);
    return b !== null && Number.isFinite(b) && b >= 0 ? b : null;
  };
}

function prepare(ir: ModelIR, nodeCostUs: Float64Array, opts: PartitionOptions): Context {
  if (nodeCostUs.length !== ir.nodes.length) {
    throw new RangeError(`partitionPipeline: ${nodeCostUs.length} node costs given for ${ir.nodes.length} nodes`);
  }
  for (let i = 0; i < nodeCostUs.length; i++) {
    if (!(nodeCostUs[i] >= 0) || !Number.isFinite(nodeCostUs[i])) throw new RangeError(`partitionPipeline: cost of node ${i} is ${nodeCostUs[i]}, not a finite non-negative number`);
  }
  const comm = opts.commCostUsPerByte ?? 0;
  if (!(comm >= 0) || !Number.isFinite(comm)) throw new RangeError(`partitionPipeline: commCostUsPerByte must be finite and non-negative, got ${comm}`);
  const { order, glued } = pipelineOrder(ir);
  const posOf = new Int32Array(ir.nodes.length);
  order.forEach((n, p) => (posOf[n] = p));
  const unitOf = new Int32Array(order.length);
  const ends: number[] = [];
  for (let p = 0; p < order.length; p++) {
    unitOf[p] = ends.length;
    if (!glued[p] || p === order.length - 1) ends.push(p + 1);
  }
  return {
    ir,
    costs: nodeCostUs,
    order,
    posOf,
    glued,
    units: { count: ends.length, end: Int32Array.from(ends), unitOf },
    cutBytes: knownSizes(opts.cutBytes ?? defaultCutBytes(ir, opts.dimValues)),
    comm,
    costSource: opts.costSource ?? 'measured',
    batchDim: batchDimName(ir),
  };
}

/**
 * `ir.topoOrder` with every consumed Constant moved to just before its first consumer, and
 * Constants nobody reads (graph outputs at most) kept at the end. Constants have no inputs,
 * so any position before their consumers keeps the order topological.
 */
function pipelineOrder(ir: ModelIR): { order: number[]; glued: Uint8Array } {
  const computing = ir.topoOrder.filter((i) => !isConstantNode(ir.nodes[i]));
  const pos = new Int32Array(ir.nodes.length).fill(-1);
  computing.forEach((n, p) => (pos[n] = p));
  const before = new Map<number, number[]>();
  const trailing: number[] = [];
  for (const i of ir.topoOrder) {
    const n = ir.nodes[i];
    if (!isConstantNode(n)) continue;
    let first = -1;
    for (const o of n.outputs) {
      for (const c of ir.consumers.get(o) ?? []) {
        if (pos[c] >= 0 && (first < 0 || pos[c] < pos[first])) first = c;
      }
    }
    if (first < 0) trailing.push(i);
    else {
      const list = before.get(first);
      if (list) list.push(i);
      else before.set(first, [i]);
    }
  }
  const order: number[] = [];
  const glued: number[] = [];
  for (const n of computing) {
    for (const c of before.get(n) ?? []) {
      order.push(c);
      glued.push(1);
    }
    order.push(n);
    glued.push(0);
  }
  for (const c of trailing) {
    order.push(c);
    glued.push(0);
  }
  return { order, glued: Uint8Array.from(glued) };
}

function nextUnglued(ctx: Context, pos: number): number {
  let p = pos;
  while (p < ctx.order.length - 1 && ctx.glued[p]) p++;
  return p;
}

/** Tensors that can cross a cut, flattened by producing unit: [unit, last consuming unit, bytes]. */
interface CrossingTable {
  /** Offsets into the arrays below per unit (length units + 1). */
  start: Int32Array;
  last: Int32Array;
  bytes: Float64Array;
}

function crossingTable(ctx: Context): CrossingTable {
  const { ir, order, posOf, units } = ctx;
  const rows: Array<[number, number, number]> = [];
  for (let p = 0; p < order.length; p++) {
    const n = ir.nodes[order[p]];
    if (isConstantNode(n)) continue; // copied, never sent
    const u = units.unitOf[p];
    for (const t of n.outputs) {
      if (!t) continue;
      let last = -1;
      for (const c of ir.consumers.get(t) ?? []) last = Math.max(last, units.unitOf[posOf[c]]);
      if (last <= u) continue;
      rows.push([u, last, ctx.cutBytes(t) ?? 0]);
    }
  }
  // Rows are already grouped by unit in increasing order (positions are visited in order).
  const start = new Int32Array(units.count + 1);
  for (const r of rows) start[r[0] + 1]++;
  for (let u = 0; u < units.count; u++) start[u + 1] += start[u];
  return { start, last: Int32Array.from(rows, (r) => r[1]), bytes: Float64Array.from(rows, (r) => r[2]) };
}

/**
 * Units the exact search runs over. The search is quadratic in them (20,000 units took 21 s),
 * so a larger graph is searched over blocks of consecutive units instead, each about
 * 1/{@link MAX_SEARCH_UNITS} of the cost and of the units: a stage boundary then lands on a
 * block boundary, which costs at most one block's share of balance, far below the noise of
 * measured per-node costs and the default slack.
 */
export const MAX_SEARCH_UNITS = 2000;

/**
 * Unit indices where a stage may start, ascending from 0 to U: every unit when there are
 * few, else block boundaries that split both the cost and the unit count evenly.
 */
function searchCuts(prefix: Float64Array, U: number, k: number): Int32Array {
  const blocks = Math.max(MAX_SEARCH_UNITS, 4 * k);
  if (U <= blocks) return Int32Array.from({ length: U + 1 }, (_, u) => u);
  const total = prefix[U];
  const cuts = [0];
  let bucket = 0;
  for (let u = 1; u < U; u++) {
    // Half cost share, half unit share: cheap units still get split, heavy ones stand alone.
    const key = (total > 0 ? prefix[u] / total : 0) + u / U;
    const b = Math.floor((key * blocks) / 2);
    if (b > bucket) {
      bucket = b;
      cuts.push(u);
    }
  }
  cuts.push(U);
  return Int32Array.from(cuts);
}

/**
 * Bytes that leave each block for good: per block, the crossing tensors consumed after the
 * block ends, sorted by their last consuming unit, with suffix sums, so that the bytes of a
 * block still needed at or after unit e are one binary search.
 */
function blockCrossings(table: CrossingTable, cuts: Int32Array): (block: number, e: number) => number {
  const n = cuts.length - 1;
  const lasts: Int32Array[] = [];
  const suffix: Float64Array[] = [];
  for (let b = 0; b < n; b++) {
    const rows: [number, number][] = [];
    for (let r = table.start[cuts[b]]; r < table.start[cuts[b + 1]]; r++) if (table.last[r] >= cuts[b + 1]) rows.push([table.last[r], table.bytes[r]]);
    rows.sort((x, y) => x[0] - y[0]);
    const sums = new Float64Array(rows.length + 1);
    for (let i = rows.length - 1; i >= 0; i--) sums[i] = sums[i + 1] + rows[i][1];
    lasts.push(Int32Array.from(rows, (x) => x[0]));
    suffix.push(sums);
  }
  return (block, e) => {
    const l = lasts[block];
    let lo = 0;
    let hi = l.length;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (l[mid] < e) lo = mid + 1;
      else hi = mid;
    }
    return suffix[block][lo];
  };
}

/**
 * The optimal stage boundaries in unit space (k + 1 numbers from 0 to units.count).
 * Pass 1 finds the least bottleneck T*; pass 2 minimises (bytes sent, Σ cost²) over the
 * partitions whose every stage costs at most T*·(1 + slack). Both are O(k·B²·log T) for B
 * search blocks ({@link MAX_SEARCH_UNITS} at most, one unit each in smaller graphs) and T
 * crossing tensors.
 */
function optimalBoundaries(ctx: Context, k: number, slack: number): number[] {
  const table = crossingTable(ctx);
  const unitCost = new Float64Array(ctx.units.count);
  for (let p = 0; p < ctx.order.length; p++) unitCost[ctx.units.unitOf[p]] += ctx.costs[ctx.order[p]];
  const prefix = new Float64Array(ctx.units.count + 1);
  for (let u = 0; u < ctx.units.count; u++) prefix[u + 1] = prefix[u] + unitCost[u];
  const cuts = searchCuts(prefix, ctx.units.count, k);
  const leaving = blockCrossings(table, cuts);
  // From here on, "units" are the search blocks.
  const U = cuts.length - 1;

  const colCost = new Float64Array(U);
  const colBytes = new Float64Array(U);
  /** Fills colCost/colBytes with the cost and sent bytes of stage [s, e) for every s < e. */
  const column = (e: number): void => {
    let bytes = 0;
    for (let s = e - 1; s >= 0; s--) {
      bytes += leaving(s, cuts[e]);
      colBytes[s] = bytes;
      colCost[s] = prefix[cuts[e]] - prefix[cuts[s]] + ctx.comm * bytes;
    }
  };

  // Pass 1: the least bottleneck, by the one contiguous-partition DP (one column of stage costs per end).
  let columnEnd = -1;
  const stageCost = (_stage: number, start: number, end: number): number => {
    if (end !== columnEnd) {
      column(end);
      columnEnd = end;
    }
    return colCost[start];
  };
  const optimum = minBottleneckPartition(U, k, stageCost)!.bottleneck;
  const bound = optimum * (1 + Math.max(0, slack)) + 1e-9 * Math.max(1, optimum);

  // Pass 2: among the partitions within that bound, the fewest bytes sent, then the least Σ cost².
  const W = U + 1;
  const gBytes = new Float64Array((k + 1) * W).fill(Infinity);
  const gSq = new Float64Array((k + 1) * W).fill(Infinity);
  const arg = new Int32Array((k + 1) * W).fill(-1);
  gBytes[0] = 0;
  gSq[0] = 0;
  for (let e = 1; e <= U; e++) {
    column(e);
    for (let j = 1; j <= Math.min(k, e); j++) {
      const row = (j - 1) * W;
      let bb = Infinity;
      let bq = Infinity;
      let bs = -1;
      for (let s = j - 1; s < e; s++) {
        if (colCost[s] > bound || gBytes[row + s] === Infinity) continue;
        const b = gBytes[row + s] + colBytes[s];
        const q = gSq[row + s] + colCost[s] * colCost[s];
        const tol = 1e-9 * Math.max(1, Math.abs(bb));
        if (b < bb - tol || (b <= bb + tol && q < bq)) {
          bb = b;
          bq = q;
          bs = s;
        }
      }
      gBytes[j * W + e] = bb;
      gSq[j * W + e] = bq;
      arg[j * W + e] = bs;
    }
  }
  const out = [U];
  let e = U;
  for (let j = k; j >= 1; j--) {
    e = arg[j * W + e];
    if (e < 0) throw new Error('partitionPipeline: no partition within the optimal bottleneck (internal error)');
    out.push(e);
  }
  return out.reverse().map((b) => cuts[b]);
}

/** Builds the stages for boundaries given as positions in `ctx.order` (0, …, order.length). */
function assemble(ctx: Context, bounds: number[]): Partition {
  const { ir, order, posOf } = ctx;
  const k = bounds.length - 1;
  const stageOfPos = new Int32Array(order.length);
  for (let s = 0; s < k; s++) for (let p = bounds[s]; p < bounds[s + 1]; p++) stageOfPos[p] = s;
  const stageOf = (node: number): number => stageOfPos[posOf[node]];
  const graphOutputs = new Set(ir.outputs.map((o) => o.name));

  const stages: PipelineStage[] = [];
  for (let s = 0; s < k; s++) {
    const nodeIndices = order.slice(bounds[s], bounds[s + 1]);
    const { inputs, copies, inits } = stageInputs(ir, nodeIndices, s, stageOf);
    const { outputs, sendBytes, cutBytesOut } = stageOutputs(ctx, nodeIndices, s, stageOf, graphOutputs);
    const { parameters, parameterBytes } = stageParameters(ir, nodeIndices, copies, inits);
    let computeUs = 0;
    for (const i of nodeIndices) computeUs += ctx.costs[i];
    const sendUs = ctx.comm * sendBytes;
    stages.push({
      index: s,
      start: bounds[s],
      end: bounds[s + 1],
      nodeIndices,
      // Constants moved ahead of their consumer would make a stage "start" at Constant_12; name the first computing node.
      nodeNames: { first: ir.nodes[nodeIndices.find((i) => !isConstantNode(ir.nodes[i])) ?? nodeIndices[0]].name, last: ir.nodes[nodeIndices[nodeIndices.length - 1]].name },
      constantCopies: [...copies].sort((a, b) => posOf[a] - posOf[b]),
      initializers: [...inits],
      computeUs,
      sendUs,
      costUs: computeUs + sendUs,
      parameters,
      parameterBytes,
      inputs,
      outputs,
      cutBytesOut,
    });
  }
  const costs = stages.map((st) => st.costUs);
  const max = Math.max(...costs);
  const mean = costs.reduce((a, b) => a + b, 0) / k;
  return {
    modelSha256: ir.sha256,
    order,
    stages,
    cuts: stages.slice(0, -1).map((st) => st.nodeNames.last),
    costSource: ctx.costSource,
    batchDim: ctx.batchDim,
    bottleneckUs: max,
    balance: mean > 0 ? max / mean : 1,
  };
}

/**
 * What stage `s` (nodes `nodeIndices`) reads from outside itself: tensors from other stages
 * or the graph's inputs, Constant nodes it copies, and initializers it holds.
 */
function stageInputs(
  ir: ModelIR,
  nodeIndices: number[],
  s: number,
  stageOf: (node: number) => number,
): { inputs: StageInput[]; copies: Set<number>; inits: Set<string> } {
  const inputs: StageInput[] = [];
  const seenIn = new Set<string>();
  const copies = new Set<number>();
  const inits = new Set<string>();
  const produced = new Set<string>();
  for (const i of nodeIndices) {
    const n = ir.nodes[i];
    for (const t of [...n.inputs, ...n.implicitInputs]) {
      if (!t || produced.has(t) || seenIn.has(t)) continue;
      const p = ir.producers.get(t);
      if (p !== undefined && stageOf(p) === s) continue; // produced later in this stage: not possible in order, kept for safety
      if (p !== undefined && isConstantNode(ir.nodes[p])) {
        copies.add(p);
        continue;
      }
      if (p === undefined && ir.initializerByName.has(t)) {
        inits.add(t);
        continue;
      }
      seenIn.add(t);
      inputs.push({ name: t, from: p === undefined ? 'graph' : stageOf(p) });
    }
    for (const t of n.outputs) if (t) produced.add(t);
  }
  return { inputs, copies, inits };
}

/** What stage `s` produces for later stages or the graph, and the bytes it sends (once per tensor, and per destination). */
function stageOutputs(
  ctx: Context,
  nodeIndices: number[],
  s: number,
  stageOf: (node: number) => number,
  graphOutputs: Set<string>,
): { outputs: StageOutput[]; sendBytes: number; cutBytesOut: number | null } {
  const { ir } = ctx;
  const outputs: StageOutput[] = [];
  let sendBytes = 0;
  let cutBytesOut: number | null = 0;
  for (const i of nodeIndices) {
    const n = ir.nodes[i];
    const constant = isConstantNode(n);
    for (const t of n.outputs) {
      if (!t) continue;
      const dests = new Set<number>();
      if (!constant) for (const c of ir.consumers.get(t) ?? []) if (stageOf(c) !== s) dests.add(stageOf(c));
      const to: Array<number | 'graph'> = [...dests].sort((a, b) => a - b);
      if (graphOutputs.has(t)) to.push('graph');
      if (to.length === 0) continue;
      const b = ctx.cutBytes(t);
      outputs.push({ name: t, to, bytes: b });
      if (dests.size > 0) {
        sendBytes += b ?? 0;
        cutBytesOut = b === null || cutBytesOut === null ? null : cutBytesOut + b * dests.size;
      }
    }
  }
  return { outputs, sendBytes, cutBytesOut };
}

/** Elements and bytes of the weights a stage holds: its initializers and its own and copied Constants. */
function stageParameters(ir: ModelIR, nodeIndices: number[], copies: Set<number>, inits: Set<string>): { parameters: number; parameterBytes: number } {
  let parameters = 0;
  let parameterBytes = 0;
  const weights = [...[...inits].map((t) => ir.initializerByName.get(t)!), ...[...nodeIndices, ...copies].filter((i) => isConstantNode(ir.nodes[i])).flatMap((i) => ir.nodes[i].outputs.map((o) => ir.constants.get(o)))];
  for (const w of weights) {
    if (!w || !isWeightType(w.dtype)) continue;
    parameters += w.elements;
    parameterBytes += w.byteSize ?? 0;
  }
  return { parameters, parameterBytes };
}

/** Values for the symbolic dimensions of the inputs when none are given: 1 for a first (batch) dimension, 64 for any other. */
export function nominalDims(ir: ModelIR): Record<string, number> {
  const out: Record<string, number> = {};
  for (const i of ir.inputs) {
    (i.dims ?? []).forEach((d, axis) => {
      if (typeof d === 'string' && !(d in out)) out[d] = axis === 0 ? 1 : 64;
    });
  }
  return out;
}

/** Up to three names closest to `name`: substring matches first, then by edit distance. */
function closeNames(name: string, names: string[]): string[] {
  const lower = name.toLowerCase();
  const scored = names.map((n) => {
    const l = n.toLowerCase();
    const sub = l.includes(lower) || lower.includes(l);
    return { n, d: sub ? -1 / (1 + Math.abs(l.length - lower.length)) : editDistance(lower, l) };
  });
  scored.sort((a, b) => a.d - b.d);
  const limit = Math.max(2, Math.floor(name.length / 3));
  return scored.filter((s) => s.d <= limit).slice(0, 3).map((s) => s.n);
}

function editDistance(a: string, b: string): number {
  if (Math.abs(a.length - b.length) > 20) return Math.abs(a.length - b.length);
  let prev = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    const cur = [i];
    for (let j = 1; j <= b.length; j++) cur.push(Math.min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (a[i - 1] === b[j - 1] ? 0 : 1)));
    prev = cur;
  }
  return prev[b.length];
}
