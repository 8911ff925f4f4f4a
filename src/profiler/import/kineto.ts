/**
 * Import of PyTorch profiler (Kineto) traces: one Chrome-trace JSON file per rank of a
 * `torch.distributed` job, merged into one Parallax trace with one lane per rank.
 *
 * What becomes what:
 *  - lanes: one per rank (device kind `rank`, id `rank:N`, provider `kineto`), labelled with
 *    the GPU the rank's kernels ran on (`deviceProperties`). Rank and world size come from
 *    `distributedInfo`; ranks must be unique, and ranks of the world without a file are
 *    named in `meta.notes`.
 *  - spans: the GPU timeline only. Kernels (`cat: kernel`) are compute spans, except NCCL
 *    kernels (`ncclKernel…`, `ncclDevKernel…`), which are comm spans named `nccl:<collective>`
 *    with peer −1. GPU copies and fills (`gpu_memcpy`, `gpu_memset`) are comm spans too;
 *    copies that touch host memory (HtoD, DtoH, HtoH) carry the staging flag. Copies and
 *    fills are local to the rank, so they name the rank's own lane as their peer: that keeps
 *    the analyses from taking them for collectives that join every rank. Kernels that
 *    overlap on several CUDA streams stay as they are (spans of a lane may overlap; idle
 *    derivation takes their union). CPU ops are not imported as spans: they are used to name
 *    NCCL kernels and to find the step each kernel was launched in.
 *  - the collective of an NCCL kernel: the kernel's own `Collective name` argument (recent
 *    PyTorch), else the `nccl:*` annotation around the CPU call that launched it (matched by
 *    CUDA correlation id), else `record_param_comms` with the kernel's `External id`, else
 *    the kernel name (`ncclKernel_AllReduce_…` → `all_reduce`). Bytes are the input message
 *    size: `In msg nelems` × dtype size, or the annotation's input dims × element size.
 *  - steps: `ProfilerStep#N` annotations give each rank's CPU step windows; a kernel belongs
 *    to the step its launch (the CUDA runtime call with the kernel's correlation id) fell in.
 *    The device timeline's window of step N ends when the last rank's last kernel launched in
 *    step N ends, and starts where step N−1's window ended (the first step's starts at the
 *    earliest such kernel on any rank), so windows tile the device timeline and a GPU waiting
 *    for the CPU between steps shows as idle at the start of the next step. Steps are indexed
 *    by N; only steps every rank with annotations recorded are measured. Each span is then
 *    counted in the window that contains its start.
 *  - clocks: Kineto timestamps are host wall-clock µs (offset by `baseTimeNanoseconds` where
 *    present). Ranks on synchronised hosts keep their recorded times, so real skew between
 *    ranks stays visible. A rank whose step starts differ from the reference rank's (the
 *    lowest rank with steps) by more than half a median step cannot be on the same clock —
 *    a synchronous job keeps its ranks within a step of each other — so it is shifted by
 *    the median difference to line its step starts up with the reference's, and a note
 *    says so. Without step annotations, ranks whose activity does not overlap at all are
 *    aligned by their first kernel.
 *
 * Memory: events go one at a time into a {@link KinetoEventSink}, which turns device events
 * into typed-array columns at once and keeps a few numbers per CPU event it needs later, so
 * an event's object can be dropped as soon as it has been added. `kineto-stream.ts` feeds it
 * from the bytes of a file without ever holding the whole text or the whole event array;
 * {@link extractKinetoRank} feeds it from a document already parsed.
 */
import { median } from '../stats';
import { formatDuration } from '../units';
import { UserError } from '../../common/errors';
import { TOOL_VERSION } from '../../common/version';
import {
  CommOpCode,
  SpanFlag,
  SpanKind,
  TRACE_FORMAT_VERSION,
  commCodeOfCollective,
  TraceBuilder,
  type DeviceMeta,
  type Lane,
  type StepWindow,
  type Trace,
  type TraceMeta,
} from '../trace-format';
import { parseJsonDocument, readTextFile } from './read-json';
import { MAX_DURATION_US, MAX_TIMESTAMP_US, MAX_WORLD_SIZE } from '../../common/limits';

const COMPUTE = SpanKind.compute;
const COMM = SpanKind.comm;

/** Kernel names of NCCL's device code (`ncclKernel_…` up to NCCL 2.18, `ncclDevKernel_…` after). */
const NCCL_KERNEL = /^(?:void\s+)?nccl(?:Dev)?Kernel/i;

/** Bytes per element of the dtype names PyTorch writes into traces. */
const DTYPE_BYTES: ReadonlyMap<string, number> = new Map([
  ['float', 4], ['float32', 4], ['double', 8], ['float64', 8], ['half', 2], ['float16', 2], ['bfloat16', 2],
  ['c10::half', 2], ['c10::bfloat16', 2], ['long', 8], ['int64', 8], ['long int', 8], ['int', 4], ['int32', 4],
  ['short', 2], ['int16', 2], ['char', 1], ['signed char', 1], ['unsigned char', 1], ['byte', 1], ['uint8', 1],
  ['int8', 1], ['bool', 1], ['complexfloat', 8], ['c10::complex<float>', 8], ['complexdouble', 16],
  ['c10::complex<double>', 16], ['float8_e4m3fn', 1], ['float8_e5m2', 1], ['c10::float8_e4m3fn', 1], ['c10::float8_e5m2', 1],
]);

/** Bytes per element of a dtype name, or 0 when unknown. */
export function dtypeBytes(dtype: unknown): number {
  return typeof dtype === 'string' ? (DTYPE_BYTES.get(dtype.trim().toLowerCase()) ?? 0) : 0;
}

/** Collective names as PyTorch spells them in its various places, by their letters alone. */
const COLLECTIVES: ReadonlyMap<string, string> = new Map([
  ['allreduce', 'all_reduce'], ['allreducecoalesced', 'all_reduce_coalesced'], ['allgather', 'all_gather'],
  ['allgatherintotensor', 'all_gather'], ['allgathercoalesced', 'all_gather_coalesced'],
  ['allgatherintotensorcoalesced', 'all_gather_coalesced'], ['reducescatter', 'reduce_scatter'],
  ['reducescattertensor', 'reduce_scatter'], ['reducescattertensorcoalesced', 'reduce_scatter_coalesced'],
  ['alltoall', 'all_to_all'], ['alltoallv', 'all_to_all'], ['alltoallsingle', 'all_to_all'], ['broadcast', 'broadcast'],
  ['reduce', 'reduce'], ['gather', 'gather'], ['scatter', 'scatter'], ['send', 'send'], ['recv', 'recv'],
  ['sendrecv', 'send_recv'], ['barrier', 'barrier'],
]);

