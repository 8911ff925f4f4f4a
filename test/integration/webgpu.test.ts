/**
 * WebGPU for real: ORT's WebGPU provider on whatever adapter the machine has (Mesa's
 * lavapipe software Vulkan in CI), found through Parallax's own discovery and probe.
 *
 * WebGPU is expected to work wherever a Vulkan driver is installed; there, a WebGPU that
 * does not run fails the tests with the probe's reason. Without a driver (or with
 * PARALLAX_SKIP_WEBGPU=1) they skip, saying how to install one.
 */
import { test, describe, before } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as ort from 'onnxruntime-node';
import {
  discoverDevices,
  parseDeviceSpec,
  planDevices,
  probeWebGpu,
  sessionOptionsFor,
  type DiscoveredDevices,
} from '../../src/runtime/device/discovery';
import { alignOrtProfile, endOrtProfiling, readOrtProfile, type RunWindow } from '../../src/profiler/ort-profile';
import { nowUs } from '../../src/runtime/spans';
import { seededValues, tinyMatMulReference, writeTinyMatMulModel } from '../helpers/tiny-model';
import { needs, vulkanMissing } from '../helpers/prerequisites';

describe('WebGPU on this machine', () => {
  let d: DiscoveredDevices;
  before(async () => {
    d = await discoverDevices();
  });

  /**
   * True when WebGPU runs here. Skips (with the install command) when the machine has no
   * Vulkan driver or PARALLAX_SKIP_WEBGPU=1; fails with the probe's reason when the driver is
   * there and WebGPU still does not run.
   */
  function requireWebGpu(t: { skip(msg?: string): void }): boolean {
    const missing = needs(vulkanMissing()).skip;
    if (missing) {
      t.skip(missing);
      return false;
    }
    if (d.webgpu.available) return true;
    assert.fail(`WebGPU is not available: ${d.webgpu.reason ?? 'unknown reason'}. Install the Vulkan driver (.ci/run does: mesa-vulkan-drivers from bookworm-backports, libvulkan1), or set PARALLAX_SKIP_WEBGPU=1 on a machine without WebGPU.`);
  }

  test('the probe ran a model on the WebGPU provider and identified the adapter', (t) => {
    if (!requireWebGpu(t)) return;
    assert.deepEqual(d.webgpu.nodeProviders, ['WebGpuExecutionProvider']);
    assert.ok((d.webgpu.maxAbsError ?? Infinity) < 1e-4);
    assert.ok(d.webgpu.adapter, 'the adapter is identified (vulkaninfo)');
    t.diagnostic(`adapter: ${d.webgpu.adapter.name} (${d.webgpu.adapter.type}, ${d.webgpu.adapter.driver})`);
    t.diagnostic(`probe: ${JSON.stringify(d.webgpu.timings)} in ${d.webgpu.probeMs.toFixed(0)} ms`);
    if (d.webgpu.vulkanDevices.every((v) => v.type === 'cpu')) {
      assert.equal(d.webgpu.adapter.software, true, 'with only CPU-type Vulkan devices the adapter is software');
    }
  });

  test('a tiny MatMul on webgpu matches the CPU provider and its device is labelled honestly', async (t) => {
    if (!requireWebGpu(t)) return;
    const devices = planDevices(parseDeviceSpec('cpu:1,webgpu:1', d), d);
    const gpu = devices.find((x) => x.kind === 'webgpu')!;
    const cpu = devices.find((x) => x.kind === 'cpu')!;
    t.diagnostic(`labels: ${devices.map((x) => x.label).join(' | ')}`);
    if (d.webgpu.adapter?.software) {
      assert.equal(gpu.software, true);
      assert.equal(gpu.sharesPhysicalUnit, true);
      assert.match(gpu.label, /software — shares the host CPU/);
      assert.equal(cpu.sharesPhysicalUnit, true);
    } else {
      assert.ok(gpu.label.includes(d.webgpu.adapter?.shortName ?? ''), 'a hardware adapter is named in the label');
    }

    const model = writeTinyMatMulModel({ k: 64, n: 32, relu: true });
    const dir = mkdtempSync(join(tmpdir(), 'parallax-webgpu-'));
    try {
      const x = seededValues(8 * model.k, 3);
      const feeds = { [model.input]: new ort.Tensor('float32', x, [8, model.k]) };
      const gpuOpts = sessionOptionsFor(gpu, { profiling: true, profilePrefix: join(dir, 'gpu') });
      const t0 = performance.now();
      const gs = await ort.InferenceSession.create(model.path, gpuOpts);
      const tCreate = performance.now() - t0;
      const windows: RunWindow[] = [];
      const runMs: number[] = [];
      let gy: Float32Array | null = null;
      for (let i = 0; i < 4; i++) {
        const s = nowUs();
        const r = await gs.run(feeds);
        const e = nowUs();
        windows.push({ startUs: s, durUs: e - s });
        runMs.push((e - s) / 1000);
        gy = r[model.output]!.data as Float32Array;
      }
      const file = endOrtProfiling(gs, gpuOpts.profileFilePrefix!);
      await gs.release();
      t.diagnostic(`webgpu session create ${tCreate.toFixed(0)} ms; runs ${runMs.map((m) => m.toFixed(2)).join(', ')} ms`);

      const cs = await ort.InferenceSession.create(model.path, sessionOptionsFor(cpu));
      const cy = (await cs.run(feeds))[model.output]!.data as Float32Array;
      await cs.release();

      const ref = tinyMatMulReference(model, x, true);
      let maxGpuCpu = 0;
      let maxCpuRef = 0;
      for (let i = 0; i < ref.length; i++) {
        maxGpuCpu = Math.max(maxGpuCpu, Math.abs(gy![i] - cy[i]));
        maxCpuRef = Math.max(maxCpuRef, Math.abs(cy[i] - ref[i]));
      }
      assert.ok(maxGpuCpu < 1e-4, `webgpu vs cpu max abs error ${maxGpuCpu}`);
      assert.ok(maxCpuRef < 1e-4, `cpu vs reference max abs error ${maxCpuRef}`);

      // ORT's own profile of the WebGPU session: nodes on the WebGPU provider, GPU-side
      // kernel events, and both placed inside the measured run windows.
      const profile = await readOrtProfile(file);
      assert.equal(profile.runs.length, 4);
      assert.ok(profile.nodes.length > 0 && profile.nodes.every((n) => n.provider === 'WebGpuExecutionProvider'));
      assert.ok(profile.gpu.length > 0, 'WebGPU records GPU kernel (Api) events');
      const a = alignOrtProfile(profile, windows);
      assert.deepEqual(a.runMap, [0, 1, 2, 3]);
      assert.equal(a.ops.length, profile.nodes.length);
      assert.equal(a.gpu.length, profile.gpu.length);
      for (const s of [...a.ops, ...a.gpu]) {
        const w = windows[s.runIndex];
        assert.ok(s.startUs >= w.startUs && s.startUs + s.durUs <= w.startUs + w.durUs + 1e-6);
      }
      t.diagnostic(`gpu kernels (last run): ${a.gpu.filter((g) => g.runIndex === 3).map((g) => `${g.program} ${g.durUs.toFixed(0)} µs`).join(', ')}`);
      if (a.notes.length > 0) t.diagnostic(`alignment notes: ${a.notes.join('; ')}`);
    } finally {
      rmSync(dir, { recursive: true, force: true });
      model.dispose();
    }
  });

  test('the probe reports a missing Vulkan driver as unavailable with the reason', async () => {
    const p = await probeWebGpu({ env: { ...process.env, VK_ICD_FILENAMES: '/nonexistent/icd.json', VK_DRIVER_FILES: '/nonexistent/icd.json' } });
    assert.equal(p.available, false);
    assert.match(p.reason ?? '', /adapter/i);
    assert.ok(!(p.reason ?? '').includes('\n'));
  });

  test('the probe gives up on a hung child after its time limit', async () => {
    const p = await probeWebGpu({ timeoutMs: 1, cache: false });
    assert.equal(p.available, false);
    assert.match(p.reason ?? '', /did not finish within|crashed/);
  });
});
