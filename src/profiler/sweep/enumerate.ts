/**
 * Which plans a sweep measures and which it only predicts. Pure: the plans come from the
 * device count and the lists the user gave; the runtime resolves pipeline cuts and runs them.
 *
 * Measured here (every plan that fits the machine's N devices of one kind):
 *  - data on 1..N devices, per batch;
 *  - pipeline with K = 2..N stages, per batch and micro-batch count M that divides it, with
 *    the partitioner's balanced cut and a shifted one (the first cut moved earlier), so the
 *    prediction is judged on more than the cut it was balanced for.
 *  - tensor on all N devices, per batch, when the shard planner finds something to split
 *    (the runtime asks it and passes its verdict in {@link SweepSpec.tensor});
 *  - hybrid data × tensor and data × pipeline on all N devices, for every D·T = N (or D·P = N)
 *    with both degrees at least 2, so only from 4 devices on.
 * Predicted only (device counts this machine does not have, default 4 and 8): data, a
 * pipeline with one stage per device at the largest M that divides the batch, tensor over
 * all of them when the planner splits the model, and the hybrids of that count (their shard
 * and stage segments are predicted from measured parts as tensor and pipeline plans' are).
 * Hybrid is named as needing 4 devices only when no count of the sweep reaches 4.
 */
import { makePlan, type Plan } from '../plan';

/** Modes a sweep accepts: the runnable ones and the ones it can only name. */
export const SWEEP_MODES = ['data', 'pipeline', 'tensor', 'hybrid'] as const;
export type SweepMode = (typeof SWEEP_MODES)[number];

/** Fewest devices a hybrid plan runs on: a data degree and a tensor (or pipeline) degree of at least 2 each. */
export const HYBRID_MIN_DEVICES = 4;

/** The shard planner's verdict on a model: it splits, or the one line saying why not. */
export type TensorVerdict = { splits: true } | { splits: false; reason: string };

/** Which pipeline cut a candidate uses. */
export type CutChoice = 'balanced' | 'shifted';

export interface SweepCandidate {
  /** Unique within the sweep; also the label shown. */
  label: string;
  /** The plan (pipeline cuts are resolved later, by {@link CutChoice}). */
  plan: Plan;
  devices: number;
  /** Run here, or predicted only. */
  kind: 'measured' | 'predicted';
  /** Pipeline only. */
  cut: CutChoice | null;
}

/** Pairs (d, k) with d · k = n and both at least 2, smallest data degree first. */
export function hybridDegrees(n: number): { data: number; inner: number }[] {
  const out: { data: number; inner: number }[] = [];
  for (let d = 2; d <= n / 2; d++) if (n % d === 0) out.push({ data: d, inner: n / d });
  return out;
}

export interface SweepSpec {
  /** Device kind, e.g. `cpu`. */
  deviceKind: string;
  /** Devices of that kind on this machine (the measured plans use 1..count). */
  count: number;
  modes: readonly SweepMode[];
  batches: readonly number[];
  microBatches: readonly number[];
  /** Device counts to predict beyond `count` (default 4 and 8). */
  predictDevices: readonly number[];
  steps: number;
  warmup: number;
  seed: number;
  /** Whether the shard planner splits the model (pure code cannot ask it); absent, tensor plans are listed as splitting. */
  tensor?: TensorVerdict;
}

export interface Enumeration {
  candidates: SweepCandidate[];
  notRunnable: { mode: string; reason: string }[];
  skipped: { label: string; reason: string }[];
}

const devSpec = (kind: string, n: number): string => `${kind}:${n}`;

