/**
 * Tensor-parallel shard models, in-process with real onnxruntime-node sessions: the compiled
 * program's chains are run device by device, their partial sums added where the program
 * all-reduces them, and the result compared with the whole model on one device. Checks too
 * that each device's models hold only its slices of the split weights.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import * as ort from 'onnxruntime-node';
import { onnx } from 'onnx-proto';
import { tempDir } from '../helpers/temp';
import { seededValues } from '../helpers/tiny-model';
import { gemmMlpModelBytes, transformerModelBytes } from '../helpers/transformer-model';
import { cnnModelBytes } from '../helpers/cnn-model';
import { buildDemoModel } from '../../src/runtime/onnx/demo-model';
import { parseModel } from '../../src/runtime/onnx/model';
import { compileTensor, prepareTensor, type TensorPrepared } from '../../src/runtime/compile/tensor';
import { writeShardModels } from '../../src/runtime/tensor/shard-model';
import type { CompileContext } from '../../src/runtime/compile';
import type { Program } from '../../src/profiler/program';

const dir = tempDir('tensor-shards');

interface Compiled {
  path: string;
  prep: TensorPrepared;
  program: Program;
  paths: Record<number, string>;
}

/** Plans, compiles and writes the shard models of `bytes` over `n` devices for a batch of `batch`, input `x` of `dims`. */
function compiled(name: string, bytes: Uint8Array, n: number, dims: number[]): Compiled {
  const path = join(dir, `${name}.onnx`);
  writeFileSync(path, bytes);
  const ir = parseModel(bytes, path);
  const prep = prepareTensor(ir, n, { batch: dims[0]! });
  const ctx: CompileContext = {
    inputs: [{ name: 'x', dtype: 'float32', dims, batchAxis: 0 }],
    outputs: [{ name: 'y', batchAxis: 0 }],
    parameterCount: ir.parameterCount,
    devices: n,
    nodeNames: ir.nodes.map((x) => x.name),
  };
  const plan = { mode: 'tensor' as const, devices: `cpu:${n}`, batch: dims[0]!, steps: 1, warmup: 0, seed: 0 };
  const program = compileTensor(plan, prep, ctx);
  return { path, prep, program, paths: writeShardModels(path, program, prep, join(dir, `${name}-shards`)) };
}

/**
 * Runs the program's instructions on every device in lockstep, with real sessions on the
 * shard models; an all-reduce is the plain sum of the devices' partial tensors. Returns `y`.
 */
async function runChains(c: Compiled, x: ort.Tensor): Promise<Float32Array> {
  const n = c.program.devices.length;
  const sessions = new Map<number, ort.InferenceSession>();
  for (const [id, p] of Object.entries(c.paths)) sessions.set(Number(id), await ort.InferenceSession.create(p));
  try {
    const env = Array.from({ length: n }, () => new Map<string, ort.Tensor>([['x', x]]));
    const lists = c.program.devices.map((d) => d.instructions);
    for (let i = 0; i < lists[0]!.length; i++) {
      const ins = lists[0]![i]!;
      if (ins.op === 'run') {
        for (let r = 0; r < n; r++) {
          const own = lists[r]![i]!;
          assert.equal(own.op, 'run', 'every device runs its chain in the same order');
          if (own.op !== 'run') continue;
          const s = sessions.get(own.segment)!;
          const out = await s.run(Object.fromEntries(s.inputNames.map((k) => [k, env[r]!.get(k)!])));
          for (const [k, v] of Object.entries(out)) env[r]!.set(k, v);
        }
      } else if (ins.op === 'collective') {
        const tensor = c.program.buffers.find((b) => b.name === ins.buffer)!.activation!.tensor;
        const parts = env.map((e) => e.get(tensor)!);
        const sum = new Float32Array(parts[0]!.data.length);
        for (const p of parts) (p.data as Float32Array).forEach((v, k) => (sum[k] += v));
        for (const e of env) e.set(tensor, new ort.Tensor('float32', sum, parts[0]!.dims));
      }
    }
    return env[0]!.get('y')!.data as Float32Array;
  } finally {
    for (const s of sessions.values()) await s.release();
  }
}

