/** Hand-built traces with known answers, for tests of the analyses. */
import type { DataPlan, PipelinePlan } from '../../src/profiler/plan';
import { TraceBuilder, TRACE_FORMAT_VERSION, type SpanRow, type Trace, type TraceMeta } from '../../src/profiler/trace-format';

/** A data plan over `nDevices` CPU devices: batch 8 split evenly unless `over` says otherwise. */
export function dataPlan(over: Partial<Omit<DataPlan, 'mode'>> = {}, nDevices = 2): DataPlan {
  return {
    mode: 'data',
    devices: `cpu:${nDevices}`,
    batch: 8,
    steps: 1,
    warmup: 0,
    seed: 0,
    shards: Array.from({ length: nDevices }, () => 8 / nDevices),
    ...over,
  };
}

/**
 * A GPipe plan over `nDevices` CPU devices (batch 8, one micro-batch) with no partition or
 * calibration recorded unless `over` gives them.
 */
export function pipelinePlan(over: Partial<Omit<PipelinePlan, 'mode'>> = {}, nDevices = 2): PipelinePlan {
  return { mode: 'pipeline', devices: `cpu:${nDevices}`, batch: 8, steps: 1, warmup: 0, seed: 0, schedule: 'gpipe', microBatches: 1, ...over };
}

/** Trace metadata for `nDevices` CPU devices; `meta.mode` follows `over.plan` (default: {@link dataPlan}). */
export function meta(over: Partial<TraceMeta> = {}, nDevices = 2): TraceMeta {
  const plan = over.plan ?? dataPlan({}, nDevices);
  return {
    formatVersion: TRACE_FORMAT_VERSION,
    tool: { name: 'parallax', version: 'test' },
    source: 'measured',
    mode: plan.mode,
    plan,
    devices: Array.from({ length: nDevices }, (_, i) => ({
      id: `cpu:${i}`,
      kind: 'cpu' as const,
      provider: 'cpu',
      threads: 1,
      physicalUnit: 'host-cpu',
      sharesPhysicalUnit: false,
      software: false,
      label: `cpu:${i} (1 thread)`,
    })),
    host: { cpuModel: 'test', cores: 2, memoryBytes: 1, os: 'test', node: 'v20' },
    startTimeUs: 0,
    opLevel: false,
    notes: [],
    ...over,
  };
}

/** Builds a trace from span rows and explicit step windows. */
export function traceOf(rows: SpanRow[], steps: [number, number][], m: TraceMeta = meta()): Trace {
  const b = new TraceBuilder();
  for (const r of rows) b.push(r);
  return {
    meta: m,
    strings: b.strings,
    lanes: m.devices.map((d, i) => ({ device: i, label: d.label, group: d.physicalUnit })),
    steps: steps.map(([startUs, endUs], index) => ({ index, startUs, endUs })),
    spans: b.finish(),
  };
}
