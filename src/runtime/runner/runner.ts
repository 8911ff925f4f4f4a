/**
 * The runner: turns a {@link ProfilePlan} into a trace. It runs in its own process (never in
 * the extension host or the CLI's process, so a native crash in ONNX Runtime takes only the
 * runner down) and owns one worker thread per device.
 *
 *   load model → resolve inputs → plan devices → baseline (one device, whole batch)
 *   → data-parallel run (one worker per device, shards of the batch) → numerical check
 *   → trace (spans merged on one clock, idle derived) → summary and findings → write
 */
import { Worker } from 'node:worker_threads';
import { join } from 'node:path';
import * as os from 'node:os';
import { mkdtempSync, rmSync } from 'node:fs';
import { UserError } from '../../common/errors';
import type { DeviceInit, FromDevice, PipelineRole, ProfilePlan, Progress, SharedInput, SharedOutput } from '../protocol';
import { partitionFromCuts, partitionPipeline } from '../pipeline/partition';
import { writeStageModels } from '../pipeline/stage-model';
import { formatPartition } from '../pipeline/plan-format';
import { isFromDevice } from '../protocol';
import { loadModel, type ModelIR } from '../onnx/model';
import { resolveInputShapes, synthesizeInputs, loadInputs, splitBatch } from '../inputs';
import { discoverDevices, parseDeviceSpec, planDevices, type DeviceInfo } from '../device/discovery';
import { createCommGroup } from '../comm/communicator';
import { viewOf, placeRows, elementCount, ctorFor, type AnyTypedArray } from '../tensor-util';
import { TraceBuilder, TRACE_FORMAT_VERSION, type DeviceMeta, type NumericalCheck, type Trace, type TraceMeta } from '../../profiler/trace-format';
import { deriveIdle } from '../../profiler/idle';
import { summarize, type ProfileSummary } from '../../profiler/summary';
import { findings as runFindings } from '../../profiler/findings';
import { spread } from '../../profiler/stats';
import { writeTrace } from '../../profiler/trace-io';
import { TOOL_VERSION } from '../../common/version';

export interface RunnerHooks {
  progress(p: Progress): void;
  signal?: AbortSignal;
}

export interface RunnerResult {
  trace: Trace;
  summary: ProfileSummary;
  /** Pipeline: the partition as text. */
  planText?: string;
  /** Pipeline: the partition as data. */
  planInfo?: PlanInfo;
}

/** A pipeline partition as reported by `parallax plan --json`. */
export interface PlanInfo {
  stages: { index: number; nodes: number; firstNode: string; lastNode: string; costUs: number; parameters: number; cutBytesOutPerRow: number | null }[];
  /** max / mean stage cost. */
  balance: number;
  cuts: string[];
  costSource: string;
  microBatchRows: number;
}

/** Raised when a run is cancelled; not an error to report. */
export class CancelledError extends Error {
  constructor() {
    super('profiling cancelled');
    this.name = 'CancelledError';
  }
}

const WORKER_FILE = join(__dirname, 'device-worker.js');

/** A group of device workers driven through one step loop. */
class WorkerGroup {
  readonly workers: Worker[] = [];
  private readonly waiters = new Map<string, { resolve: (m: FromDevice) => void; reject: (e: Error) => void }>();
  private failure: Error | null = null;
  onStep: (step: number) => void = () => {};

  constructor(n: number, signal?: AbortSignal) {
    for (let r = 0; r < n; r++) {
      const w = new Worker(WORKER_FILE);
      w.on('message', (m: unknown) => this.onMessage(m));
      w.on('error', (e) => this.fail(new Error(`device worker ${r} crashed: ${e.message}`)));
      w.on('exit', (code) => {
        if (code !== 0 && !this.closed) this.fail(new Error(`device worker ${r} exited with code ${code}`));
      });
      this.workers.push(w);
    }
    signal?.addEventListener('abort', () => this.fail(new CancelledError()), { once: true });
  }

  private closed = false;

