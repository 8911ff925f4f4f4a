import { before, describe, test } from 'node:test';
import { ocrDetModelPath, MISSING_MODELS_HINT } from '../helpers/models';
import assert from 'node:assert/strict';
import { readFileSync, statSync, writeFileSync, existsSync } from 'node:fs';
import { join } from 'node:path';
import { onnx } from 'onnx-proto';
import { Writer } from 'protobufjs/minimal';
import * as ort from 'onnxruntime-node';
import { isUserError } from '../../src/common/errors';
import { buildDemoModel, DEMO_DEFAULTS, ensureDemoModel, demoModelFileName } from '../../src/runtime/onnx/demo-model';
import { encodeModel, estimateCosts, loadModel, parseModel, saveModel, type ModelIR } from '../../src/runtime/onnx/model';
import { tempDir } from '../helpers/temp';
import { needs, ocrModelMissing } from '../helpers/prerequisites';

const FLOAT = 1;
const dir = tempDir('onnx');

/** A model from nodes and value infos, encoded with onnx-proto. */
function model(graph: onnx.IGraphProto, opset = 17): Uint8Array {
  return encodeModel({ irVersion: 8, opsetImport: [{ domain: '', version: opset }], producerName: 'test', graph: { name: 'g', ...graph } });
}

function tensorInfo(name: string, dims: Array<number | string>, elemType = FLOAT): onnx.IValueInfoProto {
  return { name, type: { tensorType: { elemType, shape: { dim: dims.map((d) => (typeof d === 'number' ? { dimValue: d } : { dimParam: d })) } } } };
}

function floats(name: string, dims: number[], values?: number[]): onnx.ITensorProto {
  const n = dims.reduce((a, b) => a * b, 1);
  return { name, dims, dataType: FLOAT, floatData: values ?? new Array<number>(n).fill(0.5) };
}

/** Asserts that `fn` fails with a one-line UserError that names `file` and matches `pattern`. */
async function rejectsWithUserError(fn: () => Promise<unknown> | unknown, file: string, pattern: RegExp): Promise<void> {
  let caught: unknown;
  try {
    await fn();
  } catch (e) {
    caught = e;
  }
  assert.ok(caught, 'expected an error');
  assert.ok(isUserError(caught), `expected a UserError, got ${String(caught)}`);
  const msg = (caught as Error).message;
  assert.ok(msg.includes(file), `message should name ${file}: ${msg}`);
  assert.ok(!msg.includes('\n'), `message should be one line: ${msg}`);
  assert.match(msg, pattern);
}

