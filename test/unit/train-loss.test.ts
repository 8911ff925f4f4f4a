/**
 * Loss subgraphs (values and gradients against closed forms, float64, 1e-12) and a few
 * training steps end to end: gradient model + optimizer model in onnxruntime-node, labels
 * from a fixed random teacher, the loss falls.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { onnx } from 'onnx-proto';
import * as ort from 'onnxruntime-node';
import { isUserError } from '../../src/common/errors';
import { encodeModel } from '../../src/runtime/onnx/model';
import { buildGradientModel } from '../../src/runtime/train/autodiff';
import { appendLoss, teacherModel, type LossKind } from '../../src/runtime/train/loss';
import { buildOptimizerModel, type OptimizerConfig } from '../../src/runtime/train/optimizer';
import { readParameterValues } from '../../src/runtime/train/parameters';
import { seededValues, tinyMatMulModelBytes } from '../helpers/tiny-model';

const D = onnx.TensorProto.DataType.DOUBLE;

/** y = Identity(x), float64 [batch, 5]: the loss's own gradient is then dL/dx. */
function identityModel(): Uint8Array {
  const t = { elemType: D, shape: { dim: [{ dimParam: 'batch' }, { dimValue: 5 }] } };
  return encodeModel({
    irVersion: 8,
    opsetImport: [{ domain: '', version: 17 }],
    graph: { name: 'id', node: [{ name: 'id', opType: 'Identity', input: ['x'], output: ['y'] }], input: [{ name: 'x', type: { tensorType: t } }], output: [{ name: 'y', type: { tensorType: t } }] },
  });
}

async function run(bytes: Uint8Array, feeds: Record<string, ort.Tensor>): Promise<ort.InferenceSession.OnnxValueMapType> {
  const s = await ort.InferenceSession.create(bytes, { intraOpNumThreads: 1 });
  try {
    return await s.run(feeds);
  } finally {
    await s.release();
  }
}

describe('loss subgraphs match their closed forms', () => {
  const rows = 3;
  const x = Float64Array.from(seededValues(rows * 5, 31), (v) => 2 * v);

  test('MSE: value mean((y − t)²), gradient 2(y − t)/n', async () => {
    const target = Float64Array.from(seededValues(rows * 5, 32), Number);
    const m = appendLoss(identityModel(), { kind: 'mse' });
    assert.equal(m.labelType, 'float64');
    const g = buildGradientModel(m.bytes, { target: { kind: 'loss', tensor: m.loss }, inputs: ['x'] });
    const out = await run(g.bytes, { x: new ort.Tensor('float64', x, [rows, 5]), [m.labels]: new ort.Tensor('float64', target, [rows, 5]) });
    const n = x.length;
    const want = x.reduce((s, v, i) => s + (v - target[i]!) ** 2, 0) / n;
    assert.ok(Math.abs(Number(out[m.loss]!.data[0]) - want) < 1e-12);
    const grad = out[g.inputGradients[0]!.output]!.data as Float64Array;
    grad.forEach((v, i) => assert.ok(Math.abs(v - (2 * (x[i]! - target[i]!)) / n) < 1e-12, `dL/dx[${i}]`));
  });

  test('cross-entropy: value −mean log softmax[label], gradient (softmax − onehot)/rows', async () => {
    const labels = [4, 0, 2];
    const m = appendLoss(identityModel(), { kind: 'cross-entropy' });
    assert.equal(m.labelType, 'int64');
    const g = buildGradientModel(m.bytes, { target: { kind: 'loss', tensor: m.loss }, inputs: ['x'] });
    const out = await run(g.bytes, { x: new ort.Tensor('float64', x, [rows, 5]), [m.labels]: new ort.Tensor('int64', BigInt64Array.from(labels.map(BigInt)), [rows]) });
    let want = 0;
    const grad = out[g.inputGradients[0]!.output]!.data as Float64Array;
    for (let r = 0; r < rows; r++) {
      const z = Array.from(x.subarray(r * 5, r * 5 + 5));
      const max = Math.max(...z);
      const sum = z.reduce((s, v) => s + Math.exp(v - max), 0);
      want -= z[labels[r]!]! - max - Math.log(sum);
      z.forEach((v, c) => {
        const p = Math.exp(v - max) / sum;
        assert.ok(Math.abs(grad[r * 5 + c]! - (p - (c === labels[r] ? 1 : 0)) / rows) < 1e-12, `dL/dx[${r}, ${c}]`);
      });
    }
    assert.ok(Math.abs(Number(out[m.loss]!.data[0]) - want / rows) < 1e-12);
  });

  test('parameter values are read from initializers; a missing one is a one-line user error', () => {
    const { bytes, model } = tinyMatMulModelBytes({ k: 3, n: 2 });
    const values = readParameterValues(bytes, ['b', 'W']);
    assert.deepEqual([...values.keys()], ['b', 'W']);
    assert.deepEqual(Array.from(values.get('W')!.data), Array.from(model.weight));
    assert.deepEqual(values.get('W')!.dims, [3, 2]);
    assert.throws(() => readParameterValues(bytes, ['W', 'nope'], 'tiny.onnx'), (e: unknown) => isUserError(e) && (e as Error).message === 'tiny.onnx: no initializer or Constant tensor named "nope"');
  });

  test('a loss on an output that is not there is a one-line user error', () => {
    assert.throws(() => appendLoss(identityModel(), { kind: 'mse', output: 'logits' }, 'id.onnx'), (e: unknown) => isUserError(e) && /^id\.onnx: "logits" is not an output of the model; name one of y$/.test((e as Error).message));
  });
});

