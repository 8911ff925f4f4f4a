/**
 * Stage models in ONNX Runtime: every stage loads, and running the stages one after the
 * other (each stage's outputs fed to the next by name, graph inputs where a stage reads
 * them) reproduces the whole model's outputs, on the demo model, on PP-OCRv4 detection and
 * on graphs built by hand whose cut tensors have no declared types.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as ort from 'onnxruntime-node';
import { onnx } from 'onnx-proto';
import { UserError } from '../../src/common/errors';
import { buildDemoModel } from '../../src/runtime/onnx/demo-model';
import { decodeModelProto, estimateCosts, parseModel, type ModelIR } from '../../src/runtime/onnx/model';
import { estimateNodeCostsUs, partitionFromCuts, partitionPipeline, type Partition } from '../../src/runtime/pipeline/partition';
import { STAGE_METADATA_KEY, buildStageModel, encodeNode, writeStageModels } from '../../src/runtime/pipeline/stage-model';
import { Writer } from 'protobufjs/minimal';
import { MISSING_MODELS_HINT, ocrDetModelPath } from '../helpers/models';
import { seededValues } from '../helpers/tiny-model';
import { needs, ocrModelMissing } from '../helpers/prerequisites';

type Feeds = Record<string, ort.Tensor>;

const FLOAT = onnx.TensorProto.DataType.FLOAT;
const DOUBLE = onnx.TensorProto.DataType.DOUBLE;
const T = onnx.AttributeProto.AttributeType;

async function runWhole(bytes: Uint8Array, feeds: Feeds): Promise<Feeds> {
  const s = await ort.InferenceSession.create(bytes);
  try {
    return await s.run(feeds);
  } finally {
    await s.release();
  }
}

/** Runs the stages in order; returns every tensor any stage produced, by name. */
async function runStages(bytes: Uint8Array, ir: ModelIR, p: Partition, feeds: Feeds): Promise<Map<string, ort.Tensor>> {
  const model = decodeModelProto(bytes, ir.path);
  const env = new Map<string, ort.Tensor>(Object.entries(feeds));
  for (const stage of p.stages) {
    const s = await ort.InferenceSession.create(buildStageModel(model, ir, stage, p.stages.length));
    try {
      assert.deepEqual([...s.inputNames].sort(), stage.inputs.map((i) => i.name).sort(), `stage ${stage.index} inputs`);
      assert.deepEqual([...s.outputNames].sort(), stage.outputs.map((o) => o.name).sort(), `stage ${stage.index} outputs`);
      const stageFeeds: Feeds = {};
      for (const n of s.inputNames) stageFeeds[n] = env.get(n)!;
      for (const [name, t] of Object.entries(await s.run(stageFeeds))) env.set(name, t);
    } finally {
      await s.release();
    }
  }
  return env;
}

function maxAbsDiff(a: ort.Tensor, b: ort.Tensor): number {
  assert.deepEqual(a.dims, b.dims);
  assert.equal(a.type, b.type);
  let m = 0;
  for (let i = 0; i < a.data.length; i++) m = Math.max(m, Math.abs(Number(a.data[i]) - Number(b.data[i])));
  return m;
}

async function assertChainMatches(bytes: Uint8Array, ir: ModelIR, p: Partition, feeds: Feeds, reference: Feeds, label: string): Promise<void> {
  const env = await runStages(bytes, ir, p, feeds);
  for (const [name, want] of Object.entries(reference)) {
    const got = env.get(name);
    assert.ok(got, `${label}: output ${name} was not produced by any stage`);
    const d = maxAbsDiff(got, want);
    assert.ok(d <= 1e-4, `${label}: ${name} differs by ${d}`);
  }
}

function floatInput(dims: number[], seed: number): ort.Tensor {
  return new ort.Tensor('float32', seededValues(dims.reduce((a, b) => a * b, 1), seed), dims);
}

function vi(name: string, elemType = FLOAT, dims: Array<number | string> = ['batch', 4]): onnx.IValueInfoProto {
  return { name, type: { tensorType: { elemType, shape: { dim: dims.map((d) => (typeof d === 'number' ? { dimValue: d } : { dimParam: d })) } } } };
}

function node(name: string, opType: string, input: string[], output: string[], attribute: onnx.IAttributeProto[] = []): onnx.INodeProto {
  return { name, opType, input, output, attribute };
}

const HEAD: onnx.IModelProto = { irVersion: 8, opsetImport: [{ domain: '', version: 17 }], producerName: 'hand' };

