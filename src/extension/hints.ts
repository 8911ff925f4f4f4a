/**
 * The pure side of the hints in `parallax.json`: which key of a plan a finding is about, the
 * diagnostic's words, the quick fix's edit, the CodeLens line and the hover's text. The
 * VS Code providers (config-providers.ts) only place what this module computes.
 *
 * A finding names its suggestion as plan parameters (`change.params`); they map to keys:
 *   pipeline-bubble    → microBatches
 *   pipeline-imbalance → cuts
 *   poor-scaling       → devices (and stages, where the plan writes it)
 *   comm-bound         → batch or devices, whichever the suggestion changes
 *   host-overhead      → batch
 *   straggler          → shards (rows per device, by measured throughput)
 *   tensor-collectives → keepWhole (layers whose split costs more than it saves)
 *   tensor-vs-data     → mode (data parallelism, measured faster in the same run)
 */
import { applyEdits, modify } from 'jsonc-parser/lib/esm/main.js';
import type { Finding } from '../profiler/findings';
import { formatDuration, formatPercent } from '../profiler/units';
import type { ProfileSummary } from '../profiler/summary';
import { deviceCount, effectiveValue, PIPELINE_KEYS, type ConfigPlan, type PlanKey } from './config-model';
import type { ProfileSettings } from './run-config';
import type { ShowTimelineArgs } from './ids';

/** What a finding says about one plan: where, in which words, and what the quick fix writes. */
export interface KeyHint {
  /** Index of the finding in the run's findings. */
  findingIndex: number;
  finding: Finding;
  /** The key the hint is at; null when the plan does not write it (the hint then sits on the plan's name). */
  key: PlanKey;
  /** True when the plan writes `key` (otherwise it runs with a default). */
  keyWritten: boolean;
  /** The diagnostic's text. */
  message: string;
  severity: 'warning' | 'info';
  /** What the quick fix sets (value undefined: remove the key); empty when there is no fix. */
  changes: { key: PlanKey; value: unknown }[];
  /** The quick fix's title, null without one. */
  fixTitle: string | null;
}

const pct = (x: number): string => formatPercent(x, 0);

/** A duration for people: µs under 1 ms, then ms with one decimal, then s. */
export { formatDuration };

/** Signed relative change with a real minus sign: `−23%`, `+40%`. */
export function formatChange(now: number, then: number): string {
  if (!(now > 0)) return '';
  const r = Math.round(((then - now) / now) * 100);
  return r < 0 ? `−${-r}%` : `+${r}%`;
}

/** "predicted step 80.1 ms (−23%)", or the throughput gain for changes that alter the work per step. */
export function predictionText(f: Finding): string {
  if (f.throughput) {
    const t = f.throughput;
    return `predicts ${t.predictedPerS.toFixed(0)} samples/s (${formatChange(t.currentPerS, t.predictedPerS)})`;
  }
  if (f.predictedStepUs === null) return '';
  return `predicted step ${formatDuration(f.predictedStepUs)} (${formatChange(f.currentStepUs, f.predictedStepUs)})`;
}

const num = (f: Finding, k: string): number | undefined => {
  const v = f.evidence.numbers[k];
  return typeof v === 'number' && Number.isFinite(v) ? v : undefined;
};

const show = (v: unknown): string => (typeof v === 'string' ? v : Array.isArray(v) ? v.join(', ') : JSON.stringify(v));

/** The plan key a finding is about and the values its suggestion sets, before looking at a plan. */
function targetOf(f: Finding): { key: PlanKey; changes: { key: PlanKey; value: unknown }[] } | null {
  const p = f.change.params;
  switch (f.id) {
    case 'pipeline-bubble':
      return p['microBatches'] !== undefined ? { key: 'microBatches', changes: [{ key: 'microBatches', value: p['microBatches'] }] } : null;
    case 'pipeline-imbalance':
      return Array.isArray(p['cuts']) ? { key: 'cuts', changes: [{ key: 'cuts', value: p['cuts'] }] } : null;
    case 'poor-scaling':
      if (p['devices'] === undefined) return null;
      return {
        key: 'devices',
        changes: [
          { key: 'devices', value: p['devices'] },
          ...(p['mode'] !== undefined ? [{ key: 'mode' as const, value: p['mode'] }] : []),
          ...(p['stages'] !== undefined ? [{ key: 'stages' as const, value: p['stages'] }] : []),
          ...(Array.isArray(p['shards']) ? [{ key: 'shards' as const, value: p['shards'] }] : []),
        ],
      };
    case 'comm-bound':
      if (p['batch'] !== undefined) return { key: 'batch', changes: [{ key: 'batch', value: p['batch'] }] };
      if (p['devices'] !== undefined) return { key: 'devices', changes: [{ key: 'devices', value: p['devices'] }] };
      return null;
    case 'host-overhead':
      return p['batch'] !== undefined ? { key: 'batch', changes: [{ key: 'batch', value: p['batch'] }] } : null;
    case 'straggler':
      return Array.isArray(p['shards']) ? { key: 'shards', changes: [{ key: 'shards', value: p['shards'] }] } : null;
    case 'tensor-collectives':
      return Array.isArray(p['keepWhole']) ? { key: 'keepWhole', changes: [{ key: 'keepWhole', value: p['keepWhole'] }] } : null;
    case 'tensor-vs-data':
      return p['mode'] !== undefined ? { key: 'mode', changes: [{ key: 'mode', value: p['mode'] }] } : null;
    default:
      return null;
  }
}

