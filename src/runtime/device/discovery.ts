/**
 * Device discovery and planning: what the machine really has, and how a `--devices` spec
 * such as `cpu:2,webgpu:1` maps onto it.
 *
 * Three steps, kept apart so that the pure parts can be tested without ONNX Runtime:
 *   parseDeviceSpec   string → requests (pure; syntax errors are UserErrors)
 *   discoverDevices   host, ONNX Runtime and accelerators (loads onnxruntime-node and runs a
 *                     WebGPU probe in a child process; call it in the runner, never in the
 *                     VS Code extension host)
 *   planDevices       requests + discovery → DeviceInfo[] (pure; availability errors)
 * and {@link sessionOptionsFor} turns a planned device into ONNX Runtime session options.
 *
 * Honest labels are a product requirement: a device that shares its physical unit with
 * another (virtual WebGPU devices on one adapter, more CPU workers than cores, a software
 * GPU that computes on the host CPU) says so in `sharesPhysicalUnit` and in its label.
 *
 * WebGPU without a GPU (what was checked here, Debian 12 + Mesa 25 lavapipe, ORT 1.30):
 * - `executionProviders: ['webgpu']` runs on Dawn's Vulkan backend on `llvmpipe`. Session
 *   creation takes ~60–90 ms, the first run 10–40 ms (shader compilation; Mesa caches
 *   shaders on disk, so a cold cache is slower), later runs of a tiny MatMul ~0.5–1 ms.
 *   Dawn prints two `maxDynamic…BuffersPerPipelineLayout artificially reduced` warnings on
 *   stderr; they are harmless.
 * - Without a Vulkan driver, session creation throws "Failed to get a WebGPU adapter: No
 *   supported adapters"; the probe reports that line.
 * - ORT does not name the adapter, not even at log severity 0 (verbose), and onnxruntime-node
 *   exposes no adapter info, so the adapter is identified with `vulkaninfo --summary`
 *   (package vulkan-tools): deviceType PHYSICAL_DEVICE_TYPE_CPU / driver llvmpipe marks a
 *   software rasterizer. Without vulkaninfo the adapter is reported as unidentified.
 */
import { execFile } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import * as os from 'node:os';
import { dirname, join } from 'node:path';
import type { InferenceSession } from 'onnxruntime-node';
import { onnx } from 'onnx-proto';
import { UserError } from '../../common/errors';
import { readOrtProfile, type OrtProfile } from '../../profiler/ort-profile';

// ---------------------------------------------------------------------------------------
// Device specs

/** Device kinds Parallax can run on. */
export type DeviceKind = 'cpu' | 'webgpu' | 'cuda';

/** All kinds, in the order devices are numbered and listed. */
export const DEVICE_KINDS: readonly DeviceKind[] = ['cpu', 'webgpu', 'cuda'];

/** One entry of a device spec: `count` devices of one kind. */
export interface DeviceRequest {
  kind: DeviceKind;
  count: number;
}

/** Upper bound on devices of one kind; more is a typo rather than a plan. */
export const MAX_DEVICES_PER_KIND = 64;

/** The CUDA provider's install command, quoted in every message about missing CUDA. */
export const CUDA_INSTALL_HINT = 'ONNXRUNTIME_NODE_INSTALL=cuda12 npm install onnxruntime-node';

/**
 * Parses a device spec: comma-separated `kind:count` entries, e.g. `cpu:2`,
 * `cpu:1,webgpu:1`, `cuda:2`. The number is a count, not an index: `cuda:1` is one CUDA
 * device. WebGPU takes one device (the machine's adapter): ONNX Runtime's WebGPU provider
 * cannot run two sessions on one adapter in one process. A bare kind (`cpu`) means one device.
 *
 * With `discovered`, also checks that every requested kind is available (the same check
 * {@link planDevices} makes), so a CLI can fail before doing any work.
 *
 * @throws UserError for an empty spec, an unknown kind, a count that is not a positive
 *   integer, a kind given twice, zero devices in total, or (with `discovered`) WebGPU
 *   without a working adapter, more than one WebGPU device, or CUDA without the CUDA provider.
 */
export function parseDeviceSpec(spec: string, discovered?: DiscoveredDevices): DeviceRequest[] {
  const text = spec.trim();
  if (text === '') {
    throw new UserError('--devices is empty: give a device spec such as cpu:2 or cpu:1,webgpu:1.');
  }
  const out: DeviceRequest[] = [];
  for (const raw of text.split(',')) {
    const entry = raw.trim();
    const m = /^([A-Za-z]+)(?::\s*(.*))?$/.exec(entry);
    if (!m) {
      throw new UserError(`device spec "${spec}": "${entry}" is not of the form kind:count (e.g. cpu:2, webgpu:1).`);
    }
    const kind = m[1]!.toLowerCase();
    if (!(DEVICE_KINDS as readonly string[]).includes(kind)) {
      throw new UserError(
        `device spec "${spec}": unknown device kind "${m[1]}"; use ${DEVICE_KINDS.join(', ')} (e.g. cpu:2,webgpu:1).`,
      );
    }
    const countText = m[2]?.trim() ?? '1';
    if (!/^\d+$/.test(countText)) {
      throw new UserError(`device spec "${spec}": count "${countText}" for ${kind} is not a whole number; write e.g. ${kind}:2.`);
    }
    const count = Number(countText);
    if (count > MAX_DEVICES_PER_KIND) {
      throw new UserError(`device spec "${spec}": ${kind}:${count} asks for more than ${MAX_DEVICES_PER_KIND} devices of one kind.`);
    }
    if (out.some((r) => r.kind === kind)) {
      throw new UserError(`device spec "${spec}": ${kind} appears twice; give each kind once with its total count.`);
    }
    out.push({ kind: kind as DeviceKind, count });
  }
  const total = out.reduce((s, r) => s + r.count, 0);
  if (total === 0) {
    // `cuda:0` reads like "CUDA device 0" to many users; say what the number means.
    throw new UserError(
      `device spec "${spec}" asks for zero devices: the number after the colon is a count, not an index (cuda:1 = one CUDA device).`,
    );
  }
  const nonEmpty = out.filter((r) => r.count > 0);
  if (discovered) checkAvailable(nonEmpty, discovered);
  return nonEmpty;
}

