/**
 * Cancelling a profile stops the runner process and its device workers promptly: the API
 * asks the runner to stop and kills it 0.8 s later if it is stuck in native code.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { join } from 'node:path';
import { profile, ProfileCancelled } from '../../src/runtime/api';
import { ensureDemoModel } from '../../src/runtime/onnx/demo-model';
import { tempDir } from '../helpers/temp';

/** Runner processes started by this test process (`ps` itself is a child too: skip it). */
function children(): number[] {
  try {
    return execFileSync('ps', ['-o', 'pid=,stat=,args=', '--ppid', String(process.pid)], { encoding: 'utf8' })
      .split('\n')
      .filter((line) => line.includes('runner.js') && !/^\s*\d+\s+Z/.test(line))
      .map((line) => Number(line.trim().split(/\s+/)[0]));
  } catch {
    return []; // ps exits 1 when there are none
  }
}

test('cancelling a running profile ends the runner within about a second and rejects with ProfileCancelled', async () => {
  const dir = tempDir('cancel');
  const model = await ensureDemoModel(join(dir, 'cache'), { layers: 8, hidden: 256, ffn: 1024 });
  const abort = new AbortController();
  let measuring = 0;
  const run = profile(
    {
      modelPath: model,
      modelLabel: 'demo',
      plan: { mode: 'data', devices: 'cpu:2', batch: 16, steps: 1_000_000, warmup: 1, seed: 0 },
      capture: true,
      opLevel: true,
      baseline: false,
      outPath: join(dir, 'never.parallax.json'),
    },
    {
      signal: abort.signal,
      onProgress: (p) => {
        if (p.phase === 'steps') measuring = p.done;
      },
    },
  );
  const started = Date.now();
  while (measuring < 3 && Date.now() - started < 60_000) await new Promise((r) => setTimeout(r, 50));
  assert.ok(measuring >= 3, 'the workers were measuring');
  assert.ok(children().length > 0, 'a runner process is running');
  const t0 = Date.now();
  abort.abort();
  await assert.rejects(run, (e: Error) => e instanceof ProfileCancelled);
  while (children().length > 0 && Date.now() - t0 < 5000) await new Promise((r) => setTimeout(r, 20));
  const gone = Date.now() - t0;
  assert.deepEqual(children(), [], 'no runner left');
  // The API's hard deadline is 0.8 s plus process teardown; allow scheduling slack.
  assert.ok(gone < 1500, `runner gone ${gone} ms after cancel`);
});
