/**
 * The shared state of one communication group and where each piece of it lives.
 *
 * The runner creates a group once ({@link createCommGroup}) and hands the descriptor to every
 * device worker; the descriptor is plain structured-cloneable data (a shared memory and
 * numbers), so it travels in `workerData` or a `postMessage`.
 *
 * Memory map (byte offsets; every block starts on a 64-byte cache line so that words
 * written by different threads never share a line):
 *
 * ```
 * 0                      global control: abort flag, barrier count, barrier generation
 * ABORT_MSG_OFFSET       UTF-8 reason of the first abort (ABORT_MSG_BYTES)
 * ARRIVAL_OFFSET         n int32: the barrier generation each rank last entered
 * channelCtrlOffset      2·n² channel control blocks of CHANNEL_CTRL_BYTES:
 *                          line 0: head (messages published by the producer)
 *                          line 1: per-slot metadata [bytes, tag, totalLo, totalHi]
 *                          line 3: tail (messages consumed by the consumer)
 * rankOffset             n rank blocks of RANK_BLOCK_BYTES:
 *                          line 0: the collective this rank is in [tag, buffer offset, bytes lo, hi]
 *                          line 1: progress (zero-copy all-reduce steps completed)
 * scratchOffset          n per-rank scratch areas of slotBytes
 * dataOffset             2·n·(n−1) channels × slots × slotBytes of payload
 * arenaOffset            n per-rank arenas of arenaBytes (buffers from `Communicator.alloc`)
 * ```
 *
 * There are two channel sets for every ordered pair of ranks: one for point-to-point
 * send/recv and one for collectives, so that a buffered point-to-point message never sits
 * in front of a collective's traffic (MPI keeps them apart the same way, with contexts).
 */
import { createSharedWasmMemory, type WasmMemory } from './kernels';

/** Default payload bytes of one channel slot (also the pipelining chunk of collectives). */
export const DEFAULT_SLOT_BYTES = 256 * 1024;
/**
 * Default slots per channel: how many chunks a producer may run ahead of its consumer. At
 * least two are required: a ring step holds the chunk it received while it waits for room
 * to pass the result on, and with a single slot per channel every rank of a ring could hold
 * one while waiting for another.
 */
export const DEFAULT_SLOTS = 4;
/** Default limit on any single blocking wait. */
export const DEFAULT_TIMEOUT_MS = 60_000;
/** Most slots per channel: the metadata of all slots must fit the control block's lines 1–2. */
export const MAX_SLOTS = 8;

/** Cache line size assumed for padding. */
export const LINE = 64;
/** Int32 indices of global control words. */
export const ABORT_FLAG = 0;
export const ABORT_RANK = 1;
export const BARRIER_COUNT = LINE / 4;
export const BARRIER_GEN = (2 * LINE) / 4;
/** Byte offset and size of the abort reason. */
export const ABORT_MSG_OFFSET = 4 * LINE;
export const ABORT_MSG_BYTES = 512;
/** Byte offset of the per-rank barrier arrival words (they name the ranks a timeout waits on). */
export const ARRIVAL_OFFSET = ABORT_MSG_OFFSET + ABORT_MSG_BYTES;
/** Bytes of one channel's control block and the int32 indices inside it. */
export const CHANNEL_CTRL_BYTES = 4 * LINE;
export const CH_HEAD = 0;
export const CH_META = LINE / 4;
export const CH_META_INTS = 4;
export const CH_TAIL = (3 * LINE) / 4;

/** Bytes of one rank block and the int32 indices inside it. */
export const RANK_BLOCK_BYTES = 2 * LINE;
export const RB_TAG = 0;
export const RB_OFFSET = 1;
export const RB_BYTES_LO = 2;
export const RB_BYTES_HI = 3;
export const RB_PROGRESS = LINE / 4;

/** Channel sets. */
export const P2P = 0;
export const COLL = 1;

/** Options of {@link createCommGroup}. */
export interface CommGroupOptions {
  /**
   * Payload bytes per channel slot (rounded up to a multiple of 64). Larger slots mean
   * fewer synchronisations per byte; smaller slots keep a chunk in cache between the rank
   * that writes it and the rank that reads it. Default 256 KiB.
   */
  slotBytes?: number;
  /** Slots per channel, 2–8 (default 4). */
  slots?: number;
  /**
   * Bytes of shared memory each rank can take buffers from with `Communicator.alloc`
   * (rounded up to 64; default 0). An all-reduce over such buffers on every rank reads the
   * neighbour's buffer directly instead of copying through channels: fewer copies, and
   * less sensitive to the workers being descheduled (half the synchronisation points).
   */
  arenaBytes?: number;
  /** Default limit, in milliseconds, on every blocking wait of every rank (default 60 s). */
  timeoutMs?: number;
  /**
   * Use plain JavaScript reduction loops even where WebAssembly SIMD is available (tests
   * and comparisons; about five times slower for float32).
   */
  noWasm?: boolean;
}

/**
 * Everything a worker needs to attach to a group. Structured-cloneable: pass it in
 * `workerData` or a message. Create with {@link createCommGroup}.
 */
