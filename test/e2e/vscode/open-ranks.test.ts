/**
 * "Open Trace" on a folder of PyTorch profiler traces, the ranks of one job, in a real VS Code
 * (code-server + headless Chromium, see harness.ts): every rank is imported (in the rank
 * pool's worker threads) into one trace, written to the output folder and shown with a lane
 * per rank.
 *
 *   node --import tsx --test test/e2e/vscode/open-ranks.test.ts
 */
import assert from 'node:assert/strict';
import { copyFileSync, mkdirSync, mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe } from 'node:test';
import { importReport } from '../../../src/profiler/import/report';
import { readTrace } from '../../../src/profiler/trace-io';
import { kinetoFixture } from '../../helpers/kineto';
import { closeWorkbench, ensureVsix, timelineFrame, viewStats, VsCodeHarness, workbenchIt, workbenchMissing } from './harness';

const RANKS = ['job128-rank0.json.gz', 'job128-rank1.json.gz'];

describe('"Open Trace" on a folder of rank traces, in VS Code (code-server)', { timeout: 5 * 60_000 }, () => {
  let vs: VsCodeHarness | undefined;
  let ws = '';
  const it = workbenchIt(() => vs);

  before(
    async () => {
      if (workbenchMissing()) return;
      ws = mkdtempSync(join(tmpdir(), 'parallax-e2e-ranks-'));
      mkdirSync(join(ws, 'job'));
      mkdirSync(join(ws, 'runs'));
      for (const r of RANKS) copyFileSync(kinetoFixture(r), join(ws, 'job', r));
      vs = await VsCodeHarness.start({ workspace: ws, vsix: ensureVsix(), name: 'ranks' });
    },
    { timeout: 15 * 60_000 },
  );

  after(() => closeWorkbench(vs, ws));

  it('imports every rank of the folder into one timeline with a lane per rank', async () => {
    const h = vs!;
    const expected = (await importReport(RANKS.map((r) => join(ws, 'job', r)))).trace;
    assert.ok(new Set(expected.lanes.map((l) => l.label)).size >= 2, 'the two ranks make lanes of their own');
    await h.explorerContextMenu('job', 'Open Trace');
    const deadline = Date.now() + 90_000;
    let stats = await viewStats(await timelineFrame(h, 90_000));
    while (stats.runs[0]?.spans !== expected.spans.count && Date.now() < deadline) {
      await h.page.waitForTimeout(250);
      stats = await viewStats(await timelineFrame(h));
    }
    await h.screenshot('ranks-folder');
    assert.equal(stats.error, null);
    assert.deepEqual(stats.runs.map((r) => ({ spans: r.spans, lanes: r.lanes })), [{ spans: expected.spans.count, lanes: expected.lanes.length }]);
    assert.deepEqual(stats.lanes.map((l) => l.label), expected.lanes.map((l) => l.label));
    // Written to the output folder, named after the folder.
    const written = await readTrace(join(ws, 'runs', 'job.parallax.json'));
    assert.equal(written.spans.count, expected.spans.count);
    assert.equal(written.meta.source, 'imported:kineto');
  });
});
