/** Hand-built traces with known answers, for tests of the analyses. */
import { TraceBuilder, TRACE_FORMAT_VERSION, type SpanRow, type Trace, type TraceMeta } from '../../src/profiler/trace-format';

export function meta(over: Partial<TraceMeta> = {}, nDevices = 2): TraceMeta {
  return {
    formatVersion: TRACE_FORMAT_VERSION,
    tool: { name: 'parallax', version: 'test' },
    source: 'measured',
    mode: 'data',
    plan: { batch: 8, shards: Array.from({ length: nDevices }, () => 8 / nDevices) },
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
