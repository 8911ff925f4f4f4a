/**
 * `parallax profile --mode tensor` end to end on cpu:2: a real runner process, real worker
 * threads, real onnxruntime-node sessions on each device's shard models, and the partial sums
 * all-reduced through the communicator. The outputs are checked against one device running
 * the whole model on the same inputs (read from a file, so the test knows them too), and the
 * timeline for one all-reduce per split layer inside every device's step.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { runCli, expectUserError } from '../helpers/cli';
import { tempDir } from '../helpers/temp';
import { seededValues } from '../helpers/tiny-model';
import { buildDemoModel } from '../../src/runtime/onnx/demo-model';
import { nothingToSplitModelBytes, transformerModelBytes } from '../helpers/transformer-model';
import { readTrace } from '../../src/profiler/trace-io';
import { analyse } from '../../src/profiler/analysis/index';
import { deriveIdle } from '../../src/profiler/idle';
import { CommOpCode, SpanFlag, type Trace } from '../../src/profiler/trace-format';
import { fitCostModel, simulate } from '../../src/profiler/simulate';
import { MISSING_MODELS_HINT, wakewordAlexaModelPath } from '../helpers/models';
import { allReducesPerStep, assertMatchesOneDevice } from '../helpers/parallel-check';

const dir = tempDir('tensor-parallel');
const env = { PARALLAX_CACHE: join(dir, 'cache') };

function writeModel(name: string, bytes: Uint8Array): string {
  const path = join(dir, name);
  writeFileSync(path, bytes);
  return path;
}

/** Runs `profile --mode tensor` on cpu:2 with input `x` of `dims` from a file; returns the trace and the input. */
async function profileTensor(model: string, dims: number[], name: string): Promise<{ trace: Trace; x: Float32Array }> {
  const x = seededValues(dims.reduce((a, b) => a * b, 1), 7);
  const inputs = join(dir, `${name}.inputs.json`);
  writeFileSync(inputs, JSON.stringify({ x: { dims, data: Array.from(x) } }));
  const out = join(dir, `${name}.parallax.json`);
  const r = await runCli(['profile', model, '--mode', 'tensor', '--devices', 'cpu:2', '--batch', String(dims[0]), '--steps', '3', '--warmup', '1', '--inputs', inputs, '--out', out], { env });
  assert.equal(r.code, 0, r.stderr);
  return { trace: await readTrace(out), x };
}

