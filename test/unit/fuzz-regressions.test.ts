/**
 * Replays the inputs fuzzing once caught Parallax on (test/fixtures/fuzz-regressions/): each
 * must now end in a result or a one-line UserError.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { runOnnx, runTrace } from '../fuzz/targets';
import { findingOf } from '../fuzz/worker';

const DIR = join(__dirname, '..', 'fixtures', 'fuzz-regressions');
const files = readdirSync(DIR).filter((f) => /\.(onnx|json)$/.test(f));

test('the regression folder holds inputs to replay', () => {
  assert.ok(files.length > 0, `no inputs in ${DIR}`);
});

for (const f of files) {
  test(`fuzz regression ${f} ends in a result or one typed line`, async () => {
    const bytes = readFileSync(join(DIR, f));
    let finding: string | null = null;
    try {
      await (f.endsWith('.onnx') ? runOnnx(bytes) : runTrace(bytes));
    } catch (e) {
      finding = findingOf(e);
    }
    assert.equal(finding, null);
  });
}