  private onMessage(m: unknown): void {
    if (!isFromDevice(m)) return;
    if (m.type === 'step') {
      this.onStep(m.step);
      return;
    }
    if (m.type === 'error') {
      this.fail(m.user ? new UserError(m.message) : new Error(`device ${m.rank}: ${m.message}`));
      return;
    }
    const key = `${m.type}:${m.rank}`;
    const w = this.waiters.get(key);
    if (w) {
      this.waiters.delete(key);
      w.resolve(m);
    }
  }

  private fail(e: Error): void {
    if (this.failure) return;
    this.failure = e;
    for (const w of this.waiters.values()) w.reject(e);
    this.waiters.clear();
    void this.close();
  }

  /** Waits for message `type` from every rank. */
  waitAll<T extends FromDevice['type']>(type: T): Promise<Extract<FromDevice, { type: T }>[]> {
    return Promise.all(
      this.workers.map(
        (_, r) =>
          new Promise<FromDevice>((resolve, reject) => {
            if (this.failure) return reject(this.failure);
            this.waiters.set(`${type}:${r}`, { resolve, reject });
          }),
      ),
    ) as Promise<Extract<FromDevice, { type: T }>[]>;
  }

  async close(): Promise<void> {
    this.closed = true;
    await Promise.all(this.workers.map((w) => w.terminate()));
  }
}

interface DeviceRunResult {
  ready: Extract<FromDevice, { type: 'ready' }>[];
  done: Extract<FromDevice, { type: 'done' }>[];
}

async function runDevices(
  devices: DeviceInfo[],
  shards: { start: number; count: number }[],
  base: Omit<DeviceInit, 'type' | 'rank' | 'worldSize' | 'device' | 'shard' | 'comm'>,
  hooks: RunnerHooks,
  phase: 'baseline' | 'steps' | 'calibrate',
  perRank: (rank: number) => Partial<DeviceInit> = () => ({}),
): Promise<DeviceRunResult> {
  const n = devices.length;
  const group = new WorkerGroup(n, hooks.signal);
  try {
    const grad = base.gradElements ?? 0;
    const comm = n > 1 ? createCommGroup(n, grad > 0 ? { arenaBytes: grad * 4 + 4096 } : {}) : null;
    const readyP = group.waitAll('ready');
    devices.forEach((d, rank) => {
      const init: DeviceInit = {
        type: 'init',
        rank,
        worldSize: n,
        device: {
          id: d.id,
          kind: d.kind,
          executionProviders: d.executionProviders,
          intraOpNumThreads: d.intraOpNumThreads,
        },
        shard: shards[rank],
        comm,
        ...base,
        ...perRank(rank),
      };
      group.workers[rank].postMessage(init);
    });
    const ready = await readyP;
    const doneP = group.waitAll('done');
    group.onStep = (step) =>
      hooks.progress({
        phase: phase === 'calibrate' ? 'load' : phase,
        done: step + 1,
        total: base.steps,
        message: phase === 'baseline' ? 'one-device baseline' : phase === 'calibrate' ? 'calibrating per-node costs' : 'measuring',
      });
    for (const w of group.workers) w.postMessage({ type: 'go' });
    const done = await doneP;
    return { ready, done };
  } finally {
    await group.close();
  }
}

function hostInfo(): TraceMeta['host'] {
  return {
    cpuModel: os.cpus()[0]?.model?.trim() ?? 'unknown',
    cores: os.availableParallelism(),
    memoryBytes: os.totalmem(),
    os: `${os.type()} ${os.release()} ${os.arch()}`,
    node: process.version,
  };
}

/** Output batch axis: where the model's batch dimension sits in this output, else 0. */
function outputBatchAxis(ir: ModelIR, name: string, batchDimName: string | null): number {
  const out = ir.outputs.find((o) => o.name === name);
  if (out?.dims && batchDimName !== null) {
    const i = out.dims.findIndex((d) => d === batchDimName);
    if (i >= 0) return i;
  }
  return 0;
}

/** Concatenates device output shards along the batch axis into full-batch outputs. */
function concatOutputs(readies: Extract<FromDevice, { type: 'ready' }>[], shards: { start: number; count: number }[], batch: number, axisOf: (name: string) => number): Map<string, AnyTypedArray> {
  const out = new Map<string, AnyTypedArray>();
  const first = readies[0].outputs;
  for (let k = 0; k < first.length; k++) {
    const name = first[k].name;
    const axis = axisOf(name);
    const dims = first[k].dims.slice();
    dims[axis] = batch;
    const full = new (ctorFor(first[k].dtype))(elementCount(dims));
    readies.forEach((r, rank) => {
      const o = r.outputs[k] as SharedOutput;
      placeRows(viewOf(o.dtype, o.data), dims, axis, shards[rank].start, shards[rank].count, full);
    });
    out.set(name, full);
  }
  return out;
}