test('demo model, tensor parallel on cpu:2: output of one device, half the parameters per device, one all-reduce per block', async () => {
  const layers = 3;
  const model = writeModel('demo-small.onnx', buildDemoModel({ layers, hidden: 64, ffn: 256 }));
  const dims = [8, 64];
  const { trace, x } = await profileTensor(model, dims, 'demo');
  await assertMatchesOneDevice(trace, model, x, dims);

  const plan = trace.meta.plan;
  assert.equal(plan.mode, 'tensor');
  if (plan.mode !== 'tensor') return;
  assert.equal(plan.tensor, 2);
  for (const bytes of plan.perDeviceParameterBytes!) {
    const share = bytes / plan.parameterBytes!;
    assert.ok(Math.abs(share - 0.5) <= 0.05, `a device holds ${(share * 100).toFixed(1)} % of the parameters`);
  }

  const program = trace.meta.program!;
  assert.equal(program.mode, 'tensor');
  assert.equal(program.devices.length, 2);
  // Cut after each block's fc2 (its all-reduce): the last block's residual Add makes one more part.
  assert.equal(program.segments.filter((s) => s.kind === 'shard').length, 2 * (layers + 1), 'a chain of segments cut at every all-reduce on each device');

  const perStep = allReducesPerStep(trace);
  assert.equal(perStep.size, 2 * trace.steps.length, 'all-reduces on both lanes in every measured step');
  for (const [key, names] of perStep) {
    assert.deepEqual(
      names,
      Array.from({ length: layers }, (_, i) => `allreduce.ring (/layers.${i}/mlp)`),
      `lane|step ${key}: exactly one all-reduce per block forward, labelled with its block`,
    );
  }
  // Every all-reduce sits inside its device's step window.
  const s = trace.spans;
  for (let i = 0; i < s.count; i++) {
    if (s.comm[i] !== CommOpCode.allreduce || (s.flags[i]! & SpanFlag.profiled) !== 0) continue;
    const w = trace.steps.find((x) => x.index === s.step[i]);
    if (!w) continue;
    assert.ok(s.start[i]! >= w.startUs - 1 && s.start[i]! + s.dur[i]! <= w.endUs + 1, 'all-reduce inside its step');
  }

  // The alternative it is weighed against: the same batch data parallel on the same devices, measured in the same run.
  assert.equal(trace.meta.dataProbe?.devices, 'cpu:2');
  assert.equal(trace.meta.dataProbe!.stepTimesUs.length, 2, 'half the timed steps, at least 2');
  assert.ok(trace.meta.dataProbe!.stepTimesUs.every((t) => t > 0));
  // Each layer's collectives and what its split computes, per layer.
  assert.deepEqual(plan.groups!.map((g) => g.nodes), Array.from({ length: layers }, (_, i) => [`/layers.${i}/mlp/fc1/MatMul`, `/layers.${i}/mlp/fc1/Add`, `/layers.${i}/mlp/act/Relu`, `/layers.${i}/mlp/fc2/MatMul`]));
  const t = analyse(deriveIdle(trace)).tensor!;
  assert.deepEqual(t.layers.map((l) => l.label), Array.from({ length: layers }, (_, i) => `/layers.${i}/mlp`));
  for (const l of t.layers) {
    // Per step the two parts add up to the span; their medians over steps each stay within it.
    assert.ok(l.transferUs > 0 && l.waitUs >= 0 && l.transferUs <= l.collectiveUs && l.waitUs <= l.collectiveUs, JSON.stringify(l));
    assert.ok(l.splitComputeUs !== null && l.splitComputeUs > 0, 'split compute from the operator-profiled steps');
  }

  // The simulator runs the same program on costs fitted from this trace, and predicts the all-reduces.
  const predicted = simulate(program, fitCostModel([trace]), { steps: 2, meta: trace.meta });
  const predictedReduces = allReducesPerStep(predicted);
  assert.equal(predictedReduces.size, 2 * 2);
  for (const names of predictedReduces.values()) assert.deepEqual(names, Array.from({ length: layers }, (_, i) => `allreduce.ring (/layers.${i}/mlp)`));
});

test('--keep-whole leaves the named block unsplit: same output, no all-reduce for it, and that block whole on every device', async () => {
  const layers = 3;
  const model = writeModel('demo-keep.onnx', buildDemoModel({ layers, hidden: 64, ffn: 256 }));
  const dims = [8, 64];
  const x = seededValues(dims[0]! * dims[1]!, 7);
  const inputs = join(dir, 'keep.inputs.json');
  writeFileSync(inputs, JSON.stringify({ x: { dims, data: Array.from(x) } }));
  const out = join(dir, 'keep.parallax.json');
  const r = await runCli(['profile', model, '--mode', 'tensor', '--devices', 'cpu:2', '--batch', '8', '--steps', '2', '--warmup', '1', '--no-probe', '--keep-whole', '/layers.1/mlp', '--inputs', inputs, '--out', out], { env });
  assert.equal(r.code, 0, r.stderr);
  const trace = await readTrace(out);
  await assertMatchesOneDevice(trace, model, x, dims);
  const plan = trace.meta.plan;
  assert.ok(plan.mode === 'tensor');
  assert.deepEqual(plan.keepWhole, ['/layers.1/mlp']);
  assert.deepEqual(plan.groups!.map((g) => g.label), ['/layers.0/mlp', '/layers.2/mlp']);
  for (const names of allReducesPerStep(trace).values()) assert.deepEqual(names, ['allreduce.ring (/layers.0/mlp)', 'allreduce.ring (/layers.2/mlp)']);
  const share = plan.perDeviceParameterBytes![0]! / plan.parameterBytes!;
  assert.ok(share > 0.55 && share < 0.75, `one of three blocks whole on each device: ${(share * 100).toFixed(1)} % of the parameters`);
  assert.equal(trace.meta.dataProbe, undefined, '--no-probe');
  await expectUserError(['profile', model, '--mode', 'tensor', '--devices', 'cpu:2', '--keep-whole', '/layers.7/mlp'], /--keep-whole \/layers\.7\/mlp matches no MatMul, Gemm/, dir, env);
  await expectUserError(['profile', model, '--mode', 'data', '--devices', 'cpu:2', '--keep-whole', '/layers.1/mlp'], /--keep-whole applies to --mode tensor only/, dir, env);
});

