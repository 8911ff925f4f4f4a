/**
 * Tensor-parallel training's pure parts on models built in code (no ONNX Runtime; the runs
 * are in test/integration/train-tensor.test.ts):
 *  - a gradient named for a cut is the one every rule further back reads;
 *  - a device's initial weights are its slices of the whole model's, and gathering every
 *    device's slices gives the whole tensors back (a row-parallel Gemm's bias from device 0's
 *    copy);
 *  - the compiled step of the demo model all-reduces once per block forward and once per
 *    block backward (the gradient of the column-parallel layers' input, Megatron's f), of a
 *    generated transformer block twice each (attention and MLP); device 0 alone trains a
 *    row-parallel Gemm's bias; the partial gradients of replicated weights read inside split
 *    layers are all-reduced once before the optimizer; a weight several segments read is
 *    trained once, from the sum of their gradients;
 *  - what tensor-parallel training cannot do is refused with one line.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { buildDemoModel } from '../../src/runtime/onnx/demo-model';
import { parseModel } from '../../src/runtime/onnx/model';
import { prepareTensor } from '../../src/runtime/compile/tensor';
import { compileTrainTensor, gradientBufferName, PARTIAL_GRADIENTS_BUFFER } from '../../src/runtime/compile/train-tensor';
import type { CompileContext } from '../../src/runtime/compile/common';
import { buildTensorTrainingModels } from '../../src/runtime/train/tensor-models';
import { buildTrainingModels } from '../../src/runtime/train/step-models';
import { buildGradientModel } from '../../src/runtime/train/autodiff';
import { readParameterValues } from '../../src/runtime/train/parameters';
import { gatherShardParameters, shardInitialWeights } from '../../src/runtime/tensor/shard-weights';
import { rowBiasName } from '../../src/runtime/tensor/shard-model';
import { makePlan, PlanFieldError, TRAIN_DEFAULTS, type TensorPlan, type TrainPlan } from '../../src/profiler/plan';
import { isUserError } from '../../src/common/errors';
import { segmentKey } from '../../src/profiler/simulate/costs';
import { gemmMlpModelBytes, transformerModelBytes } from '../helpers/transformer-model';

const train: TrainPlan = { ...TRAIN_DEFAULTS };

/** The tensor training models and compiled program of `bytes` on 2 devices, batch 4. */
function compileModel(bytes: Uint8Array, xDims: number[], t: TrainPlan = train) {
  const ir = parseModel(bytes, 'model.onnx');
  const prep = prepareTensor(ir, 2, {});
  const whole = buildTrainingModels(bytes, t, 'model.onnx');
  const models = buildTensorTrainingModels(bytes, ir, prep, { train: t, output: whole.withLoss.output, labels: whole.withLoss.labels }, 'model.onnx');
  const ctx: CompileContext = {
    inputs: [
      { name: 'x', dtype: 'float32', dims: xDims, batchAxis: 0 },
      { name: whole.withLoss.labels, dtype: 'float32', dims: xDims, batchAxis: 0 },
    ],
    outputs: [{ name: 'y', batchAxis: 0 }],
    parameterCount: ir.parameterCount,
    devices: 2,
    nodeNames: ir.nodes.map((n) => n.name),
    tensorTraining: models.context,
  };
  const plan: TensorPlan & { train: TrainPlan } = { mode: 'tensor', devices: 'cpu:2', batch: xDims[0]!, steps: 1, warmup: 0, seed: 1, train: t };
  return { ir, prep, whole, models, program: compileTrainTensor(plan, prep, ctx, models.context) };
}

/** Per device, its collectives in step order as `F <layer>` / `B <layer>`, or `G <parameters>` for a gradient buffer. */
function collectives(p: ReturnType<typeof compileModel>['program']): string[][] {
  return p.devices.map((d) =>
    d.instructions.flatMap((i) => {
      if (i.op !== 'collective') return [];
      const buf = p.buffers.find((b) => b.name === i.buffer)!;
      if (buf.gradients) return [`G ${buf.gradients.map((g) => g.param).join(',')}`];
      return [`${buf.activation!.phase === 'backward' ? 'B' : 'F'} ${buf.activation!.layer}`];
    }),
  );
}

