/**
 * The data-parallel training compiler (pure): gradient buckets in reverse layer order, the
 * instruction list of a training step, the plan's training part and its validation, and the
 * simulator running a compiled training program.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { freezePattern, makePlan, PlanFieldError, TRAIN_DEFAULTS, withPlanFields, type DataPlan, type TrainPlan } from '../../src/profiler/plan';
import { Value } from '@sinclair/typebox/value';
import { ProgramSchema, type Program } from '../../src/profiler/program';
import { BUCKET_MB_BYTES, bucketGradients, compileTrainData } from '../../src/runtime/compile/train-data';
import type { CompileContext, TrainingContext } from '../../src/runtime/compile/common';
import { FREE_LINK, setComputeCost, simulate, type CostModel } from '../../src/profiler/simulate';
import { syntheticMeta } from '../../src/profiler/analysis/synthetic';
import { PhaseCode, SpanFlag, SpanKind, CommOpCode } from '../../src/profiler/trace-format';

const param = (name: string, elements: number) => ({ name, grad: `${name}_grad`, elements });

test('bucketGradients fills buckets from the last parameter to the first, up to the bucket size', () => {
  // 4-byte floats: a bucket of 400 bytes holds 100 elements.
  const params = [param('l0.w', 60), param('l0.b', 10), param('l1.w', 60), param('l1.b', 10), param('l2.w', 30)];
  const buckets = bucketGradients(params, 400);
  assert.deepEqual(
    buckets.map((b) => b.parameters.map((p) => p.name)),
    // 30 + 10 + 60 fills the first bucket exactly; 10 + 60 the second.
    [['l2.w', 'l1.b', 'l1.w'], ['l0.b', 'l0.w']],
  );
  for (const b of buckets) {
    assert.ok(b.elements * 4 <= 400, `bucket of ${b.elements * 4} bytes`);
    assert.equal(b.elements, b.parameters.reduce((n, p) => n + p.elements, 0));
  }
  assert.equal(buckets.reduce((n, b) => n + b.elements, 0), 170, 'every element in exactly one bucket');
});

test('a parameter larger than a bucket gets a bucket of its own, and neighbours are not merged into it', () => {
  const buckets = bucketGradients([param('a', 10), param('big', 500), param('c', 10)], 400);
  assert.deepEqual(buckets.map((b) => b.parameters.map((p) => p.name)), [['c'], ['big'], ['a']]);
  assert.equal(buckets[1]!.elements, 500);
});

test('one bucket holds everything when the bucket is larger than all gradients together; a smaller one splits them', () => {
  const params = Array.from({ length: 8 }, (_, i) => param(`p${i}`, 1000));
  assert.equal(bucketGradients(params, 25 * BUCKET_MB_BYTES).length, 1);
  assert.equal(bucketGradients(params, 2000 * 4).length, 4);
  assert.equal(bucketGradients(params, 1).length, 8);
});

function trainingContext(): TrainingContext {
  const parameters = [
    { name: 'fc1.w', dims: [16, 32], grad: 'fc1.w_grad' },
    { name: 'fc1.b', dims: [32], grad: 'fc1.b_grad' },
    { name: 'fc2.w', dims: [32, 8], grad: 'fc2.w_grad' },
  ];
  return {
    parameters,
    loss: 'loss',
    labels: 'labels',
    optimizer: { state: [], updated: parameters.map((p) => ({ param: p.name, output: `${p.name}_new` })), lrInput: 'optimizer.lr', stepInput: null },
  };
}

function context(devices: number): CompileContext & { training: TrainingContext } {
  return {
    inputs: [
      { name: 'x', dtype: 'float32', dims: [8, 16], batchAxis: 0 },
      { name: 'labels', dtype: 'float32', dims: [8, 8], batchAxis: 0 },
    ],
    outputs: [],
    parameterCount: 16 * 32 + 32 + 32 * 8,
    devices,
    nodeNames: [],
    training: trainingContext(),
  };
}

function trainPlan(devices: number, train: Partial<TrainPlan> = {}): DataPlan & { train: TrainPlan } {
  return { mode: 'data', devices: `cpu:${devices}`, batch: 8, steps: 3, warmup: 1, seed: 0, train: { ...TRAIN_DEFAULTS, ...train } };
}

test('a training step is scatter, forward, per bucket a backward part and the start of its all-reduce, a wait, then the optimizer', () => {
  // 1 KB buckets: fc2.w (1 KiB) alone, then fc1.b, then fc1.w (2 KiB) alone.
  const p = compileTrainData(trainPlan(2, { bucketMb: 1024 / BUCKET_MB_BYTES }), context(2));
  assert.ok(Value.Check(ProgramSchema, p), 'a valid program');
  assert.deepEqual(p.segments.map((s) => s.kind), ['train-forward', 'train-backward', 'train-backward', 'train-backward', 'optimizer']);
  assert.deepEqual(p.segments.map((s) => (s.kind === 'train-backward' ? s.bucket : null)), [null, 0, 1, 2, null], 'one backward part per bucket, in bucket order');
  assert.deepEqual(p.buffers.map((b) => b.gradients?.map((g) => g.param)), [['fc2.w'], ['fc1.b'], ['fc1.w']]);
  for (const d of p.devices) {
    const ops = d.instructions.map((i) => (i.op === 'run' ? `run:${i.phase}` : i.op));
    assert.deepEqual(ops, [
      'scatter', 'run:forward',
      'run:backward', 'collective-start', 'run:backward', 'collective-start', 'run:backward', 'collective-start',
      'collective-wait', 'run:optimizer',
    ], 'each bucket\'s all-reduce starts right after its backward part');
    const scatter = d.instructions[0]!;
    assert.ok(scatter.op === 'scatter' && scatter.tensors.includes('labels'), 'labels are scattered with the inputs');
    const started = d.instructions.flatMap((i) => (i.op === 'collective-start' ? [i.buffer] : []));
    assert.deepEqual(started, p.buffers.map((b) => b.name), 'buckets start in order');
    const wait = d.instructions.find((i) => i.op === 'collective-wait');
    assert.deepEqual(wait?.op === 'collective-wait' ? wait.buffers : null, started, 'the optimizer waits for every bucket');
    const bytes = d.instructions.flatMap((i) => (i.op === 'collective-start' ? [i.bytes] : []));
    assert.equal(bytes.reduce((a, b) => a + b, 0), p.training!.parameters.reduce((n, q) => n + q.dims.reduce((a, b) => a * b, 1), 0) * 4, 'the buckets carry every parameter byte');
  }
  assert.deepEqual(p.devices.map((d) => (d.instructions[0]!.op === 'scatter' ? d.instructions[0]!.rows : null)), [{ start: 0, count: 4 }, { start: 4, count: 4 }]);
  // Packing offsets are contiguous within each bucket.
  for (const b of p.buffers) {
    let offset = 0;
    for (const g of b.gradients!) {
      assert.equal(g.offset, offset);
      offset += g.elements;
    }
    assert.equal(offset, b.elements);
  }
});

test('the plan carries its training part; 1F1B without training, --grad-sync with --train and bad numbers are refused with one line', () => {
  const base = { devices: 'cpu:2', batch: 8, steps: 2, warmup: 1, seed: 0 };
  const plan = makePlan({ mode: 'data', ...base, train: { ...TRAIN_DEFAULTS, optimizer: 'adam', lr: 0.001 } });
  assert.equal(plan.mode === 'data' && plan.train?.optimizer, 'adam');
  assert.deepEqual(withPlanFields(plan, { steps: 5 }), { ...plan, steps: 5 }, 'the training part survives a change of other fields');
  const refused = (f: () => unknown, pattern: RegExp): void =>
    assert.throws(f, (e: unknown) => e instanceof PlanFieldError && pattern.test(e.message) && !e.message.includes('\n'));
  const pipe = makePlan({ mode: 'pipeline', ...base, schedule: '1f1b', train: { ...TRAIN_DEFAULTS } });
  assert.equal(pipe.mode === 'pipeline' && pipe.schedule === '1f1b' && pipe.train?.loss, 'mse', 'a pipeline carries its training part');
  refused(() => makePlan({ mode: 'pipeline', ...base, schedule: '1f1b' }), /^--schedule 1f1b .*needs --train/);
  refused(() => makePlan({ mode: 'pipeline', ...base, train: { ...TRAIN_DEFAULTS, lr: -2 } }), /learning rate -2/);
  refused(() => makePlan({ mode: 'data', ...base, gradSync: true, train: { ...TRAIN_DEFAULTS } }), /--grad-sync .*synthetic/);
  refused(() => makePlan({ mode: 'data', ...base, train: { ...TRAIN_DEFAULTS, lr: 0 } }), /learning rate 0/);
  refused(() => makePlan({ mode: 'data', ...base, train: { ...TRAIN_DEFAULTS, bucketMb: -1 } }), /bucket size -1/);
  refused(() => makePlan({ mode: 'data', ...base, train: { ...TRAIN_DEFAULTS, optimizer: 'lbfgs' as 'sgd' } }), /optimizer "lbfgs"/);
});

test('the simulator runs a compiled training program: forward, backward and optimizer by phase, one gradient all-reduce per bucket', () => {
  const p: Program = compileTrainData(trainPlan(2, { bucketMb: 1024 / BUCKET_MB_BYTES }), context(2));
  const costs: CostModel = { compute: {}, transfers: { copy: FREE_LINK, p2p: FREE_LINK, collective: { alphaUs: 5, bytesPerUs: 100 } } };
  const phases = { 'train-forward': 'forward', 'train-backward': 'backward', optimizer: 'optimizer' } as const;
  for (let r = 0; r < 2; r++) {
    for (const seg of p.segments) {
      if (seg.kind === 'train-forward' || seg.kind === 'train-backward' || seg.kind === 'optimizer') setComputeCost(costs, r, seg, phases[seg.kind], { fixedUs: 100, perRowUs: 10 });
    }
  }
  const meta = syntheticMeta(2, { mode: 'data', devices: 'cpu:2', batch: 8, steps: 2, warmup: 0, seed: 0, train: { ...TRAIN_DEFAULTS } });
  const trace = simulate(p, costs, { steps: 2, meta });
  const s = trace.spans;
  const computeByPhase = new Map<number, number>();
  let gradientAllReduces = 0;
  for (let i = 0; i < s.count; i++) {
    if (s.kind[i] === SpanKind.compute) computeByPhase.set(s.phase[i]!, (computeByPhase.get(s.phase[i]!) ?? 0) + 1);
    if (s.kind[i] === SpanKind.comm && s.comm[i] === CommOpCode.allreduce) {
      assert.ok((s.flags[i]! & SpanFlag.gradient) !== 0, 'a bucket all-reduce is marked gradient');
      gradientAllReduces++;
    }
  }
  for (const ph of ['forward', 'optimizer'] as const) assert.equal(computeByPhase.get(PhaseCode[ph]), 2 * 2, `${ph}: one span per device per step`);
  assert.equal(computeByPhase.get(PhaseCode.backward), 2 * 2 * p.buffers.length, 'backward: one span per bucket per device per step');
  assert.equal(gradientAllReduces, 2 * 2 * p.buffers.length);
});

test('one device packs its buckets without starting anything on a communication thread', () => {
  const p = compileTrainData(trainPlan(1, { bucketMb: 1024 / BUCKET_MB_BYTES }), context(1));
  const ops = p.devices[0]!.instructions.map((i) => i.op);
  assert.ok(!ops.includes('collective-start') && !ops.includes('collective-wait'));
  assert.equal(ops.filter((o) => o === 'collective').length, p.buffers.length);
  assert.ok(p.devices[0]!.instructions.every((i) => i.op !== 'collective' || i.bytes === 0), 'a group of one moves nothing');
});

test('the simulator overlaps a started all-reduce with the next backward part, on a communication thread per rank', () => {
  const p = compileTrainData(trainPlan(2, { bucketMb: 1024 / BUCKET_MB_BYTES }), context(2));
  const costs: CostModel = { compute: {}, transfers: { copy: FREE_LINK, p2p: FREE_LINK, collective: { alphaUs: 300, bytesPerUs: 1e12 } } };
  const phases = { 'train-forward': 'forward', 'train-backward': 'backward', optimizer: 'optimizer' } as const;
  for (let r = 0; r < 2; r++) {
    for (const seg of p.segments) {
      if (seg.kind === 'train-forward' || seg.kind === 'train-backward' || seg.kind === 'optimizer') setComputeCost(costs, r, seg, phases[seg.kind], { fixedUs: 1000, perRowUs: 0 });
    }
  }
  const meta = syntheticMeta(2, { mode: 'data', devices: 'cpu:2', batch: 8, steps: 1, warmup: 0, seed: 0, train: { ...TRAIN_DEFAULTS } });
  const trace = simulate(p, costs, { steps: 1, meta });
  const s = trace.spans;
  const lane0 = (kind: number, phase?: number): { start: number; end: number }[] => {
    const out: { start: number; end: number }[] = [];
    for (let i = 0; i < s.count; i++) {
      const wanted = kind === SpanKind.comm ? s.comm[i] === CommOpCode.allreduce : s.phase[i] === phase;
      if (s.lane[i] === 0 && s.kind[i] === kind && wanted) out.push({ start: s.start[i]!, end: s.start[i]! + s.dur[i]! });
    }
    return out.sort((a, b) => a.start - b.start);
  };
  const backward = lane0(SpanKind.compute, PhaseCode.backward);
  const reduces = lane0(SpanKind.comm);
  assert.equal(reduces.length, 3);
  // Bucket 0's all-reduce (300 µs, ring of 2: 2 × α) runs while backward part 1 (1000 µs) does.
  assert.ok(reduces[0]!.start >= backward[0]!.end && reduces[0]!.end <= backward[1]!.end, 'the first all-reduce overlaps the second backward part');
  // Forward 1000 + 3 backward parts 3000 + the last bucket's all-reduce (exposed) + optimizer 1000.
  const step = trace.steps[0]!.endUs - trace.steps[0]!.startUs;
  const ringUs = reduces[2]!.end - reduces[2]!.start;
  assert.ok(Math.abs(step - (5000 + ringUs)) < 1e-6, `step ${step} µs: only the last bucket's all-reduce is exposed`);
});

test('--grad-dtype sets the bytes each bucket\'s all-reduce carries to the encoded size and tells the devices', () => {
  const elements = (p: Program): number[] => p.buffers.map((b) => b.elements);
  const started = (p: Program): number[] => p.devices[0]!.instructions.flatMap((i) => (i.op === 'collective-start' ? [i.bytes] : []));
  const f32 = compileTrainData(trainPlan(2, { bucketMb: 1024 / BUCKET_MB_BYTES }), context(2));
  const f16 = compileTrainData(trainPlan(2, { bucketMb: 1024 / BUCKET_MB_BYTES, gradDtype: 'float16' }), context(2));
  const i8 = compileTrainData(trainPlan(2, { bucketMb: 1024 / BUCKET_MB_BYTES, gradDtype: 'int8' }), context(2));
  assert.deepEqual(elements(f16), elements(f32), 'the same buckets');
  assert.deepEqual(started(f32), elements(f32).map((e) => 4 * e));
  assert.deepEqual(started(f16), elements(f32).map((e) => 2 * e));
  // One byte per element plus a float32 scale per chunk, padded to 4 bytes.
  started(i8).forEach((b, k) => assert.equal(b, 4 + Math.ceil(elements(i8)[k]! / 4) * 4));
  assert.equal(f32.training!.gradDtype, undefined);
  assert.equal(i8.training!.gradDtype, 'int8');
  assert.ok(Value.Check(ProgramSchema, i8));
  // One device sends nothing, so nothing is encoded.
  assert.equal(compileTrainData(trainPlan(1, { gradDtype: 'int8' }), context(1)).training!.gradDtype, undefined);
});

test('--sync-every k compiles local SGD: no gradient moves, the optimizer follows the backward, and the parameters are averaged every k-th step', () => {
  const p = compileTrainData(trainPlan(2, { syncEvery: 3, bucketMb: 1024 / BUCKET_MB_BYTES }), context(2));
  assert.ok(Value.Check(ProgramSchema, p), 'a valid program');
  assert.equal(p.segments.filter((s) => s.kind === 'train-backward').length, 1, 'one backward part: nothing overlaps it');
  const params = p.buffers.find((b) => b.parameters);
  assert.ok(params);
  assert.deepEqual(params.parameters!.map((x) => x.param), ['fc1.w', 'fc1.b', 'fc2.w']);
  assert.equal(params.elements, 16 * 32 + 32 + 32 * 8);
  for (const d of p.devices) {
    const ops = d.instructions.map((i) => (i.op === 'run' ? `run:${i.phase}` : i.op));
    assert.deepEqual(ops, ['scatter', 'run:forward', 'run:backward', 'run:optimizer', 'collective']);
    const avg = d.instructions.at(-1)!;
    assert.ok(avg.op === 'collective' && avg.buffer === params.name && avg.every === 3 && avg.bytes === params.elements * 4);
  }
  // The simulator averages in every third step only.
  const costs: CostModel = { compute: {}, transfers: { copy: FREE_LINK, p2p: FREE_LINK, collective: { alphaUs: 5, bytesPerUs: 100 } } };
  const phases = { 'train-forward': 'forward', 'train-backward': 'backward', optimizer: 'optimizer' } as const;
  for (let r = 0; r < 2; r++) {
    for (const seg of p.segments) {
      if (seg.kind === 'train-forward' || seg.kind === 'train-backward' || seg.kind === 'optimizer') setComputeCost(costs, r, seg, phases[seg.kind], { fixedUs: 100, perRowUs: 10 });
    }
  }
  const meta = syntheticMeta(2, { mode: 'data', devices: 'cpu:2', batch: 8, steps: 6, warmup: 0, seed: 0, train: { ...TRAIN_DEFAULTS, syncEvery: 3 } });
  const trace = simulate(p, costs, { steps: 6, meta });
  const stepsWithAverage = new Set<number>();
  for (let i = 0; i < trace.spans.count; i++) if (trace.spans.comm[i] === CommOpCode.allreduce) stepsWithAverage.add(trace.spans.step[i]!);
  assert.deepEqual([...stepsWithAverage].sort(), [2, 5]);
  // k = 1 is today's gradient all-reduce; compression and local SGD together are refused.
  assert.deepEqual(compileTrainData(trainPlan(2, { syncEvery: 1 }), context(2)).devices[0]!.instructions.map((i) => i.op), compileTrainData(trainPlan(2), context(2)).devices[0]!.instructions.map((i) => i.op));
  const base = { devices: 'cpu:2', batch: 8, steps: 2, warmup: 1, seed: 0 };
  assert.throws(() => makePlan({ mode: 'data', ...base, train: { ...TRAIN_DEFAULTS, syncEvery: 2, gradDtype: 'int8' } }), /use one or the other/);
  assert.throws(() => makePlan({ mode: 'data', ...base, train: { ...TRAIN_DEFAULTS, syncEvery: 1.5 } }), /sync interval 1.5/);
});

test('freeze patterns: a glob matches the whole name, /…/ a regular expression anywhere; a broken one is refused', () => {
  const glob = freezePattern('layers.0.*');
  assert.ok(glob.test('layers.0.mlp.fc1.weight'));
  assert.ok(!glob.test('layers.10.mlp.fc1.weight'), '"." is literal');
  assert.ok(!glob.test('x.layers.0.w'), 'anchored');
  assert.ok(freezePattern('fc?.bias').test('fc2.bias'));
  assert.ok(freezePattern('/fc2/').test('layers.1.mlp.fc2.bias'));
  assert.throws(() => freezePattern('/(/'), (e: unknown) => e instanceof PlanFieldError && /write a valid regular expression/.test(e.message));
  assert.throws(() => freezePattern(''), PlanFieldError);
});
