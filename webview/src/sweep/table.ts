/**
 * The sweep's table, best first as the result orders it: plan, measured median with its
 * p25–p75 interval (predicted-only rows say "predicted"), predicted step, error, efficiency,
 * bubble, communication share, memory per device and whether it fits. Text only (`textContent`).
 * A row whose traces are on disk is a button: click or Enter selects it.
 */
import type { SweepResult } from '../../../src/profiler/sweep/schema';
import type { PlanTraces } from '../sweep-protocol';
import { rowCells, SWEEP_COLUMNS } from './cells';

/** Builds the table; `onSelect(i)` runs when row `i` (with traces) is chosen. */
export function renderTable(r: SweepResult, traces: readonly PlanTraces[], onSelect: (index: number) => void): HTMLTableElement {
  const table = document.createElement('table');
  table.id = 'px-sweep-table';
  table.className = 'px-sweep-table';
  const head = table.createTHead().insertRow();
  for (const c of SWEEP_COLUMNS) {
    const th = document.createElement('th');
    th.scope = 'col';
    th.textContent = c;
    head.appendChild(th);
  }
  const body = table.createTBody();
  r.plans.forEach((p, i) => {
    const tr = body.insertRow();
    tr.className = `px-sweep-row ${p.kind}`;
    tr.dataset['index'] = String(i);
    tr.dataset['kind'] = p.kind;
    if (p.errorPct !== null) tr.dataset['error'] = p.errorPct.toFixed(2);
    for (const text of rowCells(p)) tr.insertCell().textContent = text;
    const assumptions = [p.predictionBasis, ...p.assumptions].filter((s) => s !== '');
    const t = traces[i];
    const selectable = t !== undefined && (t.predicted || t.measured);
    tr.title = [selectable ? 'Select to show its predicted timeline beside the measured one' : 'No traces of this plan on disk', ...assumptions].join('\n');
    if (!selectable) return;
    tr.tabIndex = 0;
    tr.classList.add('selectable');
    const select = (): void => {
      for (const other of body.querySelectorAll('tr.selected')) other.classList.remove('selected');
      tr.classList.add('selected');
      onSelect(i);
    };
    tr.addEventListener('click', select);
    tr.addEventListener('keydown', (e) => {
      if (e.key === 'Enter' || e.key === ' ') {
        e.preventDefault();
        select();
      }
    });
  });
  return table;
}
