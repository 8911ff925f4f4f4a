/**
 * The DOM parts around the timeline: the legend, the summary strip (per-device stacked bars,
 * step time, speedup, bubble fraction, numerical check, the step-time difference of two
 * runs), the findings list and the breakdown of a brushed range. All text goes in through
 * `textContent`; widths through the CSSOM (allowed by the page's style-src policy).
 */
import type { Finding } from '../../src/profiler/findings';
import { IDLE_SPAN_CAUSES, SpanKind, type IdleCauseOfSpan } from '../../src/profiler/span-vocabulary';
import type { Run, SummaryView } from './data';
import { displayText, formatBytes, formatPercent, formatSigned, formatUs } from './format';
import { ROWS_PER_LANE, ROW_COMM, ROW_STATE, visibleSpan } from './model';
import { el } from './dom';

// -----------------------------------------------------------------------------------------
// Summary strip

/** CSS class suffix (`px-k-…`) and words of each idle cause's bar segment. */
const IDLE_SEGMENT_CLASS: Record<IdleCauseOfSpan, string> = { bubble: 'bubble', collective: 'collective', host: 'host', other: 'idle-other', backpressure: 'backpressure' };
const IDLE_SEGMENT_WORDS: Record<IdleCauseOfSpan, string> = { bubble: 'bubble', collective: 'collective wait', host: 'host', other: 'other', backpressure: 'backpressure' };

/** A stacked bar of compute / comm / idle-by-cause for one device. */
function deviceBar(d: SummaryView['devices'][number]): HTMLElement {
  const total = d.computeUs + d.commUs + d.idleUs;
  const bar = el('div', 'px-bar');
  bar.setAttribute('role', 'img');
  const parts: [string, number, string][] = [
    ['px-k-compute', d.computeUs, 'compute'],
    ['px-k-comm', d.commUs, 'comm'],
    // One hatched segment per idle cause; idle the summary gives no cause for counts as other.
    ...IDLE_SPAN_CAUSES.map((c): [string, number, string] => [
      `px-k-${IDLE_SEGMENT_CLASS[c]}`,
      c === 'other' ? Math.max(0, d.idleUs - IDLE_SPAN_CAUSES.reduce((a, k) => (k === 'other' ? a : a + d.idleByCause[k]), 0)) : d.idleByCause[c],
      `idle: ${IDLE_SEGMENT_WORDS[c]}`,
    ]),
  ];
  const words: string[] = [];
  for (const [cls, us, name] of parts) {
    if (!(us > 0) || !(total > 0)) continue;
    const seg = el('span', `px-seg ${cls}`);
    seg.style.width = `${(100 * us) / total}%`;
    seg.title = `${name}: ${formatUs(us)} (${formatPercent(us / total)})`;
    bar.append(seg);
    words.push(`${name} ${formatPercent(us / total)}`);
  }
  bar.setAttribute('aria-label', words.join(', ') || 'no time recorded');
  return bar;
}

function metric(label: string, value: string, cls = ''): HTMLElement {
  const m = el('div', `px-metric ${cls}`);
  m.append(el('span', 'px-metric-label', `${label}:`), ' ', el('span', 'px-metric-value', value));
  return m;
}

/**
 * Memory per device: each device's total (parameters + activations, + gradients, optimizer
 * state and stored activations when training), against the capacity when one was given, and
 * the runner process's measured growth, which is process-wide.
 */
function memoryMetric(m: NonNullable<SummaryView['memory']>): HTMLElement {
  const over = m.devices.filter((d) => d.fits === false);
  const devices = m.devices
    .slice(0, 8)
    .map((d) => `${displayText(d.id, 40)} ${formatBytes(d.totalBytes)} (parameters ${formatBytes(d.parameterBytes)}, activations ${formatBytes(d.activationBytes)}${d.trainingBytes > 0 ? `, training state ${formatBytes(d.trainingBytes)}` : ''})`)
    .join(' · ');
  const more = m.devices.length > 8 ? ` · ${m.devices.length - 8} more` : '';
  const measured = m.processGrowthBytes !== null ? ` — runner process grew ${formatBytes(m.processGrowthBytes)} (measured, process-wide: all devices share it)` : '';
  const cap = m.capacityBytes !== null ? ` — capacity ${formatBytes(m.capacityBytes)}: ${over.length > 0 ? `${over.length} device${over.length === 1 ? '' : 's'} over; fits: ${m.fitting.map((f) => displayText(f, 40)).join(', ') || 'no plan'}` : 'fits'}` : '';
  const metricEl = metric('memory per device', `${devices}${more}${measured}${cap}`, `px-memory${over.length > 0 ? ' px-bad' : ''}`);
  metricEl.title = 'Parameters are exact; activations are computed from the shapes the run produced, not measured (the CPU provider reports no memory).';
  return metricEl;
}