/** Formats requests back into a spec string (`cpu:2,webgpu:1`). */
export function formatDeviceSpec(requests: readonly DeviceRequest[]): string {
  return requests.map((r) => `${r.kind}:${r.count}`).join(',');
}

// ---------------------------------------------------------------------------------------
// Discovery

/** The machine the runner is on. */
export interface HostInfo {
  /** CPU model string from the OS (`os.cpus()[0].model`), `unknown CPU` when empty. */
  cpuModel: string;
  /** Logical cores this process may use (`os.availableParallelism()`, honours affinity). */
  logicalCores: number;
  /** Total memory in bytes. */
  memoryBytes: number;
  /** Human OS description, e.g. `Debian GNU/Linux 12 (bookworm), Linux 6.1.0 x64`. */
  os: string;
  platform: NodeJS.Platform;
  arch: string;
}

/** ONNX Runtime as loaded by this process. */
export interface OrtInfo {
  /** `env.versions.node` (the binding), e.g. `1.30.0`. */
  version: string;
  /** `env.versions` as reported (common, node, …). */
  versions: Record<string, string>;
  /** `listSupportedBackends()`: `bundled` false means the provider's binaries are not shipped. */
  backends: { name: string; bundled: boolean }[];
}

/** Kind of GPU adapter, after Vulkan's VkPhysicalDeviceType. */
export type AdapterType = 'discrete' | 'integrated' | 'virtual' | 'cpu' | 'unknown';

/** A GPU adapter as identified outside ONNX Runtime. */
export interface GpuAdapter {
  /** Device name, e.g. `llvmpipe (LLVM 15.0.6, 256 bits)` or `NVIDIA GeForce RTX 4090`. */
  name: string;
  /** Short name for labels: `llvmpipe`, `NVIDIA GeForce RTX 4090`. */
  shortName: string;
  /** Vendor, from the PCI vendor id where known (`Mesa` for Mesa's software id 0x10005). */
  vendor: string;
  type: AdapterType;
  /** Driver name and info, e.g. `llvmpipe — Mesa 25.0.7-2~bpo12+1 (LLVM 15.0.6)`. */
  driver: string;
  /** True for software rasterizers (llvmpipe/lavapipe, SwiftShader, WARP): they compute on the host CPU. */
  software: boolean;
}

/** Result of the WebGPU probe. */
export interface WebGpuProbe {
  /** True when a tiny MatMul ran on ORT's WebGPU provider in a child process and matched the reference. */
  available: boolean;
  /** Why it is not available (one line), when it is not. */
  reason?: string;
  /**
   * The adapter the WebGPU provider most likely runs on, or null when it cannot be told.
   * ORT's logs do not name the adapter (checked at verbose level with 1.30), so this comes
   * from `vulkaninfo --summary` on Linux: the device Dawn prefers under ORT's default
   * high-performance preference (discrete > integrated > virtual > cpu).
   */
  adapter: GpuAdapter | null;
  /** How the adapter was identified. */
  adapterSource: 'vulkaninfo' | 'none';
  /** Every Vulkan device `vulkaninfo` listed (empty when it is absent or failed). */
  vulkanDevices: GpuAdapter[];
  /** Timings in the child, in ms: session creation, first run (includes shader compilation), second run. */
  timings?: { sessionCreateMs: number; firstRunMs: number; secondRunMs: number };
  /** Largest |webgpu − reference| over the probe's output. */
  maxAbsError?: number;
  /** Providers ORT's own profile reported for the probe's nodes (all `WebGpuExecutionProvider` when it really ran there). */
  nodeProviders?: string[];
  /** Wall time of the whole probe in ms (child start to exit). */
  probeMs: number;
}

/** What CUDA the machine has for ONNX Runtime. */
export interface CudaInfo {
  /** True when ORT's CUDA provider library is installed next to the binding. */
  providerInstalled: boolean;
  /** GPUs from `nvidia-smi -L` (empty when it is absent). */
  gpus: { index: number; name: string }[];
}

/** One device kind's availability, for listings (`parallax devices`). */
export interface KindAvailability {
  kind: DeviceKind;
  available: boolean;
  /** ORT execution provider name. */
  provider: string;
  /** One line: what backs it, or why it is unavailable and what to do. */
  detail: string;
}

/** Everything {@link discoverDevices} found. */
export interface DiscoveredDevices {
  host: HostInfo;
  ort: OrtInfo;
  /** Same as `ort.version`, under the name the trace's meta uses. */
  onnxruntimeVersion: string;
  webgpu: WebGpuProbe;
  cuda: CudaInfo;
  /** A summary per kind, in {@link DEVICE_KINDS} order. */
  kinds: KindAvailability[];
}

/** Options for {@link discoverDevices}. */
export interface DiscoverOptions {
  /** Run the WebGPU probe (default true). When false, WebGPU is reported unavailable with that reason. */
  probeWebGpu?: boolean;
  /** Probe time limit in ms (default 20 000): a hung GPU driver must not hang discovery. */
  probeTimeoutMs?: number;
}

