/**
 * The training models of pipeline stages, run in real onnxruntime-node sessions:
 *  - a stage-shaped graph (received activation in, LayerNormalization → MatMul → Relu →
 *    MatMul + residual out) whose gradients with respect to its input activation and its
 *    weights match central finite differences (float64, tolerance 1e-6 relative to the
 *    largest numeric gradient);
 *  - the two stages of a small demo model chained as a pipeline micro-batch does it (stage 0
 *    forward → stage 1 forward and backward → stage 0 backward, the activation gradient
 *    handed back under the name stage 0 reads it) give the whole model's weight gradients
 *    (float32, |a−b| ≤ 1e-5 + 1e-4·|b|: the stages compute the same sums in the same order
 *    but the runtime may fuse differently across the cut);
 *  - what pipeline training cannot do is refused with one line.
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import * as ort from 'onnxruntime-node';
import { onnx } from 'onnx-proto';
import { buildDemoModel } from '../../src/runtime/onnx/demo-model';
import { decodeModelProto, parseModel } from '../../src/runtime/onnx/model';
import { estimateNodeCostsUs, partitionFromCuts, partitionPipeline } from '../../src/runtime/pipeline/partition';
import { buildPipelineTrainingModels } from '../../src/runtime/train/pipeline-models';
import { buildTrainingModels } from '../../src/runtime/train/step-models';
import { readParameterValues } from '../../src/runtime/train/parameters';
import { TRAIN_DEFAULTS } from '../../src/profiler/plan';
import { isUserError } from '../../src/common/errors';
import { checkGradients, node } from '../helpers/grad-check';
import { seededValues } from '../helpers/tiny-model';

const options: ort.InferenceSession.SessionOptions = { intraOpNumThreads: 1, interOpNumThreads: 1, executionMode: 'sequential' };

describe('pipeline stage gradients', () => {
  test('a stage’s input-activation and weight gradients match central finite differences', async () => {
    const hidden = 6;
    const r = await checkGradients({
      nodes: [
        node('LayerNormalization', ['h', 'g', 'b'], ['n'], { axis: -1, epsilon: { f: 1e-5 } }, 'ln'),
        node('MatMul', ['n', 'W1'], ['m1'], {}, 'fc1'),
        node('Relu', ['m1'], ['a'], {}, 'act'),
        node('MatMul', ['a', 'W2'], ['m2'], {}, 'fc2'),
        node('Add', ['h', 'm2'], ['y'], {}, 'residual'),
      ],
      dtype: 'float64',
      tol: 1e-6,
      inputs: { h: { dims: [3, hidden] } },
      params: { g: { dims: [hidden], offset: 1, scale: 0.1 }, b: { dims: [hidden], scale: 0.1 }, W1: { dims: [hidden, 8], scale: 0.4 }, W2: { dims: [8, hidden], scale: 0.4 } },
      branches: { nodes: [node('Greater', ['m1', 'zero'], ['relu_mask'], {}, 'mask')], outputs: ['relu_mask'] },
      constants: [{ name: 'zero', dims: [], dataType: 11, doubleData: [0] }],
    });
    assert.ok(r.gradient.inputGradients.some((g) => g.of === 'h' && g.reached), 'the input activation has a gradient');
    assert.ok(r.checked >= 20, `${r.checked} elements checked`);
  });

  test('two demo stages chained micro-batch style give the whole model’s weight gradients', async () => {
    const bytes = buildDemoModel({ layers: 2, hidden: 16, ffn: 32 });
    const ir = parseModel(bytes, 'demo');
    const part = partitionPipeline(ir, estimateNodeCostsUs(ir, { batch: 4 }), 2);
    const train = { ...TRAIN_DEFAULTS };
    const whole = buildTrainingModels(bytes, train, 'demo');
    const stages = buildPipelineTrainingModels(bytes, ir, part, { train, output: whole.withLoss.output, labels: whole.withLoss.labels }, 'demo');
    const values = readParameterValues(bytes, whole.context.parameters.map((p) => p.name), 'demo');
    const feeds = new Map<string, ort.Tensor>();
    for (const [name, v] of values) feeds.set(name, new ort.Tensor('float32', v.data as Float32Array, whole.context.parameters.find((p) => p.name === name)!.dims));
    feeds.set('x', new ort.Tensor('float32', seededValues(4 * 16, 5), [4, 16]));
    feeds.set(whole.withLoss.labels, new ort.Tensor('float32', seededValues(4 * 16, 6), [4, 16]));
    const run = async (model: Uint8Array): Promise<void> => {
      const s = await ort.InferenceSession.create(model, options);
      try {
        const out = await s.run(Object.fromEntries(s.inputNames.map((n) => [n, feeds.get(n) ?? assert.fail(`no feed for ${n}`)])));
        for (const [n, t] of Object.entries(out)) feeds.set(n, t);
      } finally {
        await s.release();
      }
    };
    // Whole model: its forward and backward cut as data-parallel training runs them.
    const cut = whole.cut([whole.context.parameters.map((p) => p.grad)]);
    await run(cut.forward);
    await run(cut.backward[0]!);
    const reference = new Map(whole.context.parameters.map((p) => [p.name, Float32Array.from(feeds.get(p.grad)!.data as Float32Array)]));
    // The pipeline starts from the weights, inputs and labels only.
    const keep = new Set(['x', whole.withLoss.labels, ...whole.context.parameters.map((p) => p.name)]);
    for (const k of [...feeds.keys()]) if (!keep.has(k)) feeds.delete(k);
    // The pipeline: F0, F1, B1, B0.
    await run(stages.stages[0]!.forward);
    await run(stages.stages[1]!.forward);
    await run(stages.stages[1]!.backward);
    assert.deepEqual(
      stages.stages[1]!.context.inputGrads.map((g) => g.grad).sort(),
      stages.stages[0]!.context.outputGrads.map((g) => g.grad).sort(),
      'stage 0 reads the activation gradients under the names stage 1 outputs them',
    );
    await run(stages.stages[0]!.backward);
    let compared = 0;
    for (const st of stages.stages) {
      for (const p of st.context.parameters) {
        const got = feeds.get(p.grad)!.data as Float32Array;
        const want = reference.get(p.name)!;
        assert.equal(got.length, want.length, p.name);
        for (let i = 0; i < want.length; i++) assert.ok(Math.abs(got[i]! - want[i]!) <= 1e-5 + 1e-4 * Math.abs(want[i]!), `${p.name}[${i}]: ${got[i]} vs ${want[i]}`);
        assert.ok(want.some((v) => v !== 0), `${p.name}: a gradient that is not all zeros`);
        compared++;
      }
    }
    assert.equal(compared, whole.context.parameters.length, 'every parameter is trained by exactly one stage');
    // What each stage keeps per micro-batch: the tensors its backward reads other than weights and received gradients.
    for (const st of stages.stages) {
      const inputs = (decodeModelProto(st.backward, 'b').graph?.input ?? []).map((i) => i.name);
      assert.deepEqual(st.context.stash, inputs.filter((n) => !st.context.parameters.some((p) => p.name === n) && !st.context.outputGrads.some((g) => g.grad === n)));
    }
  });

  test('a model output before the last stage is refused with one line naming it and what to do', () => {
    // x → MatMul(W1) → h (an output too) → MatMul(W2) → y.
    const T = { elemType: 1, shape: { dim: [{ dimParam: 'batch' }, { dimValue: 4 }] } };
    const w = (name: string): onnx.ITensorProto => ({ name, dims: [4, 4], dataType: 1, floatData: Array.from(seededValues(16, name.length)) });
    const bytes = onnx.ModelProto.encode({
      irVersion: 8,
      opsetImport: [{ domain: '', version: 17 }],
      graph: {
        name: 'two',
        node: [node('MatMul', ['x', 'W1'], ['h'], {}, 'fc1'), node('MatMul', ['h', 'W2'], ['y'], {}, 'fc2')],
        initializer: [w('W1'), w('W2')],
        input: [{ name: 'x', type: { tensorType: T } }],
        output: [{ name: 'y', type: { tensorType: T } }, { name: 'h', type: { tensorType: T } }],
      },
    }).finish();
    const ir = parseModel(bytes, 'two.onnx');
    const part = partitionFromCuts(ir, ['fc1']);
    assert.throws(
      () => buildPipelineTrainingModels(bytes, ir, part, { train: { ...TRAIN_DEFAULTS }, output: 'y', labels: 'labels' }, 'two.onnx'),
      (e: unknown) => isUserError(e) && /^two\.onnx: model output "h" is produced in stage 0, not the last; .*--cuts/.test((e as Error).message) && !(e as Error).message.includes('\n'),
    );
  });
});