export function renderSummary(root: HTMLElement, runs: Run[]): void {
  root.replaceChildren();
  const compare = runs.length > 1;
  runs.forEach((run, ri) => {
    const s = run.summary;
    const box = el('section', 'px-summary-run');
    const head = el('div', 'px-summary-head');
    if (compare) head.append(el('span', 'px-run-letter', String.fromCharCode(65 + ri)));
    const title = el('span', 'px-summary-title', displayText(run.title, 160));
    title.dir = 'auto';
    // Long titles are cut with an ellipsis; the whole title is the tooltip.
    title.title = displayText(run.title, 1000);
    head.append(title);
    const meta = run.trace.meta;
    head.append(el('span', 'px-badge', `${meta.mode} · ${displayText(meta.source, 40)}`));
    if (run.predicted) head.append(el('span', 'px-badge px-badge-predicted', 'predicted'));
    if (run.emulated) head.append(el('span', 'px-badge px-badge-emulated', 'emulated link'));
    box.append(head);
    const metrics = el('div', 'px-metrics');
    if (s?.quality) {
      // First, so that a poor run says so before its numbers.
      const q = s.quality;
      const cls = q.verdict === 'poor' ? 'px-bad' : q.verdict === 'good' ? 'px-ok' : 'px-warn';
      const m = metric('measurement quality', q.verdict === 'poor' ? 'poor: timings unreliable' : q.verdict, `px-quality ${cls}`);
      if (q.reasons.length > 0) {
        m.title = q.reasons.map((r) => displayText(r, 300)).join('\n');
        if (q.verdict !== 'good') m.append(el('span', 'px-quality-reason', displayText(q.reasons[0], 300)));
      }
      metrics.append(m);
    }
    if (s?.stepTimeUs) {
      metrics.append(metric('step time', `${formatUs(s.stepTimeUs.median)} (p10 ${formatUs(s.stepTimeUs.p10)}, p90 ${formatUs(s.stepTimeUs.p90)})`, 'px-step-time'));
    }
    if (s?.throughputPerS != null) metrics.append(metric('throughput', `${s.throughputPerS.toFixed(1)} samples/s`));
    if (s) {
      const iv = s.speedupInterval ? ` (90% ${s.speedupInterval.lo.toFixed(2)}–${s.speedupInterval.hi.toFixed(2)}×)` : '';
      const unreliable = s.speedupReliable === false;
      const value = s.speedup != null ? `${s.speedup.toFixed(2)}×${iv} vs one device${unreliable ? ' (unreliable)' : ''}` : 'no baseline run';
      metrics.append(metric('speedup', value, unreliable ? 'px-warn' : ''));
    }
    if (s?.bubbleFraction != null) metrics.append(metric('bubble fraction', formatPercent(s.bubbleFraction)));
    if (s?.storedActivations) {
      const a = s.storedActivations;
      const stages = a.stages.map((st) => `stage ${st.stage}: ${st.peakMicroBatches} of ${a.microBatches} (${formatBytes(st.bytes)})`).join(', ');
      metrics.append(metric('stored activations', `${a.schedule}, peak micro-batches per stage — ${stages}`, 'px-stored-activations'));
    }
    if (s?.memory) metrics.append(memoryMetric(s.memory));
    if (s?.gpuBusy) {
      const text = s.gpuBusy
        .map((g) => `${displayText(g.device, 40)} ${formatPercent(g.share)} of its operator-profiled runs (${g.kernels} dispatches over ${g.runs} runs)`)
        .join(' · ');
      const m = metric('GPU busy', text, 'px-gpu-busy');
      m.title = "From the GPU's own timestamps of the operator-profiled runs: the time the GPU ran a dispatch, overlapping dispatches counted once, over the runs' wall time. The timed steps carry no GPU timestamps.";
      metrics.append(m);
    }
    if (s?.numericalCheck) {
      const nc = s.numericalCheck;
      const l2 = nc.l2Tol !== null && nc.maxRelL2 !== null ? `, rel L2 ${nc.maxRelL2.toExponential(2)}` : '';
      const m = metric('numerics', `${nc.ok ? 'ok' : 'MISMATCH'}: max abs ${nc.maxAbsErr.toExponential(2)}, max rel ${nc.maxRelErr.toExponential(2)}${l2}`, nc.ok ? 'px-ok' : 'px-bad');
      m.title =
        nc.l2Tol !== null
          ? `Against ${nc.reference}. A trained parameter passes element-wise, or on its relative L2 error (tolerance ${nc.l2Tol.toExponential(0)}): float32 reordering can flip a ReLU for a few elements, which moves the run a little; a wrong gradient moves every element.`
          : `Against ${nc.reference}.`;
      metrics.append(m);
    } else if (s) metrics.append(metric('numerics', 'not checked'));
    if (!s) metrics.append(metric('summary', 'computing…'));
    box.append(metrics);
    if (s && s.devices.length > 0) {
      const table = el('div', 'px-devices');
      for (const d of s.devices) {
        const row = el('div', 'px-device');
        const label = el('span', 'px-device-label', displayText(d.label, 120));
        label.dir = 'auto';
        label.title = displayText(d.label, 1000);
        const total = d.computeUs + d.commUs + d.idleUs;
        const pct = el(
          'span',
          'px-device-pct',
          total > 0 ? `${formatPercent(d.computeUs / total, 0)} compute · ${formatPercent(d.commUs / total, 0)} comm · ${formatPercent(d.idleUs / total, 0)} idle` : '–',
        );
        row.append(label, deviceBar(d), pct);
        table.append(row);
      }
      box.append(table);
    }
    root.append(box);
  });
  if (compare) {
    const a = runs[0].summary?.stepTimeUs?.median;
    const b = runs[1].summary?.stepTimeUs?.median;
    const diff = el('div', 'px-compare-diff');
    if (a != null && b != null && a > 0) {
      const d = b - a;
      const verdict = Math.abs(d) < 1e-9 ? 'same step time' : d < 0 ? 'B is faster' : 'B is slower';
      diff.textContent = `Step time B − A: ${formatSigned(d)} (${d >= 0 ? '+' : '−'}${formatPercent(Math.abs(d) / a)}), ${verdict}.`;
    } else diff.textContent = 'Step time difference: not available (a run has no step times).';
    root.append(diff);
  }
}