/** Host description; cheap, no ONNX Runtime involved. */
export function hostInfo(): HostInfo {
  const cpus = os.cpus();
  let osName = `${os.type()} ${os.release()}`;
  if (process.platform === 'linux') {
    try {
      const rel = readFileSync('/etc/os-release', 'utf8');
      const pretty = /^PRETTY_NAME="?([^"\n]*)"?$/m.exec(rel)?.[1];
      if (pretty) osName = `${pretty}, Linux ${os.release()}`;
    } catch {
      // No os-release (some containers): the kernel name and release are enough.
    }
  }
  return {
    cpuModel: cpus[0]?.model.trim() || 'unknown CPU',
    logicalCores: os.availableParallelism(),
    memoryBytes: os.totalmem(),
    os: `${osName} ${os.arch()}`,
    platform: process.platform,
    arch: os.arch(),
  };
}

type OrtModule = typeof import('onnxruntime-node');

/**
 * Loads onnxruntime-node on first use. Importing it at the top of this module would load the
 * native addon into any process that merely parses a device spec, the VS Code extension
 * host included, which must never load it (a native crash there takes every extension down).
 */
function loadOrt(): OrtModule {
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  return require('onnxruntime-node') as OrtModule;
}

/** ONNX Runtime version and backends, loading onnxruntime-node into this process. */
export function ortInfo(): OrtInfo {
  const ort = loadOrt();
  const versions: Record<string, string> = {};
  for (const [k, v] of Object.entries(ort.env.versions)) if (typeof v === 'string') versions[k] = v;
  return {
    version: versions['node'] ?? versions['common'] ?? 'unknown',
    versions,
    backends: ort.listSupportedBackends().map((b) => ({ name: b.name, bundled: b.bundled })),
  };
}

let discoveryCache: Promise<DiscoveredDevices> | null = null;
let probeCache: Promise<WebGpuProbe> | null = null;

/**
 * Discovers the host, ONNX Runtime, whether WebGPU really works (probe in a child process)
 * and CUDA. Cached per process: the probe costs about a second and the answer does not
 * change while the process lives. Must not run in the VS Code extension host (it loads the
 * native addon); the runner or the CLI calls it.
 */
export function discoverDevices(options: DiscoverOptions = {}): Promise<DiscoveredDevices> {
  const probe = options.probeWebGpu ?? true;
  if (probe && discoveryCache) return discoveryCache;
  const run = (async (): Promise<DiscoveredDevices> => {
    const host = hostInfo();
    const ort = ortInfo();
    const [webgpu, cuda] = await Promise.all([
      probe
        ? probeWebGpu({ timeoutMs: options.probeTimeoutMs ?? 20_000 })
        : Promise.resolve<WebGpuProbe>({
            available: false,
            reason: 'WebGPU probe skipped',
            adapter: null,
            adapterSource: 'none',
            vulkanDevices: [],
            probeMs: 0,
          }),
      detectCuda(ort),
    ]);
    return { host, ort, onnxruntimeVersion: ort.version, webgpu, cuda, kinds: summarizeKinds(host, webgpu, cuda) };
  })();
  if (probe) {
    discoveryCache = run;
    // A failed discovery (e.g. onnxruntime-node missing) should be retried next time.
    run.catch(() => {
      if (discoveryCache === run) discoveryCache = null;
    });
  }
  return run;
}

function summarizeKinds(host: HostInfo, webgpu: WebGpuProbe, cuda: CudaInfo): KindAvailability[] {
  const a = webgpu.adapter;
  const webgpuDetail = webgpu.available
    ? `${a ? a.name : 'adapter not identified'}${a?.software ? ', software — runs on the host CPU' : ''}` +
      (webgpu.timings ? `; probe first run ${webgpu.timings.firstRunMs.toFixed(0)} ms, next ${webgpu.timings.secondRunMs.toFixed(1)} ms` : '')
    : (webgpu.reason ?? 'not available');
  const cudaDetail = !cuda.providerInstalled
    ? `CUDA provider not installed (${CUDA_INSTALL_HINT})`
    : cuda.gpus.length > 0
      ? cuda.gpus.map((g) => `${g.index}: ${g.name}`).join(', ')
      : 'provider installed; no GPU listed by nvidia-smi';
  return [
    { kind: 'cpu', available: true, provider: 'cpu', detail: `${host.cpuModel}, ${host.logicalCores} logical cores` },
    { kind: 'webgpu', available: webgpu.available, provider: 'webgpu', detail: webgpuDetail },
    { kind: 'cuda', available: cuda.providerInstalled, provider: 'cuda', detail: cudaDetail },
  ];
}

/** Forgets cached discovery and probe results (tests, or after the user installs a driver). */
export function resetDiscoveryCache(): void {
  discoveryCache = null;
  probeCache = null;
}

// --- WebGPU probe ---------------------------------------------------------------------

/** Probe model: y = x·W + b with x [2,4], W [4,3], b [3]; small enough to check in JS. */
const PROBE = {
  x: [0.5, -1, 2, 0.25, -0.75, 1.5, 0, 1],
  w: [1, 0.5, -1, 2, 0, 0.25, -0.5, 1, 1.5, 0.75, -0.25, 0.5],
  b: [0.1, -0.2, 0.3],
  rows: 2,
  k: 4,
  n: 3,
};

