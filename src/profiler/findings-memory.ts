/**
 * The capacity rule: with a capacity per device (`--device-memory`), a device whose memory
 * (`meta.memory`: parameters, computed activation peak and, training, gradients and
 * optimizer state) exceeds it means the plan does not fit. The suggestion names the plans of
 * the same model over the same devices and batch that do fit, from the memory table computed
 * on the graph (`meta.memory.capacity`). It reads memory, not timing: contention does not
 * hold it back, and it predicts no step time.
 */
import type { Finding } from './findings';
import type { Trace } from './trace-format';
import { formatBytes } from './units';

/** Flags that run each plan of the memory table (its labels are `data ×N`, `tensor ×N`, `data D × tensor T`, …). */
function planFlags(label: string): string {
  const hybrid = /^data (\d+) × tensor (\d+)$/.exec(label);
  if (hybrid) return `--mode hybrid --data ${hybrid[1]} --tensor ${hybrid[2]}`;
  const single = /^(data|pipeline|tensor) ×\d+$/.exec(label);
  return single ? `--mode ${single[1]}` : label;
}

/** Says the plan does not fit when a device's memory exceeds the capacity, naming the plans that do. */
export function deviceMemoryRule(trace: Trace, currentStepUs: number): Finding[] {
  const m = trace.meta.memory;
  const cap = m?.capacity;
  if (!m || !cap) return [];
  const over = m.devices.filter((d) => d.totalBytes > cap.bytes);
  if (over.length === 0) return [];
  const worst = over.reduce((a, b) => (b.totalBytes > a.totalBytes ? b : a));
  const id = (d: number): string => trace.meta.devices[d]?.id ?? `device ${d}`;
  const capText = formatBytes(cap.bytes);
  const change =
    cap.fitting.length > 0
      ? `Plans over the same ${m.devices.length} devices and batch that fit in ${capText} per device: ${cap.fitting.map((l) => `${l} (${planFlags(l)})`).join(', ')}. Moving to one of them keeps every device under the capacity.`
      : `No plan over ${m.devices.length} devices fits in ${capText} per device (the memory table compares data, pipeline, tensor and data × tensor plans); use more devices, devices with more memory, or a smaller batch.`;
  const step = trace.steps[0];
  return [
    {
      id: 'device-memory',
      severity: 'warning',
      message: `This ${trace.meta.mode} plan does not fit in ${capText} per device: ${over.map((d) => id(d.device)).join(', ')} need${over.length === 1 ? 's' : ''} up to ${formatBytes(worst.totalBytes)} (${id(worst.device)}: parameters ${formatBytes(worst.parameterBytes)}, activations ${formatBytes(worst.activationBytes)}${worst.gradientBytes !== undefined ? `, gradients ${formatBytes(worst.gradientBytes)}, optimizer state ${formatBytes(worst.optimizerBytes ?? 0)}` : ''}).`,
      evidence: {
        lanes: over.map((d) => d.device),
        startUs: step?.startUs ?? 0,
        endUs: step?.endUs ?? 0,
        numbers: { capacityBytes: cap.bytes, maxDeviceBytes: worst.totalBytes, devicesOver: over.length, plansThatFit: cap.fitting.length },
      },
      change: { description: change, params: {} },
      currentStepUs,
      predictedStepUs: null,
    },
  ];
}
