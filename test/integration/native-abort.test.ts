/**
 * The runner's native abort ("terminate called after throwing an instance of 'Napi::Error'",
 * SIGABRT): a device worker that is ended while ONNX Runtime is inside a call takes the whole
 * process down from native code. A model that ONNX Runtime refuses makes one device fail
 * while the other is still loading it; before the failed group let its busy workers answer
 * first, 2 of 8 such runs ended in SIGABRT here (beside CPU burners, as below). The runs below must each end with the one
 * `parallax:` line and exit 2, never a signal or a native message.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { cpus, tmpdir } from 'node:os';
import { runCli } from '../helpers/cli';
import { unknownOpModel } from '../helpers/hostile';

const dir = mkdtempSync(join(tmpdir(), 'parallax-abort-'));
const model = join(dir, 'unknown-op.onnx');
writeFileSync(model, unknownOpModel());
// A burner per core shuffles the workers' timing, as the load the abort was first seen under did.
let burners: ChildProcess[] = [];
before(() => {
  burners = Array.from({ length: cpus().length }, () => spawn(process.execPath, ['-e', 'for(;;);'], { stdio: 'ignore' }));
});
after(() => {
  for (const b of burners) if (b.exitCode === null) b.kill('SIGKILL');
  rmSync(dir, { recursive: true, force: true });
});

const NATIVE = /terminate called|Napi::Error|SIGABRT|SIGSEGV|double free|exited unexpectedly/;
const RUNS = 6;

for (const mode of ['data', 'pipeline'] as const) {
  test(`a model ONNX Runtime refuses, ${RUNS} ${mode} runs on cpu:2: one line and exit 2 each time, never a native abort`, async () => {
    for (let i = 0; i < RUNS; i++) {
      const r = await runCli(['profile', model, '--mode', mode, '--devices', 'cpu:2', '--batch', '4', '--steps', '2', '--out', join(dir, `run-${mode}-${i}.parallax.json`)], {});
      assert.doesNotMatch(`${r.stdout}\n${r.stderr}`, NATIVE, `run ${i + 1}: ${r.stderr}`);
      assert.equal(r.code, 2, `run ${i + 1}: exit ${r.code}: ${r.stderr}`);
      assert.equal(r.stderr.trim().split('\n').length, 1, `run ${i + 1}: one line: ${r.stderr}`);
      assert.match(r.stderr, /^parallax: .*ONNX Runtime failed loading the model/);
    }
  });
}
