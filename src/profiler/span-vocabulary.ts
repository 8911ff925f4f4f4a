/**
 * The span vocabulary of the trace format (re-exported by trace-format.ts, the format's
 * single source of truth). Every part of Parallax (runtime, analyses, export, webview)
 * imports these codes; none re-declares them and none parses a meaning out of a span name.
 */


/** Span kinds, as stored in `spans.kind`. */
export const SPAN_KINDS = ['compute', 'comm', 'idle'] as const;
export type SpanKindName = (typeof SPAN_KINDS)[number];
/** Span kind codes, by name (`SpanKind.comm === SPAN_KINDS.indexOf('comm')`). */
export const SpanKind = { compute: 0, comm: 1, idle: 2 } as const satisfies Record<SpanKindName, number>;
export type SpanKindCode = (typeof SpanKind)[SpanKindName];

/** Bit flags stored in `spans.flags`. */
export const SpanFlag = {
  /** Duration stretched or produced by the link model rather than measured. */
  emulated: 1,
  /** Produced by the simulator (a prediction), not measured. */
  predicted: 2,
  /** A host staging copy around a device (GPU) transfer. */
  staging: 4,
  /** An operator span from ONNX Runtime's own profiler, nested under a compute span. */
  op: 8,
  /** The data moved is synthetic (e.g. zero gradients of an inference-only run); added in version 2. */
  synthetic: 16,
  /**
   * A compute span of an operator-profiled step: run under ONNX Runtime's operator profiler
   * after the timed steps, to give operator detail (its operator spans nest under it). Its
   * duration carries the profiler's overhead, so it is never a timed step. Added in version 2.
   */
  profiled: 32,
  /**
   * A collective whose data are a training step's gradients (a bucket of them, all-reduced
   * between backward and the optimizer). Added in version 2.
   */
  gradient: 64,
} as const;

/**
 * What a communication span does, as stored in `spans.comm` (added in version 2; 0 for
 * spans that are not communication). Point-to-point: `send`, `recv`. Host copies between the
 * shared global batch and a device: `scatter` (rows in), `gather` (rows out). Collectives
 * over a group: the rest.
 */
export const COMM_OPS = ['none', 'scatter', 'gather', 'send', 'recv', 'broadcast', 'allgather', 'reducescatter', 'allreduce'] as const;
export type CommOp = (typeof COMM_OPS)[number];
export const CommOpCode = {
  none: 0, scatter: 1, gather: 2, send: 3, recv: 4, broadcast: 5, allgather: 6, reducescatter: 7, allreduce: 8,
} as const satisfies Record<CommOp, number>;
/** Collective operations (a group of devices takes part, not one peer). */
export type CollectiveOp = Extract<CommOp, 'broadcast' | 'allgather' | 'reducescatter' | 'allreduce'>;
export const COLLECTIVE_OPS: readonly CollectiveOp[] = ['broadcast', 'allgather', 'reducescatter', 'allreduce'];

/**
 * The code of a collective as other tools name it (PyTorch / NCCL spellings, already reduced
 * to snake_case: `all_reduce`, `all_gather_coalesced`, `reduce_scatter`, `send`…), for
 * importers of other tools' traces and the version-1 migration: the only places that map a
 * name to a code. Collectives without a code of their own get the closest one: `reduce` (an
 * all-reduce whose result stays on the root) → allreduce; `gather` to a root and `all_to_all`
 * (every rank receives from every rank) → allgather; `scatter` from a root → broadcast;
 * `barrier` (PyTorch's NCCL barrier is an all-reduce of one element) → allreduce. `scatter`
 * and `gather` codes are Parallax's host copies of batch rows, not group operations, so they
 * are not used here. Anything else (`send_recv`, an NCCL kernel without a collective name)
 * is `none` (0).
 */
export function commCodeOfCollective(canonical: string): number {
  const base = canonical.toLowerCase().replace(/_coalesced$/, '');
  switch (base) {
    case 'all_reduce':
    case 'reduce':
    case 'barrier':
      return CommOpCode.allreduce;
    case 'all_gather':
    case 'gather':
    case 'all_to_all':
      return CommOpCode.allgather;
    case 'reduce_scatter':
      return CommOpCode.reducescatter;
    case 'broadcast':
    case 'scatter':
      return CommOpCode.broadcast;
    case 'send':
      return CommOpCode.send;
    case 'recv':
      return CommOpCode.recv;
    default:
      return CommOpCode.none;
  }
}

/** True for a point-to-point transfer code (`send` or `recv`). */
export function isP2pCode(code: number): boolean {
  return code === CommOpCode.send || code === CommOpCode.recv;
}
/** True for a collective code. */
export function isCollectiveCode(code: number): boolean {
  return code >= CommOpCode.broadcast;
}

/**
 * Phase of a span within a step, as stored in `spans.phase` (added in version 2): forward
 * (inference, or a training step's forward), backward, optimizer; `none` for spans outside
 * any phase (host copies, imported spans without one).
 */
export const PHASES = ['none', 'forward', 'backward', 'optimizer'] as const;
export type Phase = (typeof PHASES)[number];
export const PhaseCode = { none: 0, forward: 1, backward: 2, optimizer: 3 } as const satisfies Record<Phase, number>;

/**
 * Causes of idle time, as stored in `spans.cause` (0 for spans that are not idle).
 *  - bubble: a pipeline stage waiting on its previous stage (fill/drain);
 *  - collective: waiting for the slowest peer at a collective or step barrier (straggler/sync);
 *  - host: the host thread preparing the step (input slicing, scheduling, session overhead);
 *  - other: a gap with no better explanation;
 *  - backpressure: a sender waiting for its peer to free the channel (added in version 2).
 */
export const IDLE_CAUSES = ['none', 'bubble', 'collective', 'host', 'other', 'backpressure'] as const;
export type IdleCause = (typeof IDLE_CAUSES)[number];
export const IdleCauseCode = { none: 0, bubble: 1, collective: 2, host: 3, other: 4, backpressure: 5 } as const satisfies Record<IdleCause, number>;
/** The causes an idle span can have: every cause but `none`, in code order. */
export type IdleCauseOfSpan = Exclude<IdleCause, 'none'>;
export const IDLE_SPAN_CAUSES: readonly IdleCauseOfSpan[] = IDLE_CAUSES.filter((c): c is IdleCauseOfSpan => c !== 'none');
/** Zero for every cause an idle span can have: the start of a per-cause sum. */
export function zeroByCause(): Record<IdleCauseOfSpan, number> {
  const out = {} as Record<IdleCauseOfSpan, number>;
  for (const c of IDLE_SPAN_CAUSES) out[c] = 0;
  return out;
}