test('transformer blocks with multi-head attention, tensor parallel on cpu:2: output of one device, two all-reduces per block (attention and MLP)', async () => {
  const blocks = 2;
  const model = writeModel('transformer.onnx', transformerModelBytes({ blocks, seq: 8, hidden: 32, heads: 4, ffn: 64 }));
  const dims = [4, 8, 32];
  const { trace, x } = await profileTensor(model, dims, 'transformer');
  await assertMatchesOneDevice(trace, model, x, dims);
  const expected = Array.from({ length: blocks }, (_, b) => [`allreduce.ring (/blocks.${b}/attn)`, `allreduce.ring (/blocks.${b}/mlp)`]).flat();
  const perStep = allReducesPerStep(trace);
  assert.equal(perStep.size, 2 * trace.steps.length);
  for (const [key, names] of perStep) assert.deepEqual(names, expected, `lane|step ${key}`);
});

test('a real exported model (openWakeWord classifier, Gemm layers with transB): tensor parallel on cpu:2 matches one device, one all-reduce per step', async () => {
  const model = wakewordAlexaModelPath();
  assert.ok(model, `openWakeWord models not fetched: ${MISSING_MODELS_HINT}`);
  const out = join(dir, 'alexa.parallax.json');
  const r = await runCli(['profile', model, '--mode', 'tensor', '--devices', 'cpu:2', '--batch', '1', '--steps', '2', '--warmup', '1', '--out', out], { env });
  assert.equal(r.code, 0, r.stderr);
  const trace = await readTrace(out);
  assert.equal(trace.meta.numericalCheck?.ok, true, JSON.stringify(trace.meta.numericalCheck));
  assert.ok(trace.meta.numericalCheck!.maxAbsErr <= 1e-5);
  const plan = trace.meta.plan;
  assert.ok(plan.mode === 'tensor');
  for (const b of plan.perDeviceParameterBytes!) assert.ok(Math.abs(b / plan.parameterBytes! - 0.5) <= 0.05);
  const perStep = allReducesPerStep(trace);
  assert.equal(perStep.size, 2 * trace.steps.length);
  for (const names of perStep.values()) assert.deepEqual(names, [`allreduce.ring (${plan.groups![0]!.label})`]);
});

test('profile --mode tensor of a model with nothing to split names what it looked for, exit 2', async () => {
  const model = writeModel('nothing.onnx', nothingToSplitModelBytes());
  const out = join(dir, 'nothing.parallax.json');
  const r = await runCli(['profile', model, '--mode', 'tensor', '--devices', 'cpu:2', '--steps', '1', '--out', out], { env });
  assert.equal(r.code, 2, r.stderr);
  const lines = r.stderr.trim().split('\n');
  assert.equal(lines.length, 1, r.stderr);
  assert.match(lines[0]!, /^parallax: .*nothing to split for tensor parallelism over 2 devices: looked for MatMul\/Gemm nodes .* use --mode data or --mode pipeline/);
  assert.doesNotMatch(r.stderr, /\n\s+at /);
  assert.equal(existsSync(out), false, 'no trace written');
});

test('profile --mode tensor refuses a --tensor that is not the device count, and pipeline flags, in one line', async () => {
  const model = writeModel('demo-flags.onnx', buildDemoModel({ layers: 1, hidden: 32, ffn: 64 }));
  await expectUserError(['profile', model, '--mode', 'tensor', '--tensor', '4', '--devices', 'cpu:2'], /--tensor 4 splits every weight over 4 devices, but --devices cpu:2 gives 2/, dir, env);
  await expectUserError(['profile', model, '--mode', 'tensor', '--micro-batches', '2', '--devices', 'cpu:2'], /--micro-batches applies to --mode pipeline only/, dir, env);
});
