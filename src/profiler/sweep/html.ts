/**
 * The sweep as a standalone HTML page (`parallax sweep --html`): the table and an
 * efficiency chart (speedup against device count: measured points, predicted points and the
 * Amdahl curve of the serial fraction fitted to the predictions, with the ideal line). No
 * script at all; the style is allowed by its hash, as in the timeline report (html-report.ts).
 * Pure string work.
 */
import { TOOL_VERSION } from '../../common/version';
import { amdahlSpeedup } from '../analysis/scaling';
import { cspHash, escapeHtml } from '../html-report';
import { formatBytes } from '../units';
import type { SweepResult, SweepScaling } from './schema';

const CSS = `
:root { color-scheme: light dark; --fg: #1f2328; --muted: #656d76; --bg: #ffffff; --line: #d0d7de; --measured: #0969da; --predicted: #bc4c00; --ideal: #8c959f; }
@media (prefers-color-scheme: dark) { :root { --fg: #e6edf3; --muted: #8d96a0; --bg: #0d1117; --line: #30363d; --measured: #4493f8; --predicted: #f0883e; --ideal: #6e7681; } }
body { font: 13px/1.45 system-ui, sans-serif; color: var(--fg); background: var(--bg); margin: 24px; }
h1 { font-size: 18px; margin: 0 0 4px; } h2 { font-size: 15px; margin: 24px 0 8px; }
p.meta { color: var(--muted); margin: 0 0 12px; }
table { border-collapse: collapse; font-variant-numeric: tabular-nums; }
th, td { padding: 3px 10px; border-bottom: 1px solid var(--line); text-align: right; white-space: nowrap; }
th:first-child, td:first-child { text-align: left; }
tr.predicted td { color: var(--muted); font-style: italic; }
svg text { fill: var(--fg); font-size: 11px; } svg .axis { stroke: var(--line); }
svg .measured { fill: var(--measured); } svg .predicted { fill: var(--predicted); }
svg .curve { stroke: var(--predicted); fill: none; stroke-width: 2; } svg .ideal { stroke: var(--ideal); stroke-dasharray: 4 3; fill: none; }
ul.notes { color: var(--muted); }
`;

const us = (v: number | null): string => (v === null ? '–' : v >= 1000 ? `${(v / 1000).toFixed(2)} ms` : `${v.toFixed(0)} µs`);
const pct = (v: number | null, digits = 1): string => (v === null ? '–' : `${(v * 100).toFixed(digits)} %`);
const signed = (v: number | null): string => (v === null ? '–' : `${v > 0 ? '+' : ''}${v.toFixed(1)} %`);

/** The chart as inline SVG; empty when there is nothing to draw. */
export function scalingSvg(s: SweepScaling | null): string {
  if (!s || (s.measured.length === 0 && s.predicted.length === 0)) return '';
  const W = 520;
  const H = 320;
  const m = { l: 48, r: 150, t: 16, b: 40 };
  const maxN = Math.max(2, ...s.measured.map((p) => p.devices), ...s.predicted.map((p) => p.devices));
  const maxS = Math.max(1, ...s.measured.map((p) => p.speedup), ...s.predicted.map((p) => p.speedup)) * 1.1;
  const x = (n: number): number => m.l + ((n - 1) / (maxN - 1)) * (W - m.l - m.r);
  const y = (v: number): number => H - m.b - (v / maxS) * (H - m.t - m.b);
  const parts: string[] = [`<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" role="img" aria-label="speedup against device count">`];
  parts.push(`<line class="axis" x1="${m.l}" y1="${H - m.b}" x2="${W - m.r}" y2="${H - m.b}"/><line class="axis" x1="${m.l}" y1="${m.t}" x2="${m.l}" y2="${H - m.b}"/>`);
  for (let n = 1; n <= maxN; n++) {
    if (maxN > 10 && n % 2 === 1 && n !== 1) continue;
    parts.push(`<text x="${x(n).toFixed(1)}" y="${H - m.b + 16}" text-anchor="middle">${n}</text>`);
  }
  const ticks = 5;
  for (let i = 0; i <= ticks; i++) {
    const v = (maxS / ticks) * i;
    parts.push(`<text x="${m.l - 6}" y="${(y(v) + 4).toFixed(1)}" text-anchor="end">${v.toFixed(1)}×</text>`);
  }
  parts.push(`<text x="${((m.l + W - m.r) / 2).toFixed(0)}" y="${H - 6}" text-anchor="middle">devices</text>`);
  const ideal = Math.min(maxN, maxS);
  parts.push(`<line class="ideal" x1="${x(1)}" y1="${y(1)}" x2="${x(ideal).toFixed(1)}" y2="${y(ideal).toFixed(1)}"/>`);
  const f = s.predictedSerialFraction;
  if (f !== null) {
    const pts: string[] = [];
    for (let i = 0; i <= 60; i++) {
      const n = 1 + ((maxN - 1) * i) / 60;
      pts.push(`${x(n).toFixed(1)},${y(amdahlSpeedup(f, n)).toFixed(1)}`);
    }
    parts.push(`<polyline class="curve" points="${pts.join(' ')}"/>`);
  }
  for (const p of s.predicted) parts.push(`<rect class="predicted" data-devices="${p.devices}" x="${(x(p.devices) - 4).toFixed(1)}" y="${(y(p.speedup) - 4).toFixed(1)}" width="8" height="8"><title>predicted ${p.devices}: ${p.speedup.toFixed(2)}×</title></rect>`);
  for (const p of s.measured) parts.push(`<circle class="measured" data-devices="${p.devices}" cx="${x(p.devices).toFixed(1)}" cy="${y(p.speedup).toFixed(1)}" r="5"><title>measured ${p.devices}: ${p.speedup.toFixed(2)}×</title></circle>`);
  const lx = W - m.r + 12;
  parts.push(`<circle class="measured" cx="${lx}" cy="${m.t + 8}" r="5"/><text x="${lx + 10}" y="${m.t + 12}">measured</text>`);
  parts.push(`<rect class="predicted" x="${lx - 4}" y="${m.t + 24}" width="8" height="8"/><text x="${lx + 10}" y="${m.t + 32}">predicted</text>`);
  if (f !== null) parts.push(`<line class="curve" x1="${lx - 6}" y1="${m.t + 48}" x2="${lx + 6}" y2="${m.t + 48}"/><text x="${lx + 10}" y="${m.t + 52}">Amdahl f = ${f.toFixed(3)}</text>`);
  parts.push(`<line class="ideal" x1="${lx - 6}" y1="${m.t + 68}" x2="${lx + 6}" y2="${m.t + 68}"/><text x="${lx + 10}" y="${m.t + 72}">ideal (N×)</text>`);
  parts.push('</svg>');
  return parts.join('');
}

