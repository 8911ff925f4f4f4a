/**
 * Kineto (PyTorch profiler) traces for tests: the real fixtures in test/fixtures/kineto/, a reader that
 * works on their raw JSON independently of the importer (so tests can compute expected
 * values their own way), and a builder for small hand-written traces.
 */
import { existsSync, readFileSync } from 'node:fs';
import { gunzipSync } from 'node:zlib';
import { join } from 'node:path';

/** Real multi-GPU traces (HolisticTraceAnalysis test data, MIT licence beside them). */
export const KINETO_FIXTURES = join(__dirname, '..', 'fixtures', 'kineto');

/** Path of a fixture; a missing fixture fails the test with a message saying where it was looked for. */
export function kinetoFixture(name: string): string {
  const p = join(KINETO_FIXTURES, name);
  if (!existsSync(p)) {
    throw new Error(`Kineto fixture ${name} is missing: expected it at ${p} (test/fixtures/kineto/, see its README.md)`);
  }
  return p;
}

/** A raw Kineto event, as far as tests read it. */
export interface RawKinetoEvent {
  ph: string;
  cat?: string;
  name: string;
  ts: number;
  dur?: number;
  pid: number | string;
  tid: number | string;
  args?: Record<string, unknown>;
}

export interface RawKineto {
  traceEvents: RawKinetoEvent[];
  distributedInfo?: { rank: number; world_size: number };
  deviceProperties?: { id: number; name: string }[];
  baseTimeNanoseconds?: number;
}

/** Reads a fixture's JSON directly (gunzip + JSON.parse), without the importer. */
export function readRawKineto(path: string): RawKineto {
  const bytes = readFileSync(path);
  return JSON.parse((path.endsWith('.gz') ? gunzipSync(bytes) : bytes).toString('utf8')) as RawKineto;
}

const DEVICE_CATS = new Set(['kernel', 'gpu_memcpy', 'gpu_memset']);

/** GPU events (kernels, copies, fills) of a raw trace. */
export function deviceEvents(doc: RawKineto): RawKinetoEvent[] {
  return doc.traceEvents.filter((e) => e.ph === 'X' && DEVICE_CATS.has(e.cat ?? ''));
}

export const isNcclKernel = (e: RawKinetoEvent): boolean => e.cat === 'kernel' && /^nccl(Dev)?Kernel/.test(e.name);

/** `ProfilerStep#N` windows on the CPU, by N. */
export function profilerSteps(doc: RawKineto): Map<number, { ts: number; end: number }> {
  const out = new Map<number, { ts: number; end: number }>();
  for (const e of doc.traceEvents) {
    const m = e.ph === 'X' ? /^ProfilerStep#(\d+)$/.exec(e.name) : null;
    if (m) out.set(Number(m[1]), { ts: e.ts, end: e.ts + (e.dur ?? 0) });
  }
  return out;
}

/** For each GPU event, the ProfilerStep its launch (runtime call with the same correlation) fell in. */
export function launchSteps(doc: RawKineto): Map<RawKinetoEvent, number> {
  const steps = [...profilerSteps(doc).entries()];
  const launch = new Map<number, number>();
  for (const e of doc.traceEvents) if (e.cat === 'cuda_runtime' && typeof e.args?.['correlation'] === 'number') launch.set(e.args['correlation'], e.ts);
  const out = new Map<RawKinetoEvent, number>();
  for (const e of deviceEvents(doc)) {
    const t = launch.get(e.args?.['correlation'] as number) ?? e.ts;
    const hit = steps.find(([, w]) => w.ts <= t && t < w.end);
    if (hit) out.set(e, hit[0]);
  }
  return out;
}

/** Length of the union of intervals, clipped to [lo, hi]. */
export function unionLength(intervals: [number, number][], lo: number, hi: number): number {
  const xs = intervals
    .map(([a, b]): [number, number] => [Math.max(a, lo), Math.min(b, hi)])
    .filter(([a, b]) => b > a)
    .sort((p, q) => p[0] - q[0]);
  let total = 0;
  let cur: [number, number] | null = null;
  for (const [a, b] of xs) {
    if (cur && a <= cur[1]) cur[1] = Math.max(cur[1], b);
    else {
      if (cur) total += cur[1] - cur[0];
      cur = [a, b];
    }
  }
  if (cur) total += cur[1] - cur[0];
  return total;
}

// ---------------------------------------------------------------------------------------
// Hand-written traces.

export interface KernelSpec {
  name: string;
  /** Start on the GPU, µs (the builder adds the trace's clock offset). */
  ts: number;
  dur: number;
  stream?: number;
  cat?: 'kernel' | 'gpu_memcpy' | 'gpu_memset';
  /** When the CPU launched it; default 5 µs before it starts. Null: no launch event. */
  launchTs?: number | null;
  /** Thread of the launch (default 1). */
  launchTid?: number;
  args?: Record<string, unknown>;
}