/** The diagnostic's words for a finding (short: the hover carries the full story). */
export function hintMessage(f: Finding): string {
  const pred = predictionText(f);
  const p = f.change.params;
  const tail = pred ? `; ${pred}` : '';
  switch (f.id) {
    case 'pipeline-bubble': {
      const b = num(f, 'bubbleFraction');
      const m2 = p['microBatches'];
      const ideal = num(f, 'suggestedIdealBubbleFraction');
      const step = f.predictedStepUs !== null && !f.throughput ? ` (step ${formatDuration(f.predictedStepUs)}, ${formatChange(f.currentStepUs, f.predictedStepUs)})` : '';
      return `bubble ${b !== undefined ? pct(b) : '?'}; ${show(m2)} micro-batches predicts ${ideal !== undefined ? pct(ideal) : 'less'}${step}`;
    }
    case 'pipeline-imbalance': {
      const s = num(f, 'slowestStage');
      const imb = num(f, 'imbalance');
      return `stage ${s ?? '?'} sets the pace (imbalance ${imb !== undefined ? imb.toFixed(2) : '?'}×); cuts at ${show(p['cuts'])}${tail}`;
    }
    case 'poor-scaling': {
      const e = num(f, 'efficiency');
      const n = num(f, 'devices');
      return `efficiency ${e !== undefined ? pct(e) : '?'} on ${n ?? '?'} devices; "${show(p['devices'])}"${tail}`;
    }
    case 'comm-bound': {
      const c = num(f, 'exposedCommShare');
      const what = p['batch'] !== undefined ? `batch ${show(p['batch'])}` : `"${show(p['devices'])}"`;
      return `exposed communication ${c !== undefined ? pct(c) : '?'} of busy time; ${what}${pred ? ` ${pred}` : ''}`;
    }
    case 'host-overhead': {
      const o = num(f, 'overheadShare');
      return `host overhead ${o !== undefined ? pct(o) : '?'} of device time; batch ${show(p['batch'])}${pred ? ` ${pred}` : ''}`;
    }
    case 'straggler': {
      const r = num(f, 'ratio');
      const shards = Array.isArray(p['shards']) ? (p['shards'] as number[]).join('/') : '?';
      return `a straggler computes ${r !== undefined ? r.toFixed(2) : '?'}× the others; shards ${shards}${tail}`;
    }
    case 'tensor-collectives': {
      const c = num(f, 'collectiveShare');
      return `all-reduces ${c !== undefined ? pct(c) : '?'} of the step; keep whole ${show(p['keepWhole'])}${tail}`;
    }
    case 'tensor-vs-data':
      return `data parallel measured faster in this run${tail}`;
    default:
      return f.message;
  }
}

/**
 * Whether the plan still runs with the value a finding was measured with. A finding about a
 * key the user has changed since the run (by hand or by the quick fix) is stale: it is not
 * shown again until the next run measures the new value.
 */
function sameValue(a: unknown, b: unknown): boolean {
  if (typeof a === 'string' && typeof b === 'string') return a.replace(/\s+/g, '') === b.replace(/\s+/g, '');
  return JSON.stringify(a) === JSON.stringify(b);
}

/** Plan keys that shape a run: a finding measured with other values does not describe the plan any more. */
export const RUN_SHAPE_KEYS: readonly PlanKey[] = ['devices', 'batch', 'shards', 'microBatches', 'stages', 'cuts'];

/**
 * Keys whose value in the plan differs from the value the run measured (`runPlan`, the
 * trace's `meta.plan`); a key the plan leaves to the runner (cuts, stages) counts only once
 * written.
 */
