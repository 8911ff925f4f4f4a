/**
 * Data-parallel analyses: stragglers, time spent waiting at the step barrier, the ratio of
 * communication to computation, and the measured costs the data-parallel findings predict
 * with (per-row compute per device, and a per-transfer + per-byte communication model).
 */
import { median } from '../stats';
import { cell, type BreakdownCells } from './breakdown';
import type { PlanView } from './plan';
import { SpanKind, isCollectiveCode } from '../trace-format';
import type { SpanIndex } from './span-index';

/**
 * A lane is a straggler when its compute per step exceeds the median of the other lanes'
 * by more than this fraction (the `straggler` finding uses the same threshold).
 */
export const STRAGGLER_THRESHOLD = 0.2;

/**
 * Communication time model fitted over every comm span of the measured steps:
 * dur ≈ alphaUs + betaUsPerByte · bytes (least squares). When every transfer has the same
 * size the two cannot be told apart and the cost is taken as per byte (alpha 0); a negative
 * fitted coefficient is dropped and the other refitted alone.
 */
export interface CommModel {
  alphaUs: number;
  betaUsPerByte: number;
  /** Comm spans the fit used. */
  spans: number;
  fit: 'linear' | 'per-byte' | 'per-transfer' | 'none';
}

export interface DataParallelLane {
  lane: number;
  id: string;
  /** `plan.shards[lane]`, null when the plan does not say. */
  rows: number | null;
  /** Medians over steps, µs. */
  computePerStepUs: number;
  commPerStepUs: number;
  exposedCommPerStepUs: number;
  /** compute + comm. */
  busyPerStepUs: number;
  /** computePerStepUs / rows. */
  perRowComputeUs: number | null;
  /** computePerStepUs / median of the other lanes' (1 with one lane). */
  slowdown: number;
  straggler: boolean;
  /** Median over steps of idle with cause collective (waiting for the slowest device), µs. */
  syncWaitPerStepUs: number;
  /** Σ collective idle / Σ step windows. */
  syncWaitShare: number;
  /** Σ comm / Σ compute (0 without compute). */
  commComputeRatio: number;
  /** Mean per step: comm spans, and bytes of transfers that scale with the batch (scatter, gather, p2p) and of fixed-size collectives (all-reduce, broadcast, barrier). */
  transfersPerStep: number;
  scaledBytesPerStep: number;
  fixedBytesPerStep: number;
}

export interface DataParallelAnalysis {
  lanes: DataParallelLane[];
  /** Lanes flagged as stragglers, slowest first. */
  stragglers: number[];
  threshold: number;
  /** Σ collective idle / Σ device time. */
  syncWaitShare: number;
  /** Σ comm / Σ compute. */
  commComputeRatio: number;
  /** Σ exposed comm / (Σ compute + Σ exposed comm): how much of the busy time is communication nothing hides. */
  exposedCommShare: number;
  commModel: CommModel;
}

/** Least-squares fit of dur = α + β·bytes over the comm spans of the measured steps. */
export function fitCommModel(ix: SpanIndex): CommModel {
  const s = ix.trace.spans;
  let n = 0;
  let sx = 0;
  let sy = 0;
  let sxx = 0;
  let sxy = 0;
  for (let j = 0; j < ix.busy.length; j++) {
    const i = ix.busy[j];
    if (s.kind[i] !== SpanKind.comm) continue;
    const x = s.bytes[i];
    const y = s.dur[i];
    n++;
    sx += x;
    sy += y;
    sxx += x * x;
    sxy += x * y;
  }
  if (n === 0) return { alphaUs: 0, betaUsPerByte: 0, spans: 0, fit: 'none' };
  const perByte = (): CommModel =>
    sxx > 0 ? { alphaUs: 0, betaUsPerByte: sxy / sxx, spans: n, fit: 'per-byte' } : { alphaUs: sy / n, betaUsPerByte: 0, spans: n, fit: 'per-transfer' };
  const v = n * sxx - sx * sx;
  // Relative test: bytes that are all equal leave v at rounding noise.
  if (n < 2 || !(v > 1e-9 * n * sxx)) return perByte();
  const beta = (n * sxy - sx * sy) / v;
  const alpha = (sy - beta * sx) / n;
  if (alpha < 0) return perByte();
  if (beta < 0) return { alphaUs: sy / n, betaUsPerByte: 0, spans: n, fit: 'per-transfer' };
  return { alphaUs: alpha, betaUsPerByte: beta, spans: n, fit: 'linear' };
}

