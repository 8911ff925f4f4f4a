/**
 * The communication layer on real worker threads: a pool of 8 workers, worker k playing rank
 * k of each group (scenarios in test/helpers/comm-worker.ts).
 */
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { Worker } from 'node:worker_threads';
import { abortCommGroup, createCommGroup, isCommGroupAborted, type AttachOptions, type CommGroupOptions } from '../../src/runtime/comm';
import type { CommRunRequest, CommRunResult } from '../helpers/comm-worker';
import { commSpinUs, DEVICE_SPIN_US } from '../../src/runtime/runner/workers';

const POOL = 8;
const workerFile = join(__dirname, '..', 'helpers', 'comm-worker.ts');
let pool: Worker[] = [];
let nextId = 1;
const pending = new Map<number, (r: CommRunResult) => void>();

before(async () => {
  // Each worker pipes its stdout and stderr into ours; eight of them are not a leak.
  process.stdout.setMaxListeners(4 * POOL);
  process.stderr.setMaxListeners(4 * POOL);
  pool = Array.from({ length: POOL }, () => new Worker(workerFile, { execArgv: ['--require', 'tsx/cjs'] }));
  for (const w of pool) {
    w.on('message', (r: CommRunResult) => {
      pending.get(r.id * 16 + r.rank)?.(r);
      pending.delete(r.id * 16 + r.rank);
    });
    w.on('error', (e) => {
      throw e;
    });
  }
  await Promise.all(pool.map((w) => new Promise((resolve) => w.once('online', resolve))));
});

after(async () => {
  await Promise.all(pool.map((w) => w.terminate()));
});

interface RunOptions {
  group?: CommGroupOptions;
  /** Attach options, the same for every rank or per rank. */
  attach?: AttachOptions | ((rank: number) => AttachOptions);
  /** Called once every worker has been given the scenario. */
  started?: (desc: ReturnType<typeof createCommGroup>) => void;
}

/** Runs `scenario` on ranks 0..n−1 of a fresh group and returns every rank's result. */
async function run(n: number, scenario: string, args: Record<string, unknown> = {}, o: RunOptions = {}): Promise<CommRunResult[]> {
  const desc = createCommGroup(n, { timeoutMs: 20_000, ...o.group });
  const id = nextId++;
  const results = Array.from({ length: n }, (_, rank) => {
    const attach = typeof o.attach === 'function' ? o.attach(rank) : o.attach;
    const req: CommRunRequest = { id, rank, desc, scenario, args, attach };
    const p = new Promise<CommRunResult>((resolve) => pending.set(id * 16 + rank, resolve));
    pool[rank].postMessage(req);
    return p;
  });
  o.started?.(desc);
  return Promise.all(results);
}

/** Asserts no rank failed and every data check passed. */
function assertClean(results: CommRunResult[], what: string): void {
  for (const r of results) {
    assert.equal(r.error, null, `${what}: rank ${r.rank} failed: ${r.error?.message}`);
    if ('bad' in r.value) assert.equal(r.value['bad'], 0, `${what}: rank ${r.rank}: ${String(r.value['first'])}`);
  }
}

const SIZES = [0, 1, 7, 1000003];

describe('point-to-point', () => {
  test('send/recv delivers messages of any size intact, in order, and a burst of small ones stays buffered', async () => {
    assertClean(await run(2, 'p2pPingPong', { sizes: [0, 1, 7, 63, 64, 65, 300_000, 1_000_003], burst: 20 }), 'ping-pong');
  });

  test('send/recv pipelines messages larger than the channel through slots of 64 bytes', async () => {
    assertClean(await run(2, 'p2pPingPong', { sizes: [0, 1, 64, 65, 1000], burst: 3 }, { group: { slotBytes: 64, slots: 2 } }), 'tiny slots');
  });

  test('every rank can pass a million floats round a ring of 3 or 8 ranks', async () => {
    for (const n of [3, 8]) assertClean(await run(n, 'p2pRing', { len: 1_000_003 }), `ring of ${n}`);
  });

  test('a receive buffer of the wrong size fails with a mismatch and the channel stays usable', async () => {
    const [, r1] = await run(2, 'p2pMismatch');
    assert.equal(r1.error, null);
    assert.match(String(r1.value['message']), /^mismatch: .*recv.*16 bytes but the receive buffer has 8/);
    assert.deepEqual(r1.value['next'], [1, 2, 3, 4]);
  });
});

