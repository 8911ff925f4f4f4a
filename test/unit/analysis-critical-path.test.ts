import { test } from 'node:test';
import assert from 'node:assert/strict';
import { deriveIdle } from '../../src/profiler/idle';
import { analyse } from '../../src/profiler/analysis/index';
import { syntheticPipelineTrace } from '../../src/profiler/analysis/synthetic';
import { spanRow, type SpanRow } from '../../src/profiler/trace-format';
import { meta, pipelinePlan, traceOf } from '../helpers/trace-builders';

const close = (a: number, b: number, eps = 1e-9): void => assert.ok(Math.abs(a - b) <= eps * Math.max(1, Math.abs(b)), `${a} ≠ ${b}`);

/** The data-parallel step of analyses.test.ts: lane 1 computes 85 µs, lane 0 40 µs. */
function twoLaneStep(): ReturnType<typeof traceOf> {
  const rows: SpanRow[] = [
    { lane: 0, kind: 'comm', name: 'scatter', comm: 'scatter', start: 5, dur: 5, step: 0, bytes: 100 },
    { lane: 0, kind: 'compute', name: 'session.run', start: 10, dur: 40, step: 0 },
    { lane: 0, kind: 'comm', name: 'gather', comm: 'gather', start: 50, dur: 10, step: 0, bytes: 100 },
    { lane: 1, kind: 'comm', name: 'scatter', comm: 'scatter', start: 0, dur: 5, step: 0, bytes: 100 },
    { lane: 1, kind: 'compute', name: 'session.run', start: 5, dur: 85, step: 0 },
    { lane: 1, kind: 'comm', name: 'gather', comm: 'gather', start: 90, dur: 10, step: 0, bytes: 100 },
  ];
  return deriveIdle(traceOf(rows, [[0, 100]]));
}

const pathOf = (t: ReturnType<typeof traceOf>, spans: number[]): string[] => spans.map((i) => `${spanRow(t, i).lane}:${spanRow(t, i).name}`);

test('a data-parallel step’s critical path runs through the slowest device, joined at the collectives', () => {
  const t = twoLaneStep();
  const cp = analyse(t).criticalPath;
  assert.deepEqual(cp.lengthUs, [100]);
  assert.deepEqual(pathOf(t, cp.representative!.spans), ['1:scatter', '1:session.run', '1:gather']);
  assert.deepEqual(cp.laneCriticalShare, [0, 1]);
});

test('the fast device’s slack is how much longer its compute could take before the step grows', () => {
  const cp = analyse(twoLaneStep()).criticalPath;
  // Lane 0 computes 40 µs where lane 1 computes 85: 45 µs to spare (its 5 µs late release is
  // host time, which no dependency explains, so it is not on the path).
  assert.deepEqual(cp.laneSlackUs, [45, 0]);
  assert.deepEqual(cp.representative!.laneSlackUs, [45, 0]);
});

test('a pipeline’s critical path fills through every stage, then follows the slowest', () => {
  // Stages of 10 and 20 µs, 2 micro-batches, 1 µs transfers: the 52 µs step is
  // compute 0 (10) → transfer (1) → stage 1: compute (20), recv (1), compute (20).
  const t = syntheticPipelineTrace({ stageUs: [10, 20], microBatches: 2, steps: 2, commUs: 1 });
  const cp = analyse(t).criticalPath;
  assert.deepEqual(cp.lengthUs, [52, 52]);
  assert.deepEqual(pathOf(t, cp.representative!.spans), ['0:stage.run', '0:send', '1:recv', '1:stage.run', '1:recv', '1:stage.run']);
  close(cp.laneCriticalShare[0], 11 / 52);
  close(cp.laneCriticalShare[1], 41 / 52);
  // Stage 0 is on the fill path, so its least flexible span has no slack.
  assert.deepEqual(cp.laneSlackUs, [0, 0]);
});

test('send and recv of one transfer run at once and are counted once', () => {
  const t = syntheticPipelineTrace({ stageUs: [10, 10, 10], microBatches: 3, steps: 1, commUs: 2 });
  const cp = analyse(t).criticalPath;
  assert.equal(cp.lengthUs[0], t.steps[0].endUs - t.steps[0].startUs);
});