describe('the demo model', () => {
  const { layers, hidden: H, ffn: F } = DEMO_DEFAULTS;
  let path: string;
  let ir: ModelIR;

  before(async () => {
    path = await ensureDemoModel(dir);
    ir = await loadModel(path);
  });

  test('is written once to the cache under its documented name and reused', async () => {
    assert.equal(path, join(dir, `demo-mlp-L${layers}-H${H}-F${F}.onnx`));
    const mtime = statSync(path).mtimeMs;
    assert.equal(await ensureDemoModel(dir), path);
    assert.equal(statSync(path).mtimeMs, mtime);
    assert.equal(demoModelFileName({ seed: 7 }), `demo-mlp-L${layers}-H${H}-F${F}-S7.onnx`);
  });

  test('is rebuilt when the cached file is damaged', async () => {
    const small = await ensureDemoModel(dir, { layers: 2, hidden: 8, ffn: 16 });
    const good = readFileSync(small);
    writeFileSync(small, good.subarray(0, 100));
    assert.equal(await ensureDemoModel(dir, { layers: 2, hidden: 8, ffn: 16 }), small);
    assert.deepEqual(readFileSync(small), good);
  });

  test('round-trips through loadModel with its node count, order, scopes and parameter count', () => {
    assert.equal(ir.irVersion, 8);
    assert.equal(ir.opsetVersion, 17);
    assert.equal(ir.producerName, 'parallax');
    assert.equal(ir.nodes.length, layers * 7);
    // The file is written in dependency order, so the topological order is the file order.
    assert.deepEqual(ir.topoOrder, ir.nodes.map((_, i) => i));
    assert.deepEqual(
      ir.nodes.slice(21, 28).map((n) => n.name),
      ['/layers.3/ln/LayerNormalization', '/layers.3/mlp/fc1/MatMul', '/layers.3/mlp/fc1/Add', '/layers.3/mlp/act/Relu', '/layers.3/mlp/fc2/MatMul', '/layers.3/mlp/fc2/Add', '/layers.3/Add'],
    );
    assert.deepEqual(ir.inputs, [{ name: 'x', kind: 'tensor', dtype: 'float32', dims: ['batch', H] }]);
    assert.deepEqual(ir.outputs, [{ name: 'y', kind: 'tensor', dtype: 'float32', dims: ['batch', H] }]);
    // Per layer: LN scale and bias (2H), fc1 (H·F + F), fc2 (F·H + H).
    assert.equal(ir.parameterCount, layers * (2 * H * F + F + 3 * H));
    assert.equal(ir.parameterCount, 50_417_664);
    assert.equal(ir.parameterBytes, ir.parameterCount * 4);
    assert.equal(ir.initializers.length, layers * 6);
    assert.deepEqual(ir.initializerByName.get('layers.0.mlp.fc1.weight')?.dims, [H, F]);
    assert.equal(ir.initializerByName.get('layers.0.mlp.fc1.weight')?.values, undefined, 'weights stay out of the IR');
    assert.equal(ir.producers.get('y'), ir.nodes.length - 1);
    assert.deepEqual(ir.consumers.get('x'), [0, 6]);
    assert.match(ir.sha256, /^[0-9a-f]{64}$/);
    assert.deepEqual(ir.nodes[0].attributes, { axis: -1, epsilon: ir.nodes[0].attributes['epsilon'] });
    assert.ok(Math.abs((ir.nodes[0].attributes['epsilon'] as number) - 1e-5) < 1e-9);
  });

  test('builds the same bytes from the same seed and different weights from another', () => {
    const a = buildDemoModel({ layers: 2, hidden: 8, ffn: 16, seed: 3 });
    assert.deepEqual(a, buildDemoModel({ layers: 2, hidden: 8, ffn: 16, seed: 3 }));
    assert.notDeepEqual(a, buildDemoModel({ layers: 2, hidden: 8, ffn: 16, seed: 4 }));
  });

  test('loads and runs in onnxruntime-node at batch 4 with finite outputs of shape [4, hidden]', async () => {
    const session = await ort.InferenceSession.create(path, { intraOpNumThreads: 1 });
    try {
      const x = new ort.Tensor('float32', Float32Array.from({ length: 4 * H }, (_, i) => Math.sin(i)), [4, H]);
      const out = await session.run({ x });
      const y = out['y'];
      assert.deepEqual(y.dims, [4, H]);
      const data = y.data as Float32Array;
      assert.ok(data.every(Number.isFinite), 'outputs are finite');
      assert.ok(data.some((v) => v !== 0), 'outputs are not all zero');
    } finally {
      await session.release();
    }
  });

  test('FLOP and byte estimates at batch 8 equal the hand-computed values', () => {
    const B = 8;
    const c = estimateCosts(ir, { batch: B });
    const flops = ir.nodes.slice(0, 7).map((_, i) => c.nodes[i].flops);
    // LN: 7 per element; fc1: 2·B·H·F; bias add and Relu: B·F; fc2: 2·B·F·H; bias and residual adds: B·H.
    assert.deepEqual(flops, [28_672, 16_777_216, 16_384, 16_384, 16_777_216, 4_096, 4_096]);
    assert.equal(c.totalFlops, layers * 33_624_064);
    assert.equal(c.unknownFlopNodes, 0);
    // fc1 MatMul moves its input (B·H floats), its weight (H·F) and its output (B·F).
    assert.equal(c.nodes[1].bytes, 4 * (B * H + H * F + B * F));
    assert.deepEqual(c.shapes.get('y'), { dtype: 'float32', dims: [B, H] });
  });

  test('estimates are null, not guessed, when the batch dimension has no value', () => {
    const c = estimateCosts(ir, {});
    assert.equal(c.unknownFlopNodes, ir.nodes.length);
    assert.equal(c.totalFlops, 0);
    assert.ok(c.nodes.every((n) => n.flops === null && n.bytes === null));
  });
});