describe('a named gradient (the cut the f all-reduce sits at)', () => {
  it('is an Identity of the summed gradient that every rule further back reads; a tensor whose gradient nothing reads gets none', () => {
    const ln = '/layers.0/ln/LayerNormalization_output_0';
    const g = buildGradientModel(buildDemoModel({ layers: 1, hidden: 8, ffn: 16 }), { target: { kind: 'outputs', tensors: ['y'] }, parametersAsInputs: true, namedGradients: [ln, 'x'] });
    const named = g.namedGradients.get(ln)!;
    assert.ok(named, 'the LayerNorm output has a named gradient');
    assert.equal(g.namedGradients.has('x'), false, 'x is not differentiated');
    const nodes = g.model.graph!.node!;
    const producer = nodes.filter((n) => (n.output ?? []).includes(named));
    assert.equal(producer.length, 1);
    assert.equal(producer[0]!.opType, 'Identity');
    const readers = nodes.filter((n) => (n.input ?? []).includes(named));
    assert.ok(readers.length > 0, 'the LayerNorm gradient rule reads it');
    // Nothing reads the unnamed sum except the Identity: the cut sees every contribution.
    const sum = producer[0]!.input![0]!;
    assert.deepEqual(nodes.filter((n) => (n.input ?? []).includes(sum)).map((n) => n.opType), ['Identity']);
  });
});

describe('tensor-parallel training weights', () => {
  it('a device starts from its slices, and the slices of every device gather into the whole tensors', () => {
    const bytes = gemmMlpModelBytes(16, 32, { residual: true });
    const { prep, models } = compileModel(bytes, [4, 16]);
    const names = ['fc1.weight', 'fc1.bias', 'fc2.weight', 'fc2.bias'];
    const whole = Object.fromEntries([...readParameterValues(bytes, names)].map(([k, v]) => [k, v.data as Float32Array]));
    const perRank = models.context.ranks.map((r, rank) => shardInitialWeights(prep.shard, whole, rank, r.parameters.map((p) => p.name)));
    // Device 0 trains the row-parallel bias (its copy); device 1 holds zeros and keeps them.
    const bias = rowBiasName('fc2.bias');
    assert.ok(bias in perRank[0]!, 'device 0 trains the bias copy');
    assert.ok(!(bias in perRank[1]!), 'device 1 does not');
    assert.deepEqual(perRank[0]![bias], whole['fc2.bias']);
    // Column-parallel fc1 [16, 32] by columns, row-parallel fc2 (transB, [16, 32]) by its second axis.
    for (const r of perRank) {
      assert.equal(r['fc1.weight']!.length, 16 * 16);
      assert.equal(r['fc1.bias']!.length, 16);
      assert.equal(r['fc2.weight']!.length, 16 * 16);
    }
    assert.notDeepEqual(perRank[0]!['fc1.weight'], perRank[1]!['fc1.weight']);
    const gathered = gatherShardParameters(prep.shard, perRank);
    assert.deepEqual(Object.keys(gathered).sort(), [...names].sort());
    for (const n of names) assert.deepEqual(gathered[n], whole[n], n);
  });
});

