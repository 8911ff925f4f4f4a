/**
 * The compare view's per-step table: each step both runs have (steps.ts matches them by
 * index), its time in both runs and the difference. Choosing a step aligns the runs there.
 */
import type { Run } from './data';
import { el } from './dom';
import { formatPercent, formatSigned, formatUs } from './format';
import { stepDiffs } from './steps';

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