/**
 * The canonical snake_case name of a collective (`allreduce`, `_allgather_base`,
 * `AllReduce`, `all_to_all` → `all_reduce`, `all_gather`, `all_reduce`, `all_to_all`);
 * names it does not know come back lower-cased without leading underscores.
 */
export function canonicalCollective(raw: string): string {
  const lower = raw.trim().replace(/^nccl:/i, '').replace(/^_+/, '').toLowerCase();
  const base = lower.replace(/_base$/, '');
  return COLLECTIVES.get(base.replace(/[_\s]/g, '')) ?? base;
}

/** The collective of an NCCL kernel from its name (`ncclDevKernel_AllGather_RING_LL` → `all_gather`), or null. */
export function collectiveFromKernelName(name: string): string | null {
  const m = /nccl(?:Dev)?Kernel_([A-Za-z]+)/.exec(name);
  if (!m) return null;
  const camel = m[1].replace(/([a-z])([A-Z])/g, '$1_$2');
  return canonicalCollective(camel);
}

/** A Kineto event as JSON.parse gives it; nothing is trusted until checked. */
interface RawEvent {
  ph?: unknown;
  cat?: unknown;
  name?: unknown;
  ts?: unknown;
  dur?: unknown;
  pid?: unknown;
  tid?: unknown;
  args?: Record<string, unknown>;
}

/** One rank's file, reduced to what the merge needs: columns, steps and descriptive fields. */
export interface KinetoRank {
  /** The file, for messages. */
  source: string;
  /** `distributedInfo.rank`, null when the file has none. */
  rank: number | null;
  /** `distributedInfo.world_size`, null when the file has none. */
  worldSize: number | null;
  backend: string | null;
  /** `hostname` of the trace, where the profiler recorded one. */
  hostname: string | null;
  /** GPU names from `deviceProperties`, by device index. */
  gpuNames: Map<number, string>;
  /** Device indices the rank's GPU activity ran on, ascending. */
  gpus: number[];
  /**
   * The rank's clock: local time t (all times below) is `ts − tsRef`; its absolute time is
   * `baseUs + tsRef + t` µs since the epoch.
   */
  baseUs: number;
  tsRef: number;
  /** `ProfilerStep#N` windows on the CPU, local time, by N ascending. */
  cpuSteps: { index: number; startUs: number; endUs: number }[];
  /** Device spans, local time. */
  spans: {
    count: number;
    strings: string[];
    kind: Uint8Array;
    name: Int32Array;
    start: Float64Array;
    dur: Float64Array;
    bytes: Float64Array;
    flags: Uint8Array;
    /**
     * What each comm span does ({@link CommOpCode}): the collective of an NCCL kernel; 0 for
     * copies and fills, which move data within the rank and are no communication operation.
     */
    comm: Uint8Array;
    /** 1 for copies and fills, which are local to the rank. */
    local: Uint8Array;
    /** `ProfilerStep#N` the span was launched in (N), −1 when unknown. */
    launchStep: Int32Array;
  };
  /** NCCL kernels, and how many of them had no collective name but their kernel name. */
  ncclKernels: number;
  ncclNamedByKernel: number;
  /** Device spans whose launching runtime call was not found. */
  unlaunched: number;
  /** Complete events left out because `ts` or `dur` is not a number (a string, null, NaN). */
  untimed: number;
  /** Complete events left out because `ts` or `dur` is outside physical range (see `common/limits.ts`). */
  outOfRange: number;
  /** `NaN`/`Infinity` literals in the file, read as null. */
  nonFinite: number;
  /** What a file cut short lost (see `kineto-stream.ts`), null for a complete file. */
  truncated: string | null;
}

const num = (v: unknown): number | null => (typeof v === 'number' && Number.isFinite(v) ? v : null);
const str = (v: unknown): string | null => (typeof v === 'string' ? v : null);

function catOf(e: RawEvent): string {
  return typeof e.cat === 'string' ? e.cat.toLowerCase() : '';
}

/** The external id of an event, under either spelling Kineto has used. */
function externalId(args: Record<string, unknown> | undefined): number | null {
  if (!args) return null;
  return num(args['External id']) ?? num(args['external id']);
}

/** Bytes of an annotation's tensor inputs (`Input Dims` × `Input type` sizes). */
function inputBytes(args: Record<string, unknown> | undefined): number {
  const dims = args?.['Input Dims'];
  const types = args?.['Input type'];
  if (!Array.isArray(dims) || !Array.isArray(types)) return 0;
  let total = 0;
  for (let k = 0; k < dims.length; k++) {
    const d = dims[k];
    const size = dtypeBytes(types[k]);
    if (!Array.isArray(d) || d.length === 0 || size === 0) continue;
    let n = 1;
    for (const x of d) n *= typeof x === 'number' && x >= 0 ? x : 0;
    total += n * size;
  }
  return total;
}

/** Bytes from `In msg nelems` × dtype, as kernels and `record_param_comms` carry them. */
function msgBytes(args: Record<string, unknown> | undefined): number {
  const n = num(args?.['In msg nelems']);
  const size = dtypeBytes(args?.['dtype']);
  return n !== null && n > 0 && size > 0 ? n * size : 0;
}

/** Growable columns for one rank's spans. */
class RankColumns {
  count = 0;
  readonly strings: string[] = [];
  private readonly index = new Map<string, number>();
  kind = new Uint8Array(256);
  name = new Int32Array(256);
  start = new Float64Array(256);
  dur = new Float64Array(256);
  bytes = new Float64Array(256);
  flags = new Uint8Array(256);
  /** {@link CommOpCode} of NCCL kernels (see {@link commCodeOfCollective}); 0 for everything else. */
  comm = new Uint8Array(256);
  local = new Uint8Array(256);
  launchStep = new Int32Array(256);

  intern(s: string): number {
    let i = this.index.get(s);
    if (i === undefined) {
      i = this.strings.push(s) - 1;
      this.index.set(s, i);
    }
    return i;
  }

  push(kind: number, name: string, start: number, dur: number, bytes: number, flags: number, local: boolean): number {
    if (this.count === this.kind.length) this.grow();
    const i = this.count++;
    this.kind[i] = kind;
    this.name[i] = this.intern(name);
    this.start[i] = start;
    this.dur[i] = dur;
    this.bytes[i] = bytes;
    this.flags[i] = flags;
    this.comm[i] = 0;
    this.local[i] = local ? 1 : 0;
    this.launchStep[i] = -1;
    return i;
  }

