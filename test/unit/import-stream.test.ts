/**
 * The streaming Kineto reader against the whole-text reader: the same trace from every real
 * fixture whatever the batch size, the same events as JSON.parse from documents written in
 * every way JSON allows, the same refusals, and files cut anywhere importing exactly the
 * events before the cut, with a note.
 */
import { after, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { gunzipSync, gzipSync } from 'node:zlib';
import { readFileSync } from 'node:fs';
import { UserError } from '../../src/common/errors';
import { MAX_JSON_DEPTH } from '../../src/common/limits';
import { importTrace } from '../../src/profiler/import/detect';
import { TraceEventScanner } from '../../src/profiler/import/event-stream';
import { extractKinetoRank, mergeKinetoRanks, readKinetoRank } from '../../src/profiler/import/kineto';
import { streamKinetoRank } from '../../src/profiler/import/kineto-stream';
import { serializeTrace } from '../../src/profiler/trace-io';
import type { Trace } from '../../src/profiler/trace-format';
import { KINETO_FIXTURES, kinetoFixture } from '../helpers/kineto';

const dir = mkdtempSync(join(tmpdir(), 'parallax-import-stream-'));
after(() => rmSync(dir, { recursive: true, force: true }));
const file = (name: string, data: string | Buffer): string => {
  const p = join(dir, name);
  writeFileSync(p, data);
  return p;
};

/** Every real Kineto trace in the fixtures folder. */
const fixtures = readdirSync(KINETO_FIXTURES).filter((f) => /\.json(\.gz)?$/.test(f));

/** Feeds `text` to a scanner in chunks of `chunk` bytes with batches of `batch` bytes; returns the events and the result. */
function scan(text: string | Buffer, chunk: number, batch: number): { events: unknown[]; result: ReturnType<TraceEventScanner['end']> } {
  let events: unknown[] = [];
  const s = new TraceEventScanner('doc.json', (batchEvents, restart) => {
    if (restart) events = [];
    events.push(...batchEvents);
  }, batch);
  const bytes = Buffer.isBuffer(text) ? text : Buffer.from(text);
  for (let i = 0; i < bytes.length; i += chunk) s.push(bytes.subarray(i, i + chunk));
  const result = s.end();
  return { events, result };
}

const oneLineUserError = (re: RegExp) => (e: unknown): boolean => {
  assert.ok(e instanceof UserError, String(e));
  assert.ok(!e.message.includes('\n'));
  assert.match(e.message, re);
  return true;
};

describe('the streaming reader gives the whole-text reader’s trace', () => {
  test('the fixtures folder has real traces to compare', () => {
    assert.ok(fixtures.length >= 3, fixtures.join(', '));
  });

  for (const name of fixtures) {
    test(`${name}: identical rank and merged trace, for batches of 4 MB, 64 kB and 3 kB, gzip and plain`, async () => {
      const path = kinetoFixture(name);
      const whole = await readKinetoRank(path);
      const expected = serializeTrace(mergeKinetoRanks([whole]));
      const plain = file(name.replace(/\.gz$/, ''), gunzipSync(readFileSync(path)));
      for (const [p, batchBytes] of [[path, undefined], [path, 65536], [plain, 3000]] as const) {
        const streamed = await streamKinetoRank(p, { batchBytes });
        assert.equal(streamed.spans.count, whole.spans.count);
        assert.deepEqual({ ...streamed, source: '' }, { ...whole, source: '' });
        if (p === path) assert.equal(serializeTrace(mergeKinetoRanks([streamed])), expected);
      }
    });
  }

  test('the two ranks of the 128-rank job merge into the same trace either way', async () => {
    const paths = [kinetoFixture('job128-rank1.json.gz'), kinetoFixture('job128-rank0.json.gz')];
    const whole = mergeKinetoRanks(await Promise.all(paths.map((p) => readKinetoRank(p))));
    const streamed = await importTrace(paths);
    assert.ok(streamed.spans.count > 1000);
    assert.equal(serializeTrace(streamed), serializeTrace(whole));
  });
});

describe('the event scanner reads what JSON.parse reads', () => {
  const events = [
    { ph: 'X', name: 'a},{"b', ts: 1, dur: 2, args: { s: '}, {' } },
    { ph: 'X', name: 'quote \\" and backslash \\\\', ts: 3, dur: 1, args: { nested: [{ a: 1 }, { b: [2, 3] }], 'x}': '},' } },
    7,
    'a string, with } and ,',
    null,
    [1, { ph: 'X' }],
    { ph: 'X', name: 'ünïcødé ✓ 😀', ts: 5.5, dur: 0 },
    {},
  ];
  const docs: Record<string, string> = {
    minified: JSON.stringify({ schemaVersion: 1, traceEvents: events, traceName: 'x' }),
    pretty: JSON.stringify({ deviceProperties: [{ id: 0, name: 'GPU' }, { id: 1 }], traceEvents: events, baseTimeNanoseconds: 5 }, null, 2),
    'events first': JSON.stringify({ traceEvents: events, distributedInfo: { rank: 1, world_size: 2 } }),
    'events last, spaces around': ` \n {"a": {"traceEvents": [1]}, "traceEvents" : \n [ ${events.map((e) => JSON.stringify(e)).join(' ,\n ')} ] } \n`,
    'escaped key': `{"trace\\u0045vents": ${JSON.stringify(events)}}`,
    'empty array': '{"traceEvents": [], "x": 1}',
    'blank array': '{"traceEvents": [ \n ], "x": [1]}',
  };

  for (const [what, text] of Object.entries(docs)) {
    test(`${what}: the same events and the same header, whatever the chunk and batch sizes`, () => {
      const doc = JSON.parse(text) as Record<string, unknown>;
      const header = { ...doc, traceEvents: [] };
      for (const chunk of [1, 7, 64, 100_000]) {
        for (const batch of [1, 10, 50, 1 << 20]) {
          const { events: got, result } = scan(text, chunk, batch);
          assert.deepEqual(got, doc['traceEvents'], `chunk ${chunk}, batch ${batch}`);
          assert.equal(result.kind, 'object');
          if (result.kind !== 'object') return;
          assert.deepEqual(result.header, header);
          assert.equal(result.truncated, null);
          assert.equal(result.events, (doc['traceEvents'] as unknown[]).length);
        }
      }
    });
  }

  test('a second top-level traceEvents replaces the first, as in JSON.parse', () => {
    const text = '{"traceEvents": [1, 2], "x": 0, "traceEvents": [3]}';
    for (const batch of [1, 1000]) assert.deepEqual(scan(text, 5, batch).events, (JSON.parse(text) as { traceEvents: number[] }).traceEvents);
  });

  test("Python's NaN and Infinity are read as null and counted, in events and header", () => {
    const text = '{"baseTimeNanoseconds": NaN, "traceEvents": [{"ts": NaN, "name": "NaN"}, {"dur": -Infinity}, {"x": Infinity}]}';
    for (const batch of [1, 1000]) {
      const { events, result } = scan(text, 3, batch);
      assert.deepEqual(events, [{ ts: null, name: 'NaN' }, { dur: null }, { x: null }]);
      assert.ok(result.kind === 'object');
      assert.equal(result.nonFinite, 4);
    }
  });

  test('a top level that is not an object is handed back whole', () => {
    const r = scan('  [1, 2]', 2, 1).result;
    assert.deepEqual(r, { kind: 'other', text: '  [1, 2]' });
  });

  for (const [what, text] of [
    ['a trailing comma', '{"traceEvents": [{"a": 1}, ]}'],
    ['an empty element', '{"traceEvents": [{"a": 1},, {"b": 2}]}'],
    ['a leading comma', '{"traceEvents": [, {"b": 2}]}'],
    ['garbage after the document', '{"traceEvents": [{"a": 1}]} x'],
    ['a broken event', '{"traceEvents": [{"a": 1}, {"b" 2}, {"c": 3}]}'],
  ] as const) {
    test(`${what} is refused as invalid JSON, as JSON.parse refuses it`, () => {
      assert.throws(() => JSON.parse(text));
      for (const batch of [1, 1000]) assert.throws(() => scan(text, 4, batch), oneLineUserError(/doc\.json: not valid JSON/));
    });
  }

  test('an event nested deeper than the limit is refused, one just under it read', () => {
    // The document and traceEvents are two levels; an event may nest MAX_JSON_DEPTH − 2 more.
    const nest = (n: number): string => '['.repeat(n) + ']'.repeat(n);
    assert.equal(scan(`{"traceEvents": [${nest(MAX_JSON_DEPTH - 2)}]}`, 1000, 1000).events.length, 1);
    assert.throws(() => scan(`{"traceEvents": [1, ${nest(MAX_JSON_DEPTH - 1)}]}`, 1000, 1000), oneLineUserError(/nested more than 256 levels/));
    assert.throws(() => scan(`{"traceEvents": [${nest(5000)}, {"a" 1}]}`, 1000, 1000), oneLineUserError(/nested more than 256 levels/));
  });
});

/** A Kineto document built from the real 2-rank DDP trace's first events, with each event's end offset known. */
function sampleText(): { text: string; ends: number[]; doc: Record<string, unknown> } {
  const real = JSON.parse(gunzipSync(readFileSync(kinetoFixture('ddp-2rank-rank0.json.gz'))).toString('utf8')) as Record<string, unknown>;
  // Every 13th event keeps the mix of CPU ops, runtime calls, kernels and NCCL kernels.
  const events = (real['traceEvents'] as unknown[]).filter((_, i) => i % 13 === 0);
  const head = `{"schemaVersion": 1, "deviceProperties": ${JSON.stringify(real['deviceProperties'])}, "distributedInfo": ${JSON.stringify(real['distributedInfo'])},\n "traceEvents": [\n`;
  let text = head;
  const ends: number[] = [];
  events.forEach((e, i) => {
    text += (i > 0 ? ',\n' : '') + JSON.stringify(e);
    ends.push(Buffer.byteLength(text));
  });
  text += '\n], "traceName": "sample", "baseTimeNanoseconds": 1700000000000000000}';
  return { text, ends, doc: { ...real, traceEvents: events, traceName: 'sample', baseTimeNanoseconds: 1700000000000000000 } };
}

describe('a file cut short imports every complete event before the cut', () => {
  const { text, ends, doc } = sampleText();
  const bytes = Buffer.from(text);
  const events = doc['traceEvents'] as unknown[];
  /** The trace of the first k events imported from a complete document, notes aside. */
  const prefixTrace = (k: number, source: string): Trace => mergeKinetoRanks([extractKinetoRank({ ...doc, traceEvents: events.slice(0, k), traceName: undefined, baseTimeNanoseconds: undefined }, source)]);
  const withoutNote = (t: Trace): string => serializeTrace({ ...t, meta: { ...t.meta, notes: t.meta.notes.filter((n) => !n.includes('the file ends after')) } });

  // Offsets inside a string, inside a number, right after an event, between events, just
  // after the array opens, inside the last event, and spread over the file.
  const firstEvent = text.indexOf('{"ph"');
  const k0 = events.findIndex((e) => (e as { cat?: string }).cat === 'kernel');
  const spots = [
    text.indexOf('"name":"', ends[k0 + 5]) + 12,
    text.indexOf('"ts":', ends[k0 + 50]) + 9,
    ends[k0 + 10],
    ends[k0 + 10] + 1,
    ends[k0 + 500] + 2,
    ends[ends.length - 1] - 3,
    ...Array.from({ length: 12 }, (_, i) => firstEvent + Math.floor(((i + 1) * (ends[ends.length - 1] - firstEvent)) / 13)),
  ];

  /**
   * The cut file imports as a complete file of its first k events does, with the note; or,
   * when that file is refused (no GPU event before the cut), is refused with the same words.
   */
  const sameAsPrefix = async (p: string, k: number, note: (t: Trace) => void): Promise<void> => {
    let expected: Trace;
    try {
      expected = prefixTrace(k, p);
    } catch (e) {
      assert.ok(e instanceof UserError, String(e));
      await assert.rejects(importTrace([p]), (got: Error) => got.message === e.message);
      return;
    }
    const t = await importTrace([p]);
    note(t);
    assert.equal(withoutNote(t), withoutNote(expected));
  };

  for (const cut of spots) {
    test(`plain text cut after ${cut} bytes`, async () => {
      const k = ends.filter((e) => e <= cut).length;
      assert.ok(k > 0 && k < events.length);
      const p = file(`cut-${cut}.json`, bytes.subarray(0, cut));
      await sameAsPrefix(p, k, (t) => {
        const note = t.meta.notes.find((n) => n.includes('the file ends after'));
        assert.equal(note, `${p}: the file ends after ${cut} bytes inside traceEvents; ${k} events were imported, the rest are missing.`);
      });
    });
  }

  test('most cuts land after the first GPU event, so imports are tested, not only refusals', () => {
    const firstKernel = events.findIndex((e) => (e as { cat?: string }).cat === 'kernel');
    assert.ok(firstKernel >= 0);
    assert.ok(spots.filter((cut) => ends.filter((e) => e <= cut).length > firstKernel).length >= 10);
  });

  test('a cut in the fields after traceEvents keeps every event and the fields before the cut', async () => {
    const cut = text.indexOf('"baseTimeNanoseconds"') + 5;
    const p = file('cut-after.json', bytes.subarray(0, cut));
    const t = await importTrace([p]);
    assert.ok(t.meta.notes.includes(`${p}: the file ends after ${cut} bytes, after traceEvents; every event was imported, the fields after the cut are missing.`), t.meta.notes.join('\n'));
    assert.equal(withoutNote(t), withoutNote(mergeKinetoRanks([extractKinetoRank({ ...doc, baseTimeNanoseconds: undefined }, p)])));
  });

  test('a cut before the first complete event is refused as truncated JSON', async () => {
    const p = file('cut-early.json', bytes.subarray(0, firstEvent + 20));
    await assert.rejects(importTrace([p]), oneLineUserError(/cut-early\.json: not valid JSON \(is the file truncated\?\)/));
  });

  test('gzip cut at many places imports a growing prefix of the events, each equal to a complete file of them', async () => {
    const gz = gzipSync(bytes);
    let previous = -1;
    let imported = 0;
    for (let i = 1; i <= 10; i++) {
      const cut = Math.floor((i * gz.length) / 11);
      const p = file(`cut-${i}.json.gz`, gz.subarray(0, cut));
      let t: Trace;
      try {
        t = await importTrace([p]);
      } catch (e) {
        // A cut before the first complete event is refused as corrupt gzip; one before the
        // first GPU event as a trace without GPU activity.
        assert.ok(e instanceof UserError && /corrupt gzip data \(unexpected end of file\)|no GPU activity/.test(e.message), String(e));
        assert.equal(previous, -1, `cut ${cut} refused after an earlier cut imported`);
        continue;
      }
      const note = t.meta.notes.find((n) => n.includes('the file ends after')) ?? '';
      const m = /\(inflated\) inside traceEvents; (\d+) events were imported/.exec(note);
      assert.ok(m, note);
      const k = Number(m[1]);
      assert.ok(k >= previous && k < events.length, `${k} after ${previous}`);
      assert.equal(withoutNote(t), withoutNote(prefixTrace(k, p)));
      previous = k;
      imported++;
    }
    assert.ok(imported >= 5, `${imported} of 10 cuts imported`);
  });
});
