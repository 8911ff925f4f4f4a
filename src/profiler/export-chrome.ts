/**
 * Export to the Chrome Trace Event Format (JSON object form), which Perfetto
 * (ui.perfetto.dev) and chrome://tracing open. The Parallax format stays the native one;
 * this is a view of it for tools people already know.
 *
 * Layout:
 *  - one process (pid) per physical-unit group of lanes (`lane.group`), named after it, in
 *    lane order; a last process `steps` holds one slice per step window;
 *  - one thread (tid) per lane for its compute and idle spans, plus threads for its comm
 *    spans and for its operator spans (flag `op` or nested under another span). Slices on one
 *    thread must nest properly, and spans of a lane may overlap (comm under compute, kernels
 *    of several CUDA streams in an imported trace), so each of those tracks is packed
 *    first-fit into as many threads as overlapping spans need (`… · comm #2`);
 *  - spans are complete events (`ph: "X"`), µs relative to `meta.startTimeUs` rounded to the
 *    nanosecond, with the span's fields as args (bytes, peer, step, micro, stage, opType,
 *    comm operation, phase, idle cause). `cat` is the span kind plus `operator`, `staging`,
 *    `synthetic`, `emulated`, `predicted` where they apply, so the UI can filter on them;
 *    emulated and predicted spans also say so in their names. Idle spans are in category
 *    `idle`, named by cause;
 *  - each send (`comm` column) is joined to its matching recv by a flow (`ph: "s"` → `ph: "f"`): the
 *    k-th send from lane a to lane b for step s and micro-batch m goes to the k-th recv on
 *    lane b from lane a for the same step and micro-batch, in start order;
 *  - `otherData.parallax` carries the trace's meta (source, mode, start time, notes).
 *
 * Names are written as JSON strings and nothing else: no name becomes a key, markup or code.
 */
import { COMM_OPS, CommOpCode, IDLE_CAUSES, PHASES, SPAN_KINDS, SpanFlag, SpanKind, isP2pCode, type Trace } from './trace-format';
import { writeFileAtomic } from './trace-io';

/** One event of the Chrome Trace Event Format, as this exporter writes them. */
export interface ChromeTraceEvent {
  name: string;
  ph: 'X' | 'M' | 's' | 'f';
  pid: number;
  tid: number;
  cat?: string;
  ts?: number;
  dur?: number;
  id?: number;
  /** Flow end binding: `e` binds to the enclosing slice. */
  bp?: 'e';
  args?: Record<string, unknown>;
}

/** The JSON object form of a Chrome trace. */
export interface ChromeTrace {
  traceEvents: ChromeTraceEvent[];
  displayTimeUnit: 'ms' | 'ns';
  otherData: Record<string, unknown>;
}

const COMM = SpanKind.comm;
const IDLE = SpanKind.idle;

/** Track classes of a lane: compute and idle, comm, operators. */
const TRACK_MAIN = 0;
const TRACK_COMM = 1;
const TRACK_OPS = 2;
const TRACK_SUFFIX = ['', ' · comm', ' · operators'];

/**
 * Times are placed on a whole-nanosecond grid: start and end are each rounded to the
 * nanosecond and the duration is their difference, so a slice that ends as the next begins
 * still touches it exactly once Perfetto converts µs back to integer ns (it rounds `ts × 1000`
 * and `dur × 1000`). Separately rounded start and duration would drift by a nanosecond and
 * make touching slices overlap.
 */
const toNs = (us: number): number => Math.round(us * 1000);
const usOf = (nanos: number): number => nanos / 1000;

interface Layout {
  /** Per span: its thread id. */
  tid: Int32Array;
  /** Per span: start and end on the nanosecond grid. */
  startNs: Float64Array;
  endNs: Float64Array;
  /** Per lane: its process id. */
  pidOfLane: number[];
  /** Process ids and names, in order. */
  processes: { pid: number; name: string }[];
  /** Thread ids with their process, name and sort index, in order. */
  threads: { pid: number; tid: number; name: string; sort: number }[];
  stepsPid: number;
}

