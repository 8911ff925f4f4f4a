/**
 * Whole-model gradients: a transformer block and a small CNN against central finite
 * differences (float32, tolerance 1e-3 as in autodiff-ops.test.ts: both contain ops ONNX
 * Runtime runs only in float32), the demo model and a CNN with a free batch (shard gradients
 * add up to the full batch's: the property data-parallel training rests on), a pipeline-stage
 * backward chained through activation gradients, and
 * the refusal of models with operators outside the supported set.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { onnx } from 'onnx-proto';
import * as ort from 'onnxruntime-node';
import { isUserError } from '../../src/common/errors';
import { buildDemoModel } from '../../src/runtime/onnx/demo-model';
import { decodeModelProto, encodeModel } from '../../src/runtime/onnx/model';
import { buildGradientModel, SUPPORTED_OPS } from '../../src/runtime/train/autodiff';
import { checkGradients, int64s, node } from '../helpers/grad-check';
import { seededValues } from '../helpers/tiny-model';

const sessionOptions: ort.InferenceSession.SessionOptions = { intraOpNumThreads: 1, interOpNumThreads: 1 };
const F = onnx.TensorProto.DataType.FLOAT;
const D = onnx.TensorProto.DataType.DOUBLE;

describe('autodiff: whole models match finite differences', () => {
  test('a transformer block (LayerNorm, two-head attention with Softmax, Gelu MLP, residuals)', async (t) => {
    const hidden = 8;
    const nodes = [
      node('LayerNormalization', ['x', 'ln1.g', 'ln1.b'], ['ln1'], { axis: -1 }, 'ln1'),
      node('MatMul', ['ln1', 'Wq'], ['q'], {}, 'q'),
      node('MatMul', ['ln1', 'Wk'], ['k'], {}, 'k'),
      node('MatMul', ['ln1', 'Wv'], ['v'], {}, 'v'),
      node('Reshape', ['q', 'heads'], ['q4'], {}, 'q4'),
      node('Reshape', ['k', 'heads'], ['k4'], {}, 'k4'),
      node('Reshape', ['v', 'heads'], ['v4'], {}, 'v4'),
      node('Transpose', ['q4'], ['qh'], { perm: [0, 2, 1, 3] }, 'qh'),
      node('Transpose', ['k4'], ['kt'], { perm: [0, 2, 3, 1] }, 'kt'),
      node('Transpose', ['v4'], ['vh'], { perm: [0, 2, 1, 3] }, 'vh'),
      node('MatMul', ['qh', 'kt'], ['scores'], {}, 'scores'),
      node('Mul', ['scores', 'scale'], ['scaled'], {}, 'scaled'),
      node('Softmax', ['scaled'], ['probs'], { axis: -1 }, 'softmax'),
      node('MatMul', ['probs', 'vh'], ['ctx'], {}, 'ctx'),
      node('Transpose', ['ctx'], ['ctx2'], { perm: [0, 2, 1, 3] }, 'ctx2'),
      node('Reshape', ['ctx2', 'merge'], ['ctx3'], {}, 'merge'),
      node('MatMul', ['ctx3', 'Wo'], ['o'], {}, 'o'),
      node('Add', ['o', 'bo'], ['ob'], {}, 'ob'),
      node('Add', ['x', 'ob'], ['h1'], {}, 'res1'),
      node('LayerNormalization', ['h1', 'ln2.g', 'ln2.b'], ['ln2'], { axis: -1 }, 'ln2'),
      node('MatMul', ['ln2', 'W1'], ['f1'], {}, 'fc1'),
      node('Add', ['f1', 'b1'], ['f1b'], {}, 'fc1.bias'),
      node('Div', ['f1b', 'sqrt2'], ['gd'], {}, 'gelu.div'),
      node('Erf', ['gd'], ['ge'], {}, 'gelu.erf'),
      node('Add', ['ge', 'one'], ['ge1'], {}, 'gelu.add'),
      node('Mul', ['f1b', 'ge1'], ['gm'], {}, 'gelu.mul'),
      node('Mul', ['gm', 'half'], ['act'], {}, 'gelu.half'),
      node('MatMul', ['act', 'W2'], ['f2'], {}, 'fc2'),
      node('Add', ['f2', 'b2'], ['f2b'], {}, 'fc2.bias'),
      node('Add', ['h1', 'f2b'], ['y'], {}, 'res2'),
    ];
    const w = (dims: number[]): { dims: number[]; scale: number } => ({ dims, scale: 1 / Math.sqrt(dims[0]!) });
    const r = await checkGradients({
      nodes,
      dtype: 'float32',
      tol: 1e-3,
      maxElements: 12,
      inputs: { x: { dims: [2, 3, hidden] } },
      params: {
        'ln1.g': { dims: [hidden], offset: 1, scale: 0.1 },
        'ln1.b': { dims: [hidden], scale: 0.1 },
        Wq: w([hidden, hidden]),
        Wk: w([hidden, hidden]),
        Wv: w([hidden, hidden]),
        Wo: w([hidden, hidden]),
        bo: { dims: [hidden], scale: 0.1 },
        'ln2.g': { dims: [hidden], offset: 1, scale: 0.1 },
        'ln2.b': { dims: [hidden], scale: 0.1 },
        W1: w([hidden, 16]),
        b1: { dims: [16], scale: 0.1 },
        W2: w([16, hidden]),
        b2: { dims: [hidden], scale: 0.1 },
        scale: { dims: [], values: [0.5] },
        sqrt2: { dims: [], values: [Math.SQRT2] },
        one: { dims: [], values: [1] },
        half: { dims: [], values: [0.5] },
      },
      freeze: ['scale', 'sqrt2', 'one', 'half'],
      constants: [int64s('heads', [0, 0, 2, 4]), int64s('merge', [0, 0, hidden])],
    });
    assert.equal(r.gradient.parameters.length, 13, 'every trainable weight gets a gradient output');
    assert.ok(r.gradient.parameters.every((p) => p.reached));
    t.diagnostic(`${r.checked} elements, worst error ${r.worst.toExponential(2)}`);
  });

  test('a CNN (Conv-BatchNorm-Relu-MaxPool-Conv-Relu-GlobalAveragePool-Flatten-Gemm)', async (t) => {
    const r = await checkGradients({
      nodes: [
        node('Conv', ['x', 'c1.W', 'c1.b'], ['c1'], { pads: [1, 1, 1, 1] }, 'conv1'),
        node('BatchNormalization', ['c1', 'bn.s', 'bn.b', 'bn.mean', 'bn.var'], ['bn'], {}, 'bn'),
        node('Relu', ['bn'], ['r1'], {}, 'relu1'),
        node('MaxPool', ['r1'], ['p1'], { kernel_shape: [2, 2], strides: [2, 2] }, 'pool'),
        node('Conv', ['p1', 'c2.W', 'c2.b'], ['c2'], { pads: [1, 1, 1, 1], strides: [2, 2] }, 'conv2'),
        node('Relu', ['c2'], ['r2'], {}, 'relu2'),
        node('GlobalAveragePool', ['r2'], ['gap'], {}, 'gap'),
        node('Flatten', ['gap'], ['flat'], {}, 'flatten'),
        node('Gemm', ['flat', 'fc.W', 'fc.b'], ['y'], { transB: 1 }, 'fc'),
      ],
      dtype: 'float32',
      tol: 1e-3,
      eps: 2e-3,
      maxElements: 16,
      inputs: { x: { dims: [2, 3, 8, 8] } },
      params: {
        'c1.W': { dims: [4, 3, 3, 3], scale: 0.3 },
        'c1.b': { dims: [4], scale: 0.1 },
        'bn.s': { dims: [4], offset: 1, scale: 0.2 },
        'bn.b': { dims: [4], scale: 0.1 },
        'bn.mean': { dims: [4], scale: 0.1 },
        'bn.var': { dims: [4], offset: 1, scale: 0.2 },
        'c2.W': { dims: [6, 4, 3, 3], scale: 0.3 },
        'c2.b': { dims: [6], scale: 0.1 },
        'fc.W': { dims: [5, 6], scale: 0.5 },
        'fc.b': { dims: [5], scale: 0.1 },
      },
      freeze: ['bn.mean', 'bn.var', 'zero'],
      // Relu masks and MaxPool's argmax: steps that change them straddle a kink and are skipped.
      branches: {
        nodes: [
          node('Greater', ['bn', 'zero'], ['mask1'], {}, 'probe.relu1'),
          node('MaxPool', ['r1'], ['p1.again', 'argmax'], { kernel_shape: [2, 2], strides: [2, 2] }, 'probe.pool'),
          node('Greater', ['c2', 'zero'], ['mask2'], {}, 'probe.relu2'),
        ],
        outputs: ['mask1', 'argmax', 'mask2'],
      },
      constants: [{ name: 'zero', dims: [], dataType: F, floatData: [0] }],
    });
    assert.deepEqual(
      r.gradient.parameters.map((p) => p.of),
      ['c1.W', 'c1.b', 'bn.s', 'bn.b', 'c2.W', 'c2.b', 'fc.W', 'fc.b'],
      'frozen statistics are not parameters',
    );
    t.diagnostic(`${r.checked} elements (${r.skipped} skipped at kinks), worst error ${r.worst.toExponential(2)}`);
  });
});

/** The demo model (tiny) with a loss `sum(y²)` appended, in float32. */
function demoWithLoss(): Uint8Array {
  const proto = decodeModelProto(buildDemoModel({ layers: 2, hidden: 8, ffn: 16, seed: 5 }), 'demo');
  const g = proto.graph!;
  g.node = [...(g.node ?? []), node('Mul', ['y', 'y'], ['y2'], {}, 'loss/square'), node('ReduceSum', ['y2'], ['loss'], { keepdims: 0 }, 'loss/sum')];
  return encodeModel(proto);
}

