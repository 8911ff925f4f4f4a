/**
 * The cost table the simulator runs a program on: compute per (rank, segment, phase) with a
 * fallback per device kind, α–β link costs per transfer class, an optional slowdown factor
 * per rank, and optionally the bytes each instruction was measured to move.
 *
 * Records keyed by strings (not Maps) so a cost model can be written to JSON as it is.
 */
import type { CollectiveOp, Phase } from '../span-vocabulary';
import type { DeviceMeta } from '../trace-format';
import type { Instruction, Segment } from '../program';
import type { Topology } from './hardware';

/** A run of `rows` rows costs `fixedUs + perRowUs · rows`. */
export interface ComputeCost {
  fixedUs: number;
  perRowUs: number;
  /**
   * Row sizes the fit saw (absent for hand-written costs). With a single size the fit cannot
   * separate the fixed part; see fit.ts for how it extrapolates then.
   */
  rowSizes?: number[];
}

/** A link: a transfer of `bytes` costs `alphaUs + bytes / bytesPerUs` (β in bytes per µs). */
export interface Link {
  alphaUs: number;
  /** Bytes per µs; `Infinity` when bandwidth costs nothing measurable. */
  bytesPerUs: number;
}

/**
 * Transfer classes: host copies between the shared global batch and a device (`scatter`,
 * `gather`), point to point (`send`, `recv`), collectives over a group.
 */
export type TransferClass = 'copy' | 'p2p' | 'collective';

/** Bytes an instruction was measured to move, with what identifies the instruction. */
export interface MeasuredBytes {
  op: Instruction['op'];
  micro: number;
  bytes: number;
}

/** Everything the simulator needs to put a duration on an instruction. */
export interface CostModel {
  /** Key {@link computeKey}(rank, {@link segmentKey}(segment), phase). */
  compute: Record<string, ComputeCost>;
  /** Fallback when a rank has no entry; key {@link kindKey}(device kind, {@link segmentKey}(segment), phase). */
  computeByKind?: Record<string, ComputeCost>;
  transfers: Record<TransferClass, Link>;
  /** Slowdown of compute per rank (measured interference), default 1. */
  interference?: Record<string, number>;
  /**
   * A receive's own cost: copying the arrived data out of the channel (the transfer itself
   * is charged on the send). Absent: free.
   */
  recv?: Link;
  /**
   * Host time per instruction per rank, µs (key: rank): the gaps a device's thread spends
   * between its own spans (JavaScript, dispatch, the step barrier's release). Absent: 0.
   */
  hostUs?: Record<string, number>;
  /**
   * The point-to-point channels' slots (the measured run's `meta.channel`): a message takes
   * ⌈bytes / slotBytes⌉ slots, at least one, and a send that finds too few free waits for its
   * receiver. Absent: unbounded.
   */
  channel?: { slots: number; slotBytes: number };
  /** Measured bytes per instruction; key {@link bytesKey}(rank, instruction index). */
  bytes?: Record<string, MeasuredBytes>;
  /** What the fit could not determine and how it filled the gap. */
  notes?: string[];
  /**
   * A multi-node machine (projections): sends take the intra- or inter-node link between
   * their ranks and collectives the two-level cost instead of `transfers.p2p`/`collective`.
   */
  topology?: Topology;
}

/**
 * What a segment is, independent of its id: ids number the segments of one program, so the
 * same id means different models in a data and a pipeline program, and costs fitted on one
 * must not be read for the other. A stage is named by its first and last node and size.
 */
export function segmentKey(seg: Segment): string {
  switch (seg.kind) {
    case 'whole':
      return 'whole';
    case 'stage':
      return `stage ${seg.stage} [${seg.nodes[0] ?? ''}..${seg.nodes[seg.nodes.length - 1] ?? ''}, ${seg.nodes.length} nodes]`;
    case 'train-forward':
    case 'optimizer':
      return seg.kind;
    case 'train-backward':
      return `${seg.kind} ${seg.bucket}`;
    case 'shard':
      return `shard ${seg.rank} part ${seg.part} [${seg.nodes[0] ?? ''}..${seg.nodes[seg.nodes.length - 1] ?? ''}, ${seg.nodes.length} nodes]`;
    case 'stage-forward':
      return `${seg.kind} ${seg.stage}`;
    case 'stage-backward':
      return `${seg.kind} ${seg.stage}${seg.piece !== undefined ? ` piece ${seg.piece}` : ''}`;
    default: {
      const never: never = seg;
      throw new Error(`unknown segment ${JSON.stringify(never)}`);
    }
  }
}

