/**
 * The tile index stored in a span side file (src/profiler/tile-index-section.ts): a trace
 * written with it opens with a tile server read from it, which answers every tile exactly as
 * a freshly built one does (and as a brute-force pass over the spans); a side file without
 * one, or with one cut short, corrupt or built by other rules, still opens, the index left
 * aside with a note.
 *
 *   node --import tsx --test test/unit/tile-index.test.ts
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, statSync, truncateSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { SpanTiles, TileIndexError, TILE_INDEX_LAYOUT, type TileRequest } from '../../src/profiler/span-tiles';
import { SPAN_COLUMNS, type Trace } from '../../src/profiler/trace-format';
import { readTrace, readTraceWithTileIndex, writeTrace } from '../../src/profiler/trace-io';
import { spansFilePath } from '../../src/profiler/spans-file';
import { tempDir } from '../helpers/temp';
import { bigTrace, checkBuckets, checkSpans } from '../helpers/tile-checks';

const all = (): boolean => true;

/** Windows from the whole trace (coarse levels) down to a few steps (spans one by one), over all lanes and over some. */
function requests(t: Trace, tiles: SpanTiles): TileRequest[] {
  const [x0, x1] = tiles.extent;
  const lanes = t.lanes.length;
  const out: TileRequest[] = [];
  for (const [frac, pixels] of [
    [1, 30],
    [1, 400],
    [1 / 8, 300],
    [1 / 64, 40],
    [1 / 40, 1600],
  ] as const) {
    const a = frac === 1 ? x0 : x0 + (x1 - x0) * 0.37;
    out.push({ laneStart: 0, laneEnd: lanes, startUs: a, endUs: a + (x1 - x0) * frac, pixels });
    out.push({ laneStart: 1, laneEnd: 3, startUs: a, endUs: a + (x1 - x0) * frac, pixels });
  }
  return out;
}

function spansBytesAt(path: string): Buffer {
  return readFileSync(spansFilePath(path));
}

