/**
 * Memory per device of a run (`meta.memory`, see profiler/memory-format.ts): what each device
 * held, from the program it ran, the segment models it loaded and the shapes its segments
 * actually produced; and, given a capacity, which plans of the same model fit.
 *
 * Pure: the runner passes what it loaded and what the workers reported; nothing here runs a
 * model. Activations are computed, never measured (the CPU provider reports no memory): the
 * device's nodes are walked in execution order ({@link peakActivationBytes}) with the shapes
 * propagated from the run's actual inputs at the device's rows, and every segment output the
 * worker recorded replaces its propagated shape (a mismatch is reported, not hidden).
 */
import { isUserError } from '../common/errors';
import type { DeviceRunMemory, RunMemory } from '../profiler/memory-format';
import type { DeviceProgram, Program, TrainingProgram } from '../profiler/program';
import { estimateCosts, type ModelIR, type TensorShape } from './onnx/model';
import { batchDimName, nominalDims } from './pipeline/partition';
import { hybridShapes, memoryTable, peakActivationBytes, type MemoryTable } from './tensor/memory';
import { planTensorSharding, type TensorShardPlan } from './tensor/shard-plan';
import type { SegmentOutputs } from './protocol';

/** Bytes of a float32 element: gradients and optimizer slots are float32 (training runs float32 models only). */
const F32 = 4;

/** A run input as the devices saw it: its global dims and batch axis. */
export interface RunInput {
  name: string;
  dims: readonly number[];
  batchAxis: number | null;
}

/** What {@link runMemory} reads. */
export interface RunMemoryInput {
  ir: ModelIR;
  program: Program;
  inputs: readonly RunInput[];
  /** Values of symbolic dimensions other than the batch, as the run resolved them. */
  dims: Record<string, number>;
  /** Parameter bytes of each loaded inference segment model (`stage`, `shard`) by segment id. */
  segmentParameterBytes: ReadonlyMap<number, number>;
  /** Node names of each pipeline stage (pipeline and data × pipeline plans). */
  stageNodes?: readonly (readonly string[])[];
  /** A pipeline training stage's resident parameter bytes, by stage. */
  stageParameterBytes?: readonly number[];
  /** Tensors a tensor plan splits (name → axis) and over how many devices. */
  split?: { tensors: Record<string, number>; devices: number };
  /** Per device (rank): the outputs of each segment's first run, as the worker recorded them. */
  segmentOutputs: readonly (readonly SegmentOutputs[] | undefined)[];
  /** Per device: a pipeline training stage's measured peak of stashed micro-batches. */
  stash?: readonly ({ peakMicroBatches: number; peakBytes: number } | undefined)[];
  process?: RunMemory['process'];
  capacity?: RunMemory['capacity'];
}

/** The memory per device of a run, for `meta.memory`. */
export function runMemory(m: RunMemoryInput): RunMemory {
  const devices = m.program.devices.map((dp) => deviceMemory(m, dp));
  return {
    devices,
    modelParameterBytes: m.ir.parameterBytes,
    totalBytes: devices.reduce((s, d) => s + d.totalBytes, 0),
    ...(m.process ? { process: m.process } : {}),
    ...(m.capacity ? { capacity: m.capacity } : {}),
  };
}

const elements = (dims: readonly number[]): number => dims.reduce((a, b) => a * b, 1);

/**
 * Rows one forward of the device's segments handled: the most any of its forward `run`
 * instructions names (an optimizer's run names the whole batch but holds no activations).
 */
export function deviceRows(dp: DeviceProgram): number {
  let rows = 0;
  for (const ins of dp.instructions) if (ins.op === 'run' && ins.phase === 'forward') rows = Math.max(rows, ins.rows);
  return rows;
}

/** The training part a device holds: the program's (data), or its stage's (pipeline). */
function trainingOf(program: Program, dp: DeviceProgram): TrainingProgram | null {
  if (program.stageTraining) return program.stageTraining[dp.stage] ?? null;
  return program.training ?? null;
}