// -----------------------------------------------------------------------------------------
// Findings

export function renderFindings(
  root: HTMLElement,
  runs: Run[],
  onSelect: (run: number, index: number, button: HTMLButtonElement) => void,
): HTMLButtonElement[] {
  root.replaceChildren();
  const heading = el('h2', 'px-side-heading', 'Findings');
  root.append(heading);
  const buttons: HTMLButtonElement[] = [];
  const list = el('ul', 'px-findings');
  runs.forEach((run, ri) => {
    run.findings.forEach((f: Finding, fi) => {
      const li = el('li');
      const b = el('button', `px-finding px-sev-${f.severity}`);
      b.type = 'button';
      b.setAttribute('aria-pressed', 'false');
      const top = el('span', 'px-finding-top');
      top.append(el('span', `px-sev px-sev-${f.severity}`, f.severity));
      if (runs.length > 1) top.append(el('span', 'px-run-letter', String.fromCharCode(65 + ri)));
      top.append(el('span', 'px-finding-id', displayText(f.id, 60)));
      if (f.heldBack) {
        top.append(el('span', 'px-badge px-held-back', 'held back'));
        b.title = displayText(f.heldBack.reason, 600);
      }
      const msg = el('span', 'px-finding-msg', displayText(f.message, 600));
      msg.dir = 'auto';
      b.append(top, msg);
      if (f.change.description) b.append(el('span', 'px-finding-change', displayText(f.change.description, 400)));
      if (f.predictedStepUs != null && Number.isFinite(f.currentStepUs)) {
        const gain = (f.predictedStepUs - f.currentStepUs) / f.currentStepUs;
        b.append(
          el(
            'span',
            'px-finding-pred',
            `predicted step: ${formatUs(f.currentStepUs)} → ${formatUs(f.predictedStepUs)} (${gain <= 0 ? '−' : '+'}${formatPercent(Math.abs(gain), 0)})`,
          ),
        );
      }
      b.addEventListener('click', () => onSelect(ri, fi, b));
      li.append(b);
      list.append(li);
      buttons.push(b);
    });
  });
  if (buttons.length === 0) root.append(el('p', 'px-muted', 'No findings for this run.'));
  else root.append(list);
  return buttons;
}

