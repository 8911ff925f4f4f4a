/**
 * From a received trace document to what the view draws: validation (JSON or typed
 * columns), the prepared draw model, and checked views of the derived `summary` and
 * `findings` (both `unknown` in the file format, so nothing in them is trusted).
 */
import {
  COMM_OPS,
  IDLE_CAUSES,
  IDLE_SPAN_CAUSES,
  PHASES,
  SPAN_COLUMNS,
  SpanFlag,
  SPAN_KINDS,
  traceFromJson,
  upgradeTraceDocument,
  spanColumnCtor,
  TraceFormatError,
  type IdleCauseOfSpan,
  type SpanColumnName,
  type Trace,
} from '../../src/profiler/trace-format';
import { summarize } from '../../src/profiler/summary';
import type { Finding, Severity } from '../../src/profiler/findings';
import { num, obj, str } from './format';
import type { Prepared } from './model';
import { prepareSpans } from './prep-client';
import { storedActivationsView, type StoredActivationsView } from './stored-activations';
import { memoryView, type MemoryView } from './memory-view';
import { gpuBusyView, type GpuBusyView } from './gpu-view';
import { MERGED_NAME, type TiledInfo, type TiledRun } from './tiles';

const COLUMN_CTORS = Object.fromEntries(SPAN_COLUMNS.map((c) => [c, spanColumnCtor(c)])) as Record<SpanColumnName, ReturnType<typeof spanColumnCtor>>;

function isTypedColumn(x: unknown): x is ArrayLike<number> & ArrayBufferView {
  return ArrayBuffer.isView(x) && !(x instanceof DataView);
}

/**
 * Validates a trace document whose span columns are typed arrays: the header goes through
 * `traceFromJson` (with empty columns), the columns through the same range checks it makes.
 */
function traceFromColumns(input: Record<string, unknown>): Trace {
  const doc = upgradeTraceDocument(input) as Record<string, unknown>;
  const spans = obj(doc['spans']);
  if (!spans) throw new TraceFormatError('invalid trace: spans must be an object');
  const n = spans['count'];
  if (typeof n !== 'number' || !Number.isInteger(n) || n < 0) throw new TraceFormatError('invalid trace: spans.count is not a count');
  const empty: Record<string, unknown> = { count: 0 };
  for (const c of SPAN_COLUMNS) empty[c] = [];
  const head = traceFromJson({ ...doc, spans: empty });
  const cols: Record<string, unknown> = { count: n };
  for (const c of SPAN_COLUMNS) {
    const v = spans[c];
    if (!isTypedColumn(v) || v.length !== n) throw new TraceFormatError(`invalid trace: spans.${c} must be a typed array of ${n} numbers`);
    const Ctor = COLUMN_CTORS[c];
    cols[c] = v instanceof Ctor ? v : Ctor.from(v as ArrayLike<number>);
  }
  const s = cols as unknown as Trace['spans'];
  for (const c of ['start', 'dur', 'bytes'] as const) {
    const a = s[c];
    for (let i = 0; i < n; i++) if (!Number.isFinite(a[i])) throw new TraceFormatError(`invalid trace: spans.${c}[${i}] is not a finite number`);
  }
  const nStrings = head.strings.length;
  const nLanes = head.lanes.length;
  const nKinds = SPAN_KINDS.length;
  const nCauses = IDLE_CAUSES.length;
  for (let i = 0; i < n; i++) {
    if (s.kind[i] >= nKinds) throw new TraceFormatError(`invalid trace: spans.kind[${i}] is unknown`);
    if (s.name[i] < 0 || s.name[i] >= nStrings) throw new TraceFormatError(`invalid trace: spans.name[${i}] is out of range`);
    if (s.opType[i] >= nStrings) throw new TraceFormatError(`invalid trace: spans.opType[${i}] is out of range`);
    if (s.lane[i] < 0 || s.lane[i] >= nLanes) throw new TraceFormatError(`invalid trace: spans.lane[${i}] is out of range`);
    if (s.parent[i] >= n) throw new TraceFormatError(`invalid trace: spans.parent[${i}] is out of range`);
    if (s.cause[i] >= nCauses) throw new TraceFormatError(`invalid trace: spans.cause[${i}] is unknown`);
    if (s.comm[i] >= COMM_OPS.length) throw new TraceFormatError(`invalid trace: spans.comm[${i}] is unknown`);
    if (s.phase[i] >= PHASES.length) throw new TraceFormatError(`invalid trace: spans.phase[${i}] is unknown`);
  }
  head.spans = s;
  return head;
}

/** Validates a received trace document (JSON arrays or typed-array columns). */
export function traceFromDocument(doc: unknown): Trace {
  const d = obj(doc);
  const spans = d ? obj(d['spans']) : null;
  if (d && spans && isTypedColumn(spans['lane'])) return traceFromColumns(d);
  return traceFromJson(doc);
}

export interface DeviceRow {
  label: string;
  computeUs: number;
  commUs: number;
  idleUs: number;
  idleByCause: Record<IdleCauseOfSpan, number>;
}