/** Assigns processes to groups and threads to tracks, packing overlapping spans apart. */
function layout(trace: Trace): Layout {
  const s = trace.spans;
  const n = s.count;
  const nLanes = trace.lanes.length;
  const processes: Layout['processes'] = [];
  const pidOfGroup = new Map<string, number>();
  const pidOfLane = trace.lanes.map((lane) => {
    let pid = pidOfGroup.get(lane.group);
    if (pid === undefined) {
      pid = processes.length + 1;
      pidOfGroup.set(lane.group, pid);
      processes.push({ pid, name: lane.group });
    }
    return pid;
  });
  // Bucket spans by (lane, track), each bucket in start order (longest first on ties, so an
  // enclosing span is placed before what it encloses).
  const track = new Uint8Array(n);
  const counts = new Int32Array(nLanes * 3 + 1);
  for (let i = 0; i < n; i++) {
    const op = (s.flags[i] & SpanFlag.op) !== 0 || s.parent[i] >= 0;
    track[i] = op ? TRACK_OPS : s.kind[i] === COMM ? TRACK_COMM : TRACK_MAIN;
    counts[s.lane[i] * 3 + track[i] + 1]++;
  }
  for (let b = 0; b < nLanes * 3; b++) counts[b + 1] += counts[b];
  const order = new Int32Array(n);
  const fill = counts.slice(0, nLanes * 3);
  for (let i = 0; i < n; i++) order[fill[s.lane[i] * 3 + track[i]]++] = i;
  const startNs = new Float64Array(n);
  const endNs = new Float64Array(n);
  for (let i = 0; i < n; i++) {
    startNs[i] = toNs(s.start[i]);
    endNs[i] = Math.max(startNs[i], toNs(s.start[i] + s.dur[i]));
  }
  const tid = new Int32Array(n);
  const threads: Layout['threads'] = [];
  let nextTid = 1;
  for (let l = 0; l < nLanes; l++) {
    const label = trace.lanes[l].label;
    for (let t = 0; t < 3; t++) {
      const b = l * 3 + t;
      const bucket = order.subarray(counts[b], counts[b + 1]);
      bucket.sort((x, y) => startNs[x] - startNs[y] || endNs[y] - endNs[x] || x - y);
      // First-fit: the first sub-track whose last slice has ended takes the span.
      const ends: number[] = [];
      const tids: number[] = [];
      for (const i of bucket) {
        const a = startNs[i];
        let k = 0;
        while (k < ends.length && ends[k] > a) k++;
        if (k === ends.length) {
          ends.push(0);
          tids.push(nextTid);
          const name = `${label}${TRACK_SUFFIX[t]}${k > 0 ? ` #${k + 1}` : ''}`;
          threads.push({ pid: pidOfLane[l], tid: nextTid++, name, sort: l * 1000 + t * 100 + k });
        }
        ends[k] = endNs[i];
        tid[i] = tids[k];
      }
      // A lane without spans still gets its main thread, so every device shows up.
      if (t === TRACK_MAIN && bucket.length === 0) {
        threads.push({ pid: pidOfLane[l], tid: nextTid++, name: label, sort: l * 1000 });
      }
    }
  }
  return { tid, startNs, endNs, pidOfLane, processes, threads, stepsPid: processes.length + 1 };
}

