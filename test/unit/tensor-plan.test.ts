/**
 * The tensor-parallel sharding planner and the memory table, on models built in code: the
 * demo model (LayerNorm + MLP blocks), generated transformer blocks with multi-head
 * attention, a model with nothing to split, and sizes that do not divide.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { isUserError } from '../../src/common/errors';
import { buildDemoModel } from '../../src/runtime/onnx/demo-model';
import { parseModel, type ModelIR } from '../../src/runtime/onnx/model';
import { partitionPipeline, estimateNodeCostsUs } from '../../src/runtime/pipeline/partition';
import { hybridShapes, memoryTable, peakActivationBytes } from '../../src/runtime/tensor/memory';
import { planTensorSharding, reshapedAxis, type TensorShardPlan } from '../../src/runtime/tensor/shard-plan';
import { parseByteSize, formatBytes } from '../../src/profiler/units';
import { nothingToSplitModelBytes, transformerModelBytes } from '../helpers/transformer-model';
import { tinyMatMulModelBytes } from '../helpers/tiny-model';

const demo = (layers: number, hidden = 64, ffn = 256): ModelIR => parseModel(buildDemoModel({ layers, hidden, ffn }), 'demo.onnx');
const transformer = (opts: Parameters<typeof transformerModelBytes>[0] = {}): ModelIR => parseModel(transformerModelBytes(opts), 'transformer.onnx');

/** Every split initializer's slices tile its split axis exactly, and their bytes add up to the whole. */
function assertSlicesTile(plan: TensorShardPlan): void {
  for (const p of plan.initializers) {
    if (p.kind !== 'split') continue;
    assert.equal(p.slices.length, plan.devices, p.name);
    let next = 0;
    for (const [d, s] of p.slices.entries()) {
      assert.equal(s.device, d);
      assert.equal(s.start, next, `${p.name} slice ${d} starts where the previous ends`);
      next += s.length;
    }
    assert.equal(next, p.dims[p.axis], `${p.name} slices cover axis ${p.axis}`);
    assert.equal(p.slices.reduce((a, s) => a + s.bytes, 0), p.bytes);
  }
}

function splitBytes(plan: TensorShardPlan): number {
  return plan.initializers.filter((p) => p.kind === 'split' && p.parameter).reduce((a, p) => a + p.bytes, 0);
}

