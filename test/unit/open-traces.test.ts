/**
 * What "Open Trace" reads (src/extension/open-traces.ts): a folder stands for the PyTorch
 * profiler traces in it, in rank order; the imported trace is named after the folder or the
 * files.
 *
 *   node --import tsx --test test/unit/open-traces.test.ts
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { UserError } from '../../src/common/errors';
import { expandTracePaths, importedTraceName, isRankFileName } from '../../src/extension/open-traces';
import { tempDir } from '../helpers/temp';

describe('open traces', () => {
  const dir = tempDir('open-traces');

  test('a folder stands for its rank files in rank order; traces Parallax wrote and other files are left out', async () => {
    const job = join(dir, 'job');
    mkdirSync(join(job, 'nested'), { recursive: true });
    for (const n of ['rank10.json.gz', 'rank2.json', 'rank1.pt.trace.json.gz', 'job.parallax.json', 'notes.txt', 'nested/rank3.json']) writeFileSync(join(job, n), '{}');
    const r = await expandTracePaths([job]);
    assert.deepEqual(r.files, ['rank1.pt.trace.json.gz', 'rank2.json', 'rank10.json.gz'].map((n) => join(job, n)));
    assert.equal(r.folder, job);
    const single = join(job, 'rank2.json');
    assert.deepEqual(await expandTracePaths([single]), { files: [single], folder: null });
  });

  test('a folder without rank files is one line naming it', async () => {
    const empty = join(dir, 'empty');
    mkdirSync(empty);
    writeFileSync(join(empty, 'x.parallax.json'), '{}');
    await assert.rejects(expandTracePaths([empty]), (e: unknown) => e instanceof UserError && e.message.startsWith(`${empty}: no PyTorch profiler traces`) && !e.message.includes('\n'));
  });

  test('the imported trace is named after the folder, the file, or the first of several files', () => {
    assert.equal(importedTraceName(['/a/job/r0.json'], '/a/job'), 'job.parallax.json');
    assert.equal(importedTraceName(['/a/r0.pt.trace.json.gz'], null), 'r0.pt.trace.parallax.json');
    assert.equal(importedTraceName(['/a/r0.json.gz', '/a/r1.json.gz', '/a/r2.json.gz'], null), 'r0-3-ranks.parallax.json');
    assert.ok(isRankFileName('x.JSON.GZ'));
    assert.ok(!isRankFileName('x.parallax.json'));
  });
});
