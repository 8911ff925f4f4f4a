import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import {
  CUDA_INSTALL_HINT,
  parseDeviceSpec,
  parseVulkanSummary,
  pickAdapter,
  planDevices,
  sessionOptionsFor,
  type DiscoveredDevices,
  type GpuAdapter,
} from '../../src/runtime/device/discovery';
import { UserError } from '../../src/common/errors';

const LLVMPIPE: GpuAdapter = {
  name: 'llvmpipe (LLVM 15.0.6, 256 bits)',
  shortName: 'llvmpipe',
  vendor: 'Mesa',
  type: 'cpu',
  driver: 'llvmpipe — Mesa 25.0.7',
  software: true,
};
const RTX: GpuAdapter = {
  name: 'NVIDIA GeForce RTX 4090',
  shortName: 'NVIDIA GeForce RTX 4090',
  vendor: 'NVIDIA',
  type: 'discrete',
  driver: 'NVIDIA — 550.54',
  software: false,
};

/** A discovered machine with `cores` cores and the given accelerators. */
function machine(o: { cores?: number; adapter?: GpuAdapter | null; cudaProvider?: boolean; cudaGpus?: string[] } = {}): DiscoveredDevices {
  const adapter = o.adapter === undefined ? LLVMPIPE : o.adapter;
  return {
    host: { cpuModel: 'Test CPU', logicalCores: o.cores ?? 2, memoryBytes: 8 << 30, os: 'Test OS', platform: 'linux', arch: 'x64' },
    ort: { version: '1.30.0', versions: { node: '1.30.0' }, backends: [{ name: 'cpu', bundled: true }] },
    onnxruntimeVersion: '1.30.0',
    webgpu: adapter
      ? { available: true, adapter, adapterSource: 'vulkaninfo', vulkanDevices: [adapter], probeMs: 1 }
      : { available: false, reason: 'Failed to get a WebGPU adapter: No supported adapters', adapter: null, adapterSource: 'none', vulkanDevices: [], probeMs: 1 },
    cuda: { providerInstalled: o.cudaProvider ?? false, gpus: (o.cudaGpus ?? []).map((name, index) => ({ index, name })) },
    kinds: [],
  };
}

function userError(fn: () => unknown, pattern: RegExp): void {
  assert.throws(fn, (e: unknown) => {
    assert.ok(e instanceof UserError, `expected a UserError, got ${String(e)}`);
    assert.match(e.message, pattern);
    assert.ok(!e.message.includes('\n'), 'a UserError message is one line');
    return true;
  });
}

