/**
 * One rank's end of a communication group: point-to-point send/recv and the collectives,
 * over the shared channels laid out in `group.ts`.
 *
 * Channels. Every ordered pair of ranks has a single-producer single-consumer FIFO of
 * `slots` fixed-size slots. The producer owns `head` (messages published) and the consumer
 * owns `tail` (messages consumed); each side only ever writes its own counter, with
 * `Atomics.store` after the payload is written (release) and `Atomics.load` before it is
 * read (acquire), so no lock is needed. A side that must wait (channel full, or nothing to
 * read) first polls for a while (`spin` µs: a futex wake-up costs tens of microseconds on
 * bare metal and 50–100 µs on a virtual machine whose idle vCPU the host must wake, which a
 * 256 KiB chunk pipeline would pay hundreds of times per all-reduce, and a tensor-parallel
 * step once per split layer), then sleeps in `Atomics.wait` on the very counter it needs to
 * change. `Atomics.wait` compares the value and sleeps atomically, so a notify between the
 * check and the sleep is never lost. Counters are compared with wrap-around arithmetic.
 *
 * Large transfers are pipelined: data moves in slot-sized chunks, so a consumer copies (or
 * reduces) chunk k while its producer fills chunk k+1, and a chunk is read by the other
 * core while it is still in cache.
 *
 * Failure. Every wait has a deadline (`timeoutMs`). A rank that times out, or detects that
 * ranks called different collectives, aborts the whole group: the reason goes into shared
 * memory and every waiter of every rank wakes and throws a {@link CommError} naming it, so
 * one failure does not leave the other workers hanging until their own deadlines.
 *
 * Ordering. Like MPI, every rank must call the collectives in the same order with
 * compatible sizes; each chunk carries the collective's sequence number, kind and total
 * size, and a rank that sees a different one aborts the group with a message naming both
 * operations instead of silently mixing data. Point-to-point messages use their own
 * channels, so a buffered `send` never blocks a collective.
 */
import { availableParallelism } from 'node:os';
import { nowUs, type CommRecorder } from '../spans';
import {
  ABORT_FLAG,
  ABORT_MSG_BYTES,
  ABORT_MSG_OFFSET,
  ABORT_RANK,
  ARRIVAL_OFFSET,
  BARRIER_COUNT,
  BARRIER_GEN,
  CH_HEAD,
  CH_META,
  CH_META_INTS,
  CH_TAIL,
  COLL,
  P2P,
  RB_BYTES_HI,
  RB_BYTES_LO,
  RB_OFFSET,
  RB_PROGRESS,
  RB_TAG,
  bufferOf,
  channelCtrlIndex,
  channelDataOffset,
  layoutOf,
  rankBlockIndex,
  type CommGroupDescriptor,
  type CommLayout,
} from './group';
import {
  KERNEL_BLOCK_BYTES,
  REDUCE_KIND_NAMES,
  instantiateKernels,
  jsAdd,
  reduceKindOf,
  type AddKernel,
  type ReduceArray,
  type ReduceKind,
} from './kernels';

// The runner and device worker import the group API from this module too.
export { createCommGroup } from './group';
export type { CommGroupDescriptor, CommGroupOptions } from './group';

/** What went wrong in a {@link CommError}. */
export type CommErrorKind = 'timeout' | 'aborted' | 'mismatch' | 'usage';

/**
 * A communication failure. `op` is the operation this rank was in, `peer` the rank it was
 * waiting on or disagreeing with (-1 when not one rank).
 */
export class CommError extends Error {
  readonly kind: CommErrorKind;
  readonly rank: number;
  readonly op: string;
  readonly peer: number;

  constructor(kind: CommErrorKind, rank: number, op: string, peer: number, message: string) {
    super(message);
    this.name = 'CommError';
    this.kind = kind;
    this.rank = rank;
    this.op = op;
    this.peer = peer;
  }
}

/** Options of {@link Communicator.attach}. */
export interface AttachOptions {
  /** Limit on each blocking wait, in ms; defaults to the group's `timeoutMs`. */
  timeoutMs?: number;
  /**
   * Microseconds to poll a counter before sleeping on it. Default: {@link SHORT_SPIN_US}
   * when every rank can have a core of its own (`worldSize ≤ os.availableParallelism()`),
   * else 0, because polling on an oversubscribed machine takes the core from the very rank
   * being waited for. The runner passes longer spins to device ranks when the whole run's
   * threads fit the cores (see `commSpinUs` in runner/workers.ts).
   */
  spin?: number;
  /** Cores the spin default assumes; tests and the runner may pass what they know. */
  cores?: number;
}

/** A typed-array constructor that can view shared memory (Float32Array, Int32Array, …). */
export interface SharedArrayConstructor<T> {
  new (buffer: SharedArrayBuffer, byteOffset: number, length: number): T;
  readonly BYTES_PER_ELEMENT: number;
}

/** Sizes in elements of each rank's part, for the `v` variants of the collectives. */
export type Counts = ArrayLike<number>;

/** Collective op codes carried in chunk tags (low 3 bits; the reduce kind in the next 2). */
const OP_BROADCAST = 1;
const OP_SCATTER = 2;
const OP_GATHER = 3;
const OP_ALLGATHER = 4;
const OP_REDUCESCATTER = 5;
const OP_ALLREDUCE = 6;
const OP_NAMES = ['p2p', 'broadcast', 'scatter', 'gather', 'allgather', 'reducescatter', 'allreduce.ring'];
/** Slice length of each sleep, so that an abort raised between a check and a sleep is seen promptly. */
const WAIT_SLICE_MS = 100;
/**
 * Default poll before sleeping, µs, where every rank can have a core: covers a peer that is
 * a chunk copy away, not one that is still computing (see {@link AttachOptions.spin}).
 */
export const SHORT_SPIN_US = 5;
const TWO32 = 2 ** 32;

function bytesOf(v: ArrayBufferView): Uint8Array {
  return v instanceof Uint8Array ? v : new Uint8Array(v.buffer, v.byteOffset, v.byteLength);
}

function elemSize(v: ArrayBufferView): number {
  const e = (v as { BYTES_PER_ELEMENT?: number }).BYTES_PER_ELEMENT;
  return typeof e === 'number' ? e : 1;
}

