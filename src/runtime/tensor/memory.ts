/**
 * Memory per device for every plan, computed from the graph IR before anything runs.
 *
 * Parameters are exact: the bytes of the weight-typed initializers and Constant tensors
 * (`ir.parameterBytes`), whole on every device for data parallelism, per stage for a
 * pipeline (the partitioner's stages on estimated costs, each stage counting the weights it
 * reads, copies included), and per the shard map for tensor parallelism.
 *
 * Activations are an estimate of the peak: shapes come from shape propagation
 * ({@link estimateCosts}) at the rows one device handles (data: its shard of the batch;
 * pipeline: one micro-batch; tensor: the whole batch, tensors inside a split region at 1/N;
 * hybrid: one replica's share of the batch, split tensors at 1/T),
 * and the nodes are walked in execution order, each tensor held from the node that makes it
 * (from the start, for inputs) to the last node that reads it (to the end, for outputs).
 * The peak is the largest sum of held tensors while a node runs (its inputs and its
 * outputs at once). It leaves out what ONNX Runtime adds (its arena's rounding, kernel
 * scratch space, tensors queued between pipeline stages) and what it saves (in-place
 * kernels), so it is a planning figure, not a measurement. Tensors whose shape stays unknown
 * count zero and are counted in `unknownTensors`.
 */
import { UserError } from '../../common/errors';
import { byteSize } from '../onnx/dtypes';
import { estimateCosts, type ModelIR, type TensorShape } from '../onnx/model';
import { batchDimName, estimateNodeCostsUs, isConstantNode, nominalDims, partitionPipeline } from '../pipeline/partition';
import type { TensorShardPlan } from './shard-plan';

/** The memory one device of a plan holds. */
export interface DeviceMemory {
  device: number;
  parameterBytes: number;
  /** Estimated peak activation bytes. */
  activationBytes: number;
  /** Held tensors whose shape is unknown (counted as zero). */
  unknownTensors: number;
  totalBytes: number;
}

/** A plan's memory per device, or why the plan cannot be made for this model. */
export type PlanMemory =
  | { kind: 'planned'; mode: MemoryPlanMode; label: string; rows: number; devices: DeviceMemory[]; maxBytes: number; fits: boolean | null }
  | { kind: 'impossible'; mode: MemoryPlanMode; label: string; reason: string };

/** The modes a memory table compares. */
export type MemoryPlanMode = 'data' | 'pipeline' | 'tensor' | 'hybrid';

/** The memory table of a model over N devices. */
export interface MemoryTable {
  devices: number;
  batch: number;
  microBatches: number;
  /** Capacity per device in bytes, or null when none was given. */
  capacityBytes: number | null;
  /** The model's parameter bytes (whole). */
  parameterBytes: number;
  plans: PlanMemory[];
  /** Labels of the plans that fit the capacity (empty without one). */
  fitting: string[];
  /** Labels of the plans that do not. */
  notFitting: string[];
}

/** Options for {@link memoryTable}. */
export interface MemoryTableOptions {
  devices: number;
  /** Global batch rows. */
  batch: number;
  /** Pipeline micro-batches (rows per micro-batch: batch / microBatches, rounded up). */
  microBatches: number;
  capacityBytes: number | null;
  /** The tensor plan, or the reason there is none (nothing to split). */
  tensor: TensorShardPlan | { reason: string };
  /**
   * Data × tensor hybrids to compare (data × tensor = devices): each with the shard plan of
   * one replica over `tensor.devices` devices, or the reason there is none.
   */
  hybrids?: { data: number; tensor: TensorShardPlan | { reason: string; devices: number } }[];
  dimValues?: Record<string, number>;
}

/** Memory per device of the data, pipeline, tensor (and hybrid) plans of `ir` over `opts.devices` devices. */
export function memoryTable(ir: ModelIR, opts: MemoryTableOptions): MemoryTable {
  const n = opts.devices;
  const hybrids = (opts.hybrids ?? []).map((h) => hybridMemory(ir, opts, h.data, h.tensor));
  const plans: PlanMemory[] = [dataMemory(ir, opts), pipelineMemory(ir, opts), tensorMemory(ir, opts), ...hybrids].map((p) =>
    p.kind === 'planned' ? { ...p, fits: opts.capacityBytes === null ? null : p.maxBytes <= opts.capacityBytes } : p,
  );
  const planned = plans.filter((p): p is Extract<PlanMemory, { kind: 'planned' }> => p.kind === 'planned');
  return {
    devices: n,
    batch: opts.batch,
    microBatches: opts.microBatches,
    capacityBytes: opts.capacityBytes,
    parameterBytes: ir.parameterBytes,
    plans,
    fitting: planned.filter((p) => p.fits === true).map((p) => p.label),
    notFitting: planned.filter((p) => p.fits === false).map((p) => p.label),
  };
}

/**
 * Estimated peak bytes of the activations held while `nodes` run in the given order (see the
 * module comment). `scale` gives the share of a tensor one device holds (1 for a whole one).
 * `keep` names tensors held to the end (outputs the segment hands on).
 */
