/**
 * The fuzz harness itself: an untyped exception, a hang and a heap blow-up are each caught,
 * reported with their saved input, and the run carries on with the next input.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { runFuzz } from '../fuzz/harness';

test('the harness reports a bug, a hang and an out-of-memory crash, saves their inputs and carries on', async () => {
  const saveDir = mkdtempSync(join(tmpdir(), 'parallax-fuzz-self-'));
  try {
    const r = await runFuzz({ target: 'selftest', count: 8, seed: 1, watchdogMs: 2000, memoryMb: 64, saveDir });
    assert.equal(r.inputs, 8);
    assert.equal(r.results, 3, 'inputs 0, 4 and 6');
    assert.equal(r.refusals, 2, 'inputs 1 and 7');
    assert.deepEqual(
      r.findings.map((f) => [f.index, f.kind]),
      [
        [2, 'bug'],
        [3, 'hang'],
        [5, 'crash'],
      ],
    );
    assert.match(r.findings[0]!.message, /untyped TypeError/);
    for (const f of r.findings) {
      assert.ok(existsSync(f.file), f.file);
      assert.deepEqual([...readFileSync(f.file)], [f.index % 8], 'the saved input is the one that failed');
    }
  } finally {
    rmSync(saveDir, { recursive: true, force: true });
  }
});
