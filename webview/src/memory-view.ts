/**
 * A summary's memory per device as the summary panel shows it: each device's total and its
 * parts, the capacity when one was given, and the runner process's measured growth (which is
 * process-wide: every device is a thread of one process). Read defensively: the summary
 * comes from a file.
 */
import { num, obj, str } from './format';

/** What the summary panel shows of `summary.memory`. */
export interface MemoryView {
  devices: { id: string; parameterBytes: number; activationBytes: number; trainingBytes: number; totalBytes: number; fits: boolean | null }[];
  /** Sum over devices (computed). */
  totalBytes: number;
  /** The runner process's measured resident-set growth, null where not measured. */
  processGrowthBytes: number | null;
  capacityBytes: number | null;
  /** Plans that fit the capacity (empty without one). */
  fitting: string[];
}

/** Reads `summary.memory` defensively; null when absent or unusable. */
export function memoryView(memory: unknown): MemoryView | null {
  const m = obj(memory);
  if (!m || !Array.isArray(m['devices'])) return null;
  const devices: MemoryView['devices'] = [];
  for (const x of m['devices'].slice(0, 256)) {
    const d = obj(x);
    const total = d ? num(d['totalBytes']) : null;
    if (!d || total === null) return null;
    devices.push({
      id: str(d['id']) ?? `device ${num(d['device']) ?? '?'}`,
      parameterBytes: num(d['parameterBytes']) ?? 0,
      activationBytes: num(d['activationBytes']) ?? 0,
      trainingBytes: (num(d['gradientBytes']) ?? 0) + (num(d['optimizerBytes']) ?? 0) + (num(d['storedActivationBytes']) ?? 0),
      totalBytes: total,
      fits: typeof d['fits'] === 'boolean' ? d['fits'] : null,
    });
  }
  const cap = obj(m['capacity']);
  const fitting = cap && Array.isArray(cap['fitting']) ? cap['fitting'].filter((f): f is string => typeof f === 'string').slice(0, 16) : [];
  return {
    devices,
    totalBytes: num(m['totalBytes']) ?? devices.reduce((s, d) => s + d.totalBytes, 0),
    processGrowthBytes: num(obj(m['process'])?.['growthBytes']),
    capacityBytes: cap ? num(cap['bytes']) : null,
    fitting,
  };
}
