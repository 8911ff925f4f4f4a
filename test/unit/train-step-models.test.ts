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

for (const buckets of [1, 3]) {
test(`forward then ${buckets} backward part(s) give the uncut gradient model's loss and gradients, bit for bit`, async () => {
  const model = buildDemoModel({ layers: 2, hidden: HIDDEN, ffn: 32 });
  const m = buildTrainingModels(model, options, 'demo');
  // Gradient groups as buckets hold them: last layer first.
  const grads = m.context.parameters.map((p) => p.grad).reverse();
  const size = Math.ceil(grads.length / buckets);
  const groups = Array.from({ length: buckets }, (_, k) => grads.slice(k * size, (k + 1) * size));
  const cut = m.cut(groups);
  assert.equal(cut.backward.length, buckets);
  assert.ok(cut.saved.length > 0, 'the backward reads activations of the forward');
  assert.ok(!cut.saved.includes(m.context.loss), 'the backward does not read the loss');
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
  const [fwd, ref, ...bwd] = await Promise.all([open(cut.forward), open(whole.bytes), ...cut.backward.map(open)]);
  try {
    assert.ok(!fwd.outputNames.some((o) => o.endsWith('_grad')), 'the forward computes no gradient');
    bwd.forEach((b, k) => {
      for (const want of groups[k]!) assert.ok(b.outputNames.includes(want), `part ${k} outputs ${want}`);
    });
    const pick = (names: readonly string[], from: Record<string, ort.Tensor>): Record<string, ort.Tensor> => Object.fromEntries(names.map((n) => [n, from[n]!]));
    const f = await fwd.run(pick(fwd.inputNames, feeds));
    // Each part's results feed the later parts, as the device interpreter does.
    let g: Record<string, ort.Tensor> = { ...feeds, ...f };
    for (const b of bwd) g = { ...g, ...(await b.run(pick(b.inputNames, g))) };
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
    await Promise.all([fwd.release(), ref.release(), ...bwd.map((b) => b.release())]);
  }
});
}

test('the optimizer model takes each gradient under the backward\'s output name and updates every parameter', () => {
  const m = buildTrainingModels(buildDemoModel({ layers: 1, hidden: 8, ffn: 8 }), { ...TRAIN_DEFAULTS, optimizer: 'momentum' }, 'demo');
  const grads = new Set(m.context.parameters.map((p) => p.grad));
  for (const s of m.optimizer.slots) assert.ok(grads.has(s.grad), `${s.grad} is a backward output`);
  assert.deepEqual(m.context.optimizer.updated.map((u) => u.param), m.context.parameters.map((p) => p.name));
  assert.equal(m.context.optimizer.state.length, m.context.parameters.length, 'one velocity per parameter');
  assert.equal(m.context.optimizer.stepInput, null, 'momentum has no step input');
});
