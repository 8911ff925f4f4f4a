/**
 * Top operators per device and per pipeline stage, from the operator spans ONNX Runtime's
 * profiler contributes (flag 8, nested under their `session.run` compute span).
 *
 * Operator names are those of ORT's optimised graph. With graph optimisations on, fused
 * nodes get new names built from the first node they absorb, e.g.
 *   `/layers.0/mlp/fc1/MatMul` + Add → Gemm `/layers.0/mlp/fc1/MatMul/MatMulAddFusion`,
 *   then + Relu → FusedGemm `fused /layers.0/mlp/fc1/MatMul/MatMulAddFusion`;
 * {@link modelNodeName} maps such a name back to the model's node so that hints and cut
 * suggestions can point at it.
 */
import { median } from '../stats';
import { SpanKind } from '../trace-format';
import type { SpanIndex } from './span-index';
import type { BreakdownCells } from './breakdown';
import { cell } from './breakdown';

/**
 * Suffixes ORT's graph transformers append to the name of the node a fusion is anchored on
 * (`GenerateNodeName(node.Name() + "/MatMulAddFusion")` and the like), and the `_token_N`
 * ORT adds when a generated name is taken.
 */
const FUSION_SUFFIX = /\/[A-Za-z0-9]*Fusion\/?$/;
const TOKEN_SUFFIX = /_token_\d+$/;
/** Prefix of activation fusions (FusedGemm, FusedConv, FusedBatchNorm, FusedMatMul…). */
const FUSED_PREFIX = /^fused /;

/**
 * Maps an operator name from ORT's optimised graph back to the model node it came from:
 * strips `fused ` prefixes, fusion suffixes (`/MatMulAddFusion`, `/LayerNormFusion/`) and
 * `_token_N` repeatedly, so `fused /layers.0/mlp/fc1/MatMul/MatMulAddFusion` becomes
 * `/layers.0/mlp/fc1/MatMul`. With `known` (the model's node names), the first candidate
 * along the way that is a real node wins, and a name with a plain `_N` suffix (older ORT's
 * generated names) is tried without it; a name not produced by a fusion comes back as is.
 */
export function modelNodeName(ortName: string, known?: ReadonlySet<string>): string {
  let name = ortName;
  if (known?.has(name)) return name;
  // One layer at a time, so that a known name in the middle of the chain is found.
  for (let guard = 0; guard < 16; guard++) {
    let next = name.replace(TOKEN_SUFFIX, '');
    if (next === name) next = name.replace(FUSED_PREFIX, '');
    if (next === name) next = name.replace(FUSION_SUFFIX, '');
    if (next === name) break;
    name = next;
    if (known?.has(name)) return name;
  }
  if (known && !known.has(name)) {
    const plain = name.replace(/_\d+$/, '');
    if (known.has(plain)) return plain;
  }
  return name;
}

/** One operator (node) of the optimised graph. */
export interface OpStat {
  /** Name as ORT recorded it. */
  name: string;
  /** The model node it maps back to (see {@link modelNodeName}). */
  node: string;
  opType: string;
  totalUs: number;
  /** Executions in the measured steps. */
  count: number;
  meanUs: number;
  /** totalUs / the group's step time (Σ step windows × lanes in the group). */
  shareOfStep: number;
  /** totalUs / the group's compute time. */
  shareOfCompute: number;
}

export interface OpTypeStat {
  opType: string;
  totalUs: number;
  count: number;
  meanUs: number;
  shareOfStep: number;
  shareOfCompute: number;
  /** The operator of this type with the most time. */
  topOp: string;
}

/** Operators of one device or one stage. */
export interface OpsGroup {
  /** Lane index (per-device groups) or stage index (per-stage groups). */
  index: number;
  lanes: number[];
  /** Σ step windows × lanes: the denominator of `shareOfStep`, µs. */
  stepUs: number;
  /** Σ top-level compute on the group's lanes, µs. */
  computeUs: number;
  /** Σ operator time, µs. */
  opUs: number;
  /** Operator executions. */
  opCount: number;
  /** The top operators by total time. */
  ops: OpStat[];
  /** Every operator type, by total time. */
  opTypes: OpTypeStat[];
  /** Distinct operators whose mean duration is under {@link TINY_OP_US}, as a fraction of all. */
  tinyOpFraction: number;
  /** Median over operators of their mean duration, µs. */
  medianOpMeanUs: number;
}

export interface OpsAnalysis {
  /** True when the trace has operator spans. */
  available: boolean;
  perLane: OpsGroup[];
  /** Per pipeline stage; a single group of every lane for other modes. */
  perStage: OpsGroup[];
}

/** An operator whose mean duration is under this is launch- and dispatch-bound, µs. */
export const TINY_OP_US = 20;

/**
 * Aggregates operator spans by (lane, operator name) in one pass, then folds lanes into
 * groups. `stageOfLane` gives each lane's stage (-1: none); lanes without a stage form one
 * group when there are no stages at all.
 */
