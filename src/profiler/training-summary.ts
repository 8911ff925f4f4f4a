/**
 * The training part of a run's summary: per device, the time of each part of a training step
 * (forward, backward, gradient all-reduce, optimizer) from the spans' phase and flags, and
 * the loss curve against the one-device run's.
 */
import { CommOpCode, PhaseCode, SpanFlag, SpanKind, type Trace } from './trace-format';

/** Per device, mean µs per timed step of each part of a training step. */
export interface TrainingStepParts {
  id: string;
  forwardUs: number;
  backwardUs: number;
  /** Gradient all-reduces (every bucket), as measured on this device. */
  allReduceUs: number;
  /** The part of `allReduceUs` during which the device computed (the backward parts after the bucket's). */
  overlapUs: number;
  optimizerUs: number;
  /** Bytes this device's training all-reduces (gradient buckets, local SGD's parameter averages) moved per timed step, as sent and received on the wire. */
  wireBytes: number;
}

export interface TrainingSummary {
  loss: string;
  optimizer: string;
  lr: number;
  buckets: number;
  /** Gradient bytes per step (every bucket), float32. */
  gradientBytes: number;
  /** Gradients on the wire (float32 unless `--grad-dtype`) and local SGD's interval (1: none). */
  gradDtype: string;
  syncEvery: number;
  /** Mean over the devices of {@link TrainingStepParts.wireBytes}. */
  wireBytesPerStep: number;
  /** Why the trained weights were not checked against one-device training (see TrainingMeta), or null. */
  notComparable: string | null;
  /** Loss of the global batch at the first and last timed step, and the one-device run's last. */
  lossFirst: number;
  lossLast: number;
  baselineLossLast: number | null;
  devices: TrainingStepParts[];
  /** Pipeline training: the schedule and each stage's stored activations (absent in data mode). */
  pipeline?: NonNullable<NonNullable<Trace['meta']['training']>['pipeline']>;
  /**
   * Tensor-parallel training: the all-reduces of one device's step, of activations (forward),
   * of activation gradients (backward) and of the partial weight gradients of replicated
   * weights read in split regions; they are the run's all-reduces, so `allReduceUs` counts
   * them (absent in other modes).
   */
  tensor?: { forwardAllReduces: number; backwardAllReduces: number; gradientAllReduces: number };
}

/** The training summary of a trace, undefined for an inference run. */
export function trainingSummary(trace: Trace): TrainingSummary | undefined {
  const t = trace.meta.training;
  if (!t) return undefined;
  const s = trace.spans;
  const measured = new Set(trace.steps.map((w) => w.index));
  const steps = Math.max(1, measured.size);
  const tensor = trace.meta.plan.mode === 'tensor';
  let forwardReduces = 0;
  let backwardReduces = 0;
  let gradientReduces = 0;
  const parts = trace.lanes.map((lane) => ({ id: trace.meta.devices[lane.device]?.id ?? lane.label, forwardUs: 0, backwardUs: 0, allReduceUs: 0, overlapUs: 0, optimizerUs: 0, wireBytes: 0 }));
  // Compute and gradient all-reduce intervals per lane and step, for the overlap.
  const compute = new Map<string, [number, number][]>();
  const reduces = new Map<string, [number, number][]>();
  const add = (m: Map<string, [number, number][]>, key: string, iv: [number, number]): void => {
    const list = m.get(key);
    if (list) list.push(iv);
    else m.set(key, [iv]);
  };
  for (let i = 0; i < s.count; i++) {
    if (s.parent[i]! >= 0 || !measured.has(s.step[i]!)) continue;
    const p = parts[s.lane[i]!];
    if (!p) continue;
    const d = s.dur[i]!;
    const key = `${s.lane[i]}|${s.step[i]}`;
    if (s.kind[i] === SpanKind.compute) {
      if (s.phase[i] === PhaseCode.forward) p.forwardUs += d;
      else if (s.phase[i] === PhaseCode.backward) p.backwardUs += d;
      else if (s.phase[i] === PhaseCode.optimizer) p.optimizerUs += d;
      add(compute, key, [s.start[i]!, s.start[i]! + d]);
    } else if (s.kind[i] === SpanKind.comm && s.comm[i] === CommOpCode.allreduce) {
      p.wireBytes += s.bytes[i]!;
      if (tensor && s.lane[i] === 0) {
        if ((s.flags[i]! & SpanFlag.gradient) !== 0) gradientReduces++;
        else if (s.phase[i] === PhaseCode.backward) backwardReduces++;
        else forwardReduces++;
      }
      if (tensor || (s.flags[i]! & SpanFlag.gradient) !== 0) {
        p.allReduceUs += d;
        add(reduces, key, [s.start[i]!, s.start[i]! + d]);
      }
    }
  }
  // A device's compute spans do not overlap each other, so the overlaps add up.
  for (const [key, rs] of reduces) {
    const p = parts[Number(key.split('|')[0])]!;
    for (const [a0, a1] of rs) for (const [c0, c1] of compute.get(key) ?? []) p.overlapUs += Math.max(0, Math.min(a1, c1) - Math.max(a0, c0));
  }
  for (const p of parts) {
    p.forwardUs /= steps;
    p.backwardUs /= steps;
    p.allReduceUs /= steps;
    p.overlapUs /= steps;
    p.optimizerUs /= steps;
    p.wireBytes /= steps;
  }
  return {
    loss: t.loss,
    optimizer: t.optimizer,
    lr: t.lr,
    buckets: t.buckets.length,
    gradientBytes: t.buckets.reduce((n, b) => n + b.bytes, 0),
    gradDtype: t.gradDtype ?? 'float32',
    syncEvery: t.syncEvery ?? 1,
    wireBytesPerStep: parts.length > 0 ? parts.reduce((n, p) => n + p.wireBytes, 0) / parts.length : 0,
    notComparable: t.notComparable ?? null,
    lossFirst: t.lossCurve[0] ?? NaN,
    lossLast: t.lossCurve.at(-1) ?? NaN,
    baselineLossLast: t.baselineLossCurve?.at(-1) ?? null,
    devices: parts,
    ...(t.pipeline ? { pipeline: t.pipeline } : {}),
    ...(tensor ? { tensor: { forwardAllReduces: forwardReduces / steps, backwardAllReduces: backwardReduces / steps, gradientAllReduces: gradientReduces / steps } } : {}),
  };
}