describe('barrier', () => {
  test('no rank leaves a barrier before the last one enters it, over many reused generations', async () => {
    for (const n of [2, 5]) {
      const results = await run(n, 'barrier', { rounds: 2 * n, lateMs: 15 });
      assertClean(results, `barrier of ${n}`);
      for (let round = 0; round < 2 * n; round++) {
        const lastIn = Math.max(...results.map((r) => (r.value['before'] as number[])[round]));
        const firstOut = Math.min(...results.map((r) => (r.value['after'] as number[])[round]));
        assert.ok(firstOut >= lastIn, `round ${round}: a rank left at ${firstOut} before the last arrived at ${lastIn}`);
      }
    }
    // Many quick rounds exercise the generation counter rather than the sleep.
    assertClean(await run(8, 'barrier', { rounds: 200, lateMs: 0 }), 'quick barriers');
  });
});

describe('collectives for world sizes 1 to 8', () => {
  test('broadcast copies the root buffer to every rank for every root and odd sizes', async () => {
    for (let n = 1; n <= 8; n++) {
      for (const root of new Set([0, n - 1, n >> 1])) {
        // The large size once per group (from a middle root, so the ring wraps past rank 0).
        for (const len of SIZES.filter((l) => l < 1e6 || root === n >> 1)) {
          assertClean(await run(n, 'broadcast', { len, root, type: 'f32', reps: 2 }), `n=${n} root=${root} len=${len}`);
        }
      }
    }
    assertClean(await run(3, 'broadcast', { len: 1_000_003, root: 2, type: 'u8', reps: 1 }), 'odd byte count');
  });

  test('scatter gives rank k shard k, equal or by counts, for every root', async () => {
    for (let n = 1; n <= 8; n++) {
      for (const root of new Set([0, n - 1])) {
        for (const shard of [0, 1, 7, 100_003]) assertClean(await run(n, 'scatter', { shard, root }), `n=${n} root=${root} shard=${shard}`);
        const counts = Array.from({ length: n }, (_, k) => (k * 37) % 5);
        assertClean(await run(n, 'scatter', { counts, root }), `scatterv n=${n} counts=${counts.join(',')}`);
      }
    }
  });

  test('gather concatenates every rank part in rank order on the root, equal or by counts', async () => {
    for (let n = 1; n <= 8; n++) {
      for (const root of new Set([0, n - 1])) {
        for (const shard of [0, 1, 7, 100_003]) assertClean(await run(n, 'gather', { shard, root }), `n=${n} root=${root} shard=${shard}`);
        const counts = Array.from({ length: n }, (_, k) => (k * 37 + 1) % 4);
        assertClean(await run(n, 'gather', { counts, root }), `gatherv n=${n} counts=${counts.join(',')}`);
      }
    }
  });

  test('allGather leaves every rank part on every rank, equal or by counts, repeatedly', async () => {
    for (let n = 1; n <= 8; n++) {
      for (const shard of [0, 1, 7, 125_003]) assertClean(await run(n, 'allgather', { shard, reps: 2 }), `n=${n} shard=${shard}`);
      const counts = Array.from({ length: n }, (_, k) => (k === 1 ? 70_001 : k % 3));
      assertClean(await run(n, 'allgather', { counts, reps: 2 }), `allGatherv n=${n}`);
    }
  });

  test('reduceScatter leaves block k of the sum on rank k for float32, float64 and int32', async () => {
    for (let n = 1; n <= 8; n++) {
      for (const shard of [0, 1, 7, 125_003]) assertClean(await run(n, 'reducescatter', { shard, type: 'f32', reps: 2 }), `n=${n} shard=${shard}`);
      for (const type of ['f64', 'i32']) assertClean(await run(n, 'reducescatter', { shard: 1001, type, reps: 1 }), `n=${n} ${type}`);
      const counts = Array.from({ length: n }, (_, k) => (k === 0 ? 0 : 3 * k + 1));
      assertClean(await run(n, 'reducescatter', { counts, type: 'f32', reps: 2 }), `reduceScatterv n=${n}`);
    }
  });

  test('allReduce sums in place for lengths 0, 1, 7, below the world size and 1000003, repeatedly', async () => {
    for (let n = 1; n <= 8; n++) {
      for (const len of new Set([...SIZES, n - 1, n + 1])) {
        const results = await run(n, 'allreduce', { len, type: 'f32', reps: 3 });
        assertClean(results, `n=${n} len=${len}`);
        assert.equal(results[0].value['simd'], true, 'the WebAssembly SIMD kernels load');
      }
    }
  });

  test('allReduce sums float64 and wraps int32 like Int32Array arithmetic', async () => {
    for (const n of [2, 3, 8]) {
      assertClean(await run(n, 'allreduce', { len: 100_003, type: 'f64', reps: 2 }), `f64 n=${n}`);
      assertClean(await run(n, 'allreduce', { len: 100_003, type: 'i32', reps: 2 }), `i32 n=${n}`);
    }
  });

  test('allReduce gives the same sums with the JavaScript fallback and with 64-byte slots', async () => {
    for (const n of [2, 5]) {
      const js = await run(n, 'allreduce', { len: 10_007, type: 'f32', reps: 2 }, { group: { noWasm: true } });
      assertClean(js, `js n=${n}`);
      assert.equal(js[0].value['simd'], false);
      assertClean(await run(n, 'allreduce', { len: 1001, type: 'f64', reps: 2 }, { group: { slotBytes: 64, slots: 2 } }), `tiny slots n=${n}`);
      assertClean(await run(n, 'broadcast', { len: 1001, root: 1, type: 'f32', reps: 2 }, { group: { slotBytes: 64, slots: 2 } }), `tiny slots broadcast n=${n}`);
    }
  });

  test('allReduce over buffers from Communicator.alloc runs zero-copy and gives the same sums', async () => {
    for (const n of [2, 3, 8]) {
      for (const [len, type] of [[1_000_003, 'f32'], [7, 'f32'], [0, 'f32'], [n - 1, 'f64'], [10_001, 'i32']] as const) {
        const results = await run(n, 'allreduce', { len, type, reps: 3, shared: true }, { group: { arenaBytes: 8 * 1_000_064, slotBytes: 4096 } });
        assertClean(results, `zero-copy n=${n} len=${len} ${type}`);
        assert.equal(results[0].value['shared'], true);
      }
    }
  });

  test('allReduce refuses a mix of shared and private buffers instead of mixing data', async () => {
    const [r0, r1] = await run(2, 'allreduce', { len: 100, type: 'f32', reps: 1, sharedRanks: [0] }, { group: { arenaBytes: 4096 } });
    assert.equal(r0.error?.kind, 'mismatch');
    assert.match(r0.error?.message ?? '', /rank 0 passed a buffer from Communicator\.alloc but rank 1 did not/);
    assert.equal(r1.error?.kind, 'aborted');
  });
});

