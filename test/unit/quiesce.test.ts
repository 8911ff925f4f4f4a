import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Worker } from 'node:worker_threads';
import { QUIET_MAX_MS, QUIET_WINDOW_MS, QuietLog, quiesce } from '../../src/runtime/runner/quiesce';

/** A fake process: `busy[i]` ms of CPU in window i (0 after the list), a clock that moves by the window. */
function fake(busy: number[]) {
  let t = 0;
  let cpuUs = 0;
  let i = 0;
  return {
    cpu: () => cpuUs,
    sleep: async (ms: number) => {
      t += ms;
      cpuUs += (busy[i++] ?? 0) * 1000;
    },
    now: () => t,
  };
}

test('quiesce: a quiet process costs one window', async () => {
  const f = fake([]);
  assert.deepEqual(await quiesce(f.cpu, f.sleep, f.now), { waitedMs: QUIET_WINDOW_MS, capped: false });
});

test('quiesce: waits through the windows in which a thread spins, and stops at the first quiet one', async () => {
  // A spinning intra-op thread: a core's worth of every window for five windows, then a trickle.
  const f = fake([10, 10, 10, 8, 10, 1]);
  assert.deepEqual(await quiesce(f.cpu, f.sleep, f.now), { waitedMs: 6 * QUIET_WINDOW_MS, capped: false });
});

test('quiesce: a thread that never rests is waited for at most QUIET_MAX_MS', async () => {
  const f = fake(Array.from({ length: 1000 }, () => 10));
  const w = await quiesce(f.cpu, f.sleep, f.now);
  assert.equal(w.capped, true);
  assert.ok(w.waitedMs >= QUIET_MAX_MS && w.waitedMs < QUIET_MAX_MS + QUIET_WINDOW_MS, `waited ${w.waitedMs} ms`);
});

test('quiesce: with a real thread of this process spinning, it returns only after the thread stopped', async () => {
  // The thread spins SPIN_MS from its start, then writes the time it stopped (ms since the
  // time origin both threads share) and sleeps until terminated.
  const SPIN_MS = 120;
  const shared = new Float64Array(new SharedArrayBuffer(16));
  const worker = new Worker(
    `const { workerData } = require('node:worker_threads');
     const out = new Float64Array(workerData);
     const t0 = performance.timeOrigin + performance.now();
     out[0] = t0;
     while (performance.timeOrigin + performance.now() - t0 < ${SPIN_MS});
     out[1] = performance.timeOrigin + performance.now();
     Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 60000);`,
    { eval: true, workerData: shared.buffer },
  );
  try {
    while (shared[0] === 0) await new Promise((r) => setTimeout(r, 1));
    const w = await quiesce();
    const returned = performance.timeOrigin + performance.now();
    assert.ok(shared[1]! > 0, 'quiesce returned while the thread was still spinning');
    assert.ok(returned >= shared[1]!, 'quiesce returned before the thread stopped');
    assert.equal(w.capped, false);
  } finally {
    await worker.terminate();
  }
});

test('quiet log: a note only when a wait went past its first window, with the count, total and longest', () => {
  const none = new QuietLog();
  none.add({ waitedMs: QUIET_WINDOW_MS, capped: false });
  assert.equal(none.note(), null);
  const log = new QuietLog();
  log.add({ waitedMs: QUIET_WINDOW_MS, capped: false });
  log.add({ waitedMs: 60, capped: false });
  log.add({ waitedMs: QUIET_MAX_MS, capped: true });
  const note = log.note() ?? '';
  assert.match(note, /2 of 3 waits went past the first 10 ms window, 370 ms in all, the longest 300 ms/);
  assert.match(note, /1 stopped at 300 ms with the process still busy/);
});
