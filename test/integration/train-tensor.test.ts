/**
 * Tensor-parallel training end to end through the built CLI on cpu:2: a real runner process,
 * one worker thread per device, real onnxruntime-node sessions running each device's shard
 * forwards, backwards (cut at the all-reduce of the column-parallel layers' input gradient)
 * and optimizer, activations and gradients all-reduced through the communicator.
 *
 * "The parameters after 5 steps equal single-device training": 1 warm-up + 4 timed steps
 * are 5 SGD updates on either side; the runner gathers each device's trained slices back into
 * whole tensors and compares every parameter with one device trained on the same batch,
 * labels and initial weights (|a−b| ≤ 1e-5 + 1e-4·|b|, float32, as data and pipeline
 * training: the devices sum each product over half the columns, then over the ring). The
 * check is sensitive to the backward all-reduce: left out, the LayerNorm weights differ by
 * ~1e-2 after these steps.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { runCli, expectUserError } from '../helpers/cli';
import { tempDir } from '../helpers/temp';
import { buildDemoModel } from '../../src/runtime/onnx/demo-model';
import { gemmMlpModelBytes, transformerModelBytes } from '../helpers/transformer-model';
import { readTrace } from '../../src/profiler/trace-io';
import { PhaseCode, SpanKind, type Trace } from '../../src/profiler/trace-format';
import { allReducesPerStep, assertTrainedLikeOneDevice } from '../helpers/parallel-check';
import type { ProfileSummary } from '../../src/profiler/summary';
import { fitCostModel, simulate } from '../../src/profiler/simulate';

const dir = tempDir('train-tensor');
const env = { PARALLAX_CACHE: join(dir, 'cache') };

function writeModel(name: string, bytes: Uint8Array): string {
  const path = join(dir, name);
  writeFileSync(path, bytes);
  return path;
}

/** Trains `model` tensor parallel on cpu:2 for 5 SGD updates; returns its trace. */
async function trainTensor(model: string, name: string, batch: number, args: string[] = []): Promise<Trace> {
  const out = join(dir, `${name}.parallax.json`);
  const r = await runCli(['profile', model, '--mode', 'tensor', '--train', '--devices', 'cpu:2', '--batch', String(batch), '--steps', '4', '--warmup', '1', '--optimizer', 'sgd', '--no-op-level', '--out', out, ...args], { env });
  assert.equal(r.code, 0, r.stderr);
  return readTrace(out);
}

/** The trained weights equal one device's, every parameter compared, and the loss curves agree. */
function assertTrainsLikeOneDevice(trace: Trace, parameters: number): void {
  const training = trace.meta.training!;
  assert.equal(training.parameters, parameters);
  assertTrainedLikeOneDevice(trace, 'every parameter compared, gathered from both devices');
  const curve = training.lossCurve;
  assert.equal(curve.length, 4);
  assert.ok(curve[3]! < curve[0]!, `loss ${curve.join(' → ')}`);
  curve.forEach((l, s) => assert.ok(Math.abs(l - training.baselineLossCurve![s]!) <= 1e-4 * Math.abs(training.baselineLossCurve![s]!), `step ${s}: ${l} vs one device ${training.baselineLossCurve![s]}`));
}

/** Per lane and measured step: the all-reduces as `expected`, the backward ones (and only they) in the backward phase. */
function assertAllReduces(trace: Trace, expected: string[]): void {
  const perStep = allReducesPerStep(trace);
  assert.equal(perStep.size, 2 * trace.steps.length, 'all-reduces on both lanes in every measured step');
  for (const [key, names] of perStep) assert.deepEqual(names, expected, `lane|step ${key}`);
  const s = trace.spans;
  for (let i = 0; i < s.count; i++) {
    if (s.kind[i] !== SpanKind.comm || !trace.strings[s.name[i]!]!.startsWith('allreduce.ring (/')) continue;
    const isBackward = trace.strings[s.name[i]!]!.endsWith(', backward)');
    assert.equal(s.phase[i], isBackward ? PhaseCode.backward : 0, trace.strings[s.name[i]!]);
  }
}

