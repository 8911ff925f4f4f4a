/**
 * The worker's span buffer: spans recorded as rows (by `record` with extras and by the hot
 * path's `put`) come out as the trace's typed columns, field for field, across growth and
 * reservations, with the context applied where a span gives no value of its own.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { SpanBuffer, SpanFlag, SpanKind } from '../../src/runtime/spans';
import { SPAN_COLUMNS, spanColumnCtor } from '../../src/profiler/trace-format';

test('record and put come out as the same typed columns, with the context filled in', () => {
  const b = new SpanBuffer(16);
  b.context = { step: 3, micro: 1, stage: 2 };
  const a = b.record(SpanKind.compute, 'Conv_0', 1_700_000_000_000_001.5, 12.25, { opType: 'Conv', parent: 7, flags: SpanFlag.op, phase: 1, cpu: 11, wait: 0.5 });
  const run = b.intern('session.run');
  const p = b.put(SpanKind.comm, run, 1_700_000_000_000_020, 3, 4096, 1, 5, 0, 2, -1, -1);
  const e = b.record(SpanKind.comm, 'send', 5, 6, { step: 9, micro: -1, stage: 0, bytes: 2 ** 40, peer: 0, cause: 3, comm: 4 });
  assert.deepEqual([a, p, e], [0, 1, 2]);
  const c = b.take();
  assert.equal(c.count, 3);
  for (const col of SPAN_COLUMNS) if (col !== 'lane') assert.ok(c[col] instanceof spanColumnCtor(col), `${col} has its column type`);
  assert.deepEqual(Array.from(c.kind), [SpanKind.compute, SpanKind.comm, SpanKind.comm]);
  assert.deepEqual(Array.from(c.name, (i) => c.strings[i]), ['Conv_0', 'session.run', 'send']);
  assert.equal(c.strings[c.opType[0]!], 'Conv');
  assert.deepEqual(Array.from(c.opType.subarray(1)), [-1, -1]);
  assert.deepEqual(Array.from(c.start), [1_700_000_000_000_001.5, 1_700_000_000_000_020, 5]);
  assert.deepEqual(Array.from(c.dur), [12.25, 3, 6]);
  assert.deepEqual(Array.from(c.step), [3, 3, 9]);
  assert.deepEqual(Array.from(c.micro), [1, 1, -1]);
  assert.deepEqual(Array.from(c.stage), [2, 2, 0]);
  assert.deepEqual(Array.from(c.bytes), [0, 4096, 2 ** 40]);
  assert.deepEqual(Array.from(c.peer), [-1, 1, 0]);
  assert.deepEqual(Array.from(c.parent), [7, -1, -1]);
  assert.deepEqual(Array.from(c.flags), [SpanFlag.op, 0, 0]);
  assert.deepEqual(Array.from(c.cause), [0, 0, 3]);
  assert.deepEqual(Array.from(c.comm), [0, 5, 4]);
  assert.deepEqual(Array.from(c.phase), [1, 2, 0]);
  assert.deepEqual(Array.from(c.cpu), [11, -1, -1]);
  assert.deepEqual(Array.from(c.wait), [0.5, -1, -1]);
  // The columns are copies: transferable, and unchanged by later records.
  assert.equal(SpanBuffer.transferList(c).length, SPAN_COLUMNS.length - 1);
  b.put(SpanKind.compute, run, 0, 1, 0, -1, 0, 0, 0);
  assert.equal(c.count, 3);
});

test('growth and reservations keep every span', () => {
  const b = new SpanBuffer(16);
  const name = b.intern('x');
  b.reserve(5);
  for (let i = 0; i < 40; i++) {
    b.context.step = i;
    b.put(SpanKind.compute, name, i * 10, i, 0, -1, 0, 0, 0);
    if (i === 20) b.reserve(1000);
  }
  const c = b.take();
  assert.equal(c.count, 40);
  assert.deepEqual(Array.from(c.step), Array.from({ length: 40 }, (_, i) => i));
  assert.deepEqual(Array.from(c.start), Array.from({ length: 40 }, (_, i) => i * 10));
  b.clear();
  assert.equal(b.count, 0);
  assert.equal(b.take().count, 0);
});
