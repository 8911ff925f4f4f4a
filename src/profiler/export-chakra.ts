/**
 * Export to MLCommons Chakra execution traces (`schemas/chakra/et_def.proto`), the input of
 * ASTRA-sim and the other Chakra tools, so a measured or predicted plan can be studied at
 * cluster scale.
 *
 * One file per rank (`<name>.<rank>.et`, a rank being a lane of the trace): a length-delimited
 * stream (each message prefixed by its size as a varint) of one `GlobalMetadata` and then one
 * `Node` per top-level compute or communication span of the exported steps, in start order.
 * The mapping follows the conventions of Chakra's own converters and of ASTRA-sim's feeder:
 *
 *  - compute → `COMP_NODE` with the measured (or predicted) `duration_micros`, and, when the
 *    FLOPs and bytes of the segment it ran are given, `num_ops` (int64, FLOPs) and
 *    `tensor_size` (uint64, bytes) for ASTRA-sim's roofline mode; the k-th compute span of a
 *    step on a rank ran the k-th `run` instruction of its program (segment and rows);
 *  - send → `COMM_SEND_NODE`, recv → `COMM_RECV_NODE`, with `comm_src`, `comm_dst`, `comm_tag`
 *    (int32) and `comm_size` (int64, bytes). The k-th transfer from rank a to rank b in the
 *    export carries tag k on both sides, so each send meets its receive;
 *  - collectives → `COMM_COLL_NODE` with `comm_type` (int64, a `CollectiveCommType`) and
 *    `comm_size` (int64, the buffer's bytes, as Chakra's converters write it: the program's
 *    collective instruction where the trace has a program — a Parallax span records the bytes
 *    its rank moved, which for a ring all-reduce is about twice the buffer — else the span's
 *    bytes, which imported traces give as the message size);
 *  - Parallax's host copies of batch rows → `MEM_LOAD_NODE` (scatter: rows into the device)
 *    and `MEM_STORE_NODE` (gather: outputs back), with `tensor_size` (uint64, bytes);
 *  - every node carries `is_cpu_op: false`: it is the device's (ASTRA-sim's NPU's) own work.
 *
 * Dependencies: each node has one data dependency, the node of its rank that finished last
 * before it started (the previous node in program order on a lane whose work is sequential,
 * the latest finished one where streams overlap, as in imported GPU traces). Parallax programs
 * have no ordering beyond that, so no control dependencies are written. Cross-rank order is
 * expressed the Chakra way, by matching sends and receives.
 *
 * Spans with no Chakra counterpart are left out and counted: communication of unknown kind
 * (an imported kernel without a collective name), and point-to-point transfers whose peer
 * is unknown.
 */
import { Root, type INamespace, type Type } from 'protobufjs/light';
import etDef from '../../schemas/chakra/et_def.json';
import { UserError } from '../common/errors';
import { TOOL_VERSION } from '../common/version';
import { join } from 'node:path';
import { COMM_OPS, SpanFlag, SpanKind, type CommOp, type Trace } from './trace-format';
import { writeFileAtomic } from './trace-io';
import { segmentKey } from './simulate/costs';
import type { SegmentWork } from './simulate/hardware';

const root = Root.fromJSON(etDef as INamespace);
const NodeMessage: Type = root.lookupType('ChakraProtoMsg.Node');
const MetadataMessage: Type = root.lookupType('ChakraProtoMsg.GlobalMetadata');
const NodeTypeEnum = root.lookupEnum('ChakraProtoMsg.NodeType').values;
const CollectiveEnum = root.lookupEnum('ChakraProtoMsg.CollectiveCommType').values;

/** Chakra node types Parallax writes, with their numbers from the schema. */
export const ChakraNodeType = {
  MEM_LOAD_NODE: NodeTypeEnum['MEM_LOAD_NODE'],
  MEM_STORE_NODE: NodeTypeEnum['MEM_STORE_NODE'],
  COMP_NODE: NodeTypeEnum['COMP_NODE'],
  COMM_SEND_NODE: NodeTypeEnum['COMM_SEND_NODE'],
  COMM_RECV_NODE: NodeTypeEnum['COMM_RECV_NODE'],
  COMM_COLL_NODE: NodeTypeEnum['COMM_COLL_NODE'],
} as const;

