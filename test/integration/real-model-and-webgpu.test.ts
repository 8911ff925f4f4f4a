/**
 * Data parallelism on a model nobody here wrote (PP-OCRv4 text detection, a CNN with
 * symbolic batch, height and width) and across heterogeneous devices (a CPU worker and the
 * WebGPU provider on Mesa's software Vulkan device).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { runCli } from '../helpers/cli';
import { ocrDetModelPath, MISSING_MODELS_HINT } from '../helpers/models';
import { readTrace } from '../../src/profiler/trace-io';
import { tempDir } from '../helpers/temp';
import { needs, ocrModelMissing, vulkanMissing } from '../helpers/prerequisites';

const dir = tempDir('real');
const env = { PARALLAX_CACHE: join(dir, 'cache') };

test('PP-OCRv4 detection runs data-parallel on cpu:2 and matches the one-device output', needs(ocrModelMissing()), async () => {
  const det = ocrDetModelPath();
  assert.ok(det, `PP-OCRv4 det model not fetched: ${MISSING_MODELS_HINT}`);
  const out = join(dir, 'ocr.parallax.json');
  const r = await runCli(
    ['profile', det, '--devices', 'cpu:2', '--batch', '4', '--dim', 'p2o.DynamicDimension.1=256', '--dim', 'p2o.DynamicDimension.2=256',
      '--steps', '3', '--warmup', '1', '--out', out, '--json'],
    { env },
  );
  assert.equal(r.code, 0, r.stderr);
  const s = JSON.parse(r.stdout);
  assert.equal(s.numericalCheck.ok, true, JSON.stringify(s.numericalCheck));
  assert.ok(s.numericalCheck.elements >= 4 * 256 * 256, 'the whole output map was compared');
  assert.equal(s.devices.length, 2);
  assert.ok(s.devices.every((d: { computeUs: number }) => d.computeUs > 0));
  const trace = await readTrace(out);
  assert.equal(trace.meta.model?.nodeCount, 672);
  assert.deepEqual(trace.meta.plan.mode === 'data' ? trace.meta.plan.shards : null, [2, 2]);
  // Conv-heavy: ONNX Runtime's operator spans name the convolutions.
  const opTypes = new Set<string>();
  for (let i = 0; i < trace.spans.count; i++) if (trace.spans.opType[i] >= 0) opTypes.add(trace.strings[trace.spans.opType[i]]);
  assert.ok([...opTypes].some((t) => /Conv/.test(t)), [...opTypes].join(','));
});

test('cpu:1,webgpu:1 runs on the software Vulkan device, labelled so, and shows the slow device as a straggler', needs(vulkanMissing()), async () => {
  const out = join(dir, 'hetero.parallax.json');
  const r = await runCli(['profile', 'demo', '--devices', 'cpu:1,webgpu:1', '--batch', '8', '--steps', '2', '--warmup', '1', '--out', out, '--json'], { env });
  assert.equal(r.code, 0, r.stderr);
  const s = JSON.parse(r.stdout);
  const [cpu, gpu] = s.devices;
  assert.equal(cpu.kind, 'cpu');
  assert.equal(gpu.kind, 'webgpu');
  assert.equal(gpu.provider, 'webgpu');
  assert.equal(gpu.software, true);
  assert.equal(gpu.sharesPhysicalUnit, true);
  assert.match(gpu.label, /software/);
  assert.match(cpu.label, /shares/);
  assert.equal(s.numericalCheck.ok, true, JSON.stringify(s.numericalCheck));
  // The software GPU is far slower than the CPU worker: the CPU waits for it at each step.
  assert.ok(gpu.computeUs > cpu.computeUs);
  assert.ok(cpu.idleByCauseUs.collective > 0);
  const straggler = s.findings.find((f: { id: string }) => f.id === 'straggler');
  assert.ok(straggler, 'a straggler finding');
  assert.match(straggler.message, /webgpu:0/);
  assert.ok(straggler.predictedStepUs < s.stepTimeUs.median);
  const trace = await readTrace(out);
  assert.equal(trace.meta.devices[1].software, true);
  assert.match(trace.lanes[1].label, /software/);
  // The GPU's own timestamps of the operator-profiled runs: the WebGPU device only.
  const g = trace.meta.gpuTimestamps;
  assert.ok(g && g.length === 1, JSON.stringify(g));
  assert.equal(g[0]!.device, 1);
  assert.ok(g[0]!.kernels > 0 && g[0]!.runs > 0);
  assert.ok(g[0]!.busyUs > 0 && g[0]!.busyUs <= g[0]!.computeUs, JSON.stringify(g[0]));
  assert.equal(s.gpuBusy?.[0]?.device, 'webgpu:0');
});
