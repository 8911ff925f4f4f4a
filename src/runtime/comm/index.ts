/**
 * Communication between the device workers of one runner process: point-to-point
 * send/recv and the collectives (barrier, broadcast, scatter, gather, all-gather,
 * reduce-scatter, ring all-reduce) over SharedArrayBuffer channels with Atomics wait/notify,
 * as NCCL does inside one node. The runner calls {@link createCommGroup} once and passes the
 * descriptor to each worker, which calls {@link Communicator.attach} with its rank.
 */
export { createCommGroup, DEFAULT_SLOT_BYTES, DEFAULT_SLOTS, DEFAULT_TIMEOUT_MS } from './group';
export type { CommGroupDescriptor, CommGroupOptions } from './group';
export { Communicator, CommError, abortCommGroup, isCommGroupAborted } from './communicator';
export type { AttachOptions, CommErrorKind, Counts, SharedArrayConstructor } from './communicator';
export type { ReduceArray } from './kernels';
