/**
 * The value checks of span columns (src/profiler/span-checks.ts) and where they run: a side
 * file's columns are checked as each is read, while the others are being read, and a value out
 * of bounds in any column is still one line naming the file, the column and the span, whichever
 * way the file is read; traceFromJson skips only columns that were checked against its own
 * bounds. The view's summary from a tile index equals the pass over the spans.
 *
 *   node --import tsx --test test/unit/span-checks.test.ts
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { maxOfI32, orOfBytes, spanColumnProblem, spanColumnsProblem, SPAN_COLUMN_CHECK_ORDER, type SpanLimits } from '../../src/profiler/span-checks';
import { SpanTiles, tileSummary } from '../../src/profiler/span-tiles';
import { COMM_OPS, IDLE_CAUSES, PHASES, SPAN_KINDS } from '../../src/profiler/span-vocabulary';
import { SPAN_COLUMNS, traceFromJson, traceToJson, type SpanColumnName, type Trace } from '../../src/profiler/trace-format';
import { readTraceWithTileIndex, writeTrace } from '../../src/profiler/trace-io';
import { spansFilePath } from '../../src/profiler/spans-file';
import { MAX_DURATION_US, MAX_TIMESTAMP_US } from '../../src/common/limits';
import { UserError } from '../../src/common/errors';
import { syntheticPipelineTrace } from '../../src/profiler/analysis/synthetic';
import { tempDir } from '../helpers/temp';

function sample(): Trace {
  return syntheticPipelineTrace({ stageUs: [120, 90, 150], microBatches: 4, steps: 3, commUs: 7, opsPerCompute: 3, jitter: 0.2 });
}

const limitsOf = (t: Trace): SpanLimits => ({ spans: t.spans.count, strings: t.strings.length, lanes: t.lanes.length });

/** A value just outside each bounded column's bound, and the message it must bring. */
function outOfBounds(t: Trace): [SpanColumnName, number, RegExp][] {
  return [
    ['kind', SPAN_KINDS.length, /is unknown/],
    ['cause', IDLE_CAUSES.length, /is unknown/],
    ['comm', COMM_OPS.length, /is unknown/],
    ['phase', PHASES.length, /is unknown/],
    ['kind', 200, /is unknown/],
    ['name', t.strings.length, /is out of range/],
    ['name', -1, /is out of range/],
    ['opType', t.strings.length, /is out of range/],
    ['lane', t.lanes.length, /is out of range/],
    ['lane', -1, /is out of range/],
    ['parent', t.spans.count, /is out of range/],
    ['dur', -1, /outside 0 to/],
    ['dur', MAX_DURATION_US * 2, /outside 0 to/],
    ['dur', NaN, /is not a finite number/],
    ['start', MAX_TIMESTAMP_US * 2, /beyond any clock/],
    ['start', -Infinity, /is not a finite number/],
    ['bytes', Infinity, /is not a finite number/],
    ['cpu', NaN, /is not a finite number/],
    ['wait', NaN, /is not a finite number/],
  ];
}

