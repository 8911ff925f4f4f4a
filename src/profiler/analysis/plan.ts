/**
 * The plan fields the analyses and findings use, read once from the typed `meta.plan`
 * ({@link TracePlan}, src/profiler/plan.ts) into one flat view, so each analysis asks for a
 * field without switching on the mode itself. A field the plan's mode does not have, or a
 * value that is malformed (a hand-made trace in memory), reads as null and the analysis or
 * rule that needs it is skipped rather than guessed.
 */
import { assertNever, type TracePlan } from '../plan';
import type { Trace } from '../trace-format';

export interface PlanView {
  /** `batch`: global batch (rows per step). */
  batch: number | null;
  /** `shards`: data parallel, rows per device in lane order. */
  shards: number[] | null;
  /** `devices`: the device spec as run, e.g. `cpu:2` or `cpu:1,webgpu:1`. */
  devices: string | null;
  /** Pipeline: number of stages K (`stages`, else the partition's, else the cuts + 1). */
  stages: number | null;
  /** `microBatches`: pipeline, micro-batches per step M. */
  microBatches: number | null;
  /** `schedule`: pipeline schedule, e.g. `gpipe`. */
  schedule: string | null;
  /** `cuts`: pipeline, the node names after which the graph is cut (K − 1 of them). */
  cuts: string[] | null;
  /** `partition.stageNodes`: pipeline, per stage the ONNX node names in it, in topological order. */
  stageNodes: string[][] | null;
  /** `calibration.nodeCostUs`: measured cost of every node (µs) from the calibration run. */
  nodeCostUs: Record<string, number> | null;
  /**
   * Pipeline: rows per micro-batch, the size `nodeCostUs` was measured at
   * (`calibration.rows`, else batch / micro-batches).
   */
  microBatchRows: number | null;
  /**
   * `calibration.alt`: a second calibration at another micro-batch size (`rows`), so that the
   * cost of a micro-batch can be modelled as fixed + per-row (see analysis/pipeline.ts).
   */
  nodeCostUsAlt: { rows: number; costs: Record<string, number> } | null;
}

const posNumber = (v: unknown): number | null => (typeof v === 'number' && Number.isFinite(v) && v > 0 ? v : null);

const numberArray = (v: unknown): number[] | null =>
  Array.isArray(v) && v.length > 0 && v.every((x) => typeof x === 'number' && Number.isFinite(x)) ? (v as number[]) : null;

const stringArray = (v: unknown): string[] | null => (Array.isArray(v) && v.every((x) => typeof x === 'string') ? (v as string[]) : null);

const costRecord = (v: unknown): Record<string, number> | null =>
  v !== null && typeof v === 'object' && !Array.isArray(v) && Object.values(v).every((x) => typeof x === 'number' && Number.isFinite(x) && x >= 0)
    ? (v as Record<string, number>)
    : null;

const NO_PLAN: PlanView = {
  batch: null,
  shards: null,
  devices: null,
  stages: null,
  microBatches: null,
  schedule: null,
  cuts: null,
  stageNodes: null,
  nodeCostUs: null,
  microBatchRows: null,
  nodeCostUsAlt: null,
};

/** Reads the plan fields the analyses use. */
export function readPlan(trace: Pick<Trace, 'meta'>): PlanView {
  const p: TracePlan = trace.meta.plan;
  switch (p.mode) {
    case 'data':
      return {
        ...NO_PLAN,
        batch: posNumber(p.batch),
        devices: typeof p.devices === 'string' ? p.devices : null,
        shards: numberArray(p.shards),
      };
    case 'pipeline': {
      const batch = posNumber(p.batch);
      const microBatches = posNumber(p.microBatches);
      const raw = p.partition?.stageNodes;
      const stageNodes = Array.isArray(raw) && raw.length > 0 && raw.every((x) => stringArray(x) !== null) ? raw : null;
      const cuts = stringArray(p.cuts);
      const cal = p.calibration;
      const alt = cal?.alt;
      const perMicro = batch !== null && microBatches !== null && Number.isInteger(batch / microBatches) ? batch / microBatches : null;
      const altCosts = costRecord(alt?.nodeCostUs);
      return {
        ...NO_PLAN,
        batch,
        devices: typeof p.devices === 'string' ? p.devices : null,
        stages: posNumber(p.stages) ?? (stageNodes ? stageNodes.length : cuts ? cuts.length + 1 : null),
        microBatches,
        schedule: typeof p.schedule === 'string' ? p.schedule : null,
        cuts,
        stageNodes,
        nodeCostUs: costRecord(cal?.nodeCostUs),
        microBatchRows: posNumber(cal?.rows) ?? perMicro,
        nodeCostUsAlt: alt && posNumber(alt.rows) !== null && altCosts ? { rows: alt.rows, costs: altCosts } : null,
      };
    }
    case 'tensor':
    case 'hybrid':
      return { ...NO_PLAN, batch: posNumber(p.batch), devices: typeof p.devices === 'string' ? p.devices : null };
    case 'imported':
      return NO_PLAN;
    default:
      return assertNever(p, 'plan mode');
  }
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
