/**
 * Fuzzing the ONNX side: mutated real and built models through the loader, cost estimation,
 * the pipeline partitioner and stage-model extraction. Every input must end in a result or
 * a one-line UserError within the watchdog and under the memory cap. Seeded and
 * reproducible: PARALLAX_FUZZ_SEED and PARALLAX_FUZZ_COUNT change the run (`npm run fuzz`
 * runs 100,000 inputs); an input behind a finding is saved and named in the failure.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fuzzSettings, runFuzz } from '../fuzz/harness';
import { FUZZ_MEMORY_MB, FUZZ_WATCHDOG_MS, describeReport } from '../fuzz/report';

test('mutated ONNX models end in a result or one typed line: no crash, hang or untyped error', async (t) => {
  const { seed, count } = fuzzSettings(2000);
  const saveDir = mkdtempSync(join(tmpdir(), 'parallax-fuzz-onnx-'));
  const r = await runFuzz({ target: 'onnx', count, seed, watchdogMs: FUZZ_WATCHDOG_MS, memoryMb: FUZZ_MEMORY_MB, saveDir });
  const text = describeReport('onnx', seed, r);
  t.diagnostic(text);
  assert.deepEqual(r.findings, [], text);
  assert.equal(r.inputs, count, text);
  assert.equal(r.results + r.refusals, count, text);
  // The mutations must reach both sides: models that still partition and models refused.
  assert.ok(r.results > 0 && r.refusals > 0, text);
});