async function runWhole(path: string, x: ort.Tensor): Promise<Float32Array> {
  const s = await ort.InferenceSession.create(path);
  try {
    return (await s.run({ x }))['y']!.data as Float32Array;
  } finally {
    await s.release();
  }
}

/** max |a − b| / max |b|. */
function relativeError(a: Float32Array, b: Float32Array): number {
  assert.equal(a.length, b.length);
  let d = 0;
  let m = 0;
  for (let i = 0; i < b.length; i++) {
    d = Math.max(d, Math.abs(a[i]! - b[i]!));
    m = Math.max(m, Math.abs(b[i]!));
  }
  assert.ok(m > 0, 'a reference that is not all zeros');
  return d / m;
}

function initializerValues(path: string, name: string): { dims: number[]; values: Float32Array } | null {
  const t = onnx.ModelProto.decode(readFileSync(path)).graph!.initializer!.find((x) => x.name === name);
  if (!t) return null;
  const raw = t.rawData!;
  return { dims: (t.dims ?? []).map(Number), values: new Float32Array(raw.buffer.slice(raw.byteOffset, raw.byteOffset + raw.byteLength)) };
}

async function assertChainsMatchWhole(c: Compiled, dims: number[]): Promise<void> {
  const x = new ort.Tensor('float32', seededValues(dims.reduce((a, b) => a * b, 1), 11), dims);
  const rel = relativeError(await runChains(c, x), await runWhole(c.path, x));
  assert.ok(rel <= 1e-4, `relative error ${rel}`);
}

test('demo model over 2 devices: each device\'s shard models hold its slices, half the parameter bytes, and their chains sum to the whole model', async () => {
  const c = compiled('demo', buildDemoModel({ layers: 3, hidden: 64, ffn: 256 }), 2, [8, 64]);
  const ir = parseModel(readFileSync(c.path), c.path);
  for (let rank = 0; rank < 2; rank++) {
    const mine = c.program.segments.filter((s) => s.kind === 'shard' && s.rank === rank).map((s) => c.paths[s.id]!);
    const bytes = mine.reduce((a, p) => a + parseModel(readFileSync(p), p).parameterBytes, 0);
    assert.equal(bytes, c.prep.shard.perDeviceParameterBytes[rank], `rank ${rank}: the bytes its models hold are the planned ones`);
    const share = bytes / ir.parameterBytes;
    assert.ok(Math.abs(share - 0.5) <= 0.05, `rank ${rank} holds ${(share * 100).toFixed(1)} % of the parameters`);
  }
  // Rank 1's fc1 weight is columns 128..255 of the original [64, 256]; its fc2 weight rows 128..255.
  const whole = initializerValues(c.path, 'layers.0.mlp.fc1.weight')!;
  const rank1 = c.program.segments.find((s) => s.kind === 'shard' && s.rank === 1 && s.nodes.includes('/layers.0/mlp/fc1/MatMul'))!;
  const slice = initializerValues(c.paths[rank1.id]!, 'layers.0.mlp.fc1.weight')!;
  assert.deepEqual(slice.dims, [64, 128]);
  for (let r = 0; r < 64; r++) {
    for (let k = 0; k < 128; k += 17) assert.equal(slice.values[r * 128 + k], whole.values[r * 256 + 128 + k]);
  }
  const fc2 = initializerValues(c.paths[rank1.id]!, 'layers.0.mlp.fc2.weight')!;
  assert.deepEqual(fc2.dims, [128, 64]);
  assert.deepEqual(Array.from(fc2.values.subarray(0, 64)), Array.from(initializerValues(c.path, 'layers.0.mlp.fc2.weight')!.values.subarray(128 * 64, 129 * 64)));
  await assertChainsMatchWhole(c, [8, 64]);
});

