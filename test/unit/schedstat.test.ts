/**
 * The schedstat samplers: parsing (everywhere) and real /proc reads (Linux only): a busy loop
 * in a worker thread gets about its wall time on a CPU, and with a spinning process per core
 * beside it the same loop waits for a core and other processes' load shows up.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { cpus } from 'node:os';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { Worker } from 'node:worker_threads';
import {
  loadSampler,
  otherLoad,
  parseProcStat,
  parseSchedstat,
  parseSelfCpuTicks,
  schedDelta,
  sessionThreadWatch,
  threadMinorFaults,
  threadSampler,
} from '../../src/runtime/device/schedstat';
import type { SpinRequest, SpinResult } from '../helpers/schedstat-worker';

const linux = process.platform === 'linux';
/** µs per /proc/stat tick (USER_HZ is 100 on Linux). */
const USER_HZ_US = 10_000;
const workerFile = join(__dirname, '..', 'helpers', 'schedstat-worker.ts');

test('parsers read schedstat, /proc/stat and /proc/<pid>/stat', () => {
  assert.deepEqual(parseSchedstat('4043939 38752592 2\n'), { cpuNs: 4043939, waitNs: 38752592, slices: 2 });
  assert.equal(parseSchedstat('garbage'), null);
  const stat = 'cpu  100 5 50 800 10 1 2 3 0 0\ncpu0 50 2 25 400 5 1 1 1 0 0\ncpu1 50 3 25 400 5 0 1 2 0 0\nintr 1\n';
  assert.deepEqual(parseProcStat(stat), { busy: 161, nice: 5, steal: 3, total: 971, cores: 2 });
  // The command name may contain spaces and parentheses.
  const self = '123 (node (x) y) R 1 2 3 4 5 6 7 8 9 10 70 30 0 0 20';
  assert.equal(parseSelfCpuTicks(self), 100);
  assert.deepEqual(schedDelta({ cpuNs: 1000, waitNs: 0, slices: 1 }, { cpuNs: 5000, waitNs: 2000, slices: 3 }), { cpuUs: 4, waitUs: 2 });
  assert.deepEqual(schedDelta(null, { cpuNs: 1, waitNs: 1, slices: 1 }), { cpuUs: -1, waitUs: -1 });
  assert.deepEqual(schedDelta({ cpuNs: 9, waitNs: 0, slices: 1 }, { cpuNs: 1, waitNs: 0, slices: 1 }), { cpuUs: -1, waitUs: -1 });
  // 2 cores, 100 jiffies each over the window: 150 busy of which this process 40 → 1.1 other cores.
  const l = otherLoad({ busy: 0, nice: 0, total: 0, self: 0, cores: 2, atMs: 0 }, { busy: 150, nice: 60, total: 200, self: 40, cores: 2, atMs: 1000, nicedYields: true });
  assert.ok(l);
  assert.ok(Math.abs(l.otherLoadCores - 1.1) < 1e-9 && Math.abs(l.selfLoadCores - 0.4) < 1e-9 && l.windowMs === 1000);
  // 60 of the other processes' jiffies were niced user time: 0.6 cores.
  assert.ok(Math.abs(l.nicedLoadCores - 0.6) < 1e-9, `niced ${l.nicedLoadCores}`);
  // Under session autogroups a niced process elsewhere competes in full: none is set aside.
  const g = otherLoad({ busy: 0, nice: 0, total: 0, self: 0, cores: 2, atMs: 0 }, { busy: 150, nice: 60, total: 200, self: 40, cores: 2, atMs: 1000, nicedYields: false });
  assert.equal(g?.nicedLoadCores, 0);
  // A run that is itself niced competes with niced processes on equal terms.
  const n = otherLoad({ busy: 0, nice: 0, total: 0, self: 0, cores: 2, atMs: 0 }, { busy: 150, nice: 60, total: 200, self: 40, cores: 2, atMs: 1000, nicedYields: true, selfNice: 10 });
  assert.equal(n?.nicedLoadCores, 0);
  // Steal (the hypervisor running others on this machine's ready CPUs) is part of the other
  // load, set apart: 30 of 200 jiffies on 2 cores is 0.3 cores; older samples without it, 0.
  const st = otherLoad({ busy: 0, nice: 0, steal: 10, total: 0, self: 0, cores: 2, atMs: 0 }, { busy: 150, nice: 0, steal: 40, total: 200, self: 40, cores: 2, atMs: 1000 });
  assert.ok(st && Math.abs(st.stealCores - 0.3) < 1e-9 && Math.abs(st.otherLoadCores - 1.1) < 1e-9, `steal ${st?.stealCores}`);
  assert.equal(l.stealCores, 0);
});

