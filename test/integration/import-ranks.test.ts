/**
 * Multi-rank import through real worker threads (the built dist/import-worker.js) against the
 * same files read one after another in this thread, and `parallax import` of a file cut
 * short: exit 0, one warning line, the note in the report.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { gunzipSync, gzipSync } from 'node:zlib';
import { UserError } from '../../src/common/errors';
import { importTrace } from '../../src/profiler/import/detect';
import { handleImportRequest, poolSize, streamFiles } from '../../src/profiler/import/rank-pool';
import { serializeTrace } from '../../src/profiler/trace-io';
import { REPO, runCli } from '../helpers/cli';
import { kinetoFixture } from '../helpers/kineto';

const dir = mkdtempSync(join(tmpdir(), 'parallax-import-ranks-'));
after(() => rmSync(dir, { recursive: true, force: true }));
const at = (name: string): string => join(dir, name);

/** Eight ranks of one job, made from the real 128-rank job's rank 0 with its rank and world rewritten. */
const ranks: string[] = [];
before(() => {
  const text = gunzipSync(readFileSync(kinetoFixture('job128-rank0.json.gz'))).toString('utf8');
  for (let r = 0; r < 8; r++) {
    const doc = JSON.parse(text) as Record<string, unknown>;
    doc['distributedInfo'] = { backend: 'nccl', rank: r, world_size: 8 };
    const p = at(`rank-${r}.json${r % 2 ? '.gz' : ''}`);
    const json = JSON.stringify(doc);
    writeFileSync(p, r % 2 ? gzipSync(json) : json);
    ranks.push(p);
  }
});

describe('ranks imported in parallel worker threads', () => {
  test('the built worker exists (npm run build), so the pool really runs threads', () => {
    assert.ok(existsSync(join(REPO, 'dist', 'import-worker.js')), 'dist/import-worker.js missing: run npm run build');
    assert.equal(poolSize(8, 4), 4);
    assert.equal(poolSize(2, 16), 2);
  });

  test('eight ranks in four workers give the trace of the same files read one after another', async () => {
    const sequential = await importTrace(ranks, { workers: 1 });
    const parallel = await importTrace(ranks, { workers: 4 });
    assert.equal(parallel.lanes.length, 8);
    assert.equal(serializeTrace(parallel), serializeTrace(sequential));
  });

  test('one file read off this thread (as the extension does) gives the same trace', async () => {
    const here = await importTrace([ranks[1]!], { workers: 1 });
    const offThread = await importTrace([ranks[1]!], { offThread: true });
    assert.equal(serializeTrace(offThread), serializeTrace(here));
  });

  test('columns come back from the workers as typed arrays of their own', async () => {
    const [a, b] = await streamFiles(ranks.slice(0, 2), { workers: 2 });
    for (const f of [a, b]) {
      assert.equal(f?.kind, 'kineto');
      if (f?.kind !== 'kineto') return;
      assert.ok(f.rank.spans.start instanceof Float64Array && f.rank.spans.start.length === f.rank.spans.count);
      assert.ok(f.rank.spans.name instanceof Int32Array && f.rank.spans.count > 100);
    }
  });

  test('the first failing file in the order given is the error, whichever worker ends first', async () => {
    const bad = at('bad.json');
    writeFileSync(bad, '{"traceEvents": [{"ph": "X", "cat": "cpu_op", "name": "a", "ts": 0, "dur": 1}]}');
    const missing = at('missing.json');
    await assert.rejects(importTrace([ranks[0], bad, ranks[1], missing], { workers: 4 }), (e: Error) => {
      assert.ok(e instanceof UserError, String(e));
      assert.ok(e.message.startsWith(`${bad}: no GPU activity`), e.message);
      return true;
    });
  });

  test('the worker handler answers a missing file with a user error and no buffers', async () => {
    const { reply, transfer } = await handleImportRequest({ type: 'import', id: 3, path: at('nope.json') });
    assert.deepEqual(transfer, []);
    assert.equal(reply.type, 'failed');
    if (reply.type === 'failed') {
      assert.equal(reply.id, 3);
      assert.equal(reply.user, true);
      assert.match(reply.message, /no such file/);
    }
  });
});

describe('parallax import of a file cut short', () => {
  test('exits 0 with one warning line, and the report carries the note', async () => {
    const whole = gzipSync(readFileSync(ranks[0]));
    const cut = at('cut.json.gz');
    writeFileSync(cut, whole.subarray(0, Math.floor(whole.length * 0.8)));
    const r = await runCli(['import', cut, '--out', at('cut.parallax.json')]);
    assert.equal(r.code, 0, r.stderr);
    const lines = r.stderr.trim().split('\n');
    assert.equal(lines.length, 1, r.stderr);
    assert.match(lines[0], new RegExp(`^parallax: warning: ${cut.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}: the file ends after \\d+ bytes \\(inflated\\) inside traceEvents; \\d+ events were imported, the rest are missing\\.$`));
    assert.match(r.stdout, /the file ends after \d+ bytes/);
    const written = JSON.parse(readFileSync(at('cut.parallax.json'), 'utf8')) as { meta: { notes: string[] } };
    assert.ok(written.meta.notes.some((n) => n.includes('events were imported, the rest are missing')));
  });
});