describe('loadModel errors', () => {
  test('a missing file is a UserError naming it', async () => {
    const p = join(dir, 'nope.onnx');
    await rejectsWithUserError(() => loadModel(p), p, /not found/);
  });

  test('a JSON text file is a UserError saying it is text, not a model', async () => {
    const p = join(dir, 'model.json');
    writeFileSync(p, JSON.stringify({ hello: 'world' }));
    await rejectsWithUserError(() => loadModel(p), p, /text file.*JSON.*not an ONNX model/);
  });

  test('random bytes are a UserError saying the file is not an ONNX model', async () => {
    const p = join(dir, 'random.onnx');
    const bytes = new Uint8Array(4096);
    let s = 12345;
    for (let i = 0; i < bytes.length; i++) bytes[i] = (s = (s * 1103515245 + 12345) >>> 0) >>> 24;
    bytes[0] = 0xff;
    writeFileSync(p, bytes);
    await rejectsWithUserError(() => loadModel(p), p, /not an ONNX model/);
  });

  test('truncated demo model bytes are a UserError saying the file is truncated', async () => {
    const p = join(dir, 'truncated.onnx');
    const bytes = buildDemoModel({ layers: 2, hidden: 8, ffn: 16 });
    writeFileSync(p, bytes.subarray(0, Math.floor(bytes.length / 2)));
    await rejectsWithUserError(() => loadModel(p), p, /truncated/);
  });

  test('an empty file and a folder are UserErrors', async () => {
    const p = join(dir, 'empty.onnx');
    writeFileSync(p, '');
    await rejectsWithUserError(() => loadModel(p), p, /empty/);
    await rejectsWithUserError(() => loadModel(dir), dir, /folder/);
  });

  test('a graph without nodes is a UserError', async () => {
    const p = join(dir, 'nonodes.onnx');
    writeFileSync(p, model({ input: [tensorInfo('x', [1])], output: [tensorInfo('x', [1])] }));
    await rejectsWithUserError(() => loadModel(p), p, /no nodes/);
  });

  test('a cyclic graph built by hand is a UserError naming the nodes in the cycle', async () => {
    const p = join(dir, 'cycle.onnx');
    writeFileSync(
      p,
      model({
        input: [tensorInfo('x', [2])],
        output: [tensorInfo('y', [2])],
        node: [
          { name: 'a', opType: 'Add', input: ['x', 'c'], output: ['b'] },
          { name: 'b', opType: 'Relu', input: ['b'], output: ['c'] },
          { name: 'out', opType: 'Identity', input: ['c'], output: ['y'] },
        ],
      }),
    );
    await rejectsWithUserError(() => loadModel(p), p, /cycle.*a, b, out/);
  });

  test('a tensor produced by two nodes is a UserError', () => {
    const bytes = model({
      input: [tensorInfo('x', [2])],
      output: [tensorInfo('y', [2])],
      node: [
        { name: 'a', opType: 'Relu', input: ['x'], output: ['y'] },
        { name: 'b', opType: 'Relu', input: ['x'], output: ['y'] },
      ],
    });
    assert.throws(() => parseModel(bytes, 'dup.onnx'), (e: Error) => isUserError(e) && /dup\.onnx.*produced by two nodes/.test(e.message));
  });
});

describe('external data', () => {
  const graph = (location: string): onnx.IGraphProto => ({
    input: [tensorInfo('x', [4])],
    output: [tensorInfo('y', [4])],
    initializer: [
      {
        name: 'w',
        dims: [4],
        dataType: FLOAT,
        dataLocation: onnx.TensorProto.DataLocation.EXTERNAL,
        externalData: [
          { key: 'location', value: location },
          { key: 'offset', value: '0' },
          { key: 'length', value: '16' },
        ],
      },
    ],
    node: [{ name: 'add', opType: 'Add', input: ['x', 'w'], output: ['y'] }],
  });

  test('is supported when the data file is beside the model, and runs in onnxruntime-node', async () => {
    const p = join(dir, 'ext.onnx');
    writeFileSync(p, model(graph('ext.onnx.data')));
    writeFileSync(join(dir, 'ext.onnx.data'), new Uint8Array(new Float32Array([1, 2, 3, 4]).buffer));
    const ir = await loadModel(p);
    assert.deepEqual(ir.externalDataFiles, [join(dir, 'ext.onnx.data')]);
    assert.equal(ir.initializers[0].byteSize, 16);
    assert.equal(ir.parameterCount, 4);
    const s = await ort.InferenceSession.create(p);
    const out = await s.run({ x: new ort.Tensor('float32', new Float32Array(4), [4]) });
    assert.deepEqual([...(out['y'].data as Float32Array)], [1, 2, 3, 4]);
    await s.release();
  });

  test('is a UserError naming the missing data file when it is absent', async () => {
    const p = join(dir, 'ext-missing.onnx');
    writeFileSync(p, model(graph('weights.bin')));
    await rejectsWithUserError(() => loadModel(p), p, /weights\.bin.*missing/);
  });
});

