/**
 * Suggestions checked before they are made: each finding's change applied to the request's
 * plan and validated as the CLI would run it, on small hand-built graphs.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { onnx } from 'onnx-proto';
import { parseModel, type ModelIR } from '../../src/runtime/onnx/model';
import { resolveInputShapes } from '../../src/runtime/inputs';
import { parseDeviceSpec, planDevices, type DiscoveredDevices } from '../../src/runtime/device/discovery';
import { checkFindings, type CheckContext } from '../../src/runtime/runner/check-findings';
import { syntheticPipelineTrace } from '../../src/profiler/analysis/synthetic';
import type { Finding } from '../../src/profiler/findings';
import type { Plan } from '../../src/profiler/plan';
import { buildDemoModel } from '../../src/runtime/onnx/demo-model';

const FLOAT = onnx.TensorProto.DataType.FLOAT;
const T = onnx.AttributeProto.AttributeType;

function vi(name: string, dims: Array<number | string>): onnx.IValueInfoProto {
  return { name, type: { tensorType: { elemType: FLOAT, shape: { dim: dims.map((d) => (typeof d === 'number' ? { dimValue: d } : { dimParam: d })) } } } };
}

function node(name: string, opType: string, input: string[], output: string[], attribute: onnx.IAttributeProto[] = []): onnx.INodeProto {
  return { name, opType, input, output, attribute };
}

/** relu → add → sigmoid → (Constant two) → mul_two → sub; the Constant is read only by mul_two. */
function graph(batch: number | string = 'batch'): ModelIR {
  const bytes = onnx.ModelProto.encode({
    irVersion: 8,
    opsetImport: [{ domain: '', version: 17 }],
    graph: {
      name: 'g',
      node: [
        node('const_two', 'Constant', [], ['two'], [{ name: 'value', type: T.TENSOR, t: { dims: [], dataType: FLOAT, floatData: [2] } }]),
        node('relu', 'Relu', ['x'], ['r']),
        node('add', 'Add', ['r', 'r'], ['s']),
        node('sigmoid', 'Sigmoid', ['s'], ['g']),
        node('mul_two', 'Mul', ['g', 'two'], ['h']),
        node('sub', 'Sub', ['h', 'r'], ['y']),
      ],
      input: [vi('x', [batch, 4])],
      output: [vi('y', [batch, 4])],
    },
  }).finish();
  return parseModel(bytes, 'g.onnx');
}

function machine(cores: number): DiscoveredDevices {
  return {
    host: { cpuModel: 'Test CPU', logicalCores: cores, memoryBytes: 8 << 30, os: 'Test OS', platform: 'linux', arch: 'x64' },
    ort: { version: '1.30.0', versions: { node: '1.30.0' }, backends: [{ name: 'cpu', bundled: true }] },
    onnxruntimeVersion: '1.30.0',
    webgpu: { available: false, reason: 'none', adapter: null, adapterSource: 'none', vulkanDevices: [], probeMs: 1 },
    cuda: { providerInstalled: false, gpus: [] },
    kinds: [],
  } as DiscoveredDevices;
}

function context(ir: ModelIR, plan: Plan, o: { cores?: number; inputsFile?: string; batch?: number } = {}): CheckContext {
  const discovered = machine(o.cores ?? 2);
  return {
    ir,
    request: { plan, modelLabel: 'g.onnx', ...(o.inputsFile ? { inputsFile: o.inputsFile } : {}) },
    resolved: resolveInputShapes(ir, { batch: plan.batch }),
    devices: planDevices(parseDeviceSpec(plan.devices), discovered),
    discovered,
  };
}

function finding(id: string, params: Record<string, unknown>, over: Partial<Finding> = {}): Finding {
  return {
    id,
    severity: 'warning',
    message: `${id}.`,
    evidence: { lanes: [0, 1], startUs: 0, endUs: 1, numbers: {} },
    change: { description: `${id} change`, params },
    currentStepUs: 1000,
    predictedStepUs: 800,
    ...over,
  };
}

const pipePlan = (o: Partial<Extract<Plan, { mode: 'pipeline' }>> = {}): Plan => ({ mode: 'pipeline', devices: 'cpu:2', batch: 8, steps: 3, warmup: 1, seed: 0, schedule: 'gpipe', microBatches: 4, ...o });
const dataPlan = (o: Partial<Extract<Plan, { mode: 'data' }>> = {}): Plan => ({ mode: 'data', devices: 'cpu:1', batch: 4, steps: 3, warmup: 1, seed: 0, ...o });

test('a cut after a Constant moves to the nearest earlier node that takes one, and the step is predicted again', () => {
  const ir = graph();
  // Pipeline order puts the Constant just before mul_two: relu, add, sigmoid, const_two, mul_two, sub.
  const stageNodes = [['relu', 'add', 'sigmoid', 'const_two', 'mul_two'], ['sub']];
  const nodeCostUs = { relu: 100, add: 100, sigmoid: 100, const_two: 0, mul_two: 300, sub: 100 };
  const trace = syntheticPipelineTrace({ stageUs: [600, 100], microBatches: 4, steps: 3, batch: 8, stageNodes, nodeCostUs });
  const ctx = { ...context(ir, pipePlan()), trace };
  const [f] = checkFindings([finding('pipeline-imbalance', { cuts: ['const_two'] }, { currentStepUs: 3000, predictedStepUs: 2000 })], ctx);
  assert.deepEqual(f!.change.params, { cuts: ['sigmoid'] });
  assert.equal(f!.checked?.ok, true);
  assert.match(f!.checked!.note!, /moved "const_two" → "sigmoid"/);
  assert.notEqual(f!.severity, 'info');
  // Stages relu..sigmoid (300 µs of calibrated cost) and mul_two, sub (400): the prediction is for those stages.
  assert.equal(f!.evidence.numbers['predictedMaxStagePerMicroUs'], 400);
  assert.ok(f!.predictedStepUs! > 0 && f!.predictedStepUs! < 3000);
});