  private grow(): void {
    const n = this.kind.length * 2;
    const g = <T extends Uint8Array | Int32Array | Float64Array>(a: T, make: (n: number) => T): T => {
      const b = make(n);
      b.set(a);
      return b;
    };
    this.kind = g(this.kind, (k) => new Uint8Array(k));
    this.name = g(this.name, (k) => new Int32Array(k));
    this.start = g(this.start, (k) => new Float64Array(k));
    this.dur = g(this.dur, (k) => new Float64Array(k));
    this.bytes = g(this.bytes, (k) => new Float64Array(k));
    this.flags = g(this.flags, (k) => new Uint8Array(k));
    this.comm = g(this.comm, (k) => new Uint8Array(k));
    this.local = g(this.local, (k) => new Uint8Array(k));
    this.launchStep = g(this.launchStep, (k) => new Int32Array(k));
  }

  finish(): KinetoRank['spans'] {
    const n = this.count;
    return {
      count: n,
      strings: this.strings,
      kind: this.kind.slice(0, n),
      name: this.name.slice(0, n),
      start: this.start.slice(0, n),
      dur: this.dur.slice(0, n),
      bytes: this.bytes.slice(0, n),
      flags: this.flags.slice(0, n),
      comm: this.comm.slice(0, n),
      local: this.local.slice(0, n),
      launchStep: this.launchStep.slice(0, n),
    };
  }
}

/** Index of the last window whose start is ≤ t and that contains t, or −1. */
function windowAt(starts: Float64Array, ends: Float64Array, t: number): number {
  let lo = 0;
  let hi = starts.length - 1;
  let found = -1;
  while (lo <= hi) {
    const mid = (lo + hi) >> 1;
    if (starts[mid] <= t) {
      found = mid;
      lo = mid + 1;
    } else {
      hi = mid - 1;
    }
  }
  return found >= 0 && t < ends[found] ? found : -1;
}

/** `nccl:*` CPU annotations of one thread, sorted by start, for finding the one around a launch. */
interface AnnotationList {
  start: number[];
  end: number[];
  event: number[];
}

/** The innermost annotation of `list` containing `t`, or −1. */
function annotationAround(list: AnnotationList | undefined, t: number): number {
  if (!list) return -1;
  let lo = 0;
  let hi = list.start.length - 1;
  let last = -1;
  while (lo <= hi) {
    const mid = (lo + hi) >> 1;
    if (list.start[mid] <= t) {
      last = mid;
      lo = mid + 1;
    } else {
      hi = mid - 1;
    }
  }
  // Annotations nest rarely and shallowly; look back a few for one that still contains t.
  for (let k = last; k >= 0 && k > last - 8; k--) if (list.end[k] >= t) return list.event[k];
  return -1;
}

/** The document's `traceEvents`, once it is known to be a Kineto trace at all. */
function kinetoDocument(doc: unknown, source: string): { d: Record<string, unknown>; events: unknown[] } {
  if (Array.isArray(doc)) {
    throw new UserError(`${source}: a bare array of trace events, not a PyTorch profiler (Kineto) trace; export it with torch.profiler's export_chrome_trace`);
  }
  if (typeof doc !== 'object' || doc === null) throw new UserError(`${source}: not a PyTorch profiler (Kineto) trace (the JSON is not an object)`);
  const d = doc as Record<string, unknown>;
  const events = d['traceEvents'];
  if (!Array.isArray(events)) throw new UserError(`${source}: not a PyTorch profiler (Kineto) trace: it has no "traceEvents" array`);
  return { d, events };
}

/** Rank, world size and backend from `distributedInfo`, each null when absent. */
function distributedInfo(d: Record<string, unknown>, source: string): { rank: number | null; worldSize: number | null; backend: string | null } {
  const dist = d['distributedInfo'];
  const distInfo = typeof dist === 'object' && dist !== null ? (dist as Record<string, unknown>) : null;
  const rankRaw = distInfo ? num(distInfo['rank']) : null;
  const worldRaw = distInfo ? num(distInfo['world_size']) : null;
  if (rankRaw !== null && (!Number.isInteger(rankRaw) || rankRaw < 0)) throw new UserError(`${source}: distributedInfo.rank ${rankRaw} is not a rank`);
  if (worldRaw !== null && (!Number.isInteger(worldRaw) || worldRaw < 1)) throw new UserError(`${source}: distributedInfo.world_size ${worldRaw} is not a world size`);
  if (worldRaw !== null && worldRaw > MAX_WORLD_SIZE) {
    throw new UserError(`${source}: distributedInfo.world_size ${worldRaw} is more ranks than any job has (Parallax reads up to ${MAX_WORLD_SIZE}); the file is corrupt`);
  }
  if (rankRaw !== null && rankRaw >= MAX_WORLD_SIZE) {
    throw new UserError(`${source}: distributedInfo.rank ${rankRaw} is beyond any job's ranks (Parallax reads up to ${MAX_WORLD_SIZE}); the file is corrupt`);
  }
  if (rankRaw !== null && worldRaw !== null && rankRaw >= worldRaw) {
    throw new UserError(`${source}: distributedInfo.rank ${rankRaw} is outside its world of ${worldRaw} ranks`);
  }
  return { rank: rankRaw, worldSize: worldRaw, backend: distInfo ? str(distInfo['backend']) : null };
}

/** GPU names from `deviceProperties`, by device index. */
function deviceNames(d: Record<string, unknown>): Map<number, string> {
  const gpuNames = new Map<number, string>();
  const props = d['deviceProperties'];
  if (Array.isArray(props)) {
    for (const p of props) {
      const id = num((p as Record<string, unknown> | null)?.['id']);
      const name = str((p as Record<string, unknown> | null)?.['name']);
      if (id !== null && name !== null) gpuNames.set(id, name);
    }
  }
  return gpuNames;
}

const UNTIMED = 0;
const OUT_OF_RANGE = 1;

/**
 * A complete event's start and duration, or why it has none: {@link UNTIMED} when either is
 * not a finite number, {@link OUT_OF_RANGE} when the duration is negative or longer than
 * {@link MAX_DURATION_US}, or the time beyond {@link MAX_TIMESTAMP_US} (values no clock produces,
 * which would turn every statistic they enter into nonsense).
 */
function eventTime(e: RawEvent): { ts: number; dur: number } | typeof UNTIMED | typeof OUT_OF_RANGE {
  const ts = num(e.ts);
  const dur = num(e.dur);
  if (ts === null || dur === null) return UNTIMED;
  if (dur < 0 || dur > MAX_DURATION_US || Math.abs(ts) > MAX_TIMESTAMP_US) return OUT_OF_RANGE;
  return { ts, dur };
}

/** What naming an NCCL kernel needs from the kernel event itself. */
interface NcclKernelArgs {
  collective: string | null;
  externalId: number | null;
}

/** `nccl:*` CPU annotations of one thread in trace order, with raw (absolute) times. */
interface RawAnnotations {
  ts: number[];
  dur: number[];
  name: string[];
  /** {@link inputBytes} of the annotation's args. */
  bytes: number[];
}