describe('tensor sharding planner', () => {
  it('splits every MLP block of the demo model column- then row-wise with exactly one all-reduce per block', () => {
    const layers = 4;
    const ir = demo(layers);
    const plan = planTensorSharding(ir, 2);
    assert.equal(plan.groups.length, layers);
    assert.equal(plan.collectives.length, layers);
    for (const [i, g] of plan.groups.entries()) {
      assert.deepEqual(g.columnNodes, [`/layers.${i}/mlp/fc1/MatMul`]);
      assert.deepEqual(g.rowNodes, [`/layers.${i}/mlp/fc2/MatMul`]);
      assert.equal(g.collectives.length, 1);
      const c = plan.collectives[g.collectives[0]];
      assert.equal(c.op, 'all-reduce');
      assert.equal(c.afterNode, `/layers.${i}/mlp/fc2/MatMul`);
      // The all-reduce carries fc2's whole output: hidden float32 values per row.
      assert.equal(c.bytesPerRow, 64 * 4);
    }
    const byName = new Map(plan.initializers.map((p) => [p.name, p]));
    const fc1 = byName.get('layers.0.mlp.fc1.weight')!;
    const fc2 = byName.get('layers.0.mlp.fc2.weight')!;
    assert.ok(fc1.kind === 'split' && fc1.axis === 1 && fc1.role === 'column-weight');
    assert.ok(fc2.kind === 'split' && fc2.axis === 0 && fc2.role === 'row-weight');
    assert.equal(byName.get('layers.0.mlp.fc1.bias')!.kind, 'split', 'the bias of the column split follows it');
    assert.equal(byName.get('layers.0.mlp.fc2.bias')!.kind, 'replicated', 'the bias after the all-reduce is added once');
    assert.equal(byName.get('layers.0.ln.weight')!.kind, 'replicated');
    assert.deepEqual(plan.notSplit, []);
    assertSlicesTile(plan);
  });

  it('holds about half of the demo model\'s parameter bytes per device at 2-way, and exactly the IR\'s bytes in all', () => {
    const ir = demo(3);
    const plan = planTensorSharding(ir, 2);
    const split = splitBytes(plan);
    const replicated = ir.parameterBytes - split;
    for (const b of plan.perDeviceParameterBytes) {
      assert.equal(b, replicated + split / 2);
      assert.ok(Math.abs(b / ir.parameterBytes - 0.5) <= 0.05, `share ${b / ir.parameterBytes}`);
    }
    // Every byte of the model is on some device: the slices once, the rest on each.
    assert.equal(plan.perDeviceParameterBytes.reduce((a, b) => a + b, 0), ir.parameterBytes + replicated);
  });

  it('splits a transformer block\'s attention by heads and its MLP by columns: two all-reduces per block', () => {
    const blocks = 2;
    const plan = planTensorSharding(transformer({ blocks }), 2);
    assert.equal(plan.groups.length, 2 * blocks);
    assert.equal(plan.collectives.filter((c) => c.op === 'all-reduce').length, 2 * blocks);
    assert.equal(plan.collectives.filter((c) => c.op === 'all-gather').length, 0);
    for (let b = 0; b < blocks; b++) {
      const attn = plan.groups.find((g) => g.label === `/blocks.${b}/attn`)!;
      assert.deepEqual([...attn.columnNodes].sort(), ['q', 'k', 'v'].map((x) => `/blocks.${b}/attn/${x}/MatMul`).sort());
      assert.deepEqual(attn.rowNodes, [`/blocks.${b}/attn/o/MatMul`]);
      assert.ok(attn.nodes.includes(`/blocks.${b}/attn/Softmax`), 'softmax runs per head on each device');
      const mlp = plan.groups.find((g) => g.label === `/blocks.${b}/mlp`)!;
      assert.deepEqual(mlp.rowNodes, [`/blocks.${b}/mlp/fc2/MatMul`]);
      assert.ok(mlp.nodes.includes(`/blocks.${b}/mlp/act/Erf`), 'the Erf form of Gelu carries the split');
    }
    // Scores per head: [batch, heads, seq, seq] split on the heads axis.
    assert.equal(plan.splitTensors['/blocks.0/attn/Softmax_output_0'], 1);
    assertSlicesTile(plan);
  });

  it('says why a layer is left whole when its width does not divide, and splits the rest', () => {
    // 4 heads of hidden 32 split 4 ways; the MLP's 30 columns do not.
    const plan = planTensorSharding(transformer({ ffn: 30 }), 4);
    assert.deepEqual(plan.groups.map((g) => g.label), ['/blocks.0/attn']);
    const fc1 = plan.notSplit.find((x) => x.node === '/blocks.0/mlp/fc1/MatMul');
    assert.ok(fc1, JSON.stringify(plan.notSplit));
    assert.equal(fc1.weight, 'blocks.0.mlp.fc1.weight');
    assert.match(fc1.reason, /dimension 30 .* not divisible by 4/);
    // fc2, then fed a whole input, could start a split but its output meets the residual Add.
    const fc2 = plan.notSplit.find((x) => x.node === '/blocks.0/mlp/fc2/MatMul');
    assert.ok(fc2);
    assert.match(fc2.reason, /Add node "\/blocks.0\/Add" cannot take the split/);
  });

  it('refuses a model with nothing to split with one user error naming what it looked for', () => {
    for (const [ir, n, why] of [
      [parseModel(nothingToSplitModelBytes(), 'nothing.onnx'), 2, /"w" is not a 2-D floating-point initializer/],
      [demo(1, 48, 100), 3, /not divisible by 3|cannot take the split/],
    ] as const) {
      assert.throws(
        () => planTensorSharding(ir, n),
        (e: unknown) => {
          assert.ok(isUserError(e));
          const msg = (e as Error).message;
          assert.doesNotMatch(msg, /\n/);
          assert.match(msg, /nothing to split for tensor parallelism/);
          assert.match(msg, /looked for MatMul\/Gemm nodes with a 2-D initializer weight/);
          assert.match(msg, why);
          return true;
        },
      );
    }
  });

  it('gathers a column-split layer whose output leaves the graph', () => {
    const ir = parseModel(tinyMatMulModelBytes({ k: 16, n: 8 }).bytes, 'tiny.onnx');
    const plan = planTensorSharding(ir, 2);
    assert.equal(plan.collectives.length, 1);
    const c = plan.collectives[0];
    assert.ok(c.op === 'all-gather');
    assert.equal(c.tensor, 'y');
    assert.equal(c.axis, 1);
    assert.equal(c.bytesPerRow, 8 * 4);
  });

  it('refuses fewer than two devices', () => {
    assert.throws(() => planTensorSharding(demo(1), 1), (e: unknown) => isUserError(e) && /at least 2 devices/.test((e as Error).message));
  });

  it('maps a split through reshapes that keep its parts contiguous', () => {
    assert.equal(reshapedAxis([1, 8, 32], 2, [1, 8, 4, 8], 2), 2, 'hidden → heads');
    assert.equal(reshapedAxis([1, 8, 4, 8], 2, [1, 8, 32], 2), 2, 'heads → hidden');
    assert.equal(reshapedAxis([1, 8, 4, 8], 3, [1, 8, 32], 2), null, 'a split inside each head is not contiguous in the merged axis');
    assert.equal(reshapedAxis([1, 8, 32], 2, [1, 8, 2, 16], 4), null, 'two heads do not split four ways');
  });
});

