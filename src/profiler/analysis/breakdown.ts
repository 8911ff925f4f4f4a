/**
 * Where each device's time goes, per step: compute, communication and idle (split by cause),
 * and how much communication hides under computation on the same lane.
 *
 *  - compute / comm / idle are sums of top-level span durations (operator spans are nested in
 *    their compute span and not counted again), as in the summary, so they add up to the
 *    step window when the lane's spans do not overlap;
 *  - overlap is the time where the lane has a compute span and a comm span at once
 *    (|C ∩ M| = |C| + |M| − |C ∪ M| over the unions of the lane's intervals);
 *  - exposed comm is comm time not under compute (|M| − overlap = |C ∪ M| − |C|): the part
 *    of communication that actually lengthens the lane's work.
 */
import { IDLE_CAUSES, IDLE_SPAN_CAUSES, IdleCauseCode, SpanKind, zeroByCause, type IdleCauseOfSpan } from '../trace-format';
import type { SpanIndex } from './span-index';

/** Idle µs per cause (every cause of the trace format but `none`). */
export type IdleByCause = Record<IdleCauseOfSpan, number>;

/** A split of time, µs. */
export interface TimeSplit {
  computeUs: number;
  commUs: number;
  idleUs: number;
  idleByCauseUs: IdleByCause;
  /** Time where compute and comm spans of the same lane overlap. */
  overlapUs: number;
  /** Comm time not overlapped by compute on the same lane. */
  exposedCommUs: number;
}

/**
 * Per-step values of one lane, indexed by step position (`trace.steps` order): compute,
 * comm, idle, idle of each cause (`bubbleUs`, `collectiveUs`, … one per cause of
 * IDLE_CAUSES), overlap and exposed comm.
 */
export type StepColumns = {
  computeUs: number[];
  commUs: number[];
  idleUs: number[];
  overlapUs: number[];
  exposedCommUs: number[];
} & { [C in IdleCauseOfSpan as `${C}Us`]: number[] };

export interface LaneBreakdown extends TimeSplit {
  lane: number;
  /** Device id, e.g. `cpu:1`. */
  id: string;
  label: string;
  /** Sum of the measured step windows: the time this lane's split is a split of, µs. */
  stepUs: number;
  /** compute, comm and idle as shares of `stepUs`. */
  shares: { compute: number; comm: number; idle: number };
  perStep: StepColumns;
}

export interface StepBreakdown extends TimeSplit {
  /** `trace.steps[pos].index`. */
  index: number;
  startUs: number;
  endUs: number;
  /** The step window's length, µs. */
  durUs: number;
}

export interface Breakdown {
  lanes: LaneBreakdown[];
  /** Per step, summed over lanes. */
  steps: StepBreakdown[];
  /** Summed over lanes and steps; `deviceUs` = lanes × Σ step windows. */
  totals: TimeSplit & { deviceUs: number };
}

/** Per-(lane, step) accumulators: these five, then one per idle cause code (`F_CAUSE + code`). */
const F_COMPUTE = 0;
const F_COMM = 1;
const F_IDLE = 2;
const F_OVERLAP = 3;
const F_EXPOSED = 4;
const F_CAUSE = 5;
/** Number of accumulators per cell (the `none` cause keeps an unused slot, so codes index directly). */
const F = F_CAUSE + IDLE_CAUSES.length;

/**
 * Per (lane, step) accumulators, `acc[(lane * nSteps + pos) * F + field]`; exposed for the
 * other analyses, which read these rather than pass over the spans again.
 */
export interface BreakdownCells {
  acc: Float64Array;
  nSteps: number;
}

/** The accumulators by name: the five fixed ones and one per idle cause. */
export type CellField = 'compute' | 'comm' | 'idle' | 'overlap' | 'exposed' | IdleCauseOfSpan;

const FIXED_FIELD = { compute: F_COMPUTE, comm: F_COMM, idle: F_IDLE, overlap: F_OVERLAP, exposed: F_EXPOSED } as const;

const fieldIndex = (field: CellField): number => (field in FIXED_FIELD ? FIXED_FIELD[field as keyof typeof FIXED_FIELD] : F_CAUSE + IdleCauseCode[field as IdleCauseOfSpan]);

/** Reads one accumulator of a (lane, step position) cell. */
export function cell(c: BreakdownCells, lane: number, pos: number, field: CellField): number {
  return c.acc[(lane * c.nSteps + pos) * F + fieldIndex(field)];
}

