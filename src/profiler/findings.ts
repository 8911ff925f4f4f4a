/**
 * Findings: rules that read a trace and say what is slow, what to change, and what the
 * change should gain. Each prediction is computed from the measured costs in the trace.
 */
import type { Trace } from './trace-format';
import type { ProfileSummary } from './summary';
import { median } from './stats';

export type Severity = 'info' | 'warning' | 'critical';

export interface Finding {
  /** Rule id, e.g. `straggler`. */
  id: string;
  severity: Severity;
  /** One sentence: what is wrong and where. */
  message: string;
  evidence: {
    /** Lanes the finding is about. */
    lanes: number[];
    /** A representative time range, µs on the trace clock. */
    startUs: number;
    endUs: number;
    /** The numbers the rule used. */
    numbers: Record<string, number>;
  };
  /** The suggested change, as words and as plan parameters. */
  change: { description: string; params: Record<string, unknown> };
  /** Median step time now and predicted after the change, µs. */
  currentStepUs: number;
  predictedStepUs: number | null;
}

/** Threshold: a device is a straggler when its compute per step exceeds the others' median by this factor. */
export const STRAGGLER_FACTOR = 1.2;

/** The step whose duration is closest to the median, as evidence. */
function medianStep(trace: Trace): { startUs: number; endUs: number } {
  const med = median(trace.steps.map((w) => w.endUs - w.startUs));
  let best = trace.steps[0];
  for (const w of trace.steps) if (Math.abs(w.endUs - w.startUs - med) < Math.abs(best.endUs - best.startUs - med)) best = w;
  return best ? { startUs: best.startUs, endUs: best.endUs } : { startUs: 0, endUs: 0 };
}

/**
 * Data parallel: a device whose compute per step is well above its peers' holds every step
 * back (the others wait at the step barrier). Rebalancing the shards in proportion to each
 * device's measured throughput equalises their compute.
 */
function stragglerRule(trace: Trace, summary: ProfileSummary): Finding[] {
  if (trace.meta.mode !== 'data' || summary.devices.length < 2) return [];
  const shards = trace.meta.plan['shards'];
  if (!Array.isArray(shards) || shards.length !== summary.devices.length) return [];
  const rows = shards as number[];
  const c = summary.devices.map((d) => d.computePerStepUs);
  const out: Finding[] = [];
  const slowest = c.indexOf(Math.max(...c));
  const others = c.filter((_, i) => i !== slowest);
  const ref = median(others);
  if (!(ref > 0) || c[slowest] <= STRAGGLER_FACTOR * ref) return out;
  // Rebalance: rows ∝ throughput (rows per µs of compute).
  const perRow = c.map((ci, i) => ci / Math.max(1, rows[i]));
  const total = rows.reduce((a, b) => a + b, 0);
  const inv = perRow.map((r) => 1 / r);
  const invSum = inv.reduce((a, b) => a + b, 0);
  const next = inv.map((v) => Math.max(1, Math.round((total * v) / invSum)));
  // Fix rounding so the shards still add up to the batch.
  let diff = total - next.reduce((a, b) => a + b, 0);
  for (let i = 0; diff !== 0; i = (i + 1) % next.length) {
    const step = diff > 0 ? 1 : -1;
    if (next[i] + step >= 1) {
      next[i] += step;
      diff -= step;
    }
  }
  const current = summary.stepTimeUs.median;
  const maxNow = Math.max(...c);
  const maxNext = Math.max(...next.map((r, i) => r * perRow[i]));
  const predicted = current - maxNow + maxNext;
  const ev = medianStep(trace);
  const dev = summary.devices[slowest];
  out.push({
    id: 'straggler',
    severity: c[slowest] > 2 * ref ? 'critical' : 'warning',
    message: `${dev.id} is a straggler: its compute takes ${(c[slowest] / 1000).toFixed(1)} ms per step against ${(ref / 1000).toFixed(1)} ms on the other devices, which wait for it at every step.`,
    evidence: {
      lanes: summary.devices.map((_, i) => i),
      startUs: ev.startUs,
      endUs: ev.endUs,
      numbers: { stragglerComputeUs: c[slowest], othersMedianComputeUs: ref, ratio: c[slowest] / ref },
    },
    change: {
      description: `Split the batch unevenly by measured throughput: shards ${rows.join('/')} → ${next.join('/')}.`,
      params: { shards: next },
    },
    currentStepUs: current,
    predictedStepUs: predicted,
  });
  return out;
}

/** Runs every rule on a trace. */
export function findings(trace: Trace, summary: ProfileSummary): Finding[] {
  return [...stragglerRule(trace, summary)];
}