function probeModelBytes(): Uint8Array {
  const f32 = (v: number[]): Uint8Array => new Uint8Array(Float32Array.from(v).buffer);
  const FLOAT = onnx.TensorProto.DataType.FLOAT;
  const info = (name: string, dims: number[]): onnx.IValueInfoProto => ({
    name,
    type: { tensorType: { elemType: FLOAT, shape: { dim: dims.map((d) => ({ dimValue: d })) } } },
  });
  const model = onnx.ModelProto.create({
    irVersion: 8,
    producerName: 'parallax-probe',
    opsetImport: [{ domain: '', version: 17 }],
    graph: {
      name: 'probe',
      node: [
        { name: 'probe_matmul', opType: 'MatMul', input: ['x', 'W'], output: ['xw'] },
        { name: 'probe_add', opType: 'Add', input: ['xw', 'b'], output: ['y'] },
      ],
      initializer: [
        { name: 'W', dims: [PROBE.k, PROBE.n], dataType: FLOAT, rawData: f32(PROBE.w) },
        { name: 'b', dims: [PROBE.n], dataType: FLOAT, rawData: f32(PROBE.b) },
      ],
      input: [info('x', [PROBE.rows, PROBE.k])],
      output: [info('y', [PROBE.rows, PROBE.n])],
    },
  });
  return onnx.ModelProto.encode(model).finish();
}

function probeReference(): number[] {
  const y: number[] = [];
  for (let r = 0; r < PROBE.rows; r++) {
    for (let j = 0; j < PROBE.n; j++) {
      let acc = PROBE.b[j];
      for (let i = 0; i < PROBE.k; i++) acc += PROBE.x[r * PROBE.k + i] * PROBE.w[i * PROBE.n + j];
      y.push(acc);
    }
  }
  return y;
}

/**
 * The probe child: plain CommonJS passed with `-e`, so it works the same from tsx, from the
 * esbuild bundle and from Electron-as-Node, with no file of its own to locate. It prints one
 * marked JSON line; native crashes and hangs stay in the child.
 */
const PROBE_CHILD = String.raw`
const [ortPath, modelPath, prefix, xJson, rows, k] = process.argv.slice(1);
const out = { ok: false };
(async () => {
  try {
    const ort = require(ortPath);
    const t0 = performance.now();
    const s = await ort.InferenceSession.create(modelPath, {
      executionProviders: ['webgpu'], enableProfiling: true, profileFilePrefix: prefix, logSeverityLevel: 3,
    });
    const t1 = performance.now();
    const x = new ort.Tensor('float32', Float32Array.from(JSON.parse(xJson)), [Number(rows), Number(k)]);
    let r = await s.run({ x });
    const t2 = performance.now();
    r = await s.run({ x });
    const t3 = performance.now();
    out.output = Array.from(r.y.data);
    out.timings = { sessionCreateMs: t1 - t0, firstRunMs: t2 - t1, secondRunMs: t3 - t2 };
    s.endProfiling();
    await s.release();
    out.ok = true;
  } catch (e) {
    out.error = String((e && e.message) || e);
  }
  process.stdout.write('\nPARALLAX_PROBE ' + JSON.stringify(out) + '\n');
  // Dawn may keep threads alive after release; the answer is out, so leave now.
  process.exit(0);
})();
`;

interface ProbeChildResult {
  ok: boolean;
  error?: string;
  output?: number[];
  timings?: { sessionCreateMs: number; firstRunMs: number; secondRunMs: number };
}

/** Shortens ORT's error text (which quotes its source path and a lambda) to its message. */
function shortOrtError(message: string): string {
  const first = message.split('\n').find((l) => l.trim() !== '') ?? message;
  const m = / was false\. (.*)$/.exec(first) ?? /\] (.*)$/.exec(first);
  return (m?.[1] ?? first).trim().slice(0, 300);
}

function runFile(cmd: string, args: string[], timeoutMs: number, env?: NodeJS.ProcessEnv): Promise<{ stdout: string; stderr: string; error: (Error & { code?: unknown; killed?: boolean; signal?: string | null }) | null }> {
  return new Promise((resolve) => {
    execFile(
      cmd,
      args,
      { timeout: timeoutMs, killSignal: 'SIGKILL', maxBuffer: 16 << 20, encoding: 'utf8', env: env ?? process.env },
      (error, stdout, stderr) => resolve({ stdout, stderr, error }),
    );
  });
}

/**
 * Checks that ORT's WebGPU provider really runs, by running a tiny MatMul+Add with
 * `executionProviders: ['webgpu']` in a child process (a native crash or a hung driver
 * must not take the caller down; the child is killed after `timeoutMs`). The result counts
 * as available only when the output matches a JS reference and ORT's own profile shows
 * every node on `WebGpuExecutionProvider` (ORT silently falls back to CPU for nodes a
 * provider cannot take). The adapter is identified with `vulkaninfo --summary` where present.
 * Cached per process.
 */
export function probeWebGpu(options: ProbeOptions = {}): Promise<WebGpuProbe> {
  const cache = options.cache ?? options.env === undefined;
  if (cache && probeCache) return probeCache;
  const p = runWebGpuProbe(options.timeoutMs ?? 20_000, options.env ?? process.env);
  if (cache) probeCache = p;
  return p;
}

/** Options for {@link probeWebGpu}. */
export interface ProbeOptions {
  /** Time limit in ms (default 20 000); the child is killed after it. */
  timeoutMs?: number;
  /** Environment for the child and for vulkaninfo (e.g. VK_ICD_FILENAMES); default this process's. */
  env?: NodeJS.ProcessEnv;
  /** Use and fill the per-process cache (default true unless `env` is given). */
  cache?: boolean;
}