test('attention over 2 and 4 devices: heads split by rewritten Reshape shapes, and the chains sum to the whole model', async () => {
  for (const n of [2, 4]) {
    const c = compiled(`transformer-${n}`, transformerModelBytes({ blocks: 2, seq: 8, hidden: 32, heads: 4, ffn: 64 }), n, [3, 8, 32]);
    assert.equal(c.program.buffers.length, 4, 'attention and MLP of two blocks');
    const part0 = c.paths[c.program.segments.find((s) => s.kind === 'shard' && s.rank === 0 && s.part === 0)!.id]!;
    const heads = onnx.ModelProto.decode(readFileSync(part0)).graph!.initializer!.find((t) => t.name === `shape.heads.tensor-parallel.axis2of${n}`);
    assert.ok(heads, 'the heads Reshape reads a shape with its share of the heads');
    assert.deepEqual(Array.from(new BigInt64Array(Uint8Array.from(heads.rawData!).buffer)).map(Number), [0, 8, 4 / n, 8]);
    await assertChainsMatchWhole(c, [3, 8, 32]);
  }
});

test('attention whose head shapes are built at run time (Shape, Gather, Concat, as PyTorch exports them): the constant head count is divided, and the chains sum to the whole model', async () => {
  const c = compiled('transformer-computed', transformerModelBytes({ blocks: 2, seq: 8, hidden: 32, heads: 4, ffn: 64, computedShapes: true }), 2, [3, 8, 32]);
  assert.equal(c.program.buffers.length, 4, 'attention and MLP of two blocks');
  const part0 = c.paths[c.program.segments.find((s) => s.kind === 'shard' && s.rank === 0 && s.part === 0)!.id]!;
  const graph = onnx.ModelProto.decode(readFileSync(part0)).graph!;
  const heads = graph.initializer!.find((t) => t.name === 'const.heads.tensor-parallel.0of2');
  assert.ok(heads, 'the Concat reads a head count of its share');
  assert.deepEqual(Array.from(new BigInt64Array(Uint8Array.from(heads.rawData!).buffer)).map(Number), [2]);
  for (const name of ['q', 'k', 'v']) {
    assert.equal(graph.node!.find((x) => x.name === `/blocks.0/attn/${name}/Concat`)!.input![2], 'const.heads.tensor-parallel.0of2', `${name} heads`);
  }
  await assertChainsMatchWhole(c, [3, 8, 32]);
});

test('a Gemm MLP (transB on the row-parallel layer) ends with an all-reduce after the last node; its bias is added once', async () => {
  const c = compiled('gemm', gemmMlpModelBytes(), 2, [5, 16]);
  assert.equal(c.prep.chain.stages.length, 1, 'no cut after the last node');
  assert.deepEqual(c.program.devices[0]!.instructions.map((i) => i.op), ['scatter', 'run', 'collective', 'gather']);
  assert.deepEqual(c.program.devices[1]!.instructions.map((i) => i.op), ['scatter', 'run', 'collective'], 'the first device hands the outputs over');
  const w = initializerValues(c.paths[1]!, 'fc2.weight')!;
  assert.deepEqual(w.dims, [16, 16], 'W2 [out, in] is cut along its second axis');
  const bias1 = initializerValues(c.paths[1]!, 'fc2.bias.tensor-parallel')!;
  assert.ok(bias1.values.every((v) => v === 0), 'device 1 adds no bias');
  const bias0 = initializerValues(c.paths[0]!, 'fc2.bias.tensor-parallel')!;
  assert.deepEqual(Array.from(bias0.values), Array.from(initializerValues(c.path, 'fc2.bias')!.values));
  await assertChainsMatchWhole(c, [5, 16]);
});