function tagName(tag: number): string {
  const op = tag & 7;
  const kind = (tag >>> 3) & 3;
  const name = OP_NAMES[op] ?? `op${op}`;
  return op === OP_ALLREDUCE || op === OP_REDUCESCATTER
    ? `${name}<${REDUCE_KIND_NAMES[kind as ReduceKind] ?? kind}> #${tag >>> 5}`
    : `${name} #${tag >>> 5}`;
}

/**
 * One rank's handle on a group. Create one per worker with {@link Communicator.attach}.
 * Every method blocks the calling thread until this rank's part of the operation is done;
 * collectives must be called by every rank of the group, in the same order.
 */
export class Communicator {
  /** This rank, 0 ≤ rank < worldSize. */
  readonly rank: number;
  /** Number of ranks in the group. */
  readonly worldSize: number;
  /** True when reductions run as WebAssembly SIMD kernels (false: JavaScript loops). */
  readonly simd: boolean;

  private readonly layout: CommLayout;
  private readonly sab: SharedArrayBuffer;
  /** Next free byte of this rank's arena (see {@link alloc}). */
  private arenaTop = 0;
  /** Local copy of this rank's progress counter (zero-copy all-reduce steps completed). */
  private progress = 0;
  private readonly ctrl: Int32Array;
  private readonly mem: Uint8Array;
  private readonly views: [Float32Array, Float64Array, Int32Array];
  private readonly kernels: AddKernel[] | null;
  private readonly recorder: CommRecorder | undefined;
  private readonly timeoutMs: number;
  /** µs to poll a counter before sleeping on it. */
  private readonly spin: number;
  /** Local copies of the counters only this rank writes: heads of its outgoing channels, tails of its incoming ones. */
  private readonly heads: Int32Array;
  private readonly tails: Int32Array;
  /** Number of collectives this rank has entered (all ranks agree on it in a correct program). */
  private collSeq = 0;
  /** Operation in progress, for error messages, and the bytes it has moved so far. */
  private op = '';
  private moved = 0;
  /** µs the current operation waited for a full channel to free a slot (backpressure). */
  private blockedUs = 0;
  /** When the first chunk of the message being received arrived (see {@link recv}). */
  private firstChunkAt = 0;

  private constructor(desc: CommGroupDescriptor, rank: number, recorder: CommRecorder | undefined, opts: AttachOptions) {
    this.rank = rank;
    this.worldSize = desc.worldSize;
    this.layout = layoutOf(desc);
    const buf = bufferOf(desc);
    this.sab = buf;
    if (buf.byteLength < this.layout.totalBytes) {
      throw new RangeError(`Communicator.attach: shared buffer is ${buf.byteLength} bytes, the layout needs ${this.layout.totalBytes}`);
    }
    this.ctrl = new Int32Array(buf);
    this.mem = new Uint8Array(buf);
    this.views = [new Float32Array(buf), new Float64Array(buf, 0, buf.byteLength >> 3), new Int32Array(buf)];
    this.kernels = desc.memory !== null ? instantiateKernels(desc.memory) : null;
    this.simd = this.kernels !== null;
    this.recorder = recorder;
    this.timeoutMs = opts.timeoutMs ?? desc.timeoutMs;
    const cores = opts.cores ?? availableParallelism();
    this.spin = opts.spin ?? (desc.worldSize <= cores ? SHORT_SPIN_US : 0);
    const n = desc.worldSize;
    this.heads = new Int32Array(2 * n);
    this.tails = new Int32Array(2 * n);
    // A rank attaching after the group has been used (a restarted worker) picks up the
    // counters where they are rather than assuming zero.
    for (let set = 0; set < 2; set++) {
      for (let p = 0; p < n; p++) {
        this.heads[set * n + p] = Atomics.load(this.ctrl, channelCtrlIndex(this.layout, set, rank, p) + CH_HEAD);
        this.tails[set * n + p] = Atomics.load(this.ctrl, channelCtrlIndex(this.layout, set, p, rank) + CH_TAIL);
      }
    }
    const rb = rankBlockIndex(this.layout, rank);
    this.progress = Atomics.load(this.ctrl, rb + RB_PROGRESS);
    const lastTag = Atomics.load(this.ctrl, rb + RB_TAG);
    this.collSeq = lastTag === 0 ? 0 : ((lastTag >>> 5) + 1) & 0x3ffffff;
  }

  /**
   * Attaches to a group created by `createCommGroup` as rank `rank`. Each rank must attach
   * exactly once (at a time); spans of every operation go to `recorder` when given.
   */
  static attach(desc: CommGroupDescriptor, rank: number, recorder?: CommRecorder, opts: AttachOptions = {}): Communicator {
    if (desc.version !== 1) throw new RangeError(`Communicator.attach: unsupported descriptor version ${String(desc.version)}`);
    if (!Number.isInteger(rank) || rank < 0 || rank >= desc.worldSize) {
      throw new RangeError(`Communicator.attach: rank ${rank} is outside 0..${desc.worldSize - 1}`);
    }
    return new Communicator(desc, rank, recorder, opts);
  }

  /**
   * Takes a typed array of `length` elements from this rank's arena in the group's shared
   * memory (`arenaBytes` in `createCommGroup`; 64-byte aligned). Buffers from here let
   * {@link allReduce} run zero-copy: each rank reads its neighbour's buffer directly rather
   * than passing chunks through channels (one add pass and one copy per rank instead of four
   * copies and an add). Throws when the arena is full; {@link resetArena} frees everything
   * taken so far.
   */
  alloc<T extends ArrayBufferView>(ctor: SharedArrayConstructor<T>, length: number): T {
    const l = this.layout;
    const bytes = Math.ceil((length * ctor.BYTES_PER_ELEMENT) / 64) * 64;
    if (!Number.isInteger(length) || length < 0) throw new RangeError(`Communicator.alloc: length ${length} is not a non-negative integer`);
    if (this.arenaTop + bytes > l.arenaBytes) {
      throw new RangeError(
        `Communicator.alloc: ${length * ctor.BYTES_PER_ELEMENT} bytes do not fit in rank ${this.rank}'s arena ` +
          `(${l.arenaBytes - this.arenaTop} of ${l.arenaBytes} bytes free); raise arenaBytes in createCommGroup`,
      );
    }
    const off = l.arenaOffset + this.rank * l.arenaBytes + this.arenaTop;
    this.arenaTop += bytes;
    return new ctor(this.sab, off, length);
  }

