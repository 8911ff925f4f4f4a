/**
 * Memory per device of a run, its pure parts: the activation peak at the shapes a run
 * produced (rows per device, recorded segment outputs checked and counted), training state
 * per device, which plans fit a capacity, the summary's memory and the "does not fit"
 * finding. Programs come from the real compilers; the demo model is built in code.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { buildDemoModel } from '../../src/runtime/onnx/demo-model';
import { parseModel, type ModelIR } from '../../src/runtime/onnx/model';
import { compileData } from '../../src/runtime/compile/data';
import { checkRecorded, deviceRows, fittingPlans, planMemoryTable, runMemory, type RunMemoryInput } from '../../src/runtime/run-memory';
import { trainingFactor } from '../../src/runtime/runner/run-memory-setup';
import { deviceMemoryRule } from '../../src/profiler/findings-memory';
import { memorySummary } from '../../src/profiler/memory-summary';
import type { Program, TrainingProgram } from '../../src/profiler/program';
import type { RunMemory } from '../../src/profiler/memory-format';
import type { SegmentOutputs } from '../../src/runtime/protocol';
import { memoryView } from '../../webview/src/memory-view';
import { RssWatch } from '../../src/runtime/runner/rss-watch';
import { dataPlan, meta, traceOf } from '../helpers/trace-builders';

const HIDDEN = 64;
const demo = (layers = 2): ModelIR => parseModel(buildDemoModel({ layers, hidden: HIDDEN, ffn: 256 }), 'demo.onnx');

/** The data program of `ir` over `devices` devices for a global batch of `batch` rows. */
function dataProgram(ir: ModelIR, batch: number, devices: number): Program {
  return compileData(dataPlan({ batch, shards: undefined }, devices), {
    inputs: [{ name: 'x', dtype: 'float32', dims: [batch, HIDDEN], batchAxis: 0 }],
    outputs: [{ name: 'y', batchAxis: 0 }],
    parameterCount: ir.parameterCount,
    devices,
    nodeNames: ir.nodes.map((n) => n.name),
  });
}

function input(ir: ModelIR, program: Program, outputs: (SegmentOutputs[] | undefined)[] = []): RunMemoryInput {
  return { ir, program, inputs: [{ name: 'x', dims: [program.batch, HIDDEN], batchAxis: 0 }], dims: {}, segmentParameterBytes: new Map(), segmentOutputs: outputs };
}

/** A training part with momentum (one slot per parameter) or Adam (two), over the given parameters. */
function trainingPart(params: { name: string; dims: number[] }[], slots: number): TrainingProgram {
  const state = params.flatMap((p) => Array.from({ length: slots }, (_, k) => ({ input: `${p.name}.s${k}`, output: `${p.name}.s${k}.new`, param: p.name })));
  return { parameters: params, loss: 'loss', optimizer: slots === 2 ? 'adam' : slots === 1 ? 'momentum' : 'sgd', lr: 0.01, state, updated: [], lrInput: 'lr', stepInput: null };
}

describe('activation peak from the shapes the run produced', () => {
  it('a data plan counts each device at its own rows: uneven shards hold activations in proportion to their rows', () => {
    const ir = demo();
    // 6 rows over 2 devices: 3 each; 5 rows: 3 and 2.
    const even = runMemory(input(ir, dataProgram(ir, 6, 2)));
    const uneven = runMemory(input(ir, dataProgram(ir, 5, 2)));
    assert.deepEqual(even.devices.map((d) => d.rows), [3, 3]);
    assert.deepEqual(uneven.devices.map((d) => d.rows), [3, 2]);
    // Every activation of the MLP has the batch as its first axis, so bytes scale with rows exactly.
    const a3 = uneven.devices[0]!.activationBytes;
    const a2 = uneven.devices[1]!.activationBytes;
    assert.ok(a2 > 0);
    assert.equal(a3 * 2, a2 * 3, `${a3} B at 3 rows against ${a2} B at 2`);
    assert.equal(even.devices[0]!.activationBytes, a3);
  });

  it('parameters of a data plan are the whole model on every device, and the totals add up', () => {
    const ir = demo();
    const m = runMemory(input(ir, dataProgram(ir, 8, 2)));
    for (const d of m.devices) {
      assert.equal(d.parameterBytes, ir.parameterBytes);
      assert.equal(d.totalBytes, d.parameterBytes + d.activationBytes);
      assert.equal(d.gradientBytes, undefined, 'no training state for inference');
    }
    assert.equal(m.totalBytes, m.devices[0]!.totalBytes + m.devices[1]!.totalBytes);
    assert.equal(m.modelParameterBytes, ir.parameterBytes);
  });

  it('recorded outputs that match are checked; one that differs is named and counted as recorded', () => {
    const ir = demo();
    const program = dataProgram(ir, 8, 2);
    const match = runMemory(input(ir, program, [[{ segment: 0, tensors: [{ name: 'y', dtype: 'float32', dims: [4, HIDDEN] }] }]]));
    assert.deepEqual(match.devices[0]!.shapeCheck, { checked: 1, mismatched: [] });
    assert.deepEqual(match.devices[1]!.shapeCheck, { checked: 0, mismatched: [] }, 'device 1 recorded nothing');
    // A run whose output was 40 rows (the propagated shape says 4): the recorded one is counted.
    const big = runMemory(input(ir, program, [[{ segment: 0, tensors: [{ name: 'y', dtype: 'float32', dims: [40, HIDDEN] }] }]]));
    assert.deepEqual(big.devices[0]!.shapeCheck, { checked: 1, mismatched: ['y'] });
    assert.ok(big.devices[0]!.activationBytes >= 40 * HIDDEN * 4, 'the recorded output is held');
    assert.ok(big.devices[0]!.activationBytes > match.devices[0]!.activationBytes);
  });

  it("a split tensor is checked at the device's share; outputs that are not graph tensors are not checked", () => {
    const shapes = new Map([['h', { dtype: 'float32' as const, dims: [4, 256] }]]);
    const recorded = new Set<string>();
    const check = checkRecorded(
      shapes,
      [{ segment: 0, tensors: [{ name: 'h', dtype: 'float32', dims: [4, 128] }, { name: 'loss', dtype: 'float32', dims: [] }] }],
      (t) => (t === 'h' && !recorded.has(t) ? 1 / 2 : 1),
      recorded,
      (t) => t === 'h',
    );
    assert.deepEqual(check, { checked: 1, mismatched: [] });
    assert.deepEqual(shapes.get('h')!.dims, [4, 128], 'the recorded shape replaces the propagated one');
    assert.deepEqual([...recorded], ['h']);
  });

  it("rows are a forward's: an optimizer run that names the whole batch does not count", () => {
    const ir = demo();
    const p = dataProgram(ir, 8, 2);
    const dp = { ...p.devices[0]!, instructions: [...p.devices[0]!.instructions, { op: 'run' as const, micro: -1, segment: 0, rows: 8, phase: 'optimizer' as const }] };
    assert.equal(deviceRows(dp), 4);
  });
});