/** Element-wise comparison of two sets of outputs: |a−b| ≤ atol + rtol·|b|. */
export function compareOutputs(got: Map<string, AnyTypedArray>, want: Map<string, AnyTypedArray>, reference: string, atol = 1e-4, rtol = 1e-3): NumericalCheck {
  let maxAbs = 0;
  let maxRel = 0;
  let ok = true;
  let elements = 0;
  for (const [name, w] of want) {
    const g = got.get(name);
    if (!g || g.length !== w.length) {
      ok = false;
      continue;
    }
    for (let i = 0; i < w.length; i++) {
      const a = Number(g[i]);
      const b = Number(w[i]);
      const d = Math.abs(a - b);
      if (!(d <= atol + rtol * Math.abs(b))) ok = false;
      if (d > maxAbs || Number.isNaN(d)) maxAbs = Number.isNaN(d) ? Infinity : d;
      const rel = d / Math.max(Math.abs(b), 1e-12);
      if (rel > maxRel) maxRel = rel;
    }
    elements += w.length;
  }
  return { reference, maxAbsErr: maxAbs, maxRelErr: maxRel, atol, rtol, ok, elements };
}

/** What a run measured, before it becomes a trace. */
interface Measured {
  devices: DeviceInfo[];
  done: Extract<FromDevice, { type: 'done' }>[];
  gathered: Map<string, AnyTypedArray>;
  /** Mode-specific plan fields recorded in the trace. */
  plan: Record<string, unknown>;
}

/** Validates explicit shards: one positive row count per device, adding up to the batch. */
export function checkShards(shards: number[], batch: number, devices: number): number[] {
  if (shards.length !== devices) {
    throw new UserError(`--shards gives ${shards.length} shard${shards.length === 1 ? '' : 's'} for ${devices} device${devices === 1 ? '' : 's'}; give one row count per device`);
  }
  if (shards.some((r) => !Number.isInteger(r) || r < 1)) throw new UserError(`--shards ${shards.join(',')}: every shard needs at least one row`);
  const total = shards.reduce((a, b) => a + b, 0);
  if (total !== batch) throw new UserError(`--shards ${shards.join(',')} adds up to ${total} rows, not the batch of ${batch}; make them add up to --batch`);
  return shards;
}

/** Rows [start, start+count) for `parts` consecutive slices of `batch` rows. */
function slices(counts: number[]): { start: number; count: number }[] {
  let offset = 0;
  return counts.map((count) => {
    const s = { start: offset, count };
    offset += count;
    return s;
  });
}

