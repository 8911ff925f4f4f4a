/**
 * Which plans a sweep measures and which it only predicts. Pure: the plans come from the
 * device count and the lists the user gave; the runtime resolves pipeline cuts and runs them.
 *
 * Measured here (every plan that fits the machine's N devices of one kind):
 *  - data on 1..N devices, per batch;
 *  - pipeline with K = 2..N stages, per batch and micro-batch count M that divides it, with
 *    the partitioner's balanced cut and a shifted one (the first cut moved earlier), so the
 *    prediction is judged on more than the cut it was balanced for.
 * Predicted only (device counts this machine does not have, default 4 and 8): data, and a
 * pipeline with one stage per device at the largest M that divides the batch.
 */
import { makePlan, type Plan } from '../plan';

/** Modes a sweep accepts: the runnable ones and the ones it can only name. */
export const SWEEP_MODES = ['data', 'pipeline', 'tensor', 'hybrid'] as const;
export type SweepMode = (typeof SWEEP_MODES)[number];

/** Why a mode cannot be swept yet. */
export const NOT_RUNNABLE: Partial<Record<SweepMode, string>> = {
  tensor: 'not swept yet: run a tensor-parallel plan with `parallax profile --mode tensor`',
  hybrid: 'not runnable yet: no compiler runs data × pipeline products',
};

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
  for (const mode of s.modes) {
    const why = NOT_RUNNABLE[mode];
    if (why !== undefined) out.notRunnable.push({ mode, reason: why });
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
  const want = (m: SweepMode): boolean => s.modes.includes(m);
  for (const batch of s.batches) {
    if (want('data')) for (let n = 1; n <= s.count; n++) add('measured', n, batch, 'data');
    if (want('pipeline')) {
      for (let k = 2; k <= s.count; k++) {
        for (const cut of ['balanced', 'shifted'] as const) for (const m of s.microBatches) add('measured', k, batch, 'pipeline', m, cut);
      }
    }
  }
  const beyond = [...new Set(s.predictDevices)].filter((n) => n > s.count).sort((a, b) => a - b);
  for (const batch of s.batches) {
    for (const n of beyond) {
      if (want('data')) add('predicted', n, batch, 'data');
      if (want('pipeline')) {
        const m = [...s.microBatches].sort((a, b) => b - a).find((x) => batch % x === 0);
        if (m !== undefined) add('predicted', n, batch, 'pipeline', m, 'balanced');
      }
    }
  }
  return out;
}