/** Trains the tiny MLP against its teacher for `steps` steps; returns the loss per step. */
async function train(kind: LossKind, optimizer: OptimizerConfig, lr: number, steps: number): Promise<number[]> {
  const { bytes: student } = tinyMatMulModelBytes({ k: 6, n: 4, relu: kind === 'mse' ? false : true });
  const teacher = teacherModel(student, { seed: 9, noise: 1 });
  const rows = 16;
  const x = new ort.Tensor('float32', seededValues(rows * 6, 41), [rows, 6]);
  const teacherOut = (await run(teacher, { x }))['y']!;
  let labels: ort.Tensor;
  if (kind === 'mse') labels = teacherOut;
  else {
    const z = teacherOut.data as Float32Array;
    const arg = Array.from({ length: rows }, (_, r) => {
      const row = Array.from(z.subarray(r * 4, r * 4 + 4));
      return BigInt(row.indexOf(Math.max(...row)));
    });
    labels = new ort.Tensor('int64', BigInt64Array.from(arg), [rows]);
  }

  const withLoss = appendLoss(student, { kind });
  const grad = buildGradientModel(withLoss.bytes, { target: { kind: 'loss', tensor: withLoss.loss }, parametersAsInputs: true });
  const params = [...readParameterValues(student, grad.parameters.map((p) => p.of)).values()];
  const opt = buildOptimizerModel(params, optimizer, 'float32');
  const gradSession = await ort.InferenceSession.create(grad.bytes, { intraOpNumThreads: 1 });
  const optSession = await ort.InferenceSession.create(opt.bytes, { intraOpNumThreads: 1 });
  const values = new Map<string, ort.Tensor>(params.map((p) => [p.name, new ort.Tensor('float32', p.data as Float32Array, p.dims)]));
  const state = new Map<string, ort.Tensor>(opt.slots.flatMap((s, k) => s.state.map((st) => [st.input, new ort.Tensor('float32', new Float32Array(params[k]!.data.length), params[k]!.dims)] as const)));
  const losses: number[] = [];
  try {
    for (let t = 1; t <= steps; t++) {
      const out = await gradSession.run({ x, [withLoss.labels]: labels, ...Object.fromEntries(values) });
      losses.push(Number(out[withLoss.loss]!.data[0]));
      const feeds: Record<string, ort.Tensor> = { [opt.lr]: new ort.Tensor('float32', Float32Array.of(lr), []), ...Object.fromEntries(state) };
      if (opt.step) feeds[opt.step] = new ort.Tensor('float32', Float32Array.of(t), []);
      opt.slots.forEach((s, k) => {
        feeds[s.value] = values.get(s.param)!;
        feeds[s.grad] = out[grad.parameters[k]!.output]!;
      });
      const next = await optSession.run(feeds);
      for (const s of opt.slots) {
        values.set(s.param, next[s.updated]!);
        for (const st of s.state) state.set(st.input, next[st.output]!);
      }
    }
  } finally {
    await gradSession.release();
    await optSession.release();
  }
  return losses;
}

/**
 * x [batch, 2] → MatMul W → Add b → Mul s, every float tensor in a Constant node (as
 * paddle2onnx and older tf2onnx export weights), and one float initializer `k` beside them.
 */
