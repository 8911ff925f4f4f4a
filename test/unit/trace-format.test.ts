import { test } from 'node:test';
import assert from 'node:assert/strict';
import { writeFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { spanRow, traceFromJson, traceToJson, TraceFormatError, TRACE_FORMAT_VERSION } from '../../src/profiler/trace-format';
import { readTrace, writeTrace } from '../../src/profiler/trace-io';
import { traceOf } from '../helpers/trace-builders';
import { UserError } from '../../src/common/errors';
import { tempDir } from '../helpers/temp';

const sample = () =>
  traceOf(
    [
      { lane: 0, kind: 'compute', name: 'session.run', start: 0, dur: 100, step: 0 },
      { lane: 0, kind: 'compute', name: '/layers.0/MatMul', opType: 'MatMul', start: 10, dur: 50, step: 0, parent: 0, flags: 8 },
      { lane: 1, kind: 'comm', name: 'gather', comm: 'gather', start: 100, dur: 5, step: 0, bytes: 4096 },
      { lane: 1, kind: 'idle', name: 'idle', start: 105, dur: 5, step: 0, cause: 'collective' },
    ],
    [[0, 110]],
  );

test('a trace survives the JSON round trip span for span', () => {
  const t = sample();
  const back = traceFromJson(JSON.parse(JSON.stringify(traceToJson(t))));
  assert.equal(back.spans.count, 4);
  for (let i = 0; i < 4; i++) assert.deepEqual(spanRow(back, i), spanRow(t, i));
  assert.equal(spanRow(back, 1).opType, 'MatMul');
  assert.equal(spanRow(back, 1).parent, 0);
  assert.equal(spanRow(back, 3).cause, 'collective');
});

test('a document from a newer format version is refused with advice to update', () => {
  const doc = { ...traceToJson(sample()), version: TRACE_FORMAT_VERSION + 1 };
  assert.throws(() => traceFromJson(doc), (e: Error) => e instanceof TraceFormatError && /update Parallax/.test(e.message));
});

test('columns of the wrong length or with out-of-range indices are refused', () => {
  const doc = traceToJson(sample());
  const short = { ...doc, spans: { ...doc.spans, dur: doc.spans.dur.slice(1) } };
  assert.throws(() => traceFromJson(short), /spans.dur must be an array of 4/);
  const badName = { ...doc, spans: { ...doc.spans, name: [0, 99, 0, 0] } };
  assert.throws(() => traceFromJson(badName), /spans.name\[1\] is out of range/);
  const badLane = { ...doc, spans: { ...doc.spans, lane: [0, 0, 7, 0] } };
  assert.throws(() => traceFromJson(badLane), /spans.lane\[2\]/);
  const noMeta = { ...doc, meta: { ...doc.meta, devices: 'x' } };
  assert.throws(() => traceFromJson(noMeta), /invalid trace at \/meta\/devices/);
});

test('trace files are written atomically and read back; corrupt files give one-line errors', async () => {
  const dir = tempDir('trace');
  const p = join(dir, 'nested', 'run.parallax.json');
  await writeTrace(p, sample());
  assert.deepEqual(readdirSync(join(dir, 'nested')), ['run.parallax.json']);
  const back = await readTrace(p);
  assert.equal(back.spans.count, 4);

  await assert.rejects(readTrace(join(dir, 'missing.json')), (e: Error) => e instanceof UserError && /no such file/.test(e.message));
  const truncated = join(dir, 'truncated.json');
  writeFileSync(truncated, JSON.stringify(traceToJson(sample())).slice(0, 100));
  await assert.rejects(readTrace(truncated), (e: Error) => e instanceof UserError && e.message.startsWith(truncated) && !e.message.includes('\n'));
  const other = join(dir, 'other.json');
  writeFileSync(other, '{"hello": 1}');
  await assert.rejects(readTrace(other), /not a Parallax trace/);
});