test('cuts that cannot move off Constants without emptying a stage are dropped as information', () => {
  const ir = graph();
  const [f] = checkFindings([finding('pipeline-imbalance', { cuts: ['sigmoid', 'const_two'] })], context(ir, pipePlan({ devices: 'cpu:3' })));
  assert.equal(f!.severity, 'info');
  assert.deepEqual(f!.change.params, {});
  assert.equal(f!.checked?.ok, false);
  assert.match(f!.checked!.note!, /empty/);
});

test('a cut the partitioner accepts is kept as it is', () => {
  const ir = graph();
  const [f] = checkFindings([finding('pipeline-imbalance', { cuts: ['add'] })], context(ir, pipePlan()));
  assert.deepEqual(f!.change.params, { cuts: ['add'] });
  assert.deepEqual(f!.checked, { ok: true });
});

test('a larger batch is not suggested for a model whose batch is fixed', () => {
  const ir = graph(4);
  const host = finding('host-overhead', { batch: 16 }, { predictedStepUs: 2000, throughput: { currentPerS: 4000, predictedPerS: 8000 } });
  const [f] = checkFindings([host], context(ir, dataPlan()));
  assert.equal(f!.severity, 'info');
  assert.deepEqual(f!.change.params, {});
  assert.match(f!.checked!.note!, /fixed at 4/);
});

test('a larger batch is not suggested when --inputs gives the rows', () => {
  const ir = graph();
  const host = finding('host-overhead', { batch: 16 }, { predictedStepUs: 2000, throughput: { currentPerS: 4000, predictedPerS: 8000 } });
  const [f] = checkFindings([host], context(ir, dataPlan(), { inputsFile: 'rows.npz' }));
  assert.equal(f!.severity, 'info');
  assert.deepEqual(f!.change.params, {});
  assert.match(f!.checked!.note!, /--inputs rows\.npz/);
  // Without --inputs the same change is checked and kept.
  const [ok] = checkFindings([host], context(ir, dataPlan()));
  assert.deepEqual(ok!.change.params, { batch: 16 });
  assert.deepEqual(ok!.checked, { ok: true });
});

test('micro-batches that do not divide the batch are not suggested', () => {
  const [f] = checkFindings([finding('pipeline-bubble', { microBatches: 3 })], context(graph(), pipePlan()));
  assert.equal(f!.severity, 'info');
  assert.match(f!.checked!.note!, /not divisible/);
});

test('one device is suggested only when the spec runs the threads the prediction was measured with', () => {
  const ir = graph();
  const scaling = finding('poor-scaling', { devices: 'cpu:1', shards: [8] }, { predictedStepUs: 900 });
  // 2 cores: cpu:2 ran 1 thread per worker (the baseline too), cpu:1 would run 2.
  const [two] = checkFindings([scaling], context(ir, dataPlan({ devices: 'cpu:2', batch: 8 }), { cores: 2 }));
  assert.equal(two!.severity, 'info');
  assert.deepEqual(two!.change.params, {});
  assert.match(two!.checked!.note!, /cpu workers with 2 threads, but the prediction was measured with 1 thread/);
  // 1 core: both run 1 thread, so the baseline's measured step predicts --devices cpu:1.
  const [one] = checkFindings([scaling], context(ir, dataPlan({ devices: 'cpu:2', batch: 8 }), { cores: 1 }));
  assert.deepEqual(one!.change.params, { devices: 'cpu:1', shards: [8] });
  assert.deepEqual(one!.checked, { ok: true });
  // A pipeline's one device is the data plan the baseline ran: valid with mode data.
  const pipe = finding('poor-scaling', { devices: 'cpu:1', mode: 'data', shards: [8] }, { predictedStepUs: 900 });
  const [p] = checkFindings([pipe], context(ir, pipePlan({ cuts: ['add'] }), { cores: 1 }));
  assert.deepEqual(p!.checked, { ok: true });
});

test('a checked change predicted slower is information with no parameters', () => {
  const [f] = checkFindings([finding('pipeline-bubble', { microBatches: 8 }, { predictedStepUs: 1090 })], context(graph(), pipePlan()));
  assert.equal(f!.severity, 'info');
  assert.deepEqual(f!.change.params, {});
});

test('a tensor plan keeps a layer whole only where something is still left to split; data parallelism instead is checked as a data plan', () => {
  const ir = parseModel(buildDemoModel({ layers: 2, hidden: 64, ffn: 256 }), 'demo.onnx');
  const plan: Plan = { mode: 'tensor', devices: 'cpu:2', batch: 8, steps: 3, warmup: 1, seed: 0, tensor: 2 };
  const ctx = context(ir, plan);
  const [one, every, typo, data] = checkFindings(
    [
      finding('tensor-collectives', { keepWhole: ['/layers.1/mlp'] }),
      finding('tensor-collectives', { keepWhole: ['/layers.0/mlp', '/layers.1/mlp'] }),
      finding('tensor-collectives', { keepWhole: ['/layers.9/mlp'] }),
      finding('tensor-vs-data', { mode: 'data' }),
    ],
    ctx,
  );
  assert.equal(one!.checked?.ok, true);
  assert.equal(every!.severity, 'info');
  assert.match(every!.checked!.note!, /nothing to split/);
  assert.match(typo!.checked!.note!, /matches no/);
  assert.equal(data!.checked?.ok, true);
});
