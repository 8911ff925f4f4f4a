/**
 * The index every analysis shares: one pass over the span columns that buckets the top-level
 * busy spans (compute and comm, not operator spans, not idle) by (lane, step) in start
 * order and lists the operator spans. What a span is and does comes from its columns
 * (`kind`, `flags`, `comm`; see span-vocabulary.ts), never from its name.
 *
 * Analyses of a million-span trace must stay well under a second, so nothing here creates an
 * object per span: buckets are offsets into one Int32Array (a counting sort), and per-span
 * facts live in typed arrays.
 */
import { SpanFlag, SpanKind, type Trace } from '../trace-format';

/** True for an operator span: flagged as one, or nested under another span. */
export function isOpSpan(flags: number, parent: number): boolean {
  return (flags & SpanFlag.op) !== 0 || parent >= 0;
}

export interface SpanIndex {
  readonly trace: Trace;
  readonly nLanes: number;
  /** Number of measured steps (`trace.steps.length`); step positions run 0..nSteps-1. */
  readonly nSteps: number;
  /** Per span: position of its step in `trace.steps`, -1 when the span is in no measured step. */
  readonly stepPos: Int32Array;
  /** Per span: 1 for operator spans ({@link isOpSpan}). */
  readonly isOp: Uint8Array;
  /**
   * Top-level busy spans of measured steps, grouped by bucket `lane * nSteps + stepPos` and
   * sorted by start inside a bucket: bucket b is `busy[busyOffset[b] .. busyOffset[b + 1])`.
   */
  readonly busy: Int32Array;
  readonly busyOffset: Int32Array;
  /** Operator spans of measured steps, in trace order. */
  readonly ops: Int32Array;
  /** Per lane: its pipeline stage (from its compute spans), -1 when none is recorded. */
  readonly laneStage: Int32Array;
  /** Per step position: the step window's length, µs. */
  readonly stepUs: Float64Array;
  /** Largest micro-batch index seen, -1 when none. */
  readonly maxMicro: number;
  /** Largest stage index seen, -1 when none. */
  readonly maxStage: number;
}

/** Builds the shared index of a trace whose idle spans have been derived. */
export function buildSpanIndex(trace: Trace): SpanIndex {
  const s = trace.spans;
  const n = s.count;
  const nLanes = trace.lanes.length;
  const nSteps = trace.steps.length;

  // Step index → position. Step indices are small non-negative integers in practice; a map
  // covers anything else.
  let maxStepIndex = -1;
  for (const w of trace.steps) maxStepIndex = Math.max(maxStepIndex, w.index);
  const dense = maxStepIndex >= 0 && maxStepIndex < 4 * nSteps + 1024;
  const lookup = new Int32Array(dense ? maxStepIndex + 1 : 0).fill(-1);
  const sparse = new Map<number, number>();
  trace.steps.forEach((w, p) => (dense ? (lookup[w.index] = p) : sparse.set(w.index, p)));
  const posOfStep = (st: number): number => (st < 0 ? -1 : dense ? (st < lookup.length ? lookup[st] : -1) : sparse.get(st) ?? -1);

  const stepPos = new Int32Array(n);
  const isOp = new Uint8Array(n);
  const nBuckets = nLanes * nSteps;
  const counts = new Int32Array(nBuckets + 1);
  const laneStage = new Int32Array(nLanes).fill(-1);
  let nOps = 0;
  let maxMicro = -1;
  let maxStage = -1;
  const { lane, kind, step, parent, flags, stage, micro } = s;
  for (let i = 0; i < n; i++) {
    const op = isOpSpan(flags[i], parent[i]);
    // Operator spans written without a step inherit their enclosing span's.
    const st = step[i] < 0 && parent[i] >= 0 ? step[parent[i]] : step[i];
    const p = posOfStep(st);
    stepPos[i] = p;
    if (micro[i] > maxMicro) maxMicro = micro[i];
    if (stage[i] > maxStage) maxStage = stage[i];
    if (op) {
      isOp[i] = 1;
      if (p >= 0) nOps++;
      continue;
    }
    const k = kind[i];
    if (k === SpanKind.compute && stage[i] >= 0 && laneStage[lane[i]] < 0) laneStage[lane[i]] = stage[i];
    if (p < 0 || k === SpanKind.idle) continue;
    counts[lane[i] * nSteps + p + 1]++;
  }
  for (let b = 0; b < nBuckets; b++) counts[b + 1] += counts[b];
  const busyOffset = counts;
  const busy = new Int32Array(busyOffset[nBuckets]);
  const fill = busyOffset.slice(0, nBuckets);
  const ops = new Int32Array(nOps);
  let o = 0;
  for (let i = 0; i < n; i++) {
    const p = stepPos[i];
    if (p < 0) continue;
    if (isOp[i]) {
      ops[o++] = i;
      continue;
    }
    if (kind[i] === SpanKind.idle) continue;
    busy[fill[lane[i] * nSteps + p]++] = i;
  }
  // Spans are recorded in time order per lane, so buckets are almost always sorted already;
  // sort only the ones that are not.
  const start = s.start;
  const byStart = (a: number, b: number): number => start[a] - start[b] || a - b;
  for (let b = 0; b < nBuckets; b++) {
    const lo = busyOffset[b];
    const hi = busyOffset[b + 1];
    for (let j = lo + 1; j < hi; j++) {
      if (start[busy[j]] < start[busy[j - 1]]) {
        busy.subarray(lo, hi).sort(byStart);
        break;
      }
    }
  }
  const stepUs = new Float64Array(nSteps);
  trace.steps.forEach((w, p) => (stepUs[p] = Math.max(0, w.endUs - w.startUs)));
  return { trace, nLanes, nSteps, stepPos, isOp, busy, busyOffset, ops, laneStage, stepUs, maxMicro, maxStage };
}