describe('recorded spans', () => {
  test('every operation records one comm span with its name, the bytes this rank moved and the peer', async () => {
    const n = 3;
    const len = 10;
    const B = 4 * len; // bytes of one part
    const results = await run(n, 'sequence', { len });
    assertClean(results, 'sequence');
    const expected = (rank: number): [string, number, number][] => {
      const p2p: [string, number, number][] = rank === 0 ? [['send', B, 1]] : rank === 1 ? [['recv', B, 0]] : [];
      const pos = (rank - 1 + n) % n; // position after root 1 on the broadcast ring
      return [
        ...p2p,
        ['barrier', 0, -1],
        ['broadcast', pos === 0 || pos === n - 1 ? B : 2 * B, -1],
        ['scatter', rank === 0 ? (n - 1) * B : B, -1],
        ['gather', rank === 0 ? (n - 1) * B : B, -1],
        ['allgather', 2 * (n - 1) * B, -1],
        ['reducescatter', 2 * (n - 1) * B, -1],
        ['allreduce.ring', 4 * (n - 1) * B, -1],
      ];
    };
    for (const r of results) {
      assert.deepEqual(r.spans.map((s) => [s.name, s.bytes, s.peer]), expected(r.rank), `rank ${r.rank}`);
      for (const s of r.spans) {
        assert.ok(s.durUs >= 0 && s.startUs > 1.6e15, `span ${s.name} has a wall-clock start and a duration`);
      }
    }
  });

  test('an all-reduce of uneven blocks records the bytes each rank actually sent and received', async () => {
    const n = 4;
    const len = 1_000_003; // blocks of 250001, 250001, 250001, 250000 floats
    for (const shared of [false, true]) {
      const results = await run(n, 'allreduce', { len, type: 'f32', reps: 1, shared }, { group: { arenaBytes: 4_000_064 } });
      assertClean(results, 'uneven');
      const seg = (k: number): number => 4 * (Math.floor(len / n) + (((k % n) + n) % n < len % n ? 1 : 0));
      for (const r of results) {
        const total = 4 * len;
        const k = r.rank;
        assert.deepEqual(r.spans.map((s) => [s.name, s.bytes]), [['allreduce.ring', 4 * total - 2 * seg(k) - seg(k + 1) - seg(k - 1)]], `rank ${k} shared=${shared}`);
      }
    }
  });
});

