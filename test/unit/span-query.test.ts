/**
 * Span queries (src/profiler/span-query.ts): the operator table and search the timeline
 * shows, answered from the span columns alone, as a host serving tiles would answer them.
 *
 *   node --import tsx --test test/unit/span-query.test.ts
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { answerSpanQuery, opStats, readSpanQuery, searchSpans, spanMask } from '../../src/profiler/span-query';
import { SpanFlag, type SpanRow } from '../../src/profiler/trace-format';
import { traceOf } from '../helpers/trace-builders';

/**
 * Two lanes, two steps; each step per lane one compute span with operators under it:
 * lane 0 runs MatMul `/fc1/MatMul` (30 µs) and Relu `/act/Relu` (10 µs); lane 1 the same
 * MatMul for 50 µs and a second MatMul `/fc2/MatMul` for 20 µs.
 */
function opTrace() {
  const rows: SpanRow[] = [];
  const op = (lane: number, name: string, opType: string, start: number, dur: number, step: number, parent: number): SpanRow => ({
    lane, kind: 'compute', name, opType, start, dur, step, parent, flags: SpanFlag.op,
  });
  for (const step of [0, 1]) {
    const t = step * 1000;
    const c0 = rows.length;
    rows.push({ lane: 0, kind: 'compute', name: 'session.run', start: t, dur: 100, step, phase: 'forward' });
    rows.push(op(0, '/fc1/MatMul', 'MatMul', t + 5, 30, step, c0));
    rows.push(op(0, '/act/Relu', 'Relu', t + 40, 10, step, c0));
    const c1 = rows.length;
    rows.push({ lane: 1, kind: 'compute', name: 'session.run', start: t, dur: 100, step, phase: 'forward' });
    rows.push(op(1, '/fc1/MatMul', 'MatMul', t + 5, 50, step, c1));
    rows.push(op(1, '/fc2/MatMul', 'MatMul', t + 60, 20, step, c1));
    rows.push({ lane: 1, kind: 'comm', name: 'allreduce grads', comm: 'allreduce', start: t + 100, dur: 10, step });
  }
  return traceOf(rows, [
    [0, 200],
    [1000, 1200],
  ]);
}

describe('span queries', () => {
  test('operator statistics by type count, total, mean, share and per-lane time of operator spans only', () => {
    const r = opStats(opTrace(), 'opType');
    // 2 steps × (30 + 10 + 50 + 20) µs of operators.
    assert.equal(r.totalUs, 220);
    assert.equal(r.spans, 8);
    assert.deepEqual(
      r.rows.map((x) => [x.key, x.count, x.totalUs, x.meanUs, x.byLaneUs]),
      [
        ['MatMul', 6, 200, 200 / 6, [60, 140]],
        ['Relu', 2, 20, 10, [20, 0]],
      ],
    );
    assert.ok(Math.abs(r.rows[0].share - 200 / 220) < 1e-12);
    assert.deepEqual(r.lanes, ['cpu:0 (1 thread)', 'cpu:1 (1 thread)']);
  });

  test('operator statistics by node keep each node apart and name its type', () => {
    const r = opStats(opTrace(), 'node');
    assert.deepEqual(
      r.rows.map((x) => [x.key, x.opType, x.count, x.totalUs]),
      [
        ['/fc1/MatMul', 'MatMul', 4, 160],
        ['/fc2/MatMul', 'MatMul', 2, 40],
        ['/act/Relu', 'Relu', 2, 20],
      ],
    );
    const shares = r.rows.reduce((a, x) => a + x.share, 0);
    assert.ok(Math.abs(shares - 1) < 1e-12, `shares sum to ${shares}`);
  });

  test('a range and a text narrow the statistics; a limit cuts rows but says how many there were', () => {
    const t = opTrace();
    const second = opStats(t, 'opType', { range: { startUs: 1000, endUs: 1200 } });
    assert.equal(second.totalUs, 110);
    const fc2 = opStats(t, 'node', { text: 'FC2' });
    assert.deepEqual(fc2.rows.map((x) => x.key), ['/fc2/MatMul']);
    const cut = opStats(t, 'node', { limit: 1 });
    assert.equal(cut.rows.length, 1);
    assert.equal(cut.totalRows, 3);
  });

  test('search finds spans by name or operator type, case-insensitive, earliest first', () => {
    const t = opTrace();
    const r = searchSpans(t, 'relu');
    assert.equal(r.count, 2);
    assert.deepEqual(r.hits.map((h) => [h.name, h.startUs]), [
      ['/act/Relu', 40],
      ['/act/Relu', 1040],
    ]);
    const all = searchSpans(t, 'matmul', { limit: 2 });
    assert.equal(all.count, 6, 'every MatMul span counts');
    assert.equal(all.hits.length, 2);
    assert.ok(all.hits[0].startUs <= all.hits[1].startUs);
    assert.equal(searchSpans(t, 'allreduce').hits[0].lane, 1);
    assert.equal(searchSpans(t, '   ').count, 0, 'blank text matches nothing');
  });

  test('span masks pick the spans of an operator type, a node or a text', () => {
    const t = opTrace();
    const count = (m: Uint8Array): number => m.reduce((a, v) => a + v, 0);
    assert.equal(count(spanMask(t, { by: 'opType', key: 'MatMul' })), 6);
    assert.equal(count(spanMask(t, { by: 'node', key: '/fc2/MatMul' })), 2);
    // session.run is a name of compute spans, not an operator: a node filter does not pick them.
    assert.equal(count(spanMask(t, { by: 'node', key: 'session.run' })), 0);
    assert.equal(count(spanMask(t, { by: 'text', text: 'session' })), 4);
  });

  test('answerSpanQuery answers what readSpanQuery accepts, and readSpanQuery refuses bad queries with a reason', () => {
    const t = opTrace();
    const q = readSpanQuery({ type: 'opStats', groupBy: 'node', limit: 5 });
    assert.ok(q.ok);
    const r = answerSpanQuery(t, q.query);
    assert.equal(r.type, 'opStats');
    for (const [bad, why] of [
      [null, /not an object/],
      [{ type: 'opStats', groupBy: 'lane' }, /groupBy/],
      [{ type: 'search' }, /needs a "text"/],
      [{ type: 'search', text: 'x', limit: 0 }, /limit/],
      [{ type: 'search', text: 'x', range: { startUs: 5, endUs: 1 } }, /range/],
      [{ type: 'drop' }, /unknown type/],
    ] as const) {
      const res = readSpanQuery(bad);
      assert.equal(res.ok, false);
      if (!res.ok) assert.match(res.error, why);
    }
  });
});
