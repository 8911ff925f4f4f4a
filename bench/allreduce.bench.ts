/**
 * Ring all-reduce bandwidth against the two references it must be judged by, measured in
 * one run and interleaved so that they see the same machine state:
 *  - memcpy: single-thread `TypedArray.set` of 64 MiB (the ceiling of any copy-based path);
 *  - ring all-reduce of 64 MiB float32 over 2 worker threads, with the WebAssembly SIMD
 *    reduction and with the JavaScript fallback (algbw and busbw as nccl-tests define them:
 *    algbw = bytes / time, busbw = algbw × 2(n−1)/n, time = slowest rank);
 *  - structured-clone `postMessage` of the same 64 MiB between the two workers (what device
 *    workers would do without shared memory).
 * Targets: busbw ≥ 50 % of memcpy, and ≥ 10× postMessage. Reported as PASS/MISS, never
 * asserted. Prints a Markdown section and writes bench/results/allreduce.json.
 *
 *   node --import tsx bench/allreduce.bench.ts [--reps N]
 *
 * The file is also its own worker script (see the `isMainThread` branch at the bottom).
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { cpus, availableParallelism, platform, release } from 'node:os';
import { dirname, join } from 'node:path';
import { MessageChannel, MessagePort, Worker, isMainThread, parentPort, workerData } from 'node:worker_threads';
import { Communicator, createCommGroup, type CommGroupDescriptor } from '../src/runtime/comm';
import { nowUs } from '../src/runtime/spans';

const MIB = 1024 * 1024;
const BYTES = 64 * MIB;
const N = BYTES / 4;
const WORLD = 2;

type ToWorker =
  | { type: 'allreduce'; group: 0 | 1 }
  | { type: 'postmessage' }
  | { type: 'check' };
interface WorkerInit {
  rank: number;
  groups: CommGroupDescriptor[];
  port: MessagePort;
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 === 1 ? s[m] : (s[m - 1] + s[m]) / 2;
}

// ---------------------------------------------------------------------------------------
// Worker side

function workerMain(): void {
  const init = workerData as WorkerInit;
  const comms = init.groups.map((g) => Communicator.attach(g, init.rank));
  const buf = new Float32Array(N).fill(1);
  const cloneSrc = new Float32Array(N).fill(init.rank);
  let cloneStart = 0;
  // Rank 1 answers each cloned array with its arrival time; rank 0 turns that into a duration.
  init.port.on('message', (m: unknown) => {
    if (init.rank === 1) {
      init.port.postMessage(nowUs());
    } else {
      parentPort!.postMessage({ us: (m as number) - cloneStart });
    }
  });
  parentPort!.on('message', (m: ToWorker) => {
    if (m.type === 'allreduce') {
      const c = comms[m.group];
      c.barrier();
      const t0 = nowUs();
      c.allReduce(buf);
      parentPort!.postMessage({ us: nowUs() - t0 });
    } else if (m.type === 'postmessage') {
      if (init.rank === 0) {
        cloneStart = nowUs();
        init.port.postMessage(cloneSrc);
      }
    } else {
      // Correctness: ranks hold r+1 everywhere, so the sum is 3 in every element.
      const b = new Float32Array(N).fill(init.rank + 1);
      let bad = 0;
      for (const c of comms) {
        b.fill(init.rank + 1);
        c.allReduce(b);
        for (let i = 0; i < N; i++) if (b[i] !== 3) bad++;
      }
      parentPort!.postMessage({ bad, simd: comms.map((c) => c.simd) });
    }
  });
}

// ---------------------------------------------------------------------------------------
// Main side

function ask<T>(w: Worker, m: ToWorker | null): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    const onMsg = (r: T): void => {
      w.off('error', onErr);
      resolve(r);
    };
    const onErr = (e: Error): void => {
      w.off('message', onMsg);
      reject(e);
    };
    w.once('message', onMsg);
    w.once('error', onErr);
    if (m !== null) w.postMessage(m);
  });
}

async function main(): Promise<void> {
  const repsArg = process.argv.indexOf('--reps');
  const reps = repsArg > 0 ? Number(process.argv[repsArg + 1]) : 15;
  const warmup = 3;
  const slotArg = process.argv.indexOf("--slot"); const slotBytes = slotArg > 0 ? Number(process.argv[slotArg + 1]) : undefined;
  const groups = [createCommGroup(WORLD, { slotBytes }), createCommGroup(WORLD, { noWasm: true })];
  const { port1, port2 } = new MessageChannel();
  const workers = [port1, port2].map(
    (port, rank) =>
      new Worker(__filename, {
        execArgv: ['--require', 'tsx/cjs'],
        workerData: { rank, groups, port } satisfies WorkerInit,
        transferList: [port],
      }),
  );

  const check = await Promise.all(workers.map((w) => ask<{ bad: number; simd: boolean[] }>(w, { type: 'check' })));
  const bad = check.reduce((a, c) => a + c.bad, 0);

  const src = new Float32Array(N).fill(1);
  const dst = new Float32Array(N);
  const memcpyUs = () => {
    const t0 = nowUs();
    dst.set(src);
    return nowUs() - t0;
  };
  const allreduceUs = async (group: 0 | 1) => {
    const ts = await Promise.all(workers.map((w) => ask<{ us: number }>(w, { type: 'allreduce', group })));
    return Math.max(...ts.map((t) => t.us));
  };
  const cloneUs = async () => {
    const r = ask<{ us: number }>(workers[0], null);
    workers[0].postMessage({ type: 'postmessage' } satisfies ToWorker);
    workers[1].postMessage({ type: 'postmessage' } satisfies ToWorker);
    return (await r).us;
  };

  const raw = { memcpyUs: [] as number[], allreduceSimdUs: [] as number[], allreduceJsUs: [] as number[], postMessageUs: [] as number[] };
  for (let i = 0; i < warmup + reps; i++) {
    const m = memcpyUs();
    const a = await allreduceUs(0);
    const j = await allreduceUs(1);
    const p = await cloneUs();
    if (i >= warmup) {
      raw.memcpyUs.push(m);
      raw.allreduceSimdUs.push(a);
      raw.allreduceJsUs.push(j);
      raw.postMessageUs.push(p);
    }
  }
  await Promise.all(workers.map((w) => w.terminate()));

  const gbps = (us: number): number => BYTES / (us * 1e-6) / 1e9;
  const busFactor = (2 * (WORLD - 1)) / WORLD;
  const memcpy = gbps(median(raw.memcpyUs));
  const arAlg = gbps(median(raw.allreduceSimdUs));
  const arBus = arAlg * busFactor;
  const jsAlg = gbps(median(raw.allreduceJsUs));
  const pm = gbps(median(raw.postMessageUs));
  const ratioMemcpy = arBus / memcpy;
  const ratioPm = arAlg / pm;
  const verdict = (ok: boolean): string => (ok ? 'PASS' : 'MISS');

  const cpu = cpus()[0]?.model ?? 'unknown';
  const cores = availableParallelism();
  const f = (x: number): string => x.toFixed(2);
  const ms = (us: number): string => (us / 1000).toFixed(2);
  const lines = [
    '## Ring all-reduce, 64 MiB float32, 2 workers',
    '',
    `Machine: ${cpu}, ${cores} cores, ${platform()} ${release()}, Node ${process.versions.node}. ` +
      `Medians of ${reps} interleaved repetitions after ${warmup} warm-up; time = slowest rank. ` +
      `Correctness check: ${bad === 0 ? 'every element = 3' : `${bad} wrong elements`}; SIMD kernels: ${check[0].simd[0] ? 'yes' : 'no'}.`,
    '',
    '| measurement | median time (ms) | algbw (GB/s) | busbw (GB/s) |',
    '|---|---:|---:|---:|',
    `| memcpy (TypedArray.set, 1 thread) | ${ms(median(raw.memcpyUs))} | ${f(memcpy)} | – |`,
    `| all-reduce ring, WebAssembly SIMD add | ${ms(median(raw.allreduceSimdUs))} | ${f(arAlg)} | ${f(arBus)} |`,
    `| all-reduce ring, JavaScript add (fallback) | ${ms(median(raw.allreduceJsUs))} | ${f(jsAlg)} | ${f(jsAlg * busFactor)} |`,
    `| postMessage structured clone, worker → worker | ${ms(median(raw.postMessageUs))} | ${f(pm)} | – |`,
    '',
    '| target | figure | verdict |',
    '|---|---:|---|',
    `| all-reduce busbw ≥ 50 % of memcpy | ${(ratioMemcpy * 100).toFixed(0)} % | ${verdict(ratioMemcpy >= 0.5)} |`,
    `| all-reduce algbw ≥ 10× postMessage | ${f(ratioPm)}× | ${verdict(ratioPm >= 10)} |`,
    '',
  ];
  process.stdout.write(lines.join('\n'));

  const out = join(__dirname, 'results', 'allreduce.json');
  mkdirSync(dirname(out), { recursive: true });
  writeFileSync(
    out,
    JSON.stringify(
      {
        bench: 'allreduce',
        machine: { cpu, cores, os: `${platform()} ${release()}`, node: process.versions.node },
        config: { bytes: BYTES, worldSize: WORLD, reps, warmup, slotBytes: groups[0].slotBytes, slots: groups[0].slots },
        correct: bad === 0,
        simd: check[0].simd[0],
        medians: {
          memcpyGBps: memcpy,
          allreduceAlgGBps: arAlg,
          allreduceBusGBps: arBus,
          allreduceJsAlgGBps: jsAlg,
          postMessageGBps: pm,
          busbwOverMemcpy: ratioMemcpy,
          algbwOverPostMessage: ratioPm,
        },
        targets: { busbwOverMemcpy: 0.5, algbwOverPostMessage: 10 },
        raw,
      },
      null,
      2,
    ) + '\n',
  );
}

if (isMainThread) {
  main().catch((e: unknown) => {
    console.error(e);
    process.exitCode = 1;
  });
} else {
  workerMain();
}