/** Computes the accumulators in one pass over the idle spans and one over the busy buckets. */
export function breakdownCells(ix: SpanIndex): BreakdownCells {
  const { nLanes, nSteps, busy, busyOffset, stepPos, isOp } = ix;
  const s = ix.trace.spans;
  const acc = new Float64Array(nLanes * nSteps * F);
  const { kind, lane, dur, start, cause } = s;
  for (let i = 0; i < s.count; i++) {
    if (kind[i] !== SpanKind.idle || isOp[i]) continue;
    const p = stepPos[i];
    if (p < 0) continue;
    const base = (lane[i] * nSteps + p) * F;
    const d = dur[i];
    acc[base + F_IDLE] += d;
    // As in the summary, idle without a cause (none) counts as idle but under no cause.
    const c = cause[i];
    if (c > 0 && c < IDLE_CAUSES.length) acc[base + F_CAUSE + c] += d;
  }
  for (let b = 0; b < nLanes * nSteps; b++) {
    const lo = busyOffset[b];
    const hi = busyOffset[b + 1];
    if (lo === hi) continue;
    let sumCompute = 0;
    let sumComm = 0;
    // Unions of compute, comm and both, by sweeping the bucket in start order.
    let uC = 0;
    let uM = 0;
    let uA = 0;
    let cA = -Infinity;
    let cB = -Infinity;
    let mA = -Infinity;
    let mB = -Infinity;
    let aA = -Infinity;
    let aB = -Infinity;
    for (let j = lo; j < hi; j++) {
      const i = busy[j];
      const a = start[i];
      const e = a + dur[i];
      if (kind[i] === SpanKind.compute) {
        sumCompute += dur[i];
        if (a > cB) {
          if (cB > cA) uC += cB - cA;
          cA = a;
          cB = e;
        } else if (e > cB) cB = e;
      } else if (kind[i] === SpanKind.comm) {
        sumComm += dur[i];
        if (a > mB) {
          if (mB > mA) uM += mB - mA;
          mA = a;
          mB = e;
        } else if (e > mB) mB = e;
      } else continue;
      if (a > aB) {
        if (aB > aA) uA += aB - aA;
        aA = a;
        aB = e;
      } else if (e > aB) aB = e;
    }
    if (cB > cA) uC += cB - cA;
    if (mB > mA) uM += mB - mA;
    if (aB > aA) uA += aB - aA;
    const base = b * F;
    acc[base + F_COMPUTE] = sumCompute;
    acc[base + F_COMM] = sumComm;
    // Rounding can leave a −1e-12 where the true value is 0.
    acc[base + F_OVERLAP] = Math.max(0, uC + uM - uA);
    acc[base + F_EXPOSED] = Math.max(0, uA - uC);
  }
  return { acc, nSteps };
}

const emptySplit = (): TimeSplit => ({
  computeUs: 0,
  commUs: 0,
  idleUs: 0,
  idleByCauseUs: zeroByCause(),
  overlapUs: 0,
  exposedCommUs: 0,
});

function addCell(t: TimeSplit, acc: Float64Array, base: number): void {
  t.computeUs += acc[base + F_COMPUTE];
  t.commUs += acc[base + F_COMM];
  t.idleUs += acc[base + F_IDLE];
  for (const c of IDLE_SPAN_CAUSES) t.idleByCauseUs[c] += acc[base + F_CAUSE + IdleCauseCode[c]];
  t.overlapUs += acc[base + F_OVERLAP];
  t.exposedCommUs += acc[base + F_EXPOSED];
}

/** The per-device, per-step breakdown. */
export function breakdown(ix: SpanIndex, cells: BreakdownCells = breakdownCells(ix)): Breakdown {
  const { trace, nLanes, nSteps, stepUs } = ix;
  const { acc } = cells;
  let windowSum = 0;
  for (let p = 0; p < nSteps; p++) windowSum += stepUs[p];
  const col = (base: number, f: number): number[] => {
    const out = new Array<number>(nSteps);
    for (let p = 0; p < nSteps; p++) out[p] = acc[(base + p) * F + f];
    return out;
  };
  const lanes: LaneBreakdown[] = trace.lanes.map((ln, l) => {
    const t = emptySplit();
    for (let p = 0; p < nSteps; p++) addCell(t, acc, (l * nSteps + p) * F);
    const base = l * nSteps;
    const dev = trace.meta.devices[ln.device];
    return {
      lane: l,
      id: dev?.id ?? ln.label,
      label: ln.label,
      ...t,
      stepUs: windowSum,
      shares: {
        compute: windowSum > 0 ? t.computeUs / windowSum : 0,
        comm: windowSum > 0 ? t.commUs / windowSum : 0,
        idle: windowSum > 0 ? t.idleUs / windowSum : 0,
      },
      perStep: {
        computeUs: col(base, F_COMPUTE),
        commUs: col(base, F_COMM),
        idleUs: col(base, F_IDLE),
        ...(Object.fromEntries(IDLE_SPAN_CAUSES.map((c) => [`${c}Us`, col(base, F_CAUSE + IdleCauseCode[c])])) as { [C in IdleCauseOfSpan as `${C}Us`]: number[] }),
        overlapUs: col(base, F_OVERLAP),
        exposedCommUs: col(base, F_EXPOSED),
      },
    };
  });
  const steps: StepBreakdown[] = trace.steps.map((w, p) => {
    const t = emptySplit();
    for (let l = 0; l < nLanes; l++) addCell(t, acc, (l * nSteps + p) * F);
    return { index: w.index, startUs: w.startUs, endUs: w.endUs, durUs: stepUs[p], ...t };
  });
  const totals = { ...emptySplit(), deviceUs: windowSum * nLanes };
  for (let b = 0; b < nLanes * nSteps; b++) addCell(totals, acc, b * F);
  return { lanes, steps, totals };
}
