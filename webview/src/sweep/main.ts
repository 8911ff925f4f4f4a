/**
 * Entry of the sweep panel's bundle (webview/dist/sweep.js + sweep.css): the sweep's error
 * line, its table (table.ts) and its efficiency chart (chart.ts). It posts `ready`, draws
 * the `sweep` the host sends, and posts `selectPlan` when a row is chosen; the host opens
 * that plan's timelines. Styles: the timeline's theme variables plus sweep.css.
 */
import '../timeline.css';
import './sweep.css';
import { createHost } from '../host';
import { readToSweepView, SWEEP_PROTOCOL_VERSION, type FromSweepView, type ToSweepView } from '../sweep-protocol';
import { renderChart } from './chart';
import { errorLine } from './cells';
import { renderTable } from './table';

function el<K extends keyof HTMLElementTagNameMap>(tag: K, className: string, text?: string): HTMLElementTagNameMap[K] {
  const e = document.createElement(tag);
  e.className = className;
  if (text !== undefined) e.textContent = text;
  return e;
}

function draw(root: HTMLElement, m: Extract<ToSweepView, { type: 'sweep' }>, post: (msg: FromSweepView) => void): void {
  const r = m.result;
  root.replaceChildren();
  const header = el('header', 'px-header');
  const h1 = el('h1', 'px-title', m.title || `${r.model} · sweep over ${r.devices}`);
  h1.dir = 'auto';
  header.appendChild(h1);
  root.appendChild(header);
  root.appendChild(el('p', `px-sweep-meta quality-${r.measurementQuality.verdict}`, errorLine(r))).id = 'px-sweep-errors';
  root.appendChild(el('p', 'px-sweep-meta', `${r.settings.repeats} interleaved repetition${r.settings.repeats === 1 ? '' : 's'} of ${r.settings.steps} steps · best first (time per row) · predictions never use the plan's own runs`));
  if (m.tracesNote) root.appendChild(el('p', 'px-sweep-note', m.tracesNote)).id = 'px-sweep-traces-note';
  root.appendChild(renderTable(r, m.traces, (index) => post({ type: 'selectPlan', index, label: r.plans[index]!.label.slice(0, 1000) })));
  const chart = renderChart(r.scaling);
  if (chart && r.scaling) {
    root.appendChild(el('h2', 'px-sweep-h2', `Speedup against devices (data parallel, batch ${r.scaling.batch})`));
    root.appendChild(chart);
  }
  const notes = [
    ...r.notRunnable.map((n) => `${n.mode}: ${n.reason}`),
    ...r.skipped.map((s) => `skipped ${s.label}: ${s.reason}`),
    ...Object.entries(r.interference).map(([n, f]) => `interference of ${n} devices: compute ×${f.toFixed(2)} against one device`),
    ...r.measurementQuality.reasons,
  ];
  if (notes.length > 0) {
    root.appendChild(el('h2', 'px-sweep-h2', 'Notes'));
    const ul = el('ul', 'px-sweep-notes');
    for (const n of notes) ul.appendChild(el('li', '', n));
    root.appendChild(ul);
  }
}

function boot(): void {
  const host = createHost<FromSweepView>();
  document.documentElement.classList.add(host.kind === 'vscode' ? 'px-in-vscode' : 'px-standalone');
  const root = el('div', 'px-app px-sweep');
  document.body.appendChild(root);
  host.listen((data) => {
    const r = readToSweepView(data);
    if (!r.ok) {
      root.replaceChildren(el('div', 'px-error', r.error));
      host.post({ type: 'error', message: r.error });
      return;
    }
    draw(root, r.message, (m) => host.post(m));
  });
  host.post({ type: 'ready', protocol: SWEEP_PROTOCOL_VERSION });
}

if (document.readyState === 'loading') document.addEventListener('DOMContentLoaded', boot);
else boot();
