/**
 * Tensor parallelism (tensor and data × tensor runs): what each split layer's collectives
 * cost inside the step, and what its split saves.
 *
 * Every forward all-reduce of a tensor group is a synchronisation point: a device that reaches
 * it first waits there for the last one to arrive, then the partial sums travel. So a
 * collective span holds two different times, and they are told apart here from the spans of
 * all devices of the group at that collective (the k-th forward all-reduce of a step on each):
 *  - `waitUs`: from the device's arrival to the last device's arrival — skew between the
 *    devices' compute since the previous collective (uneven work, a device preempted), not
 *    bytes;
 *  - `transferUs`: from the last arrival to the device's end — the reduction itself.
 * The k-th all-reduce is matched to its layer by the label its span carries
 * (`allreduce.ring (/layers.3/mlp)`), else by position in the plan's groups.
 *
 * The split compute of a layer (what its split nodes cost on one device) comes from the
 * operator detail (`opIndex`: the operator-profiled steps) when the trace has it: the operators whose model node is one of
 * the group's `nodes` (recorded by the plan). Kept whole, those nodes would run on every
 * device at T times that (the work of T shards), so splitting a layer saves (T − 1) × its
 * split compute per step and costs its collectives' transfer.
 */
import { PhaseCode, SpanKind, type Trace } from '../trace-format';
import { CommOpCode } from '../span-vocabulary';
import { median } from '../stats';
import { modelNodeName } from './ops';
import type { SpanIndex } from './span-index';

/** One split layer (a group of the shard plan) and what it costs per step. */
export interface TensorLayer {
  label: string;
  /** Forward all-reduces per step matched to it. */
  allReduces: number;
  /** Bytes one all-reduce of the layer reduces (the whole tensor), from the spans. */
  bytes: number;
  /** Median per step, mean over the group's devices: the whole collective spans. */
  collectiveUs: number;
  /** …of which waiting for the last device of the group to arrive. */
  waitUs: number;
  /** …of which the reduction after the last arrival. */
  transferUs: number;
  /** Per device, the split nodes' operator time per step (median over profiled steps, mean over devices); null without operator detail. */
  splitComputeUs: number | null;
}

export interface TensorAnalysis {
  /** Devices each split weight is shared over. */
  tensor: number;
  /** Replica groups of lanes (one for a tensor run; `data` of them for data × tensor). */
  groups: number[][];
  layers: TensorLayer[];
  /** Per step, the sum over the layers (collective, wait, transfer), median over steps. */
  collectiveUs: number;
  waitUs: number;
  transferUs: number;
  /** Median step, µs. */
  stepUs: number;
}

interface RecordedGroup {
  label: string;
  allReduces: number;
  nodes?: string[];
}

function recordedGroups(trace: Trace): { tensor: number; data: number; groups: RecordedGroup[] } | null {
  const p = trace.meta.plan as unknown as Record<string, unknown>;
  const mode = trace.meta.mode;
  if (mode !== 'tensor' && !(mode === 'hybrid' && typeof p['tensor'] === 'number')) return null;
  const groups = p['groups'];
  if (!Array.isArray(groups) || groups.length === 0) return null;
  const ok = groups.every((g) => g && typeof g === 'object' && typeof (g as RecordedGroup).label === 'string' && typeof (g as RecordedGroup).allReduces === 'number');
  if (!ok) return null;
  const n = trace.lanes.length;
  const tensor = typeof p['tensor'] === 'number' ? (p['tensor'] as number) : n;
  const data = mode === 'hybrid' && typeof p['data'] === 'number' ? (p['data'] as number) : 1;
  if (!(tensor >= 2) || data * tensor !== n) return null;
  return { tensor, data, groups: groups as RecordedGroup[] };
}

const LABEL = /\(([^()]+)\)\s*$/;

/** The forward all-reduce spans of one lane in one step, in start order. */
function forwardAllReduces(ix: SpanIndex, lane: number, step: number): number[] {
  const s = ix.trace.spans;
  const out: number[] = [];
  const b = lane * ix.nSteps + step;
  for (let j = ix.busyOffset[b]; j < ix.busyOffset[b + 1]; j++) {
    const i = ix.busy[j];
    if (s.kind[i] !== SpanKind.comm || s.comm[i] !== CommOpCode.allreduce) continue;
    if (s.phase[i] === PhaseCode.backward || s.phase[i] === PhaseCode.optimizer) continue;
    out.push(i);
  }
  return out;
}