describe('span column checks', () => {
  it('a sound trace has no problem in any column', () => {
    const t = sample();
    assert.equal(spanColumnsProblem(t.spans, limitsOf(t)), null);
  });

  it('each bounded column names the first span out of its bound, wherever it lies (four bytes at a time or the tail)', () => {
    const t = sample();
    const n = t.spans.count;
    for (const [c, value, message] of outOfBounds(t)) {
      // First, aligned in the middle, and in the last bytes a word-wise pass leaves over.
      for (const i of [0, 5, Math.floor(n / 2), n - 1]) {
        const col = t.spans[c].slice();
        col[i] = value;
        const p = spanColumnProblem(c, col, limitsOf(t));
        assert.ok(p, `${c}[${i}] = ${value} is found`);
        assert.match(p, new RegExp(`^invalid trace: spans\\.${c}\\[${i}\\] `));
        assert.match(p, message);
        // A second bad value later does not change which span is named.
        if (i + 3 < n) {
          col[i + 3] = value;
          assert.equal(spanColumnProblem(c, col, limitsOf(t)), p);
        }
      }
    }
  });

  it('a byte column that is not aligned to four bytes is checked value by value, with the same answer', () => {
    const bytes = new Uint8Array(40);
    const shifted = bytes.subarray(1, 38);
    assert.equal(spanColumnProblem('kind', shifted, { spans: 37, strings: 1, lanes: 1 }), null);
    shifted[30] = SPAN_KINDS.length;
    assert.equal(spanColumnProblem('kind', shifted, { spans: 37, strings: 1, lanes: 1 }), 'invalid trace: spans.kind[30] is unknown');
    // Outside the view: not its business.
    const again = new Uint8Array(40);
    again[0] = 255;
    again[39] = 255;
    assert.equal(spanColumnProblem('kind', again.subarray(1, 38), { spans: 37, strings: 1, lanes: 1 }), null);
  });

  it('columns without a bound accept any value', () => {
    const t = sample();
    for (const c of SPAN_COLUMNS.filter((c) => !(SPAN_COLUMN_CHECK_ORDER as readonly string[]).includes(c))) {
      const col = t.spans[c].slice();
      col[0] = col instanceof Uint8Array ? 255 : -123456;
      assert.equal(spanColumnProblem(c, col, limitsOf(t)), null, c);
    }
  });

  it('the or of bytes and the largest int match a plain loop, aligned or not', () => {
    const a = new Uint8Array(23);
    assert.equal(orOfBytes(a), 0);
    a[22] = 0x40;
    a[3] = 0x01;
    a[9] = 0x08;
    assert.equal(orOfBytes(a), 0x49);
    assert.equal(orOfBytes(a.subarray(1, 10)), 0x09);
    assert.equal(maxOfI32(new Int32Array([-1, -1, -7])), -1);
    assert.equal(maxOfI32(new Int32Array([-1, 4, 2])), 4);
    assert.equal(maxOfI32(new Int32Array(0)), -Infinity);
  });
});

describe('checks while a side file is read', () => {
  const dir = tempDir('span-checks');

  /** Writes `t` with a side file and returns the path and the side file's bytes with each column's offset. */
  async function written(t: Trace, name: string): Promise<{ path: string; side: Buffer; offsetOf: (c: SpanColumnName) => number }> {
    const path = join(dir, `${name}.parallax.json`);
    await writeTrace(path, t, { spans: 'side-file' });
    const side = readFileSync(spansFilePath(path));
    const header = JSON.parse(side.toString('utf8', 16, 16 + side.readUInt32LE(12))) as { columns: { name: string; offset: number }[] };
    return { path, side, offsetOf: (c) => header.columns.find((e) => e.name === c)!.offset };
  }

  async function refused(path: string, overlap: boolean, pattern: RegExp): Promise<void> {
    await assert.rejects(readTraceWithTileIndex(path, () => true, { overlap }), (e: unknown) => {
      assert.ok(e instanceof UserError, `a UserError, not ${String(e)}`);
      assert.ok(e.message.startsWith(`${path}: invalid trace: `), e.message);
      assert.match(e.message, pattern);
      assert.ok(!e.message.includes('\n'), 'one line');
      return true;
    });
  }

  it('a sound side file reads the same whether columns are checked as they arrive or after', async () => {
    const t = sample();
    const { path } = await written(t, 'sound');
    const a = await readTraceWithTileIndex(path, () => true, { overlap: true });
    const b = await readTraceWithTileIndex(path, () => true, { overlap: false });
    assert.ok(a.tileIndex && b.tileIndex, 'the stored index is read both ways');
    for (const c of SPAN_COLUMNS) assert.deepEqual(Array.from(a.trace.spans[c]), Array.from(t.spans[c]), c);
    for (const c of SPAN_COLUMNS) assert.deepEqual(Array.from(b.trace.spans[c]), Array.from(t.spans[c]), c);
    assert.deepEqual(Array.from(a.tileIndex.order), Array.from(b.tileIndex.order));
  });

  it('a value out of bounds in any column of the file is one line naming the file, column and span, both ways', async () => {
    const t = sample();
    const { path, side, offsetOf } = await written(t, 'bad');
    const k = 7;
    const cases: [SpanColumnName, (b: Buffer, at: number) => void, RegExp][] = [
      ['kind', (b, at) => b.writeUInt8(SPAN_KINDS.length, at + k), /spans\.kind\[7\] is unknown/],
      ['phase', (b, at) => b.writeUInt8(250, at + k), /spans\.phase\[7\] is unknown/],
      ['name', (b, at) => b.writeInt32LE(t.strings.length + 5, at + 4 * k), /spans\.name\[7\] is out of range/],
      ['parent', (b, at) => b.writeInt32LE(t.spans.count, at + 4 * k), /spans\.parent\[7\] is out of range/],
      ['dur', (b, at) => b.writeDoubleLE(NaN, at + 8 * k), /spans\.dur\[7\] is not a finite number/],
      ['start', (b, at) => b.writeDoubleLE(MAX_TIMESTAMP_US * 4, at + 8 * k), /spans\.start\[7\] is .* beyond any clock/],
      ['wait', (b, at) => b.writeDoubleLE(Infinity, at + 8 * k), /spans\.wait\[7\] is not a finite number/],
    ];
    for (const [c, corrupt, pattern] of cases) {
      const bad = Buffer.from(side);
      corrupt(bad, offsetOf(c));
      writeFileSync(spansFilePath(path), bad);
      await refused(path, true, pattern);
      await refused(path, false, pattern);
    }
  });

  it('with several columns wrong, the one named does not depend on which read ended first', async () => {
    const t = sample();
    const { path, side, offsetOf } = await written(t, 'several');
    const bad = Buffer.from(side);
    // `wait` is the last column in the file and the last checked; `lane` is checked before it.
    bad.writeDoubleLE(NaN, offsetOf('wait'));
    bad.writeInt32LE(t.lanes.length, offsetOf('lane') + 4 * 3);
    writeFileSync(spansFilePath(path), bad);
    for (let k = 0; k < 5; k++) await refused(path, true, /spans\.lane\[3\] is out of range/);
    await refused(path, false, /spans\.lane\[3\] is out of range/);
  });
});

