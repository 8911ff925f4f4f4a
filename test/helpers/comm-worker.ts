/**
 * Worker side of the communication tests. Worker k of the test pool plays rank k of every
 * group it is given: the test posts a {@link CommRunRequest} to ranks 0..n−1, each attaches
 * to the group, runs the named scenario and answers with a {@link CommRunResult}. Data are
 * checked here, where they live, so that a million-element result need not travel back.
 *
 * The scenarios are plain functions ({@link runScenario}); the `parentPort` wiring at the
 * bottom is the only worker-specific part.
 */
import { readFileSync } from 'node:fs';
import { parentPort } from 'node:worker_threads';
import { CommError, Communicator, type AttachOptions, type CommGroupDescriptor } from '../../src/runtime/comm';
import type { CommRecorder } from '../../src/runtime/spans';
import { CompressedAllReduce } from '../../src/runtime/comm/compressed-allreduce';
import { wireCodec, type WireDtype } from '../../src/runtime/comm/compress';

export interface CommRunRequest {
  id: number;
  rank: number;
  desc: CommGroupDescriptor;
  scenario: string;
  args: Record<string, unknown>;
  attach?: AttachOptions | undefined;
}

export interface CommSpanRecord {
  name: string;
  bytes: number;
  peer: number;
  startUs: number;
  durUs: number;
}

export interface CommErrorInfo {
  name: string;
  kind: string;
  message: string;
  op: string;
  peer: number;
}

export interface CommRunResult {
  id: number;
  rank: number;
  /** Scenario-specific facts (counts of wrong elements, timings, …). */
  value: Record<string, unknown>;
  error: CommErrorInfo | null;
  spans: CommSpanRecord[];
}

export type DType = 'f32' | 'f64' | 'i32' | 'u8';
type AnyArray = Float32Array | Float64Array | Int32Array | Uint8Array;

/** Deterministic small integers, so float sums over ≤ 8 ranks are exact. */
export function value(rank: number, i: number, salt: number): number {
  return ((i * 31 + rank * 17 + salt * 7) % 97) - 48;
}

function make(type: DType, n: number): AnyArray {
  switch (type) {
    case 'f32':
      return new Float32Array(n);
    case 'f64':
      return new Float64Array(n);
    case 'i32':
      return new Int32Array(n);
    case 'u8':
      return new Uint8Array(n);
  }
}

function fill(a: AnyArray, rank: number, salt: number): AnyArray {
  for (let i = 0; i < a.length; i++) a[i] = value(rank, i, salt) & (a instanceof Uint8Array ? 0xff : -1);
  return a;
}

/** Counts elements of `a` that differ from `expect(i)`; describes the first. */
function check(a: ArrayLike<number>, expect: (i: number) => number, what: string): { bad: number; first: string | null } {
  let bad = 0;
  let first: string | null = null;
  for (let i = 0; i < a.length; i++) {
    const e = expect(i);
    if (a[i] !== e) {
      if (first === null) first = `${what}[${i}] = ${a[i]}, expected ${e}`;
      bad++;
    }
  }
  return { bad, first };
}

function merge(into: { bad: number; first: string | null }, r: { bad: number; first: string | null }): void {
  into.bad += r.bad;
  into.first ??= r.first;
}

function prefix(counts: number[]): number[] {
  const d = [0];
  for (const c of counts) d.push(d[d.length - 1] + c);
  return d;
}

function evenCounts(total: number, n: number): number[] {
  const base = Math.floor(total / n);
  return Array.from({ length: n }, (_, k) => base + (k < total - base * n ? 1 : 0));
}

function sleepMs(ms: number): void {
  Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms);
}

/** Sum over ranks of {@link value}, wrapped the way the element type wraps. */
function sumOf(n: number, i: number, salt: number, type: DType): number {
  let s = 0;
  for (let r = 0; r < n; r++) s += value(r, i, salt);
  return type === 'i32' ? s | 0 : s;
}

type Scenario = (c: Communicator, a: Record<string, unknown>, desc: CommGroupDescriptor) => Record<string, unknown>;