  /** Frees every buffer {@link alloc} has handed out; they must no longer be used. */
  resetArena(): void {
    this.arenaTop = 0;
  }

  /** True when `v` lies in this rank's arena (so collectives can use it in place). */
  isShared(v: ArrayBufferView): boolean {
    const l = this.layout;
    const start = l.arenaOffset + this.rank * l.arenaBytes;
    return v.buffer === this.sab && v.byteOffset >= start && v.byteOffset + v.byteLength <= start + l.arenaBytes;
  }

  // ---------------------------------------------------------------------------------------
  // Point to point

  /**
   * Sends `data` to rank `dst`. Returns once all of it is in the channel (the receiver may
   * not have it yet): messages up to `slots × slotBytes` never wait for the receiver.
   * Messages between one pair arrive in the order they were sent.
   */
  send(dst: number, data: ArrayBufferView): void {
    const t0 = this.begin('send');
    this.checkPeer(dst, 'send to');
    this.sendMsg(P2P, dst, bytesOf(data), 0);
    this.end('send', t0, dst);
  }

  /**
   * Receives the next message from rank `src` into `out`, which must have exactly the
   * message's byte length; otherwise the message is consumed and dropped and a
   * {@link CommError} of kind `mismatch` is thrown (the channel stays usable).
   */
  recv(src: number, out: ArrayBufferView): void {
    this.begin('recv');
    this.checkPeer(src, 'recv from');
    this.recvMsg(P2P, src, bytesOf(out), 0);
    // The span starts when the message's first chunk arrived: the time spent waiting for the
    // sender before that is idle time (a pipeline bubble), not communication.
    this.end('recv', this.firstChunkAt, src);
  }

  // ---------------------------------------------------------------------------------------
  // Collectives

  /** Waits until every rank has entered the barrier. */
  barrier(): void {
    const t0 = this.begin('barrier');
    const n = this.worldSize;
    if (n > 1) {
      const ctrl = this.ctrl;
      const gen = Atomics.load(ctrl, BARRIER_GEN);
      Atomics.store(ctrl, (ARRIVAL_OFFSET >> 2) + this.rank, gen + 1);
      if (Atomics.add(ctrl, BARRIER_COUNT, 1) === n - 1) {
        // Last to arrive: reset the count before publishing the new generation, so that a
        // rank leaving this barrier and entering the next one counts towards the next one.
        Atomics.store(ctrl, BARRIER_COUNT, 0);
        Atomics.add(ctrl, BARRIER_GEN, 1);
        Atomics.notify(ctrl, BARRIER_GEN);
      } else {
        while (Atomics.load(ctrl, BARRIER_GEN) === gen) this.waitWhile(BARRIER_GEN, gen, -1);
      }
    }
    this.end('barrier', t0, -1);
  }

  /**
   * Copies `buf` of rank `root` into `buf` of every other rank. Pipelined along the ring
   * root → root+1 → …, so each rank moves the data about once whatever the group size.
   */
  broadcast(buf: ArrayBufferView, root: number): void {
    const t0 = this.begin('broadcast');
    this.checkRoot(root);
    const tag = this.nextTag(OP_BROADCAST, 0);
    const n = this.worldSize;
    const data = bytesOf(buf);
    const total = data.byteLength;
    const pos = (this.rank - root + n) % n;
    const next = (this.rank + 1) % n;
    const prev = (this.rank - 1 + n) % n;
    const slot = this.layout.slotBytes;
    if (n > 1) {
      for (let off = 0; off < total; off += slot) {
        const len = Math.min(slot, total - off);
        if (pos === 0) {
          const o = this.acquire(COLL, next);
          this.mem.set(data.subarray(off, off + len), o);
          this.publish(COLL, next, len, tag, total);
        } else {
          const i = this.awaitChunk(COLL, prev, tag, len, total);
          data.set(this.mem.subarray(i, i + len), off);
          if (pos < n - 1) {
            const o = this.acquire(COLL, next);
            this.mem.copyWithin(o, i, i + len);
            this.publish(COLL, next, len, tag, total);
          }
          this.release(COLL, prev);
        }
      }
    }
    this.end('broadcast', t0, -1);
  }

  /**
   * Splits `send` (read on `root` only; null elsewhere) into `worldSize` equal contiguous
   * shards of `recv`'s length and gives shard k to rank k. For shards of unequal size use
   * {@link scatterv}.
   */
  scatter(send: ArrayBufferView | null, recv: ArrayBufferView, root: number): void {
    this.scatterv(send, recv, this.sameCounts(recv.byteLength / elemSize(recv)), root);
  }

  /**
   * Like {@link scatter}, with rank k receiving `counts[k]` elements (of `recv`'s type) taken
   * contiguously, in rank order, from `send`. Every rank passes the same counts; zeros are
   * allowed.
   */
  scatterv(send: ArrayBufferView | null, recv: ArrayBufferView, counts: Counts, root: number): void {
    const t0 = this.begin('scatter');
    // Arguments are checked before the collective is numbered, so that a rank that throws
    // here leaves the group's sequence as it was.
    this.checkRoot(root);
    const displ = this.displacements(counts, elemSize(recv));
    const out = bytesOf(recv);
    this.checkLength(out.byteLength, displ[this.rank + 1] - displ[this.rank], 'recv', 'counts[rank]');
    if (this.rank === root) {
      if (send === null) throw this.usage(`scatter: root ${root} must pass a send buffer`);
      this.checkLength(send.byteLength, displ[this.worldSize], 'send', 'the sum of counts');
    }
    const tag = this.nextTag(OP_SCATTER, 0);
    if (this.rank === root) {
      const src = bytesOf(send!);
      for (let k = 1; k < this.worldSize; k++) {
        const dst = (root + k) % this.worldSize;
        this.sendMsg(COLL, dst, src.subarray(displ[dst], displ[dst + 1]), tag);
      }
      out.set(src.subarray(displ[root], displ[root + 1]));
    } else {
      this.recvMsg(COLL, root, out, tag);
    }
    this.end('scatter', t0, -1);
  }

  /**
   * Concatenates every rank's `send` (all of `send`'s length) in rank order into `recv` on
   * `root` (null elsewhere). For parts of unequal size use {@link gatherv}.
   */
  gather(send: ArrayBufferView, recv: ArrayBufferView | null, root: number): void {
    this.gatherv(send, recv, this.sameCounts(send.byteLength / elemSize(send)), root);
  }