function deviceMemory(m: RunMemoryInput, dp: DeviceProgram): DeviceRunMemory {
  const { program } = m;
  const rows = deviceRows(dp);
  const segments = program.segments.filter((s) => dp.segments.includes(s.id));
  const training = trainingOf(program, dp);
  const parameterBytes = deviceParameterBytes(m, dp, segments);
  const act = deviceActivations(m, dp, segments, rows);
  const out: DeviceRunMemory = { device: dp.rank, rows, parameterBytes, activationBytes: act.bytes, totalBytes: 0, unknownTensors: act.unknownTensors, shapeCheck: act.check };
  if (training) {
    const dims = new Map(training.parameters.map((p) => [p.name, p.dims]));
    out.gradientBytes = training.parameters.reduce((s, p) => s + elements(p.dims) * F32, 0);
    out.optimizerBytes = training.state.reduce((s, st) => s + elements(dims.get(st.param) ?? []) * F32, 0);
    const stash = m.stash?.[dp.rank];
    // The walk already counts one micro-batch's saved activations (the forward's outputs are
    // held to its end); the stash holds the others until their backwards.
    if (stash && stash.peakMicroBatches > 0) out.storedActivationBytes = (stash.peakBytes * (stash.peakMicroBatches - 1)) / stash.peakMicroBatches;
  }
  out.totalBytes = out.parameterBytes + out.activationBytes + (out.gradientBytes ?? 0) + (out.optimizerBytes ?? 0) + (out.storedActivationBytes ?? 0);
  return out;
}

type SegmentOf = Program['segments'][number];

/**
 * Parameters the device holds: the whole model's, its stage's (training keeps them resident)
 * or the sum over the segment models it loaded (a stage, its shards).
 */
function deviceParameterBytes(m: RunMemoryInput, dp: DeviceProgram, segments: readonly SegmentOf[]): number {
  if (m.program.stageTraining) return m.stageParameterBytes?.[dp.stage] ?? 0;
  let bytes = 0;
  for (const seg of segments) {
    switch (seg.kind) {
      case 'whole':
      case 'train-forward':
        // The whole model: loaded as it is, or (training) its weights resident in the worker.
        bytes += m.ir.parameterBytes;
        break;
      case 'stage':
      case 'shard':
        bytes += m.segmentParameterBytes.get(seg.id) ?? 0;
        break;
      case 'train-backward':
      case 'optimizer':
      case 'stage-forward':
      case 'stage-backward':
        // Parameters come in as inputs from the resident weights, counted once above.
        break;
      default:
        return seg satisfies never;
    }
  }
  return bytes;
}

/** The graph nodes a device runs, in execution order, and the tensors its segments hand on. */
function deviceNodes(m: RunMemoryInput, dp: DeviceProgram, segments: readonly SegmentOf[]): number[] {
  const index = new Map(m.ir.nodes.map((n, i) => [n.name, i]));
  const byName = (names: readonly string[]): number[] => names.flatMap((n) => (index.has(n) ? [index.get(n)!] : []));
  const shards = segments.filter((s): s is Extract<SegmentOf, { kind: 'shard' }> => s.kind === 'shard').sort((a, b) => a.part - b.part);
  if (shards.length > 0) return byName(shards.flatMap((s) => s.nodes));
  if (dp.stage >= 0 && m.stageNodes?.[dp.stage]) return byName(m.stageNodes[dp.stage]!);
  return [...m.ir.topoOrder];
}

/**
 * The device's activation peak at the run's shapes: shapes propagated from the actual inputs
 * at `rows`, each recorded segment output checked against them and then counted as recorded.
 */
function deviceActivations(m: RunMemoryInput, dp: DeviceProgram, segments: readonly SegmentOf[], rows: number): { bytes: number; unknownTensors: number; check: DeviceRunMemory['shapeCheck'] } {
  const { ir } = m;
  const inputShapes: Record<string, number[]> = {};
  for (const i of m.inputs) {
    const dims = [...i.dims];
    if (i.batchAxis !== null && rows > 0) dims[i.batchAxis] = rows;
    inputShapes[i.name] = dims;
  }
  const batch = batchDimName(ir);
  const dimValues = { ...nominalDims(ir), ...m.dims, ...(batch && rows > 0 ? { [batch]: rows } : {}) };
  const shapes = new Map(estimateCosts(ir, dimValues, inputShapes).shapes);
  const split = m.split;
  const recorded = new Set<string>();
  const scale = (t: string): number => (split && !recorded.has(t) && t in split.tensors ? 1 / split.devices : 1);
  const outputs = m.segmentOutputs[dp.rank] ?? [];
  const check = checkRecorded(shapes, outputs, scale, recorded, isGraphTensor(ir));
  const nodes = deviceNodes(m, dp, segments);
  const keep = heldToEnd(ir, nodes, segments, outputs);
  const act = peakActivationBytes(ir, nodes, shapes, scale, keep);
  return { ...act, check };
}

/**
 * Tensors held to the end of the device's walk: the graph's outputs, what its segments hand
 * on that none of its later nodes reads (a stage's cut edges), and everything a training
 * forward outputs (the activations its backward reads). A segment output its own later nodes
 * read (a tensor chain's partial sum, read after its all-reduce) is freed at its last use.
 */