function intervalOf(v: unknown): { lo: number; hi: number } | null {
  const o = obj(v);
  const lo = o ? num(o['lo']) : null;
  const hi = o ? num(o['hi']) : null;
  return lo !== null && hi !== null ? { lo, hi } : null;
}

/** The parts of ProfileSummary the view shows, checked. */
export interface SummaryView {
  steps: number;
  stepTimeUs: { median: number; p10: number; p90: number } | null;
  throughputPerS: number | null;
  speedup: number | null;
  /** 90 % interval of the speedup. */
  speedupInterval: { lo: number; hi: number } | null;
  baseline: string | null;
  /** Pipeline bubble fraction, when the summary has one. */
  bubbleFraction: number | null;
  /** `l2Tol`/`maxRelL2`: trained weights, which also pass on their relative L2 error. */
  numericalCheck: { ok: boolean; maxAbsErr: number; maxRelErr: number; reference: string; maxRelL2: number | null; l2Tol: number | null } | null;
  devices: DeviceRow[];
  /** Measurement-quality verdict and its reasons; null for summaries written before it existed. */
  quality: { verdict: 'good' | 'fair' | 'poor'; reasons: string[] } | null;
  /** False when the speedup is unreliable (poor measurement quality); null when not said. */
  speedupReliable: boolean | null;
  /** Pipeline training: the schedule and each stage's peak stored activations; null otherwise. */
  storedActivations: StoredActivationsView | null;
  /** Memory per device and the runner process's measured growth; null for traces without it. */
  memory: MemoryView | null;
  /** WebGPU devices' GPU busy share from their timestamps; null where no provider gave them. */
  gpuBusy: GpuBusyView[] | null;
}

const VERDICTS = ['good', 'fair', 'poor'] as const;

/** Reads a summary's measurement quality defensively. */
function qualityView(x: unknown): SummaryView['quality'] {
  const q = obj(x);
  const v = q ? str(q['verdict']) : null;
  if (!q || !v || !(VERDICTS as readonly string[]).includes(v)) return null;
  const reasons = Array.isArray(q['reasons']) ? q['reasons'].filter((r): r is string => typeof r === 'string').slice(0, 8) : [];
  return { verdict: v as (typeof VERDICTS)[number], reasons };
}

/** Reads a summary object defensively; null when it is not a usable ProfileSummary. */
export function summaryView(x: unknown): SummaryView | null {
  const s = obj(x);
  if (!s) return null;
  const st = obj(s['stepTimeUs']);
  const devices = Array.isArray(s['devices']) ? s['devices'] : null;
  if (!st || !devices) return null;
  const rows: DeviceRow[] = [];
  for (const d0 of devices) {
    const d = obj(d0);
    if (!d) return null;
    const by = obj(d['idleByCauseUs']) ?? {};
    rows.push({
      label: str(d['label']) ?? str(d['id']) ?? '?',
      computeUs: num(d['computeUs']) ?? 0,
      commUs: num(d['commUs']) ?? 0,
      idleUs: num(d['idleUs']) ?? 0,
      idleByCause: Object.fromEntries(IDLE_SPAN_CAUSES.map((c) => [c, num(by[c]) ?? 0])) as Record<IdleCauseOfSpan, number>,
    });
  }
  const med = num(st['median']);
  const nc = obj(s['numericalCheck']);
  const base = obj(s['baseline']);
  const pipeline = obj(s['pipeline']);
  const bubble = num(s['bubbleFraction']) ?? (pipeline ? num(pipeline['bubbleFraction']) : null);
  return {
    steps: num(s['steps']) ?? 0,
    stepTimeUs: med === null ? null : { median: med, p10: num(st['p10']) ?? med, p90: num(st['p90']) ?? med },
    throughputPerS: num(s['throughputPerS']),
    speedup: num(s['speedupVsOneDevice']),
    speedupInterval: intervalOf(s['speedupInterval']),
    baseline: base ? str(base['description']) : null,
    bubbleFraction: bubble,
    numericalCheck:
      nc && typeof nc['ok'] === 'boolean'
        ? { ok: nc['ok'], maxAbsErr: num(nc['maxAbsErr']) ?? NaN, maxRelErr: num(nc['maxRelErr']) ?? NaN, reference: str(nc['reference']) ?? '', maxRelL2: num(nc['maxRelL2']) ?? null, l2Tol: num(nc['l2Tol']) ?? null }
        : null,
    devices: rows,
    quality: qualityView(s['measurementQuality']),
    speedupReliable: typeof s['speedupReliable'] === 'boolean' ? s['speedupReliable'] : null,
    storedActivations: storedActivationsView(s['training']),
    memory: memoryView(s['memory']),
    gpuBusy: gpuBusyView(s['gpuBusy']),
  };
}

const SEVERITIES: readonly Severity[] = ['info', 'warning', 'critical'];

/** A finding's `heldBack` (poor measurement quality), read defensively. */
function heldBackView(x: unknown): Pick<Finding, 'heldBack'> {
  const h = obj(x);
  const reason = h ? str(h['reason']) : null;
  if (!h || reason === null) return {};
  const sev = str(h['severity']) as Severity | null;
  return { heldBack: { reason, severity: sev && SEVERITIES.includes(sev) ? sev : 'info' } };
}