  /** Like {@link gather}, with rank k contributing `counts[k]` elements (of `send`'s type). */
  gatherv(send: ArrayBufferView, recv: ArrayBufferView | null, counts: Counts, root: number): void {
    const t0 = this.begin('gather');
    this.checkRoot(root);
    const displ = this.displacements(counts, elemSize(send));
    const src = bytesOf(send);
    this.checkLength(src.byteLength, displ[this.rank + 1] - displ[this.rank], 'send', 'counts[rank]');
    if (this.rank === root) {
      if (recv === null) throw this.usage(`gather: root ${root} must pass a receive buffer`);
      this.checkLength(recv.byteLength, displ[this.worldSize], 'recv', 'the sum of counts');
    }
    const tag = this.nextTag(OP_GATHER, 0);
    if (this.rank === root) {
      const out = bytesOf(recv!);
      out.set(src, displ[root]);
      for (let k = 1; k < this.worldSize; k++) {
        const from = (root + k) % this.worldSize;
        this.recvMsg(COLL, from, out.subarray(displ[from], displ[from + 1]), tag);
      }
    } else {
      this.sendMsg(COLL, root, src, tag);
    }
    this.end('gather', t0, -1);
  }

  /**
   * Concatenates every rank's `send` in rank order into every rank's `recv`
   * (`recv.length = worldSize × send.length`). Ring algorithm, pipelined in chunks.
   */
  allGather(send: ArrayBufferView, recv: ArrayBufferView): void {
    this.allGatherv(send, recv, this.sameCounts(send.byteLength / elemSize(send)));
  }

  /** Like {@link allGather}, with rank k contributing `counts[k]` elements. */
  allGatherv(send: ArrayBufferView, recv: ArrayBufferView, counts: Counts): void {
    const t0 = this.begin('allgather');
    const n = this.worldSize;
    const displ = this.displacements(counts, elemSize(recv));
    const src = bytesOf(send);
    const out = bytesOf(recv);
    this.checkLength(src.byteLength, displ[this.rank + 1] - displ[this.rank], 'send', 'counts[rank]');
    this.checkLength(out.byteLength, displ[n], 'recv', 'the sum of counts');
    const tag = this.nextTag(OP_ALLGATHER, 0);
    const inOff = new Array<number>(n).fill(0);
    const len = new Array<number>(n);
    for (let k = 0; k < n; k++) len[k] = displ[k + 1] - displ[k];
    out.set(src, displ[this.rank]);
    if (n > 1) this.ring(-1, src, inOff, out, displ, len, false, true, tag);
    this.end('allgather', t0, -1);
  }

  /**
   * Sums `send` element-wise over all ranks and leaves block k of the sum (`recv.length`
   * elements; `send.length = worldSize × recv.length`) in rank k's `recv`. Ring algorithm.
   */
  reduceScatter(send: ReduceArray, recv: ReduceArray): void {
    this.reduceScatterv(send, recv, this.sameCounts(recv.length));
  }

  /** Like {@link reduceScatter}, with rank k receiving the `counts[k]` elements of block k. */
  reduceScatterv(send: ReduceArray, recv: ReduceArray, counts: Counts): void {
    const t0 = this.begin('reducescatter');
    const kind = this.checkReduce(send, recv);
    const n = this.worldSize;
    const displ = this.displacements(counts, send.BYTES_PER_ELEMENT);
    this.checkLength(recv.length, counts[this.rank], 'recv', 'counts[rank]', 'elements');
    this.checkLength(send.length, displ[n] / send.BYTES_PER_ELEMENT, 'send', 'the sum of counts', 'elements');
    const tag = this.nextTag(OP_REDUCESCATTER, kind);
    const src = bytesOf(send);
    const out = bytesOf(recv);
    if (n === 1) {
      out.set(src);
    } else {
      const len = new Array<number>(n);
      for (let k = 0; k < n; k++) len[k] = displ[k + 1] - displ[k];
      const outOff = new Array<number>(n).fill(0);
      this.ring(kind, src, displ, out, outOff, len, true, false, tag);
    }
    this.end('reducescatter', t0, -1);
  }

  /**
   * Replaces `buf` on every rank with the element-wise sum of `buf` over all ranks. Ring
   * algorithm: a reduce-scatter then an all-gather over `worldSize` blocks (uneven lengths
   * split as evenly as possible), each pipelined in slot-sized chunks, so every rank sends
   * and receives `2(n−1)/n` of the buffer. Float32, Float64 and Int32 (wrapping) buffers.
   */
  allReduce(buf: ReduceArray, algorithm: 'ring' = 'ring'): void {
    const t0 = this.begin('allreduce.ring');
    if (algorithm !== 'ring') throw this.usage(`allReduce: unknown algorithm ${String(algorithm)}`);
    const kind = this.checkReduce(buf, buf);
    // An empty buffer takes the channel path, which does nothing at all: the zero-copy
    // protocol relies on its steps to keep a rank from announcing its next collective
    // before its neighbour has read this one's announcement.
    const direct = buf.byteLength > 0 && this.isShared(buf);
    const tag = this.nextTag(OP_ALLREDUCE, kind, direct ? buf.byteOffset : -1, buf.byteLength);
    const n = this.worldSize;
    if (n > 1) {
      const displ = this.displacements(this.equalCounts(buf.length), buf.BYTES_PER_ELEMENT);
      const len = new Array<number>(n);
      for (let k = 0; k < n; k++) len[k] = displ[k + 1] - displ[k];
      if (direct) {
        this.ringDirect(kind, buf.byteOffset, displ, len, tag, buf.byteLength);
      } else {
        const data = bytesOf(buf);
        this.ring(kind, data, displ, data, displ, len, true, true, tag);
      }
    }
    this.end('allreduce.ring', t0, -1);
  }

  /**
   * Aborts the group: every rank's current and future waits throw a {@link CommError} of
   * kind `aborted` carrying `reason`. Use when this worker cannot go on (its model failed
   * to load, say), so the other workers fail now rather than at their timeouts.
   */
  abort(reason: string): void {
    abortGroupState(this.ctrl, this.mem, this.layout, this.rank, reason);
  }

  // ---------------------------------------------------------------------------------------
  // Ring engine