describe('waiting: poll, then sleep', () => {
  test('device ranks poll long only when every thread of the run has a core and no device computes on the host behind another', () => {
    const cpu = (threads: number) => ({ kind: 'cpu' as const, intraOpNumThreads: threads, software: false, sharesPhysicalUnit: false });
    assert.equal(commSpinUs([cpu(1), cpu(1)], 2, false), DEVICE_SPIN_US, 'two 1-thread workers on 2 cores');
    assert.equal(commSpinUs([cpu(2), cpu(2)], 4, false), DEVICE_SPIN_US, 'two 2-thread workers on 4 cores');
    assert.equal(commSpinUs([cpu(2), cpu(2)], 2, false), undefined, 'intra-op threads oversubscribe 2 cores');
    assert.equal(commSpinUs([cpu(1), cpu(1)], 2, true), undefined, 'communication threads take the other cores');
    assert.equal(commSpinUs([cpu(1), cpu(1)], 4, true), DEVICE_SPIN_US, '4 threads on 4 cores');
    assert.equal(commSpinUs([cpu(1)], 2, false), undefined, 'one device waits on no peer');
    assert.equal(commSpinUs([cpu(1), { kind: 'webgpu' as const, intraOpNumThreads: 1, software: true, sharesPhysicalUnit: true }], 8, false), undefined, 'a software GPU computes on the host CPU');
    assert.equal(commSpinUs([cpu(1), { kind: 'cuda' as const, intraOpNumThreads: 1, software: false, sharesPhysicalUnit: false }], 2, false), DEVICE_SPIN_US, 'a GPU device needs one host thread');
  });

  test('a long poll budget gives the same data: send/recv, barrier and all-reduce with 2 ms of polling', async () => {
    assertClean(await run(3, 'allreduce', { type: 'f32', len: 100_003, reps: 3 }, { attach: { spin: 2000 } }), 'allreduce, spin 2000 µs');
    const results = await run(3, 'barrier', { rounds: 6, lateMs: 3 }, { attach: { spin: 2000 } });
    assertClean(results, 'barrier, spin 2000 µs');
    for (let round = 0; round < 6; round++) {
      const lastIn = Math.max(...results.map((r) => (r.value['before'] as number[])[round]));
      const firstOut = Math.min(...results.map((r) => (r.value['after'] as number[])[round]));
      assert.ok(firstOut >= lastIn, `round ${round}: a rank left at ${firstOut} before the last arrived at ${lastIn}`);
    }
  });

  test('a wait polls for its budget, then sleeps: a rank that waits hundreds of ms with a 40 ms budget uses well under half of it on the CPU', { skip: process.platform !== 'linux' && 'needs /proc/thread-self/schedstat' }, async () => {
    const [r0, r1] = await run(2, 'lateSend', { delayMs: 600 }, { attach: { spin: 40_000 } });
    assert.equal(r0.error, null);
    assert.equal(r1.error, null);
    const { cpuMs, wallMs } = r0.value as { cpuMs: number; wallMs: number };
    // The two ranks start when their workers get the request, so the wait is up to 600 ms.
    assert.ok(wallMs >= 200, `the receive waited for the late send (${wallMs.toFixed(0)} ms)`);
    // Polling all the way would use about the whole wait; the budget, about 40 ms. A busy
    // machine can only lower the figure (a preempted poll uses no CPU).
    assert.ok(cpuMs < wallMs / 2, `the waiting thread slept after its 40 ms poll: ${cpuMs.toFixed(1)} ms of CPU over a ${wallMs.toFixed(0)} ms wait`);
  });
});