export function changedSinceRun(plan: ConfigPlan, runPlan: Record<string, unknown> | null, settings: Pick<ProfileSettings, 'devices' | 'batch'>): PlanKey[] {
  if (!runPlan) return [];
  return RUN_SHAPE_KEYS.filter((k) => {
    const now = effectiveValue(plan, k, settings);
    const then = runPlan[k];
    return now !== undefined && then !== undefined && !sameValue(now, then);
  });
}

/**
 * The hints of a run's findings on a plan: one per finding that maps to a key. None when
 * the plan has changed since the run in a key that shapes it ({@link changedSinceRun}: the
 * findings describe another plan), and none for a key that already holds the suggestion.
 */
export function planHints(
  findings: readonly Finding[],
  plan: ConfigPlan,
  runPlan: Record<string, unknown> | null,
  settings: Pick<ProfileSettings, 'devices' | 'batch'>,
): KeyHint[] {
  const out: KeyHint[] = [];
  if (changedSinceRun(plan, runPlan, settings).length > 0) return out;
  findings.forEach((f, i) => {
    // A finding held back for poor measurement quality is no advice to act on, and neither is
    // information (a change that was checked and cannot be applied, or is predicted no faster).
    if (f.heldBack || f.severity === 'info' || f.checked?.ok === false) return;
    const t = targetOf(f);
    if (!t) return;
    const now = effectiveValue(plan, t.key, settings);
    const measured = runPlan?.[t.key] ?? (t.key === 'microBatches' ? num(f, 'microBatches') : undefined);
    if (measured !== undefined && now !== undefined && !sameValue(now, measured)) return;
    const main = t.changes.find((c) => c.key === t.key);
    if (main && now !== undefined && sameValue(now, main.value)) return;
    const changes = t.changes.slice();
    // Fewer devices make explicit cuts wrong (K − 1 of them): the fix drops them, and the
    // runner re-balances the stages for the new device count.
    const dev = changes.find((c) => c.key === 'devices');
    if (dev && plan.keys.has('cuts') && typeof dev.value === 'string') {
      const k = deviceCount(dev.value);
      const cuts = plan.values.cuts;
      if (k !== null && cuts && cuts.length !== k - 1) changes.push({ key: 'cuts', value: undefined });
    }
    // A change to a data plan removes the pipeline's keys the plan writes.
    if (changes.some((c) => c.key === 'mode' && c.value === 'data')) {
      for (const k of PIPELINE_KEYS) if (plan.keys.has(k) && !changes.some((c) => c.key === k)) changes.push({ key: k, value: undefined });
    }
    // Shards are written back only where the plan writes them
    // (they default to an even split); `stages` only where the plan writes it (it defaults to
    // the device count).
    const written = changes.filter(
      (c) => (c.key !== 'stages' || plan.keys.has('stages') || c.value === undefined) && (c.key !== 'shards' || f.id !== 'poor-scaling' || plan.keys.has('shards')),
    );
    const pred = predictionText(f);
    out.push({
      findingIndex: i,
      finding: f,
      key: t.key,
      keyWritten: plan.keys.has(t.key),
      // Advice kept on a poorly measured run says so in its own words.
      message: f.caveat ? `${hintMessage(f)} (${f.caveat})` : hintMessage(f),
      severity: 'warning',
      changes: written,
      fixTitle:
        written.length === 0
          ? null
          : `Set ${written
              .filter((c) => c.value !== undefined)
              .map((c) => `"${c.key}" to ${JSON.stringify(c.value)}`)
              .join(' and ')}${written.some((c) => c.value === undefined) ? ` (removing ${written.filter((c) => c.value === undefined).map((c) => `"${c.key}"`).join(', ')})` : ''}${pred ? ` — ${pred}` : ''}`,
    });
  });
  return out;
}

/** One replacement of the file's text: offset and length in the original, and the new text. */
export interface TextEdit {
  offset: number;
  length: number;
  content: string;
}

/**
 * The edit that writes `changes` into plan `planName` of the config text: replacing values
 * in place, inserting keys the plan lacks (formatted like the file), removing keys whose
 * value is undefined. Returned as one replacement of the smallest changed region, so that
 * several key changes make a single, non-overlapping edit.
 */