/** Runs a profile plan to completion and returns the trace and its summary. */
export async function runProfile(plan: ProfilePlan, hooks: RunnerHooks): Promise<RunnerResult> {
  const check = (): void => {
    if (hooks.signal?.aborted) throw new CancelledError();
  };
  hooks.progress({ phase: 'load', done: 0, total: 1, message: 'loading model' });
  const ir = await loadModel(plan.modelPath);
  const resolved = resolveInputShapes(ir, {
    batch: plan.batch,
    ...(plan.batchDim !== undefined ? { batchDim: plan.batchDim } : {}),
    ...(plan.dims !== undefined ? { dims: plan.dims } : {}),
    ...(plan.inputShapes !== undefined ? { inputShapes: plan.inputShapes } : {}),
  });
  const tensors = plan.inputsFile ? await loadInputs(plan.inputsFile, resolved) : synthesizeInputs(resolved, plan.seed);
  const discovered = await discoverDevices();
  const devices = planDevices(parseDeviceSpec(plan.devices), discovered);
  check();

  // The global batch lives in shared memory; every device copies its rows from there.
  const inputs: SharedInput[] = tensors.map((t) => {
    const sab = new SharedArrayBuffer(t.data.byteLength);
    (viewOf(t.dtype, sab) as unknown as { set(a: ArrayLike<number>): void }).set(t.data as unknown as ArrayLike<number>);
    return { name: t.name, dtype: t.dtype, dims: t.dims, batchAxis: t.batchAxis, data: sab };
  });
  const withBatch = resolved.find((r) => r.batchAxis !== null && typeof r.modelDims?.[r.batchAxis] === 'string');
  const batchName = withBatch ? (withBatch.modelDims![withBatch.batchAxis!] as string) : null;
  const fixed = resolved.find((r) => r.batchFixed);
  if (fixed && (devices.length > 1 || (plan.microBatches ?? 1) > 1)) {
    throw new UserError(
      `${plan.modelLabel}: input "${fixed.name}" has a fixed batch of ${fixed.dims[fixed.batchAxis ?? 0]}, so it cannot be split across devices or micro-batches; re-export the model with a dynamic batch axis or use one device`,
    );
  }
  const axisOf = (name: string): number => outputBatchAxis(ir, name, batchName);
  const dimValues: Record<string, number> = { ...(plan.dims ?? {}) };
  if (batchName) dimValues[batchName] = plan.batch;

  const profileDir = mkdtempSync(join(os.tmpdir(), 'parallax-ortprof-'));
  try {
    const common = { modelPath: plan.modelPath, inputs, steps: plan.steps, warmup: plan.warmup, profileDir };

    let pipe: PreparedPipeline | null = null;
    if (plan.mode === 'pipeline') {
      pipe = await preparePipeline(plan, ir, devices, common, hooks, dimValues, profileDir);
      if (plan.dryRun) {
        const summary = null as unknown as ProfileSummary;
        return { trace: null as unknown as Trace, summary, planText: pipe.planText, planInfo: pipe.planInfo };
      }
    }
    check();

    // One-device baseline: the first device's configuration running the whole batch.
    let baselineMeta: TraceMeta['baseline'];
    let reference: Map<string, AnyTypedArray> | null = null;
    if (plan.baseline) {
      hooks.progress({ phase: 'baseline', done: 0, total: plan.steps, message: 'one-device baseline' });
      const b = await runDevices([devices[0]], [{ start: 0, count: plan.batch }], { ...common, capture: false, opLevel: false }, hooks, 'baseline');
      const times = Array.from(b.done[0].stepEnd, (e, i) => e - b.done[0].stepStart[i]);
      baselineMeta = {
        description: `one device (${devices[0].id} configuration, ${devices[0].intraOpNumThreads} thread${devices[0].intraOpNumThreads === 1 ? '' : 's'}) running the whole batch of ${plan.batch}`,
        stepTimeUs: spread(times),
      };
      reference = concatOutputs(b.ready, [{ start: 0, count: plan.batch }], plan.batch, axisOf);
    }
    check();

    hooks.progress({ phase: 'warmup', done: 0, total: devices.length, message: `starting ${devices.length} device worker(s)` });
    let measured: Measured;
    if (pipe) {
      const run = await runDevices(
        devices,
        devices.map(() => ({ start: 0, count: plan.batch })),
        { ...common, capture: plan.capture, opLevel: plan.opLevel },
        hooks,
        'steps',
        (rank) => ({ modelPath: pipe!.stagePaths[rank], role: pipe!.roles[rank] }),
      );
      const gathered = new Map<string, AnyTypedArray>();
      for (const d of run.done) for (const o of d.outputs ?? []) gathered.set(o.name, viewOf(o.dtype, o.data));
      measured = { devices, done: run.done, gathered, plan: pipe.planMeta };
    } else {
      const shards = slices(plan.shards ? checkShards(plan.shards, plan.batch, devices.length) : splitBatch(plan.batch, devices.length));
      const gradElements = plan.gradSync && devices.length > 1 ? ir.parameterCount : 0;
      const run = await runDevices(devices, shards, { ...common, capture: plan.capture, opLevel: plan.opLevel, gradElements }, hooks, 'steps');
      measured = {
        devices,
        done: run.done,
        gathered: concatOutputs(run.ready, shards, plan.batch, axisOf),
        plan: { shards: shards.map((x) => x.count), ...(gradElements > 0 ? { gradSync: { elements: gradElements, synthetic: true } } : {}) },
      };
    }
    check();

    hooks.progress({ phase: 'analyse', done: 0, total: 1, message: 'building the trace' });
    const numericalCheck = reference
      ? compareOutputs(measured.gathered, reference, `one-device run (${devices[0].id} configuration, same inputs)`)
      : undefined;
    let trace = buildTrace(plan, ir, discovered.onnxruntimeVersion, measured, inputs, numericalCheck, baselineMeta);
    trace = deriveIdle(trace);
    const summary = summarize(trace);
    trace.summary = summary;
    trace.findings = runFindings(trace, summary);
    if (plan.outPath) {
      hooks.progress({ phase: 'write', done: 0, total: 1, message: `writing ${plan.outPath}` });
      await writeTrace(plan.outPath, trace);
    }
    return { trace, summary, ...(pipe ? { planText: pipe.planText, planInfo: pipe.planInfo } : {}) };
  } finally {
    rmSync(profileDir, { recursive: true, force: true });
  }
}