/** The data-parallel analysis, or null when the trace is not a data-parallel run. */
export function analyseDataParallel(ix: SpanIndex, cells: BreakdownCells, plan: PlanView, threshold = STRAGGLER_THRESHOLD): DataParallelAnalysis | null {
  const { trace, nLanes, nSteps, stepUs } = ix;
  if (trace.meta.plan.mode !== 'data' || nLanes === 0 || nSteps === 0) return null;
  const s = trace.spans;
  const transfers = new Float64Array(nLanes);
  const scaled = new Float64Array(nLanes);
  const fixed = new Float64Array(nLanes);
  for (let j = 0; j < ix.busy.length; j++) {
    const i = ix.busy[j];
    if (s.kind[i] !== SpanKind.comm) continue;
    const l = s.lane[i];
    transfers[l]++;
    // Collectives (all-reduce of gradients, broadcast of weights) move a fixed payload; the
    // batch's rows (scatter, gather) grow with the batch.
    if (isCollectiveCode(s.comm[i])) fixed[l] += s.bytes[i];
    else scaled[l] += s.bytes[i];
  }
  let windowSum = 0;
  for (let p = 0; p < nSteps; p++) windowSum += stepUs[p];
  const perStep = (l: number, f: 'compute' | 'comm' | 'exposed' | 'collective'): number[] => Array.from({ length: nSteps }, (_, p) => cell(cells, l, p, f));
  const sumOf = (xs: number[]): number => xs.reduce((a, b) => a + b, 0);
  const rows = plan.shards !== null && plan.shards.length === nLanes ? plan.shards : null;
  let totCompute = 0;
  let totComm = 0;
  let totExposed = 0;
  let totSync = 0;
  const base = trace.lanes.map((ln, l) => {
    const compute = perStep(l, 'compute');
    const comm = perStep(l, 'comm');
    const exposed = perStep(l, 'exposed');
    const sync = perStep(l, 'collective');
    const cSum = sumOf(compute);
    const mSum = sumOf(comm);
    totCompute += cSum;
    totComm += mSum;
    totExposed += sumOf(exposed);
    totSync += sumOf(sync);
    const computePerStepUs = median(compute);
    const commPerStepUs = median(comm);
    const r = rows ? rows[l] : null;
    return {
      lane: l,
      id: trace.meta.devices[ln.device]?.id ?? ln.label,
      rows: r,
      computePerStepUs,
      commPerStepUs,
      exposedCommPerStepUs: median(exposed),
      busyPerStepUs: computePerStepUs + commPerStepUs,
      perRowComputeUs: r !== null && r > 0 ? computePerStepUs / r : null,
      slowdown: 1,
      straggler: false,
      syncWaitPerStepUs: median(sync),
      syncWaitShare: windowSum > 0 ? sumOf(sync) / windowSum : 0,
      commComputeRatio: cSum > 0 ? mSum / cSum : 0,
      transfersPerStep: transfers[l] / nSteps,
      scaledBytesPerStep: scaled[l] / nSteps,
      fixedBytesPerStep: fixed[l] / nSteps,
    };
  });
  for (const ln of base) {
    const others = base.filter((o) => o.lane !== ln.lane).map((o) => o.computePerStepUs);
    const ref = others.length > 0 ? median(others) : ln.computePerStepUs;
    ln.slowdown = ref > 0 ? ln.computePerStepUs / ref : 1;
    ln.straggler = others.length > 0 && ln.slowdown > 1 + threshold;
  }
  const stragglers = base.filter((l) => l.straggler).sort((a, b) => b.slowdown - a.slowdown).map((l) => l.lane);
  return {
    lanes: base,
    stragglers,
    threshold,
    syncWaitShare: windowSum > 0 ? totSync / (windowSum * nLanes) : 0,
    commComputeRatio: totCompute > 0 ? totComm / totCompute : 0,
    exposedCommShare: totCompute + totExposed > 0 ? totExposed / (totCompute + totExposed) : 0,
    commModel: fitCommModel(ix),
  };
}
