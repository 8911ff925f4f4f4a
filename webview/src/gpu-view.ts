/**
 * A summary's GPU busy time as the summary panel shows it: for each WebGPU device whose
 * provider gave GPU timestamps, the share of its operator-profiled runs' wall time during
 * which the GPU ran a dispatch (`summary.gpuBusy`, from `meta.gpuTimestamps`). Read
 * defensively: the summary comes from a file.
 */
import { num, obj, str } from './format';

/** One device's GPU busy share over its operator-profiled runs. */
export interface GpuBusyView {
  device: string;
  /** Busy time over the runs' wall time, 0..1. */
  share: number;
  kernels: number;
  runs: number;
}

/** Reads `summary.gpuBusy` defensively; null when absent, empty or unusable. */
export function gpuBusyView(x: unknown): GpuBusyView[] | null {
  if (!Array.isArray(x) || x.length === 0) return null;
  const out: GpuBusyView[] = [];
  for (const e of x.slice(0, 64)) {
    const g = obj(e);
    const device = g ? str(g['device']) : null;
    const share = g ? num(g['share']) : null;
    if (!g || device === null || share === null || !(share >= 0)) return null;
    out.push({ device, share: Math.min(1, share), kernels: Math.max(0, Math.round(num(g['kernels']) ?? 0)), runs: Math.max(0, Math.round(num(g['runs']) ?? 0)) });
  }
  return out;
}
