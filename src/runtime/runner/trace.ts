/**
 * From what the devices measured to a trace: outputs gathered back into full batches, the
 * numerical check against the one-device run, spans merged on one clock, meta recorded.
 */
import * as os from 'node:os';
import type { Program } from '../../profiler/program';
import type { Plan } from '../../profiler/plan';
import type { ProfileRequest, SharedInput } from '../protocol';
import type { ModelIR } from '../onnx/model';
import type { DeviceInfo } from '../device/discovery';
import { DEFAULT_SLOTS, DEFAULT_SLOT_BYTES } from '../comm/group';
import { viewOf, copyRows, placeRows, elementCount, ctorFor, type AnyTypedArray } from '../tensor-util';
import { TraceBuilder, TRACE_FORMAT_VERSION, type CaptureSettings, type DeviceMeta, type NumericalCheck, type Trace, type TraceMeta } from '../../profiler/trace-format';
import { TOOL_VERSION } from '../../common/version';
import type { DoneMessage } from './workers';

/**
 * The full-batch outputs of a run: every device gathered its rows into a full-batch buffer
 * of its own; the rows each device's `gather` instructions name are copied into one.
 */
export function mergeOutputs(program: Program, done: DoneMessage[]): Map<string, AnyTypedArray> {
  const out = new Map<string, AnyTypedArray>();
  program.devices.forEach((dp, rank) => {
    const mine = new Map(done[rank].outputs.map((o) => [o.name, o]));
    for (const ins of dp.instructions) {
      if (ins.op !== 'gather') continue;
      for (const name of ins.tensors) {
        const o = mine.get(name);
        if (!o) continue;
        const axis = program.outputs.find((x) => x.name === name)?.batchAxis ?? 0;
        let full = out.get(name);
        if (!full) out.set(name, (full = new (ctorFor(o.dtype))(elementCount(o.dims))));
        const dims = o.dims.slice();
        dims[axis] = ins.rows.count;
        const rows = new (ctorFor(o.dtype))(elementCount(dims));
        copyRows(viewOf(o.dtype, o.data), o.dims, axis, ins.rows.start, ins.rows.count, rows);
        placeRows(rows, o.dims, axis, ins.rows.start, ins.rows.count, full);
      }
    }
  });
  return out;
}

type OutputCheck = NonNullable<NumericalCheck['outputs']>[number];

/**
 * One output against its reference: ok when |a−b| ≤ atol + rtol·|b| element-wise, or, where
 * `l2Tol` is given, when ‖a−b‖₂ ≤ l2Tol·‖b‖₂. NaN anywhere fails either way.
 */
function compareOne(name: string, g: AnyTypedArray | undefined, w: AnyTypedArray, atol: number, rtol: number, l2Tol: number | undefined): OutputCheck {
  if (!g || g.length !== w.length) return { name, maxAbsErr: 0, maxRelErr: 0, ok: false, elements: 0 };
  let maxAbsErr = 0;
  let maxRelErr = 0;
  let within = true;
  let diff2 = 0;
  let ref2 = 0;
  for (let i = 0; i < w.length; i++) {
    const a = Number(g[i]);
    const b = Number(w[i]);
    const d = Math.abs(a - b);
    if (!(d <= atol + rtol * Math.abs(b))) within = false;
    diff2 += d * d;
    ref2 += b * b;
    // NaN counts as the largest error; JSON cannot hold Infinity, so it is recorded as MAX_VALUE.
    if (d > maxAbsErr || Number.isNaN(d)) maxAbsErr = Number.isNaN(d) ? Number.MAX_VALUE : d;
    const rel = d / Math.max(Math.abs(b), 1e-12);
    if (rel > maxRelErr || Number.isNaN(rel)) maxRelErr = Number.isNaN(rel) ? Number.MAX_VALUE : rel;
  }
  const l2 = ref2 > 0 ? Math.sqrt(diff2 / ref2) : Math.sqrt(diff2);
  const relL2 = Number.isFinite(l2) ? l2 : Number.MAX_VALUE;
  const ok = within || (l2Tol !== undefined && relL2 <= l2Tol);
  return { name, maxAbsErr, maxRelErr, relL2, ok, elements: w.length };
}