/** What a `record_param_comms` event says about the collective with its external id. */
interface ParamComms {
  collective: string | null;
  bytes: number;
}

/** The parts of one rank {@link KinetoEventSink.finish} derives from the events alone. */
export type RankEvents = Pick<
  KinetoRank,
  'gpus' | 'tsRef' | 'cpuSteps' | 'spans' | 'ncclKernels' | 'ncclNamedByKernel' | 'unlaunched' | 'untimed' | 'outOfRange'
>;

/**
 * One rank's events on their way to columns, fed one event at a time in trace order (from a
 * parsed document or from a stream of batches) and dropped right after: device events
 * become spans at once; the CPU side keeps only what naming and step assignment need
 * (runtime calls as three numbers, `nccl:*` annotations, `record_param_comms` and step
 * annotations as a few fields). Times are kept as recorded until {@link finish}, which knows
 * the clock origin (the earliest complete event) and subtracts it, so local times stay small
 * and keep their sub-µs digits.
 */
export class KinetoEventSink {
  private readonly cols = new RankColumns();
  private tsRef = Infinity;
  private untimed = 0;
  private outOfRange = 0;
  /** Span k of the columns was launched under correlation id devCorr[k] (−1 when unknown). */
  private readonly devCorr: number[] = [];
  /** The kernel's own naming arguments, for NCCL kernels, by span. */
  private readonly ncclArgs = new Map<number, NcclKernelArgs>();
  /** Runtime calls (kernel launches, copies) with a correlation id: id, time, thread. */
  private readonly rtCorr: number[] = [];
  private readonly rtTs: number[] = [];
  private readonly rtTid: number[] = [];
  private readonly tids = new Map<string, number>();
  private readonly tidNames: string[] = [];
  private readonly ncclByTid = new Map<string, RawAnnotations>();
  private readonly paramComms = new Map<number, ParamComms>();
  private readonly stepRaw = new Map<number, { ts: number[]; dur: number[] }>();
  private readonly gpus = new Set<number>();
  /** Events seen (array elements of `traceEvents`, whatever they hold). */
  events = 0;

  /** Adds one element of `traceEvents`; anything but a complete event with valid times is skipped. */
  add(value: unknown): void {
    this.events++;
    if (value === null || typeof value !== 'object') return;
    const e = value as RawEvent;
    if (e.ph !== 'X') return;
    const time = eventTime(e);
    if (time === UNTIMED) {
      this.untimed++;
      return;
    }
    if (time === OUT_OF_RANGE) {
      this.outOfRange++;
      return;
    }
    const { ts, dur } = time;
    if (ts < this.tsRef) this.tsRef = ts;
    const cat = catOf(e);
    const name = typeof e.name === 'string' ? e.name : '';
    const args = typeof e.args === 'object' && e.args !== null ? e.args : undefined;
    if (cat === 'kernel' || cat === 'gpu_memcpy' || cat === 'memcpy' || cat === 'gpu_memset' || cat === 'memset') {
      this.addDeviceEvent(e, cat, name, args, ts, dur);
    } else if (cat === 'cuda_runtime' || cat === 'cuda_driver' || cat === 'runtime') {
      // Only a correlation id ≥ 0 can match a device span's (see finish).
      const corr = num(args?.['correlation']) ?? -1;
      if (corr >= 0) {
        this.rtCorr.push(corr);
        this.rtTs.push(ts);
        this.rtTid.push(this.tid(e.tid));
      }
    } else if (cat === 'user_annotation' || cat === 'cpu_op' || cat === 'operator') {
      this.addCpuEvent(e, name, args, ts, dur);
    }
  }

  private tid(raw: unknown): number {
    const key = String(raw);
    let i = this.tids.get(key);
    if (i === undefined) {
      i = this.tidNames.push(key) - 1;
      this.tids.set(key, i);
    }
    return i;
  }

  private addDeviceEvent(e: RawEvent, cat: string, name: string, args: Record<string, unknown> | undefined, ts: number, dur: number): void {
    const cols = this.cols;
    const dev = num(args?.['device']) ?? num(e.pid);
    if (dev !== null) this.gpus.add(dev);
    let span: number;
    if (cat === 'kernel') {
      // NCCL kernels are named in finish, once the CPU side is complete; mark them by name now.
      if (NCCL_KERNEL.test(name)) {
        span = cols.push(COMM, name, ts, dur, msgBytes(args), 0, false);
        this.ncclArgs.set(span, { collective: str(args?.['Collective name']), externalId: externalId(args) });
      } else {
        span = cols.push(COMPUTE, name, ts, dur, 0, 0, false);
      }
    } else {
      const copy = cat.endsWith('memcpy');
      const staging = copy && /\b(HtoD|DtoH|HtoH)\b/.test(name);
      span = cols.push(COMM, name || (copy ? 'Memcpy' : 'Memset'), ts, dur, num(args?.['bytes']) ?? 0, staging ? SpanFlag.staging : 0, true);
    }
    this.devCorr[span] = num(args?.['correlation']) ?? -1;
  }

  private addCpuEvent(e: RawEvent, name: string, args: Record<string, unknown> | undefined, ts: number, dur: number): void {
    const m = /^ProfilerStep#(\d+)$/.exec(name);
    if (m) {
      const n = Number(m[1]);
      let w = this.stepRaw.get(n);
      if (!w) this.stepRaw.set(n, (w = { ts: [], dur: [] }));
      w.ts.push(ts);
      w.dur.push(dur);
    } else if (name.startsWith('nccl:')) {
      const key = String(e.tid);
      let list = this.ncclByTid.get(key);
      if (!list) this.ncclByTid.set(key, (list = { ts: [], dur: [], name: [], bytes: [] }));
      list.ts.push(ts);
      list.dur.push(dur);
      list.name.push(name);
      list.bytes.push(inputBytes(args));
    } else if (name === 'record_param_comms') {
      const ext = externalId(args);
      if (ext !== null && args) this.paramComms.set(ext, { collective: str(args['Collective name']), bytes: msgBytes(args) });
    }
  }