/** Every plan of the sweep, measured ones first, in a stable order. */
export function enumerateSweep(s: SweepSpec): Enumeration {
  const out: Enumeration = { candidates: [], notRunnable: [], skipped: [] };
  const want = (m: SweepMode): boolean => s.modes.includes(m);
  const tensorOk = s.tensor === undefined || s.tensor.splits;
  if (want('tensor') && s.tensor && !s.tensor.splits) out.notRunnable.push({ mode: 'tensor', reason: `not applicable: ${s.tensor.reason}` });
  const beyond = [...new Set(s.predictDevices)].filter((n) => n > s.count).sort((a, b) => a - b);
  if (want('hybrid') && s.count < HYBRID_MIN_DEVICES && !beyond.some((n) => hybridDegrees(n).length > 0)) {
    out.notRunnable.push({
      mode: 'hybrid',
      reason: `needs ${HYBRID_MIN_DEVICES} devices (a data degree and a tensor or pipeline degree of at least 2 each); this machine has ${s.count} ${s.deviceKind}`,
    });
  }
  const base = (n: number, batch: number) => ({ devices: devSpec(s.deviceKind, n), batch, steps: s.steps, warmup: s.warmup, seed: s.seed });
  const add = (kind: SweepCandidate['kind'], n: number, batch: number, mode: 'data' | 'pipeline', m?: number, cut?: CutChoice): void => {
    const dev = devSpec(s.deviceKind, n);
    const label =
      mode === 'data' ? `data ${dev} b${batch}` : `pipeline ${dev} M=${m} b${batch}${cut === 'shifted' ? ' shifted cut' : ''}`;
    if (batch < n && mode === 'data') {
      out.skipped.push({ label, reason: `batch ${batch} has fewer rows than the ${n} devices` });
      return;
    }
    if (m !== undefined && batch % m !== 0) {
      out.skipped.push({ label, reason: `--micro-batches ${m} does not divide --batch ${batch}` });
      return;
    }
    const plan = mode === 'data' ? makePlan({ mode, ...base(n, batch) }) : makePlan({ mode, ...base(n, batch), microBatches: m, stages: n });
    out.candidates.push({ label, plan, devices: n, kind, cut: cut ?? null });
  };
  const addTensor = (kind: SweepCandidate['kind'], n: number, batch: number): void => {
    const plan = makePlan({ mode: 'tensor', ...base(n, batch) });
    out.candidates.push({ label: `tensor ${devSpec(s.deviceKind, n)} b${batch}`, plan, devices: n, kind, cut: null });
  };
  const addHybrid = (kind: SweepCandidate['kind'], n: number, batch: number): void => {
    for (const { data, inner } of hybridDegrees(n)) {
      const dev = devSpec(s.deviceKind, n);
      if (tensorOk) {
        const label = `hybrid ${dev} D=${data}×T=${inner} b${batch}`;
        if (batch % data !== 0) out.skipped.push({ label, reason: `--batch ${batch} does not split evenly over ${data} replicas` });
        else out.candidates.push({ label, plan: makePlan({ mode: 'hybrid', ...base(n, batch), data, tensor: inner }), devices: n, kind, cut: null });
      }
      const rows = batch / data;
      const m = [...s.microBatches].sort((a, b) => b - a).find((x) => Number.isInteger(rows) && rows % x === 0);
      const label = `hybrid ${dev} D=${data}×P=${inner} M=${m ?? '?'} b${batch}`;
      if (m === undefined) out.skipped.push({ label, reason: `no --micro-batches value divides the ${batch}/${data} rows of a replica` });
      else out.candidates.push({ label, plan: makePlan({ mode: 'hybrid', ...base(n, batch), data, pipeline: inner, microBatches: m }), devices: n, kind, cut: null });
    }
  };
  for (const batch of s.batches) {
    if (want('data')) for (let n = 1; n <= s.count; n++) add('measured', n, batch, 'data');
    if (want('pipeline')) {
      for (let k = 2; k <= s.count; k++) {
        for (const cut of ['balanced', 'shifted'] as const) for (const m of s.microBatches) add('measured', k, batch, 'pipeline', m, cut);
      }
    }
    if (want('tensor') && tensorOk && s.count >= 2) addTensor('measured', s.count, batch);
    if (want('hybrid') && s.count >= HYBRID_MIN_DEVICES) addHybrid('measured', s.count, batch);
  }
  for (const batch of s.batches) {
    for (const n of beyond) {
      if (want('data')) add('predicted', n, batch, 'data');
      if (want('pipeline')) {
        const m = [...s.microBatches].sort((a, b) => b - a).find((x) => batch % x === 0);
        if (m !== undefined) add('predicted', n, batch, 'pipeline', m, 'balanced');
      }
      if (want('tensor') && tensorOk) addTensor('predicted', n, batch);
      if (want('hybrid')) addHybrid('predicted', n, batch);
    }
  }
  return out;
}