function heldToEnd(ir: ModelIR, nodes: readonly number[], segments: readonly SegmentOf[], outputs: readonly SegmentOutputs[]): Set<string> {
  const read = new Set<string>();
  for (const i of nodes) for (const t of [...ir.nodes[i]!.inputs, ...ir.nodes[i]!.implicitInputs]) if (t) read.add(t);
  const trainingForward = new Set(segments.filter((s) => s.kind === 'train-forward' || s.kind === 'stage-forward').map((s) => s.id));
  const keep = new Set(ir.outputs.map((o) => o.name));
  for (const seg of outputs) for (const t of seg.tensors) if (trainingForward.has(seg.segment) || !read.has(t.name)) keep.add(t.name);
  return keep;
}

/** True for tensors the graph's nodes produce or read (not a step model's own tensors). */
function isGraphTensor(ir: ModelIR): (t: string) => boolean {
  const names = new Set<string>();
  for (const n of ir.nodes) for (const t of [...n.inputs, ...n.outputs]) if (t) names.add(t);
  return (t) => names.has(t);
}

/**
 * Checks recorded segment outputs against propagated shapes (elements, after the device's
 * share of a split tensor), then puts the recorded shape in their place; `recorded` collects
 * their names. Outputs that are not graph tensors (a gradient, a loss) are not checked.
 */
export function checkRecorded(
  shapes: Map<string, TensorShape>,
  outputs: readonly SegmentOutputs[],
  scale: (t: string) => number,
  recorded: Set<string>,
  isGraph: (t: string) => boolean,
): DeviceRunMemory['shapeCheck'] {
  let checked = 0;
  const mismatched: string[] = [];
  for (const seg of outputs) {
    for (const t of seg.tensors) {
      if (!isGraph(t.name) || recorded.has(t.name)) continue;
      const want = shapes.get(t.name);
      if (want) {
        checked++;
        if (Math.round(elements(want.dims) * scale(t.name)) !== elements(t.dims)) mismatched.push(t.name);
      }
      shapes.set(t.name, { dtype: t.dtype as TensorShape['dtype'], dims: [...t.dims] });
      recorded.add(t.name);
    }
  }
  return { checked, mismatched };
}

/** The options of a memory table, the same the `plan --mode tensor` command compares. */
export interface PlanTableOptions {
  devices: number;
  batch: number;
  microBatches: number;
  capacityBytes: number | null;
  dimValues?: Record<string, number>;
  /** Layers the tensor plans keep whole (`--keep-whole`). */
  keepWhole?: readonly string[];
}

/**
 * The memory table of `ir` over `devices` devices: data, pipeline, tensor and the data ×
 * tensor hybrids, each tensor plan from the shard planner (or why it has none).
 */
export function planMemoryTable(ir: ModelIR, o: PlanTableOptions, tensor: TensorShardPlan | { reason: string } = shardsOrReason(ir, o.devices, o)): MemoryTable {
  return memoryTable(ir, {
    devices: o.devices,
    batch: o.batch,
    microBatches: o.microBatches,
    capacityBytes: o.capacityBytes,
    tensor,
    hybrids: hybridShapes(o.devices).map(({ data, tensor: t }) => {
      const s = shardsOrReason(ir, t, o);
      return { data, tensor: 'groups' in s ? s : { ...s, devices: t } };
    }),
    ...(o.dimValues ? { dimValues: o.dimValues } : {}),
  });
}

/** The shard plan over `devices`, or why there is none (a model with nothing to split). */
function shardsOrReason(ir: ModelIR, devices: number, o: Pick<PlanTableOptions, 'dimValues' | 'keepWhole'>): TensorShardPlan | { reason: string } {
  try {
    return planTensorSharding(ir, devices, { ...(o.dimValues ? { dimValues: o.dimValues } : {}), ...(o.keepWhole ? { keepWhole: o.keepWhole } : {}) });
  } catch (e) {
    if (isUserError(e)) return { reason: e.message };
    throw e;
  }
}

/**
 * Which plans fit `capacityBytes` per device. For a training run each plan's devices also
 * hold gradients and optimizer state for their parameters: `trainingFactor` (trainable share
 * of the parameters × (1 + optimizer slots)) times a device's parameter bytes is added.
 */
export function fittingPlans(table: MemoryTable, capacityBytes: number, trainingFactor = 0): NonNullable<RunMemory['capacity']> {
  const fitting: string[] = [];
  const notFitting: string[] = [];
  for (const p of table.plans) {
    if (p.kind !== 'planned') continue;
    const most = Math.max(...p.devices.map((d) => d.totalBytes + d.parameterBytes * trainingFactor));
    (most <= capacityBytes ? fitting : notFitting).push(p.label);
  }
  return { bytes: capacityBytes, fitting, notFitting };
}