export function planEdit(
  text: string,
  planName: string,
  changes: readonly { key: string; value: unknown }[],
  formatting: { insertSpaces: boolean; tabSize: number; eol?: string } = { insertSpaces: true, tabSize: 2 },
): TextEdit | null {
  let next = text;
  const eol = formatting.eol ?? (text.includes('\r\n') ? '\r\n' : '\n');
  const all: TextEdit[] = [];
  for (const c of changes) {
    const edits = modify(next, ['plans', planName, c.key], c.value, { formattingOptions: { ...formatting, eol } });
    all.push(...edits);
    next = applyEdits(next, edits);
  }
  if (next === text) return null;
  // One change is one edit of jsonc-parser's (the whole value token): keep it as it is.
  if (all.length === 1) return all[0]!;
  let start = 0;
  while (start < text.length && start < next.length && text[start] === next[start]) start++;
  let endOld = text.length;
  let endNew = next.length;
  while (endOld > start && endNew > start && text[endOld - 1] === next[endNew - 1]) {
    endOld--;
    endNew--;
  }
  return { offset: start, length: endOld - start, content: next.slice(start, endNew) };
}

/**
 * The CodeLens line of a plan's last run: `last step 12.3 ms · efficiency 87% · bubble 14%`,
 * led by `measurement quality poor` (and the efficiency marked unreliable) when it was.
 */
export function lensSummary(s: ProfileSummary): string {
  const poor = s.measurementQuality?.verdict === 'poor';
  const parts = [...(poor ? ['measurement quality poor'] : []), `last step ${formatDuration(s.stepTimeUs.median)}`];
  const n = s.devices.length;
  if (s.speedupVsOneDevice !== null && n > 0) parts.push(`efficiency ${pct(s.speedupVsOneDevice / n)}${s.speedupReliable === false ? ' (unreliable)' : ''}`);
  if (s.bubbleFraction !== undefined) parts.push(`bubble ${pct(s.bubbleFraction)}`);
  if (s.numericalCheck && !s.numericalCheck.ok) parts.push('numerics MISMATCH');
  return parts.join(' · ');
}

/** Evidence numbers for people: fractions as %, µs as durations, rates per second. */
export function formatEvidenceNumber(key: string, v: number): string {
  if (/(Fraction|Share|efficiency)$/i.test(key)) return pct(v);
  if (/Us$/.test(key)) return formatDuration(v);
  if (/PerS$/.test(key)) return `${v.toFixed(0)}/s`;
  if (/PerMB$/.test(key)) return v.toFixed(1);
  if (Number.isInteger(v)) return String(v);
  return v.toPrecision(3);
}

/** A `command:` link VS Code's Markdown runs (the hover's MarkdownString must trust the command). */
export function commandLink(title: string, command: string, args: unknown): string {
  return `[${title}](command:${command}?${encodeURIComponent(JSON.stringify([args]))})`;
}

/** Timeline arguments that reveal a finding's evidence. */
export function evidenceArgs(f: Finding, tracePath: string): ShowTimelineArgs {
  return { tracePath, startUs: f.evidence.startUs, endUs: f.evidence.endUs, lanes: f.evidence.lanes.slice() };
}

/** Escapes Markdown's special characters in text that comes from a trace (node names, device labels). */
export function escapeMarkdown(s: string): string {
  return s.replace(/[\\`*_{}[\]()#+\-.!|<>]/g, '\\$&');
}

/**
 * The hover of a key with findings: each finding's sentence, the suggested change with its
 * prediction, the evidence (numbers, lanes, time range) and a link that opens the timeline
 * at the evidence.
 */
export function hoverMarkdown(hints: readonly KeyHint[], tracePath: string, laneLabels: readonly string[], revealCommand: string): string {
  const parts: string[] = [];
  for (const h of hints) {
    const f = h.finding;
    const ev = f.evidence;
    const lanes = ev.lanes.map((l) => laneLabels[l] ?? `lane ${l}`).join(', ');
    const rows = Object.entries(ev.numbers).map(([k, v]) => `| ${escapeMarkdown(k)} | ${escapeMarkdown(formatEvidenceNumber(k, v))} |`);
    parts.push(
      [
        `**Parallax · ${escapeMarkdown(f.id)}** (${f.severity})`,
        '',
        escapeMarkdown(f.message),
        '',
        `**Change:** ${escapeMarkdown(f.change.description)}`,
        ...(predictionText(f) ? ['', `**Effect:** ${escapeMarkdown(predictionText(f))}, from ${escapeMarkdown(formatDuration(f.currentStepUs))} now`] : []),
        '',
        `**Evidence:** ${escapeMarkdown(lanes)} · ${escapeMarkdown(formatDuration(ev.startUs))} – ${escapeMarkdown(formatDuration(ev.endUs))} on the trace clock`,
        '',
        '| number | value |',
        '|---|---|',
        ...rows,
        '',
        commandLink('$(graph) Show the evidence in the timeline', revealCommand, evidenceArgs(f, tracePath)),
      ].join('\n'),
    );
  }
  return parts.join('\n\n---\n\n');
}