export interface KinetoSpec {
  rank?: number;
  worldSize?: number;
  /** Added to every timestamp: a different clock. */
  clockUs?: number;
  baseTimeNanoseconds?: number;
  gpu?: number;
  gpuName?: string;
  /** `ProfilerStep#N` windows as [N, start, dur]. */
  steps?: [number, number, number][];
  kernels: KernelSpec[];
  /** Extra CPU events (annotations), timestamps before the clock offset. */
  cpu?: { name: string; ts: number; dur: number; tid?: number; cat?: string; args?: Record<string, unknown> }[];
}

/** Builds a small Kineto document the way PyTorch's profiler lays one out. */
export function kinetoDoc(spec: KinetoSpec): Record<string, unknown> {
  const off = spec.clockUs ?? 0;
  const gpu = spec.gpu ?? 0;
  const events: Record<string, unknown>[] = [
    { ph: 'M', name: 'process_name', pid: 100, tid: 0, ts: off, args: { name: 'python3' } },
    { ph: 'M', name: 'process_labels', pid: gpu, tid: 0, ts: off, args: { labels: `GPU ${gpu}` } },
  ];
  for (const [n, ts, dur] of spec.steps ?? []) {
    events.push({ ph: 'X', cat: 'user_annotation', name: `ProfilerStep#${n}`, pid: 100, tid: 1, ts: ts + off, dur, args: { 'External id': 1_000_000 + n } });
  }
  for (const c of spec.cpu ?? []) {
    events.push({ ph: 'X', cat: c.cat ?? 'user_annotation', name: c.name, pid: 100, tid: c.tid ?? 1, ts: c.ts + off, dur: c.dur, args: c.args ?? {} });
  }
  spec.kernels.forEach((k, i) => {
    const corr = 1000 + i;
    const stream = k.stream ?? 7;
    events.push({
      ph: 'X',
      cat: k.cat ?? 'kernel',
      name: k.name,
      pid: gpu,
      tid: stream,
      ts: k.ts + off,
      dur: k.dur,
      args: { device: gpu, stream, correlation: corr, 'External id': corr, ...k.args },
    });
    if (k.launchTs !== null) {
      events.push({
        ph: 'X',
        cat: 'cuda_runtime',
        name: 'cudaLaunchKernel',
        pid: 100,
        tid: k.launchTid ?? 1,
        ts: (k.launchTs ?? k.ts - 5) + off,
        dur: 3,
        args: { correlation: corr, 'External id': corr },
      });
    }
  });
  const doc: Record<string, unknown> = {
    schemaVersion: 1,
    deviceProperties: [{ id: gpu, name: spec.gpuName ?? 'Test GPU' }],
    traceEvents: events,
  };
  if (spec.rank !== undefined) doc['distributedInfo'] = { backend: 'nccl', rank: spec.rank, world_size: spec.worldSize ?? 2 };
  if (spec.baseTimeNanoseconds !== undefined) doc['baseTimeNanoseconds'] = spec.baseTimeNanoseconds;
  return doc;
}

/**
 * A rank of a simple synchronous job: per step, compute for `computeUs` then an all-reduce
 * that ends at the same time on every rank (`stepEndUs`), as NCCL does when a rank waits
 * for the slowest one inside the collective.
 */
export function ddpRank(opts: { rank: number; worldSize: number; steps: number; stepUs: number; computeUs: number; allReduceEndUs: number; clockUs?: number }): Record<string, unknown> {
  const kernels: KernelSpec[] = [];
  const steps: [number, number, number][] = [];
  for (let n = 0; n < opts.steps; n++) {
    const t = n * opts.stepUs;
    steps.push([n, t, opts.stepUs]);
    kernels.push({ name: 'gemm_kernel', ts: t + 10, dur: opts.computeUs, launchTs: t + 1 });
    kernels.push({
      name: 'ncclDevKernel_AllReduce_Sum_f32_RING_LL(ncclDevComm*, unsigned long, ncclWork*)',
      ts: t + 10 + opts.computeUs,
      dur: opts.allReduceEndUs - (10 + opts.computeUs),
      stream: 20,
      launchTs: t + 2,
      args: { 'Collective name': 'allreduce', 'In msg nelems': 1024, dtype: 'Float' },
    });
  }
  return kinetoDoc({ rank: opts.rank, worldSize: opts.worldSize, steps, kernels, gpu: opts.rank, clockUs: opts.clockUs ?? 0 });
}
