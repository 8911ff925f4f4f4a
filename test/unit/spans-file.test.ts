import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readFileSync, readdirSync, rmSync, writeFileSync, truncateSync, symlinkSync } from 'node:fs';
import { join } from 'node:path';
import { syntheticPipelineTrace } from '../../src/profiler/analysis/synthetic';
import { SPAN_COLUMNS, type Trace } from '../../src/profiler/trace-format';
import { readTrace, writeTrace } from '../../src/profiler/trace-io';
import { spansFilePath } from '../../src/profiler/spans-file';
import { UserError } from '../../src/common/errors';
import { tempDir } from '../helpers/temp';

function sample(): Trace {
  return syntheticPipelineTrace({ stageUs: [120, 90, 150], microBatches: 4, steps: 3, commUs: 7, opsPerCompute: 3, jitter: 0.2 });
}

function assertSameSpans(a: Trace, b: Trace): void {
  assert.equal(b.spans.count, a.spans.count);
  for (const c of SPAN_COLUMNS) {
    assert.equal(b.spans[c].constructor, a.spans[c].constructor, `${c} keeps its type`);
    assert.deepEqual(Array.from(b.spans[c]), Array.from(a.spans[c]), `column ${c}`);
  }
  assert.deepEqual(b.strings, a.strings);
  assert.deepEqual(b.lanes, a.lanes);
  assert.deepEqual(b.steps, a.steps);
}

async function rejects(p: Promise<unknown>, pattern: RegExp): Promise<void> {
  await assert.rejects(p, (e: unknown) => {
    assert.ok(e instanceof UserError, `a UserError, not ${String(e)}`);
    assert.match(e.message, pattern);
    assert.ok(!e.message.includes('\n'), 'one line');
    return true;
  });
}

describe('span side files', () => {
  const dir = tempDir('spans-file');

  it('a trace written with a side file reads back column for column, and the document holds no columns', async () => {
    const t = sample();
    const path = join(dir, 'side.parallax.json');
    await writeTrace(path, t, { spans: 'side-file' });
    assert.ok(existsSync(spansFilePath(path)), 'x.parallax.spans beside x.parallax.json');
    assert.equal(spansFilePath(path), join(dir, 'side.parallax.spans'));
    const doc = JSON.parse(readFileSync(path, 'utf8')) as { version: number; spans: Record<string, unknown> };
    assert.equal(doc.version, 3);
    assert.deepEqual(Object.keys(doc.spans).sort(), ['bytes', 'count', 'file', 'id']);
    assert.equal(doc.spans['file'], 'side.parallax.spans');
    assertSameSpans(t, await readTrace(path));
    // No temporary file is left behind by either write.
    assert.deepEqual(readdirSync(dir).filter((n) => n.startsWith('.')), []);
  });

  it('small traces stay one JSON file by default; the two forms read the same', async () => {
    const t = sample();
    const inline = join(dir, 'inline.parallax.json');
    await writeTrace(inline, t);
    assert.equal(existsSync(spansFilePath(inline)), false);
    const doc = JSON.parse(readFileSync(inline, 'utf8')) as { spans: Record<string, unknown> };
    assert.ok(Array.isArray(doc.spans['start']));
    assertSameSpans(await readTrace(inline), t);
  });

  it('a missing, truncated, swapped or foreign side file is one clear line', async () => {
    const t = sample();
    const a = join(dir, 'a.parallax.json');
    await writeTrace(a, t, { spans: 'side-file' });
    const sideA = readFileSync(spansFilePath(a));

    // Another write of the same trace: same size, different id.
    const b = join(dir, 'b.parallax.json');
    await writeTrace(b, t, { spans: 'side-file' });
    writeFileSync(spansFilePath(b), sideA);
    await rejects(readTrace(b), /belongs to another write/);

    // Cut inside the columns (a cut inside the tile index after them only loses the index).
    writeFileSync(spansFilePath(b), sideA.subarray(0, Math.floor(sideA.length / 2)));
    await rejects(readTrace(b), /bytes where the trace expects/);

    const c = join(dir, 'c.parallax.json');
    await writeTrace(c, t, { spans: 'side-file' });
    const sideC = readFileSync(spansFilePath(c));
    writeFileSync(spansFilePath(c), Buffer.concat([Buffer.from('NOTSPANS'), sideC.subarray(8)]));
    await rejects(readTrace(c), /not a Parallax span file/);

    const d = join(dir, 'd.parallax.json');
    await writeTrace(d, t, { spans: 'side-file' });
    truncateSync(spansFilePath(d), 0);
    await rejects(readTrace(d), /bytes where the trace expects/);

    const e = join(dir, 'e.parallax.json');
    await writeTrace(e, t, { spans: 'side-file' });
    rmSync(spansFilePath(e));
    await rejects(readTrace(e), /is missing \(copy it along with the trace\)/);
  });

  it('a corrupt column table or an out-of-range value in a column is refused', async () => {
    const t = sample();
    const p = join(dir, 'corrupt.parallax.json');
    await writeTrace(p, t, { spans: 'side-file' });
    const side = readFileSync(spansFilePath(p));
    const headerLen = side.readUInt32LE(12);
    const header = side.toString('utf8', 16, 16 + headerLen);
    // Say the `lane` column holds doubles (same header length): its size no longer fits.
    const laneOffset = /"name":"lane","type":"i32","offset":(\d+)/.exec(header)!;
    const bad = Buffer.from(side);
    bad.write(header.replace('"name":"lane","type":"i32"', '"name":"lane","type":"f64"'), 16, 'utf8');
    writeFileSync(spansFilePath(p), bad);
    await rejects(readTrace(p), /corrupt column table/);

    // A lane index beyond the trace's lanes, written straight into the lane column.
    const good = Buffer.from(side);
    good.writeInt32LE(99, Number(laneOffset[1]));
    writeFileSync(spansFilePath(p), good);
    await rejects(readTrace(p), /spans\.lane\[0\] is out of range/);
  });

  it('the side file must be a plain name next to the trace: paths elsewhere are refused without reading them', async () => {
    const t = sample();
    const p = join(dir, 'hostile.parallax.json');
    await writeTrace(p, t, { spans: 'side-file' });
    const doc = JSON.parse(readFileSync(p, 'utf8')) as { spans: Record<string, unknown> };
    for (const file of ['../hostile.parallax.spans', '/etc/passwd', 'sub/x.spans', 'x.bin', '..', 'a\u0000.spans']) {
      writeFileSync(p, JSON.stringify({ ...doc, spans: { ...doc.spans, file } }));
      await rejects(readTrace(p), /not a plain file name ending in \.spans/);
    }
    // A link named like a side file is followed only if it is a regular file; a folder is refused.
    symlinkSync(dir, join(dir, 'folder.spans'));
    writeFileSync(p, JSON.stringify({ ...doc, spans: { ...doc.spans, file: 'folder.spans' } }));
    await rejects(readTrace(p), /not a regular file|cannot be read/);
  });
});
