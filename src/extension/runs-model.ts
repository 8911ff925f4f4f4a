/**
 * What the Runs view, the CodeLenses and the Findings view need of a trace file without
 * loading its spans: the run's `meta` (mode, model, plan), `summary` and `findings`.
 *
 * A trace can hold millions of spans (hundreds of MB). Parallax writes it compactly with its
 * keys in a fixed order (trace-format.ts `traceToJson`: format, version, meta, strings,
 * lanes, steps, spans, summary, findings), so `meta` is near the head and the derived parts
 * are the tail: a digest reads a few MB at each end instead of the whole file. A file that
 * is small, or does not have that shape (written by another tool, pretty-printed), is parsed
 * whole. No `vscode` import.
 */
import { TypeCompiler } from '@sinclair/typebox/compiler';
import type { Finding } from '../profiler/findings';
import { TracePlanSchema, migrateV1Plan, type TracePlan } from '../profiler/plan';
import type { ProfileSummary } from '../profiler/summary';

/** The parts of `meta` the extension shows. */
export interface DigestMeta {
  mode: string;
  source: string;
  /** The model's path as the run recorded it (may be relative to the workspace folder). */
  modelPath: string | null;
  /** The plan as run (a version-1 plan migrated), null when the document's plan is not valid. */
  plan: TracePlan | null;
  /** Device ids in lane order of `meta.devices` (lanes map to devices through `lanes[].device`). */
  devices: { id: string; label: string }[];
  startTimeUs: number;
}

export interface TraceDigest {
  meta: DigestMeta | null;
  summary: ProfileSummary | null;
  findings: Finding[];
}

const isRecord = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);

const planCheck = TypeCompiler.Compile(TracePlanSchema);

/** `meta.plan` of a document, typed: version-1 plans (no `mode` inside) are migrated first. */
function readTracePlan(m: Record<string, unknown>): TracePlan | null {
  const raw = m['plan'];
  if (!isRecord(raw)) return null;
  const plan = 'mode' in raw ? raw : migrateV1Plan(String(m['mode']), raw);
  return planCheck.Check(plan) ? plan : null;
}

function readMeta(m: unknown): DigestMeta | null {
  if (!isRecord(m)) return null;
  const model = isRecord(m['model']) && typeof m['model']['path'] === 'string' ? (m['model']['path'] as string) : null;
  const devices = Array.isArray(m['devices'])
    ? (m['devices'] as unknown[]).filter(isRecord).map((d) => ({ id: String(d['id'] ?? '?'), label: String(d['label'] ?? d['id'] ?? '?') }))
    : [];
  const plan = readTracePlan(m);
  return {
    mode: plan?.mode ?? (typeof m['mode'] === 'string' ? m['mode'] : '?'),
    source: typeof m['source'] === 'string' ? m['source'] : 'measured',
    modelPath: model,
    plan,
    devices,
    startTimeUs: typeof m['startTimeUs'] === 'number' ? m['startTimeUs'] : 0,
  };
}

/** A summary, checked for the fields the extension reads; null otherwise. */
export function readSummary(s: unknown): ProfileSummary | null {
  if (!isRecord(s) || !isRecord(s['stepTimeUs']) || typeof s['stepTimeUs']['median'] !== 'number' || !Array.isArray(s['devices'])) return null;
  return s as unknown as ProfileSummary;
}

/** Findings, keeping those with the fields the extension reads. */
export function readFindings(f: unknown): Finding[] {
  if (!Array.isArray(f)) return [];
  return f.filter(
    (x): x is Finding =>
      isRecord(x) &&
      typeof x['id'] === 'string' &&
      typeof x['message'] === 'string' &&
      isRecord(x['evidence']) &&
      Array.isArray(x['evidence']['lanes']) &&
      isRecord(x['change']) &&
      isRecord(x['change']['params']) &&
      typeof x['currentStepUs'] === 'number',
  );
}

/** Digest of a whole parsed trace document. */
export function digestOfDocument(doc: unknown): TraceDigest {
  if (!isRecord(doc)) return { meta: null, summary: null, findings: [] };
  return { meta: readMeta(doc['meta']), summary: readSummary(doc['summary']), findings: readFindings(doc['findings']) };
}