/** Keeps the findings that have the fields the view uses; lanes outside the trace are dropped. */
export function findingsView(x: unknown, nLanes: number): Finding[] {
  if (!Array.isArray(x)) return [];
  const out: Finding[] = [];
  for (const f0 of x) {
    const f = obj(f0);
    const ev = f ? obj(f['evidence']) : null;
    if (!f || !ev) continue;
    const id = str(f['id']);
    const message = str(f['message']);
    const startUs = num(ev['startUs']);
    const endUs = num(ev['endUs']);
    if (id === null || message === null || startUs === null || endUs === null) continue;
    const lanes = Array.isArray(ev['lanes']) ? ev['lanes'].filter((l): l is number => Number.isInteger(l) && l >= 0 && l < nLanes) : [];
    const numbers: Record<string, number> = {};
    for (const [k, v] of Object.entries(obj(ev['numbers']) ?? {})) if (typeof v === 'number') numbers[k] = v;
    const change = obj(f['change']);
    const sev = str(f['severity']) as Severity | null;
    out.push({
      id,
      severity: sev && SEVERITIES.includes(sev) ? sev : 'info',
      message,
      evidence: { lanes, startUs, endUs: Math.max(startUs, endUs), numbers },
      change: { description: (change && str(change['description'])) ?? '', params: obj(change?.['params']) ?? {} },
      currentStepUs: num(f['currentStepUs']) ?? NaN,
      predictedStepUs: num(f['predictedStepUs']),
      ...heldBackView(f['heldBack']),
    });
  }
  return out;
}

/** One loaded run, ready to draw. */
export interface Run {
  trace: Trace;
  title: string;
  /** Predicted by the projection (meta.source) or holding predicted spans. */
  predicted: boolean;
  /** Holding emulated spans (or an emulated link model). */
  emulated: boolean;
  /** View time = trace time − offsetUs (0 for one run; the first step start when comparing). */
  offsetUs: number;
  prepared: Prepared;
  findings: Finding[];
  /** Filled in after the first frame (computing it may take a while on huge traces). */
  summary: SummaryView | null;
  /**
   * Set for a run shown in tiles (tiles.ts): `trace.spans` and `prepared` then hold the
   * current tile, not the trace, and span indices are positions in that tile.
   */
  tiled: TiledRun | null;
}

/** Spans in a run's trace (for a tiled run, the whole trace's, not the tile's). */
export function runSpanCount(run: Run): number {
  return run.tiled ? run.tiled.info.spans : run.trace.spans.count;
}

/** Validates and prepares one trace document. */
export async function loadRun(doc: unknown, title: string, tiledInfo?: TiledInfo | null): Promise<Run> {
  const trace = traceFromDocument(doc);
  const prepared = await prepareSpans(trace.spans, trace.lanes.length);
  let tiled: TiledRun | null = null;
  if (tiledInfo) {
    if (trace.spans.count !== 0) throw new TraceFormatError('a tiled trace comes without spans');
    const nRows = trace.lanes.length * 3;
    if ([tiledInfo.rowSpans, tiledInfo.rowStageMin, tiledInfo.rowStageMax].some((a) => a.length !== nRows)) {
      throw new TraceFormatError(`a tiled trace needs ${nRows} rows (3 per lane) in its row summary`);
    }
    prepared.extent = [tiledInfo.startUs, tiledInfo.endUs];
    trace.strings = [...trace.strings, MERGED_NAME];
    tiled = { info: tiledInfo, mergedName: trace.strings.length - 1, index: new Int32Array(0), merged: new Float64Array(0), window: null, pending: null };
  }
  let predictedSpans = tiledInfo ? (tiledInfo.flags & SpanFlag.predicted) !== 0 : false;
  let emulatedSpans = tiledInfo ? (tiledInfo.flags & SpanFlag.emulated) !== 0 : false;
  const f = trace.spans.flags;
  for (let i = 0; i < trace.spans.count; i++) {
    if (f[i] & SpanFlag.predicted) predictedSpans = true;
    if (f[i] & SpanFlag.emulated) emulatedSpans = true;
    if (predictedSpans && emulatedSpans) break;
  }
  return {
    trace,
    title,
    predicted: trace.meta.source === 'predicted' || predictedSpans,
    emulated: emulatedSpans,
    offsetUs: 0,
    prepared,
    findings: findingsView(trace.findings, trace.lanes.length),
    summary: null,
    tiled,
  };
}

/** The run's summary: the one in the file when usable, else computed from the spans. */
export function runSummary(run: Run): SummaryView | null {
  const fromFile = summaryView(run.trace.summary);
  if (fromFile || run.tiled) return fromFile;
  try {
    return summaryView(summarize(run.trace));
  } catch {
    return null;
  }
}

/** The first step's start, or the first span's start: where a run's time begins when comparing. */
export function runOrigin(run: Run): number {
  const steps = run.trace.steps;
  let m = Infinity;
  for (const s of steps) if (s.startUs < m) m = s.startUs;
  return Number.isFinite(m) ? m : run.prepared.extent[0];
}