/** One `AttributeProto`: a name and exactly one of the value fields Parallax uses. */
export type ChakraAttr =
  | { name: string; bool_val: boolean }
  | { name: string; int32_val: number }
  | { name: string; int64_val: number }
  | { name: string; uint64_val: number }
  | { name: string; string_val: string };

/** A `Node` as a plain object with the schema's field names. */
export interface ChakraNode {
  id: number;
  name: string;
  type: number;
  ctrl_deps: number[];
  data_deps: number[];
  start_time_micros: number;
  duration_micros: number;
  attr: ChakraAttr[];
}

/** Which steps to export: the median step (what ASTRA-sim replays as one iteration), one step by index, or all. */
export type ChakraSteps = { kind: 'median' } | { kind: 'index'; step: number } | { kind: 'all' };

/** The nodes of one rank's file. */
export interface ChakraRank {
  rank: number;
  label: string;
  metadata: { version: string; attr: ChakraAttr[] };
  nodes: ChakraNode[];
}

/** A trace as Chakra nodes, before encoding. */
export interface ChakraExport {
  /** Step indices exported; empty when the trace has no step windows (every span is exported). */
  steps: number[];
  ranks: ChakraRank[];
  /** Spans with no Chakra counterpart, left out. */
  leftOut: { unknownComm: number; noPeer: number };
}

/** The Chakra collective type of a Parallax collective. */
function collectiveType(op: 'broadcast' | 'allgather' | 'reducescatter' | 'allreduce'): number {
  switch (op) {
    case 'allreduce':
      return CollectiveEnum['ALL_REDUCE'];
    case 'allgather':
      return CollectiveEnum['ALL_GATHER'];
    case 'reducescatter':
      return CollectiveEnum['REDUCE_SCATTER'];
    case 'broadcast':
      return CollectiveEnum['BROADCAST'];
    default: {
      const never: never = op;
      throw new Error(`unknown collective ${String(never)}`);
    }
  }
}

/** The step indices to export (see {@link ChakraSteps}); throws a {@link UserError} for a step the trace lacks. */
export function chakraStepIndices(trace: Pick<Trace, 'steps'>, choice: ChakraSteps): number[] {
  const windows = trace.steps;
  if (windows.length === 0) return [];
  switch (choice.kind) {
    case 'all':
      return windows.map((w) => w.index);
    case 'index': {
      if (!windows.some((w) => w.index === choice.step)) {
        const idx = windows.map((w) => w.index);
        throw new UserError(`--step ${choice.step}: the trace has no such step; its steps are ${idx[0]}..${idx[idx.length - 1]}`);
      }
      return [choice.step];
    }
    case 'median': {
      // The step whose length is the (lower) median: a real step, not an average of two.
      const order = windows.map((w, i) => ({ i, len: w.endUs - w.startUs })).sort((a, b) => a.len - b.len || a.i - b.i);
      return [windows[order[Math.floor((order.length - 1) / 2)].i].index];
    }
    default: {
      const never: never = choice;
      throw new Error(`unknown step choice ${JSON.stringify(never)}`);
    }
  }
}

/**
 * Converts the chosen steps of a trace to Chakra nodes, one list per rank (lane). `work`
 * (FLOPs and bytes per {@link segmentKey}) adds `num_ops` and `tensor_size` to compute nodes.
 */