function encode(graph: onnx.IGraphProto): Uint8Array {
  return onnx.ModelProto.encode({ ...HEAD, graph }).finish();
}

/**
 * Two inputs, three outputs, a skip connection (`r`), a shared weight (`W`), a Constant read
 * by two nodes, and cut tensors of three element types (float32, float64 after a Cast, bool
 * from a comparison), none of them declared in value_info.
 */
function skipGraph(): onnx.IGraphProto {
  return {
    name: 'skip',
    node: [
      node('const_two', 'Constant', [], ['two'], [{ name: 'value', type: T.TENSOR, t: { dims: [], dataType: FLOAT, floatData: [2] } }]),
      node('relu', 'Relu', ['a'], ['r']),
      node('add_b', 'Add', ['r', 'b'], ['s']),
      node('mul_w', 'Mul', ['s', 'W'], ['m']),
      node('to_f64', 'Cast', ['m'], ['md'], [{ name: 'to', type: T.INT, i: DOUBLE }]),
      node('sigmoid', 'Sigmoid', ['md'], ['gd']),
      node('to_f32', 'Cast', ['gd'], ['g'], [{ name: 'to', type: T.INT, i: FLOAT }]),
      node('mul_two', 'Mul', ['g', 'two'], ['h']),
      node('mul_w2', 'Mul', ['h', 'W'], ['hw']),
      node('skip', 'Add', ['hw', 'r'], ['y1']),
      node('above_b', 'Greater', ['y1', 'b'], ['mask']),
      node('scale', 'Mul', ['y1', 'two'], ['y2']),
      node('pick', 'Where', ['mask', 'y2', 'b'], ['y3']),
    ],
    initializer: [{ name: 'W', dims: [4], dataType: FLOAT, floatData: [0.5, -1, 1.5, 2] }],
    input: [vi('a'), vi('b')],
    output: [vi('y1'), vi('g'), vi('y3')],
  };
}

function* combinations<X>(items: X[], k: number, from = 0): Generator<X[]> {
  if (k === 0) {
    yield [];
    return;
  }
  for (let i = from; i <= items.length - k; i++) for (const rest of combinations(items, k - 1, i + 1)) yield [items[i], ...rest];
}

test('every stage of the demo model loads in ONNX Runtime and the chained stages reproduce its output (K = 2, 3, 4)', async () => {
  const bytes = buildDemoModel({ hidden: 64, ffn: 128 });
  const ir = parseModel(bytes, 'demo.onnx');
  const flops = Float64Array.from(estimateCosts(ir, { batch: 1 }).nodes, (c) => c.flops ?? 0);
  const feeds = { x: floatInput([4, 64], 3) };
  const reference = await runWhole(bytes, feeds);
  for (const k of [2, 3, 4]) {
    await assertChainMatches(bytes, ir, partitionPipeline(ir, flops, k), feeds, reference, `demo K=${k}`);
  }
});

test('every stage of PP-OCRv4 detection loads and the chained stages reproduce its output (K = 2, 4)', needs(ocrModelMissing()), async () => {
  const path = ocrDetModelPath();
  assert.ok(path, `PP-OCRv4 det model not fetched: ${MISSING_MODELS_HINT}`);
  const bytes = readFileSync(path);
  const ir = parseModel(bytes, path);
  const dims = { 'p2o.DynamicDimension.1': 128, 'p2o.DynamicDimension.2': 128 };
  const costs = estimateNodeCostsUs(ir, dims);
  const feeds = { x: floatInput([1, 3, 128, 128], 5) };
  const reference = await runWhole(bytes, feeds);
  for (const k of [2, 4]) {
    const p = partitionPipeline(ir, costs, k, { costSource: 'estimated', dimValues: dims });
    // A CNN with an FPN: later stages read feature maps from several earlier stages.
    if (k === 4) assert.ok(p.stages.some((s) => new Set(s.inputs.map((i) => i.from)).size > 1), 'some stage reads from more than one earlier stage');
    for (const s of p.stages) for (const i of s.inputs) assert.ok(!ir.constants.has(i.name), `stage ${s.index} receives Constant ${i.name}`);
    await assertChainMatches(bytes, ir, p, feeds, reference, `PP-OCRv4 det K=${k}`);
  }
});