  /**
   * The ring reduce-scatter and/or all-gather over n blocks of `len[k]` bytes; block k is
   * read from `inp` at `inOff[k]` and written to `out` at `outOff[k]`. The blocks are cut into
   * slot-sized chunks and the whole ring sequence runs chunk by chunk (as NCCL does), so
   * that each step overlaps with its neighbours' and no channel ever needs more than a
   * couple of slots.
   *
   * Reduce-scatter: in step s (0 ≤ s < n−1) rank r sends its partial sum of block r−s−1
   * to r+1 and receives block r−s−2's partial from r−1, adding its own; after n−1 steps it
   * holds the full sum of block r. All-gather: block r travels the ring, each rank copying
   * it out and passing it on. With `rs` the final block r goes to `out` at `outOff[r]` (and
   * on, when `ag` follows); without `rs` block r is taken from `inp`.
   *
   * `kind` is the element type to add, -1 for no reduction.
   */
  private ring(kind: ReduceKind | -1, inp: Uint8Array, inOff: number[], out: Uint8Array, outOff: number[], len: number[], rs: boolean, ag: boolean, tag: number): void {
    const n = this.worldSize;
    const r = this.rank;
    const next = (r + 1) % n;
    const prev = (r - 1 + n) % n;
    const slot = this.layout.slotBytes;
    const mem = this.mem;
    let maxLen = 0;
    let total = 0;
    for (let k = 0; k < n; k++) {
      maxLen = Math.max(maxLen, len[k]);
      total += len[k];
    }
    const scratch = this.layout.scratchOffset + r * slot;
    // Blocks shorter than others run out of chunks first; their empty chunks still travel
    // (as zero-byte messages) so that every rank takes the same steps, but they are never
    // copied (`set` rejects an offset past the end even for zero bytes).
    const chunk = (k: number, base: number): number => Math.max(0, Math.min(slot, len[k] - base));
    for (let base = 0; base < maxLen; base += slot) {
      if (rs) {
        let c = (r - 1 + n) % n;
        let l = chunk(c, base);
        let o = this.acquire(COLL, next);
        mem.set(inp.subarray(inOff[c] + base, inOff[c] + base + l), o);
        this.publish(COLL, next, l, tag, total);
        for (let s = 1; s < n; s++) {
          c = (r - s - 1 + 2 * n) % n;
          l = chunk(c, base);
          const i = this.awaitChunk(COLL, prev, tag, l, total);
          const src = inp.subarray(inOff[c] + base, inOff[c] + base + l);
          if (s < n - 1 || ag) {
            o = this.acquire(COLL, next);
            mem.set(src, o);
            this.add(kind as ReduceKind, o, o, i, l);
            this.release(COLL, prev);
            if (s === n - 1 && l > 0) out.set(mem.subarray(o, o + l), outOff[c] + base);
            this.publish(COLL, next, l, tag, total);
          } else {
            mem.set(src, scratch);
            this.add(kind as ReduceKind, scratch, scratch, i, l);
            this.release(COLL, prev);
            if (l > 0) out.set(mem.subarray(scratch, scratch + l), outOff[c] + base);
          }
        }
      } else if (ag) {
        const l = chunk(r, base);
        const o = this.acquire(COLL, next);
        mem.set(inp.subarray(inOff[r] + base, inOff[r] + base + l), o);
        this.publish(COLL, next, l, tag, total);
      }
      if (ag) {
        for (let t = 1; t < n; t++) {
          const c = (r - t + n) % n;
          const l = chunk(c, base);
          const i = this.awaitChunk(COLL, prev, tag, l, total);
          if (l > 0) out.set(mem.subarray(i, i + l), outOff[c] + base);
          if (t < n - 1) {
            const o = this.acquire(COLL, next);
            mem.copyWithin(o, i, i + l);
            this.publish(COLL, next, l, tag, total);
          }
          this.release(COLL, prev);
        }
      }
    }
  }

  /**
   * The same ring all-reduce over buffers in the group's shared memory, without channels:
   * rank r adds rank r−1's partial sum of a chunk straight from r−1's buffer into its own
   * (reduce-scatter), then copies the finished chunks from r−1's buffer (all-gather). Per
   * rank that is one add pass and one copy over (n−1)/n of the buffer each, against four
   * copies and an add for the channel path.
   *
   * Synchronisation is one progress counter per rank, counting the chunk steps it has
   * finished (cumulative over calls, so no reset is needed): before step g a rank waits for
   * r−1 to have finished step g (its counter ≥ base + g). That alone orders every write
   * after the reads it could disturb: rank r overwrites its partial of chunk c in the
   * all-gather only once the finished chunk c has come round the ring, which happens after
   * r+1 has read that partial. Before returning, a rank waits for r+1 to finish, since r+1
   * reads r's buffer until its last step and the caller may reuse the buffer at once.
   */
  private ringDirect(kind: ReduceKind, myOff: number, displ: number[], len: number[], tag: number, totalBytes: number): void {
    const n = this.worldSize;
    const r = this.rank;
    const next = (r + 1) % n;
    const prev = (r - 1 + n) % n;
    const slot = this.layout.slotBytes;
    const ctrl = this.ctrl;
    // The neighbour's announcement of this collective says where its buffer is.
    const prb = rankBlockIndex(this.layout, prev);
    for (;;) {
      const t = Atomics.load(ctrl, prb + RB_TAG);
      if (t === tag) break;
      // An announcement of this same collective number with another kind, or of a later one,
      // means the ranks disagree; an earlier one means r−1 has not got here yet.
      if (t !== 0 && ((t >> 5) - (tag >> 5)) << 6 >= 0) this.mismatch(prev, `rank ${this.rank} is in ${tagName(tag)} but rank ${prev} is in ${tagName(t)}`);
      this.waitWhile(prb + RB_TAG, t, prev);
    }
    const prevOff = ctrl[prb + RB_OFFSET];
    const prevBytes = (ctrl[prb + RB_BYTES_LO] >>> 0) + ctrl[prb + RB_BYTES_HI] * TWO32;
    if (prevOff < 0) {
      this.mismatch(prev, `${tagName(tag)}: rank ${this.rank} passed a buffer from Communicator.alloc but rank ${prev} did not; pass shared buffers on every rank or on none`);
    }
    if (prevBytes !== totalBytes) this.mismatch(prev, `${tagName(tag)}: rank ${this.rank} has ${totalBytes} bytes but rank ${prev} has ${prevBytes}`);

    const myPi = rankBlockIndex(this.layout, r) + RB_PROGRESS;
    const prevPi = prb + RB_PROGRESS;
    const nextPi = rankBlockIndex(this.layout, next) + RB_PROGRESS;
    const base = this.progress;
    let g = 0;
    let maxLen = 0;
    for (let k = 0; k < n; k++) maxLen = Math.max(maxLen, len[k]);
    const chunk = (k: number, b: number): number => Math.max(0, Math.min(slot, len[k] - b));
    for (let b = 0; b < maxLen; b += slot) {
      // What r+1 reads from this rank in this round, counted as sent (the channel path's figure).
      this.moved += chunk((r - 1 + n) % n, b);
      for (let s = 1; s < n; s++) {
        const c = (r - s - 1 + 2 * n) % n;
        const l = chunk(c, b);
        this.waitProgress(prevPi, base + g, prev);
        if (l > 0) this.add(kind, myOff + displ[c] + b, myOff + displ[c] + b, prevOff + displ[c] + b, l);
        this.moved += 2 * l;
        Atomics.store(ctrl, myPi, (base + ++g) | 0);
        Atomics.notify(ctrl, myPi);
      }
      for (let t = 1; t < n; t++) {
        const c = (r - t + n) % n;
        const l = chunk(c, b);
        this.waitProgress(prevPi, base + g, prev);
        if (l > 0) this.mem.copyWithin(myOff + displ[c] + b, prevOff + displ[c] + b, prevOff + displ[c] + b + l);
        this.moved += t < n - 1 ? 2 * l : l;
        Atomics.store(ctrl, myPi, (base + ++g) | 0);
        Atomics.notify(ctrl, myPi);
      }
    }
    this.progress = (base + g) | 0;
    this.waitProgress(nextPi, this.progress, next);
  }