export function toChakra(trace: Trace, choice: ChakraSteps = { kind: 'median' }, work: Record<string, SegmentWork> = {}): ChakraExport {
  const steps = chakraStepIndices(trace, choice);
  const wanted = new Set(steps);
  const s = trace.spans;
  const skipFlags = SpanFlag.op | SpanFlag.profiled;
  const byLane: number[][] = trace.lanes.map(() => []);
  const leftOut = { unknownComm: 0, noPeer: 0 };
  for (let i = 0; i < s.count; i++) {
    if (s.parent[i] >= 0 || (s.flags[i] & skipFlags) !== 0) continue;
    if (s.kind[i] !== SpanKind.compute && s.kind[i] !== SpanKind.comm) continue;
    if (steps.length > 0 && !wanted.has(s.step[i])) continue;
    if (s.kind[i] === SpanKind.comm) {
      const op = COMM_OPS[s.comm[i]];
      if (op === 'none' || op === undefined) {
        leftOut.unknownComm++;
        continue;
      }
      if ((op === 'send' || op === 'recv') && s.peer[i] < 0) {
        leftOut.noPeer++;
        continue;
      }
    }
    byLane[s.lane[i]]?.push(i);
  }
  const t0 = steps.length > 0 ? Math.min(...trace.steps.filter((w) => wanted.has(w.index)).map((w) => w.startUs)) : 0;
  const ranks = trace.lanes.map((lane, rank): ChakraRank => {
    // Transfers are counted per pair on each side: the k-th send a→b and the k-th recv of b from a share tag k.
    const tags = new Map<string, number>();
    const nextTag = (src: number, dst: number): number => {
      const key = `${src}>${dst}`;
      const t = tags.get(key) ?? 0;
      tags.set(key, t + 1);
      return t;
    };
    const spans = byLane[rank].sort((a, b) => s.start[a] - s.start[b] || a - b);
    // The k-th collective of a step on this rank is the k-th collective (or started collective) instruction of its program.
    const buffers = (trace.meta.program?.devices.find((d) => d.rank === rank)?.instructions ?? []).flatMap((ins) => (ins.op === 'collective' || ins.op === 'collective-start' ? [ins.bytes] : []));
    const seen = new Map<number, number>();
    const collectiveSize = (i: number): number => {
      const k = seen.get(s.step[i]) ?? 0;
      seen.set(s.step[i], k + 1);
      const b = buffers.length > 0 ? buffers[k % buffers.length] : 0;
      return b > 0 ? b : s.bytes[i];
    };
    const runs = (trace.meta.program?.devices.find((d) => d.rank === rank)?.instructions ?? []).flatMap((ins) => (ins.op === 'run' ? [ins] : []));
    const segments = new Map((trace.meta.program?.segments ?? []).map((g) => [g.id, segmentKey(g)]));
    const runsSeen = new Map<number, number>();
    const computeWork = (i: number): { numOps: number; tensorSize: number } | null => {
      const k = runsSeen.get(s.step[i]) ?? 0;
      runsSeen.set(s.step[i], k + 1);
      const ins = runs.length > 0 ? runs[k % runs.length] : undefined;
      const w = ins ? work[segments.get(ins.segment) ?? ''] : undefined;
      if (!ins || !w) return null;
      return { numOps: Math.round(w.flopsFixed + w.flopsPerRow * ins.rows), tensorSize: Math.round(w.bytesFixed + w.bytesPerRow * ins.rows) };
    };
    const nodes = spans.map((i, id) => spanNode(trace, i, id, rank, t0, { nextTag, collectiveSize, computeWork }));
    linkByFinish(spans.map((i) => [s.start[i], s.start[i] + s.dur[i]]), nodes);
    return { rank, label: lane.label, metadata: metadata(trace, rank, steps), nodes };
  });
  return { steps, ranks, leftOut };
}