describe('failures', () => {
  test('a wait that passes its timeout throws naming the op and the peer, and aborts the other ranks', async () => {
    const t0 = performance.now();
    // Rank 1 would wait far longer: it must be woken by rank 0's abort, not by its own deadline.
    const [r0, r1] = await run(2, 'timeout', {}, { attach: (rank) => ({ timeoutMs: rank === 0 ? 300 : 10_000 }) });
    const ms = performance.now() - t0;
    assert.equal(r0.error?.kind, 'timeout');
    assert.equal(r0.error?.op, 'recv');
    assert.equal(r0.error?.peer, 1);
    assert.match(r0.error?.message ?? '', /rank 0: recv timed out after 300 ms waiting for rank 1/);
    assert.equal(r1.error?.kind, 'aborted');
    assert.match(r1.error?.message ?? '', /barrier stopped because the group was aborted by rank 0: .*recv timed out/);
    assert.ok(ms < 3000, `both ranks gave up promptly (${ms.toFixed(0)} ms)`);
  });

  test('a barrier that times out names the ranks that never arrived', async () => {
    const results = await run(3, 'barrierMissing', { missing: 1 }, { group: { timeoutMs: 200 } });
    assert.equal(results[1].error, null);
    const timedOut = results.filter((r) => r.error?.kind === 'timeout');
    assert.equal(timedOut.length, 1, 'the first rank to time out aborts the other');
    assert.match(timedOut[0].error?.message ?? '', /barrier timed out after 200 ms waiting for rank 1$/);
    const other = results.find((r) => r.rank !== 1 && r !== timedOut[0]);
    assert.equal(other?.error?.kind, 'aborted');
  });

  test('ranks that call different collectives get a mismatch error naming both', async () => {
    const [r0, r1] = await run(2, 'mismatch');
    const errs = [r0.error, r1.error];
    const mismatch = errs.find((e) => e?.kind === 'mismatch');
    assert.ok(mismatch, `one rank reports the mismatch: ${JSON.stringify(errs)}`);
    assert.match(mismatch.message, /broadcast #0/);
    assert.match(mismatch.message, /allreduce\.ring<float32> #0/);
    for (const e of errs) assert.ok(e?.kind === 'mismatch' || e?.kind === 'aborted', `the other rank stops too: ${e?.message}`);
  });

  test('abortCommGroup from the runner wakes every blocked rank with its reason', async () => {
    let desc: ReturnType<typeof createCommGroup> | null = null;
    const t0 = performance.now();
    const results = await run(3, 'blockUntilAbort', {}, {
      started: (d) => {
        desc = d;
        setTimeout(() => abortCommGroup(d, 'runner is stopping'), 100);
      },
    });
    assert.ok(performance.now() - t0 < 5000);
    for (const r of results) {
      assert.equal(r.error?.kind, 'aborted');
      assert.match(r.error?.message ?? '', /recv stopped because the group was aborted: runner is stopping/);
    }
    assert.ok(desc !== null && isCommGroupAborted(desc));
  });

  test('argument errors are thrown before anything is sent', async () => {
    const [r0] = await run(2, 'usage');
    assert.equal(r0.error, null);
    const m = r0.value['messages'] as string[];
    assert.match(m[0], /^usage: .*send to itself/);
    assert.match(m[1], /^usage: .*rank 2: outside 0\.\.1/);
    assert.match(m[2], /^usage: .*scatter: root 0 must pass a send buffer/);
    assert.match(m[3], /^usage: .*counts has 1 entries, the group has 2 ranks/);
    assert.match(m[4], /^usage: .*same element type/);
    assert.match(m[5], /^usage: .*root -1 is outside/);
    assert.match(m[6], /^RangeError|^: .*arena|arena/);
  });
});

describe('compressed all-reduce (gradients encoded on the wire, summed in float32)', () => {
  test('every rank ends with the same values, within the encoding\'s error of the exact sum, for 1 to 4 ranks and odd lengths', async () => {
    // Relative to the largest contribution m: float16 rounds each of the n−1 contributions
    // sent (≤ 2^-11·m each) and the sum once (≤ 2^-11·n·m); int8 rounds to half a step of a
    // chunk's largest value (m/254 per contribution, n·m/254 for the sum): under 2n units.
    for (const n of [1, 2, 3, 4]) {
      const bound = { float32: 1e-6, float16: 2 * n * 2 ** -11, int8: (2 * n) / 254 } as const;
      for (const dtype of ['float32', 'float16', 'int8'] as const) {
        for (const len of [1, 7, 5003]) {
          const results = await run(n, 'compressedAllReduce', { dtype, len, steps: 1 });
          assertClean(results, `${dtype} n=${n} len=${len}`);
          const sums = new Set(results.map((r) => r.value['checksum']));
          assert.equal(sums.size, 1, `${dtype} n=${n} len=${len}: every replica holds the same values`);
          const err = results[0]!.value['stepErr'] as number;
          assert.ok(err <= bound[dtype], `${dtype} n=${n} len=${len}: error ${err} > ${bound[dtype]}`);
          if (dtype === 'int8' && n > 1 && len > 7) assert.ok(err > 1e-5, `int8 loses something (${err})`);
        }
      }
    }
  });

  test('with error feedback the int8 error of the sum accumulated over 20 steps stays that of one step', async () => {
    const [r] = await run(2, 'compressedAllReduce', { dtype: 'int8', len: 4099, steps: 20 });
    assert.equal(r!.error, null);
    const step = r!.value['stepErr'] as number;
    const total = r!.value['totalErr'] as number;
    // Without feedback 20 independent roundings add up (≈√20 × on average, up to 20×).
    assert.ok(total <= 2 * step, `accumulated error ${total} against one step's ${step}`);
  });

  test('the bytes on the wire shrink by the encoding: float16 2×, int8 about 4×', async () => {
    const bytes: Record<string, number> = {};
    for (const dtype of ['float32', 'float16', 'int8'] as const) {
      const results = await run(2, 'compressedAllReduce', { dtype, len: 100_000, steps: 1 });
      assertClean(results, dtype);
      bytes[dtype] = results[0]!.spans.reduce((s, x) => s + x.bytes, 0);
    }
    assert.equal(bytes['float32']! / bytes['float16']!, 2);
    const r = bytes['float32']! / bytes['int8']!;
    assert.ok(r > 3.9 && r <= 4, `float32/int8 bytes ${r}`);
  });
});