async function runWebGpuProbe(timeoutMs: number, env: NodeJS.ProcessEnv): Promise<WebGpuProbe> {
  const t0 = performance.now();
  const [vk, child] = await Promise.all([vulkanDevices(env), runProbeChild(timeoutMs, env)]);
  const adapter = pickAdapter(vk);
  const base = {
    adapter,
    adapterSource: adapter ? ('vulkaninfo' as const) : ('none' as const),
    vulkanDevices: vk,
  };
  const done = (p: Omit<WebGpuProbe, 'probeMs' | keyof typeof base>): WebGpuProbe => ({
    ...p,
    ...base,
    probeMs: performance.now() - t0,
  });
  if ('reason' in child) return done({ available: false, reason: child.reason });
  const { result, profile } = child;
  const ref = probeReference();
  const out = result.output ?? [];
  let maxAbsError = out.length === ref.length ? 0 : Infinity;
  for (let i = 0; i < Math.min(out.length, ref.length); i++) maxAbsError = Math.max(maxAbsError, Math.abs(out[i] - ref[i]));
  const nodeProviders = profile ? [...new Set(profile.nodes.map((n) => n.provider))] : [];
  const timings = result.timings!;
  if (!(maxAbsError <= 1e-4)) {
    return done({ available: false, reason: `WebGPU probe output differs from the reference (max abs error ${maxAbsError})`, timings, maxAbsError, nodeProviders });
  }
  if (profile && (nodeProviders.length === 0 || nodeProviders.some((p) => p !== 'WebGpuExecutionProvider'))) {
    return done({
      available: false,
      reason: `ONNX Runtime ran the WebGPU probe on ${nodeProviders.join(', ') || 'no recorded provider'}, not on WebGPU`,
      timings,
      maxAbsError,
      nodeProviders,
    });
  }
  return done({ available: true, timings, maxAbsError, nodeProviders });
}