async function runGradients(bytes: Uint8Array, feeds: Record<string, ort.Tensor>): Promise<ort.InferenceSession.OnnxValueMapType> {
  const s = await ort.InferenceSession.create(bytes, sessionOptions);
  try {
    return await s.run(feeds);
  } finally {
    await s.release();
  }
}

function maxAbsDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  assert.equal(a.length, b.length);
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i]! - b[i]!));
  return m;
}

describe('autodiff: gradient models serve any batch size and chain across pipeline stages', () => {
  test('demo model: gradients of a 5-row batch equal the sums over 2- and 3-row shards', async () => {
    const gm = buildGradientModel(demoWithLoss(), { target: { kind: 'loss', tensor: 'loss' } });
    assert.equal(gm.parameters.length, 12, 'two blocks × (ln weight, ln bias, fc1 W/b, fc2 W/b)');
    const x = seededValues(5 * 8, 9);
    const run = (rows: Float32Array, n: number): Promise<ort.InferenceSession.OnnxValueMapType> => runGradients(gm.bytes, { x: new ort.Tensor('float32', rows, [n, 8]) });
    const full = await run(x, 5);
    const a = await run(x.slice(0, 16), 2);
    const b = await run(x.slice(16), 3);
    for (const p of gm.parameters) {
      const sum = Array.from(a[p.output]!.data as Float32Array, (v, i) => v + (b[p.output]!.data as Float32Array)[i]!);
      const whole = full[p.output]!.data as Float32Array;
      const scale = Math.max(1, ...Array.from(whole, Math.abs));
      assert.ok(maxAbsDiff(sum, whole) / scale < 1e-5, `${p.of}: shard sum differs from the full batch`);
      assert.ok(whole.some((v) => v !== 0), `${p.of}: gradient is all zeros`);
    }
  });

  test('a CNN with a free batch: gradients of a 5-image batch equal the sums over 2- and 3-image shards', async () => {
    const F4 = (name: string, dims: number[], seed: number, scale = 0.3): onnx.ITensorProto => ({ name, dims, dataType: F, rawData: new Uint8Array(Float32Array.from(seededValues(dims.reduce((p, q) => p * q, 1), seed), (v) => v * scale).buffer) });
    const batchInfo = (name: string, dims: Array<number | string>): onnx.IValueInfoProto => ({ name, type: { tensorType: { elemType: F, shape: { dim: dims.map((d) => (typeof d === 'number' ? { dimValue: d } : { dimParam: d })) } } } });
    const bytes = encodeModel({
      irVersion: 8,
      opsetImport: [{ domain: '', version: 17 }],
      graph: {
        name: 'cnn',
        node: [
          node('Conv', ['x', 'c1.W', 'c1.b'], ['c1'], { group: 2, strides: [2, 2], pads: [1, 1, 1, 1] }, 'conv1'),
          node('BatchNormalization', ['c1', 'bn.s', 'bn.b', 'bn.mean', 'bn.var'], ['bn'], {}, 'bn'),
          node('HardSwish', ['bn'], ['a1'], {}, 'act'),
          node('MaxPool', ['a1'], ['p1'], { kernel_shape: [3, 3], strides: [1, 1], pads: [1, 1, 1, 1] }, 'maxpool'),
          node('AveragePool', ['p1'], ['p2'], { kernel_shape: [2, 2], strides: [2, 2] }, 'avgpool'),
          node('Flatten', ['p2'], ['flat'], {}, 'flatten'),
          node('Gemm', ['flat', 'fc.W', 'fc.b'], ['logits'], { transB: 1 }, 'fc'),
          node('Mul', ['logits', 'logits'], ['sq'], {}, 'sq'),
          node('ReduceSum', ['sq'], ['loss'], { keepdims: 0 }, 'sum'),
        ],
        initializer: [
          F4('c1.W', [6, 2, 3, 3], 51), F4('c1.b', [6], 52), F4('bn.s', [6], 53), F4('bn.b', [6], 54), F4('bn.mean', [6], 55, 0.1),
          { ...F4('bn.var', [6], 56, 0), rawData: new Uint8Array(new Float32Array(6).fill(1).buffer) },
          F4('fc.W', [3, 24], 57), F4('fc.b', [3], 58),
        ],
        input: [batchInfo('x', ['batch', 4, 8, 8])],
        output: [batchInfo('loss', [])],
      },
    });
    const gm = buildGradientModel(bytes, { target: { kind: 'loss', tensor: 'loss' } });
    assert.deepEqual(gm.untrained, ['bn.mean', 'bn.var']);
    const x = seededValues(5 * 4 * 64, 61);
    const run = (rows: Float32Array, n: number): Promise<ort.InferenceSession.OnnxValueMapType> => runGradients(gm.bytes, { x: new ort.Tensor('float32', rows, [n, 4, 8, 8]) });
    const full = await run(x, 5);
    const a = await run(x.slice(0, 2 * 256), 2);
    const b = await run(x.slice(2 * 256), 3);
    for (const p of gm.parameters) {
      const whole = full[p.output]!.data as Float32Array;
      const sum = Array.from(a[p.output]!.data as Float32Array, (v, i) => v + (b[p.output]!.data as Float32Array)[i]!);
      const scale = Math.max(1, ...Array.from(whole, Math.abs));
      assert.ok(maxAbsDiff(sum, whole) / scale < 1e-5, `${p.of}: shard sum differs from the full batch`);
      assert.ok(whole.some((v) => v !== 0), `${p.of}: gradient is all zeros`);
    }
  });

  test('stage backward: activation gradients from stage 2 fed to stage 1 give the whole model’s weight gradients', async () => {
    const T = { elemType: D, shape: { dim: [{ dimParam: 'batch' }, { dimValue: 4 }] } };
    const tensor = (name: string, dims: number[], seed: number): onnx.ITensorProto => ({
      name,
      dims,
      dataType: D,
      rawData: new Uint8Array(Float64Array.from(seededValues(dims.reduce((p, q) => p * q, 1), seed), Number).buffer),
    });
    const stage1Nodes = [node('MatMul', ['x', 'W1'], ['m'], {}, 'fc1'), node('Tanh', ['m'], ['h'], {}, 'act')];
    const stage2Nodes = [node('MatMul', ['h', 'W2'], ['y'], {}, 'fc2'), node('Mul', ['y', 'y'], ['y2'], {}, 'sq'), node('ReduceSum', ['y2'], ['loss'], { keepdims: 0 }, 'sum')];
    const model = (nodes: onnx.INodeProto[], init: onnx.ITensorProto[], input: string, output: string): Uint8Array =>
      encodeModel({
        irVersion: 8,
        opsetImport: [{ domain: '', version: 17 }],
        graph: { name: 'm', node: nodes, initializer: init, input: [{ name: input, type: { tensorType: T } }], output: [{ name: output, type: { tensorType: output === 'loss' ? { elemType: D } : T } }] },
      });
    const W1 = tensor('W1', [4, 4], 21);
    const W2 = tensor('W2', [4, 4], 22);
    const whole = buildGradientModel(model([...stage1Nodes, ...stage2Nodes], [W1, W2], 'x', 'loss'), { target: { kind: 'loss', tensor: 'loss' } });
    const stage2 = buildGradientModel(model(stage2Nodes, [W2], 'h', 'loss'), { target: { kind: 'loss', tensor: 'loss' }, inputs: ['h'] });
    const stage1 = buildGradientModel(model(stage1Nodes, [W1], 'x', 'h'), { target: { kind: 'outputs', tensors: ['h'] } });
    assert.equal(stage1.seedInputs.get('h'), 'h_grad');

    const x = new ort.Tensor('float64', Float64Array.from(seededValues(12, 23), Number), [3, 4]);
    const ref = await runGradients(whole.bytes, { x });
    const fwd1 = await runGradients(model(stage1Nodes, [W1], 'x', 'h'), { x });
    const back2 = await runGradients(stage2.bytes, { h: fwd1['h']! });
    const back1 = await runGradients(stage1.bytes, { x, h_grad: back2[stage2.inputGradients[0]!.output]! });
    const grad = (r: ort.InferenceSession.OnnxValueMapType, g: { parameters: Array<{ of: string; output: string }> }, p: string): Float64Array =>
      r[g.parameters.find((q) => q.of === p)!.output]!.data as Float64Array;
    assert.ok(maxAbsDiff(grad(back1, stage1, 'W1'), grad(ref, whole, 'W1')) < 1e-12, 'stage 1 weight gradient');
    assert.ok(maxAbsDiff(grad(back2, stage2, 'W2'), grad(ref, whole, 'W2')) < 1e-12, 'stage 2 weight gradient');
    assert.ok(grad(ref, whole, 'W1').some((v) => v !== 0));
  });
});