  /** Blocks until the counter at `idx` has reached `target` (wrap-around compare). */
  private waitProgress(idx: number, target: number, peer: number): void {
    for (;;) {
      const v = Atomics.load(this.ctrl, idx);
      if (((v - target) | 0) >= 0) return;
      this.waitWhile(idx, v, peer);
    }
  }

  /** `mem[dst..] = mem[a..] + mem[b..]` over `bytes` bytes of elements of `kind`. */
  private add(kind: ReduceKind, dst: number, a: number, b: number, bytes: number): void {
    const k = this.kernels;
    let done = 0;
    if (k !== null) {
      done = bytes - (bytes % KERNEL_BLOCK_BYTES);
      if (done > 0) k[kind](dst, a, b, done);
    }
    if (done < bytes) {
      const elem = kind === 1 ? 8 : 4;
      jsAdd(this.views, kind, dst + done, a + done, b + done, (bytes - done) / elem);
    }
  }

  // ---------------------------------------------------------------------------------------
  // Messages and chunks

  /** Sends one message of any length (at least one chunk, so empty messages synchronise too). */
  private sendMsg(set: number, dst: number, data: Uint8Array, tag: number): void {
    const total = data.byteLength;
    const slot = this.layout.slotBytes;
    let off = 0;
    do {
      const len = Math.min(slot, total - off);
      const o = this.acquire(set, dst);
      this.mem.set(data.subarray(off, off + len), o);
      this.publish(set, dst, len, tag, total);
      off += len;
    } while (off < total);
  }

  /** Receives one message into `out`, which must have its exact length. */
  private recvMsg(set: number, src: number, out: Uint8Array, tag: number): void {
    const slot = this.layout.slotBytes;
    const i0 = this.awaitChunk(set, src, -1, -1, -1);
    this.firstChunkAt = nowUs();
    const meta = this.metaIndex(set, src, this.tails[set * this.worldSize + src]);
    const total = this.readTotal(meta);
    const gotTag = this.ctrl[meta + 1];
    if (gotTag !== tag) {
      this.mismatch(src, `rank ${this.rank} is in ${tagName(tag)} but rank ${src} sent ${tagName(gotTag)}`);
    }
    if (total !== out.byteLength) {
      const what = `message from rank ${src} is ${total} bytes but the receive buffer has ${out.byteLength}`;
      if (set === COLL) this.mismatch(src, `${tagName(tag)}: ${what}`);
      // Point to point: drop the message so that the channel stays in step, then report.
      const chunks = Math.max(1, Math.ceil(total / slot));
      this.release(set, src);
      for (let k = 1; k < chunks; k++) {
        this.awaitChunk(set, src, -1, -1, -1);
        this.release(set, src);
      }
      throw new CommError('mismatch', this.rank, this.op, src, `Communicator rank ${this.rank}: ${this.op}: ${what}`);
    }
    let i = i0;
    let off = 0;
    for (;;) {
      const len = Math.min(slot, total - off);
      out.set(this.mem.subarray(i, i + len), off);
      this.release(set, src);
      off += len;
      if (off >= total) break;
      i = this.awaitChunk(set, src, tag, Math.min(slot, total - off), total);
    }
  }

  private metaIndex(set: number, src: number, seq: number): number {
    return channelCtrlIndex(this.layout, set, src, this.rank) + CH_META + ((seq >>> 0) % this.layout.slots) * CH_META_INTS;
  }

  private readTotal(meta: number): number {
    return (this.ctrl[meta + 2] >>> 0) + this.ctrl[meta + 3] * TWO32;
  }

  /** Waits for room in channel (set, this → dst) and returns the byte offset of the free slot. */
  private acquire(set: number, dst: number): number {
    const l = this.layout;
    const ci = channelCtrlIndex(l, set, this.rank, dst);
    const head = this.heads[set * this.worldSize + dst];
    const tailIdx = ci + CH_TAIL;
    let tail = Atomics.load(this.ctrl, tailIdx);
    if (((head - tail) | 0) >= l.slots) {
      // The channel is full: the receiver has not freed a slot yet. That wait is
      // backpressure, not transfer time; it is measured so the span can say so.
      const w0 = nowUs();
      while (((head - tail) | 0) >= l.slots) {
        this.waitWhile(tailIdx, tail, dst);
        tail = Atomics.load(this.ctrl, tailIdx);
      }
      this.blockedUs += nowUs() - w0;
    }
    return channelDataOffset(l, set, this.rank, dst) + ((head >>> 0) % l.slots) * l.slotBytes;
  }