function buildTrace(
  plan: ProfilePlan,
  ir: ModelIR,
  ortVersion: string,
  m: Measured,
  inputs: SharedInput[],
  numericalCheck: NumericalCheck | undefined,
  baseline: TraceMeta['baseline'],
): Trace {
  const { devices, done } = m;
  const startTimeUs = Math.min(...done.map((d) => d.stepStart[0]));
  const builder = new TraceBuilder();
  const notes: string[] = [];
  done.forEach((d, rank) => {
    if (d.spans) builder.appendBlock(d.spans, rank, startTimeUs);
    notes.push(...d.notes.map((n) => `${devices[rank].id}: ${n}`));
  });
  const steps = Array.from({ length: plan.steps }, (_, i) => ({
    index: i,
    startUs: Math.min(...done.map((d) => d.stepStart[i])) - startTimeUs,
    endUs: Math.max(...done.map((d) => d.stepEnd[i])) - startTimeUs,
  }));
  if (m.plan['gradSync']) {
    notes.push(
      'Gradient sync is synthetic: ONNX Runtime runs inference only, so each step all-reduces a zero-filled float32 buffer as large as the model parameters; the transfer and the reduction are real, the gradients are not.',
    );
  }
  for (const d of devices) {
    if (d.sharesPhysicalUnit) notes.push(`${d.id} shares ${d.physicalUnit} with another device of this run; its time is not that of separate hardware.`);
  }
  const deviceMeta: DeviceMeta[] = devices.map((d) => ({
    id: d.id,
    kind: d.kind,
    provider: d.provider,
    threads: d.intraOpNumThreads,
    physicalUnit: d.physicalUnit,
    sharesPhysicalUnit: d.sharesPhysicalUnit,
    software: d.software,
    label: d.label,
  }));
  const meta: TraceMeta = {
    formatVersion: TRACE_FORMAT_VERSION,
    tool: { name: 'parallax', version: TOOL_VERSION },
    source: 'measured',
    model: {
      path: plan.modelLabel,
      sha256: ir.sha256,
      opset: ir.opsetVersion ?? 0,
      nodeCount: ir.nodes.length,
      parameters: ir.parameterCount,
      parameterBytes: ir.parameterBytes,
      ...(ir.producerName ? { producer: `${ir.producerName} ${ir.producerVersion}`.trim() } : {}),
      inputs: ir.inputs.map((i) => ({ name: i.name, dtype: i.dtype, dims: i.dims ?? [] })),
      outputs: ir.outputs.map((o) => ({ name: o.name, dtype: o.dtype, dims: o.dims ?? [] })),
    },
    mode: plan.mode,
    plan: {
      devices: plan.devices,
      batch: plan.batch,
      steps: plan.steps,
      warmup: plan.warmup,
      seed: plan.seed,
      inputs: inputs.map((i) => ({ name: i.name, dims: i.dims, batchAxis: i.batchAxis })),
      ...m.plan,
    },
    devices: deviceMeta,
    host: hostInfo(),
    onnxruntimeVersion: ortVersion,
    startTimeUs,
    ...(numericalCheck ? { numericalCheck } : {}),
    ...(baseline ? { baseline } : {}),
    opLevel: plan.capture && plan.opLevel,
    notes,
  };
  return {
    meta,
    strings: builder.strings,
    lanes: devices.map((d, i) => ({ device: i, label: d.label, group: d.physicalUnit })),
    steps,
    spans: builder.finish(),
  };
}