/** Yields every event of the export; `toChromeTrace` collects them, `writeChromeTrace` streams them. */
function* chromeEvents(trace: Trace): Generator<ChromeTraceEvent> {
  const s = trace.spans;
  const lay = layout(trace);
  const allPredicted = trace.meta.source.startsWith('predicted');
  for (const p of lay.processes) {
    yield { name: 'process_name', ph: 'M', pid: p.pid, tid: 0, args: { name: p.name } };
    yield { name: 'process_sort_index', ph: 'M', pid: p.pid, tid: 0, args: { sort_index: p.pid } };
    if (trace.meta.source !== 'measured') yield { name: 'process_labels', ph: 'M', pid: p.pid, tid: 0, args: { labels: trace.meta.source } };
  }
  for (const t of lay.threads) {
    yield { name: 'thread_name', ph: 'M', pid: t.pid, tid: t.tid, args: { name: t.name } };
    yield { name: 'thread_sort_index', ph: 'M', pid: t.pid, tid: t.tid, args: { sort_index: t.sort } };
  }
  if (trace.steps.length > 0) {
    yield { name: 'process_name', ph: 'M', pid: lay.stepsPid, tid: 0, args: { name: 'steps' } };
    yield { name: 'process_sort_index', ph: 'M', pid: lay.stepsPid, tid: 0, args: { sort_index: lay.stepsPid } };
    yield { name: 'thread_name', ph: 'M', pid: lay.stepsPid, tid: 0, args: { name: 'step windows' } };
    for (const w of trace.steps) {
      const a = toNs(w.startUs);
      const b = Math.max(a, toNs(w.endUs));
      yield { name: `step ${w.index}`, cat: 'step', ph: 'X', ts: usOf(a), dur: usOf(b - a), pid: lay.stepsPid, tid: 0, args: { step: w.index } };
    }
  }
  const laneLabel = (l: number): string => trace.lanes[l]?.label ?? `lane ${l}`;
  for (let i = 0; i < s.count; i++) {
    const kind = s.kind[i];
    const flags = s.flags[i];
    const op = (flags & SpanFlag.op) !== 0 || s.parent[i] >= 0;
    const emulated = (flags & SpanFlag.emulated) !== 0;
    const predicted = allPredicted || (flags & SpanFlag.predicted) !== 0;
    const cats: string[] = [SPAN_KINDS[kind] ?? 'compute'];
    if (op) cats.push('operator');
    if ((flags & SpanFlag.staging) !== 0) cats.push('staging');
    if ((flags & SpanFlag.synthetic) !== 0) cats.push('synthetic');
    if ((flags & SpanFlag.gradient) !== 0) cats.push('gradient');
    if (emulated) cats.push('emulated');
    if (predicted) cats.push('predicted');
    const args: Record<string, unknown> = { lane: laneLabel(s.lane[i]) };
    if (s.step[i] >= 0) args['step'] = s.step[i];
    if (s.micro[i] >= 0) args['micro'] = s.micro[i];
    if (s.stage[i] >= 0) args['stage'] = s.stage[i];
    if (s.bytes[i] > 0) args['bytes'] = s.bytes[i];
    if (s.peer[i] >= 0) {
      args['peer'] = laneLabel(s.peer[i]);
      args['peerLane'] = s.peer[i];
    }
    if (s.opType[i] >= 0) args['opType'] = trace.strings[s.opType[i]];
    if (s.comm[i] !== CommOpCode.none) args['comm'] = COMM_OPS[s.comm[i]] ?? 'none';
    if (s.phase[i] !== 0) args['phase'] = PHASES[s.phase[i]] ?? 'none';
    if ((flags & SpanFlag.staging) !== 0) args['staging'] = true;
    if ((flags & SpanFlag.synthetic) !== 0) args['synthetic'] = true;
    if ((flags & SpanFlag.gradient) !== 0) args['gradient'] = true;
    if (emulated) args['emulated'] = true;
    if (predicted) args['predicted'] = true;
    let name = trace.strings[s.name[i]] ?? '';
    if (kind === IDLE) {
      const cause = IDLE_CAUSES[s.cause[i]] ?? 'other';
      args['cause'] = cause;
      name = `idle: ${cause}`;
    }
    if (emulated) name += ' (emulated)';
    if (predicted) name += ' (predicted)';
    const a = lay.startNs[i];
    yield { name, cat: cats.join(','), ph: 'X', ts: usOf(a), dur: usOf(lay.endNs[i] - a), pid: lay.pidOfLane[s.lane[i]], tid: lay.tid[i], args };
  }
  yield* flowEvents(trace, lay);
}

