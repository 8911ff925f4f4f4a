/**
 * ONNX Runtime's own profile: parsing it, and placing its per-node events on Parallax's clock.
 *
 * With `enableProfiling: true` ORT records events in memory and, on `endProfiling()`, writes
 * `<profileFilePrefix>_<YYYY-MM-DD_HH-MM-SS>_<ms>.json`: a Chrome-trace JSON array, one event
 * per line (checked with onnxruntime-node 1.30):
 *
 *   {"cat" : "Session", "name" : "model_loading_uri" | "session_initialization" |
 *            "model_run" | "SequentialExecutor::Execute", "ts", "dur", "pid", "tid", "ph":"X"}
 *   {"cat" : "Node", "name" : "<node name>_kernel_time", "ts", "dur",
 *            "args" : {"op_name", "provider" (e.g. CPUExecutionProvider,
 *            WebGpuExecutionProvider), "node_index", "input_type_shape" : [{"float":[4,16]}, …],
 *            "output_type_shape", "activation_size", "parameter_size", "output_size",
 *            "thread_scheduling_stats" : {…}, mem_* counters}}
 *   {"cat" : "Api", "pid" : -1, "tid" : -1, "name" : "<node name>&<op type>&<program>",
 *            "ts", "dur", "args" : {"shapes" : "inputs[0] = {4,4} … ", "cache_key"}}
 *            (WebGPU provider only: GPU-side timestamps of each shader dispatch)
 *
 * Facts the code relies on:
 * - `ts` is µs since the profiler started (session creation), on the session's own clock.
 * - Node events of a run lie inside that run's `model_run` event; they are written before
 *   it in the file (ORT emits a parent when it ends), so everything is sorted by `ts` here.
 * - Every `session.run` is recorded, warm-up runs included.
 * - Node names are the optimised graph's: with graph optimisations on, fused nodes get new
 *   names (`fused matmul/MatMulAddFusion`, op type FusedGemm). Use
 *   `graphOptimizationLevel: 'disabled'` to keep the model's own names.
 * - GPU (`Api`) events are on the GPU's timestamp clock rebased by ORT; on lavapipe they
 *   land inside the matching `model_run`, but that is not guaranteed elsewhere, so they are
 *   aligned by matching extents (see {@link alignOrtProfile}). The first WebGPU run's kernels
 *   include pipeline (shader) compilation and are far longer than later ones.
 * - ORT caps a session at 1,000,000 events and silently drops the rest, so late runs may be
 *   missing from a long profile. A file of that size is over a gigabyte (a Node event is
 *   about 1.2 kB), beyond what one JS string can hold: {@link readOrtProfile} streams it line
 *   by line and keeps only the fields used here.
 * - onnxruntime-node 1.30's `InferenceSession.endProfiling()` returns nothing (the binding
 *   drops the file name ORT returns), so {@link endOrtProfiling} finds the file by prefix.
 */