// One test for both cases, so that no platform reports it as skipped.
test('samplers exist on Linux (schedstat) and are null elsewhere', () => {
  if (linux) {
    assert.notEqual(threadSampler(), null);
    assert.notEqual(loadSampler(), null);
    return;
  }
  assert.equal(threadSampler(), null);
  assert.equal(loadSampler(), null);
  assert.equal(sessionThreadWatch().end(4).attribution, 'unavailable');
});

test("a thread's minor page faults count the fresh memory it touches (Linux), null elsewhere", () => {
  const before = threadMinorFaults();
  if (!linux) {
    assert.equal(before, null);
    return;
  }
  assert.ok(before !== null && before > 0);
  // 64 MiB taken straight from the kernel (above malloc's mmap threshold): every 4 KiB page
  // written faults in once (a 2 MiB transparent hugepage once per 2 MiB: the bound is loose).
  const buf = Buffer.allocUnsafeSlow(64 * 1024 * 1024);
  buf.fill(1);
  const after = threadMinorFaults()!;
  assert.ok(after - before >= 16, `${after - before} faults for 64 MiB written`);
  // Touching the same pages again faults nothing new.
  const again = threadMinorFaults()!;
  buf.fill(2);
  assert.ok(threadMinorFaults()! - again < (after - before) / 4);
});

function spinIn(w: Worker, ms: number, iterations?: number): Promise<SpinResult> {
  return new Promise((resolve, reject) => {
    const onError = (e: Error): void => reject(e);
    w.once('message', (r: SpinResult) => {
      w.off('error', onError);
      resolve(r);
    });
    w.once('error', onError);
    w.postMessage({ ms, ...(iterations !== undefined ? { iterations } : {}) } satisfies SpinRequest);
  });
}

function burners(n: number): ChildProcess[] {
  return Array.from({ length: n }, () => spawn(process.execPath, ['-e', 'for(;;);'], { stdio: 'ignore' }));
}

function stop(children: ChildProcess[]): void {
  for (const c of children) if (c.pid !== undefined && c.exitCode === null) c.kill('SIGKILL');
}

test('a busy loop in a worker thread: CPU ≈ wall when quiet; waits for a core beside a burner per core', { skip: !linux }, async () => {
  const w = new Worker(workerFile, { execArgv: ['--require', 'tsx/cjs'] });
  const cores = cpus().length;
  let burn: ChildProcess[] = [];
  try {
    await spinIn(w, 20); // warm up (JIT, worker start)
    // On a virtual machine the host may run other work on this machine's CPUs while the
    // spin is ready to run (steal): that time is neither the thread's CPU time nor its
    // run-queue wait, so the checks below allow for what /proc/stat says was stolen.
    const s0 = parseProcStat(readFileSync('/proc/stat', 'latin1'));
    const quiet = await spinIn(w, 300);
    const s1 = parseProcStat(readFileSync('/proc/stat', 'latin1'));
    const stolenUs = s0 && s1 ? Math.max(0, s1.steal - s0.steal) * USER_HZ_US : 0;
    assert.ok(quiet.available, 'schedstat readable in a worker thread');
    assert.ok(quiet.counterCpuUs > 0 && quiet.waitUs >= 0);
    // The counters themselves (each may lag by a tick, 4 ms, against a 300 ms spin). Loose:
    // the machine is shared, but a quiet spin should get most of its wall time.
    assert.ok(quiet.counterCpuUs <= quiet.wallUs * 1.05 + 5000, `cpu ${quiet.counterCpuUs} ≤ wall ${quiet.wallUs}`);
    assert.ok(quiet.counterCpuUs + quiet.waitUs + stolenUs >= quiet.wallUs * 0.8, `cpu + wait (+ steal ${stolenUs}) cover the wall time (${quiet.counterCpuUs} + ${quiet.waitUs} of ${quiet.wallUs})`);
    // The span's CPU time (wall − wait) agrees with the counters within their lag (and steal).
    assert.ok(Math.abs(quiet.cpuUs - quiet.counterCpuUs) <= 0.05 * quiet.wallUs + 5000 + stolenUs, `span cpu ${quiet.cpuUs} against counters ${quiet.counterCpuUs} (steal ${stolenUs} µs)`);

    burn = burners(cores);
    const load = loadSampler();
    assert.ok(load);
    await new Promise((r) => setTimeout(r, 150)); // let the burners start
    load.start();
    const busy = await spinIn(w, 400);
    const other = load.stop();
    assert.ok(busy.waitUs > busy.wallUs * 0.1, `waits for a core beside ${cores} burners: wait ${busy.waitUs} of wall ${busy.wallUs}`);
    assert.ok(busy.waitUs > quiet.waitUs, 'waits more than when quiet');
    assert.ok(busy.cpuUs < busy.wallUs * 0.95, `gets less than its wall time on a CPU: ${busy.cpuUs} of ${busy.wallUs}`);
    assert.ok(busy.counterCpuUs < busy.wallUs * 0.95, `its counters say so too: ${busy.counterCpuUs} of ${busy.wallUs}`);
    assert.ok(other, 'other processes’ load measured');
    assert.equal(other.cores, cores);
    assert.ok(other.otherLoadCores > cores * 0.4, `other load ${other.otherLoadCores.toFixed(2)} of ${cores} cores`);
    assert.ok(other.windowMs >= 300);
  } finally {
    stop(burn);
    await w.terminate();
  }
});