test('a CNN over 2 and 4 devices: Conv kernels cut on output then input channels, the row-parallel Conv bias added once, and the chains sum to the whole model', async () => {
  const dims = [2, 3, 16, 16];
  for (const n of [2, 4]) {
    const c = compiled(`cnn-${n}`, cnnModelBytes({ channels: 8, size: 16 }), n, dims);
    assert.equal(c.program.buffers.length, 3, 'one all-reduce per Conv pair');
    const ir = parseModel(readFileSync(c.path), c.path);
    for (let rank = 0; rank < n; rank++) {
      const mine = c.program.segments.filter((s) => s.kind === 'shard' && s.rank === rank).map((s) => c.paths[s.id]!);
      const bytes = mine.reduce((a, p) => a + parseModel(readFileSync(p), p).parameterBytes, 0);
      assert.equal(bytes, c.prep.shard.perDeviceParameterBytes[rank], `rank ${rank}: the bytes its models hold are the planned ones`);
      assert.ok(bytes < ir.parameterBytes);
    }
    const last = n - 1;
    const part0 = c.paths[c.program.segments.find((s) => s.kind === 'shard' && s.rank === last && s.part === 0)!.id]!;
    // The last device's conv1 kernel is output channels [8 − 8/n, 8) of [8, 3, 3, 3]; conv2's is input channels of [8, 8, 3, 3].
    const k = 8 / n;
    const whole1 = initializerValues(c.path, 'block.0.conv1.weight')!;
    const conv1 = initializerValues(part0, 'block.0.conv1.weight')!;
    assert.deepEqual(conv1.dims, [k, 3, 3, 3]);
    assert.deepEqual(Array.from(conv1.values), Array.from(whole1.values.subarray((8 - k) * 27)));
    const whole2 = initializerValues(c.path, 'block.0.conv2.weight')!;
    const conv2 = initializerValues(part0, 'block.0.conv2.weight')!;
    assert.deepEqual(conv2.dims, [8, k, 3, 3]);
    for (let o = 0; o < 8; o++) {
      assert.deepEqual(Array.from(conv2.values.subarray(o * k * 9, (o + 1) * k * 9)), Array.from(whole2.values.subarray((o * 8 + 8 - k) * 9, (o + 1) * 8 * 9)), `output channel ${o}`);
    }
    assert.deepEqual(initializerValues(part0, 'block.0.bn.running_var')!.dims, [k]);
    const bias = initializerValues(part0, 'block.0.conv2.bias.tensor-parallel')!;
    assert.ok(bias.values.every((v) => v === 0), 'only device 0 adds the row-parallel Conv bias');
    await assertChainsMatchWhole(c, dims);
  }
});

test('a CNN with a depthwise Conv inside a pair over 2 and 4 devices: the depthwise kernel cut on channels, its group divided, and the chains sum to the whole model', async () => {
  const dims = [2, 3, 16, 16];
  for (const n of [2, 4]) {
    const c = compiled(`cnn-dw-${n}`, cnnModelBytes({ channels: 8, size: 16, groups: 16 }), n, dims);
    const seg = c.program.segments.find((s) => s.kind === 'shard' && s.rank === 1 && s.nodes.includes('/block.1/dw/Conv'))!;
    const graph = onnx.ModelProto.decode(readFileSync(c.paths[seg.id]!)).graph!;
    const dw = graph.node!.find((x) => x.name === '/block.1/dw/Conv')!;
    assert.equal(Number(dw.attribute!.find((a) => a.name === 'group')!.i), 16 / n, 'each device convolves its share of the groups');
    assert.equal(Number(graph.node!.find((x) => x.name === '/block.1/conv1/Conv')!.attribute!.find((a) => a.name === 'group')!.i), 1, 'a group-1 Conv keeps its group');
    assert.deepEqual(initializerValues(c.paths[seg.id]!, 'block.1.dw.weight')!.dims, [16 / n, 1, 3, 3]);
    await assertChainsMatchWhole(c, dims);
  }
});
