/**
 * Gradients of a real exported CNN: PP-OCRv4 text detection (opset 11, weights in Constant
 * nodes, HardSigmoid/Clip activations, Resize and ConvTranspose in its head).
 *
 * The loss is a fixed random projection of the map before the final Sigmoid (the sigmoid
 * output saturates on synthetic images, which would leave almost nothing to compare). Each
 * check is a directional derivative: along the gradient restricted to one weight tensor,
 * the central difference of the loss must equal that restriction's norm. float32, step
 * 1e-3 along a unit direction, tolerance 1e-2 relative (measured: below 4e-3): the loss
 * (~600) is summed in float32, so much smaller steps drown in rounding, and much larger ones
 * cross the kinks of Clip and HardSigmoid.
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { test } from 'node:test';
import { onnx } from 'onnx-proto';
import * as ort from 'onnxruntime-node';
import { decodeModelProto, encodeModel } from '../../src/runtime/onnx/model';
import { buildGradientModel } from '../../src/runtime/train/autodiff';
import { readParameterValues } from '../../src/runtime/train/parameters';
import { MISSING_MODELS_HINT, ocrDetModelPath } from '../helpers/models';
import { seededValues } from '../helpers/tiny-model';

const SIZE = 64;

test('PP-OCRv4 det: every weight gets a gradient and per-tensor directional derivatives match finite differences', async (t) => {
  const path = ocrDetModelPath();
  assert.ok(path, `PP-OCRv4 det model not fetched: ${MISSING_MODELS_HINT}`);
  const proto = decodeModelProto(readFileSync(path), path);
  const graph = proto.graph!;
  const sigmoid = graph.node!.find((n) => n.opType === 'Sigmoid' && n.output?.[0] === graph.output?.[0]?.name);
  assert.ok(sigmoid, 'the model ends in a Sigmoid');
  const logits = sigmoid.input![0]!;
  graph.node = [
    ...graph.node!,
    { name: 'probe/mul', opType: 'Mul', input: [logits, 'probe.R'], output: ['probe.weighted'] },
    { name: 'probe/sum', opType: 'ReduceSum', input: ['probe.weighted'], output: ['probe.loss'], attribute: [{ name: 'keepdims', type: onnx.AttributeProto.AttributeType.INT, i: 0 }] },
  ];
  graph.initializer = [...(graph.initializer ?? []), { name: 'probe.R', dims: [1, 1, SIZE, SIZE], dataType: onnx.TensorProto.DataType.FLOAT, rawData: new Uint8Array(seededValues(SIZE * SIZE, 5).buffer) }];

  const g = buildGradientModel(encodeModel(proto), {
    target: { kind: 'loss', tensor: 'probe.loss' },
    freeze: ['probe.R'],
    parametersAsInputs: true,
    dims: { 'p2o.DynamicDimension.1': SIZE, 'p2o.DynamicDimension.2': SIZE },
    modelName: 'ch_PP-OCRv4_det_infer.onnx',
  });
  const convWeights = graph.node!.filter((n) => n.opType === 'Conv' || n.opType === 'ConvTranspose').map((n) => n.input![1]!);
  const trained = new Set(g.parameters.map((p) => p.of));
  for (const w of convWeights) assert.ok(trained.has(w), `convolution weight ${w} is trained`);
  assert.ok(g.untrained.some((u) => /batch_norm/.test(u)), 'BatchNormalization statistics are not trained');
  assert.ok(g.untrained.every((u) => !convWeights.includes(u)));

  // Initial values: initializers, and the Constant-node weights lifted into inputs.
  const values = readParameterValues(encodeModel(proto), [...trained], 'det');
  assert.equal(values.size, g.parameters.length);

  const session = await ort.InferenceSession.create(g.bytes, { intraOpNumThreads: 1, logSeverityLevel: 3 });
  try {
    const x = new ort.Tensor('float32', seededValues(3 * SIZE * SIZE, 8), [1, 3, SIZE, SIZE]);
    const feeds = (shift?: { name: string; by: Float32Array }): Record<string, ort.Tensor> => {
      const f: Record<string, ort.Tensor> = { x };
      for (const [name, v] of values) {
        const base = v.data as Float32Array;
        f[name] = new ort.Tensor('float32', shift?.name === name ? base.map((e, i) => e + shift.by[i]!) : base, v.dims);
      }
      return f;
    };
    const out = await session.run(feeds());
    const grads = new Map(g.parameters.map((p) => [p.of, out[p.output]!.data as Float32Array]));
    for (const [name, d] of grads) assert.ok(d.every(Number.isFinite), `gradient of ${name} is finite`);

    // The first and last convolutions, the ConvTranspose weights of the head, a BN scale.
    const convT = graph.node!.filter((n) => n.opType === 'ConvTranspose').map((n) => n.input![1]!);
    const bnScale = graph.node!.find((n) => n.opType === 'BatchNormalization')!.input![1]!;
    const lastConv = graph.node!.filter((n) => n.opType === 'Conv').at(-1)!.input![1]!;
    const checked = [convWeights[0]!, ...convT, lastConv, bnScale];
    const step = 1e-3;
    for (const name of checked) {
      const grad = grads.get(name)!;
      const norm = Math.sqrt(grad.reduce((s, v) => s + v * v, 0));
      assert.ok(norm > 0, `gradient of ${name} is not zero`);
      const lossAt = async (sign: number): Promise<number> => Number((await session.run(feeds({ name, by: grad.map((v) => (sign * step * v) / norm) })))['probe.loss']!.data[0]);
      const numeric = ((await lossAt(1)) - (await lossAt(-1))) / (2 * step);
      const rel = Math.abs(numeric - norm) / norm;
      t.diagnostic(`${name}: |g| ${norm.toPrecision(5)}, finite difference ${numeric.toPrecision(5)}, relative error ${rel.toExponential(2)}`);
      assert.ok(rel < 1e-2, `${name}: directional derivative ${numeric} against |g| ${norm}`);
    }
  } finally {
    await session.release();
  }
});
