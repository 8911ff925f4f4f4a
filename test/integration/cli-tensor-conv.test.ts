/**
 * Conv channel splits through the real CLI: `parallax profile --mode tensor` of a generated
 * CNN on cpu:2 (a real runner process, worker threads and onnxruntime-node sessions on each
 * device's shard models, the partial sums all-reduced through the communicator) against one
 * device on the same inputs, the all-reduce of every Conv pair in each device's step; the
 * same for a real exported CNN (openWakeWord's embedding model); and `parallax plan` of a real
 * exported CNN whose kernels this planner does not split.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { runCli } from '../helpers/cli';
import { tempDir } from '../helpers/temp';
import { seededValues } from '../helpers/tiny-model';
import { cnnModelBytes } from '../helpers/cnn-model';
import { MISSING_MODELS_HINT, ocrClsModelPath, wakewordEmbeddingModelPath } from '../helpers/models';
import { allReducesPerStep, assertMatchesOneDevice } from '../helpers/parallel-check';
import { parseModel } from '../../src/runtime/onnx/model';
import { readTrace } from '../../src/profiler/trace-io';
import type { Trace } from '../../src/profiler/trace-format';

const dir = tempDir('tensor-conv');
const env = { PARALLAX_CACHE: join(dir, 'cache') };

/** Runs `profile --mode tensor` on cpu:2 with `input` of `dims` from a file (seeded values); returns the trace and the input. */
async function profileTensor(model: string, input: string, dims: number[], name: string): Promise<{ trace: Trace; x: Float32Array }> {
  const x = seededValues(dims.reduce((a, b) => a * b, 1), 7);
  const inputs = join(dir, `${name}.inputs.json`);
  writeFileSync(inputs, JSON.stringify({ [input]: { dims, data: Array.from(x) } }));
  const out = join(dir, `${name}.parallax.json`);
  const r = await runCli(['profile', model, '--mode', 'tensor', '--devices', 'cpu:2', '--batch', String(dims[0]), '--steps', '3', '--warmup', '1', '--inputs', inputs, '--out', out], { env });
  assert.equal(r.code, 0, r.stderr);
  return { trace: await readTrace(out), x };
}

test('a CNN, tensor parallel on cpu:2: output of one device, one all-reduce per Conv pair labelled with its layer, half of every split kernel per device', async () => {
  const bytes = cnnModelBytes({ channels: 8, size: 16 });
  const model = join(dir, 'cnn.onnx');
  writeFileSync(model, bytes);
  const dims = [2, 3, 16, 16];
  const { trace, x } = await profileTensor(model, 'x', dims, 'cnn');
  await assertMatchesOneDevice(trace, model, x, dims);

  const perStep = allReducesPerStep(trace);
  assert.equal(perStep.size, 2 * trace.steps.length, 'all-reduces on both lanes in every measured step');
  for (const [key, names] of perStep) {
    assert.deepEqual(names, ['allreduce.ring (/block.0)', 'allreduce.ring (/block.1)', 'allreduce.ring (/head)'], `lane|step ${key}`);
  }

  // Every parameter is split in two except what is added or applied after an all-reduce whole:
  // the row-parallel layers' biases and the Clip bounds.
  const plan = trace.meta.plan;
  assert.ok(plan.mode === 'tensor');
  const ir = parseModel(bytes, model);
  const whole = new Set(['block.0.conv2.bias', 'block.1.conv2.bias', 'head.fc.bias', 'block.1.act.min', 'block.1.act.max']);
  const split = ir.initializers.filter((t) => !whole.has(t.name)).reduce((a, t) => a + (t.byteSize ?? 0), 0);
  assert.equal(plan.parameterBytes, ir.parameterBytes);
  assert.deepEqual(plan.perDeviceParameterBytes, [ir.parameterBytes - split / 2, ir.parameterBytes - split / 2]);
});

test('a real exported CNN (openWakeWord embedding model, ten Conv pairs with initializer kernels): tensor parallel on cpu:2 matches one device, ten all-reduces per step, half the parameters per device', async () => {
  const model = wakewordEmbeddingModelPath();
  assert.ok(model, `openWakeWord models not fetched: ${MISSING_MODELS_HINT}`);
  const dims = [2, 76, 32, 1];
  const { trace, x } = await profileTensor(model, 'input_1', dims, 'embedding');
  await assertMatchesOneDevice(trace, model, x, dims, { input: 'input_1', output: 'conv2d_19' });
  const plan = trace.meta.plan;
  assert.ok(plan.mode === 'tensor');
  for (const b of plan.perDeviceParameterBytes!) assert.ok(Math.abs(b / plan.parameterBytes! - 0.5) <= 0.05, `a device holds ${b} of ${plan.parameterBytes} bytes`);
  // The exporter scopes every layer under `model/`: each all-reduce is named by its pair's first Conv.
  const expected = Array.from({ length: 10 }, (_, i) => `allreduce.ring (model/conv2d${i === 0 ? '' : `_${2 * i}`}/Conv2D)`);
  const perStep = allReducesPerStep(trace);
  assert.equal(perStep.size, 2 * trace.steps.length);
  for (const [key, names] of perStep) assert.deepEqual(names, expected, `lane|step ${key}`);
});

test('plan --mode tensor of PP-OCR\'s direction classifier (kernels held in Constant nodes) says why no Conv splits, exit 2', async () => {
  const model = ocrClsModelPath();
  assert.ok(model, `PP-OCR models not fetched: ${MISSING_MODELS_HINT}`);
  const r = await runCli(['plan', model, '--mode', 'tensor', '--devices', 'cpu:2'], { env });
  assert.equal(r.code, 2, r.stderr);
  const lines = r.stderr.trim().split('\n');
  assert.equal(lines.length, 1, r.stderr);
  assert.match(lines[0]!, /^parallax: .*nothing to split for tensor parallelism over 2 devices: looked for .*and Conv pairs \(group 1, initializer kernels\)/);
  assert.match(lines[0]!, /candidates left whole, e\.g\. \S+: its weight "[^"]+" is not a floating-point initializer \(it is a Constant node's value; this planner splits initializers only\); use --mode data or --mode pipeline/);
  assert.equal(r.stdout, '');
});