describe('stored tile index', () => {
  const dir = tempDir('tile-index');
  const t = bigTrace();
  const fresh = new SpanTiles(t);
  const path = join(dir, 'big.parallax.json');
  const written = writeTrace(path, t, { spans: 'side-file' });

  it('a side file stores the index; read back, it answers every tile as a fresh build does, exactly as brute force', async () => {
    await written;
    const read = await readTraceWithTileIndex(path, all);
    assert.equal(read.note, null);
    assert.ok(read.tileIndex, 'the index is read');
    assert.equal(read.tileIndex.count, t.spans.count);
    const stored = SpanTiles.fromIndex(read.trace, read.tileIndex);
    assert.deepEqual(stored.extent, fresh.extent);
    for (const req of requests(t, fresh)) {
      const a = stored.tile(req);
      assert.deepEqual(a, fresh.tile(req), `tile ${JSON.stringify(req)}`);
      checkBuckets(read.trace, a);
      checkSpans(read.trace, a, [req.laneStart, req.laneEnd]);
    }
    assert.deepEqual(stored.summary(), fresh.summary());
  });

  it('the index is read only when asked for, and readTrace reads such a file as before', async () => {
    await written;
    const skipped = await readTraceWithTileIndex(path, (n) => n > t.spans.count);
    assert.equal(skipped.tileIndex, null);
    assert.equal(skipped.note, null);
    const plain = await readTrace(path);
    for (const c of SPAN_COLUMNS) assert.deepEqual(plain.spans[c], t.spans[c], `column ${c}`);
  });

  it('a side file written without the index reads with none and no note', async () => {
    const p = join(dir, 'noindex.parallax.json');
    await writeTrace(p, t, { spans: 'side-file', tileIndex: false });
    assert.ok(statSync(spansFilePath(p)).size < statSync(spansFilePath(path)).size, 'the file without the index is smaller');
    const read = await readTraceWithTileIndex(p, all);
    assert.equal(read.tileIndex, null);
    assert.equal(read.note, null);
    assert.equal(read.trace.spans.count, t.spans.count);
  });

  /** A copy of the written pair, changed by `edit` (which gets the side file's bytes). */
  async function damaged(name: string, edit: (bytes: Buffer, file: string) => void): Promise<string> {
    await written;
    const p = join(dir, `${name}.parallax.json`);
    writeFileSync(p, readFileSync(path, 'utf8').replace('"big.parallax.spans"', `"${name}.parallax.spans"`));
    const bytes = spansBytesAt(path);
    writeFileSync(spansFilePath(p), bytes);
    edit(bytes, spansFilePath(p));
    return p;
  }

  /** Where the index section lies, from the side file's header. */
  function sectionOf(bytes: Buffer): { offset: number; bytes: number } {
    const header = JSON.parse(bytes.toString('utf8', 16, 16 + bytes.readUInt32LE(12))) as { tileIndex: { offset: number; bytes: number } };
    return header.tileIndex;
  }

  async function leftAside(p: string, pattern: RegExp): Promise<void> {
    const read = await readTraceWithTileIndex(p, all);
    assert.equal(read.tileIndex, null, 'the index is left aside');
    assert.ok(read.note, 'with a note');
    assert.match(read.note, pattern);
    assert.ok(!read.note.includes('\n'), 'one line');
    // The spans are whole.
    for (const c of SPAN_COLUMNS) assert.deepEqual(read.trace.spans[c], t.spans[c], `column ${c}`);
  }

  it('a side file cut short inside its index opens, the index left aside', async () => {
    const p = await damaged('cut', (bytes, file) => {
      const s = sectionOf(bytes);
      truncateSync(file, s.offset + Math.floor(s.bytes / 2));
    });
    await leftAside(p, /outside the file/);
  });

  it('a side file cut short inside its columns is still an error', async () => {
    const p = await damaged('cutcols', (bytes, file) => truncateSync(file, sectionOf(bytes).offset - 100));
    await assert.rejects(readTraceWithTileIndex(p, all), /truncated/);
  });

  it('a flipped byte in the index fails its checksum and the index is left aside', async () => {
    const p = await damaged('flip', (bytes, file) => {
      const s = sectionOf(bytes);
      bytes[s.offset + Math.floor(s.bytes * 0.7)] ^= 0x55;
      writeFileSync(file, bytes);
    });
    await leftAside(p, /checksum/);
  });

  it('an index built by other rules is left aside', async () => {
    const p = await damaged('rules', (bytes, file) => {
      const at = bytes.indexOf(TILE_INDEX_LAYOUT);
      assert.ok(at > 0);
      bytes.write('X', at + TILE_INDEX_LAYOUT.length - 1, 'latin1');
      writeFileSync(file, bytes);
    });
    await leftAside(p, /other rules/);
  });

  it('an index that does not fit the trace is refused by fromIndex, naming what is wrong', async () => {
    await written;
    const read = await readTraceWithTileIndex(path, all);
    const x = read.tileIndex!;
    assert.throws(() => SpanTiles.fromIndex({ spans: t.spans, lanes: t.lanes.slice(1) }, x), (e: unknown) => e instanceof TileIndexError && /lanes/.test(e.message));
    const order = x.order.slice();
    order[5] = t.spans.count;
    assert.throws(() => SpanTiles.fromIndex(t, { ...x, order }), /span or colour key that does not exist/);
    const keys = x.keys.slice();
    keys[0] = 200;
    assert.throws(() => SpanTiles.fromIndex(t, { ...x, keys }), /colour key/);
    const pyramidW0 = x.pyramidW0.slice();
    pyramidW0[0] = 3;
    assert.throws(() => SpanTiles.fromIndex(t, { ...x, pyramidW0 }), /power of two/);
    const rowOffsets = x.rowOffsets.slice();
    rowOffsets[1] = t.spans.count + 1;
    assert.throws(() => SpanTiles.fromIndex(t, { ...x, rowOffsets }), /row table/);
  });
});
