/**
 * A training step's models: the gradient model cut into forward and backward gives, run one
 * after the other in onnxruntime-node, the gradients the uncut model gives; the optimizer
 * reads each gradient under the backward's name for it.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import * as ort from 'onnxruntime-node';
import { buildDemoModel } from '../../src/runtime/onnx/demo-model';
import { buildGradientModel } from '../../src/runtime/train/autodiff';
import { appendLoss } from '../../src/runtime/train/loss';
import { readParameterValues } from '../../src/runtime/train/parameters';
import { buildTrainingModels } from '../../src/runtime/train/step-models';
import { TRAIN_DEFAULTS } from '../../src/profiler/plan';
import { seededValues } from '../helpers/tiny-model';

const HIDDEN = 16;
const ROWS = 6;
const options = { ...TRAIN_DEFAULTS, loss: 'cross-entropy' as const };

test('forward then backward give the uncut gradient model\'s loss and gradients; the backward reads saved activations, not the loss', async () => {
  const model = buildDemoModel({ layers: 2, hidden: HIDDEN, ffn: 32 });
  const m = buildTrainingModels(model, options, 'demo');
  assert.ok(m.saved.length > 0, 'the backward reads activations of the forward');
  const withLoss = appendLoss(model, { kind: 'cross-entropy' }, 'demo');
  const whole = buildGradientModel(withLoss.bytes, { target: { kind: 'loss', tensor: withLoss.loss }, parametersAsInputs: true, modelName: 'demo' });
  assert.deepEqual(m.context.parameters.map((p) => p.grad), whole.parameters.map((p) => p.output));

  const params = readParameterValues(model, m.context.parameters.map((p) => p.name));
  const feeds: Record<string, ort.Tensor> = {
    x: new ort.Tensor('float32', seededValues(ROWS * HIDDEN, 3), [ROWS, HIDDEN]),
    [m.withLoss.labels]: new ort.Tensor('int64', BigInt64Array.from({ length: ROWS }, (_, i) => BigInt((i * 5) % HIDDEN)), [ROWS]),
  };
  for (const [name, v] of params) feeds[name] = new ort.Tensor('float32', v.data as Float32Array, v.dims);
  const open = (bytes: Uint8Array): Promise<ort.InferenceSession> => ort.InferenceSession.create(bytes, { intraOpNumThreads: 1, graphOptimizationLevel: 'disabled' });
  const [fwd, bwd, ref] = await Promise.all([open(m.forward), open(m.backward), open(whole.bytes)]);
  try {
    assert.ok(!fwd.outputNames.some((o) => o.endsWith('_grad')), 'the forward computes no gradient');
    assert.deepEqual([...bwd.outputNames].sort(), m.context.parameters.map((p) => p.grad).sort(), 'the backward outputs exactly the gradients');
    const pick = (names: readonly string[], from: Record<string, ort.Tensor>): Record<string, ort.Tensor> => Object.fromEntries(names.map((n) => [n, from[n]!]));
    const f = await fwd.run(pick(fwd.inputNames, feeds));
    const g = await bwd.run(pick(bwd.inputNames, { ...feeds, ...f }));
    const want = await ref.run(pick(ref.inputNames, feeds));
    assert.equal(Number(f[m.context.loss]!.data[0]), Number(want[m.context.loss]!.data[0]));
    for (const p of m.context.parameters) {
      const a = g[p.grad]!.data as Float32Array;
      const b = want[p.grad]!.data as Float32Array;
      assert.equal(a.length, b.length);
      // The same operators on the same values, in two sessions instead of one: the same bits.
      assert.deepEqual(a, b, `gradient of ${p.name}`);
      assert.ok(b.some((v) => v !== 0), `gradient of ${p.name} is not all zeros`);
    }
  } finally {
    await Promise.all([fwd.release(), bwd.release(), ref.release()]);
  }
});

test('the optimizer model takes each gradient under the backward\'s output name and updates every parameter', () => {
  const m = buildTrainingModels(buildDemoModel({ layers: 1, hidden: 8, ffn: 8 }), { ...TRAIN_DEFAULTS, optimizer: 'momentum' }, 'demo');
  const grads = new Set(m.context.parameters.map((p) => p.grad));
  for (const s of m.optimizer.slots) assert.ok(grads.has(s.grad), `${s.grad} is a backward output`);
  assert.deepEqual(m.context.optimizer.updated.map((u) => u.param), m.context.parameters.map((p) => p.name));
  assert.equal(m.context.optimizer.state.length, m.context.parameters.length, 'one velocity per parameter');
  assert.equal(m.context.optimizer.stepInput, null, 'momentum has no step input');
});