describe('tensor-parallel training program', () => {
  it('demo model: one all-reduce per block forward and one backward, in reverse block order', () => {
    const layers = 3;
    const { program, models } = compileModel(buildDemoModel({ layers, hidden: 16, ffn: 32 }), [4, 16]);
    const blocks = Array.from({ length: layers }, (_, i) => `/layers.${i}/mlp`);
    const want = [...blocks.map((b) => `F ${b}`), ...[...blocks].reverse().map((b) => `B ${b}`)];
    assert.deepEqual(collectives(program), [want, want]);
    // The backward all-reduces carry the LayerNorm outputs' gradients, sized as those outputs.
    for (let k = 0; k < layers; k++) {
      const r = models.context.reductions[k]!;
      assert.equal(r.of, `/layers.${k}/ln/LayerNormalization_output_0`);
      assert.equal(program.buffers.find((b) => b.name === gradientBufferName(k))!.elements, 4 * 16);
    }
    // Each device: K forwards, 2 backwards per part with an all-reduce, 1 for the last part, then its optimizer.
    for (const d of program.devices) {
      const runs = d.instructions.filter((i) => i.op === 'run').map((i) => (i.op === 'run' ? i.phase : ''));
      assert.deepEqual(runs, [...Array(layers + 1).fill('forward'), ...Array(2 * layers + 1).fill('backward'), 'optimizer']);
      assert.ok(!d.instructions.some((i) => i.op === 'gather'), 'a training step gathers no outputs');
    }
    // The simulator costs each of a device's segments apart: the two backward pieces of a part too.
    const own = program.devices[0]!.segments.map((id) => segmentKey(program.segments[id]!));
    assert.equal(new Set(own).size, own.length, own.join(', '));
    assert.equal(program.stageTraining!.length, 2);
    assert.ok(program.stageTraining!.every((t) => t.ownParameters === true));
  });

  it('transformer block: two all-reduces forward (attention, MLP) and two backward, then the partial gradients of the scalar weights read in the split layers', () => {
    const blocks = ['F /blocks.0/attn', 'F /blocks.0/mlp', 'B /blocks.0/mlp', 'B /blocks.0/attn'];
    const { program } = compileModel(transformerModelBytes({ blocks: 1 }), [2, 8, 32]);
    // The attention scale divides each device's heads; the Gelu constants each device's columns.
    const want = [...blocks, 'G const.sqrt_d,const.sqrt2,const.one,const.half'];
    assert.deepEqual(collectives(program), [want, want]);
    const buf = program.buffers.find((b) => b.name === PARTIAL_GRADIENTS_BUFFER)!;
    assert.equal(buf.elements, 4, 'four scalars');
    // Frozen, they are not trained and nothing is all-reduced for them.
    const frozen = compileModel(transformerModelBytes({ blocks: 1 }), [2, 8, 32], { ...train, freeze: ['const.*'] }).program;
    assert.deepEqual(collectives(frozen), [blocks, blocks]);
  });
});

describe('weights several segments read', () => {
  it('are trained once per device, from the sum of each segment’s gradient; inside split layers each share is all-reduced', () => {
    const { program, models } = compileModel(transformerModelBytes({ blocks: 2 }), [2, 8, 32]);
    for (const r of models.context.ranks) {
      const names = r.parameters.map((p) => p.name);
      assert.equal(new Set(names).size, names.length, 'each parameter once');
      assert.match(r.parameters.find((p) => p.name === 'const.sqrt2')!.grad, /\.sum$/, 'the optimizer reads the sum');
    }
    const buf = program.buffers.find((b) => b.name === PARTIAL_GRADIENTS_BUFFER)!;
    // Each block's attention and MLP segment reads the scalars it uses: two shares of each.
    for (const c of ['const.sqrt_d', 'const.sqrt2', 'const.one', 'const.half']) {
      const shares = buf.gradients!.filter((g) => g.param === c);
      assert.equal(shares.length, 2, c);
      assert.notEqual(shares[0]!.grad, shares[1]!.grad);
    }
  });
});

describe('tensor-parallel training refusals', () => {
  const refused = (fn: () => unknown, pattern: RegExp): void => {
    assert.throws(fn, (e: unknown) => isUserError(e) && pattern.test((e as Error).message) && !(e as Error).message.includes('\n'));
  };

  it('a model whose output is a row-parallel partial sum', () => {
    refused(() => compileModel(gemmMlpModelBytes(16, 32), [4, 16]), /output "y" is the partial sum of row-parallel \/fc2\/Gemm.*--mode data/);
  });

  it('the plan refuses the data-parallel gradient flags', () => {
    const base = { mode: 'tensor' as const, devices: 'cpu:2', batch: 4, steps: 1, warmup: 0, seed: 1 };
    assert.equal(makePlan({ ...base, train }).mode, 'tensor');
    assert.throws(() => makePlan({ ...base, train: { ...train, gradDtype: 'float16' } }), (e: unknown) => e instanceof PlanFieldError && /--grad-dtype and --sync-every/.test((e as Error).message));
  });
});