describe('training state per device', () => {
  const params = [
    { name: 'w1', dims: [64, 256] },
    { name: 'b1', dims: [256] },
  ];
  const bytes = (64 * 256 + 256) * 4;
  for (const [optimizer, slots] of [['sgd', 0], ['momentum', 1], ['adam', 2]] as const) {
    it(`${optimizer}: gradients one per trainable parameter, optimizer state ${slots} slot(s) per parameter`, () => {
      const ir = demo();
      const program: Program = { ...dataProgram(ir, 8, 2), training: trainingPart(params, slots) };
      const m = runMemory(input(ir, program));
      for (const d of m.devices) {
        assert.equal(d.gradientBytes, bytes);
        assert.equal(d.optimizerBytes, slots * bytes);
        assert.equal(d.totalBytes, d.parameterBytes + d.activationBytes + bytes * (1 + slots));
      }
      assert.equal(trainingFactor(program, ir.parameterBytes), (bytes / ir.parameterBytes) * (1 + slots));
    });
  }

  it("a pipeline stage's stash adds the micro-batches other than the one the walk counts", () => {
    const ir = demo();
    const base = dataProgram(ir, 8, 2);
    const program: Program = { ...base, devices: base.devices.map((d, s) => ({ ...d, stage: s })), stageTraining: [trainingPart(params, 1), trainingPart(params.slice(1), 1)] };
    const m = runMemory({ ...input(ir, program), stageParameterBytes: [1000, 2000], stash: [{ peakMicroBatches: 4, peakBytes: 4000 }, undefined] });
    assert.deepEqual(m.devices.map((d) => d.parameterBytes), [1000, 2000]);
    assert.equal(m.devices[0]!.storedActivationBytes, 3000);
    assert.equal(m.devices[1]!.storedActivationBytes, undefined);
    assert.equal(m.devices[1]!.gradientBytes, 256 * 4, "stage 1's own parameters only");
  });
});

describe('which plans fit a capacity', () => {
  it('the table of the demo over 2 devices: a capacity between the tensor and the data plan fits all but data', () => {
    const ir = demo();
    const table = planMemoryTable(ir, { devices: 2, batch: 8, microBatches: 4, capacityBytes: null });
    const worst = (label: string): number => {
      const p = table.plans.find((x) => x.label === label);
      assert.ok(p && p.kind === 'planned', label);
      return p.maxBytes;
    };
    const cap = (worst('data ×2') + Math.max(worst('tensor ×2'), worst('pipeline ×2'))) / 2;
    assert.ok(worst('data ×2') > cap);
    const fits = fittingPlans(table, cap);
    assert.deepEqual(fits.notFitting, ['data ×2']);
    assert.deepEqual(fits.fitting.sort(), ['pipeline ×2', 'tensor ×2']);
    // Training state for every parameter (Adam: gradient + two slots, 3× the parameters) fits nowhere.
    assert.deepEqual(fittingPlans(table, cap, 3).fitting, []);
    assert.equal(fittingPlans(table, 1).fitting.length, 0);
  });
});