  /**
   * The rank's columns, steps and counts, once every event has been added. Throws a
   * {@link UserError} naming `source` when no complete event has usable times or none is
   * GPU activity.
   */
  finish(source: string): RankEvents {
    const tsRef = this.tsRef;
    if (!Number.isFinite(tsRef)) {
      const dropped = this.untimed + this.outOfRange;
      throw new UserError(
        dropped > 0
          ? `${source}: none of its ${dropped} complete ("ph": "X") events has a numeric "ts" and a "dur" within physical range (0 to ${MAX_DURATION_US.toExponential()} µs); the file is not a usable trace`
          : `${source}: has no complete ("ph": "X") events; is it a PyTorch profiler trace?`,
      );
    }
    const cols = this.cols;
    if (cols.count === 0) {
      throw new UserError(
        `${source}: no GPU activity (no "kernel", "gpu_memcpy" or "gpu_memset" events); Parallax imports the GPU timeline of PyTorch profiler traces recorded with ProfilerActivity.CUDA`,
      );
    }
    for (let k = 0; k < cols.count; k++) cols.start[k] = cols.start[k] - tsRef;
    const cpuSteps = this.cpuSteps(tsRef);
    const annotations = this.annotations(tsRef);
    const counts = this.resolveLaunches(cpuSteps, annotations, tsRef);
    return {
      gpus: [...this.gpus].sort((a, b) => a - b),
      tsRef,
      cpuSteps,
      spans: cols.finish(),
      ...counts,
      untimed: this.untimed,
      outOfRange: this.outOfRange,
    };
  }

  /** `ProfilerStep#N` windows in local time, by N ascending. */
  private cpuSteps(tsRef: number): KinetoRank['cpuSteps'] {
    const out: KinetoRank['cpuSteps'] = [];
    for (const [index, w] of this.stepRaw) {
      let startUs = Infinity;
      let endUs = -Infinity;
      for (let j = 0; j < w.ts.length; j++) {
        const t = w.ts[j] - tsRef;
        startUs = j === 0 ? t : Math.min(startUs, t);
        endUs = j === 0 ? t + w.dur[j] : Math.max(endUs, t + w.dur[j]);
      }
      out.push({ index, startUs, endUs });
    }
    return out.sort((a, b) => a.index - b.index);
  }

  /** Each thread's `nccl:*` annotations in local time, in time order. */
  private annotations(tsRef: number): Map<string, AnnotationList & { name: string[]; bytes: number[] }> {
    const out = new Map<string, AnnotationList & { name: string[]; bytes: number[] }>();
    for (const [tid, raw] of this.ncclByTid) {
      const start = raw.ts.map((ts) => ts - tsRef);
      // Annotations arrive in trace order, which is usually but not always time order.
      const order = start.map((_, k) => k).sort((a, b) => start[a] - start[b]);
      out.set(tid, {
        start: order.map((k) => start[k]),
        end: order.map((k) => start[k] + raw.dur[k]),
        event: order,
        name: raw.name,
        bytes: raw.bytes,
      });
    }
    return out;
  }

  /**
   * Each device span's launch (the runtime call with its correlation id) gives its step and,
   * for NCCL kernels, the thread whose annotations name the collective.
   */
  private resolveLaunches(
    cpuSteps: KinetoRank['cpuSteps'],
    annotations: Map<string, AnnotationList & { name: string[]; bytes: number[] }>,
    tsRef: number,
  ): Pick<RankEvents, 'ncclKernels' | 'ncclNamedByKernel' | 'unlaunched'> {
    const cols = this.cols;
    const stepStarts = Float64Array.from(cpuSteps, (w) => w.startUs);
    const stepEnds = Float64Array.from(cpuSteps, (w) => w.endUs);
    const spanOfCorr = new Map<number, number>();
    for (let k = 0; k < this.devCorr.length; k++) if (this.devCorr[k] >= 0) spanOfCorr.set(this.devCorr[k], k);
    const launchTs = new Float64Array(cols.count).fill(NaN);
    const launchTid: (string | undefined)[] = [];
    for (let j = 0; j < this.rtCorr.length; j++) {
      const k = spanOfCorr.get(this.rtCorr[j]);
      if (k === undefined) continue;
      launchTs[k] = this.rtTs[j] - tsRef;
      if (cols.kind[k] === COMM && cols.local[k] === 0) launchTid[k] = this.tidNames[this.rtTid[j]];
    }
    let unlaunched = 0;
    let ncclKernels = 0;
    let ncclNamedByKernel = 0;
    for (let k = 0; k < cols.count; k++) {
      const launched = !Number.isNaN(launchTs[k]);
      if (!launched) unlaunched++;
      // Without the launch, the kernel's own start is the next best guess of its step.
      const w = windowAt(stepStarts, stepEnds, launched ? launchTs[k] : cols.start[k]);
      cols.launchStep[k] = w >= 0 ? cpuSteps[w].index : -1;
      if (cols.kind[k] !== COMM || cols.local[k] === 1) continue;
      ncclKernels++;
      const tid = launchTid[k];
      const list = !Number.isNaN(launchTs[k]) && tid !== undefined ? annotations.get(tid) : undefined;
      if (this.nameNcclKernel(k, list, list ? annotationAround(list, launchTs[k]) : -1)) ncclNamedByKernel++;
    }
    return { ncclKernels, ncclNamedByKernel, unlaunched };
  }

  /**
   * Names NCCL kernel k by its collective and fills in its bytes (see the module comment for
   * the order of sources); `ann` is the annotation of `list` around its launch, or −1.
   * Returns true when only the kernel name was left to name it by.
   */
  private nameNcclKernel(k: number, list: { name: string[]; bytes: number[] } | undefined, ann: number): boolean {
    const cols = this.cols;
    const own = this.ncclArgs.get(k);
    let collective = own?.collective ?? null;
    let bytes = cols.bytes[k];
    if (collective === null && list && ann >= 0) collective = list.name[ann];
    const ext = own?.externalId ?? null;
    const param = ext !== null ? this.paramComms.get(ext) : undefined;
    if (collective === null && param) collective = param.collective;
    if (bytes === 0 && param) bytes = param.bytes;
    if (bytes === 0 && list && ann >= 0) bytes = list.bytes[ann];
    const kernelName = cols.strings[cols.name[k]];
    let byKernel = false;
    if (collective === null) {
      collective = collectiveFromKernelName(kernelName);
      byKernel = true;
    }
    const canonical = collective === null ? null : canonicalCollective(collective);
    cols.name[k] = cols.intern(`nccl:${canonical ?? 'kernel'}`);
    cols.comm[k] = canonical === null ? CommOpCode.none : commCodeOfCollective(canonical);
    cols.bytes[k] = bytes;
    return byKernel;
  }
}

/** The top-level fields of a Kineto document other than its events. */
export interface RankHeader {
  rank: number | null;
  worldSize: number | null;
  backend: string | null;
  hostname: string | null;
  gpuNames: Map<number, string>;
  baseUs: number;
}

/**
 * Reads the top-level fields (all but `traceEvents`) of a Kineto document, refusing what is
 * not a Kineto trace. The streaming reader passes the document with its events left out.
 */
export function kinetoHeader(doc: unknown, source: string): RankHeader {
  const { d } = kinetoDocument(doc, source);
  const dist = distributedInfo(d, source);
  const gpuNames = deviceNames(d);
  const baseNs = num(d['baseTimeNanoseconds']);
  return {
    rank: dist.rank,
    worldSize: dist.worldSize,
    backend: dist.backend,
    hostname: str(d['hostname']) ?? str(d['host_name']),
    gpuNames,
    baseUs: baseNs !== null ? baseNs / 1000 : 0,
  };
}