describe('parseDeviceSpec', () => {
  test('reads kind:count entries separated by commas', () => {
    assert.deepEqual(parseDeviceSpec('cpu:2'), [{ kind: 'cpu', count: 2 }]);
    assert.deepEqual(parseDeviceSpec(' cpu:1 , webgpu:1 '), [
      { kind: 'cpu', count: 1 },
      { kind: 'webgpu', count: 1 },
    ]);
    assert.deepEqual(parseDeviceSpec('CUDA:2'), [{ kind: 'cuda', count: 2 }]);
  });

  test('treats a bare kind as one device', () => {
    assert.deepEqual(parseDeviceSpec('cpu'), [{ kind: 'cpu', count: 1 }]);
  });

  test('drops kinds asked for zero times when others remain', () => {
    assert.deepEqual(parseDeviceSpec('cpu:2,webgpu:0'), [{ kind: 'cpu', count: 2 }]);
  });

  test('rejects unknown kinds and names the valid ones', () => {
    userError(() => parseDeviceSpec('gpu:1'), /unknown device kind "gpu".*cpu, webgpu, cuda/);
    userError(() => parseDeviceSpec('tpu:2'), /unknown device kind/);
  });

  test('rejects counts that are not whole numbers', () => {
    userError(() => parseDeviceSpec('cpu:two'), /not a whole number/);
    userError(() => parseDeviceSpec('cpu:-1'), /not a whole number/);
    userError(() => parseDeviceSpec('cpu:1.5'), /not a whole number/);
    userError(() => parseDeviceSpec('cpu:'), /not a whole number/);
    userError(() => parseDeviceSpec('cpu:1000'), /more than 64/);
  });

  test('rejects a spec asking for zero devices and explains that the number is a count', () => {
    userError(() => parseDeviceSpec('cuda:0'), /zero devices.*count, not an index/);
    userError(() => parseDeviceSpec('cpu:0,webgpu:0'), /zero devices/);
    userError(() => parseDeviceSpec('  '), /empty/);
  });

  test('rejects malformed entries and repeated kinds', () => {
    userError(() => parseDeviceSpec('cpu:1,,webgpu:1'), /not of the form kind:count/);
    userError(() => parseDeviceSpec('cpu=2'), /not of the form kind:count/);
    userError(() => parseDeviceSpec('cpu:1,cpu:2'), /cpu appears twice/);
  });

  test('with discovery, rejects webgpu when no adapter works and says why', () => {
    userError(() => parseDeviceSpec('webgpu:1', machine({ adapter: null })), /WebGPU does not work here \(Failed to get a WebGPU adapter.*mesa-vulkan-drivers/);
    assert.deepEqual(parseDeviceSpec('webgpu:1', machine()), [{ kind: 'webgpu', count: 1 }]);
  });

  test('with discovery, rejects cuda without the CUDA provider and says how to install it', () => {
    assert.ok(CUDA_INSTALL_HINT.includes('ONNXRUNTIME_NODE_INSTALL=cuda12 npm install onnxruntime-node'));
    userError(() => parseDeviceSpec('cuda:1', machine()), /CUDA provider is not installed; install it with ONNXRUNTIME_NODE_INSTALL=cuda12 npm install onnxruntime-node/);
  });
});

describe('planDevices', () => {
  test('splits the cores between cpu workers so they do not oversubscribe', () => {
    const d = planDevices(parseDeviceSpec('cpu:2'), machine({ cores: 8 }));
    assert.deepEqual(d.map((x) => [x.id, x.intraOpNumThreads, x.sharesPhysicalUnit]), [
      ['cpu:0', 4, false],
      ['cpu:1', 4, false],
    ]);
    assert.equal(d[0].label, 'cpu:0 (4 threads)');
    assert.equal(d[0].physicalUnit, 'host-cpu');
    const three = planDevices(parseDeviceSpec('cpu:3'), machine({ cores: 8 }));
    assert.deepEqual(three.map((x) => x.intraOpNumThreads), [2, 2, 2]);
  });

  test('gives one thread each and labels workers as sharing when there are more workers than cores', () => {
    const d = planDevices(parseDeviceSpec('cpu:3'), machine({ cores: 2 }));
    for (const x of d) {
      assert.equal(x.intraOpNumThreads, 1);
      assert.equal(x.sharesPhysicalUnit, true);
      assert.match(x.label, /oversubscribed — 3 workers share 2 cores/);
    }
    assert.deepEqual(d[0].sharedWith, ['cpu:1', 'cpu:2']);
  });

  test('labels a lavapipe device as software sharing the host CPU, and leaves it a core', () => {
    const d = planDevices(parseDeviceSpec('cpu:1,webgpu:1'), machine({ cores: 2 }));
    const [cpu, gpu] = d;
    assert.equal(gpu.id, 'webgpu:0');
    assert.equal(gpu.label, 'webgpu:0 (llvmpipe, software — shares the host CPU)');
    assert.equal(gpu.physicalUnit, 'gpu:0 (llvmpipe)');
    assert.equal(gpu.software, true);
    assert.equal(gpu.sharesPhysicalUnit, true);
    assert.deepEqual(gpu.sharedWith, ['cpu:0']);
    assert.equal(cpu.intraOpNumThreads, 1);
    assert.equal(cpu.sharesPhysicalUnit, true);
    assert.match(cpu.label, /^cpu:0 \(1 thread; shares the host CPU with software GPU webgpu:0\)$/);
    const wide = planDevices(parseDeviceSpec('cpu:2,webgpu:1'), machine({ cores: 9 }));
    assert.deepEqual(wide.filter((x) => x.kind === 'cpu').map((x) => x.intraOpNumThreads), [4, 4]);
  });

  test('labels a lone software GPU as sharing the host CPU all the same', () => {
    const [gpu] = planDevices(parseDeviceSpec('webgpu:1'), machine());
    assert.equal(gpu.sharesPhysicalUnit, true);
    assert.deepEqual(gpu.sharedWith, []);
    assert.match(gpu.label, /software — shares the host CPU/);
  });

  test('refuses more than one webgpu device (two sessions on one adapter crash the provider), before anything starts', () => {
    for (const adapter of [RTX, undefined]) {
      assert.throws(() => planDevices(parseDeviceSpec('webgpu:2'), machine(adapter ? { adapter } : {})), (e: unknown) => e instanceof UserError && /webgpu:2 .*cannot run two sessions on one adapter.*use webgpu:1/.test(e.message));
      assert.throws(() => parseDeviceSpec('cpu:1,webgpu:3', machine(adapter ? { adapter } : {})), /webgpu:3 asks for 3 devices/);
    }
    const [one] = planDevices(parseDeviceSpec('webgpu:1'), machine({ adapter: RTX }));
    assert.equal(one.sharesPhysicalUnit, false);
    assert.equal(one.label, 'webgpu:0 (NVIDIA GeForce RTX 4090)');
  });

  test('a hardware GPU leaves every core to the cpu workers', () => {
    const d = planDevices(parseDeviceSpec('cpu:2,webgpu:1'), machine({ cores: 8, adapter: RTX }));
    assert.deepEqual(d.filter((x) => x.kind === 'cpu').map((x) => [x.intraOpNumThreads, x.sharesPhysicalUnit]), [
      [4, false],
      [4, false],
    ]);
  });

  test('maps cuda devices onto the GPUs and labels the ones that wrap around as sharing', () => {
    const d = planDevices(parseDeviceSpec('cuda:3'), machine({ cudaProvider: true, cudaGpus: ['NVIDIA A100', 'NVIDIA A100'] }));
    assert.deepEqual(d.map((x) => [x.id, x.cudaDeviceId, x.physicalUnit, x.sharesPhysicalUnit]), [
      ['cuda:0', 0, 'gpu:0 (NVIDIA A100)', true],
      ['cuda:1', 1, 'gpu:1 (NVIDIA A100)', false],
      ['cuda:2', 0, 'gpu:0 (NVIDIA A100)', true],
    ]);
    assert.equal(d[2].label, 'cuda:2 (NVIDIA A100, CUDA device 0, shares gpu:0 with cuda:0)');
  });

  test('puts a WebGPU adapter that is a CUDA GPU on the same physical unit', () => {
    const d = planDevices(parseDeviceSpec('webgpu:1,cuda:1'), machine({ adapter: RTX, cudaProvider: true, cudaGpus: [RTX.name] }));
    const gpu = d.find((x) => x.kind === 'webgpu')!;
    const cuda = d.find((x) => x.kind === 'cuda')!;
    assert.equal(gpu.physicalUnit, cuda.physicalUnit);
    assert.deepEqual(gpu.sharedWith, ['cuda:0']);
    assert.deepEqual(cuda.sharedWith, ['webgpu:0']);
  });

  test('refuses webgpu and cuda when they are not available', () => {
    userError(() => planDevices([{ kind: 'webgpu', count: 1 }], machine({ adapter: null })), /webgpu:1 requested but WebGPU does not work here/);
    userError(() => planDevices([{ kind: 'cuda', count: 1 }], machine()), /ONNXRUNTIME_NODE_INSTALL=cuda12/);
    userError(() => planDevices([], machine()), /no devices/);
  });
});

describe('sessionOptionsFor', () => {
  test('sets the provider, the thread counts and sequential execution', () => {
    const [cpu, gpu] = planDevices(parseDeviceSpec('cpu:1,webgpu:1'), machine({ cores: 4 }));
    const o = sessionOptionsFor(cpu);
    assert.deepEqual(o.executionProviders, [{ name: 'cpu' }]);
    assert.equal(o.intraOpNumThreads, 3);
    assert.equal(o.interOpNumThreads, 1);
    assert.equal(o.executionMode, 'sequential');
    assert.equal(o.graphOptimizationLevel, 'all');
    assert.equal(o.enableProfiling, undefined);
    assert.deepEqual(sessionOptionsFor(gpu).executionProviders, [{ name: 'webgpu' }]);
    const [cuda] = planDevices(parseDeviceSpec('cuda:1'), machine({ cudaProvider: true, cudaGpus: ['A'] }));
    assert.deepEqual(sessionOptionsFor(cuda).executionProviders, [{ name: 'cuda', deviceId: 0 }]);
  });

  test('turns on profiling with the given prefix or a unique one', () => {
    const [cpu] = planDevices(parseDeviceSpec('cpu:1'), machine());
    const a = sessionOptionsFor(cpu, { profiling: true, profilePrefix: '/tmp/x/run', graphOptimizationLevel: 'disabled' });
    assert.equal(a.enableProfiling, true);
    assert.equal(a.profileFilePrefix, '/tmp/x/run');
    assert.equal(a.graphOptimizationLevel, 'disabled');
    const b = sessionOptionsFor(cpu, { profiling: true });
    assert.match(b.profileFilePrefix ?? '', /parallax-ort-cpu0-\d+-/);
  });
});

describe('adapter identification', () => {
  const SUMMARY = `==========
VULKANINFO
==========

Vulkan Instance Version: 1.3.239

Devices:
========
GPU0:
	apiVersion         = 1.3.277
	driverVersion      = 550.54.14
	vendorID           = 0x10de
	deviceID           = 0x2684
	deviceType         = PHYSICAL_DEVICE_TYPE_DISCRETE_GPU
	deviceName         = NVIDIA GeForce RTX 4090
	driverID           = DRIVER_ID_NVIDIA_PROPRIETARY
	driverName         = NVIDIA
	driverInfo         = 550.54.14
GPU1:
	apiVersion         = 1.4.305
	driverVersion      = 0.0.1
	vendorID           = 0x10005
	deviceID           = 0x0000
	deviceType         = PHYSICAL_DEVICE_TYPE_CPU
	deviceName         = llvmpipe (LLVM 15.0.6, 256 bits)
	driverID           = DRIVER_ID_MESA_LLVMPIPE
	driverName         = llvmpipe
	driverInfo         = Mesa 25.0.7-2~bpo12+1 (LLVM 15.0.6)
`;

  test('parses vulkaninfo --summary and tells software adapters apart', () => {
    const devs = parseVulkanSummary(SUMMARY);
    assert.deepEqual(
      devs.map((d) => [d.shortName, d.vendor, d.type, d.software]),
      [
        ['NVIDIA GeForce RTX 4090', 'NVIDIA', 'discrete', false],
        ['llvmpipe', 'Mesa', 'cpu', true],
      ],
    );
    assert.equal(devs[1].driver, 'llvmpipe — Mesa 25.0.7-2~bpo12+1 (LLVM 15.0.6)');
  });

  test('prefers a discrete GPU over a software one, as Dawn does for high performance', () => {
    const devs = parseVulkanSummary(SUMMARY);
    assert.equal(pickAdapter(devs)?.shortName, 'NVIDIA GeForce RTX 4090');
    assert.equal(pickAdapter(devs.slice(1))?.shortName, 'llvmpipe');
    assert.equal(pickAdapter([]), null);
    assert.deepEqual(parseVulkanSummary('Cannot create Vulkan instance.'), []);
  });
});