async function runProbeChild(timeoutMs: number, baseEnv: NodeJS.ProcessEnv): Promise<{ reason: string } | { result: ProbeChildResult; profile: OrtProfile | null }> {
  const dir = mkdtempSync(join(os.tmpdir(), 'parallax-webgpu-probe-'));
  try {
    const modelPath = join(dir, 'probe.onnx');
    writeFileSync(modelPath, probeModelBytes());
    let ortPath: string;
    try {
      ortPath = require.resolve('onnxruntime-node');
    } catch {
      return { reason: 'onnxruntime-node is not installed' };
    }
    const args = ['-e', PROBE_CHILD, ortPath, modelPath, join(dir, 'ort'), JSON.stringify(PROBE.x), String(PROBE.rows), String(PROBE.k)];
    // In Electron (the desktop extension host) process.execPath is Electron; this makes it act as Node.
    const env = { ...baseEnv, ELECTRON_RUN_AS_NODE: '1' };
    const r = await runFile(process.execPath, args, timeoutMs, env);
    const line = r.stdout.split('\n').find((l) => l.startsWith('PARALLAX_PROBE '));
    if (!line) {
      if (r.error?.killed || r.error?.signal === 'SIGKILL') {
        return { reason: `WebGPU probe did not finish within ${Math.round(timeoutMs / 1000)} s (GPU driver hung?)` };
      }
      const why = r.error?.signal ? `crashed with ${r.error.signal}` : `exited with status ${String(r.error?.code ?? 0)}`;
      const lastErr = r.stderr.split('\n').filter((l) => /error/i.test(l)).pop();
      return { reason: `WebGPU probe ${why}${lastErr ? `: ${shortOrtError(lastErr)}` : ''}` };
    }
    const result = JSON.parse(line.slice('PARALLAX_PROBE '.length)) as ProbeChildResult;
    if (!result.ok) return { reason: `ONNX Runtime's WebGPU provider failed: ${shortOrtError(result.error ?? 'unknown error')}` };
    // endProfiling() returns nothing in onnxruntime-node 1.30, so find ORT's file by prefix.
    const file = readdirSync(dir).find((f) => f.startsWith('ort_') && f.endsWith('.json'));
    const profile = file ? await readOrtProfile(join(dir, file)) : null;
    return { result, profile };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

// --- Adapter identification -------------------------------------------------------------

const PCI_VENDORS: Record<number, string> = {
  0x10de: 'NVIDIA',
  0x1002: 'AMD',
  0x1022: 'AMD',
  0x8086: 'Intel',
  0x13b5: 'ARM',
  0x5143: 'Qualcomm',
  0x106b: 'Apple',
  0x1414: 'Microsoft',
  // Vulkan's VK_VENDOR_ID_MESA: Mesa's software drivers (llvmpipe/lavapipe) report it.
  0x10005: 'Mesa',
  0x1ae0: 'Google',
};

const SOFTWARE_NAMES = /llvmpipe|lavapipe|softpipe|swiftshader|microsoft basic render|\bwarp\b/i;

/**
 * Parses `vulkaninfo --summary` (its `Devices:` section of `GPUn:` blocks with
 * `key = value` lines). Exported for tests.
 */
export function parseVulkanSummary(text: string): GpuAdapter[] {
  const out: GpuAdapter[] = [];
  const devicesAt = text.indexOf('\nDevices:');
  if (devicesAt < 0) return out;
  const blocks = text.slice(devicesAt).split(/\n(?=GPU\d+:)/).slice(1);
  for (const block of blocks) {
    const kv: Record<string, string> = {};
    for (const line of block.split('\n')) {
      const m = /^\s+(\w+)\s*=\s*(.*)$/.exec(line);
      if (m) kv[m[1]!] = m[2]!.trim();
    }
    const name = kv['deviceName'] ?? 'unknown adapter';
    const rawType = kv['deviceType'] ?? '';
    const type: AdapterType = /DISCRETE/.test(rawType)
      ? 'discrete'
      : /INTEGRATED/.test(rawType)
        ? 'integrated'
        : /VIRTUAL/.test(rawType)
          ? 'virtual'
          : /CPU/.test(rawType)
            ? 'cpu'
            : 'unknown';
    const vendorId = kv['vendorID'] ? Number(kv['vendorID']) : NaN;
    const driverName = kv['driverName'] ?? '';
    const driverInfo = kv['driverInfo'] ?? '';
    out.push({
      name,
      shortName: name.replace(/\s*\(.*\)\s*$/, '') || name,
      vendor: PCI_VENDORS[vendorId] ?? (Number.isFinite(vendorId) ? `0x${vendorId.toString(16)}` : 'unknown'),
      type,
      driver: [driverName, driverInfo].filter(Boolean).join(' — '),
      // VkPhysicalDeviceType CPU is the definition of a software device; the name check
      // catches drivers that misreport it.
      software: type === 'cpu' || SOFTWARE_NAMES.test(name) || SOFTWARE_NAMES.test(driverName),
    });
  }
  return out;
}

/** The adapter Dawn picks under ORT's default high-performance preference. */
export function pickAdapter(devices: readonly GpuAdapter[]): GpuAdapter | null {
  const rank: Record<AdapterType, number> = { discrete: 0, integrated: 1, virtual: 2, unknown: 3, cpu: 4 };
  let best: GpuAdapter | null = null;
  for (const d of devices) if (!best || rank[d.type] < rank[best.type]) best = d;
  return best;
}

async function vulkanDevices(env: NodeJS.ProcessEnv): Promise<GpuAdapter[]> {
  // Dawn uses Vulkan on Linux only (D3D12 on Windows, Metal on macOS), where vulkaninfo is
  // not the right witness; there the adapter stays unidentified.
  if (process.platform !== 'linux') return [];
  const r = await runFile('vulkaninfo', ['--summary'], 10_000, env);
  if (r.error && !r.stdout) return [];
  return parseVulkanSummary(r.stdout);
}

// --- CUDA --------------------------------------------------------------------------------

async function detectCuda(ort: OrtInfo): Promise<CudaInfo> {
  let providerInstalled = ort.backends.some((b) => b.name === 'cuda' && b.bundled);
  if (!providerInstalled) {
    // ONNXRUNTIME_NODE_INSTALL=cuda12 puts libonnxruntime_providers_cuda next to the binding
    // (bin/napi-v*/<platform>/<arch>/); `bundled` stays false, so look for the file.
    try {
      const bin = join(dirname(require.resolve('onnxruntime-node')), '..', 'bin');
      for (const napi of readdirSync(bin)) {
        const d = join(bin, napi, process.platform, process.arch);
        if (existsSync(d) && readdirSync(d).some((f) => /onnxruntime_providers_cuda/.test(f))) providerInstalled = true;
      }
    } catch {
      // Unusual layout: treat as not installed; the message tells the user how to install.
    }
  }
  const gpus: { index: number; name: string }[] = [];
  const r = await runFile('nvidia-smi', ['-L'], 5_000);
  for (const line of r.stdout.split('\n')) {
    const m = /^GPU (\d+): (.*?)(?: \(UUID: .*\))?$/.exec(line.trim());
    if (m) gpus.push({ index: Number(m[1]), name: m[2]! });
  }
  return { providerInstalled, gpus };
}

// ---------------------------------------------------------------------------------------
// Planning

/** One entry of ORT's `executionProviders` session option, as plain data. */
export interface ExecutionProviderSpec {
  name: DeviceKind;
  /** CUDA device id (cuda only). */
  deviceId?: number;
}

/** A planned device: one worker with its own ORT session(s). */
export interface DeviceInfo {
  /** `cpu:0`, `webgpu:1`, `cuda:0`. */
  id: string;
  kind: DeviceKind;
  /** Index within its kind. */
  index: number;
  /** ORT execution provider name (`cpu`, `webgpu`, `cuda`). */
  provider: DeviceKind;
  /** CUDA device id for the provider (cuda only). */
  cudaDeviceId?: number;
  /**
   * The `executionProviders` session option for this device, plain data so it can cross
   * to a worker thread and be recorded in a trace (see {@link sessionOptionsFor}).
   */
  executionProviders: ExecutionProviderSpec[];
  /** ORT intra-op threads for this device's sessions. */
  intraOpNumThreads: number;
  /** The hardware it runs on: `host-cpu`, `gpu:0 (llvmpipe)`, `gpu:1 (NVIDIA …)`. */
  physicalUnit: string;
  /**
   * True when this device shares its physical unit with another device of the plan, or
   * (software GPUs) computes on the host CPU that every other thread of the run uses too.
   */
  sharesPhysicalUnit: boolean;
  /** Ids of the other planned devices it shares compute with. */
  sharedWith: string[];
  /** True for a software adapter (a GPU API implemented on the CPU). */
  software: boolean;
  /** Adapter or GPU name for GPU devices. */
  adapterName?: string;
  /** Human label, honest about sharing: `cpu:1 (1 thread)`, `webgpu:0 (llvmpipe, software — shares the host CPU)`. */
  label: string;
}

function checkAvailable(requests: readonly DeviceRequest[], d: DiscoveredDevices): void {
  for (const r of requests) {
    if (r.count === 0) continue;
    if (r.kind === 'webgpu' && !d.webgpu.available) {
      throw new UserError(
        `webgpu:${r.count} requested but WebGPU does not work here (${d.webgpu.reason ?? 'no adapter'}); ` +
          'install a Vulkan driver (on Debian 12: mesa-vulkan-drivers from bookworm-backports and libvulkan1) or use cpu devices.',
      );
    }
    if (r.kind === 'webgpu' && r.count > 1) {
      // Two sessions of ONNX Runtime's WebGPU provider on one adapter in one process crash
      // it natively (double free, seen every time on Mesa's lavapipe); refused before any
      // worker starts rather than taking the runner down.
      throw new UserError(
        `webgpu:${r.count} asks for ${r.count} devices on ${d.webgpu.adapter?.shortName ?? 'the one WebGPU adapter'}, and ONNX Runtime's WebGPU provider cannot run two sessions on one adapter in one process; use webgpu:1 (e.g. --devices cpu:1,webgpu:1).`,
      );
    }
    if (r.kind === 'cuda' && !d.cuda.providerInstalled) {
      throw new UserError(
        `cuda:${r.count} requested but ONNX Runtime's CUDA provider is not installed; install it with ${CUDA_INSTALL_HINT} (needs CUDA 12 and an NVIDIA GPU) or use cpu/webgpu devices.`,
      );
    }
  }
}

/**
 * Plans devices for requests on a discovered machine.
 *
 * Threads: CPU workers split the logical cores so they do not oversubscribe:
 * `intraOpNumThreads = max(1, floor(budget / cpuWorkers))`. When the plan has a WebGPU
 * device on a software adapter, one core is taken out of the budget for it (when there
 * are at least two): lavapipe runs compute shaders on host threads, and the virtual devices
 * on one adapter submit to one queue, so reserving one core per software adapter keeps the
 * CPU workers from fighting it for every core, while on a 2-core machine `cpu:1,webgpu:1`
 * still gets one thread each. lavapipe may still start more threads (LP_NUM_THREADS,
 * default the core count), which is why such devices are always labelled as sharing the
 * host CPU. WebGPU and CUDA devices get one intra-op thread: their CPU side only schedules
 * kernels and runs the odd node the provider falls back on.
 *
 * @throws UserError for zero devices, WebGPU without a working adapter, CUDA without the
 *   CUDA provider.
 */
export function planDevices(requests: readonly DeviceRequest[], discovered: DiscoveredDevices): DeviceInfo[] {
  const count = (k: DeviceKind): number => requests.filter((r) => r.kind === k).reduce((s, r) => s + r.count, 0);
  const nCpu = count('cpu');
  const nWebGpu = count('webgpu');
  const nCuda = count('cuda');
  if (nCpu + nWebGpu + nCuda === 0) {
    throw new UserError('the device plan has no devices; ask for at least one, e.g. --devices cpu:1.');
  }
  checkAvailable(requests, discovered);

  const cores = Math.max(1, discovered.host.logicalCores);
  const adapter = discovered.webgpu.adapter;
  const softwareGpu = nWebGpu > 0 && (adapter?.software ?? false);
  const reserved = softwareGpu && cores >= 2 ? 1 : 0;
  const cpuBudget = cores - reserved;
  const ids = (k: DeviceKind, n: number): string[] => Array.from({ length: n }, (_, i) => `${k}:${i}`);
  const cpuIds = ids('cpu', nCpu);
  const webgpuIds = ids('webgpu', nWebGpu);
  const cudaIds = ids('cuda', nCuda);

  // The CUDA GPUs, if any, are numbered first so that a WebGPU adapter that is one of
  // them (same name) gets the same physical unit.
  const cudaGpus = discovered.cuda.gpus.length > 0 ? discovered.cuda.gpus : [{ index: 0, name: 'CUDA device 0' }];
  const cudaGpuOf = (i: number): { index: number; name: string } => cudaGpus[i % cudaGpus.length];
  const adapterShort = adapter?.shortName ?? 'unidentified adapter';
  const webgpuOnCuda =
    nWebGpu > 0 && nCuda > 0 && adapter && !adapter.software ? cudaGpus.find((g) => g.name === adapter.name) : undefined;
  const plan: DevicePlan = {
    cpuIds,
    webgpuIds,
    cudaIds,
    softwareGpu,
    reserved,
    cpuBudget,
    cpuThreads: nCpu > 0 ? Math.max(1, Math.floor(cpuBudget / nCpu)) : 0,
    adapterName: adapter?.name ?? adapterShort,
    adapterShort,
    cudaGpuOf,
    webgpuOnCuda,
    webgpuUnitIndex: webgpuOnCuda ? webgpuOnCuda.index : nCuda > 0 ? Math.max(...cudaGpus.map((g) => g.index)) + 1 : 0,
    cudaOnWebgpuUnit: webgpuOnCuda ? cudaIds.filter((_, i) => cudaGpuOf(i).index === webgpuOnCuda.index) : [],
  };
  return [...planCpuWorkers(plan), ...planWebGpuDevices(plan), ...planCudaDevices(plan)];
}

/** What {@link planDevices} settled before describing each device. */
interface DevicePlan {
  cpuIds: string[];
  webgpuIds: string[];
  cudaIds: string[];
  /** WebGPU devices are planned on a software adapter (on the host CPU). */
  softwareGpu: boolean;
  /** Cores left to the software GPU. */
  reserved: number;
  /** Cores for the CPU workers. */
  cpuBudget: number;
  /** Intra-op threads per CPU worker. */
  cpuThreads: number;
  adapterName: string;
  adapterShort: string;
  /** The GPU cuda:i runs on. */
  cudaGpuOf: (i: number) => { index: number; name: string };
  /** The CUDA GPU that is also the WebGPU adapter, if any. */
  webgpuOnCuda: { index: number; name: string } | undefined;
  webgpuUnitIndex: number;
  /** CUDA devices on the WebGPU adapter's GPU. */
  cudaOnWebgpuUnit: string[];
}

/** CPU workers, with the threads each gets and whom they share the host CPU with. */
function planCpuWorkers(plan: DevicePlan): DeviceInfo[] {
  const { cpuIds, webgpuIds, softwareGpu, reserved, cpuBudget, cpuThreads } = plan;
  const nCpu = cpuIds.length;
  const cpuOversubscribed = nCpu > cpuBudget;
  return cpuIds.map((id, i) => {
    const sharedWith = [
      ...(cpuOversubscribed ? cpuIds.filter((x) => x !== id) : []),
      ...(softwareGpu ? webgpuIds : []),
    ];
    const threads = `${cpuThreads} thread${cpuThreads === 1 ? '' : 's'}`;
    const notes: string[] = [];
    if (cpuOversubscribed) {
      const spare = reserved > 0 ? `, ${reserved} left to the software GPU` : '';
      notes.push(`oversubscribed — ${nCpu} workers share ${cpuBudget} core${cpuBudget === 1 ? '' : 's'}${spare}`);
    }
    if (softwareGpu) notes.push(`shares the host CPU with software GPU ${webgpuIds.join(', ')}`);
    return {
      id,
      kind: 'cpu',
      index: i,
      provider: 'cpu',
      executionProviders: [{ name: 'cpu' }],
      intraOpNumThreads: cpuThreads,
      physicalUnit: 'host-cpu',
      sharesPhysicalUnit: sharedWith.length > 0,
      sharedWith,
      software: false,
      label: `${id} (${[threads, ...notes].join('; ')})`,
    };
  });
}

/**
 * WebGPU devices: ORT's WebGPU provider in Node picks one adapter (Dawn, by power
 * preference) and offers no adapter index, so every webgpu:K is a virtual device on it.
 */
function planWebGpuDevices(plan: DevicePlan): DeviceInfo[] {
  const { cpuIds, webgpuIds, softwareGpu: software, adapterShort, cudaOnWebgpuUnit } = plan;
  const nWebGpu = webgpuIds.length;
  return webgpuIds.map((id, i) => {
    const sharedWith = [...webgpuIds.filter((x) => x !== id), ...(software ? cpuIds : []), ...cudaOnWebgpuUnit];
    const notes = [software ? `${adapterShort}, software — shares the host CPU` : adapterShort];
    if (nWebGpu > 1) notes.push(`virtual device ${i + 1} of ${nWebGpu} on one adapter`);
    if (cudaOnWebgpuUnit.length > 0) notes.push(`same GPU as ${cudaOnWebgpuUnit.join(', ')}`);
    return {
      id,
      kind: 'webgpu',
      index: i,
      provider: 'webgpu',
      executionProviders: [{ name: 'webgpu' }],
      intraOpNumThreads: 1,
      physicalUnit: `gpu:${plan.webgpuUnitIndex} (${plan.webgpuOnCuda?.name ?? adapterShort})`,
      // A software adapter is always a virtual device on the host CPU, which the runner's
      // own threads use too, even when no CPU worker is planned.
      sharesPhysicalUnit: software || sharedWith.length > 0,
      sharedWith,
      software,
      adapterName: plan.adapterName,
      label: `${id} (${notes.join('; ')})`,
    };
  });
}

/** CUDA devices: cuda:K on fewer GPUs wraps around, and the devices on one GPU share it. */
function planCudaDevices(plan: DevicePlan): DeviceInfo[] {
  const { cudaIds, webgpuIds, cudaGpuOf } = plan;
  return cudaIds.map((id, i) => {
    const gpu = cudaGpuOf(i);
    const sharedWith = [
      ...cudaIds.filter((x, j) => x !== id && cudaGpuOf(j).index === gpu.index),
      ...(plan.webgpuOnCuda?.index === gpu.index ? webgpuIds : []),
    ];
    const notes = [gpu.name, `CUDA device ${gpu.index}`];
    if (sharedWith.length > 0) notes.push(`shares gpu:${gpu.index} with ${sharedWith.join(', ')}`);
    return {
      id,
      kind: 'cuda',
      index: i,
      provider: 'cuda',
      cudaDeviceId: gpu.index,
      executionProviders: [{ name: 'cuda', deviceId: gpu.index }],
      intraOpNumThreads: 1,
      physicalUnit: `gpu:${gpu.index} (${gpu.name})`,
      sharesPhysicalUnit: sharedWith.length > 0,
      sharedWith,
      software: false,
      adapterName: gpu.name,
      label: `${id} (${notes.join(', ')})`,
    };
  });
}

// ---------------------------------------------------------------------------------------
// Session options

/** Options for {@link sessionOptionsFor}. */
export interface SessionOptionsRequest {
  /** Turn on ORT's profiler (per-node events; see src/profiler/ort-profile.ts). */
  profiling?: boolean;
  /**
   * Profile file prefix (a path without extension). ORT appends `_<date>_<time>_<ms>.json`.
   * Defaults to a unique prefix in os.tmpdir(); read it back from `profileFilePrefix`.
   */
  profilePrefix?: string;
  /** Graph optimisation level (default `all`; `disabled` keeps the model's node names in the profile). */
  graphOptimizationLevel?: InferenceSession.SessionOptions['graphOptimizationLevel'];
}

/**
 * ONNX Runtime session options for a planned device. Sequential execution with one
 * inter-op thread: Parallax's own workers are the parallelism, and ORT's parallel executor
 * would blur per-node timings.
 */
export function sessionOptionsFor(device: DeviceInfo, options: SessionOptionsRequest = {}): InferenceSession.SessionOptions {
  const opts: InferenceSession.SessionOptions = {
    // Copies, so that ORT (or a caller) changing the options cannot change the plan.
    executionProviders: device.executionProviders.map((ep) => ({ ...ep })),
    intraOpNumThreads: device.intraOpNumThreads,
    interOpNumThreads: 1,
    executionMode: 'sequential',
    graphOptimizationLevel: options.graphOptimizationLevel ?? 'all',
  };
  if (options.profiling) {
    opts.enableProfiling = true;
    opts.profileFilePrefix =
      options.profilePrefix ??
      join(os.tmpdir(), `parallax-ort-${device.id.replace(':', '')}-${process.pid}-${Date.now().toString(36)}`);
  }
  return opts;
}