describe('autodiff: models it cannot differentiate are refused before anything runs', () => {
  const graph = (nodes: onnx.INodeProto[], opset = 17): Uint8Array =>
    encodeModel({
      irVersion: 8,
      opsetImport: [{ domain: '', version: opset }],
      graph: {
        name: 'bad',
        node: nodes,
        initializer: [{ name: 'W', dims: [2, 2], dataType: F, floatData: [1, 2, 3, 4] }],
        input: [{ name: 'x', type: { tensorType: { elemType: F, shape: { dim: [{ dimValue: 2 }, { dimValue: 2 }] } } } }],
        output: [{ name: 'loss', type: { tensorType: { elemType: F } } }],
      },
    });

  test('one error lists every unsupported operator type and its nodes', () => {
    const bytes = graph([
      node('MatMul', ['x', 'W'], ['m'], {}, 'fc'),
      node('Cos', ['m'], ['c'], {}, 'first_cos'),
      node('Sin', ['c'], ['s'], {}, 'the_sin'),
      node('Cos', ['s'], ['c2'], {}, 'second_cos'),
      node('ReduceSum', ['c2'], ['loss'], { keepdims: 0 }, 'sum'),
    ]);
    assert.throws(
      () => buildGradientModel(bytes, { target: { kind: 'loss', tensor: 'loss' }, modelName: 'bad.onnx' }),
      (e: unknown) => {
        assert.ok(isUserError(e));
        const m = (e as Error).message;
        assert.match(m, /^bad\.onnx: cannot build gradients: operators Cos, Sin have no gradient rule/);
        for (const n of ['first_cos', 'the_sin', 'second_cos']) assert.ok(m.includes(`"${n}"`), `names node ${n}: ${m}`);
        assert.ok(!m.includes('"fc"'), 'supported nodes are not listed');
        assert.ok(!m.includes('\n'));
        return true;
      },
    );
    assert.ok(!SUPPORTED_OPS.includes('Cos'));
  });

  test('an unsupported operator off the gradient path (frozen weights only) is fine', () => {
    const bytes = graph([
      node('Cos', ['W'], ['cw'], {}, 'cos_of_frozen'),
      node('MatMul', ['x', 'cw'], ['m'], {}, 'fc'),
      node('ReduceSum', ['m'], ['loss'], { keepdims: 0 }, 'sum'),
    ]);
    assert.throws(() => buildGradientModel(bytes, { target: { kind: 'loss', tensor: 'loss' } }), /Cos has no gradient rule/);
    const g = buildGradientModel(bytes, { target: { kind: 'loss', tensor: 'loss' }, freeze: [/^W$/], inputs: ['x'] });
    assert.deepEqual(g.parameters, []);
    assert.equal(g.inputGradients[0]?.reached, true);
  });

  test('an old opset and an unknown loss tensor get one-line errors saying what to do', () => {
    const bytes = graph([node('MatMul', ['x', 'W'], ['m'], {}, 'fc'), node('ReduceSum', ['m'], ['loss'], { keepdims: 1 }, 'sum')], 10);
    assert.throws(() => buildGradientModel(bytes, { target: { kind: 'loss', tensor: 'loss' } }), (e: unknown) => isUserError(e) && /opset 11 or later.*re-export/.test((e as Error).message));
    const ok = graph([node('MatMul', ['x', 'W'], ['m'], {}, 'fc'), node('ReduceSum', ['m'], ['loss'], { keepdims: 0 }, 'sum')]);
    assert.throws(() => buildGradientModel(ok, { target: { kind: 'loss', tensor: 'nope' } }), (e: unknown) => isUserError(e) && /"nope" is not a tensor of the model/.test((e as Error).message));
  });
});