/** Key of {@link CostModel.compute}; `segment` is a {@link segmentKey}. */
export function computeKey(rank: number, segment: string, phase: Phase): string {
  return `${rank}|${segment}|${phase}`;
}

/** Key of {@link CostModel.computeByKind}; `segment` is a {@link segmentKey}. */
export function kindKey(kind: DeviceMeta['kind'], segment: string, phase: Phase): string {
  return `${kind}|${segment}|${phase}`;
}

/** Sets the compute cost of `segment` in `phase` on `rank` (hand-written cost tables). */
export function setComputeCost(costs: CostModel, rank: number, segment: Segment, phase: Phase, cost: ComputeCost): void {
  costs.compute[computeKey(rank, segmentKey(segment), phase)] = cost;
}

/** Key of {@link CostModel.bytes}: an instruction by rank and index in its list. */
export function bytesKey(rank: number, index: number): string {
  return `${rank}:${index}`;
}

/** A link that costs nothing (the default where a class has no measurement). */
export const FREE_LINK: Link = { alphaUs: 0, bytesPerUs: Infinity };

/** α + bytes/β. */
export function linkUs(bytes: number, link: Link): number {
  return link.alphaUs + (bytes > 0 ? bytes / link.bytesPerUs : 0);
}

/** Ring all-reduce of `bytes` over `n` ranks: 2(n−1)/n · bytes/β + 2(n−1)·α. */
export function ringAllReduceUs(bytes: number, n: number, link: Link): number {
  if (n <= 1) return 0;
  return ((2 * (n - 1)) / n) * (bytes / link.bytesPerUs) + 2 * (n - 1) * link.alphaUs;
}

/** Ring all-gather / reduce-scatter of `bytes` (the full buffer) over `n` ranks: (n−1)/n · bytes/β + (n−1)·α. */
export function ringAllGatherUs(bytes: number, n: number, link: Link): number {
  if (n <= 1) return 0;
  return ((n - 1) / n) * (bytes / link.bytesPerUs) + (n - 1) * link.alphaUs;
}

/** Broadcast of `bytes`, pipelined along a ring: bytes/β + α. */
export function broadcastUs(bytes: number, n: number, link: Link): number {
  return n <= 1 ? 0 : bytes / link.bytesPerUs + link.alphaUs;
}

/**
 * The coefficients of a collective's ring cost: cost = a/β + b·α. One formula for both the
 * simulator and the fit, so they cannot drift apart.
 */
export function collectiveTerms(op: CollectiveOp, bytes: number, n: number): { a: number; b: number } {
  if (n <= 1) return { a: 0, b: 0 };
  switch (op) {
    case 'allreduce':
      return { a: ((2 * (n - 1)) / n) * bytes, b: 2 * (n - 1) };
    case 'allgather':
    case 'reducescatter':
      return { a: ((n - 1) / n) * bytes, b: n - 1 };
    case 'broadcast':
      return { a: bytes, b: 1 };
    default: {
      const never: never = op;
      throw new Error(`unknown collective ${String(never)}`);
    }
  }
}

/** The textbook ring cost of a collective. */
export function collectiveUs(op: CollectiveOp, bytes: number, n: number, link: Link): number {
  switch (op) {
    case 'allreduce':
      return ringAllReduceUs(bytes, n, link);
    case 'allgather':
    case 'reducescatter':
      return ringAllGatherUs(bytes, n, link);
    case 'broadcast':
      return broadcastUs(bytes, n, link);
    default: {
      const never: never = op;
      throw new Error(`unknown collective ${String(never)}`);
    }
  }
}

/**
 * The compute cost of a segment on a rank: the rank's own entry, else the entry for its
 * device kind; throws when neither exists, since a guessed cost would make a silent lie.
 */
export function computeCostOf(
  costs: CostModel,
  rank: number,
  kind: DeviceMeta['kind'] | undefined,
  segment: Segment,
  phase: Phase,
): ComputeCost {
  const seg = segmentKey(segment);
  const own = costs.compute[computeKey(rank, seg, phase)];
  if (own) return own;
  const byKind = kind === undefined ? undefined : costs.computeByKind?.[kindKey(kind, seg, phase)];
  if (byKind) return byKind;
  throw new Error(`no compute cost for rank ${rank} (${kind ?? 'unknown kind'}), segment ${segment.id} (${seg}), phase ${phase}`);
}

/** Duration of a run of `rows` rows, slowed by the rank's interference factor. */
export function runUs(cost: ComputeCost, rows: number, interference = 1): number {
  return (cost.fixedUs + cost.perRowUs * rows) * interference;
}