  /** Publishes the slot returned by the last {@link acquire} on (set, dst). */
  private publish(set: number, dst: number, bytes: number, tag: number, total: number): void {
    const l = this.layout;
    const ci = channelCtrlIndex(l, set, this.rank, dst);
    const hi = set * this.worldSize + dst;
    const head = this.heads[hi];
    const meta = ci + CH_META + ((head >>> 0) % l.slots) * CH_META_INTS;
    const ctrl = this.ctrl;
    ctrl[meta] = bytes;
    ctrl[meta + 1] = tag;
    ctrl[meta + 2] = total % TWO32 | 0;
    ctrl[meta + 3] = Math.floor(total / TWO32);
    const h = (head + 1) | 0;
    this.heads[hi] = h;
    // The atomic store orders the payload and metadata writes above before it.
    Atomics.store(ctrl, ci + CH_HEAD, h);
    Atomics.notify(ctrl, ci + CH_HEAD);
    this.moved += bytes;
  }

  /**
   * Waits for the next chunk on (set, src → this) and returns its byte offset. Checks its
   * tag, length and message total unless the expected value is -1.
   */
  private awaitChunk(set: number, src: number, tag: number, bytes: number, total: number): number {
    const l = this.layout;
    const ci = channelCtrlIndex(l, set, src, this.rank);
    const tail = this.tails[set * this.worldSize + src];
    const headIdx = ci + CH_HEAD;
    while (Atomics.load(this.ctrl, headIdx) === tail) this.waitWhile(headIdx, tail, src);
    const meta = ci + CH_META + ((tail >>> 0) % l.slots) * CH_META_INTS;
    const ctrl = this.ctrl;
    if (tag !== -1 && (ctrl[meta + 1] !== tag || ctrl[meta] !== bytes || this.readTotal(meta) !== total)) {
      this.mismatch(
        src,
        `rank ${this.rank} is in ${tagName(tag)} expecting a ${bytes}-byte chunk of ${total} bytes, ` +
          `but rank ${src} sent a ${ctrl[meta]}-byte chunk of ${this.readTotal(meta)} bytes in ${tagName(ctrl[meta + 1])}`,
      );
    }
    this.moved += ctrl[meta];
    return channelDataOffset(l, set, src, this.rank) + ((tail >>> 0) % l.slots) * l.slotBytes;
  }

  /** Frees the chunk returned by the last {@link awaitChunk} on (set, src). */
  private release(set: number, src: number): void {
    const ci = channelCtrlIndex(this.layout, set, src, this.rank);
    const ti = set * this.worldSize + src;
    const t = (this.tails[ti] + 1) | 0;
    this.tails[ti] = t;
    Atomics.store(this.ctrl, ci + CH_TAIL, t);
    Atomics.notify(this.ctrl, ci + CH_TAIL);
  }

  /**
   * Blocks while `ctrl[idx] === value`: a poll for up to `spin` µs (the clock read every 64
   * polls), then `Atomics.wait` in slices until the deadline. Throws when the group is
   * aborted or the deadline passes (aborting the group, so that the other ranks stop waiting
   * on this one); an abort during the poll is seen when it ends.
   */
  private waitWhile(idx: number, value: number, peer: number): void {
    const ctrl = this.ctrl;
    if (Atomics.load(ctrl, idx) !== value) return;
    if (this.spin > 0) {
      const until = performance.now() + this.spin / 1000;
      do {
        for (let i = 0; i < 64; i++) if (Atomics.load(ctrl, idx) !== value) return;
      } while (performance.now() < until);
    }
    const deadline = performance.now() + this.timeoutMs;
    for (;;) {
      if (Atomics.load(ctrl, ABORT_FLAG) !== 0) this.throwAborted(peer);
      const left = deadline - performance.now();
      if (left <= 0) this.throwTimeout(peer);
      Atomics.wait(ctrl, idx, value, Math.min(left, WAIT_SLICE_MS));
      if (Atomics.load(ctrl, idx) !== value) return;
    }
  }

  // ---------------------------------------------------------------------------------------
  // Bookkeeping and errors

  private begin(op: string): number {
    if (Atomics.load(this.ctrl, ABORT_FLAG) !== 0) {
      this.op = op;
      this.throwAborted(-1);
    }
    this.op = op;
    this.moved = 0;
    this.blockedUs = 0;
    return nowUs();
  }

  private end(name: string, t0: number, peer: number): void {
    if (this.recorder !== undefined) this.recorder.comm(name, t0, nowUs() - t0, this.moved, peer, this.blockedUs);
    this.op = '';
  }

  /**
   * Numbers this rank's next collective and announces it in the rank block: which
   * collective, and for a zero-copy all-reduce where the buffer is, so that the neighbour
   * can check it agrees before reading it.
   */
  private nextTag(op: number, kind: number, offset = -1, bytes = 0): number {
    const seq = this.collSeq;
    this.collSeq = (seq + 1) & 0x3ffffff;
    const tag = ((seq << 5) | (kind << 3) | op) | 0;
    if (this.worldSize > 1) {
      const rb = rankBlockIndex(this.layout, this.rank);
      const ctrl = this.ctrl;
      ctrl[rb + RB_OFFSET] = offset;
      ctrl[rb + RB_BYTES_LO] = bytes % TWO32 | 0;
      ctrl[rb + RB_BYTES_HI] = Math.floor(bytes / TWO32);
      Atomics.store(ctrl, rb + RB_TAG, tag);
      Atomics.notify(ctrl, rb + RB_TAG);
    }
    return tag;
  }

  private sameCounts(count: number): number[] {
    return new Array<number>(this.worldSize).fill(count);
  }

  private equalCounts(total: number): number[] {
    const n = this.worldSize;
    const base = Math.floor(total / n);
    const rem = total - base * n;
    const counts = new Array<number>(n);
    for (let k = 0; k < n; k++) counts[k] = base + (k < rem ? 1 : 0);
    return counts;
  }

  /** Byte displacements (n+1 entries, the last is the total) of per-rank element counts. */
  private displacements(counts: Counts, elem: number): number[] {
    const n = this.worldSize;
    if (counts.length !== n) throw this.usage(`${this.op}: counts has ${counts.length} entries, the group has ${n} ranks`);
    const displ = new Array<number>(n + 1);
    displ[0] = 0;
    for (let k = 0; k < n; k++) {
      const c = counts[k];
      if (!Number.isInteger(c) || c < 0) throw this.usage(`${this.op}: counts[${k}] = ${c} is not a non-negative integer`);
      displ[k + 1] = displ[k] + c * elem;
    }
    return displ;
  }