test('demo model, tensor-parallel training on cpu:2: the parameters after 5 steps equal one device’s, two all-reduces per block (one forward, one backward)', async () => {
  const layers = 3;
  const model = writeModel('demo.onnx', buildDemoModel({ layers, hidden: 64, ffn: 256 }));
  const trace = await trainTensor(model, 'demo', 8, ['--lr', '0.05']);
  // Per block: LayerNorm weight and bias, fc1 and fc2 weight and bias.
  assertTrainsLikeOneDevice(trace, 6 * layers);
  const blocks = Array.from({ length: layers }, (_, i) => `/layers.${i}/mlp`);
  const expected = [...blocks.map((b) => `allreduce.ring (${b})`), ...[...blocks].reverse().map((b) => `allreduce.ring (${b}, backward)`)];
  assertAllReduces(trace, expected);
  // The summary counts them per step, and they are the step's all-reduce time.
  const t = (trace.summary as ProfileSummary).training!;
  assert.deepEqual(t.tensor, { forwardAllReduces: layers, backwardAllReduces: layers, gradientAllReduces: 0 });
  for (const d of t.devices) assert.ok(d.allReduceUs > 0, `${d.id}: all-reduce time`);
  const program = trace.meta.program!;
  assert.equal(program.mode, 'tensor');
  assert.equal(program.stageTraining!.length, 2, 'each device trains its own slices');
  assert.equal(trace.meta.plan.mode === 'tensor' && trace.meta.plan.train?.optimizer, 'sgd');
  // The simulator runs the same program on costs fitted from this trace and predicts the same all-reduces.
  const predicted = allReducesPerStep(simulate(program, fitCostModel([trace]), { steps: 2, meta: trace.meta }));
  assert.equal(predicted.size, 2 * 2);
  for (const names of predicted.values()) assert.deepEqual(names, expected);
});

test('transformer blocks with multi-head attention, tensor-parallel training on cpu:2: one device’s parameters, four all-reduces per block (attention and MLP, forward and backward)', async () => {
  const blocks = 2;
  const model = writeModel('transformer.onnx', transformerModelBytes({ blocks, seq: 8, hidden: 32, heads: 4, ffn: 64 }));
  // The scalar weights (attention scale, Gelu constants) frozen on both sides: the step's
  // all-reduces are the blocks' alone.
  const trace = await trainTensor(model, 'transformer', 4, ['--lr', '0.5', '--freeze', 'const.*']);
  // Per block: 2 LayerNorms × 2, Q/K/V/O and fc1/fc2 weight and bias.
  assertTrainsLikeOneDevice(trace, 16 * blocks);
  const forward = Array.from({ length: blocks }, (_, b) => [`/blocks.${b}/attn`, `/blocks.${b}/mlp`]).flat();
  assertAllReduces(trace, [...forward.map((l) => `allreduce.ring (${l})`), ...[...forward].reverse().map((l) => `allreduce.ring (${l}, backward)`)]);
});

test('transformer blocks with their scalar weights trained: those read inside the split layers are all-reduced once before the optimizer, those every block reads summed over the blocks', async () => {
  const blocks = 2;
  const model = writeModel('transformer-all.onnx', transformerModelBytes({ blocks, seq: 8, hidden: 32, heads: 4, ffn: 64 }));
  const trace = await trainTensor(model, 'transformer-all', 4, ['--lr', '0.5']);
  // 16 weights per block and 4 scalars the blocks share: the attention scale, the Gelu's √2, 1 and ½.
  assertTrainsLikeOneDevice(trace, 16 * blocks + 4);
  const forward = Array.from({ length: blocks }, (_, b) => [`/blocks.${b}/attn`, `/blocks.${b}/mlp`]).flat();
  // One share of each scalar per block's segment: 8 gradients.
  assertAllReduces(trace, [...forward.map((l) => `allreduce.ring (${l})`), ...[...forward].reverse().map((l) => `allreduce.ring (${l}, backward)`), 'allreduce.ring (tensor.partial-gradients, 8 gradients)']);
  assert.deepEqual((trace.summary as ProfileSummary).training!.tensor, { forwardAllReduces: 4, backwardAllReduces: 4, gradientAllReduces: 1 });
});

test('a Gemm MLP with a residual: the row-parallel bias, added on device 0 only, trains to one device’s', async () => {
  const model = writeModel('gemm.onnx', gemmMlpModelBytes(16, 32, { residual: true }));
  const trace = await trainTensor(model, 'gemm', 4, ['--lr', '0.5']);
  assertTrainsLikeOneDevice(trace, 4);
  // The MLP reads the graph input, whose gradient nothing needs: no backward all-reduce.
  assertAllReduces(trace, ['allreduce.ring (/fc1/Gemm)']);
});

test('tensor-parallel training refuses, in one line, an output that is a partial sum and the data-parallel gradient flags', async () => {
  const model = writeModel('transformer-refused.onnx', transformerModelBytes({ blocks: 1 }));
  const partial = writeModel('gemm-partial.onnx', gemmMlpModelBytes(16, 32));
  await expectUserError(['profile', partial, '--mode', 'tensor', '--train', '--devices', 'cpu:2'], /output "y" is the partial sum of row-parallel \/fc2\/Gemm/, dir, env);
  await expectUserError(['profile', model, '--mode', 'tensor', '--train', '--grad-dtype', 'float16', '--devices', 'cpu:2'], /--grad-dtype and --sync-every act on the data-parallel gradient all-reduce/, dir, env);
});