/**
 * Comparison of two sets of outputs: |a−b| ≤ atol + rtol·|b| element-wise, or (where `l2Tol`
 * is given) a relative L2 error of at most `l2Tol` per output. Every output of `want` is
 * checked on its own (`outputs`), including one that `got` lacks; the totals are over all of
 * them.
 */
export function compareOutputs(got: Map<string, AnyTypedArray>, want: Map<string, AnyTypedArray>, reference: string, atol = 1e-4, rtol = 1e-3, l2Tol?: number): NumericalCheck {
  const outputs = [...want].map(([name, w]) => compareOne(name, got.get(name), w, atol, rtol, l2Tol));
  return {
    reference,
    maxAbsErr: Math.max(0, ...outputs.map((o) => o.maxAbsErr)),
    maxRelErr: Math.max(0, ...outputs.map((o) => o.maxRelErr)),
    atol,
    rtol,
    ...(l2Tol !== undefined ? { l2Tol } : {}),
    maxRelL2: Math.max(0, ...outputs.map((o) => o.relL2 ?? 0)),
    ok: outputs.every((o) => o.ok),
    elements: outputs.reduce((n, o) => n + o.elements, 0),
    outputs,
  };
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

/** What a run measured, before it becomes a trace. */
export interface Measured {
  request: ProfileRequest;
  /** The plan as run, with what the runner resolved (shards, cuts, partition…). */
  plan: Plan;
  program: Program;
  ir: ModelIR;
  ortVersion: string;
  devices: DeviceInfo[];
  done: DoneMessage[];
  inputs: SharedInput[];
  numericalCheck: NumericalCheck | undefined;
  /** A training run's record. */
  training?: TraceMeta['training'];
  baseline: TraceMeta['baseline'];
  capture: CaptureSettings;
  measurement: TraceMeta['measurement'];
  /** The timed steps of each block the run measured them in, in order. */
  timedBlocks?: number[];
}

function notesOf(m: Measured): string[] {
  const notes: string[] = [];
  m.done.forEach((d, rank) => notes.push(...d.notes.map((n) => `${m.devices[rank].id}: ${n}`)));
  if (m.program.buffers.some((b) => b.synthetic)) {
    notes.push(
      'Gradient sync is synthetic: ONNX Runtime runs inference only, so each step all-reduces a zero-filled float32 buffer as large as the model parameters; the transfer and the reduction are real, the gradients are not.',
    );
  }
  if (m.training?.pipeline) {
    notes.push(
      `Training: ${m.training.loss} loss against a fixed random teacher's labels, ${m.training.optimizer} at lr ${m.training.lr}; pipeline schedule ${m.training.pipeline.schedule} over ${m.training.pipeline.microBatches} micro-batches, each stage summing its micro-batches' gradients before its optimizer step and keeping each micro-batch's saved activations from its forward to its backward. The numerical check compares the trained weights after the warm-up and timed steps with the one-device training run's on the whole batch.`,
    );
  } else if (m.training) {
    notes.push(
      `Training: ${m.training.loss} loss against a fixed random teacher's labels, ${m.training.optimizer} at lr ${m.training.lr}; gradients all-reduced in ${m.training.buckets.length} bucket(s), each on the device's communication thread as soon as its backward part has run, overlapping the parts after it. The numerical check compares the trained weights after the warm-up and timed steps with the one-device training run's.`,
    );
  }
  if ((m.done[0]?.checkStart.length ?? 0) > 0) {
    notes.push(
      'Capture check: the timed steps also ran with span capture off, in slices alternating with the captured ones; the summary compares the two step times. The gaps between blocks on this timeline include those uncaptured steps.',
    );
  }
  if (m.baseline?.schedule === 'interleaved') {
    notes.push(
      "Timed steps ran in blocks alternating with the one-device baseline's, so both saw the same machine; the gaps between blocks on this timeline are the baseline's time, not this run's.",
    );
  }
  for (const d of m.devices) {
    if (d.sharesPhysicalUnit) notes.push(`${d.id} shares ${d.physicalUnit} with another device of this run; its time is not that of separate hardware.`);
  }
  return notes;
}

function modelMeta(req: ProfileRequest, ir: ModelIR): NonNullable<TraceMeta['model']> {
  return {
    path: req.modelLabel,
    sha256: ir.sha256,
    opset: ir.opsetVersion ?? 0,
    nodeCount: ir.nodes.length,
    parameters: ir.parameterCount,
    parameterBytes: ir.parameterBytes,
    ...(ir.producerName ? { producer: `${ir.producerName} ${ir.producerVersion}`.trim() } : {}),
    inputs: ir.inputs.map((i) => ({ name: i.name, dtype: i.dtype, dims: i.dims ?? [] })),
    outputs: ir.outputs.map((o) => ({ name: o.name, dtype: o.dtype, dims: o.dims ?? [] })),
  };
}

/** The measured trace (idle not yet derived). */
export function buildTrace(m: Measured): Trace {
  const { devices, done } = m;
  const startTimeUs = Math.min(...done.map((d) => d.stepStart[0]));
  const builder = new TraceBuilder();
  done.forEach((d, rank) => {
    if (d.spans) builder.appendBlock(d.spans, rank, startTimeUs);
  });
  const windows = (start: (d: DoneMessage) => Float64Array, end: (d: DoneMessage) => Float64Array, first: number) =>
    Array.from({ length: start(done[0]!).length }, (_, i) => ({
      index: first + i,
      startUs: Math.min(...done.map((d) => start(d)[i]!)) - startTimeUs,
      endUs: Math.max(...done.map((d) => end(d)[i]!)) - startTimeUs,
    }));
  const steps = windows((d) => d.stepStart, (d) => d.stepEnd, 0);
  const profiledSteps = windows((d) => d.profiledStart, (d) => d.profiledEnd, m.plan.steps);
  const checkSteps = windows((d) => d.checkStart, (d) => d.checkEnd, 0).map((w) => w.endUs - w.startUs);
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
    model: modelMeta(m.request, m.ir),
    mode: m.plan.mode,
    plan: { ...m.plan, inputs: m.inputs.map((i) => ({ name: i.name, dims: i.dims, batchAxis: i.batchAxis })) },
    program: m.program,
    devices: deviceMeta,
    host: hostInfo(),
    onnxruntimeVersion: m.ortVersion,
    startTimeUs,
    ...(m.numericalCheck ? { numericalCheck: m.numericalCheck } : {}),
    ...(m.training ? { training: m.training } : {}),
    ...(m.baseline ? { baseline: m.baseline } : {}),
    capture: m.capture,
    ...(m.request.adviceOnPoorQuality ? { adviceOnPoorQuality: m.request.adviceOnPoorQuality } : {}),
    ...(m.measurement ? { measurement: m.measurement } : {}),
    ...(m.timedBlocks && m.timedBlocks.length > 1 ? { timedBlocks: m.timedBlocks } : {}),
    ...(checkSteps.length > 0 ? { captureCheck: { stepTimesUs: checkSteps } } : {}),
    ...(done.some((d) => d.gpu) ? { gpuTimestamps: done.flatMap((d, device) => (d.gpu ? [{ device, ...d.gpu }] : [])) } : {}),
    // The runner's communication group uses the default channel layout (workers.ts).
    ...(devices.length > 1 ? { channel: { slots: DEFAULT_SLOTS, slotBytes: DEFAULT_SLOT_BYTES } } : {}),
    opLevel: m.capture.profiledSteps > 0,
    notes: notesOf(m),
  };
  return {
    meta,
    strings: builder.strings,
    lanes: devices.map((d, i) => ({ device: i, label: d.label, group: d.physicalUnit })),
    steps,
    ...(profiledSteps.length > 0 ? { profiledSteps } : {}),
    spans: builder.finish(),
  };
}