const scenarios: Record<string, Scenario> = {
  /** Rank 0 sends each size to rank 1, which echoes it back; then a burst of small messages. */
  p2pPingPong(c, a) {
    const sizes = a['sizes'] as number[];
    const res = { bad: 0, first: null as string | null };
    for (const [k, size] of sizes.entries()) {
      const buf = new Uint8Array(size);
      if (c.rank === 0) {
        fill(buf, 0, k);
        c.send(1, buf);
        const back = new Uint8Array(size);
        c.recv(1, back);
        merge(res, check(back, (i) => value(0, i, k) & 0xff, `echo of ${size} bytes`));
      } else {
        c.recv(0, buf);
        c.send(0, buf);
      }
    }
    // Many small messages in a row: they sit in the channel until the receiver gets to them.
    const burst = a['burst'] as number;
    if (c.rank === 0) {
      for (let m = 0; m < burst; m++) c.send(1, new Int32Array([m, m * 3]));
    } else {
      for (let m = 0; m < burst; m++) {
        const got = new Int32Array(2);
        c.recv(0, got);
        merge(res, check(got, (i) => (i === 0 ? m : m * 3), `burst message ${m}`));
      }
    }
    return res;
  },

  /** Every rank passes `len` float32 to the next rank round a ring (even ranks send first). */
  p2pRing(c, a) {
    const len = a['len'] as number;
    const n = c.worldSize;
    const next = (c.rank + 1) % n;
    const prev = (c.rank - 1 + n) % n;
    const out = fill(new Float32Array(len), c.rank, 5);
    const got = new Float32Array(len);
    if (c.rank % 2 === 0) {
      c.send(next, out);
      c.recv(prev, got);
    } else {
      c.recv(prev, got);
      c.send(next, out);
    }
    return check(got, (i) => value(prev, i, 5), `from rank ${prev}`);
  },

  /** A receive buffer of the wrong size fails, and the next message still arrives intact. */
  p2pMismatch(c) {
    if (c.rank === 0) {
      c.send(1, new Uint8Array(16));
      c.send(1, new Uint8Array([1, 2, 3, 4]));
      return {};
    }
    let message = '';
    try {
      c.recv(0, new Uint8Array(8));
    } catch (e) {
      message = `${(e as CommError).kind}: ${(e as Error).message}`;
    }
    const next = new Uint8Array(4);
    c.recv(0, next);
    return { message, next: Array.from(next) };
  },

  /** Rank (round mod n) arrives late at each barrier; nobody may leave before it arrives. */
  barrier(c, a) {
    const rounds = a['rounds'] as number;
    const lateMs = a['lateMs'] as number;
    const before: number[] = [];
    const after: number[] = [];
    for (let r = 0; r < rounds; r++) {
      if (r % c.worldSize === c.rank && lateMs > 0) sleepMs(lateMs);
      before.push(performance.timeOrigin + performance.now());
      c.barrier();
      after.push(performance.timeOrigin + performance.now());
    }
    return { before, after };
  },

  broadcast(c, a) {
    const res = { bad: 0, first: null as string | null };
    const type = a['type'] as DType;
    for (let rep = 0; rep < (a['reps'] as number); rep++) {
      const buf = make(type, a['len'] as number);
      const root = a['root'] as number;
      if (c.rank === root) fill(buf, root, rep);
      else buf.fill(99);
      c.broadcast(buf, root);
      merge(res, check(buf, (i) => value(root, i, rep) & (type === 'u8' ? 0xff : -1), `rep ${rep}`));
    }
    return res;
  },

  scatter(c, a) {
    const n = c.worldSize;
    const root = a['root'] as number;
    const counts = (a['counts'] as number[] | undefined) ?? new Array<number>(n).fill(a['shard'] as number);
    const displ = prefix(counts);
    const send = c.rank === root ? fill(new Float32Array(displ[n]), root, 3) : null;
    const recv = new Float32Array(counts[c.rank]).fill(99);
    if (a['counts'] === undefined) c.scatter(send, recv, root);
    else c.scatterv(send, recv, counts, root);
    return check(recv, (i) => value(root, displ[c.rank] + i, 3), 'shard');
  },

  gather(c, a) {
    const n = c.worldSize;
    const root = a['root'] as number;
    const counts = (a['counts'] as number[] | undefined) ?? new Array<number>(n).fill(a['shard'] as number);
    const displ = prefix(counts);
    const send = fill(new Int32Array(counts[c.rank]), c.rank, 4);
    const recv = c.rank === root ? new Int32Array(displ[n]).fill(99) : null;
    if (a['counts'] === undefined) c.gather(send, recv, root);
    else c.gatherv(send, recv, counts, root);
    if (recv === null) return { bad: 0, first: null };
    const res = { bad: 0, first: null as string | null };
    for (let k = 0; k < n; k++) merge(res, check(recv.subarray(displ[k], displ[k + 1]), (i) => value(k, i, 4), `part of rank ${k}`));
    return res;
  },

  allgather(c, a) {
    const n = c.worldSize;
    const counts = (a['counts'] as number[] | undefined) ?? new Array<number>(n).fill(a['shard'] as number);
    const displ = prefix(counts);
    const res = { bad: 0, first: null as string | null };
    for (let rep = 0; rep < (a['reps'] as number); rep++) {
      const send = fill(new Float64Array(counts[c.rank]), c.rank, rep);
      const recv = new Float64Array(displ[n]).fill(99);
      if (a['counts'] === undefined) c.allGather(send, recv);
      else c.allGatherv(send, recv, counts);
      for (let k = 0; k < n; k++) merge(res, check(recv.subarray(displ[k], displ[k + 1]), (i) => value(k, i, rep), `rep ${rep} part of rank ${k}`));
    }
    return res;
  },

  reducescatter(c, a) {
    const n = c.worldSize;
    const type = a['type'] as DType;
    const counts = (a['counts'] as number[] | undefined) ?? new Array<number>(n).fill(a['shard'] as number);
    const displ = prefix(counts);
    const res = { bad: 0, first: null as string | null };
    for (let rep = 0; rep < (a['reps'] as number); rep++) {
      const send = fill(make(type, displ[n]), c.rank, rep) as Float32Array;
      const recv = make(type, counts[c.rank]).fill(99) as Float32Array;
      if (a['counts'] === undefined) c.reduceScatter(send, recv);
      else c.reduceScatterv(send, recv, counts);
      merge(res, check(recv, (i) => sumOf(n, displ[c.rank] + i, rep, type), `rep ${rep}`));
    }
    return res;
  },

  /** Repeated in-place all-reduces (new data each time); `shared` takes the buffer from the arena. */
  allreduce(c, a) {
    const n = c.worldSize;
    const type = a['type'] as DType;
    const len = a['len'] as number;
    const shared = a['shared'] === true || (a['sharedRanks'] as number[] | undefined)?.includes(c.rank) === true;
    const res = { bad: 0, first: null as string | null };
    const alloc = (): AnyArray => (type === 'f64' ? c.alloc(Float64Array, len) : type === 'i32' ? c.alloc(Int32Array, len) : c.alloc(Float32Array, len));
    const buf = (shared ? alloc() : make(type, len)) as Float32Array;
    for (let rep = 0; rep < (a['reps'] as number); rep++) {
      fill(buf, c.rank, rep);
      c.allReduce(buf);
      merge(res, check(buf, (i) => sumOf(n, i, rep, type), `rep ${rep}`));
    }
    return { ...res, simd: c.simd, shared: c.isShared(buf) };
  },

  /** One of every operation, to check the recorded spans. */
  sequence(c, a) {
    const n = c.worldSize;
    const len = a['len'] as number;
    if (c.rank === 0) c.send(1, new Float32Array(len));
    if (c.rank === 1) c.recv(0, new Float32Array(len));
    c.barrier();
    c.broadcast(new Float32Array(len), 1);
    c.scatter(c.rank === 0 ? new Float32Array(len * n) : null, new Float32Array(len), 0);
    c.gather(new Float32Array(len), c.rank === 0 ? new Float32Array(len * n) : null, 0);
    c.allGather(new Float32Array(len), new Float32Array(len * n));
    c.reduceScatter(new Float32Array(len * n), new Float32Array(len));
    c.allReduce(new Float32Array(len * n));
    return {};
  },

  /** Rank 0 waits for a message rank 1 never sends; rank 1 waits in a barrier rank 0 never enters. */
  timeout(c) {
    if (c.rank === 0) c.recv(1, new Uint8Array(4));
    else c.barrier();
    return {};
  },

  /** Every rank but `missing` enters a barrier. */
  barrierMissing(c, a) {
    if (c.rank !== a['missing']) c.barrier();
    return {};
  },

  /** Rank 0 broadcasts while rank 1 all-reduces; then both enter a barrier. */
  mismatch(c) {
    if (c.rank === 0) c.broadcast(new Float32Array(10), 0);
    else c.allReduce(new Float32Array(10));
    c.barrier();
    return {};
  },

  /** Blocks in a receive until the runner aborts the group. */
  /**
   * Rank 1 sleeps `delayMs` (blocking, off the CPU), then sends; rank 0 receives and reports
   * the CPU time its thread used while it waited (Linux schedstat, ns; -1 elsewhere) and
   * the wait's wall time.
   */
  lateSend(c, a) {
    const delayMs = Number(a['delayMs']);
    if (c.rank === 1) {
      sleepMs(delayMs);
      c.send(0, new Uint8Array(4));
      return {};
    }
    const cpuNs = (): number => {
      try {
        return Number(readFileSync('/proc/thread-self/schedstat', 'latin1').split(' ')[0]);
      } catch {
        return -1;
      }
    };
    const c0 = cpuNs();
    const t0 = performance.now();
    c.recv(1, new Uint8Array(4));
    const wallMs = performance.now() - t0;
    const c1 = cpuNs();
    return { cpuMs: c0 < 0 ? -1 : (c1 - c0) / 1e6, wallMs };
  },

  blockUntilAbort(c) {
    c.recv((c.rank + 1) % c.worldSize, new Uint8Array(4));
    return {};
  },

  /**
   * `steps` compressed all-reduces (`dtype` on the wire) of pseudo-random floats: the worst
   * error of one step's sum and of the sum accumulated over all steps against the exact
   * float64 sums, relative to the largest value a rank contributed; and a checksum of the bits of the
   * last result, equal on every rank when all replicas hold identical values.
   */
  compressedAllReduce(c, args) {
    const len = args['len'] as number;
    const steps = args['steps'] as number;
    const ar = new CompressedAllReduce(c, wireCodec(args['dtype'] as WireDtype), len);
    const buf = new Float32Array(len);
    const exactTotal = new Float64Array(len);
    const gotTotal = new Float64Array(len);
    let stepErr = 0;
    let scale = 0;
    const rnd = (rank: number, i: number, s: number): number => Math.fround(Math.sin(rank * 7919 + i * 0.37 + s * 13.1 + 0.5) * (1 + (i % 5)));
    for (let s = 0; s < steps; s++) {
      for (let i = 0; i < len; i++) buf[i] = rnd(c.rank, i, s);
      ar.run(buf);
      for (let i = 0; i < len; i++) {
        let exact = 0;
        for (let k = 0; k < c.worldSize; k++) exact += rnd(k, i, s);
        exactTotal[i]! += exact;
        gotTotal[i]! += buf[i]!;
        for (let k = 0; k < c.worldSize; k++) scale = Math.max(scale, Math.abs(rnd(k, i, s)));
        stepErr = Math.max(stepErr, Math.abs(buf[i]! - exact));
      }
    }
    let totalErr = 0;
    for (let i = 0; i < len; i++) totalErr = Math.max(totalErr, Math.abs(gotTotal[i]! - exactTotal[i]!));
    const bits = new Uint32Array(buf.buffer);
    let checksum = 0;
    for (let i = 0; i < bits.length; i++) checksum = (checksum * 31 + bits[i]!) % 2147483647;
    return { stepErr: stepErr / scale, totalErr: totalErr / scale, checksum };
  },

  /** Argument errors are reported before anything is sent. */
  usage(c) {
    // Only rank 0 calls anything: none of these calls may reach the other ranks.
    if (c.rank !== 0) return {};
    const messages: string[] = [];
    const attempt = (f: () => void): void => {
      try {
        f();
        messages.push('no error');
      } catch (e) {
        messages.push(`${(e as CommError).kind}: ${(e as Error).message}`);
      }
    };
    attempt(() => c.send(c.rank, new Uint8Array(1)));
    attempt(() => c.send(c.worldSize, new Uint8Array(1)));
    attempt(() => c.scatterv(null, new Float32Array(1), [1, 1], 0));
    attempt(() => c.allGatherv(new Float32Array(1), new Float32Array(2), [1]));
    attempt(() => c.reduceScatter(new Float32Array(4), new Float64Array(2) as unknown as Float32Array));
    attempt(() => c.broadcast(new Uint8Array(1), -1));
    attempt(() => c.alloc(Float32Array, 1));
    return { messages };
  },
};

/** Runs one scenario as rank `req.rank`; never throws (errors are part of the result). */
export function runScenario(req: CommRunRequest): CommRunResult {
  const spans: CommSpanRecord[] = [];
  const recorder: CommRecorder = {
    comm(name, startUs, durUs, bytes, peer) {
      spans.push({ name, startUs, durUs, bytes, peer });
    },
  };
  try {
    const c = Communicator.attach(req.desc, req.rank, recorder, req.attach);
    const f = scenarios[req.scenario];
    if (f === undefined) throw new Error(`unknown scenario ${req.scenario}`);
    return { id: req.id, rank: req.rank, value: f(c, req.args, req.desc), error: null, spans };
  } catch (e) {
    const err = e as Partial<CommError> & Error;
    return {
      id: req.id,
      rank: req.rank,
      value: {},
      error: { name: err.name, kind: err.kind ?? '', message: err.message, op: err.op ?? '', peer: err.peer ?? -1 },
      spans,
    };
  }
}

export { evenCounts };

if (parentPort !== null) {
  const port = parentPort;
  port.on('message', (req: CommRunRequest) => port.postMessage(runScenario(req)));
}