describe('memory table', () => {
  const ir = demo(4);
  const plan = planTensorSharding(ir, 2);
  const table = memoryTable(ir, { devices: 2, batch: 64, microBatches: 4, capacityBytes: null, tensor: plan });
  const get = (mode: string) => {
    const p = table.plans.find((x) => x.mode === mode)!;
    assert.equal(p.kind, 'planned');
    return p as Extract<typeof p, { kind: 'planned' }>;
  };

  it('matches the IR\'s parameter bytes exactly for the data, pipeline and tensor plans', () => {
    const data = get('data');
    assert.ok(data.devices.every((d) => d.parameterBytes === ir.parameterBytes));
    const pipeline = get('pipeline');
    assert.equal(pipeline.devices.length, 2);
    // The demo model's stages share no weight, so the stages' bytes add up to the model's.
    assert.equal(pipeline.devices.reduce((a, d) => a + d.parameterBytes, 0), ir.parameterBytes);
    const stages = partitionPipeline(ir, estimateNodeCostsUs(ir), 2, { costSource: 'estimated' }).stages;
    assert.deepEqual(pipeline.devices.map((d) => d.parameterBytes), stages.map((s) => s.parameterBytes));
    const tensor = get('tensor');
    assert.deepEqual(tensor.devices.map((d) => d.parameterBytes), plan.perDeviceParameterBytes);
    const split = splitBytes(plan);
    assert.equal(tensor.devices[0].parameterBytes * 2 - (ir.parameterBytes - split), ir.parameterBytes);
  });

  it('matches the IR\'s parameter bytes exactly for a data × tensor hybrid: every replica holds one tensor plan\'s slices', () => {
    const half = planTensorSharding(ir, 2);
    const t = memoryTable(ir, { devices: 4, batch: 64, microBatches: 4, capacityBytes: null, tensor: planTensorSharding(ir, 4), hybrids: [{ data: 2, tensor: half }] });
    const hybrid = t.plans.find((p) => p.mode === 'hybrid')!;
    assert.ok(hybrid.kind === 'planned');
    assert.equal(hybrid.label, 'data 2 × tensor 2');
    assert.equal(hybrid.rows, 32, 'a replica runs half the batch');
    assert.deepEqual(hybrid.devices.map((d) => d.device), [0, 1, 2, 3]);
    assert.deepEqual(hybrid.devices.map((d) => d.parameterBytes), [...half.perDeviceParameterBytes, ...half.perDeviceParameterBytes]);
    // Per replica: the split weights once, the replicated ones on each of its two devices.
    const split = splitBytes(half);
    for (const r of [0, 1]) {
      const replica: number = hybrid.devices.slice(2 * r, 2 * r + 2).reduce((a, d) => a + d.parameterBytes, 0);
      assert.equal(replica - (ir.parameterBytes - split), ir.parameterBytes);
    }
    // Activations: half the rows of the tensor ×2 plan's, split tensors at half.
    const tensor2 = get('tensor');
    assert.ok(hybrid.devices[0]!.activationBytes < tensor2.devices[0]!.activationBytes);
    assert.deepEqual(hybridShapes(4), [{ data: 2, tensor: 2 }]);
    assert.deepEqual(hybridShapes(8), [{ data: 2, tensor: 4 }, { data: 4, tensor: 2 }]);
    assert.deepEqual(hybridShapes(2), []);
  });

  it('estimates activations from shapes at the rows each device handles', () => {
    const data = get('data');
    const pipeline = get('pipeline');
    const tensor = get('tensor');
    assert.equal(data.rows, 32);
    assert.equal(pipeline.rows, 16);
    assert.equal(tensor.rows, 64);
    // The demo model is a chain of [rows, 64] and [rows, 256] float32 tensors; its peak is
    // while fc1's Add runs: the residual, fc1's output and the Add's output, [rows, 64 + 256 + 256].
    assert.equal(data.devices[0].activationBytes, 32 * (64 + 256 + 256) * 4);
    assert.equal(pipeline.devices[0].activationBytes, 16 * (64 + 256 + 256) * 4);
    // Tensor parallel: the whole batch, the ffn-wide tensors at half width.
    assert.equal(tensor.devices[0].activationBytes, 64 * (64 + 128 + 128) * 4);
    assert.ok([data, pipeline, tensor].every((p) => p.devices.every((d) => d.unknownTensors === 0 && d.totalBytes === d.parameterBytes + d.activationBytes)));
  });

  it('marks the plans that do not fit a capacity and names those that do', () => {
    const cap = get('pipeline').maxBytes;
    const t = memoryTable(ir, { devices: 2, batch: 64, microBatches: 4, capacityBytes: cap, tensor: plan });
    assert.deepEqual(t.notFitting, ['data ×2', 'tensor ×2']);
    assert.deepEqual(t.fitting, ['pipeline ×2']);
    const none = memoryTable(ir, { devices: 2, batch: 64, microBatches: 4, capacityBytes: 1024, tensor: plan });
    assert.deepEqual(none.fitting, []);
    assert.equal(none.notFitting.length, 3);
  });

  it('says why a plan is impossible instead of failing the table', () => {
    const t = memoryTable(ir, { devices: 2, batch: 64, microBatches: 4, capacityBytes: null, tensor: { reason: 'nothing to split' } });
    const tensor = t.plans.find((p) => p.mode === 'tensor')!;
    assert.ok(tensor.kind === 'impossible' && tensor.reason === 'nothing to split');
  });

  it('holds a graph input from the start and frees each tensor after its last reader', () => {
    const tiny = parseModel(tinyMatMulModelBytes({ k: 16, n: 8, relu: true }).bytes, 'tiny.onnx');
    const shapes = new Map([
      ['x', { dtype: 'float32' as const, dims: [1, 16] }],
      ['xw', { dtype: 'float32' as const, dims: [1, 8] }],
      ['pre', { dtype: 'float32' as const, dims: [1, 8] }],
      ['y', { dtype: 'float32' as const, dims: [1, 8] }],
    ]);
    // matmul holds x and xw (96 B); add: xw and pre (64 B); relu: pre and y (64 B).
    assert.deepEqual(peakActivationBytes(tiny, tiny.topoOrder, shapes), { bytes: 96, unknownTensors: 0 });
  });
});

describe('byte sizes', () => {
  it('parses sizes as users write them', () => {
    assert.equal(parseByteSize('16GiB'), 16 * 2 ** 30);
    assert.equal(parseByteSize('16 gib'), 16 * 2 ** 30);
    assert.equal(parseByteSize('16g'), 16 * 2 ** 30);
    assert.equal(parseByteSize('80GB'), 80e9);
    assert.equal(parseByteSize('1.5MiB'), 1.5 * 2 ** 20);
    assert.equal(parseByteSize('4096'), 4096);
    assert.equal(parseByteSize('512 B'), 512);
    for (const bad of ['', 'GiB', '-1GiB', '0', '16 gigs', '1e3', '16GiB!']) assert.equal(parseByteSize(bad), null, bad);
  });

  it('formats sizes with binary units', () => {
    assert.equal(formatBytes(512), '512 B');
    assert.equal(formatBytes(1536), '1.50 KiB');
    assert.equal(formatBytes(16 * 2 ** 30), '16.0 GiB');
    assert.equal(formatBytes(parseByteSize('2TiB')!), '2.00 TiB');
  });
});

