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

import { allocSpans, SPAN_COLUMNS, SpanKind, StringTable, type SpanColumns, type SpanKindCode } from '../profiler/trace-format';

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

/**
 * A growable, columnar span buffer. Capacity doubles when full, so a long run costs a few
 * reallocations rather than one per span.
 */
export class SpanBuffer implements CommRecorder {
  // The trace's own column layout; `lane` stays unused here (the runner assigns lanes).
  private cols: SpanColumns;
  private n = 0;
  private readonly table = new StringTable();
  /** Step, micro-batch and stage applied to spans recorded without explicit values. */
  context = { step: -1, micro: -1, stage: -1 };

  constructor(capacity = 4096) {
    this.cols = allocSpans(Math.max(16, capacity));
  }

  get count(): number {
    return this.n;
  }

  /** Interns a string into this buffer's string table. */
  intern(s: string): number {
    return this.table.intern(s);
  }

  private grow(): void {
    const next = allocSpans(this.cols.kind.length * 2);
    for (const c of SPAN_COLUMNS) (next[c] as Float64Array).set(this.cols[c] as Float64Array);
    this.cols = next;
  }

  /** Records one span and returns its index (usable as a `parent`). */
  record(kind: SpanKindCode, name: string, startUs: number, durUs: number, x: SpanExtras = {}): number {
    if (this.n === this.cols.kind.length) this.grow();
    const i = this.n++;
    const c = this.cols;
    c.kind[i] = kind;
    c.name[i] = this.intern(name);
    c.opType[i] = x.opType === undefined ? -1 : this.intern(x.opType);
    c.start[i] = startUs;
    c.dur[i] = durUs;
    c.step[i] = x.step ?? this.context.step;
    c.micro[i] = x.micro ?? this.context.micro;
    c.stage[i] = x.stage ?? this.context.stage;
    c.bytes[i] = x.bytes ?? 0;
    c.peer[i] = x.peer ?? -1;
    c.parent[i] = x.parent ?? -1;
    c.flags[i] = x.flags ?? 0;
    c.cause[i] = x.cause ?? 0;
    c.comm[i] = x.comm ?? 0;
    c.phase[i] = x.phase ?? 0;
    c.cpu[i] = x.cpu ?? -1;
    c.wait[i] = x.wait ?? -1;
    return i;
  }

  compute(name: string, startUs: number, durUs: number, x?: SpanExtras): number {
    return this.record(SpanKind.compute, name, startUs, durUs, x);
  }

  comm(name: string, startUs: number, durUs: number, bytes: number, peer: number): void {
    this.record(SpanKind.comm, name, startUs, durUs, { bytes, peer });
  }

  /** The live `kind` column (valid up to {@link count}); read-only use. */
  peekKinds(): Uint8Array {
    return this.cols.kind;
  }

  /** Drops every recorded span (the string table stays). */
  clear(): void {
    this.n = 0;
  }

  /** Trimmed copies of the columns, ready to transfer to another thread. */
  take(): SpanColumnsLocal {
    const out = { count: this.n, strings: this.table.strings.slice() } as Record<string, unknown>;
    for (const c of SPAN_COLUMNS) if (c !== 'lane') out[c] = (this.cols[c] as Float64Array).slice(0, this.n);
    return out as unknown as SpanColumnsLocal;
  }

  /** The ArrayBuffers of a {@link take} result, for a postMessage transfer list. */
  static transferList(cols: SpanColumnsLocal): ArrayBuffer[] {
    return SPAN_COLUMNS.filter((c) => c !== 'lane').map((c) => (cols[c as Exclude<typeof c, 'lane'>] as Float64Array).buffer as ArrayBuffer);
  }
}
