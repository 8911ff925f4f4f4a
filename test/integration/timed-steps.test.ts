/**
 * How many steps a profile times: without --steps, inference steps are timed for at least
 * --min-time (0.5 s by default), so a model of sub-millisecond steps times many more than the
 * default twenty, and the trace's plan and notes say so; with --steps the count is exactly
 * that, unless --min-time is given too. The baseline times as many as the run, interleaved.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { runCli } from '../helpers/cli';
import { readTrace } from '../../src/profiler/trace-io';
import { ensureDemoModel } from '../../src/runtime/onnx/demo-model';
import { MAX_TIMED_STEPS } from '../../src/runtime/runner/runner';
import { tempDir } from '../helpers/temp';

const dir = tempDir('timed-steps');

async function run(name: string, args: string[]): Promise<Awaited<ReturnType<typeof readTrace>>> {
  const model = await ensureDemoModel(join(dir, 'models'), { layers: 2, hidden: 32, ffn: 64 });
  const out = join(dir, `${name}.parallax.json`);
  const r = await runCli(['profile', model, '--devices', 'cpu:2', '--batch', '8', '--warmup', '1', '--no-op-level', '--out', out, '--json', ...args]);
  assert.equal(r.code, 0, r.stderr);
  return readTrace(out);
}

test('without --steps, short steps are timed for at least --min-time; the plan records the count and a note says why', async () => {
  const t = await run('auto', ['--min-time', '0.3']);
  const n = t.steps.length;
  assert.ok(n > 20, `${n} steps timed`);
  assert.ok(n <= MAX_TIMED_STEPS);
  assert.equal(t.meta.plan.steps, n, 'the plan records the steps run');
  // The timed steps together last about the minimum (the warm-up's step estimate is a little
  // long, so somewhat less is fine; far less is not).
  const timedMs = t.steps.reduce((a, w) => a + (w.endUs - w.startUs), 0) / 1000;
  assert.ok(timedMs >= 0.3 * 300 * 0.25, `the timed steps took ${timedMs.toFixed(0)} ms`);
  assert.ok(t.meta.notes.some((x) => x.includes(`Timed ${n} steps where 20 were asked`)), t.meta.notes.join('\n'));
  assert.equal(t.meta.baseline?.stepTimesUs?.length, n, 'the baseline timed as many steps');
  // Warm-up ran on in windows until the step time stopped falling, for the run and the
  // baseline alike (two windows at least), and a note says how many steps each took.
  const settle = t.meta.notes.find((x) => x.startsWith('Warm-up then ran on in windows'));
  assert.ok(settle, t.meta.notes.join('\n'));
  assert.match(settle, /\d+ more steps? for the timed run, \d+ more steps? for the baseline/);
});

test('--steps alone times exactly that many; --min-time 0 without --steps times the default twenty', async () => {
  const exact = await run('exact', ['--steps', '7']);
  assert.equal(exact.steps.length, 7);
  assert.equal(exact.meta.plan.steps, 7);
  assert.ok(!exact.meta.notes.some((x) => /where \d+ were asked/.test(x)), exact.meta.notes.join('\n'));
  const off = await run('off', ['--min-time', '0', '--no-baseline']);
  assert.equal(off.steps.length, 20);
});

test('a --min-time that is not a number of seconds is refused with one line and exit 2', async () => {
  for (const bad of ['-1', 'soon', '1e9']) {
    const r = await runCli(['profile', 'demo', '--min-time', bad]);
    assert.equal(r.code, 2, `${bad}: ${r.stderr}`);
    assert.match(r.stderr, /--min-time must be a number of seconds from 0 to 3600/);
    assert.equal(r.stderr.trim().split('\n').length, 1, r.stderr);
  }
});