describe('traceFromJson and columns checked before', () => {
  it('skips the columns checked against its own bounds, and checks any other', () => {
    const t = sample();
    const doc = { ...traceToJson(t), spans: t.spans } as unknown;
    const lane = t.spans.lane;
    lane[2] = t.lanes.length + 1;
    // Without a claim, or with bounds other than the document's, the bad lane is found.
    assert.throws(() => traceFromJson(doc), /spans\.lane\[2\] is out of range/);
    assert.throws(() => traceFromJson(doc, { columns: t.spans, limits: { ...limitsOf(t), lanes: 99 } }), /spans\.lane\[2\] is out of range/);
    // A claim about other arrays than the document's does not cover them.
    const other = { ...t.spans, lane: lane.slice() };
    assert.throws(() => traceFromJson(doc, { columns: other, limits: limitsOf(t) }), /spans\.lane\[2\] is out of range/);
    // The very arrays, checked against the document's own bounds, are taken as checked; a
    // column the claim does not hold is still checked.
    assert.equal(traceFromJson(doc, { columns: t.spans, limits: limitsOf(t) }).spans.lane, lane);
    const partial = { ...t.spans, dur: new Float64Array(t.spans.count) };
    t.spans.dur[1] = NaN;
    assert.throws(() => traceFromJson(doc, { columns: partial, limits: limitsOf(t) }), /spans\.dur\[1\] is not a finite number/);
  });
});

describe("the view's summary from a tile index", () => {
  it('equals the pass over the spans, built or read back, with stages and without', async () => {
    const dir = tempDir('span-summary');
    const pipeline = sample();
    const flat = sample();
    flat.spans.stage.fill(-1);
    flat.spans.flags[flat.spans.count - 1] |= 0x40;
    for (const [name, t] of [
      ['pipeline', pipeline],
      ['flat', flat],
    ] as const) {
      const want = tileSummary(t.spans, t.lanes.length);
      assert.deepEqual(new SpanTiles(t).summary(), want, `${name}: built`);
      const path = join(dir, `${name}.parallax.json`);
      await writeTrace(path, t, { spans: 'side-file' });
      const r = await readTraceWithTileIndex(path, () => true);
      assert.ok(r.tileIndex, `${name}: index stored`);
      assert.deepEqual(SpanTiles.fromIndex(r.trace, r.tileIndex).summary(), want, `${name}: read back`);
    }
    assert.ok(tileSummary(flat.spans, flat.lanes.length).flags & 0x40, 'the flag of the last span is in the summary');
  });
});