// -----------------------------------------------------------------------------------------
// Range breakdown

export interface LaneBreakdown {
  run: number;
  lane: number;
  label: string;
  computeUs: number;
  commUs: number;
  idleUs: number;
}

/** Compute / comm / idle time of each lane inside view time [v0, v1] (top-level spans, clipped). */
export function rangeBreakdown(runs: Run[], v0: number, v1: number): LaneBreakdown[] {
  const out: LaneBreakdown[] = [];
  runs.forEach((run, ri) => {
    const p = run.prepared;
    const sp = run.trace.spans;
    const t0 = v0 + run.offsetUs;
    const t1 = v1 + run.offsetUs;
    run.trace.lanes.forEach((lane, li) => {
      const acc = [0, 0, 0];
      for (const kind of [ROW_STATE, ROW_COMM]) {
        const r = li * ROWS_PER_LANE + kind;
        const [a, b] = visibleSpan(p.rowOffsets[r], p.rowOffsets[r + 1], (q) => sp.start[p.order[q]], p.maxEnd, t0, t1);
        for (let q = a; q < b; q++) {
          const i = p.order[q];
          if (sp.parent[i] >= 0) continue;
          const s = Math.max(t0, sp.start[i]);
          const e = Math.min(t1, sp.start[i] + sp.dur[i]);
          if (e > s) acc[sp.kind[i] === SpanKind.compute ? 0 : sp.kind[i] === SpanKind.comm ? 1 : 2] += e - s;
        }
      }
      out.push({ run: ri, lane: li, label: lane.label, computeUs: acc[0], commUs: acc[1], idleUs: acc[2] });
    });
  });
  return out;
}

export function renderRange(root: HTMLElement, runs: Run[], range: { v0: number; v1: number } | null): LaneBreakdown[] {
  root.replaceChildren();
  root.append(el('h2', 'px-side-heading', 'Selected range'));
  if (!range) {
    root.append(el('p', 'px-muted', 'Drag on the time axis to select a range and see its breakdown.'));
    return [];
  }
  // Every figure with the same precision (three significant digits), each with its unit.
  root.append(el('p', 'px-range-title', `${formatUs(range.v0)} – ${formatUs(range.v1)} (${formatUs(range.v1 - range.v0)})`));
  const rows = rangeBreakdown(runs, range.v0, range.v1);
  const table = el('table', 'px-range-table');
  const thead = el('thead');
  const hr = el('tr');
  for (const h of ['lane', 'compute', 'comm', 'idle', '']) hr.append(el('th', '', h));
  thead.append(hr);
  const tbody = el('tbody');
  for (const r of rows) {
    const tr = el('tr');
    const total = r.computeUs + r.commUs + r.idleUs;
    const name = el('td', 'px-range-lane', `${runs.length > 1 ? `${String.fromCharCode(65 + r.run)} · ` : ''}${displayText(r.label, 80)}`);
    name.dir = 'auto';
    tr.append(name, el('td', '', formatUs(r.computeUs)), el('td', '', formatUs(r.commUs)), el('td', '', formatUs(r.idleUs)));
    const barCell = el('td');
    const bar = el('div', 'px-bar px-bar-small');
    for (const [cls, us] of [
      ['px-k-compute', r.computeUs],
      ['px-k-comm', r.commUs],
      ['px-k-idle-other', r.idleUs],
    ] as const) {
      if (!(us > 0) || !(total > 0)) continue;
      const seg = el('span', `px-seg ${cls}`);
      seg.style.width = `${(100 * us) / total}%`;
      bar.append(seg);
    }
    barCell.append(bar);
    tr.append(barCell);
    tbody.append(tr);
  }
  table.append(thead, tbody);
  root.append(table);
  return rows;
}