export function analyseOps(ix: SpanIndex, cells: BreakdownCells, stageOfLane: ArrayLike<number>, top = 10): OpsAnalysis {
  const { trace, nLanes, nSteps, ops, stepUs } = ix;
  const s = trace.spans;
  // Dense ids for operator names, so the accumulators are flat typed arrays.
  const dense = new Int32Array(trace.strings.length).fill(-1);
  const names: number[] = [];
  const opTypeOf: number[] = [];
  for (let k = 0; k < ops.length; k++) {
    const i = ops[k];
    if (s.kind[i] !== SpanKind.compute) continue;
    const nm = s.name[i];
    if (dense[nm] < 0) {
      dense[nm] = names.length;
      names.push(nm);
      opTypeOf.push(s.opType[i]);
    }
  }
  const D = names.length;
  const total = new Float64Array(nLanes * D);
  const count = new Float64Array(nLanes * D);
  for (let k = 0; k < ops.length; k++) {
    const i = ops[k];
    if (s.kind[i] !== SpanKind.compute) continue;
    const j = s.lane[i] * D + dense[s.name[i]];
    total[j] += s.dur[i];
    count[j]++;
  }
  let windowSum = 0;
  for (let p = 0; p < nSteps; p++) windowSum += stepUs[p];
  const laneCompute = new Float64Array(nLanes);
  for (let l = 0; l < nLanes; l++) for (let p = 0; p < nSteps; p++) laneCompute[l] += cell(cells, l, p, 'compute');

  const acc: OpAccumulators = { strings: trace.strings, names, opTypeOf, D, total, count, laneCompute, windowSum, top };
  const group = (index: number, lanes: number[]): OpsGroup => opsGroup(acc, index, lanes);

  const perLane = Array.from({ length: nLanes }, (_, l) => group(l, [l]));
  const stages = new Map<number, number[]>();
  for (let l = 0; l < nLanes; l++) {
    const st = stageOfLane[l];
    if (st < 0) continue;
    let list = stages.get(st);
    if (!list) stages.set(st, (list = []));
    list.push(l);
  }
  const perStage =
    stages.size > 0
      ? [...stages.entries()].sort((a, b) => a[0] - b[0]).map(([st, lanes]) => group(st, lanes))
      : [group(0, Array.from({ length: nLanes }, (_, l) => l))];
  return { available: D > 0, perLane, perStage };
}

/** Per-(lane, operator) sums of {@link analyseOps}, shared by every group it folds. */
interface OpAccumulators {
  strings: readonly string[];
  /** Dense operator id → name string index, and → op type string index. */
  names: number[];
  opTypeOf: number[];
  /** Number of dense operator ids. */
  D: number;
  /** Per lane × dense id: total µs and executions. */
  total: Float64Array;
  count: Float64Array;
  /** Per lane: compute µs over the measured steps. */
  laneCompute: Float64Array;
  /** Σ step windows, µs. */
  windowSum: number;
  /** Operators listed per group. */
  top: number;
}

/** Folds `lanes` into one group: its top operators, operator types and small-operator figures. */
function opsGroup(acc: OpAccumulators, index: number, lanes: number[]): OpsGroup {
  const { names, opTypeOf, D, total, count, laneCompute, windowSum, top } = acc;
  const tot = new Float64Array(D);
  const cnt = new Float64Array(D);
  let computeUs = 0;
  for (const l of lanes) {
    computeUs += laneCompute[l];
    for (let d = 0; d < D; d++) {
      tot[d] += total[l * D + d];
      cnt[d] += count[l * D + d];
    }
  }
  const stepTotal = windowSum * lanes.length;
  const share = (x: number, of: number): number => (of > 0 ? x / of : 0);
  const present: number[] = [];
  let opUs = 0;
  let opCount = 0;
  for (let d = 0; d < D; d++) {
    if (cnt[d] === 0) continue;
    present.push(d);
    opUs += tot[d];
    opCount += cnt[d];
  }
  present.sort((a, b) => tot[b] - tot[a] || a - b);
  const str = (k: number): string => (k >= 0 ? acc.strings[k] ?? '' : '');
  const opsOut: OpStat[] = present.slice(0, top).map((d) => ({
    name: str(names[d]),
    node: modelNodeName(str(names[d])),
    opType: str(opTypeOf[d]),
    totalUs: tot[d],
    count: cnt[d],
    meanUs: tot[d] / cnt[d],
    shareOfStep: share(tot[d], stepTotal),
    shareOfCompute: share(tot[d], computeUs),
  }));
  const byType = new Map<string, { totalUs: number; count: number; top: number }>();
  for (const d of present) {
    const t = str(opTypeOf[d]);
    const e = byType.get(t);
    if (!e) byType.set(t, { totalUs: tot[d], count: cnt[d], top: d });
    else {
      e.totalUs += tot[d];
      e.count += cnt[d];
      if (tot[d] > tot[e.top]) e.top = d;
    }
  }
  const opTypes: OpTypeStat[] = [...byType.entries()]
    .map(([opType, e]) => ({
      opType,
      totalUs: e.totalUs,
      count: e.count,
      meanUs: e.totalUs / e.count,
      shareOfStep: share(e.totalUs, stepTotal),
      shareOfCompute: share(e.totalUs, computeUs),
      topOp: str(names[e.top]),
    }))
    .sort((a, b) => b.totalUs - a.totalUs || (a.opType < b.opType ? -1 : 1));
  const means = present.map((d) => tot[d] / cnt[d]);
  const tiny = means.filter((m) => m < TINY_OP_US).length;
  return {
    index,
    lanes,
    stepUs: stepTotal,
    computeUs,
    opUs,
    opCount,
    ops: opsOut,
    opTypes,
    tinyOpFraction: means.length > 0 ? tiny / means.length : 0,
    medianOpMeanUs: means.length > 0 ? median(means) : 0,
  };
}