export function peakActivationBytes(
  ir: ModelIR,
  nodes: readonly number[],
  shapes: Map<string, TensorShape>,
  scale: (tensor: string) => number = () => 1,
  keep: ReadonlySet<string> = new Set(ir.outputs.map((o) => o.name)),
): { bytes: number; unknownTensors: number } {
  const isParameter = (t: string): boolean => ir.initializerByName.has(t) || ir.constants.has(t);
  const lastUse = new Map<string, number>();
  const producedHere = new Set<string>();
  nodes.forEach((idx, pos) => {
    const node = ir.nodes[idx];
    for (const t of [...node.inputs, ...node.implicitInputs]) if (t && !isParameter(t)) lastUse.set(t, pos);
    for (const t of node.outputs) if (t) producedHere.add(t);
  });
  const unknown = new Set<string>();
  const size = (t: string): number => {
    const s = shapes.get(t);
    if (!s) {
      unknown.add(t);
      return 0;
    }
    return (byteSize(s.dtype, s.dims.reduce((a, b) => a * b, 1)) ?? 0) * scale(t);
  };
  // Tensors that come from outside the segment are held from the start.
  let held = 0;
  for (const t of lastUse.keys()) if (!producedHere.has(t)) held += size(t);
  let peak = held;
  nodes.forEach((idx, pos) => {
    const node = ir.nodes[idx];
    if (isConstantNode(node)) return;
    for (const t of node.outputs) if (t) held += size(t);
    peak = Math.max(peak, held);
    // After the node: free what nobody reads later (its own unread outputs included).
    const done = new Set<string>();
    for (const t of [...node.inputs, ...node.implicitInputs, ...node.outputs]) {
      if (!t || isParameter(t) || done.has(t) || keep.has(t)) continue;
      const last = lastUse.get(t);
      if (last === undefined || last <= pos) {
        done.add(t);
        held -= size(t);
      }
    }
  });
  return { bytes: peak, unknownTensors: unknown.size };
}

/** Shapes at `rows` batch rows (nominal values for other symbolic dimensions). */
function shapesAt(ir: ModelIR, rows: number, dimValues: Record<string, number> = {}): Map<string, TensorShape> {
  const batch = batchDimName(ir);
  return estimateCosts(ir, { ...nominalDims(ir), ...dimValues, ...(batch ? { [batch]: rows } : {}) }).shapes;
}

function device(deviceIndex: number, parameterBytes: number, act: { bytes: number; unknownTensors: number }): DeviceMemory {
  return { device: deviceIndex, parameterBytes, activationBytes: act.bytes, unknownTensors: act.unknownTensors, totalBytes: parameterBytes + act.bytes };
}

function planned(mode: MemoryPlanMode, label: string, rows: number, devices: DeviceMemory[]): PlanMemory {
  return { kind: 'planned', mode, label, rows, devices, maxBytes: Math.max(...devices.map((d) => d.totalBytes)), fits: null };
}

function dataMemory(ir: ModelIR, o: MemoryTableOptions): PlanMemory {
  // Shards as even as possible: the largest device holds ceil(batch / N) rows.
  const rows = Math.ceil(o.batch / o.devices);
  const act = peakActivationBytes(ir, ir.topoOrder, shapesAt(ir, rows, o.dimValues));
  return planned('data', `data ×${o.devices}`, rows, Array.from({ length: o.devices }, (_, d) => device(d, ir.parameterBytes, act)));
}

function pipelineMemory(ir: ModelIR, o: MemoryTableOptions): PlanMemory {
  const label = `pipeline ×${o.devices}`;
  const rows = Math.ceil(o.batch / o.microBatches);
  let partition;
  try {
    partition = partitionPipeline(ir, estimateNodeCostsUs(ir, o.dimValues), o.devices, { costSource: 'estimated', ...(o.dimValues ? { dimValues: o.dimValues } : {}) });
  } catch (e) {
    if (e instanceof UserError) return { kind: 'impossible', mode: 'pipeline', label, reason: e.message };
    throw e;
  }
  const shapes = shapesAt(ir, rows, o.dimValues);
  const devices = partition.stages.map((st) => {
    const keep = new Set(st.outputs.map((x) => x.name));
    return device(st.index, st.parameterBytes, peakActivationBytes(ir, st.nodeIndices, shapes, () => 1, keep));
  });
  return planned('pipeline', label, rows, devices);
}

function tensorMemory(ir: ModelIR, o: MemoryTableOptions): PlanMemory {
  const label = `tensor ×${o.devices}`;
  if (!('groups' in o.tensor)) return { kind: 'impossible', mode: 'tensor', label, reason: o.tensor.reason };
  const plan = o.tensor;
  const split = plan.splitTensors;
  const act = peakActivationBytes(ir, ir.topoOrder, shapesAt(ir, o.batch, o.dimValues), (t) => (t in split ? 1 / plan.devices : 1));
  return planned('tensor', label, o.batch, plan.perDeviceParameterBytes.map((b, d) => device(d, b, act)));
}

/** The ways to write `devices` as data × tensor with both at least 2 (the hybrids a table compares). */
export function hybridShapes(devices: number): { data: number; tensor: number }[] {
  const out: { data: number; tensor: number }[] = [];
  for (let data = 2; data <= devices / 2; data++) if (devices % data === 0) out.push({ data, tensor: devices / data });
  return out;
}

function hybridMemory(ir: ModelIR, o: MemoryTableOptions, data: number, shard: TensorShardPlan | { reason: string; devices: number }): PlanMemory {
  const tensor = shard.devices;
  const label = `data ${data} × tensor ${tensor}`;
  if (!('groups' in shard)) return { kind: 'impossible', mode: 'hybrid', label, reason: shard.reason };
  if (data * tensor !== o.devices) throw new Error(`hybrid ${label} compared over ${o.devices} devices`);
  const rows = Math.ceil(o.batch / data);
  const split = shard.splitTensors;
  const act = peakActivationBytes(ir, ir.topoOrder, shapesAt(ir, rows, o.dimValues), (t) => (t in split ? 1 / tensor : 1));
  const devices = Array.from({ length: data }, (_, r) => shard.perDeviceParameterBytes.map((b, t) => device(r * tensor + t, b, act))).flat();
  return planned('hybrid', label, rows, devices);
}