export interface CommGroupDescriptor {
  /** Layout version; attach refuses a descriptor from another version. */
  readonly version: 1;
  readonly worldSize: number;
  readonly slotBytes: number;
  readonly slots: number;
  readonly arenaBytes: number;
  readonly timeoutMs: number;
  /**
   * The shared WebAssembly memory that holds the group state, where the host supports it
   * (the reductions then run as SIMD kernels over it); null for a plain SharedArrayBuffer.
   */
  readonly memory: WasmMemory | null;
  /** The group state; `memory.buffer` when `memory` is set. */
  readonly buffer: SharedArrayBuffer;
}

/** Byte offsets of the blocks of a group of a given geometry. */
export interface CommLayout {
  readonly n: number;
  readonly slotBytes: number;
  readonly slots: number;
  readonly arenaBytes: number;
  readonly channelCtrlOffset: number;
  readonly rankOffset: number;
  readonly scratchOffset: number;
  readonly dataOffset: number;
  readonly arenaOffset: number;
  readonly totalBytes: number;
}

function alignUp(x: number, a: number): number {
  return Math.ceil(x / a) * a;
}

/** Computes the memory map of a group. */
export function commLayout(n: number, slotBytes: number, slots: number, arenaBytes: number): CommLayout {
  const channelCtrlOffset = alignUp(ARRIVAL_OFFSET + 4 * n, LINE);
  const rankOffset = channelCtrlOffset + 2 * n * n * CHANNEL_CTRL_BYTES;
  const scratchOffset = rankOffset + n * RANK_BLOCK_BYTES;
  const dataOffset = scratchOffset + n * slotBytes;
  const arenaOffset = dataOffset + 2 * n * (n - 1) * slots * slotBytes;
  const totalBytes = arenaOffset + n * arenaBytes;
  return { n, slotBytes, slots, arenaBytes, channelCtrlOffset, rankOffset, scratchOffset, dataOffset, arenaOffset, totalBytes };
}

/** Int32 index of a rank's block. */
export function rankBlockIndex(l: CommLayout, rank: number): number {
  return (l.rankOffset + rank * RANK_BLOCK_BYTES) >> 2;
}

/** The layout a descriptor describes. */
export function layoutOf(desc: CommGroupDescriptor): CommLayout {
  return commLayout(desc.worldSize, desc.slotBytes, desc.slots, desc.arenaBytes);
}

/** The shared memory of a descriptor, as this thread sees it. */
export function bufferOf(desc: CommGroupDescriptor): SharedArrayBuffer {
  return desc.memory !== null ? (desc.memory.buffer as SharedArrayBuffer) : desc.buffer;
}

/** Int32 index of a channel's control block. */
export function channelCtrlIndex(l: CommLayout, set: number, src: number, dst: number): number {
  return (l.channelCtrlOffset + ((set * l.n + src) * l.n + dst) * CHANNEL_CTRL_BYTES) >> 2;
}

/** Byte offset of a channel's first slot (the channel from a rank to itself has none). */
export function channelDataOffset(l: CommLayout, set: number, src: number, dst: number): number {
  const k = (set * l.n + src) * (l.n - 1) + (dst < src ? dst : dst - 1);
  return l.dataOffset + k * l.slots * l.slotBytes;
}

/**
 * Creates the shared state of a group of `worldSize` ranks. Call once in the runner, then
 * give the descriptor to each worker, which calls `Communicator.attach(desc, rank)`.
 *
 * Memory: about `2·n·(n−1)·slots·slotBytes + n·arenaBytes` bytes (2 MiB for 2 ranks with
 * the defaults, 112 MiB for 8), reserved up front; pages of channels that are never used
 * are never touched, so the operating system does not back them. Beyond 4 GiB in all the
 * group falls back to a plain SharedArrayBuffer and JavaScript reductions (WebAssembly
 * memories are limited to 4 GiB).
 */
export function createCommGroup(worldSize: number, opts: CommGroupOptions = {}): CommGroupDescriptor {
  if (!Number.isInteger(worldSize) || worldSize < 1) {
    throw new RangeError(`createCommGroup: worldSize must be a positive integer, got ${worldSize}`);
  }
  const slotBytes = alignUp(opts.slotBytes ?? DEFAULT_SLOT_BYTES, LINE);
  if (slotBytes < LINE || slotBytes > 1 << 30) {
    throw new RangeError(`createCommGroup: slotBytes must be between 64 B and 1 GiB, got ${opts.slotBytes}`);
  }
  const slots = opts.slots ?? DEFAULT_SLOTS;
  if (!Number.isInteger(slots) || slots < 2 || slots > MAX_SLOTS) {
    throw new RangeError(`createCommGroup: slots must be an integer in 2..${MAX_SLOTS}, got ${slots}`);
  }
  const arenaBytes = alignUp(opts.arenaBytes ?? 0, LINE);
  if (!(arenaBytes >= 0)) throw new RangeError(`createCommGroup: arenaBytes must be non-negative, got ${opts.arenaBytes}`);
  const timeoutMs = opts.timeoutMs ?? DEFAULT_TIMEOUT_MS;
  if (!(timeoutMs > 0)) throw new RangeError(`createCommGroup: timeoutMs must be positive, got ${timeoutMs}`);
  const layout = commLayout(worldSize, slotBytes, slots, arenaBytes);
  const memory = opts.noWasm === true ? null : createSharedWasmMemory(layout.totalBytes);
  const buffer = memory !== null ? (memory.buffer as SharedArrayBuffer) : new SharedArrayBuffer(layout.totalBytes);
  return { version: 1, worldSize, slotBytes, slots, arenaBytes, timeoutMs, memory, buffer };
}
