/**
 * Span recording inside a device worker.
 *
 * Every worker records into preallocated typed-array columns so that recording a span on
 * the hot path is a handful of stores, never an object allocation. The columns are flushed
 * to the runner at the end of a run (transferred, not copied) and become rows of the trace.
 *
 * All times are microseconds on one clock shared by every thread of the runner process:
 * `performance.timeOrigin + performance.now()` (see {@link nowUs}). Each worker thread has
 * its own `timeOrigin`, but the sum is the same wall clock, so spans from different workers
 * line up without further alignment.
 */

import { SPAN_COLUMNS, spanColumnCtor, SpanKind, StringTable, type SpanColumns, type SpanKindCode } from '../profiler/trace-format';

export { SpanKind, SpanFlag, type SpanKindName, type SpanKindCode } from '../profiler/trace-format';

/** Microseconds on the process-wide clock. */
export function nowUs(): number {
  return (performance.timeOrigin + performance.now()) * 1000;
}

/** What the communication layer needs to record its transfers. */
export interface CommRecorder {
  /**
   * Records one transfer.
   * @param name collective or p2p name, e.g. `allreduce.ring`, `send`, `scatter`
   * @param startUs start on the {@link nowUs} clock
   * @param durUs duration in µs
   * @param bytes payload bytes this rank moved (sent + received)
   * @param peer the peer rank for point-to-point, -1 for collectives
   */
  comm(name: string, startUs: number, durUs: number, bytes: number, peer: number, blockedUs?: number): void;
}

/** Extra per-span fields; all default to -1 (unknown / not applicable) or 0. */
export interface SpanExtras {
  step?: number;
  micro?: number;
  stage?: number;
  bytes?: number;
  peer?: number;
  parent?: number;
  opType?: string;
  flags?: number;
  cause?: number;
  /** {@link CommOpCode} of a communication span. */
  comm?: number;
  /** {@link PhaseCode} of the span. */
  phase?: number;
  /** CPU µs the device's threads received during the span. */
  cpu?: number;
  /** µs the device's threads waited for a core during the span. */
  wait?: number;
}

/**
 * Columns a worker transfers to the runner when a run ends: the trace's span columns (see
 * src/profiler/trace-format.ts) without `lane`, which the runner assigns, and with a
 * worker-local string table.
 */
export type SpanColumnsLocal = Omit<SpanColumns, 'lane'> & { strings: string[] };

/** The span fields a worker records, in row order (the trace's columns less `lane`). */
const FIELDS = SPAN_COLUMNS.filter((c): c is Exclude<(typeof SPAN_COLUMNS)[number], 'lane'> => c !== 'lane');
const STRIDE = FIELDS.length;
/** Bytes one span takes in a worker's span buffer: one row of float64 fields. */
export const SPAN_ROW_BYTES = STRIDE * Float64Array.BYTES_PER_ELEMENT;
const F = Object.fromEntries(FIELDS.map((c, i) => [c, i])) as Record<(typeof FIELDS)[number], number>;
const K = F.kind, NAME = F.name, OP = F.opType, START = F.start, DUR = F.dur, STEP = F.step, MICRO = F.micro, STAGE = F.stage;
const BYTES = F.bytes, PEER = F.peer, PARENT = F.parent, FLAGS = F.flags, CAUSE = F.cause, COMM = F.comm, PHASE = F.phase, CPU = F.cpu, WAIT = F.wait;

/**
 * A growable span buffer. Spans are recorded as rows of one Float64Array (every field fits
 * a double exactly) and become the trace's typed columns when taken: a span recorded between
 * two session runs then touches two or three cache lines of one page, where a store to each
 * of 17 columns touched 17 — on openWakeWord's melspectrogram (0.3 ms steps, data cpu:2,
 * 2-core VM) each columnar record took 0.5–0.8 µs in the worker after a session run (0.08 µs
 * in a loop of records), 2–3 µs of host time a step. Capacity doubles when full.
 */
export class SpanBuffer implements CommRecorder {
  private rows: Float64Array;
  private n = 0;
  private readonly table = new StringTable();
  /** Step, micro-batch and stage applied to spans recorded without explicit values. */
  context = { step: -1, micro: -1, stage: -1 };

  constructor(capacity = 4096) {
    this.rows = new Float64Array(Math.max(16, capacity) * STRIDE);
  }

  get count(): number {
    return this.n;
  }

  /** Interns a string into this buffer's string table. */
  intern(s: string): number {
    return this.table.intern(s);
  }

