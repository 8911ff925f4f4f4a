import { test } from 'node:test';
import assert from 'node:assert/strict';
import { analyse } from '../../src/profiler/analysis/index';
import { toChromeTrace } from '../../src/profiler/export-chrome';
import { deriveIdle } from '../../src/profiler/idle';
import { summarize } from '../../src/profiler/summary';
import { CommOpCode, IDLE_SPAN_CAUSES, commCodeOfCollective, spanRow, type SpanRow, type Trace } from '../../src/profiler/trace-format';
import { prepare } from '../../webview/src/model';
import { dataPlan, meta, pipelinePlan, traceOf } from '../helpers/trace-builders';

/**
 * Two stages and one micro-batch whose transfer spans have names that say nothing (or say
 * the opposite): what each span does is only in its `comm` column.
 */
function misleadingPipeline(): Trace {
  const rows: SpanRow[] = [
    { lane: 0, kind: 'compute', name: 'stage.run', start: 0, dur: 10, step: 0, micro: 0, stage: 0 },
    { lane: 0, kind: 'comm', name: 'recv (really a send)', comm: 'send', start: 10, dur: 2, step: 0, micro: 0, stage: 0, peer: 1 },
    { lane: 1, kind: 'comm', name: 'activation in', comm: 'recv', start: 10, dur: 2, step: 0, micro: 0, stage: 1, peer: 0 },
    { lane: 1, kind: 'compute', name: 'stage.run', start: 12, dur: 10, step: 0, micro: 0, stage: 1 },
    // Named like a transfer, but no communication operation: no flow, no bubble.
    { lane: 0, kind: 'comm', name: 'send', start: 14, dur: 2, step: 0, micro: 0, stage: 0, peer: 1 },
  ];
  return traceOf(rows, [[0, 22]], meta({ plan: pipelinePlan({ stages: 2, microBatches: 1 }) }));
}

test('Chrome export joins a send to its recv by the comm column, whatever their names', () => {
  const c = toChromeTrace(misleadingPipeline());
  const starts = c.traceEvents.filter((e) => e.ph === 's');
  const ends = c.traceEvents.filter((e) => e.ph === 'f');
  assert.equal(starts.length, 1);
  assert.equal(ends.length, 1);
  const slice = (name: string) => c.traceEvents.find((e) => e.ph === 'X' && e.name === name)!;
  assert.equal(starts[0].tid, slice('recv (really a send)').tid);
  assert.equal(ends[0].tid, slice('activation in').tid);
});

test('the timeline pairs flows by the comm column, whatever the names', () => {
  const t = misleadingPipeline();
  const p = prepare({ ...t.spans, nLanes: 2 });
  assert.deepEqual(Array.from(p.flows.send), [1]);
  assert.deepEqual(Array.from(p.flows.recv), [2]);
});

test('idle before a recv (by code) is a pipeline bubble; a span only named recv is not a receive', () => {
  const rows: SpanRow[] = [
    { lane: 0, kind: 'compute', name: 'stage.run', start: 0, dur: 10, step: 0, stage: 0 },
    { lane: 0, kind: 'comm', name: 'recv', start: 20, dur: 2, step: 0, stage: 0 },
    { lane: 0, kind: 'compute', name: 'stage.run', start: 22, dur: 10, step: 0, stage: 0 },
    { lane: 0, kind: 'comm', name: 'inbound', comm: 'recv', start: 40, dur: 2, step: 0, stage: 0, peer: 1 },
    { lane: 0, kind: 'compute', name: 'stage.run', start: 42, dur: 8, step: 0, stage: 0 },
  ];
  const t = deriveIdle(traceOf(rows, [[0, 50]], meta({ plan: pipelinePlan() }, 1)));
  const idle = Array.from({ length: t.spans.count }, (_, i) => spanRow(t, i)).filter((r) => r.kind === 'idle');
  assert.deepEqual(
    idle.map((r) => [r.start, r.cause]),
    [
      [10, 'host'],
      [32, 'bubble'],
    ],
  );
});

test('outside pipelines, idle before a collective (by code) is a collective wait', () => {
  const rows: SpanRow[] = [
    { lane: 0, kind: 'compute', name: 'session.run', start: 0, dur: 10, step: 0 },
    { lane: 0, kind: 'comm', name: 'ring', comm: 'allreduce', start: 30, dur: 5, step: 0, bytes: 400 },
    { lane: 0, kind: 'comm', name: 'allreduce', start: 45, dur: 5, step: 0, bytes: 400 },
  ];
  const t = deriveIdle(traceOf(rows, [[0, 50]], meta({ plan: dataPlan({ shards: [8] }, 1) }, 1)));
  const idle = Array.from({ length: t.spans.count }, (_, i) => spanRow(t, i)).filter((r) => r.kind === 'idle');
  assert.deepEqual(
    idle.map((r) => [r.start, r.cause]),
    [
      [10, 'collective'],
      [35, 'host'],
    ],
  );
  // The all-reduce's bytes are a fixed payload; the span merely named `allreduce` is not.
  const lane = analyse(t).dataParallel!.lanes[0];
  assert.equal(lane.fixedBytesPerStep, 400);
  assert.equal(lane.scaledBytesPerStep, 400);
});

test('backpressure idle is counted under its own cause by the summary and the breakdown', () => {
  const rows: SpanRow[] = [
    { lane: 0, kind: 'compute', name: 'stage.run', start: 0, dur: 10, step: 0 },
    { lane: 0, kind: 'idle', name: 'idle', start: 10, dur: 6, step: 0, cause: 'backpressure' },
    { lane: 0, kind: 'comm', name: 'out', comm: 'send', start: 16, dur: 4, step: 0, peer: 0 },
  ];
  const t = traceOf(rows, [[0, 20]], meta({ plan: pipelinePlan() }, 1));
  const s = summarize(t);
  assert.equal(s.devices[0].idleByCauseUs.backpressure, 6);
  const b = analyse(t).breakdown;
  assert.equal(b.lanes[0].idleByCauseUs.backpressure, 6);
  assert.deepEqual(b.lanes[0].perStep.backpressureUs, [6]);
  assert.deepEqual(Object.keys(s.devices[0].idleByCauseUs).sort(), [...IDLE_SPAN_CAUSES].sort());
});

test('collectives of other tools map to the closest comm operation, and unknown ones to none', () => {
  assert.equal(commCodeOfCollective('all_reduce'), CommOpCode.allreduce);
  assert.equal(commCodeOfCollective('all_reduce_coalesced'), CommOpCode.allreduce);
  assert.equal(commCodeOfCollective('reduce'), CommOpCode.allreduce);
  assert.equal(commCodeOfCollective('barrier'), CommOpCode.allreduce);
  assert.equal(commCodeOfCollective('all_gather'), CommOpCode.allgather);
  assert.equal(commCodeOfCollective('gather'), CommOpCode.allgather);
  assert.equal(commCodeOfCollective('all_to_all'), CommOpCode.allgather);
  assert.equal(commCodeOfCollective('reduce_scatter'), CommOpCode.reducescatter);
  assert.equal(commCodeOfCollective('broadcast'), CommOpCode.broadcast);
  assert.equal(commCodeOfCollective('scatter'), CommOpCode.broadcast);
  assert.equal(commCodeOfCollective('send'), CommOpCode.send);
  assert.equal(commCodeOfCollective('recv'), CommOpCode.recv);
  assert.equal(commCodeOfCollective('send_recv'), CommOpCode.none);
  assert.equal(commCodeOfCollective('kernel'), CommOpCode.none);
});