import { createReadStream, existsSync, readdirSync, statSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';

/** A tensor's element type and shape as ORT records them (`{"float":[4,16]}`). */
export interface OrtTensorShape {
  dtype: string;
  dims: number[];
}

/** A `cat: "Session"` event (model_run, session_initialization, …). */
export interface OrtSessionEvent {
  name: string;
  /** µs since the profiler started, on ORT's clock. */
  ts: number;
  dur: number;
}

/** A `cat: "Node"` kernel event: one node executed once. */
export interface OrtNodeEvent {
  /** Node name in the (optimised) graph, without ORT's `_kernel_time` suffix. */
  node: string;
  /** `args.op_name`, e.g. MatMul, FusedGemm; empty when absent. */
  opType: string;
  /** `args.provider`, e.g. CPUExecutionProvider; empty when absent. */
  provider: string;
  ts: number;
  dur: number;
  tid: number;
  /** `args.node_index`, -1 when absent. */
  nodeIndex: number;
  inputs?: OrtTensorShape[];
  outputs?: OrtTensorShape[];
}

/** A `cat: "Api"` event from the WebGPU provider: one shader dispatch timed on the GPU. */
export interface OrtGpuEvent {
  /** Node name (first `&`-separated part of the event name, which may itself contain `&`). */
  node: string;
  /** Op type (second to last part). */
  opType: string;
  /** WebGPU program name (last part). */
  program: string;
  /** GPU timestamp, µs, rebased by ORT; not necessarily on the session clock. */
  ts: number;
  dur: number;
  /** `args.shapes`: the program's (possibly vectorised) shapes, as ORT's text. */
  shapes?: string;
  /** `args.cache_key`: the compiled program's key. */
  cacheKey?: string;
}

/** A parsed ORT profile, everything sorted by `ts`. */
export interface OrtProfile {
  /** Every Session event (initialisation, runs, executor spans). */
  session: OrtSessionEvent[];
  /** The `model_run` events: one per `session.run`, warm-ups included. */
  runs: OrtSessionEvent[];
  /** Node kernel events. */
  nodes: OrtNodeEvent[];
  /** WebGPU GPU-side kernel events (`cat: "Api"`), empty for other providers. */
  gpu: OrtGpuEvent[];
  /** Events read, of every category. */
  eventCount: number;
  /** Counts of events in categories not kept here, by category. */
  otherCategories: Record<string, number>;
  /** Lines (or array entries) that were not events and were skipped. */
  skipped: number;
  /** True when the file did not end with `]`: the writer stopped early; the events read are kept. */
  truncated: boolean;
}

// ---------------------------------------------------------------------------------------
// Parsing

const num = (v: unknown, fallback = 0): number => {
  const n = typeof v === 'number' ? v : typeof v === 'string' && v !== '' ? Number(v) : NaN;
  return Number.isFinite(n) ? n : fallback;
};

function shapes(v: unknown): OrtTensorShape[] | undefined {
  if (!Array.isArray(v)) return undefined;
  const out: OrtTensorShape[] = [];
  for (const entry of v) {
    if (entry === null || typeof entry !== 'object') continue;
    for (const [dtype, dims] of Object.entries(entry as Record<string, unknown>)) {
      out.push({ dtype, dims: Array.isArray(dims) ? dims.map((d) => num(d, -1)) : [] });
    }
  }
  return out;
}

/** Accumulates events; shared by the string and streaming parsers. */
class ProfileBuilder {
  readonly p: OrtProfile = {
    session: [],
    runs: [],
    nodes: [],
    gpu: [],
    eventCount: 0,
    otherCategories: {},
    skipped: 0,
    truncated: true,
  };
  private sawOpen = false;

  /** Feeds one line of ORT's one-event-per-line layout; false when it was not parseable. */
  line(raw: string): boolean {
    let s = raw.trim();
    if (s === '') return true;
    if (s.startsWith('[')) {
      this.sawOpen = true;
      s = s.slice(1).trim();
    }
    if (s.endsWith(']') && !s.endsWith('}]')) {
      // `]` alone closes the array; `…}]` is an event followed by the close.
      s = s.slice(0, -1).trim();
      this.p.truncated = false;
    } else if (s.endsWith('}]')) {
      s = s.slice(0, -1);
      this.p.truncated = false;
    }
    s = s.replace(/^,/, '').replace(/,$/, '').trim();
    if (s === '') return true;
    let ev: unknown;
    try {
      ev = JSON.parse(s);
    } catch {
      this.p.skipped++;
      return false;
    }
    this.event(ev);
    return true;
  }

  /** Feeds one decoded event object. */
  event(ev: unknown): void {
    if (ev === null || typeof ev !== 'object' || Array.isArray(ev)) {
      this.p.skipped++;
      return;
    }
    const e = ev as Record<string, unknown>;
    const cat = typeof e['cat'] === 'string' ? e['cat'] : '';
    const name = typeof e['name'] === 'string' ? e['name'] : '';
    const ts = num(e['ts'], NaN);
    if (!Number.isFinite(ts)) {
      this.p.skipped++;
      return;
    }
    const dur = Math.max(0, num(e['dur']));
    const args = (e['args'] !== null && typeof e['args'] === 'object' ? e['args'] : {}) as Record<string, unknown>;
    this.p.eventCount++;
    if (cat === 'Session') {
      const s = { name, ts, dur };
      this.p.session.push(s);
      if (name === 'model_run') this.p.runs.push(s);
    } else if (cat === 'Node') {
      // Older ORT builds also emit `<node>_fence_before/_after` markers of zero interest.
      if (/_fence_(before|after)$/.test(name)) {
        this.p.otherCategories['Node fence'] = (this.p.otherCategories['Node fence'] ?? 0) + 1;
        return;
      }
      const n: OrtNodeEvent = {
        node: name.endsWith('_kernel_time') ? name.slice(0, -'_kernel_time'.length) : name,
        opType: typeof args['op_name'] === 'string' ? args['op_name'] : '',
        provider: typeof args['provider'] === 'string' ? args['provider'] : '',
        ts,
        dur,
        tid: num(e['tid']),
        nodeIndex: num(args['node_index'], -1),
      };
      const ins = shapes(args['input_type_shape']);
      const outs = shapes(args['output_type_shape']);
      if (ins) n.inputs = ins;
      if (outs) n.outputs = outs;
      this.p.nodes.push(n);
    } else if (cat === 'Api') {
      const parts = name.split('&');
      const g: OrtGpuEvent =
        parts.length >= 3
          ? { node: parts.slice(0, -2).join('&'), opType: parts[parts.length - 2], program: parts[parts.length - 1], ts, dur }
          : { node: name, opType: '', program: '', ts, dur };
      if (typeof args['shapes'] === 'string') g.shapes = args['shapes'];
      if (typeof args['cache_key'] === 'string') g.cacheKey = args['cache_key'];
      this.p.gpu.push(g);
    } else {
      this.p.otherCategories[cat || '(none)'] = (this.p.otherCategories[cat || '(none)'] ?? 0) + 1;
    }
  }

  finish(): OrtProfile {
    const byTs = (a: { ts: number }, b: { ts: number }): number => a.ts - b.ts;
    this.p.session.sort(byTs);
    this.p.runs.sort(byTs);
    this.p.nodes.sort(byTs);
    this.p.gpu.sort(byTs);
    if (!this.sawOpen && this.p.eventCount === 0) this.p.truncated = false;
    return this.p;
  }
}

/**
 * Builds a profile from already-decoded Chrome-trace events (an array, or an object with
 * `traceEvents`).
 */
export function profileFromEvents(events: readonly unknown[] | { traceEvents: readonly unknown[] }): OrtProfile {
  const b = new ProfileBuilder();
  const list = Array.isArray(events) ? events : (events as { traceEvents: readonly unknown[] }).traceEvents;
  for (const ev of list) b.event(ev);
  const p = b.finish();
  p.truncated = false;
  return p;
}

/**
 * Parses the text of an ORT profile. Reads ORT's one-event-per-line layout line by line,
 * which survives a file cut short (the events before the cut are kept, `truncated` is
 * set); text in any other JSON layout (pretty-printed, one line, `{traceEvents: […]}`) is
 * parsed as a whole.
 * @throws Error when the text is neither.
 */
export function parseOrtProfile(text: string): OrtProfile {
  const b = new ProfileBuilder();
  let start = 0;
  while (start <= text.length) {
    let end = text.indexOf('\n', start);
    if (end < 0) end = text.length;
    b.line(text.slice(start, end));
    start = end + 1;
  }
  const p = b.finish();
  if (p.skipped > 0 && p.eventCount === 0) return parseWhole(text);
  return p;
}

function parseWhole(text: string): OrtProfile {
  let doc: unknown;
  try {
    doc = JSON.parse(text);
  } catch (e) {
    throw new Error(`not an ONNX Runtime profile (neither one event per line nor valid JSON): ${(e as Error).message}`);
  }
  if (Array.isArray(doc)) return profileFromEvents(doc);
  if (doc !== null && typeof doc === 'object' && Array.isArray((doc as { traceEvents?: unknown }).traceEvents)) {
    return profileFromEvents(doc as { traceEvents: unknown[] });
  }
  throw new Error('not an ONNX Runtime profile: expected a JSON array of trace events');
}

/** Files up to this size may be re-read whole when they are not in ORT's line layout. */
const WHOLE_PARSE_LIMIT = 256 << 20;

/**
 * Reads an ORT profile file, streaming it line by line so that profiles larger than a JS
 * string can hold (ORT's 1,000,000-event cap is over a gigabyte) still load, keeping only the
 * fields this module uses.
 */
export async function readOrtProfile(path: string): Promise<OrtProfile> {
  const b = new ProfileBuilder();
  let rest = '';
  const stream = createReadStream(path, { encoding: 'utf8', highWaterMark: 1 << 20 });
  for await (const chunk of stream as AsyncIterable<string>) {
    const text = rest + chunk;
    let start = 0;
    for (let end = text.indexOf('\n'); end >= 0; end = text.indexOf('\n', start)) {
      b.line(text.slice(start, end));
      start = end + 1;
    }
    rest = text.slice(start);
    // A "line" longer than the whole-parse limit means this is not ORT's layout; stop
    // buffering it and decide below.
    if (rest.length > WHOLE_PARSE_LIMIT) break;
  }
  if (rest.length <= WHOLE_PARSE_LIMIT) b.line(rest);
  const p = b.finish();
  if (p.eventCount === 0 && (p.skipped > 0 || rest.length > WHOLE_PARSE_LIMIT)) {
    if (statSync(path).size > WHOLE_PARSE_LIMIT) {
      throw new Error(`${path}: not in ONNX Runtime's one-event-per-line layout and too large to parse whole`);
    }
    const { readFile } = await import('node:fs/promises');
    return parseWhole(await readFile(path, 'utf8'));
  }
  return p;
}

/**
 * Ends profiling on a session and returns the profile file's path. onnxruntime-node 1.30's
 * `endProfiling()` returns nothing, so unless it returns a path (later versions may), this
 * looks for ORT's `<prefix>_<date>_<time>.json` beside the prefix and takes the newest. Use
 * a prefix unique to the session (sessionOptionsFor makes one) so that the match is exact.
 * @throws Error when no file was written.
 */
export function endOrtProfiling(session: { endProfiling(): unknown }, prefix: string): string {
  const returned = session.endProfiling();
  if (typeof returned === 'string' && returned !== '' && existsSync(returned)) return returned;
  const found = findOrtProfileFile(prefix);
  if (!found) throw new Error(`ONNX Runtime wrote no profile for prefix ${prefix}`);
  return found;
}

/** The newest `<prefix>_*.json` file ORT wrote for `prefix`, or null. */
export function findOrtProfileFile(prefix: string): string | null {
  const dir = dirname(prefix);
  const base = basename(prefix);
  let best: { path: string; mtime: number } | null = null;
  let names: string[];
  try {
    names = readdirSync(dir);
  } catch {
    return null;
  }
  for (const name of names) {
    // ORT appends `_YYYY-MM-DD_HH-MM-SS_mmm.json`; requiring the date keeps prefix `a` from
    // matching another session's `a_b_…` file.
    if (!name.startsWith(`${base}_`) || !/^_\d{4}-\d{2}-\d{2}_\d{2}-\d{2}-\d{2}(_\d+)?\.json$/.test(name.slice(base.length))) continue;
    const path = join(dir, name);
    const mtime = statSync(path).mtimeMs;
    if (!best || mtime > best.mtime) best = { path, mtime };
  }
  return best?.path ?? null;
}

// ---------------------------------------------------------------------------------------
// Alignment

/** A run window on Parallax's clock: the compute span measured around one `session.run`. */
export interface RunWindow {
  startUs: number;
  durUs: number;
}

/** An ORT node event placed on Parallax's clock. */
export interface OrtOpSpan {
  /** Index into the run windows passed to {@link alignOrtProfile}. */
  runIndex: number;
  /** Node name in the (optimised) graph. */
  name: string;
  opType: string;
  provider: string;
  startUs: number;
  durUs: number;
  shapes?: { inputs: OrtTensorShape[]; outputs: OrtTensorShape[] };
  /** True when the span had to be clipped to stay inside its run window. */
  clamped: boolean;
}

/** A WebGPU GPU-side kernel placed on Parallax's clock. */
export interface OrtGpuKernelSpan {
  runIndex: number;
  /** Node name. */
  name: string;
  opType: string;
  /** WebGPU program name. */
  program: string;
  startUs: number;
  durUs: number;
  shapes?: string;
  clamped: boolean;
}

/** Options for {@link alignOrtProfile}. */
export interface AlignOptions {
  /**
   * ORT runs to skip before the first run window (warm-up runs that were recorded by ORT
   * but not measured). Without it, runs are matched from the end when ORT has more runs
   * than windows.
   */
  skipRuns?: number;
}

/** Result of {@link alignOrtProfile}. */
export interface OrtAlignment {
  /** Op spans, in window order then time order. */
  ops: OrtOpSpan[];
  /** WebGPU kernel spans (empty without WebGPU). */
  gpu: OrtGpuKernelSpan[];
  /** For each run window, the index of the ORT `model_run` matched to it, or -1. */
  runMap: number[];
  /** One-line notes on anything that did not line up (count mismatches, dropped events). */
  notes: string[];
}

/** Index of the last run starting at or before `t` (runs sorted by ts), or -1. */
function runAt(runs: readonly OrtSessionEvent[], t: number): number {
  let lo = 0;
  let hi = runs.length - 1;
  let found = -1;
  while (lo <= hi) {
    const mid = (lo + hi) >> 1;
    if (runs[mid].ts <= t) {
      found = mid;
      lo = mid + 1;
    } else hi = mid - 1;
  }
  return found;
}

/**
 * Matches ORT's `model_run` events to run windows:
 * - with `skipRuns`: ORT run `skipRuns + i` ↔ window `i`;
 * - ORT has more runs than windows: match from the end (the extra runs are warm-ups ORT
 *   recorded and the caller did not measure);
 * - ORT has fewer runs than windows: match from the start (ORT's event cap dropped the
 *   late runs); the later windows get no op spans.
 * Every mismatch is explained in `notes`.
 */
export function matchRuns(ortRuns: number, windows: number, skipRuns?: number): { runMap: number[]; notes: string[] } {
  const notes: string[] = [];
  let skip: number;
  if (skipRuns !== undefined) {
    skip = Math.max(0, Math.floor(skipRuns));
    if (ortRuns - skip !== windows) {
      notes.push(`ORT recorded ${ortRuns} runs; skipping ${skip} leaves ${Math.max(0, ortRuns - skip)} for ${windows} measured runs`);
    }
  } else if (ortRuns >= windows) {
    skip = ortRuns - windows;
    if (skip > 0) notes.push(`ORT recorded ${skip} more run(s) than were measured (warm-up); matched the last ${windows}`);
  } else {
    skip = 0;
    notes.push(`ORT recorded only ${ortRuns} of ${windows} measured runs (its 1,000,000-event cap?); later runs have no op spans`);
  }
  const runMap: number[] = [];
  for (let i = 0; i < windows; i++) runMap.push(skip + i < ortRuns ? skip + i : -1);
  return { runMap, notes };
}

/**
 * Places ORT's node events on Parallax's clock, inside the run windows measured around
 * `session.run`.
 *
 * The k-th matched `model_run` is aligned to its window by the offset
 * `window.startUs − model_run.ts`, and each node event of that run is shifted by it and
 * clamped into the window. A per-run offset absorbs any drift between ORT's steady clock and
 * ours. `model_run` starts a little after our window (the binding converts inputs first), so
 * op spans sit up to that much early; that is well under one op on real models and keeps
 * every op inside its compute span. See {@link matchRuns} for how runs are matched when the
 * counts disagree.
 *
 * WebGPU kernel (`Api`) events are on the GPU's clock, rebased by ORT near the session
 * clock but not onto it. Their offset is the one that puts the most kernels inside some
 * `model_run` (searched over "same clock" and kernel/run edge alignments); each kernel then
 * belongs to the run it falls in, and each run's kernels are shifted as a group, keeping
 * the GPU's own spacing, only as far as needed to fit the run window, then clamped.
 *
 * @param profile a parsed profile, or raw Chrome-trace events
 * @param windows run windows on the {@link nowUs} clock, in run order
 */
export function alignOrtProfile(
  profile: OrtProfile | readonly unknown[],
  windows: readonly RunWindow[],
  options: AlignOptions = {},
): OrtAlignment {
  const p = Array.isArray(profile) ? profileFromEvents(profile) : (profile as OrtProfile);
  const { runMap, notes } = matchRuns(p.runs.length, windows.length, options.skipRuns);
  if (p.truncated) notes.push('the ORT profile file ends early (writer interrupted); events after the cut are missing');
  const windowOf = new Map<number, number>();
  runMap.forEach((r, w) => {
    if (r >= 0) windowOf.set(r, w);
  });

  // Run durations far from the window's say the match is probably wrong.
  let suspicious = 0;
  for (const [r, w] of windowOf) {
    const ortDur = p.runs[r].dur;
    if (ortDur > windows[w].durUs * 1.5 + 1000) suspicious++;
  }
  if (suspicious > 0) {
    notes.push(`${suspicious} matched run(s) last much longer in ORT than their window; check skipRuns`);
  }

  const ops: OrtOpSpan[] = [];
  let outside = 0;
  for (const n of p.nodes) {
    const r = runAt(p.runs, n.ts);
    if (r < 0 || n.ts > p.runs[r].ts + p.runs[r].dur) {
      outside++;
      continue;
    }
    const w = windowOf.get(r);
    if (w === undefined) continue;
    const win = windows[w];
    const off = win.startUs - p.runs[r].ts;
    const { startUs, durUs, clamped } = clampInto(n.ts + off, n.dur, win);
    const op: OrtOpSpan = { runIndex: w, name: n.node, opType: n.opType, provider: n.provider, startUs, durUs, clamped };
    if (n.inputs || n.outputs) op.shapes = { inputs: n.inputs ?? [], outputs: n.outputs ?? [] };
    ops.push(op);
  }
  if (outside > 0) notes.push(`${outside} ORT node event(s) lay outside every model_run and were dropped`);
  ops.sort((a, b) => a.runIndex - b.runIndex || a.startUs - b.startUs);

  const gpu = alignGpu(p, windows, windowOf, notes);
  return { ops, gpu, runMap, notes };
}

function clampInto(start: number, dur: number, win: RunWindow): { startUs: number; durUs: number; clamped: boolean } {
  const lo = win.startUs;
  const hi = win.startUs + win.durUs;
  const s = Math.min(Math.max(start, lo), hi);
  const e = Math.min(Math.max(start + dur, lo), hi);
  return { startUs: s, durUs: e - s, clamped: s !== start || e !== start + dur };
}

/** How many of `sample` start inside some model_run after shifting them by `d`. */
function gpuScore(runs: readonly OrtSessionEvent[], sample: readonly OrtGpuEvent[], d: number): number {
  let n = 0;
  for (const g of sample) {
    const r = runAt(runs, g.ts + d);
    if (r >= 0 && g.ts + d <= runs[r].ts + runs[r].dur) n++;
  }
  return n;
}

/** GPU events and early runs tried when looking for the GPU clock's offset. */
const GPU_CANDIDATE_EVENTS = 16;
const GPU_CANDIDATE_RUNS = 64;
const GPU_SCORE_SAMPLE = 512;

/**
 * Offset from the GPU events' clock to the session clock. Tries "same clock" and, for the
 * first few kernels and early runs, "kernel j starts with run k" and "kernel j ends with run
 * k"; the optimum of "most kernels inside some model_run" is at such an edge. Scored on an
 * even sample so that a long profile stays fast; ties go to the smallest shift, since ORT
 * rebases GPU time near the session clock.
 */
function gpuClockOffset(runs: readonly OrtSessionEvent[], gpu: readonly OrtGpuEvent[]): { d: number; fit: number } {
  const stride = Math.max(1, Math.floor(gpu.length / GPU_SCORE_SAMPLE));
  const sample = stride === 1 ? gpu : gpu.filter((_, i) => i % stride === 0);
  let bestD = 0;
  let best = gpuScore(runs, sample, 0);
  if (best < sample.length) {
    for (let j = 0; j < Math.min(gpu.length, GPU_CANDIDATE_EVENTS); j++) {
      for (let k = 0; k < Math.min(runs.length, GPU_CANDIDATE_RUNS); k++) {
        for (const d of [runs[k].ts - gpu[j].ts, runs[k].ts + runs[k].dur - gpu[j].ts - gpu[j].dur]) {
          const s = gpuScore(runs, sample, d);
          if (s > best || (s === best && Math.abs(d) < Math.abs(bestD))) {
            best = s;
            bestD = d;
          }
        }
      }
    }
  }
  return { d: bestD, fit: stride === 1 ? best : gpuScore(runs, gpu, bestD) };
}

function alignGpu(p: OrtProfile, windows: readonly RunWindow[], windowOf: Map<number, number>, notes: string[]): OrtGpuKernelSpan[] {
  if (p.gpu.length === 0 || p.runs.length === 0) return [];
  const { d: bestD, fit } = gpuClockOffset(p.runs, p.gpu);
  if (bestD !== 0) notes.push(`WebGPU kernel timestamps were on another clock; shifted by ${Math.round(bestD)} µs to the session clock`);
  if (fit < p.gpu.length) notes.push(`${p.gpu.length - fit} WebGPU kernel event(s) fit no model_run; placed with the preceding run`);

  // Group kernels by run, on the session clock.
  const groups = new Map<number, OrtGpuEvent[]>();
  for (const g of p.gpu) {
    const r = runAt(p.runs, g.ts + bestD);
    if (r < 0) continue;
    let list = groups.get(r);
    if (!list) groups.set(r, (list = []));
    list.push(g);
  }
  const out: OrtGpuKernelSpan[] = [];
  for (const [r, list] of groups) {
    const w = windowOf.get(r);
    if (w === undefined) continue;
    const win = windows[w];
    const off = win.startUs - p.runs[r].ts + bestD;
    let first = Infinity;
    let last = -Infinity;
    for (const g of list) {
      first = Math.min(first, g.ts + off);
      last = Math.max(last, g.ts + g.dur + off);
    }
    // Move the group as a whole, as little as possible, so it fits the window; spacing
    // between kernels is the GPU's own measurement and is kept.
    let shift = 0;
    if (first < win.startUs) shift = win.startUs - first;
    if (last + shift > win.startUs + win.durUs) shift = Math.max(win.startUs - first, win.startUs + win.durUs - last);
    for (const g of list) {
      const { startUs, durUs, clamped } = clampInto(g.ts + off + shift, g.dur, win);
      const span: OrtGpuKernelSpan = { runIndex: w, name: g.node, opType: g.opType, program: g.program, startUs, durUs, clamped };
      if (g.shapes !== undefined) span.shapes = g.shapes;
      out.push(span);
    }
  }
  out.sort((a, b) => a.runIndex - b.runIndex || a.startUs - b.startUs);
  return out;
}

/** What a device's GPU did during its operator-profiled runs, from the WebGPU timestamps. */
export interface GpuBusy {
  /** Shader dispatches timed. */
  kernels: number;
  /** Runs (compute spans) with at least one timed dispatch. */
  runs: number;
  /** Time at least one dispatch ran on the GPU, µs (overlapping dispatches counted once). */
  busyUs: number;
  /** Those runs' wall time, µs. */
  computeUs: number;
}

/**
 * The GPU's busy time over the runs that have timed dispatches: per run, the union of its
 * aligned kernel spans (already clamped into the run's window), against the run's wall time.
 */
export function gpuBusyOf(gpu: readonly OrtGpuKernelSpan[], windows: readonly RunWindow[]): GpuBusy {
  const byRun = new Map<number, OrtGpuKernelSpan[]>();
  for (const g of gpu) {
    const list = byRun.get(g.runIndex);
    if (list) list.push(g);
    else byRun.set(g.runIndex, [g]);
  }
  let busyUs = 0;
  let computeUs = 0;
  for (const [run, list] of byRun) {
    computeUs += windows[run]?.durUs ?? 0;
    list.sort((a, b) => a.startUs - b.startUs);
    let end = -Infinity;
    for (const g of list) {
      const s = Math.max(g.startUs, end);
      const e = g.startUs + g.durUs;
      if (e > s) busyUs += e - s;
      end = Math.max(end, e);
    }
  }
  return { kernels: gpu.length, runs: byRun.size, busyUs, computeUs };
}
