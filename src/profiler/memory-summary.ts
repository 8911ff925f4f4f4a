/**
 * The summary's memory per device (`summary.memory`): the trace's `meta.memory` with each
 * device's id, and the computed sum over devices set against the runner process's measured
 * growth.
 */
import type { DeviceRunMemory, RunMemory } from './memory-format';
import type { Trace } from './trace-format';

export interface MemorySummary {
  devices: (DeviceRunMemory & { id: string; fits: boolean | null })[];
  modelParameterBytes: number;
  /** Sum over devices of their totals (computed). */
  totalBytes: number;
  /** The runner process's measured resident-set growth (process-wide, all devices together). */
  process: RunMemory['process'] | null;
  /** Computed total over measured growth; null without a measurement or with no growth. */
  computedOverMeasured: number | null;
  capacity: RunMemory['capacity'] | null;
  /** Devices whose total exceeds the capacity (empty without one). */
  overCapacity: string[];
}

/** The memory part of a trace's summary, absent for traces that carry none. */
export function memorySummary(trace: Trace): MemorySummary | undefined {
  const m = trace.meta.memory;
  if (!m) return undefined;
  const cap = m.capacity ?? null;
  const devices = m.devices.map((d) => ({ ...d, id: trace.meta.devices[d.device]?.id ?? `device ${d.device}`, fits: cap ? d.totalBytes <= cap.bytes : null }));
  const growth = m.process?.growthBytes ?? 0;
  return {
    devices,
    modelParameterBytes: m.modelParameterBytes,
    totalBytes: m.totalBytes,
    process: m.process ?? null,
    computedOverMeasured: growth > 0 ? m.totalBytes / growth : null,
    capacity: cap,
    overCapacity: devices.filter((d) => d.fits === false).map((d) => d.id),
  };
}