interface PreparedPipeline {
  stagePaths: string[];
  roles: PipelineRole[];
  planMeta: Record<string, unknown>;
  planText: string;
  planInfo: PlanInfo;
}

/**
 * Calibrates per-node costs on the first device (ONNX Runtime's profiler with graph
 * optimisations off, so events carry the model's node names), partitions the graph into one
 * stage per device (or along `--cuts`), writes the stage models and derives each stage's
 * role in the schedule.
 */
async function preparePipeline(
  plan: ProfilePlan,
  ir: ModelIR,
  devices: DeviceInfo[],
  common: { modelPath: string; inputs: SharedInput[]; steps: number; warmup: number; profileDir: string },
  hooks: RunnerHooks,
  dimValues: Record<string, number>,
  workDir: string,
): Promise<PreparedPipeline> {
  const k = devices.length;
  const m = plan.microBatches ?? 1;
  if (plan.stages !== undefined && plan.stages !== k) {
    throw new UserError(
      `--stages ${plan.stages} does not match the ${k} device${k === 1 ? '' : 's'} of --devices ${plan.devices}; the pipeline runs one stage per device (e.g. --devices cpu:${plan.stages})`,
    );
  }
  if (!Number.isInteger(m) || m < 1) throw new UserError(`--micro-batches must be a positive integer, got ${m}`);
  if (plan.batch % m !== 0) {
    const near = [m - 1, m + 1, m - 2, m + 2].filter((x) => x >= 1 && plan.batch % x === 0);
    throw new UserError(
      `--batch ${plan.batch} is not divisible by --micro-batches ${m}; use a micro-batch count that divides the batch${near.length ? ` (e.g. ${near[0]})` : ''}`,
    );
  }
  if (k > ir.nodes.length) throw new UserError(`${plan.modelLabel}: ${k} stages is more than the model's ${ir.nodes.length} nodes; use fewer devices`);
  const microRows = plan.batch / m;
  // Explicit cuts are checked before the calibration run, so a typo fails at once.
  if (plan.cuts && plan.cuts.length > 0) partitionFromCuts(ir, plan.cuts, { dimValues });

  // Calibration: measured per-node time by node name, at the micro-batch size and at a
  // second size, so findings can tell a micro-batch's fixed work from its per-row work.
  // Each node's cost is its fastest run: on a shared machine, interference only ever adds
  // time, so the minimum is the steadiest estimate (the two sizes must compare cleanly).
  const calSteps = 5;
  const calibrate = async (rows: number): Promise<Map<string, number>> => {
    const cal = await runDevices(
      [devices[0]],
      [{ start: 0, count: rows }],
      { ...common, steps: calSteps, warmup: 1, capture: true, opLevel: true, graphOptimizationLevel: 'disabled' },
      hooks,
      'calibrate',
    );
    const cols = cal.done[0].spans!;
    // Per run (the enclosing compute span) and node: summed time; then the minimum over runs.
    const perRun = new Map<string, Map<number, number>>();
    for (let i = 0; i < cols.count; i++) {
      const run = cols.parent[i];
      if (run < 0) continue;
      const name = cols.strings[cols.name[i]];
      let runs = perRun.get(name);
      if (!runs) perRun.set(name, (runs = new Map()));
      runs.set(run, (runs.get(run) ?? 0) + cols.dur[i]);
    }
    const out = new Map<string, number>();
    for (const [name, runs] of perRun) out.set(name, Math.min(...runs.values()));
    return out;
  };
  const byName = await calibrate(microRows);
  const altRows = microRows >= 2 ? Math.floor(microRows / 2) : plan.batch >= 2 ? 2 : null;
  const byNameAlt = altRows !== null && !plan.dryRun ? await calibrate(altRows) : null;
  const round = (c: number): number => Math.round(c * 100) / 100;
  const nodeCostUs = new Float64Array(ir.nodes.length);
  const nodeCostRecord: Record<string, number> = {};
  ir.nodes.forEach((n, i) => {
    const c = byName.get(n.name) ?? 0;
    nodeCostUs[i] = c;
    if (c > 0) nodeCostRecord[n.name] = round(c);
  });
  const altRecord: Record<string, number> = {};
  if (byNameAlt) for (const [name, c] of byNameAlt) if (c > 0) altRecord[name] = round(c);
  // Within 2 % of the best bottleneck, prefer cuts that carry fewer bytes (e.g. at a layer
  // boundary rather than beside a residual); transfers are charged at ~5 GB/s, a same-run
  // shared-memory copy rate on small machines.
  const partOpts = { costSource: 'measured' as const, dimValues, slack: 0.02, commCostUsPerByte: 1 / 5000 };
  const partition = plan.cuts && plan.cuts.length > 0
    ? partitionFromCuts(ir, plan.cuts, { ...partOpts, nodeCostUs })
    : partitionPipeline(ir, nodeCostUs, k, partOpts);
  if (partition.stages.length !== k) {
    throw new UserError(
      `--cuts gives ${partition.stages.length} stages but --devices ${plan.devices} has ${k} devices; give ${k - 1} cut${k === 2 ? '' : 's'}`,
    );
  }
  const planText = formatPartition(partition, ir);
  const planInfo: PlanInfo = {
    stages: partition.stages.map((st) => ({
      index: st.index,
      nodes: st.nodeIndices.length,
      firstNode: st.nodeNames.first,
      lastNode: st.nodeNames.last,
      costUs: st.costUs,
      parameters: st.parameters,
      cutBytesOutPerRow: st.cutBytesOut,
    })),
    balance: partition.balance,
    cuts: partition.cuts,
    costSource: partition.costSource,
    microBatchRows: microRows,
  };
  if (plan.dryRun) return { stagePaths: [], roles: [], planMeta: {}, planText, planInfo };

  const stagePaths = writeStageModels(plan.modelPath, partition, join(workDir, 'stages'));
  const graphOut = new Set(ir.outputs.map((o) => o.name));
  const roles: PipelineRole[] = partition.stages.map((st) => {
    const recv = new Map<number, string[]>();
    const graphInputs: string[] = [];
    for (const inp of st.inputs) {
      if (inp.from === 'graph') graphInputs.push(inp.name);
      else recv.set(inp.from, [...(recv.get(inp.from) ?? []), inp.name]);
    }
    const send = new Map<number, string[]>();
    const graphOutputs: string[] = [];
    for (const out of st.outputs) {
      for (const to of out.to) {
        if (to === 'graph') graphOutputs.push(out.name);
        else send.set(to, [...(send.get(to) ?? []), out.name]);
      }
    }
    // Both ends of a stage pair order its tensors by name, so sends and receives match.
    const groups = (mp: Map<number, string[]>) =>
      [...mp.entries()].sort((a, b) => a[0] - b[0]).map(([stage, tensors]) => ({ stage, tensors: tensors.sort() }));
    return {
      kind: 'pipeline',
      stage: st.index,
      micro: Array.from({ length: m }, (_, j) => ({ start: j * microRows, count: microRows })),
      graphInputs,
      recvFrom: groups(recv),
      sendTo: groups(send),
      graphOutputs: graphOutputs.filter((n) => graphOut.has(n)),
      batch: plan.batch,
    };
  });
  return {
    stagePaths,
    roles,
    planText,
    planInfo,
    planMeta: {
      stages: k,
      microBatches: m,
      microBatchRows: microRows,
      schedule: plan.schedule ?? 'gpipe',
      cuts: partition.cuts,
      stageNodes: partition.stages.map((st) => st.nodeIndices.map((i) => ir.nodes[i].name)),
      stageCostUs: partition.stages.map((st) => st.computeUs),
      partitionBalance: partition.balance,
      nodeCostUs: nodeCostRecord,
      ...(byNameAlt ? { nodeCostUsAlt: { rows: altRows, costs: altRecord } } : {}),
      calibration: {
        device: devices[0].id,
        rows: microRows,
        runs: calSteps,
        note: 'per-node times from ONNX Runtime profiling with graph optimisations off, at the micro-batch size: the fastest of the runs',
      },
    },
  };
}