  /** The offset of a new row, growing the buffer when full. */
  private next(): number {
    if ((this.n + 1) * STRIDE > this.rows.length) this.grow(this.n + 1);
    return this.n++ * STRIDE;
  }

  private grow(rows: number): void {
    let size = this.rows.length * 2;
    while (size < rows * STRIDE) size *= 2;
    const grown = new Float64Array(size);
    grown.set(this.rows.subarray(0, this.n * STRIDE));
    this.rows = grown;
  }

  /**
   * Makes room for `rows` more spans and touches their memory, so that recording them later
   * takes no page fault (a fresh page costs around 10 µs on a virtual machine, inside the
   * step that first writes it). Call it outside timed windows.
   */
  reserve(rows: number): void {
    const end = (this.n + rows) * STRIDE;
    if (end > this.rows.length) this.grow(this.n + rows);
    const r = this.rows;
    for (let o = this.n * STRIDE; o < end; o += 512) r[o] = 0;
  }

  /** Records one span and returns its index (usable as a `parent`). */
  record(kind: SpanKindCode, name: string, startUs: number, durUs: number, x: SpanExtras = {}): number {
    const i = this.put(kind, this.intern(name), startUs, durUs, x.bytes ?? 0, x.peer ?? -1, x.comm ?? 0, x.flags ?? 0, x.phase ?? 0, x.cpu ?? -1, x.wait ?? -1);
    const o = i * STRIDE;
    const r = this.rows;
    if (x.opType !== undefined) r[o + OP] = this.intern(x.opType);
    if (x.step !== undefined) r[o + STEP] = x.step;
    if (x.micro !== undefined) r[o + MICRO] = x.micro;
    if (x.stage !== undefined) r[o + STAGE] = x.stage;
    if (x.parent !== undefined) r[o + PARENT] = x.parent;
    if (x.cause !== undefined) r[o + CAUSE] = x.cause;
    return i;
  }

  /**
   * Records a span whose name is already interned, with its fields in place: no extras
   * object, no string lookup — the hot path of a timed step. Step, micro-batch and stage
   * come from {@link context}; opType and parent are unset. Returns its index.
   */
  put(kind: SpanKindCode, name: number, startUs: number, durUs: number, bytes: number, peer: number, comm: number, flags: number, phase: number, cpu = -1, wait = -1): number {
    const o = this.next();
    const r = this.rows;
    const ctx = this.context;
    r[o + K] = kind;
    r[o + NAME] = name;
    r[o + OP] = -1;
    r[o + START] = startUs;
    r[o + DUR] = durUs;
    r[o + STEP] = ctx.step;
    r[o + MICRO] = ctx.micro;
    r[o + STAGE] = ctx.stage;
    r[o + BYTES] = bytes;
    r[o + PEER] = peer;
    r[o + PARENT] = -1;
    r[o + FLAGS] = flags;
    r[o + CAUSE] = 0;
    r[o + COMM] = comm;
    r[o + PHASE] = phase;
    r[o + CPU] = cpu;
    r[o + WAIT] = wait;
    return o / STRIDE;
  }

  compute(name: string, startUs: number, durUs: number, x?: SpanExtras): number {
    return this.record(SpanKind.compute, name, startUs, durUs, x);
  }

  comm(name: string, startUs: number, durUs: number, bytes: number, peer: number): void {
    this.record(SpanKind.comm, name, startUs, durUs, { bytes, peer });
  }

  /** Drops every recorded span (the string table stays). */
  clear(): void {
    this.n = 0;
  }

  /** Drops the spans recorded after the first `count` (the string table stays). */
  truncate(count: number): void {
    this.n = Math.max(0, Math.min(this.n, count));
  }

  /** The recorded spans as the trace's typed columns (copies), ready to transfer to another thread. */
  take(): SpanColumnsLocal {
    const out = { count: this.n, strings: this.table.strings.slice() } as Record<string, unknown>;
    const r = this.rows;
    FIELDS.forEach((c, f) => {
      const col = new (spanColumnCtor(c))(this.n);
      for (let i = 0, o = f; i < this.n; i++, o += STRIDE) col[i] = r[o]!;
      out[c] = col;
    });
    return out as unknown as SpanColumnsLocal;
  }

  /** The ArrayBuffers of a {@link take} result, for a postMessage transfer list. */
  static transferList(cols: SpanColumnsLocal): ArrayBuffer[] {
    return SPAN_COLUMNS.filter((c) => c !== 'lane').map((c) => (cols[c as Exclude<typeof c, 'lane'>] as Float64Array).buffer as ArrayBuffer);
  }
}