/** One rank from its header and its events' sink; `truncated` is the note of a cut file. */
export function kinetoRankOf(source: string, header: RankHeader, events: RankEvents, nonFinite: number, truncated: string | null = null): KinetoRank {
  return { source, ...header, ...events, nonFinite, truncated };
}

/**
 * Reduces one parsed Kineto document to a {@link KinetoRank}. Throws a {@link UserError}
 * naming `source` when the document is not a Kineto trace or has no GPU activity.
 */
export function extractKinetoRank(doc: unknown, source: string, nonFinite = 0): KinetoRank {
  const header = kinetoHeader(doc, source);
  const sink = new KinetoEventSink();
  for (const e of kinetoDocument(doc, source).events) sink.add(e);
  return kinetoRankOf(source, header, sink.finish(source), nonFinite);
}

/** `0–3, 5, 7–9` for a sorted list of integers; long lists are cut after `max` runs. */
export function formatRanges(xs: number[], max = 6): string {
  const runs: string[] = [];
  for (let i = 0; i < xs.length; ) {
    let j = i;
    while (j + 1 < xs.length && xs[j + 1] === xs[j] + 1) j++;
    runs.push(j === i ? String(xs[i]) : `${xs[i]}–${xs[j]}`);
    i = j + 1;
  }
  return runs.length > max ? `${runs.slice(0, max).join(', ')}, … (${runs.length - max} more runs)` : runs.join(', ');
}

/**
 * The integers in [0, `size`) that are not in `present` (distinct, each below `size`), as
 * {@link formatRanges} writes them, in time proportional to `present`, not to `size`.
 */
export function formatGaps(present: readonly number[], size: number, max = 6): string {
  const sorted = [...present].sort((a, b) => a - b);
  const runs: string[] = [];
  let next = 0;
  let total = 0;
  const run = (a: number, b: number): void => {
    if (b < a) return;
    total++;
    if (runs.length < max) runs.push(a === b ? `${a}` : `${a}–${b}`);
  };
  for (const r of sorted) {
    run(next, r - 1);
    next = r + 1;
  }
  run(next, size - 1);
  return total > max ? `${runs.join(', ')}, … (${total - max} more runs)` : runs.join(', ');
}

const fmtUs = (us: number): string => formatDuration(us, { msDigits: 2 });

/** Gives every rank a rank number and checks them against each other and the world size. */
function assignRanks(files: KinetoRank[]): { ranks: number[]; worldSize: number; notes: string[] } {
  const notes: string[] = [];
  const withRank = files.filter((f) => f.rank !== null);
  let ranks: number[];
  if (withRank.length === 0) {
    ranks = files.map((_, i) => i);
    if (files.length > 1) notes.push('The files carry no distributedInfo; ranks were numbered in the order the files were given.');
  } else if (withRank.length < files.length) {
    const f = files.find((x) => x.rank === null)!;
    throw new UserError(`${f.source}: has no distributedInfo.rank while the other files do; import the files of one job only`);
  } else {
    ranks = files.map((f) => f.rank!);
  }
  const seen = new Map<number, string>();
  files.forEach((f, i) => {
    const prev = seen.get(ranks[i]);
    if (prev !== undefined) throw new UserError(`${f.source}: rank ${ranks[i]} again (also in ${prev}); give each rank's file once`);
    seen.set(ranks[i], f.source);
  });
  const worlds = [...new Set(files.map((f) => f.worldSize).filter((w): w is number => w !== null))];
  if (worlds.length > 1) {
    const f = files.find((x) => x.worldSize !== null && x.worldSize !== worlds[0])!;
    throw new UserError(`${f.source}: world size ${f.worldSize} differs from ${worlds[0]} in ${files.find((x) => x.worldSize === worlds[0])!.source}; these files are not from one job`);
  }
  const worldSize = worlds[0] ?? ranks.reduce((a, b) => Math.max(a, b), 0) + 1;
  const outside = files.findIndex((_, i) => ranks[i] >= worldSize);
  if (outside >= 0) throw new UserError(`${files[outside].source}: rank ${ranks[outside]} is outside the world of ${worldSize} ranks`);
  // The missing ranks are the gaps between the present ones: work in the number of files,
  // never in the world size a file claims.
  const missingCount = worldSize - ranks.length;
  if (missingCount > 0) {
    notes.push(
      `${missingCount} of the world's ${worldSize} ranks ${missingCount === 1 ? 'has' : 'have'} no file here (rank${missingCount === 1 ? '' : 's'} ${formatGaps(ranks, worldSize)}); their time is not shown, though the ranks shown wait for them inside collectives.`,
    );
  }
  return { ranks, worldSize, notes };
}

/**
 * The ranks of a merge in rank order, the reference rank (the lowest with steps) whose
 * clock the others are put on, and the notes the merge gathers for the trace.
 */
interface MergeContext {
  rs: KinetoRank[];
  rankOf: number[];
  ref: number;
  notes: string[];
}

/**
 * Offsets that put each rank's local time on the reference's: the recorded clocks, unless
 * matching step starts show a rank cannot share the reference's clock.
 */
function clockShifts(m: MergeContext): number[] {
  const { rs, rankOf, ref, notes } = m;
  // Recorded clock offsets: local time of rank r + offset = local time of the reference.
  const recorded = rs.map((f) => f.baseUs - rs[ref].baseUs + (f.tsRef - rs[ref].tsRef));
  const shift = recorded.slice();
  const refSteps = new Map(rs[ref].cpuSteps.map((w) => [w.index, w]));
  const refStepUs = median(rs[ref].cpuSteps.map((w) => w.endUs - w.startUs));
  let agreeUs = 0;
  let compared = 0;
  for (let r = 0; r < rs.length; r++) {
    if (r === ref) continue;
    const diffs: number[] = [];
    for (const w of rs[r].cpuSteps) {
      const o = refSteps.get(w.index);
      if (o) diffs.push(w.startUs + recorded[r] - o.startUs);
    }
    if (diffs.length === 0) {
      if (rs[r].cpuSteps.length > 0 || rs[ref].cpuSteps.length > 0) {
        notes.push(`rank ${rankOf[r]} shares no ProfilerStep number with rank ${rankOf[ref]}; its recorded clock is kept unchecked.`);
      }
      continue;
    }
    const d = median(diffs);
    if (Math.abs(d) > 0.5 * refStepUs) {
      shift[r] = recorded[r] - d;
      notes.push(
        `rank ${rankOf[r]}'s clock is ${fmtUs(Math.abs(d))} ${d > 0 ? 'ahead of' : 'behind'} rank ${rankOf[ref]}'s at matching step starts, more than half a step, so it cannot share its clock: it was shifted to start its steps with rank ${rankOf[ref]}, and skew between the two at step start is not measured.`,
      );
    } else {
      agreeUs = Math.max(agreeUs, Math.max(...diffs.map(Math.abs)));
      compared++;
    }
  }
  if (compared > 0) {
    notes.push(`Rank clocks were kept as recorded: step starts agree across ranks within ${fmtUs(agreeUs)}, so differences between ranks are real.`);
  }
  return shift;
}