/**
 * The text of the value of top-level key `key` in `text`, a prefix of a JSON object; null
 * when the key is not among the leading keys or its value does not end within the prefix.
 */
export function topLevelValueText(text: string, key: string): string | null {
  let i = 0;
  const n = text.length;
  const ws = (): void => {
    while (i < n && (text[i] === ' ' || text[i] === '\n' || text[i] === '\r' || text[i] === '\t')) i++;
  };
  const skipString = (): boolean => {
    // text[i] is the opening quote.
    for (i++; i < n; i++) {
      if (text[i] === '\\') i++;
      else if (text[i] === '"') {
        i++;
        return true;
      }
    }
    return false;
  };
  const skipValue = (): boolean => {
    ws();
    if (i >= n) return false;
    const c = text[i];
    if (c === '"') return skipString();
    if (c === '{' || c === '[') {
      let depth = 0;
      while (i < n) {
        const d = text[i];
        if (d === '"') {
          if (!skipString()) return false;
          continue;
        }
        if (d === '{' || d === '[') depth++;
        else if (d === '}' || d === ']') {
          depth--;
          if (depth === 0) {
            i++;
            return true;
          }
        }
        i++;
      }
      return false;
    }
    while (i < n && !/[,}\]\s]/.test(text[i])) i++;
    return i < n;
  };
  ws();
  if (text[i] !== '{') return null;
  i++;
  for (;;) {
    ws();
    if (i >= n || text[i] !== '"') return null;
    const keyStart = i;
    if (!skipString()) return null;
    let name: string;
    try {
      name = JSON.parse(text.slice(keyStart, i)) as string;
    } catch {
      return null;
    }
    ws();
    if (text[i] !== ':') return null;
    i++;
    ws();
    const valueStart = i;
    if (!skipValue()) return null;
    if (name === key) return text.slice(valueStart, i);
    ws();
    if (text[i] !== ',') return null;
    i++;
  }
}

/**
 * `summary` and `findings` from the end of a compact trace: the last `,"summary":` whose
 * remainder parses as the object's closing members.
 */
export function derivedFromTail(tail: string): { summary: ProfileSummary | null; findings: Finding[] } | null {
  let at = tail.length;
  for (let guard = 0; guard < 8; guard++) {
    at = tail.lastIndexOf(',"summary":', at - 1);
    if (at < 0) return null;
    try {
      const doc = JSON.parse(`{${tail.slice(at + 1)}`) as Record<string, unknown>;
      return { summary: readSummary(doc['summary']), findings: readFindings(doc['findings']) };
    } catch {
      // A `,"summary":` inside a string of the findings; try the one before.
    }
  }
  return null;
}

/** Digest from the head and the tail of a trace file (see the module comment). */
export function digestOfParts(head: string, tail: string): TraceDigest | null {
  const metaText = topLevelValueText(head, 'meta');
  const derived = derivedFromTail(tail);
  if (metaText === null && derived === null) return null;
  let meta: DigestMeta | null = null;
  if (metaText !== null) {
    try {
      meta = readMeta(JSON.parse(metaText));
    } catch {
      meta = null;
    }
  }
  return { meta, summary: derived?.summary ?? null, findings: derived?.findings ?? [] };
}

/** Median step time of a digest's run, µs, or null. */
export function digestStepUs(d: TraceDigest): number | null {
  return d.summary ? d.summary.stepTimeUs.median : null;
}

/** One line about a run for the Runs view: `pipeline · cpu:2 · step 12.3 ms · 2 findings`. */
export function runDescription(d: TraceDigest, formatDuration: (us: number) => string): string {
  const parts: string[] = [];
  const mode = d.summary?.mode ?? d.meta?.mode;
  if (mode) parts.push(mode);
  const plan = d.meta?.plan;
  const devices = plan && plan.mode !== 'imported' ? plan.devices : null;
  if (devices) parts.push(devices);
  if (d.summary) parts.push(`step ${formatDuration(d.summary.stepTimeUs.median)}`);
  const actionable = d.findings.filter((f) => f.severity !== 'info').length;
  if (actionable > 0) parts.push(`${actionable} finding${actionable === 1 ? '' : 's'}`);
  return parts.join(' · ');
}