test('every 2- and 3-stage cut of a hand-built graph with a skip, shared weights and untyped float64/bool cut tensors runs and matches', async () => {
  // Once with shapes declared on the graph inputs (types come from shape propagation), once
  // with only element types (nothing propagates; types come from the per-op rules).
  const shaped = skipGraph();
  const rankless: onnx.IGraphProto = { ...shaped, input: ['a', 'b'].map((name) => ({ name, type: { tensorType: { elemType: FLOAT } } })) };
  for (const [label, graph] of [['shaped', shaped], ['rankless', rankless]] as const) {
    const bytes = encode(graph);
    const ir = parseModel(bytes, `${label}.onnx`);
    const feeds = { a: floatInput([3, 4], 1), b: floatInput([3, 4], 2) };
    const reference = await runWhole(bytes, feeds);
    const order = partitionFromCuts(ir, []).order.map((i) => ir.nodes[i]);
    const cuttable = order.filter((n) => n.opType !== 'Constant').map((n) => n.name).slice(0, -1);
    let runs = 0;
    for (const k of [2, 3]) {
      for (const cuts of combinations(cuttable, k - 1)) {
        await assertChainMatches(bytes, ir, partitionFromCuts(ir, cuts), feeds, reference, `${label}, cuts ${cuts.join(',')}`);
        runs++;
      }
    }
    assert.equal(runs, 11 + 55);
  }
});

test('a stage holding an If node runs with the outer tensors its branches read as stage inputs', async () => {
  const branch = (op: string): onnx.IGraphProto => ({
    name: `${op}_branch`,
    node: [node(`${op}_in_body`, op, ['r', 'x'], [`${op}_out`])],
    output: [vi(`${op}_out`, FLOAT, [2, 3])],
  });
  const bytes = encode({
    name: 'if',
    node: [
      node('relu', 'Relu', ['x'], ['r']),
      node('sum', 'ReduceSum', ['r'], ['total'], [{ name: 'keepdims', type: T.INT, i: 0 }]),
      node('positive', 'Greater', ['total', 'limit'], ['cond']),
      node('choose', 'If', ['cond'], ['z'], [
        { name: 'then_branch', type: T.GRAPH, g: branch('Add') },
        { name: 'else_branch', type: T.GRAPH, g: branch('Sub') },
      ]),
      node('neg', 'Neg', ['z'], ['y']),
    ],
    // Seed 1 gives a sum of 0.35 (then branch), seed 9 one of 0.27 (else branch).
    initializer: [{ name: 'limit', dims: [], dataType: FLOAT, floatData: [0.3] }],
    input: [vi('x', FLOAT, [2, 3])],
    output: [vi('y', FLOAT, [2, 3])],
  });
  const ir = parseModel(bytes, 'if.onnx');
  for (const seed of [1, 9]) {
    const feeds = { x: floatInput([2, 3], seed) };
    const reference = await runWhole(bytes, feeds);
    for (const cuts of [['relu'], ['sum'], ['positive'], ['choose'], ['relu', 'positive']]) {
      await assertChainMatches(bytes, ir, partitionFromCuts(ir, cuts), feeds, reference, `if cuts ${cuts.join(',')}`);
    }
  }
});