function constantWeightsModel(): Uint8Array {
  const F = onnx.TensorProto.DataType.FLOAT;
  const constant = (name: string, dims: number[], values: number[]): onnx.INodeProto => ({
    name: `${name}/const`,
    opType: 'Constant',
    input: [],
    output: [name],
    attribute: [{ name: 'value', type: onnx.AttributeProto.AttributeType.TENSOR, t: { dims, dataType: F, floatData: values } }],
  });
  const t = (n: number): onnx.ITypeProto => ({ tensorType: { elemType: F, shape: { dim: [{ dimParam: 'batch' }, { dimValue: n }] } } });
  return encodeModel({
    irVersion: 8,
    opsetImport: [{ domain: '', version: 17 }],
    graph: {
      name: 'consts',
      node: [
        constant('W', [2, 3], [0.5, -1, 2, 1.5, 0.25, -0.75]),
        constant('b', [3], [0.1, 0.2, 0.3]),
        constant('s', [], [2]),
        { name: 'mm', opType: 'MatMul', input: ['x', 'W'], output: ['h'] },
        { name: 'add', opType: 'Add', input: ['h', 'b'], output: ['z'] },
        { name: 'scale', opType: 'Mul', input: ['z', 's'], output: ['y0'] },
        { name: 'shift', opType: 'Add', input: ['y0', 'k'], output: ['y'] },
      ],
      initializer: [{ name: 'k', dims: [1], dataType: F, floatData: [0.5] }],
      input: [{ name: 'x', type: t(2) }],
      output: [{ name: 'y', type: t(3) }],
    },
  });
}

test('the teacher moves the weights it is given wherever the model keeps them, and nothing else', () => {
  const model = constantWeightsModel();
  const all = ['W', 'b', 's', 'k'];
  const before = readParameterValues(model, all);
  const changed = (teacher: Uint8Array): string[] => {
    const after = readParameterValues(teacher, all);
    return all.filter((n) => Array.from(after.get(n)!.data).some((v, i) => v !== before.get(n)!.data[i]));
  };
  // Given names: Constant-node weights move too (before, a model keeping its weights there got
  // a teacher equal to the student, and a loss of 0 with nothing to learn); others stay.
  assert.deepEqual(changed(teacherModel(model, { parameters: ['W', 'b', 'k'] })), ['W', 'b', 'k']);
  assert.deepEqual(changed(teacherModel(model, { parameters: ['W'] })), ['W']);
  // Without names: every float initializer, as before.
  assert.deepEqual(changed(teacherModel(model)), ['k']);
  // Each moved tensor by noise of its own scale: |Δ| ≤ √3 · noise · RMS.
  const moved = readParameterValues(teacherModel(model, { parameters: ['W'], noise: 0.1 }), ['W']).get('W')!.data;
  const w = before.get('W')!.data;
  const rms = Math.sqrt(Array.from(w).reduce((a, v) => a + v * v, 0) / w.length);
  for (let i = 0; i < w.length; i++) assert.ok(Math.abs(moved[i]! - w[i]!) <= Math.sqrt(3) * 0.1 * rms * (1 + 1e-6), `W[${i}] moved by ${moved[i]! - w[i]!}`);
  assert.deepEqual(Buffer.from(teacherModel(model, { parameters: ['W'] })), Buffer.from(teacherModel(model, { parameters: ['W'] })), 'same options, same bytes');
});

describe('training steps on a teacher’s labels make the loss fall', () => {
  test('MSE with SGD: the loss falls below a third in 40 steps', async (t) => {
    const losses = await train('mse', { kind: 'sgd' }, 0.1, 40);
    t.diagnostic(`loss ${losses[0]!.toFixed(4)} → ${losses.at(-1)!.toFixed(4)}`);
    assert.ok(losses[0]! > 0.01, 'the teacher differs from the student');
    assert.ok(losses.at(-1)! < losses[0]! / 3, `loss ${losses[0]} → ${losses.at(-1)}`);
  });

  test('cross-entropy with Adam and with momentum: the loss falls', async (t) => {
    for (const config of [{ kind: 'adam' }, { kind: 'momentum', momentum: 0.9 }] as OptimizerConfig[]) {
      const losses = await train('cross-entropy', config, config.kind === 'adam' ? 0.05 : 0.2, 40);
      t.diagnostic(`${config.kind}: loss ${losses[0]!.toFixed(4)} → ${losses.at(-1)!.toFixed(4)}`);
      assert.ok(losses.at(-1)! < losses[0]! * 0.6, `${config.kind}: loss ${losses[0]} → ${losses.at(-1)}`);
    }
  });
});