/** The per-layer collective and split-compute costs of a tensor or data × tensor run; null for other runs. */
export function analyseTensor(ix: SpanIndex, opIndex: () => SpanIndex): TensorAnalysis | null {
  const trace = ix.trace;
  const rec = recordedGroups(trace);
  if (!rec || ix.nSteps === 0) return null;
  const { tensor, data } = rec;
  const replicaLanes = Array.from({ length: data }, (_, r) => Array.from({ length: tensor }, (_, k) => r * tensor + k));
  // The layer of the k-th forward all-reduce, by position in the recorded groups.
  const byPosition: number[] = [];
  rec.groups.forEach((g, gi) => {
    for (let k = 0; k < g.allReduces; k++) byPosition.push(gi);
  });
  const labelIndex = new Map(rec.groups.map((g, gi) => [g.label, gi]));
  const s = trace.spans;
  const nL = rec.groups.length;
  // Per layer and step: sums over the devices of all replicas (divided by the device count below).
  const coll = rec.groups.map(() => new Float64Array(ix.nSteps));
  const wait = rec.groups.map(() => new Float64Array(ix.nSteps));
  const xfer = rec.groups.map(() => new Float64Array(ix.nSteps));
  const bytes = new Float64Array(nL);
  const seen = new Uint8Array(nL);
  let complete = 0;
  for (let st = 0; st < ix.nSteps; st++) {
    let stepOk = true;
    for (const lanes of replicaLanes) {
      const perLane = lanes.map((l) => forwardAllReduces(ix, l, st));
      const count = Math.min(...perLane.map((x) => x.length));
      if (count === 0 || perLane.some((x) => x.length !== count)) {
        stepOk = false;
        continue;
      }
      for (let k = 0; k < count; k++) {
        const spans = perLane.map((x) => x[k]!);
        const m = LABEL.exec(trace.strings[s.name[spans[0]!]!] ?? '');
        const gi = (m ? labelIndex.get(m[1]!) : undefined) ?? byPosition[k];
        if (gi === undefined) continue;
        seen[gi] = 1;
        const lastArrival = Math.max(...spans.map((i) => s.start[i]!));
        for (const i of spans) {
          const end = s.start[i]! + s.dur[i]!;
          coll[gi]![st] += s.dur[i]!;
          wait[gi]![st] += Math.max(0, Math.min(end, lastArrival) - s.start[i]!);
          xfer[gi]![st] += Math.max(0, end - Math.max(lastArrival, s.start[i]!));
          bytes[gi] = Math.max(bytes[gi]!, s.bytes[i]!);
        }
      }
    }
    if (stepOk) complete++;
  }
  if (complete === 0) return null;
  const devices = tensor * data;
  const med = (a: Float64Array): number => median(Array.from(a, (v) => v / devices));
  const split = splitCompute(opIndex, rec.groups);
  const layers: TensorLayer[] = rec.groups.map((g, gi) => ({
    label: g.label,
    allReduces: g.allReduces,
    bytes: bytes[gi]!,
    collectiveUs: seen[gi] ? med(coll[gi]!) : 0,
    waitUs: seen[gi] ? med(wait[gi]!) : 0,
    transferUs: seen[gi] ? med(xfer[gi]!) : 0,
    splitComputeUs: split ? split[gi]! : null,
  }));
  // Totals per step first, then their median (a sum of per-layer medians understates a step
  // whose layers are slow at different times).
  const total = (per: Float64Array[]): number => med(Float64Array.from({ length: ix.nSteps }, (_, st) => per.reduce((a, x) => a + x[st]!, 0)));
  return {
    tensor,
    groups: replicaLanes,
    layers,
    collectiveUs: total(coll),
    waitUs: total(wait),
    transferUs: total(xfer),
    stepUs: median(Array.from(ix.stepUs)),
  };
}

/**
 * Per group, the operator time per step (per device) of its split nodes in the
 * operator-profiled steps; null when the trace has no operator detail or the plan recorded no
 * node lists.
 */
function splitCompute(opIndex: () => SpanIndex, groups: readonly RecordedGroup[]): number[] | null {
  if (!groups.every((g) => Array.isArray(g.nodes) && g.nodes.length > 0)) return null;
  const ix = opIndex();
  const opView = ix.trace;
  if (ix.ops.length === 0 || ix.nSteps === 0) return null;
  const groupOf = new Map<string, number>();
  groups.forEach((g, gi) => g.nodes!.forEach((n) => groupOf.set(n, gi)));
  const known = new Set(groupOf.keys());
  const s = opView.spans;
  const perStep = groups.map(() => new Float64Array(ix.nSteps));
  const byName = new Map<number, number>();
  for (const i of ix.ops) {
    let gi = byName.get(s.name[i]!);
    if (gi === undefined) {
      gi = groupOf.get(modelNodeName(opView.strings[s.name[i]!] ?? '', known)) ?? -1;
      byName.set(s.name[i]!, gi);
    }
    if (gi >= 0) perStep[gi]![ix.stepPos[i]!] += s.dur[i]!;
  }
  const lanes = Math.max(1, ix.nLanes);
  return perStep.map((a) => median(Array.from(a, (v) => v / lanes)));
}