test('stage models written to disk keep node metadata and name their stage; a changed model is refused', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'parallax-stages-'));
  try {
    // onnx-proto cannot write NodeProto.metadata_props, so the test writes it the way stage models do.
    const graph: onnx.IGraphProto = {
      name: 'meta',
      node: [node('', 'Relu', ['x'], ['r']), node('second', 'Neg', ['r'], ['y'])],
      input: [vi('x')],
      output: [vi('y')],
    };
    const metadata: Array<Record<string, string>> = [{ 'pkg.torch.onnx.stack_trace': 'File "model.py", line 7, in forward' }, { 'pkg.torch.onnx.name_scopes': "['', 'act']" }];
    const nodeBytes = graph.node!.map((n, i) => encodeNode(n, { name: n.name ?? '', metadata: metadata[i] }));
    const modelBytes = encodeWithNodes(graph, nodeBytes);
    const path = join(dir, 'meta.onnx');
    writeFileSync(path, modelBytes);
    const ir = parseModel(modelBytes, path);
    assert.deepEqual(ir.nodes.map((n) => n.metadata), metadata, 'the test model carries the metadata');
    const p = partitionFromCuts(ir, [ir.nodes[0].name]);
    const paths = writeStageModels(path, p, join(dir, 'stages'));
    assert.deepEqual(paths, [join(dir, 'stages', 'meta.stage0-of-2.onnx'), join(dir, 'stages', 'meta.stage1-of-2.onnx')]);
    const stages = paths.map((s) => parseModel(readFileSync(s), s));
    assert.deepEqual(stages.map((s) => s.nodes[0].metadata), metadata);
    // The unnamed node gets the IR's name, so ONNX Runtime's profile names match the IR.
    assert.equal(stages[0].nodes[0].originalName, 'Relu_0');
    assert.deepEqual(JSON.parse(stages[1].metadata[STAGE_METADATA_KEY]), { stage: 1, modelSha256: ir.sha256, stages: 2 });
    const feeds = { x: floatInput([2, 4], 4) };
    const first = await runWhole(readFileSync(paths[0]), feeds);
    const second = await runWhole(readFileSync(paths[1]), { r: first['r'] });
    assert.ok(maxAbsDiff(second['y'], (await runWhole(modelBytes, feeds))['y']) === 0);

    writeFileSync(path, encode(skipGraph()));
    assert.throws(() => writeStageModels(path, p, join(dir, 'stages')), (e: unknown) => e instanceof UserError && /changed since its pipeline partition was made/.test(e.message));
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('stage models of a model with external data are written beside links to its data file and run', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'parallax-stages-ext-'));
  try {
    const w = seededValues(4, 5);
    writeFileSync(join(dir, 'weights.bin'), new Uint8Array(w.buffer));
    const external = (name: string): onnx.ITensorProto => ({
      name,
      dims: [4],
      dataType: FLOAT,
      dataLocation: onnx.TensorProto.DataLocation.EXTERNAL,
      externalData: [{ key: 'location', value: 'weights.bin' }, { key: 'offset', value: '0' }, { key: 'length', value: '16' }],
    });
    const path = join(dir, 'ext.onnx');
    const bytes = encode({
      name: 'ext',
      node: [node('mul', 'Mul', ['x', 'W'], ['m']), node('relu', 'Relu', ['m'], ['r']), node('add', 'Add', ['r', 'W'], ['y'])],
      initializer: [external('W')],
      input: [vi('x')],
      output: [vi('y')],
    });
    writeFileSync(path, bytes);
    const ir = parseModel(bytes, path);
    const paths = writeStageModels(path, partitionFromCuts(ir, ['mul', 'relu']), join(dir, 'out'));
    const feeds = { x: floatInput([2, 4], 8) };
    // By path: from bytes ORT would not know where to look for the external data.
    const whole = await ort.InferenceSession.create(path);
    const reference = await whole.run(feeds);
    await whole.release();
    const env = new Map<string, ort.Tensor>(Object.entries(feeds));
    for (const p of paths) {
      const s = await ort.InferenceSession.create(p);
      const stageFeeds: Feeds = {};
      for (const n of s.inputNames) stageFeeds[n] = env.get(n)!;
      for (const [name, t] of Object.entries(await s.run(stageFeeds))) env.set(name, t);
      await s.release();
    }
    assert.equal(maxAbsDiff(env.get('y')!, reference['y']), 0);
    // Writing again into the same folder reuses the links.
    assert.deepEqual(writeStageModels(path, partitionFromCuts(ir, ['mul', 'relu']), join(dir, 'out')), paths);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('a cut tensor whose type cannot be found is a UserError naming it', () => {
  const bytes = encode({
    name: 'seq',
    node: [
      node('relu', 'Relu', ['x'], ['r']),
      node('make_seq', 'SequenceConstruct', ['r', 'x'], ['seq']),
      node('join', 'ConcatFromSequence', ['seq'], ['y'], [{ name: 'axis', type: T.INT, i: 0 }]),
    ],
    input: [vi('x')],
    output: [vi('y', FLOAT, ['n', 4])],
  });
  const ir = parseModel(bytes, 'seq.onnx');
  const p = partitionFromCuts(ir, ['make_seq']);
  const model = decodeModelProto(bytes, ir.path);
  assert.throws(
    () => buildStageModel(model, ir, p.stages[0]),
    (e: unknown) => e instanceof UserError && /type of output tensor "seq" is unknown; cut elsewhere/.test(e.message) && !e.message.includes('\n'),
  );
});

/** Encodes a model whose nodes are given as bytes (graph field 7 → node field 1), as stage models are written. */
function encodeWithNodes(graph: onnx.IGraphProto, nodes: Uint8Array[]): Uint8Array {
  const g = Writer.create();
  for (const n of nodes) g.uint32((1 << 3) | 2).bytes(n);
  const rest = onnx.GraphProto.encode({ ...graph, node: [] }).finish();
  const graphBytes = new Uint8Array([...g.finish(), ...rest]);
  const tail = Writer.create().uint32((7 << 3) | 2).bytes(graphBytes).finish();
  return new Uint8Array([...onnx.ModelProto.encode(HEAD).finish(), ...tail]);
}
