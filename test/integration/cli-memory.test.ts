/**
 * Memory per device end to end: the built CLI runs a small demo model (LayerNorm + MLP
 * blocks) on cpu:2 with real onnxruntime-node sessions in real worker threads, and
 * `profile --json` reports per device the parameter bytes of what it loaded (matching the
 * graph's exactly: the whole model per data device, the stages summing to the model, the
 * shard map for tensor), an activation peak computed from the shapes the run produced (the
 * workers' recorded segment outputs checked against them), training state with exact sizes,
 * and the runner process's measured resident-set growth; `--device-memory` fires the "does
 * not fit" finding naming the plans that fit.
 */
import { before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { runCli } from '../helpers/cli';
import { tempDir } from '../helpers/temp';
import { buildDemoModel } from '../../src/runtime/onnx/demo-model';
import { loadModel, type ModelIR } from '../../src/runtime/onnx/model';
import { planMemoryTable } from '../../src/runtime/run-memory';
import { readTrace } from '../../src/profiler/trace-io';
import type { ProfileSummary } from '../../src/profiler/summary';
import type { Finding } from '../../src/profiler/findings';
import type { MemorySummary } from '../../src/profiler/memory-summary';

const dir = tempDir('run-memory');
const env = { PARALLAX_CACHE: join(dir, 'cache') };
const model = join(dir, 'demo-small.onnx');
const BATCH = 8;
let ir: ModelIR;

before(async () => {
  writeFileSync(model, buildDemoModel({ layers: 2, hidden: 64, ffn: 256 }));
  ir = await loadModel(model);
});

/** `profile --json` of the model on cpu:2 (no baseline or probe: the memory block is about this run). */
async function profile(name: string, args: string[]): Promise<{ summary: ProfileSummary & { findings: Finding[] }; memory: MemorySummary; out: string }> {
  const out = join(dir, `${name}.parallax.json`);
  const r = await runCli(['profile', model, '--devices', 'cpu:2', '--batch', String(BATCH), '--steps', '2', '--warmup', '1', '--no-baseline', '--no-probe', '--no-op-level', '--json', '--out', out, ...args], { env });
  assert.equal(r.code, 0, r.stderr);
  const summary = JSON.parse(r.stdout) as ProfileSummary & { findings: Finding[] };
  assert.ok(summary.memory, 'summary.memory');
  return { summary, memory: summary.memory, out };
}

/** The process measurement is there and coherent: a peak at or above the start, growth their difference. */
function assertProcessMeasured(m: MemorySummary): void {
  const p = m.process;
  assert.ok(p, 'the runner process was measured');
  assert.ok(p.peakRssBytes >= p.rssBeforeBytes);
  assert.equal(p.growthBytes, p.peakRssBytes - p.rssBeforeBytes);
  assert.ok(p.growthBytes > 0, 'loading two sessions grows the process');
}

/** Every device recorded segment outputs, and they match the shapes propagated from the inputs. */
function assertShapesChecked(m: MemorySummary): void {
  for (const d of m.devices) {
    assert.ok(d.shapeCheck.checked > 0, `${d.id} recorded its segment outputs`);
    assert.deepEqual(d.shapeCheck.mismatched, [], d.id);
    assert.equal(d.unknownTensors, 0);
  }
}

const plannedActivation = (label: string): number => {
  const table = planMemoryTable(ir, { devices: 2, batch: BATCH, microBatches: 4, capacityBytes: null });
  const p = table.plans.find((x) => x.label === label);
  assert.ok(p && p.kind === 'planned', label);
  return p.devices[0]!.activationBytes;
};

describe('memory per device in profile --json and the trace', () => {
  it('data: the whole model per device, activations at 4 rows each, the process growth; --device-memory names the plans that fit', async () => {
    // Between a tensor or pipeline device (about half the weights) and a data device (all of them).
    const capacity = Math.round(ir.parameterBytes * 0.75);
    const { summary, memory, out } = await profile('data', ['--mode', 'data', '--device-memory', `${capacity}B`]);
    assert.equal(memory.devices.length, 2);
    for (const d of memory.devices) {
      assert.equal(d.parameterBytes, ir.parameterBytes, 'every replica holds the whole model');
      assert.equal(d.rows, BATCH / 2);
      // The same shapes as the plan table's data plan at 4 rows: the run's shapes are what it planned.
      assert.equal(d.activationBytes, plannedActivation('data ×2'));
      assert.equal(d.totalBytes, d.parameterBytes + d.activationBytes);
      assert.equal(d.fits, false);
    }
    assertShapesChecked(memory);
    assertProcessMeasured(memory);
    assert.equal(memory.modelParameterBytes, ir.parameterBytes);

    const f = summary.findings.find((x) => x.id === 'device-memory');
    assert.ok(f, JSON.stringify(summary.findings.map((x) => x.id)));
    assert.match(f.message, /This data plan does not fit in .* per device: cpu:0, cpu:1 need up to/);
    assert.match(f.change.description, /pipeline ×2 \(--mode pipeline\)/);
    assert.match(f.change.description, /tensor ×2 \(--mode tensor\)/);
    assert.deepEqual(memory.capacity?.notFitting, ['data ×2']);

    // The trace carries the same record (and reads back against the schema).
    const trace = await readTrace(out);
    assert.deepEqual(trace.meta.memory?.devices.map((d) => d.parameterBytes), [ir.parameterBytes, ir.parameterBytes]);
    assert.equal(trace.meta.memory?.capacity?.bytes, capacity);
  });

  it('pipeline: the stages hold the model between them, each a micro-batch of activations', async () => {
    const { memory } = await profile('pipeline', ['--mode', 'pipeline', '--micro-batches', '4']);
    assert.equal(memory.devices[0]!.parameterBytes + memory.devices[1]!.parameterBytes, ir.parameterBytes);
    for (const d of memory.devices) {
      assert.ok(d.parameterBytes > 0 && d.parameterBytes < ir.parameterBytes);
      assert.equal(d.rows, BATCH / 4);
      assert.ok(d.activationBytes > 0);
    }
    assertShapesChecked(memory);
    assertProcessMeasured(memory);
  });

  it("tensor: each device holds its part of the shard map, about half the model, and the split layers' activations at half", async () => {
    const { summary, memory } = await profile('tensor', ['--mode', 'tensor']);
    const trace = await readTrace(join(dir, 'tensor.parallax.json'));
    const plan = trace.meta.plan;
    assert.ok(plan.mode === 'tensor' && plan.perDeviceParameterBytes);
    assert.deepEqual(memory.devices.map((d) => d.parameterBytes), plan.perDeviceParameterBytes);
    for (const d of memory.devices) {
      assert.ok(Math.abs(d.parameterBytes / ir.parameterBytes - 0.5) <= 0.05, `${d.id}: ${d.parameterBytes} of ${ir.parameterBytes}`);
      assert.equal(d.rows, BATCH);
      assert.equal(d.activationBytes, plannedActivation('tensor ×2'));
    }
    assertShapesChecked(memory);
    assert.equal(summary.findings.some((f) => f.id === 'device-memory'), false, 'no capacity, no finding');
  });

  it('--train: gradients per trainable parameter and optimizer slots, momentum one and Adam two', async () => {
    const momentum = await profile('train-data', ['--mode', 'data', '--train', '--optimizer', 'momentum']);
    const trace = await readTrace(momentum.out);
    const trainable = trace.meta.program!.training!.parameters.reduce((n, p) => n + p.dims.reduce((a, b) => a * b, 1) * 4, 0);
    assert.ok(trainable > 0.9 * ir.parameterBytes, 'the demo trains (almost) all its weights');
    for (const d of momentum.memory.devices) {
      assert.equal(d.gradientBytes, trainable);
      assert.equal(d.optimizerBytes, trainable, 'momentum: one slot per parameter');
      assert.equal(d.totalBytes, d.parameterBytes + d.activationBytes + trainable * 2);
    }
    assertShapesChecked(momentum.memory);

    const adam = await profile('train-pipeline', ['--mode', 'pipeline', '--train', '--optimizer', 'adam', '--micro-batches', '2']);
    const stages = (await readTrace(adam.out)).meta.program!.stageTraining!;
    adam.memory.devices.forEach((d, s) => {
      const own = stages[s]!.parameters.reduce((n, p) => n + p.dims.reduce((a, b) => a * b, 1) * 4, 0);
      assert.equal(d.gradientBytes, own, `stage ${s}: its own parameters' gradients`);
      assert.equal(d.optimizerBytes, 2 * own, 'Adam: two slots per parameter');
      assert.equal(d.rows, BATCH / 2);
      assert.ok((d.storedActivationBytes ?? 0) > 0, 'GPipe keeps the other micro-batch until its backward');
    });
    assert.equal(adam.memory.devices.reduce((n, d) => n + (d.gradientBytes ?? 0), 0), trainable, 'the stages train the model between them');
    assertShapesChecked(adam.memory);
  });
});
