/**
 * Typed, validated reads of `meta.plan`, which the trace format keeps as a free-form record
 * (its fields depend on the mode). Every field the analyses and findings use is listed here
 * with its meaning; a field that is missing or malformed reads as null and the analysis or
 * rule that needs it is skipped rather than guessed.
 */
import type { Trace } from '../trace-format';

export interface PlanView {
  /** `batch`: global batch (rows per step). */
  batch: number | null;
  /** `shards`: data parallel, rows per device in lane order. */
  shards: number[] | null;
  /** `devices`: the device spec as run, e.g. `cpu:2` or `cpu:1,webgpu:1`. */
  devices: string | null;
  /** `stages`: pipeline, number of stages K. */
  stages: number | null;
  /** `microBatches`: pipeline, micro-batches per step M. */
  microBatches: number | null;
  /** `schedule`: pipeline schedule, `gpipe` or `1f1b`. */
  schedule: string | null;
  /** `cuts`: pipeline, the node names after which the graph is cut (K − 1 of them). */
  cuts: string[] | null;
  /** `stageNodes`: pipeline, per stage the ONNX node names in it, in topological order. */
  stageNodes: string[][] | null;
  /** `nodeCostUs`: measured cost of every node (µs) from the calibration run. */
  nodeCostUs: Record<string, number> | null;
  /** `microBatchRows`: rows per micro-batch of the run (pipeline). */
  microBatchRows: number | null;
  /**
   * `nodeCostUsAlt`: a second calibration at another micro-batch size (`rows`), so that the
   * cost of a micro-batch can be modelled as fixed + per-row (see analysis/pipeline.ts).
   */
  nodeCostUsAlt: { rows: number; costs: Record<string, number> } | null;
}

const posNumber = (v: unknown): number | null => (typeof v === 'number' && Number.isFinite(v) && v > 0 ? v : null);

const numberArray = (v: unknown): number[] | null =>
  Array.isArray(v) && v.length > 0 && v.every((x) => typeof x === 'number' && Number.isFinite(x)) ? (v as number[]) : null;

const stringArray = (v: unknown): string[] | null => (Array.isArray(v) && v.every((x) => typeof x === 'string') ? (v as string[]) : null);

/** Reads the plan fields the analyses use. */
export function readPlan(trace: Pick<Trace, 'meta'>): PlanView {
  const p = trace.meta.plan;
  const stageNodesRaw = p['stageNodes'];
  const stageNodes =
    Array.isArray(stageNodesRaw) && stageNodesRaw.length > 0 && stageNodesRaw.every((x) => stringArray(x) !== null)
      ? (stageNodesRaw as string[][])
      : null;
  const costRaw = p['nodeCostUs'];
  let nodeCostUs: Record<string, number> | null = null;
  if (costRaw !== null && typeof costRaw === 'object' && !Array.isArray(costRaw)) {
    const entries = Object.entries(costRaw as Record<string, unknown>);
    if (entries.every(([, v]) => typeof v === 'number' && Number.isFinite(v) && v >= 0)) nodeCostUs = costRaw as Record<string, number>;
  }
  const altRaw = p['nodeCostUsAlt'] as { rows?: unknown; costs?: unknown } | undefined;
  const nodeCostUsAlt =
    altRaw && typeof altRaw === 'object' && posNumber(altRaw.rows) !== null && altRaw.costs !== null && typeof altRaw.costs === 'object'
      ? { rows: altRaw.rows as number, costs: altRaw.costs as Record<string, number> }
      : null;
  return {
    batch: posNumber(p['batch']),
    microBatchRows: posNumber(p['microBatchRows']),
    nodeCostUsAlt,
    shards: numberArray(p['shards']),
    devices: typeof p['devices'] === 'string' ? p['devices'] : null,
    stages: posNumber(p['stages']),
    microBatches: posNumber(p['microBatches']),
    schedule: typeof p['schedule'] === 'string' ? p['schedule'] : null,
    cuts: stringArray(p['cuts']),
    stageNodes,
    nodeCostUs,
  };
}

/**
 * A device spec (`kind:count,…`, the form `--devices` takes) for a set of lanes, counting the
 * lanes' device kinds in the order they first appear.
 */
export function deviceSpecFor(trace: Pick<Trace, 'meta' | 'lanes'>, lanes: number[]): string {
  const counts = new Map<string, number>();
  for (const l of [...lanes].sort((a, b) => a - b)) {
    const kind = trace.meta.devices[trace.lanes[l]?.device ?? -1]?.kind ?? 'cpu';
    counts.set(kind, (counts.get(kind) ?? 0) + 1);
  }
  return [...counts.entries()].map(([k, c]) => `${k}:${c}`).join(',');
}