/** A trace whose `meta.memory` has the given device totals and capacity. */
function traceWithMemory(totals: number[], capacity?: RunMemory['capacity'], process?: RunMemory['process']) {
  const memory: RunMemory = {
    devices: totals.map((t, device) => ({ device, rows: 4, parameterBytes: t - 100, activationBytes: 100, totalBytes: t, unknownTensors: 0, shapeCheck: { checked: 1, mismatched: [] } })),
    modelParameterBytes: 1000,
    totalBytes: totals.reduce((a, b) => a + b, 0),
    ...(process ? { process } : {}),
    ...(capacity ? { capacity } : {}),
  };
  return traceOf([], [[0, 1000]], meta({ memory }));
}

describe('the device-memory finding', () => {
  it('fires when a device exceeds the capacity, naming the plans that fit and the flags that run them', () => {
    const t = traceWithMemory([3000, 1200], { bytes: 2048, fitting: ['pipeline ×2', 'data 2 × tensor 2'], notFitting: ['data ×2'] });
    const [f, ...rest] = deviceMemoryRule(t, 1000);
    assert.equal(rest.length, 0);
    assert.ok(f);
    assert.equal(f.id, 'device-memory');
    assert.equal(f.severity, 'warning');
    assert.deepEqual(f.evidence.lanes, [0]);
    assert.match(f.message, /does not fit in 2\.00 KiB per device: cpu:0 needs up to 2\.93 KiB/);
    assert.match(f.change.description, /pipeline ×2 \(--mode pipeline\), data 2 × tensor 2 \(--mode hybrid --data 2 --tensor 2\)/);
    assert.equal(f.predictedStepUs, null);
  });

  it('says so when no plan fits, and stays silent without a capacity or when every device fits', () => {
    const none = deviceMemoryRule(traceWithMemory([3000, 3000], { bytes: 1024, fitting: [], notFitting: ['data ×2', 'tensor ×2'] }), 1000);
    assert.equal(none.length, 1);
    assert.deepEqual(none[0]!.evidence.lanes, [0, 1]);
    assert.match(none[0]!.change.description, /No plan over 2 devices fits in 1\.00 KiB/);
    assert.deepEqual(deviceMemoryRule(traceWithMemory([3000, 3000]), 1000), []);
    assert.deepEqual(deviceMemoryRule(traceWithMemory([1000, 1000], { bytes: 1024, fitting: ['data ×2'], notFitting: [] }), 1000), []);
    assert.deepEqual(deviceMemoryRule(traceOf([], [[0, 1000]], meta()), 1000), [], 'traces without memory');
  });
});

describe('the summary and the panel', () => {
  it('summary.memory names devices, sets the computed sum against the measured growth and lists devices over the capacity', () => {
    const process = { rssBeforeBytes: 1e6, peakRssBytes: 1e6 + 8000, growthBytes: 8000, peakSource: 'maxRSS' as const, sampleMs: 25, alsoRan: [] };
    const s = memorySummary(traceWithMemory([3000, 1000], { bytes: 2048, fitting: [], notFitting: [] }, process))!;
    assert.deepEqual(s.devices.map((d) => [d.id, d.fits]), [['cpu:0', false], ['cpu:1', true]]);
    assert.equal(s.computedOverMeasured, 4000 / 8000);
    assert.deepEqual(s.overCapacity, ['cpu:0']);
    assert.equal(memorySummary(traceOf([], [[0, 1]], meta())), undefined);
  });

  it('the panel reads summary.memory defensively', () => {
    const view = memoryView({ devices: [{ id: 'cpu:0', totalBytes: 10, parameterBytes: 6, activationBytes: 1, gradientBytes: 1, optimizerBytes: 2, fits: false }], totalBytes: 10, process: { growthBytes: 99 }, capacity: { bytes: 8, fitting: ['tensor ×2', 3] } });
    assert.deepEqual(view, { devices: [{ id: 'cpu:0', parameterBytes: 6, activationBytes: 1, trainingBytes: 3, totalBytes: 10, fits: false }], totalBytes: 10, processGrowthBytes: 99, capacityBytes: 8, fitting: ['tensor ×2'] });
    assert.equal(memoryView(undefined), null);
    assert.equal(memoryView({ devices: [{ id: 'cpu:0' }] }), null, 'a device without a total');
    assert.equal(memoryView({ devices: 'x' }), null);
  });
});

describe("the runner process's resident set", () => {
  it('a watch sees memory the process touches while it runs, and names what else ran', () => {
    const watch = new RssWatch(5);
    // 64 MiB written page by page (a zero-filled allocation may not be resident until touched).
    const block = Buffer.allocUnsafe(64 * 1024 * 1024).fill(1);
    const p = watch.stop(['the one-device baseline']);
    assert.equal(block[block.length - 1], 1);
    assert.ok(p.peakRssBytes >= p.rssBeforeBytes);
    assert.equal(p.growthBytes, p.peakRssBytes - p.rssBeforeBytes);
    assert.ok(p.growthBytes >= 48 * 1024 * 1024, `grew ${p.growthBytes} B for a 64 MiB block`);
    assert.deepEqual(p.alsoRan, ['the one-device baseline']);
    assert.equal(p.sampleMs, 5);
  });
});