describe('graph IR details', () => {
  test('node metadata_props written by the dynamo exporter are read into node.metadata', () => {
    // onnx-proto (ONNX 1.10) cannot write NodeProto field 9, so append it by hand.
    const node = onnx.NodeProto.encode({ name: 'relu', opType: 'Relu', input: ['x'], output: ['y'] }).finish();
    const meta = (key: string, value: string): Uint8Array =>
      Writer.create().uint32((9 << 3) | 2).fork().uint32((1 << 3) | 2).string(key).uint32((2 << 3) | 2).string(value).ldelim().finish();
    const trace = 'File "/home/u/model.py", line 12, in forward\n    return self.act(x)';
    const nodeBytes = Buffer.concat([node, meta('pkg.torch.onnx.stack_trace', trace), meta('pkg.torch.onnx.name_scopes', "['', 'act']")]);
    const rest = onnx.GraphProto.encode({ name: 'g', input: [tensorInfo('x', [2])], output: [tensorInfo('y', [2])] }).finish();
    const graph = Buffer.concat([Writer.create().uint32((1 << 3) | 2).bytes(nodeBytes).finish(), rest]);
    const head = onnx.ModelProto.encode({ irVersion: 10, opsetImport: [{ domain: '', version: 18 }] }).finish();
    const bytes = Buffer.concat([head, Writer.create().uint32((7 << 3) | 2).bytes(graph).finish()]);
    const ir = parseModel(bytes, 'dynamo.onnx');
    assert.deepEqual(ir.nodes[0].metadata, { 'pkg.torch.onnx.stack_trace': trace, 'pkg.torch.onnx.name_scopes': "['', 'act']" });
  });

  test('nodes with empty or repeated names get unique synthesized names', () => {
    const ir = parseModel(
      model({
        input: [tensorInfo('x', [2])],
        output: [tensorInfo('z', [2])],
        node: [
          { opType: 'Relu', input: ['x'], output: ['a'] },
          { name: 'n', opType: 'Relu', input: ['a'], output: ['b'] },
          { name: 'n', opType: 'Relu', input: ['b'], output: ['z'] },
        ],
      }),
      'names.onnx',
    );
    assert.deepEqual(ir.nodes.map((n) => n.name), ['Relu_0', 'n', 'n__2']);
    assert.equal(ir.nodes[0].originalName, '');
  });

  test('tensors read inside an If branch from the outer scope order the If after their producer', () => {
    const thenBranch: onnx.IGraphProto = { name: 'then', node: [{ opType: 'Identity', input: ['t'], output: ['o1'] }], output: [tensorInfo('o1', [2])] };
    const elseBranch: onnx.IGraphProto = { name: 'else', node: [{ opType: 'Identity', input: ['x'], output: ['o2'] }], output: [tensorInfo('o2', [2])] };
    const ir = parseModel(
      model({
        input: [tensorInfo('x', [2]), tensorInfo('cond', [], 9)],
        output: [tensorInfo('y', [2])],
        node: [
          { name: 'if', opType: 'If', input: ['cond'], output: ['y'], attribute: [{ name: 'then_branch', type: 5, g: thenBranch }, { name: 'else_branch', type: 5, g: elseBranch }] },
          { name: 'relu', opType: 'Relu', input: ['x'], output: ['t'] },
        ],
      }),
      'if.onnx',
    );
    assert.equal(ir.nodes[0].hasSubgraphs, true);
    assert.deepEqual(ir.nodes[0].implicitInputs.sort(), ['t', 'x']);
    assert.deepEqual(ir.topoOrder, [1, 0]);
    assert.deepEqual(ir.consumers.get('t'), [0]);
    assert.deepEqual(ir.nodes[0].attributes['then_branch'], { kind: 'graph', name: 'then', nodeCount: 1 });
  });

  test('Conv FLOPs follow 2·N·Cout·H·W·Cin·k² plus the bias, with shapes propagated through padding', () => {
    const ir = parseModel(
      model({
        input: [tensorInfo('x', ['N', 3, 8, 8])],
        output: [tensorInfo('p', ['N', 4, 1, 1])],
        initializer: [floats('w', [4, 3, 3, 3]), floats('b', [4])],
        node: [
          { name: 'conv', opType: 'Conv', input: ['x', 'w', 'b'], output: ['c'], attribute: [{ name: 'pads', type: 7, ints: [1, 1, 1, 1] }] },
          { name: 'pool', opType: 'MaxPool', input: ['c'], output: ['m'], attribute: [{ name: 'kernel_shape', type: 7, ints: [2, 2] }, { name: 'strides', type: 7, ints: [2, 2] }] },
          { name: 'gap', opType: 'GlobalAveragePool', input: ['m'], output: ['p'] },
        ],
      }),
      'conv.onnx',
    );
    const c = estimateCosts(ir, { N: 2 });
    assert.equal(c.nodes[0].flops, 2 * 2 * 4 * 64 * 3 * 9 + 2 * 4 * 64);
    assert.deepEqual(c.shapes.get('m')?.dims, [2, 4, 4, 4]);
    assert.equal(c.nodes[1].flops, 2 * 4 * 16 * 4);
    assert.equal(c.nodes[2].flops, 2 * 4 * 16);
    assert.equal(ir.parameterCount, 4 * 27 + 4);
  });

  test('Reshape shapes are propagated from Shape/Gather/Concat chains', () => {
    const i64 = (name: string, values: number[]): onnx.ITensorProto => ({ name, dims: [values.length], dataType: 7, int64Data: values });
    const ir = parseModel(
      model({
        input: [tensorInfo('x', ['B', 6, 4])],
        output: [tensorInfo('y', ['B', 24])],
        initializer: [i64('zero', [0]), i64('minus1', [-1])],
        node: [
          { name: 'shape', opType: 'Shape', input: ['x'], output: ['s'] },
          { name: 'gather', opType: 'Gather', input: ['s', 'zero'], output: ['b'] },
          { name: 'concat', opType: 'Concat', input: ['b', 'minus1'], output: ['target'], attribute: [{ name: 'axis', type: 2, i: 0 }] },
          { name: 'reshape', opType: 'Reshape', input: ['x', 'target'], output: ['r'] },
          { name: 'mm', opType: 'Transpose', input: ['r'], output: ['t'] },
          { name: 'back', opType: 'Transpose', input: ['t'], output: ['y'] },
        ],
      }),
      'reshape.onnx',
    );
    const c = estimateCosts(ir, { B: 3 });
    assert.deepEqual(c.shapes.get('r')?.dims, [3, 24]);
    assert.deepEqual(c.shapes.get('t')?.dims, [24, 3]);
    assert.equal(c.nodes[3].flops, 0);
    assert.equal(c.unknownFlopNodes, 0);
  });

  test('saveModel writes atomically and the result loads again', async () => {
    const p = join(dir, 'sub', 'saved.onnx');
    saveModel(p, onnx.ModelProto.decode(buildDemoModel({ layers: 1, hidden: 4, ffn: 8 })));
    assert.ok(existsSync(p));
    const ir = await loadModel(p);
    assert.equal(ir.nodes.length, 7);
  });
});

