/**
 * The compare view's alignment by step, without DOM: the two runs are matched by step index
 * (steps are in the trace), and each run's view time starts where its step starts.
 */
import type { StepWindow } from '../../src/profiler/trace-format';

/** What alignment reads and sets of a run (a `Run` of data.ts has both). */
export interface StepAligned {
  trace: { steps: readonly StepWindow[] };
  /** View time = trace time − offsetUs. */
  offsetUs: number;
}

/** One step present in both runs. */
export interface StepDiff {
  index: number;
  aUs: number;
  bUs: number;
}

function byIndex(steps: readonly StepWindow[]): Map<number, StepWindow> {
  const m = new Map<number, StepWindow>();
  for (const s of steps) if (!m.has(s.index)) m.set(s.index, s);
  return m;
}

/** The steps both runs have, by index, with their lengths. */
export function stepDiffs(a: readonly StepWindow[], b: readonly StepWindow[]): StepDiff[] {
  const mb = byIndex(b);
  const out: StepDiff[] = [];
  for (const s of [...byIndex(a).values()].sort((x, y) => x.index - y.index)) {
    const t = mb.get(s.index);
    if (t) out.push({ index: s.index, aUs: s.endUs - s.startUs, bUs: t.endUs - t.startUs });
  }
  return out;
}

/**
 * Sets each run's offset so that step `index` starts at view time 0 in every run that has
 * it; returns the step's window in view time of the first run (null when no run has it).
 */
export function alignAtStep(runs: readonly StepAligned[], index: number): { v0: number; v1: number } | null {
  let window: { v0: number; v1: number } | null = null;
  for (const r of runs) {
    const s = byIndex(r.trace.steps).get(index);
    if (!s) continue;
    r.offsetUs = s.startUs;
    window ??= { v0: 0, v1: s.endUs - s.startUs };
  }
  return window;
}

/** The first step index both runs have, or null. */
export function firstCommonStep(runs: readonly StepAligned[]): number | null {
  if (runs.length < 2) return null;
  const d = stepDiffs(runs[0].trace.steps, runs[1].trace.steps);
  return d.length > 0 ? d[0].index : null;
}