/** Each rank's first device span start and last device span end, local time. */
function deviceExtents(rs: KinetoRank[]): { first: number[]; last: number[] } {
  const first = rs.map((f) => f.spans.start.reduce((a, b) => Math.min(a, b), Infinity));
  const last = rs.map((f) => {
    let m = -Infinity;
    for (let k = 0; k < f.spans.count; k++) m = Math.max(m, f.spans.start[k] + f.spans.dur[k]);
    return m;
  });
  return { first, last };
}

function alignByFirstKernel(m: MergeContext, shift: number[], first: number[], last: number[]): void {
  const { rs, rankOf, ref, notes } = m;
  // Without steps on both sides, ranks whose activity does not even overlap are aligned by
  // their first kernel, which is the only common event left.
  for (let r = 0; r < rs.length; r++) {
    if (r === ref || (rs[r].cpuSteps.length > 0 && rs[ref].cpuSteps.length > 0)) continue;
    const a0 = first[r] + shift[r];
    const a1 = last[r] + shift[r];
    if (a1 < first[ref] || a0 > last[ref]) {
      shift[r] += first[ref] - a0;
      notes.push(`rank ${rankOf[r]}'s activity does not overlap rank ${rankOf[ref]}'s on the recorded clocks and there are no common steps: it was aligned by its first kernel.`);
    }
  }
}

/** The step numbers to measure: those every rank with steps recorded, or failing that all of them. */
function measuredSteps(m: MergeContext): number[] {
  const { rs, notes } = m;
  const stepSets = rs.filter((f) => f.cpuSteps.length > 0).map((f) => new Set(f.cpuSteps.map((w) => w.index)));
  const union = [...new Set(stepSets.flatMap((s) => [...s]))].sort((a, b) => a - b);
  let measured = union.filter((n) => stepSets.every((s) => s.has(n)));
  if (measured.length < union.length) {
    const kept = new Set(measured);
    const dropped = union.filter((n) => !kept.has(n));
    if (measured.length === 0) {
      measured = union;
      notes.push(`The ranks share no ProfilerStep number; every step any rank recorded is used (${formatRanges(union)}).`);
    } else {
      notes.push(`Steps ${formatRanges(dropped)} were not recorded by every rank and are left out of the measured steps.`);
    }
  }
  return measured;
}

/** Step windows on the device timeline (reference frame): see the module comment. */
function stepWindows(m: MergeContext, shift: number[], first: number[], last: number[]): StepWindow[] {
  const { rs, notes } = m;
  const measured = measuredSteps(m);
  const firstOf = new Map<number, number>();
  const lastOf = new Map<number, number>();
  rs.forEach((f, r) => {
    const s = f.spans;
    for (let k = 0; k < s.count; k++) {
      const n = s.launchStep[k];
      if (n < 0) continue;
      const a = s.start[k] + shift[r];
      const b = a + s.dur[k];
      if (a < (firstOf.get(n) ?? Infinity)) firstOf.set(n, a);
      if (b > (lastOf.get(n) ?? -Infinity)) lastOf.set(n, b);
    }
  });
  const windows: StepWindow[] = [];
  const noDevice: number[] = [];
  for (const n of measured) {
    const a = firstOf.get(n);
    const b = lastOf.get(n);
    if (a === undefined || b === undefined) {
      noDevice.push(n);
      continue;
    }
    const prev = windows[windows.length - 1];
    const startUs = prev && prev.index === n - 1 ? prev.endUs : a;
    windows.push({ index: n, startUs, endUs: Math.max(b, startUs) });
  }
  if (noDevice.length > 0) notes.push(`Steps ${formatRanges(noDevice)} launched no GPU work on any rank and are left out.`);
  if (windows.length === 0) {
    // No step annotations at all: the whole device timeline is one step.
    const a = Math.min(...first.map((x, r) => x + shift[r]));
    const b = Math.max(...last.map((x, r) => x + shift[r]));
    windows.push({ index: 0, startUs: a, endUs: b });
    notes.push('No ProfilerStep#N annotations (torch.profiler with schedule and prof.step()): the whole trace is treated as one step.');
  }
  notes.push(
    "Step windows are on the GPU timeline: step N ends when the last rank's last kernel launched during ProfilerStep#N ends, and starts where step N−1 ended; each kernel counts in the window it starts in.",
  );
  return windows;
}

/** Step windows with their starts and ends as columns, for looking up the window of a time. */
interface WindowIndex {
  windows: StepWindow[];
  start: Float64Array;
  end: Float64Array;
}

/**
 * Appends rank r's spans to the builder as device r, each in the step window its start
 * (shifted by `shiftUs` to the reference frame) falls in, with times from `t0`.
 */
function appendRankSpans(builder: TraceBuilder, f: KinetoRank, r: number, shiftUs: number, t0: number, wi: WindowIndex): void {
  const s = f.spans;
  const step = new Int32Array(s.count);
  const peer = new Int32Array(s.count);
  for (let k = 0; k < s.count; k++) {
    const w = windowAt(wi.start, wi.end, s.start[k] + shiftUs);
    step[k] = w >= 0 ? wi.windows[w].index : -1;
    peer[k] = s.local[k] === 1 ? r : -1;
  }
  const minus1 = new Int32Array(s.count).fill(-1);
  const zeros = new Uint8Array(s.count);
  // Kineto's GPU timeline does not say which kernels belong to the forward, backward or
  // optimizer part of a step, so `phase` stays none.
  builder.appendBlock(
    { count: s.count, strings: s.strings, kind: s.kind, name: s.name, opType: minus1, start: s.start, dur: s.dur, step, micro: minus1, stage: minus1, bytes: s.bytes, peer, parent: minus1, flags: s.flags, cause: zeros, comm: s.comm, phase: zeros },
    r,
    t0 - shiftUs,
  );
}