const PP_OCR_DET = ocrDetModelPath() ?? '';
// Without the fetched model these tests skip, saying what to run (and fail under
// PARALLAX_REQUIRE_PREREQUISITES=1, as in CI, where the model must be there).
const ppOcrMissing = (): void => assert.ok(PP_OCR_DET, `PP-OCRv4 det model not fetched: ${MISSING_MODELS_HINT}`);

describe('a real PP-OCRv4 detection model', () => {
  test('loads with its symbolic input and has a FLOP estimate for every node at 1×3×640×640', needs(ocrModelMissing()), async () => {
    ppOcrMissing();
    const ir = await loadModel(PP_OCR_DET);
    assert.deepEqual(ir.inputs, [{ name: 'x', kind: 'tensor', dtype: 'float32', dims: ['p2o.DynamicDimension.0', 3, 'p2o.DynamicDimension.1', 'p2o.DynamicDimension.2'] }]);
    assert.equal(ir.opsetVersion, 11);
    // Paddle2ONNX stores the weights as Constant nodes, not initializers; they still count.
    assert.equal(ir.initializers.length, 0);
    assert.ok(ir.parameterCount > 1_000_000);
    const c = estimateCosts(ir, { 'p2o.DynamicDimension.0': 1, 'p2o.DynamicDimension.1': 640, 'p2o.DynamicDimension.2': 640 });
    assert.equal(c.unknownFlopNodes, 0);
    assert.deepEqual(c.shapes.get(ir.outputs[0].name)?.dims, [1, 1, 640, 640]);
    assert.ok(c.totalFlops > 1e9 && c.totalFlops < 2e10, `total ${c.totalFlops}`);
  });
});