/** The page. */
export function renderSweepHtml(r: SweepResult): string {
  const rows = r.plans.map((p) => {
    const cells = [
      escapeHtml(p.label),
      p.kind,
      p.measuredUs === null ? '–' : `${us(p.measuredUs)} <small>[${us(p.measuredInterval?.lo ?? null)}–${us(p.measuredInterval?.hi ?? null)}]</small>`,
      us(p.predictedUs),
      signed(p.errorPct),
      pct(p.efficiency, 0),
      pct(p.bubble, 0),
      pct(p.commShare, 0),
      p.memoryPerDeviceBytes === null ? '–' : escapeHtml(formatBytes(p.memoryPerDeviceBytes)),
      p.fits === null ? '–' : p.fits ? 'yes' : 'NO',
      `<span title="${escapeHtml([p.predictionBasis, ...p.assumptions].join('\n'))}">${escapeHtml(p.predictionBasis)}</span>`,
    ];
    return `<tr class="${p.kind}"${p.errorPct !== null ? ` data-error="${p.errorPct.toFixed(2)}"` : ''}>${cells.map((c) => `<td>${c}</td>`).join('')}</tr>`;
  });
  const head = ['plan', 'kind', 'measured step [p25–p75]', 'predicted', 'error', 'efficiency', 'bubble', 'comm', 'memory / device', 'fits', 'prediction basis'];
  const err = r.mapePct === null ? 'no measured plan with a prediction' : `MAPE ${r.mapePct.toFixed(1)} %, max |error| ${r.maxAbsErrorPct!.toFixed(1)} % over ${r.plans.filter((p) => p.kind === 'measured' && p.errorPct !== null).length} measured plans`;
  const q = r.measurementQuality;
  const notes = [
    ...r.notRunnable.map((n) => `${n.mode}: ${n.reason}`),
    ...r.skipped.map((s) => `${s.label}: ${s.reason}`),
    ...Object.entries(r.interference).map(([n, f]) => `interference of ${n} devices: compute ×${f.toFixed(2)} against one device`),
  ];
  const chart = scalingSvg(r.scaling);
  const title = `${r.model} · sweep over ${r.devices}`;
  const body = [
    '<!doctype html>',
    '<html lang="en">',
    '<head>',
    '<meta charset="utf-8">',
    `<meta http-equiv="Content-Security-Policy" content="${escapeHtml(`default-src 'none'; style-src ${cspHash(CSS)}; base-uri 'none'; form-action 'none'`)}">`,
    `<meta name="generator" content="Parallax ${escapeHtml(TOOL_VERSION)}">`,
    `<title>Parallax · ${escapeHtml(title)}</title>`,
    `<style>${CSS}</style>`,
    '</head>',
    '<body>',
    `<h1>${escapeHtml(title)}</h1>`,
    `<p class="meta">${escapeHtml(err)} · measurement quality ${q.verdict} (${q.good} good, ${q.fair} fair, ${q.poor} poor of ${q.runs} runs) · ${r.settings.repeats} interleaved repetitions, ${r.settings.steps} steps each · predictions never use the plan's own runs</p>`,
    `<table id="sweep"><thead><tr>${head.map((h) => `<th>${h}</th>`).join('')}</tr></thead><tbody>${rows.join('')}</tbody></table>`,
    chart ? `<h2>Speedup against devices (data parallel, batch ${r.scaling!.batch})</h2>${chart}` : '',
    notes.length > 0 ? `<h2>Notes</h2><ul class="notes">${notes.map((n) => `<li>${escapeHtml(n)}</li>`).join('')}</ul>` : '',
    '</body>',
    '</html>',
    '',
  ];
  return body.join('\n');
}