/** One span as a node (dependencies are added by {@link linkByFinish}). */
function spanNode(
  trace: Trace,
  i: number,
  id: number,
  rank: number,
  t0: number,
  sizes: {
    nextTag: (src: number, dst: number) => number;
    collectiveSize: (i: number) => number;
    computeWork: (i: number) => { numOps: number; tensorSize: number } | null;
  },
): ChakraNode {
  const s = trace.spans;
  const node: ChakraNode = {
    id,
    name: trace.strings[s.name[i]] ?? '',
    type: ChakraNodeType.COMP_NODE,
    ctrl_deps: [],
    data_deps: [],
    start_time_micros: Math.max(0, Math.round(s.start[i] - t0)),
    duration_micros: Math.max(0, Math.round(s.dur[i])),
    attr: [{ name: 'is_cpu_op', bool_val: false }],
  };
  if (s.kind[i] !== SpanKind.comm) {
    const w = sizes.computeWork(i);
    if (w) node.attr.push({ name: 'num_ops', int64_val: w.numOps }, { name: 'tensor_size', uint64_val: w.tensorSize });
    return node;
  }
  const op: CommOp = COMM_OPS[s.comm[i]] ?? 'none';
  const size = Math.max(0, Math.round(s.bytes[i]));
  switch (op) {
    case 'scatter':
      node.type = ChakraNodeType.MEM_LOAD_NODE;
      node.attr.push({ name: 'tensor_size', uint64_val: size });
      break;
    case 'gather':
      node.type = ChakraNodeType.MEM_STORE_NODE;
      node.attr.push({ name: 'tensor_size', uint64_val: size });
      break;
    case 'send':
    case 'recv': {
      const send = op === 'send';
      const src = send ? rank : s.peer[i];
      const dst = send ? s.peer[i] : rank;
      node.type = send ? ChakraNodeType.COMM_SEND_NODE : ChakraNodeType.COMM_RECV_NODE;
      node.attr.push(
        { name: 'comm_src', int32_val: src },
        { name: 'comm_dst', int32_val: dst },
        { name: 'comm_size', int64_val: size },
        { name: 'comm_tag', int32_val: sizes.nextTag(src, dst) },
      );
      break;
    }
    case 'broadcast':
    case 'allgather':
    case 'reducescatter':
    case 'allreduce':
      node.type = ChakraNodeType.COMM_COLL_NODE;
      node.attr.push({ name: 'comm_type', int64_val: collectiveType(op) }, { name: 'comm_size', int64_val: Math.max(0, Math.round(sizes.collectiveSize(i))) });
      break;
    case 'none':
      // Filtered out by the caller; kept as compute here only to make the switch exhaustive.
      break;
    default: {
      const never: never = op;
      throw new Error(`unknown communication operation ${String(never)}`);
    }
  }
  return node;
}

/**
 * Gives every node a data dependency on the node that finished last at or before its start
 * (within half a microsecond, the clocks' rounding). `times` are [start, end] in the nodes'
 * order, which is start order.
 */
function linkByFinish(times: [number, number][], nodes: ChakraNode[]): void {
  const byEnd = times.map((_, k) => k).sort((a, b) => times[a][1] - times[b][1] || a - b);
  let p = 0;
  let last = -1;
  for (let k = 0; k < times.length; k++) {
    const start = times[k][0];
    while (p < byEnd.length && times[byEnd[p]][1] <= start + 0.5) {
      // A node cannot depend on itself or on one that starts after it.
      if (byEnd[p] < k) last = byEnd[p];
      p++;
    }
    if (last >= 0) nodes[k].data_deps.push(nodes[last].id);
  }
}

/** The `GlobalMetadata` of a rank's file: where the trace came from and what it holds. */
function metadata(trace: Trace, rank: number, steps: number[]): ChakraRank['metadata'] {
  const m = trace.meta;
  // `version` is left empty, as Chakra's own converters leave it; `schema` names what was converted.
  return {
    version: '',
    attr: [
      { name: 'schema', string_val: `parallax-trace ${m.formatVersion}` },
      { name: 'producer', string_val: `parallax ${TOOL_VERSION}` },
      { name: 'source', string_val: m.source },
      { name: 'mode', string_val: m.mode },
      { name: 'rank', int64_val: rank },
      { name: 'world_size', int64_val: trace.lanes.length },
      { name: 'device', string_val: trace.lanes[rank]?.label ?? '' },
      { name: 'steps', string_val: steps.length > 0 ? steps.join(',') : 'all' },
    ],
  };
}

/** One rank's file: the metadata and the nodes, each length-delimited. */
export function encodeChakraRank(r: ChakraRank): Uint8Array {
  const parts: Uint8Array[] = [MetadataMessage.encodeDelimited(MetadataMessage.fromObject(r.metadata)).finish()];
  for (const n of r.nodes) parts.push(NodeMessage.encodeDelimited(NodeMessage.fromObject(n)).finish());
  return Buffer.concat(parts);
}

/** Writes `<dir>/<name>.<rank>.et` for every rank, atomically; returns the files and the export. */
export async function writeChakraTrace(
  trace: Trace,
  dir: string,
  name: string,
  choice: ChakraSteps,
  work: Record<string, SegmentWork> = {},
): Promise<{ files: string[]; export: ChakraExport }> {
  const exp = toChakra(trace, choice, work);
  const files: string[] = [];
  for (const r of exp.ranks) {
    const file = join(dir, `${name}.${r.rank}.et`);
    await writeFileAtomic(file, encodeChakraRank(r));
    files.push(file);
  }
  return { files, export: exp };
}