  private checkLength(actual: number, expected: number, what: string, from: string, unit = 'bytes'): void {
    if (actual !== expected) throw this.usage(`${this.op}: ${what} buffer has ${actual} ${unit} but ${from} gives ${expected}`);
  }

  private checkReduce(a: ReduceArray, b: ReduceArray): ReduceKind {
    const kind = reduceKindOf(a);
    if (!(a instanceof Float32Array || a instanceof Float64Array || a instanceof Int32Array)) {
      throw this.usage(`${this.op}: only Float32Array, Float64Array and Int32Array can be reduced`);
    }
    if (reduceKindOf(b) !== kind || b.constructor !== a.constructor) {
      throw this.usage(`${this.op}: send and recv must have the same element type`);
    }
    return kind;
  }

  private checkPeer(peer: number, what: string): void {
    if (!Number.isInteger(peer) || peer < 0 || peer >= this.worldSize) throw this.usage(`${what} rank ${peer}: outside 0..${this.worldSize - 1}`);
    if (peer === this.rank) throw this.usage(`${what} itself: a rank cannot ${this.op} to or from itself`);
  }

  private checkRoot(root: number): void {
    if (!Number.isInteger(root) || root < 0 || root >= this.worldSize) throw this.usage(`${this.op}: root ${root} is outside 0..${this.worldSize - 1}`);
  }

  private usage(message: string): CommError {
    const op = this.op;
    this.op = '';
    return new CommError('usage', this.rank, op, -1, `Communicator rank ${this.rank}: ${message}`);
  }

  private mismatch(peer: number, message: string): never {
    const text = `Communicator rank ${this.rank}: ranks called different collectives or sizes: ${message}`;
    this.abort(text);
    throw new CommError('mismatch', this.rank, this.op, peer, text);
  }

  private throwTimeout(peer: number): never {
    let on: string;
    if (peer >= 0) {
      on = `rank ${peer}`;
    } else {
      // A barrier: name the ranks that have not entered it.
      const missing: number[] = [];
      for (let k = 0; k < this.worldSize; k++) {
        if (Atomics.load(this.ctrl, (ARRIVAL_OFFSET >> 2) + k) !== this.barrierGenTarget()) missing.push(k);
      }
      on = `rank${missing.length === 1 ? '' : 's'} ${missing.join(', ')}`;
    }
    const text = `Communicator rank ${this.rank}: ${this.op} timed out after ${this.timeoutMs} ms waiting for ${on}`;
    // When another rank timed out first (ranks waiting on the same straggler expire at about
    // the same moment), report its abort: one root cause per failure, not one per rank.
    if (!abortGroupState(this.ctrl, this.mem, this.layout, this.rank, text)) this.throwAborted(peer);
    throw new CommError('timeout', this.rank, this.op, peer, text);
  }

  private barrierGenTarget(): number {
    return Atomics.load(this.ctrl, BARRIER_GEN) + 1;
  }

  private throwAborted(peer: number): never {
    const { rank, reason } = readAbort(this.ctrl, this.mem);
    const text = `Communicator rank ${this.rank}: ${this.op || 'operation'} stopped because the group was aborted${rank >= 0 ? ` by rank ${rank}` : ''}: ${reason}`;
    throw new CommError('aborted', this.rank, this.op, peer, text);
  }
}

/**
 * Aborts the group from any thread that has its descriptor, e.g. the runner when a device
 * worker dies: every rank's waits throw a {@link CommError} of kind `aborted` with `reason`.
 */
export function abortCommGroup(desc: CommGroupDescriptor, reason: string): void {
  const buf = bufferOf(desc);
  abortGroupState(new Int32Array(buf), new Uint8Array(buf), layoutOf(desc), -1, reason);
}

/** True once the group has been aborted (by any rank or by {@link abortCommGroup}). */
export function isCommGroupAborted(desc: CommGroupDescriptor): boolean {
  return Atomics.load(new Int32Array(bufferOf(desc)), ABORT_FLAG) !== 0;
}

/**
 * First abort wins: it records its reason, then wakes every waiter of every rank. Returns
 * false when the group had already been aborted.
 */
function abortGroupState(ctrl: Int32Array, mem: Uint8Array, l: CommLayout, rank: number, reason: string): boolean {
  if (Atomics.compareExchange(ctrl, ABORT_FLAG, 0, 1) !== 0) return false;
  const bytes = new TextEncoder().encode(reason).subarray(0, ABORT_MSG_BYTES - 4);
  // TextEncoder cannot write into shared memory directly, hence the copy.
  mem.set(bytes, ABORT_MSG_OFFSET + 4);
  ctrl[ABORT_MSG_OFFSET >> 2] = bytes.length;
  ctrl[ABORT_RANK] = rank;
  Atomics.store(ctrl, ABORT_FLAG, 2);
  Atomics.notify(ctrl, ABORT_FLAG);
  Atomics.notify(ctrl, BARRIER_GEN);
  for (let set = 0; set < 2; set++) {
    for (let s = 0; s < l.n; s++) {
      for (let d = 0; d < l.n; d++) {
        const ci = channelCtrlIndex(l, set, s, d);
        Atomics.notify(ctrl, ci + CH_HEAD);
        Atomics.notify(ctrl, ci + CH_TAIL);
      }
    }
  }
  for (let r = 0; r < l.n; r++) {
    Atomics.notify(ctrl, rankBlockIndex(l, r) + RB_TAG);
    Atomics.notify(ctrl, rankBlockIndex(l, r) + RB_PROGRESS);
  }
  return true;
}

function readAbort(ctrl: Int32Array, mem: Uint8Array): { rank: number; reason: string } {
  // The aborting thread is between claiming the flag and publishing its reason for a few
  // microseconds at most.
  for (let i = 0; i < 100 && Atomics.load(ctrl, ABORT_FLAG) === 1; i++) Atomics.wait(ctrl, ABORT_FLAG, 1, 1);
  if (Atomics.load(ctrl, ABORT_FLAG) !== 2) return { rank: -1, reason: '(reason not recorded)' };
  const len = ctrl[ABORT_MSG_OFFSET >> 2];
  const reason = new TextDecoder().decode(mem.slice(ABORT_MSG_OFFSET + 4, ABORT_MSG_OFFSET + 4 + len));
  return { rank: ctrl[ABORT_RANK], reason };
}