/** The device and lane of one rank, labelled with its GPUs. */
function rankDevice(f: KinetoRank, r: number, rank: number): { device: DeviceMeta; lane: Lane } {
  const gpuList = f.gpus.length > 0 ? f.gpus : [0];
  const names = [...new Set(gpuList.map((g) => f.gpuNames.get(g)).filter((x): x is string => x !== undefined))];
  const gpuWords = `GPU ${gpuList.join('+')}${names.length > 0 ? ` (${names.join(', ')})` : ''}`;
  const unit = `${f.hostname ?? `rank ${rank}`} · GPU ${gpuList.join('+')}`;
  return {
    device: {
      id: `rank:${rank}`,
      kind: 'rank',
      provider: 'kineto',
      threads: 0,
      physicalUnit: unit,
      sharesPhysicalUnit: false,
      software: false,
      label: `rank ${rank} · ${gpuWords}`,
    },
    lane: { device: r, label: `rank ${rank} · ${gpuWords}`, group: unit },
  };
}

/** Marks devices that share their physical unit with another, and relabels their lanes. */
function markSharedGpus(devices: DeviceMeta[], lanes: Lane[]): void {
  // Two ranks on one GPU of one host (known only when the traces name their host).
  const units = new Map<string, number>();
  for (const d of devices) units.set(d.physicalUnit, (units.get(d.physicalUnit) ?? 0) + 1);
  for (const d of devices) {
    if ((units.get(d.physicalUnit) ?? 0) > 1) {
      d.sharesPhysicalUnit = true;
      d.label += ' (shared GPU)';
    }
  }
  lanes.forEach((l, i) => (l.label = devices[i].label));
}

/** Notes on what the files lacked: collective names, launch calls, host names. */
function importNotes(rs: KinetoRank[], notes: string[]): void {
  let ncclTotal = 0;
  let ncclByKernel = 0;
  let unlaunched = 0;
  let untimed = 0;
  let outOfRange = 0;
  let nonFinite = 0;
  for (const f of rs) {
    ncclTotal += f.ncclKernels;
    ncclByKernel += f.ncclNamedByKernel;
    unlaunched += f.unlaunched;
    untimed += f.untimed;
    outOfRange += f.outOfRange;
    nonFinite += f.nonFinite;
  }
  if (untimed > 0) notes.push(`${untimed} complete events had a "ts" or "dur" that is not a number and were left out.`);
  if (outOfRange > 0) {
    notes.push(`${outOfRange} complete events had a negative duration, one longer than ${MAX_DURATION_US.toExponential()} µs, or a time beyond any clock, and were left out.`);
  }
  for (const f of rs) if (f.truncated !== null) notes.push(f.truncated);
  if (nonFinite > 0) notes.push(`${nonFinite} NaN or Infinity values in the files (written by Python's json) were read as missing.`);
  if (ncclByKernel > 0) {
    notes.push(`${ncclByKernel} of ${ncclTotal} NCCL kernels had no collective name in the trace; they are named from the kernel name.`);
  }
  if (unlaunched > 0) notes.push(`${unlaunched} GPU spans had no launch call in the trace; their step was taken from their own start.`);
  if (!rs.some((f) => f.hostname !== null)) {
    notes.push('Kineto traces do not record the host; ranks are drawn as separate GPUs, and host details are unknown.');
  }
}

/**
 * Merges ranks extracted by {@link extractKinetoRank} into one trace (lanes in rank order).
 * Idle spans are not derived here: run `deriveIdle` on the result, as for any trace.
 */
export function mergeKinetoRanks(files: KinetoRank[]): Trace {
  if (files.length === 0) throw new UserError('no Kineto trace files given');
  const { ranks, worldSize, notes } = assignRanks(files);
  const order = files.map((_, i) => i).sort((a, b) => ranks[a] - ranks[b]);
  const rs = order.map((i) => files[i]);
  const rankOf = order.map((i) => ranks[i]);
  const nR = rs.length;

  const withSteps = rs.map((f, r) => (f.cpuSteps.length > 0 ? r : -1)).filter((r) => r >= 0);
  const ref = withSteps[0] ?? 0;
  const m: MergeContext = { rs, rankOf, ref, notes };
  const shift = clockShifts(m);
  const { first, last } = deviceExtents(rs);
  alignByFirstKernel(m, shift, first, last);
  const windows = stepWindows(m, shift, first, last);

  // Time zero: the earliest device span of any rank, in the reference frame.
  let t0 = Infinity;
  for (let r = 0; r < nR; r++) t0 = Math.min(t0, first[r] + shift[r]);
  const wi: WindowIndex = { windows, start: Float64Array.from(windows, (w) => w.startUs), end: Float64Array.from(windows, (w) => w.endUs) };

  const builder = new TraceBuilder();
  const devices: DeviceMeta[] = [];
  const lanes: Lane[] = [];
  rs.forEach((f, r) => {
    appendRankSpans(builder, f, r, shift[r], t0, wi);
    const { device, lane } = rankDevice(f, r, rankOf[r]);
    devices.push(device);
    lanes.push(lane);
  });
  markSharedGpus(devices, lanes);
  importNotes(rs, notes);

  const refAbs = rs[ref].baseUs + rs[ref].tsRef;
  const meta: TraceMeta = {
    formatVersion: TRACE_FORMAT_VERSION,
    tool: { name: 'parallax', version: TOOL_VERSION },
    source: 'imported:kineto',
    mode: 'imported',
    plan: {
      mode: 'imported',
      worldSize,
      ranks: [...rankOf],
      steps: windows.length,
      stepIndices: windows.map((w) => w.index),
      backend: rs.find((f) => f.backend !== null)?.backend ?? 'unknown',
      files: rs.map((f) => f.source),
    },
    devices,
    host: { cpuModel: 'unknown', cores: 0, memoryBytes: 0, os: 'unknown', node: 'unknown' },
    startTimeUs: refAbs + t0,
    opLevel: false,
    notes,
  };
  return {
    meta,
    strings: builder.strings,
    lanes,
    steps: windows.map((w) => ({ index: w.index, startUs: w.startUs - t0, endUs: w.endUs - t0 })),
    spans: builder.finish(),
  };
}

/** Merges parsed Kineto documents (one per rank) into one trace; for tests and callers holding JSON. */
export function kinetoTrace(docs: { doc: unknown; source: string }[]): Trace {
  return mergeKinetoRanks(docs.map(({ doc, source }) => extractKinetoRank(doc, source)));
}

/** Reads one Kineto file (plain or gzip) and reduces it to a {@link KinetoRank}. */
export async function readKinetoRank(path: string): Promise<KinetoRank> {
  const { doc, nonFinite } = parseJsonDocument(await readTextFile(path), path);
  return extractKinetoRank(doc, path, nonFinite);
}

/**
 * Imports Kineto trace files, one per rank, into one trace. Files are read one at a time
 * and reduced to columns before the next is parsed, so only one parsed document is held.
 */
export async function importKineto(paths: string[]): Promise<Trace> {
  const ranks: KinetoRank[] = [];
  for (const p of paths) ranks.push(await readKinetoRank(p));
  return mergeKinetoRanks(ranks);
}