test('millisecond spans: the calling thread\'s CPU time (wall − run-queue wait) is exact, not a multiple of the scheduler tick', { skip: !linux }, async () => {
  const w = new Worker(workerFile, { execArgv: ['--require', 'tsx/cjs'] });
  try {
    await spinIn(w, 20);
    // Size a spin of fixed work to about 1.5 ms of CPU on this machine.
    let iterations = 20_000;
    for (let k = 0; k < 3; k++) await spinIn(w, 0, iterations); // compile the loop first
    // The least of five: time the host steals only adds to a spin, so a size judged on a
    // median could be one whose unstolen spins take a fraction of a millisecond.
    const cpuOf = async (n: number): Promise<number> => {
      const v = [];
      for (let k = 0; k < 5; k++) v.push((await spinIn(w, 0, n)).cpuUs);
      return Math.min(...v);
    };
    while (iterations < 1e9 && (await cpuOf(iterations)) < 1000) iterations *= 2;
    // The same work costs about the same CPU time whatever else runs, so exact counters
    // give a tight cluster; a counter that lags by a tick (4 ms at HZ=250) reads 0 or 4 ms.
    const cpu: number[] = [];
    for (let i = 0; i < 15; i++) cpu.push((await spinIn(w, 0, iterations)).cpuUs);
    cpu.sort((a, b) => a - b);
    const p10 = cpu[1];
    // The middle half, not the tails: on a virtual machine a spin's CPU time also holds
    // what the host took from it (a guest cannot see steal inside its own counters), so
    // a few spins of equal work read 2-4x on a busy host. A tick counter would read
    // 0 or whole ticks for every spin, which p10 and the middle half both catch.
    const q1 = cpu[3];
    const q3 = cpu[11];
    const list = cpu.map((v) => v.toFixed(0)).join(' ');
    assert.ok(p10 > 200, `every spin of ${iterations} iterations got CPU time: ${list} µs`);
    assert.ok(q3 / q1 < 1.6, `CPU times of equal work cluster: ${list} µs`);
  } finally {
    await w.terminate();
  }
});

test('a sampler of the calling thread plus added threads sums their counters', { skip: !linux }, () => {
  const s = threadSampler();
  assert.ok(s);
  assert.equal(s.threads, 1);
  const a = s.read();
  assert.ok(a && a.cpuNs > 0);
  s.addThreads([-1, 0]); // not threads: ignored
  assert.equal(s.threads, 1);
  // The main thread's own tid (= pid) is a thread of this process; counters then roughly double.
  s.addThreads([process.pid]);
  assert.equal(s.threads, 2);
  const b = s.read();
  assert.ok(b && b.cpuNs >= a.cpuNs);
  s.close();
  assert.equal(s.read(), null);
});

test('sessionThreadWatch keeps exactly the n − 1 threads that appeared, else nothing', { skip: !linux }, async () => {
  const none = sessionThreadWatch();
  assert.deepEqual(none.end(1), { tids: [], attribution: 'none', appeared: 0 });
  const watch = sessionThreadWatch();
  const extra = new Worker('setTimeout(() => {}, 2000)', { eval: true });
  await new Promise((r) => extra.once('online', r));
  try {
    // One thread appeared: exactly the pool of a 2-thread session…
    const r2 = watch.end(2);
    assert.equal(r2.attribution, 'exact');
    assert.equal(r2.tids.length, 1);
    // …but not that of a 3-thread one, which would have added 2.
    const r3 = watch.end(3);
    assert.equal(r3.attribution, 'ambiguous');
    assert.deepEqual(r3.tids, []);
  } finally {
    await extra.terminate();
  }
});
