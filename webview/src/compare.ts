/**
 * The compare view's alignment by step: the two runs are matched by step index (steps are
 * in the trace), each run's view time starts where its step starts, and a table gives each
 * step's time in both runs and the difference. Choosing a step aligns the runs there.
 */
import type { StepWindow } from '../../src/profiler/trace-format';
import type { Run } from './data';
import { el } from './dom';
import { formatPercent, formatSigned, formatUs } from './format';

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
export function alignAtStep(runs: readonly Run[], index: number): { v0: number; v1: number } | null {
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
export function firstCommonStep(runs: readonly Run[]): number | null {
  if (runs.length < 2) return null;
  const d = stepDiffs(runs[0].trace.steps, runs[1].trace.steps);
  return d.length > 0 ? d[0].index : null;
}

/** Fills `root` with the per-step table; `onAlign` is called with the step chosen. */
export function renderSteps(root: HTMLElement, runs: readonly Run[], aligned: number | null, onAlign: (index: number) => void): void {
  root.replaceChildren();
  root.hidden = runs.length < 2;
  if (runs.length < 2) return;
  root.append(el('h2', 'px-side-heading', 'Steps: B − A'));
  const diffs = stepDiffs(runs[0].trace.steps, runs[1].trace.steps);
  if (diffs.length === 0) {
    root.append(el('p', 'px-muted', 'The runs have no step in common; they are aligned at their first span.'));
    return;
  }
  root.append(el('p', 'px-muted px-steps-hint', 'Runs aligned at the start of the step marked ▶; choose a step to align there.'));
  const table = el('table', 'px-steps-table');
  const head = el('tr');
  for (const h of ['step', 'A', 'B', 'B − A']) {
    const th = el('th', '', h);
    th.scope = 'col';
    head.append(th);
  }
  const thead = el('thead');
  thead.append(head);
  const tbody = el('tbody');
  for (const d of diffs) {
    const tr = el('tr', 'px-steps-row');
    tr.tabIndex = 0;
    tr.dataset['step'] = String(d.index);
    tr.setAttribute('aria-selected', String(d.index === aligned));
    const delta = d.bUs - d.aUs;
    const rel = d.aUs > 0 ? ` (${delta >= 0 ? '+' : '−'}${formatPercent(Math.abs(delta) / d.aUs, 0)})` : '';
    const cls = Math.abs(delta) < 1e-9 ? '' : delta < 0 ? 'px-faster' : 'px-slower';
    tr.append(
      el('td', '', `${d.index === aligned ? '▶ ' : ''}${d.index}`),
      el('td', '', formatUs(d.aUs)),
      el('td', '', formatUs(d.bUs)),
      el('td', cls, `${formatSigned(delta)}${rel}`),
    );
    const go = (): void => onAlign(d.index);
    tr.addEventListener('click', go);
    tr.addEventListener('keydown', (e) => {
      if (e.key === 'Enter' || e.key === ' ') {
        e.preventDefault();
        go();
      }
    });
    tbody.append(tr);
  }
  table.append(thead, tbody);
  root.append(table);
}
