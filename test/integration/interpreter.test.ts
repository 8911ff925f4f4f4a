/**
 * The execution model in-process, without a runner child process: plans compile to
 * programs, and the interpreter runs them with real ONNX Runtime sessions — in this test's
 * own thread for one device, and in worker threads over the shared-memory communicator for
 * data and pipeline programs of several devices.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { Interpreter } from '../../src/runtime/device/interpreter';
import { compile } from '../../src/runtime/compile';
import { probeMicroBatches, runProfile } from '../../src/runtime/runner/runner';
import { ensureDemoModel } from '../../src/runtime/onnx/demo-model';
import { makePlan, type Plan } from '../../src/profiler/plan';
import { spanRow, SpanFlag, SpanKind, type Trace } from '../../src/profiler/trace-format';
import { median } from '../../src/profiler/stats';
import type { FromDevice, SharedInput } from '../../src/runtime/protocol';
import { writeTinyMatMulModel, seededValues, tinyMatMulReference } from '../helpers/tiny-model';
import { tempDir } from '../helpers/temp';

const dir = tempDir('interp');

test('a one-device data program runs on the interpreter in this thread and gathers the model output', async () => {
  const tiny = writeTinyMatMulModel({ k: 16, n: 8 });
  try {
    const batch = 6;
    const x = seededValues(batch * 16, 3);
    const sab = new SharedArrayBuffer(x.byteLength);
    new Float32Array(sab).set(x);
    const inputs: SharedInput[] = [{ name: 'x', dtype: 'float32', dims: [batch, 16], batchAxis: 0, data: sab }];
    const program = compile(makePlan({ mode: 'data', devices: 'cpu:1', batch, steps: 2, warmup: 1, seed: 0 }), { mode: 'data' }, {
      inputs: [{ name: 'x', dtype: 'float32', dims: [batch, 16], batchAxis: 0 }],
      outputs: [{ name: 'y', batchAxis: 0 }],
      parameterCount: 16 * 8 + 8,
      devices: 1,
      nodeNames: tiny.nodeNames,
    });
    assert.deepEqual(
      program.devices[0].instructions.map((i) => i.op),
      ['scatter', 'run', 'gather'],
    );
    const got: FromDevice[] = [];
    const it = new Interpreter((m) => got.push(m));
    await it.handle({
      type: 'init',
      rank: 0,
      worldSize: 1,
      device: { id: 'cpu:0', kind: 'cpu', executionProviders: [{ name: 'cpu' }], intraOpNumThreads: 1 },
      program: program.devices[0],
      segmentPaths: { 0: tiny.path },
      outputs: program.outputs,
      buffers: program.buffers,
      batch,
      inputs,
      comm: null,
      steps: 2,
      capture: true,
      opLevel: false,
      profileDir: dir,
    });
    await it.handle({ type: 'run', first: -1, steps: 1, record: false });
    await it.handle({ type: 'run', first: 0, steps: 2, record: true });
    await it.handle({ type: 'finish', profiledSteps: 0 });
    const errors = got.filter((m) => m.type === 'error');
    assert.deepEqual(errors, []);
    const done = got.find((m) => m.type === 'done');
    assert.ok(done && done.type === 'done');
    const y = new Float32Array(done.outputs[0].data);
    const want = tinyMatMulReference(tiny, x);
    for (let i = 0; i < want.length; i++) assert.ok(Math.abs(y[i] - want[i]) < 1e-4, `y[${i}] = ${y[i]}, want ${want[i]}`);
    // Spans come from the instructions: a scatter, a compute and a gather per measured step.
    const spans = done.spans!;
    const kinds = Array.from({ length: spans.count }, (_, i) => `${spans.kind[i]}:${spans.comm[i]}:${spans.phase[i]}`);
    assert.deepEqual(kinds, ['1:1:0', '0:0:1', '1:2:0', '1:1:0', '0:0:1', '1:2:0']);
  } finally {
    tiny.dispose();
  }
});

const progress = { progress: (): void => {} };

async function demoRun(plan: Plan): Promise<Trace> {
  const model = await ensureDemoModel(join(dir, 'cache'), { layers: 4, hidden: 64, ffn: 128 });
  const r = await runProfile({ modelPath: model, modelLabel: 'demo', plan, capture: true, opLevel: false, baseline: true, outPath: null }, progress);
  assert.ok(r.trace);
  return r.trace;
}

test('a data program on two worker threads all-reduces its gradient buffer and matches one device', async () => {
  const t = await demoRun(makePlan({ mode: 'data', devices: 'cpu:2', batch: 8, steps: 2, warmup: 1, seed: 0, gradSync: true }));
  assert.equal(t.meta.numericalCheck?.ok, true, JSON.stringify(t.meta.numericalCheck));
  assert.equal(t.meta.program?.mode, 'data');
  const rows = Array.from({ length: t.spans.count }, (_, i) => spanRow(t, i)).filter((r) => r.kind === 'comm');
  // Every communication span says what it is in its own column, from its instruction.
  assert.deepEqual(new Set(rows.map((r) => r.comm)), new Set(['scatter', 'gather', 'allreduce']));
  assert.equal(rows.filter((r) => r.comm === 'allreduce').length, 2 * 2);
});

test('a pipeline program on two worker threads streams micro-batches stage to stage and matches one device', async () => {
  const t = await demoRun(makePlan({ mode: 'pipeline', devices: 'cpu:2', batch: 8, steps: 2, warmup: 1, seed: 0, microBatches: 2 }));
  assert.equal(t.meta.numericalCheck?.ok, true, JSON.stringify(t.meta.numericalCheck));
  const program = t.meta.program!;
  assert.equal(program.mode, 'pipeline');
  assert.deepEqual(
    program.devices[0].instructions.map((i) => i.op),
    ['scatter', 'run', 'send', 'scatter', 'run', 'send'],
  );
  assert.deepEqual(
    program.devices[1].instructions.map((i) => i.op),
    ['recv', 'run', 'gather', 'recv', 'run', 'gather'],
  );
  const rows = Array.from({ length: t.spans.count }, (_, i) => spanRow(t, i));
  const sends = rows.filter((r) => r.comm === 'send');
  const recvs = rows.filter((r) => r.comm === 'recv');
  assert.ok(sends.length >= 4 && sends.every((r) => r.lane === 0 && r.peer === 1 && r.stage === 0));
  assert.ok(recvs.length === sends.length && recvs.every((r) => r.lane === 1 && r.peer === 0 && r.stage === 1));
  assert.deepEqual(new Set(rows.filter((r) => r.kind === 'compute').map((r) => r.micro)), new Set([0, 1]));
});

test('the baseline and the measured steps run with identical capture settings, interleaved, and no timed step runs under the operator profiler', async () => {
  const model = await ensureDemoModel(join(dir, 'cache'), { layers: 4, hidden: 64, ffn: 128 });
  const plan = makePlan({ mode: 'data', devices: 'cpu:2', batch: 8, steps: 4, warmup: 1, seed: 0 });
  const r = await runProfile({ modelPath: model, modelLabel: 'demo', plan, capture: true, opLevel: true, baseline: true, outPath: null }, progress);
  const t = r.trace!;
  const capture = t.meta.capture!;
  const base = t.meta.baseline!;
  assert.equal(capture.opProfilerOnTimedSteps, false);
  assert.ok(capture.profiledSteps > 0, 'operator detail was asked for');
  assert.deepEqual({ ...base.capture!, profiledSteps: 0 }, { ...capture, profiledSteps: 0 }, 'same capture for the timed steps of both');
  assert.equal(base.schedule, 'interleaved');
  assert.equal(base.stepTimesUs?.length, 4);
  // The blocks the two alternated in cover every timed step of both, so the interval can
  // resample them as pairs.
  const blocks = t.meta.timedBlocks;
  assert.ok(blocks && blocks.length > 1, `blocks: ${JSON.stringify(blocks)}`);
  assert.equal(blocks.reduce((a, b) => a + b, 0), t.steps.length);
  const s = r.summary!;
  assert.ok(s.speedupInterval && s.speedupInterval.lo <= s.speedupVsOneDevice! && s.speedupVsOneDevice! <= s.speedupInterval.hi);
  // Every operator span hangs under a profiled compute span, outside the timed steps.
  const timed = new Set(t.steps.map((w) => w.index));
  let ops = 0;
  for (let i = 0; i < t.spans.count; i++) {
    if (t.spans.parent[i] < 0) continue;
    ops++;
    const p = t.spans.parent[i];
    assert.ok((t.spans.flags[p] & SpanFlag.profiled) !== 0);
    assert.equal(timed.has(t.spans.step[p]), false);
  }
  assert.ok(ops > 0, 'operator spans were recorded');
  assert.equal(t.profiledSteps?.length, capture.profiledSteps);
});

test('probeMicroBatches picks the next micro-batch count that divides the batch, else the nearest below', () => {
  assert.equal(probeMicroBatches(8, 1), 2);
  assert.equal(probeMicroBatches(8, 2), 4);
  assert.equal(probeMicroBatches(12, 4), 6);
  assert.equal(probeMicroBatches(8, 8), 4);
  assert.equal(probeMicroBatches(1, 1), null);
});

test('without the micro-batch probe a pipeline run records none', async () => {
  const model = await ensureDemoModel(join(dir, 'cache'), { layers: 4, hidden: 64, ffn: 128 });
  const plan = makePlan({ mode: 'pipeline', devices: 'cpu:2', batch: 8, steps: 2, warmup: 1, seed: 0, microBatches: 2 });
  const r = await runProfile({ modelPath: model, modelLabel: 'demo', plan, capture: true, probe: false, opLevel: false, baseline: false, outPath: null }, progress);
  assert.equal(r.trace!.meta.microProbe, undefined);
  assert.equal(r.summary!.probe, undefined);
});

test('the capture check runs the same steps with capture off in the same workers, keeps their windows apart and records no span for them', async () => {
  const model = await ensureDemoModel(join(dir, 'cache'), { layers: 4, hidden: 64, ffn: 128 });
  const plan = makePlan({ mode: 'pipeline', devices: 'cpu:2', batch: 8, steps: 6, warmup: 1, seed: 0, microBatches: 2 });
  const r = await runProfile({ modelPath: model, modelLabel: 'demo', plan, capture: true, captureCheck: true, opLevel: false, baseline: true, outPath: null }, progress);
  const t = r.trace!;
  const off = t.meta.captureCheck?.stepTimesUs ?? [];
  assert.equal(off.length, 6, 'one uncaptured window per timed step');
  assert.ok(off.every((us) => us > 0));
  // Spans belong to the captured timed steps only: 6 steps × 2 micro-batches × 2 stages of compute.
  const computeSteps = new Set<number>();
  let compute = 0;
  for (let i = 0; i < t.spans.count; i++) {
    if (t.spans.kind[i] !== SpanKind.compute || t.spans.parent[i] >= 0) continue;
    compute++;
    computeSteps.add(t.spans.step[i]);
  }
  assert.equal(compute, 6 * 2 * 2);
  assert.deepEqual([...computeSteps].sort((a, b) => a - b), [0, 1, 2, 3, 4, 5]);
  const c = r.summary!.captureOverhead!;
  assert.equal(c.steps, 6);
  assert.ok(c.lo <= c.ratio && c.ratio <= c.hi, 'the overhead lies inside its interval');
  assert.equal(c.uncapturedUs, median(off));
  assert.equal(c.capturedUs, median(t.steps.map((w) => w.endUs - w.startUs)));
  assert.ok(t.meta.notes.some((n) => n.startsWith('Capture check:')));
  // The pipeline also measured a second micro-batch count (4) on workers of its own, for half the steps.
  const probe = t.meta.microProbe!;
  assert.equal(probe.microBatches, 4);
  assert.equal(probe.stepTimesUs.length, 3);
  assert.ok(probe.stepTimesUs.every((us) => us > 0));
  assert.equal(probe.stagePerMicroUs.length, 2);
  assert.ok(probe.stagePerMicroUs.every((us) => us > 0));
  assert.equal(r.summary!.probe?.microBatches, 4);
  assert.ok(t.meta.notes.some((n) => n.startsWith('Probe: 3 steps with 4 micro-batches')));
  // Its spans stay out of the run's trace: only micro-batches 0 and 1 computed there.
  const micros = new Set<number>();
  for (let i = 0; i < t.spans.count; i++) if (t.spans.kind[i] === SpanKind.compute) micros.add(t.spans.micro[i]);
  assert.deepEqual([...micros].sort(), [0, 1]);
  // With training the extra steps would train further than the reference: refused up front.
  await assert.rejects(
    runProfile({ modelPath: model, modelLabel: 'demo', plan: makePlan({ mode: 'data', devices: 'cpu:2', batch: 8, steps: 2, warmup: 1, seed: 0, train: { loss: 'mse', optimizer: 'sgd', lr: 0.01, bucketMb: 25 } } as never), capture: true, captureCheck: true, opLevel: false, baseline: false, outPath: null }, progress),
    /--capture-check runs the timed steps twice/,
  );
});

test('a data-parallel run also measures twice its batch, on workers of its own, with its inputs repeated', async () => {
  const model = await ensureDemoModel(join(dir, 'cache'), { layers: 4, hidden: 64, ffn: 128 });
  const plan = makePlan({ mode: 'data', devices: 'cpu:2', batch: 4, steps: 4, warmup: 1, seed: 0, shards: [3, 1] });
  const r = await runProfile({ modelPath: model, modelLabel: 'demo', plan, capture: true, opLevel: false, baseline: true, outPath: null }, progress);
  const t = r.trace!;
  assert.equal(t.meta.batchProbe?.batch, 8);
  assert.equal(t.meta.batchProbe?.stepTimesUs.length, 2);
  assert.equal(r.summary!.probe?.batch, 8);
  assert.ok(t.meta.notes.some((n) => n.startsWith('Probe: 2 steps with the batch of 8')));
  // The run itself is untouched: its own rows, outputs equal to one device's.
  assert.equal(t.meta.numericalCheck?.ok, true);
  assert.equal(t.meta.microProbe, undefined);
});