/** Stage 0 computes 0–10 and sends 10–S; stage 1 receives R0–R1 and computes 20 µs. */
function transfer(send: [number, number], recv: [number, number]): ReturnType<typeof traceOf> {
  const rows: SpanRow[] = [
    { lane: 0, kind: 'compute', name: 'stage.run', start: 0, dur: 10, step: 0, micro: 0, stage: 0 },
    { lane: 0, kind: 'comm', name: 'send', comm: 'send', start: send[0], dur: send[1] - send[0], step: 0, micro: 0, stage: 0, peer: 1 },
    { lane: 1, kind: 'comm', name: 'recv', comm: 'recv', start: recv[0], dur: recv[1] - recv[0], step: 0, micro: 0, stage: 1, peer: 0 },
    { lane: 1, kind: 'compute', name: 'stage.run', start: recv[1], dur: 20, step: 0, micro: 0, stage: 1 },
  ];
  return traceOf(rows, [[0, Math.max(send[1], recv[1] + 20)]], meta({ plan: pipelinePlan({ stages: 2, microBatches: 1 }) }));
}

test('a recv that waits for its data finishes when the send does, not its own duration later', () => {
  // The recv starts at 0 and blocks until the 1 µs send at 10–11 delivers.
  const t = transfer([10, 11], [0, 11]);
  const cp = analyse(t).criticalPath;
  assert.deepEqual(cp.lengthUs, [31]);
  assert.deepEqual(pathOf(t, cp.representative!.spans), ['0:stage.run', '0:send', '1:recv', '1:stage.run']);
  assert.deepEqual(cp.laneCriticalShare, [11 / 31, 20 / 31]);
});

test('a send that blocks after delivering does not hold back its receiver', () => {
  // The send runs 10–60 (waiting for the receiver to free its buffer); the data arrived at 11.
  const t = transfer([10, 60], [10, 11]);
  const cp = analyse(t).criticalPath;
  // The receiver's path is 10 + 1 + 20 = 31; the sender's lane is 10 + 50 = 60 long.
  assert.deepEqual(cp.lengthUs, [60]);
  assert.deepEqual(pathOf(t, cp.representative!.spans), ['0:stage.run', '0:send']);
  assert.deepEqual(cp.laneSlackUs, [0, 29]);
});

test('comm running under compute on the same lane does not lengthen the path', () => {
  const rows: SpanRow[] = [
    { lane: 0, kind: 'compute', name: 'a', start: 0, dur: 100, step: 0 },
    { lane: 0, kind: 'comm', name: 'prefetch', start: 10, dur: 20, step: 0, peer: 1 },
    { lane: 0, kind: 'compute', name: 'b', start: 100, dur: 50, step: 0 },
  ];
  const t = traceOf(rows, [[0, 150]], meta({}, 1));
  const cp = analyse(t).criticalPath;
  assert.deepEqual(cp.lengthUs, [150]);
  assert.deepEqual(pathOf(t, cp.representative!.spans), ['0:a', '0:b']);
});

test('gaps between spans carry no weight: the path is shorter than a step with host gaps', () => {
  const rows: SpanRow[] = [
    { lane: 0, kind: 'compute', name: 'a', start: 0, dur: 10, step: 0 },
    { lane: 0, kind: 'compute', name: 'b', start: 20, dur: 10, step: 0 },
  ];
  const cp = analyse(traceOf(rows, [[0, 30]], meta({}, 1))).criticalPath;
  assert.deepEqual(cp.lengthUs, [20]);
  assert.equal(cp.representative!.stepUs, 30);
});

test('cross-lane links that would form a cycle are dropped and the step counted', () => {
  // Each lane receives before it sends, and each send feeds the other lane's recv: a cycle
  // only inconsistent clocks can produce.
  const rows: SpanRow[] = [
    { lane: 0, kind: 'comm', name: 'recv', comm: 'recv', start: 0, dur: 5, step: 0, peer: 1, micro: 0 },
    { lane: 0, kind: 'comm', name: 'send', comm: 'send', start: 5, dur: 5, step: 0, peer: 1, micro: 1 },
    { lane: 1, kind: 'comm', name: 'recv', comm: 'recv', start: 0, dur: 5, step: 0, peer: 0, micro: 1 },
    { lane: 1, kind: 'comm', name: 'send', comm: 'send', start: 5, dur: 5, step: 0, peer: 0, micro: 0 },
  ];
  const cp = analyse(traceOf(rows, [[0, 10]], meta({ plan: pipelinePlan() }))).criticalPath;
  assert.equal(cp.cyclicSteps, 1);
  assert.deepEqual(cp.lengthUs, [10]);
});

test('a lane with nothing to do in a step has the whole path as slack', () => {
  const rows: SpanRow[] = [{ lane: 0, kind: 'compute', name: 'a', start: 0, dur: 10, step: 0 }];
  const cp = analyse(traceOf(rows, [[0, 10]])).criticalPath;
  assert.deepEqual(cp.laneSlackUs, [0, 10]);
});