/** Flow arrows from each send to its matching recv (see the module comment). */
function* flowEvents(trace: Trace, lay: Layout): Generator<ChromeTraceEvent> {
  const s = trace.spans;
  const sends = new Map<string, number[]>();
  const recvs = new Map<string, number[]>();
  for (let i = 0; i < s.count; i++) {
    if (s.kind[i] !== COMM || s.peer[i] < 0 || s.parent[i] >= 0) continue;
    const op = s.comm[i];
    if (!isP2pCode(op)) continue;
    const isSend = op === CommOpCode.send;
    const from = isSend ? s.lane[i] : s.peer[i];
    const to = isSend ? s.peer[i] : s.lane[i];
    const key = `${from}>${to}|${s.step[i]}|${s.micro[i]}`;
    const m = isSend ? sends : recvs;
    let list = m.get(key);
    if (!list) m.set(key, (list = []));
    list.push(i);
  }
  const byStart = (a: number, b: number): number => s.start[a] - s.start[b] || a - b;
  // Each end binds to the slice around the middle of its span, which no neighbour can share.
  const mid = (i: number): number => usOf(Math.round((lay.startNs[i] + lay.endNs[i]) / 2));
  let id = 1;
  for (const [key, out] of sends) {
    const inn = recvs.get(key);
    if (!inn) continue;
    out.sort(byStart);
    inn.sort(byStart);
    const n = Math.min(out.length, inn.length);
    for (let k = 0; k < n; k++) {
      const a = out[k];
      const b = inn[k];
      const args: Record<string, unknown> = {};
      if (s.bytes[a] > 0) args['bytes'] = s.bytes[a];
      if (s.step[a] >= 0) args['step'] = s.step[a];
      if (s.micro[a] >= 0) args['micro'] = s.micro[a];
      yield { name: 'transfer', cat: 'flow', ph: 's', id, ts: mid(a), pid: lay.pidOfLane[s.lane[a]], tid: lay.tid[a], args };
      yield { name: 'transfer', cat: 'flow', ph: 'f', bp: 'e', id, ts: mid(b), pid: lay.pidOfLane[s.lane[b]], tid: lay.tid[b], args };
      id++;
    }
  }
}

function otherData(trace: Trace): Record<string, unknown> {
  const m = trace.meta;
  return {
    parallax: {
      formatVersion: m.formatVersion,
      tool: m.tool,
      source: m.source,
      mode: m.mode,
      startTimeUs: m.startTimeUs,
      devices: m.devices.map((d) => d.label),
      notes: m.notes,
    },
  };
}

/** The trace as a Chrome Trace Event Format object (see the module comment for the layout). */
export function toChromeTrace(trace: Trace): ChromeTrace {
  return { traceEvents: [...chromeEvents(trace)], displayTimeUnit: 'ms', otherData: otherData(trace) };
}

/**
 * Writes the Chrome export atomically. Events are serialised one at a time into chunks,
 * so a trace with millions of spans never becomes one giant string.
 */
export async function writeChromeTrace(trace: Trace, outPath: string): Promise<void> {
  const chunks: Buffer[] = [];
  let part: string[] = [];
  let partLen = 0;
  const flush = (): void => {
    chunks.push(Buffer.from(part.join(''), 'utf8'));
    part = [];
    partLen = 0;
  };
  const put = (text: string): void => {
    part.push(text);
    partLen += text.length;
    if (partLen > 1 << 22) flush();
  };
  put('{"displayTimeUnit":"ms","otherData":');
  put(JSON.stringify(otherData(trace)));
  put(',"traceEvents":[');
  let first = true;
  for (const e of chromeEvents(trace)) {
    put(first ? JSON.stringify(e) : `,\n${JSON.stringify(e)}`);
    first = false;
  }
  put(']}\n');
  flush();
  await writeFileAtomic(outPath, Buffer.concat(chunks));
}
