/**
 * The training schedule rule: a GPipe training pipeline keeps every micro-batch's
 * activations on every stage until its backward, M of them at the peak; 1F1B
 * (PipeDream-Flush) runs the same forwards and backwards and flushes at the same point, so it
 * trains to the same weights with at most K − s micro-batches kept on stage s. The rule
 * reads what the stages measured (`meta.training.pipeline`), not timing, so contention does
 * not hold it back; it predicts memory, not step time.
 */
import type { Finding } from './findings';
import type { Trace } from './trace-format';
import { formatBytes as mb } from './units';


/** Suggests 1F1B where a GPipe training run kept more micro-batches of activations than it would. */
export function scheduleMemoryRule(trace: Trace, currentStepUs: number): Finding[] {
  const p = trace.meta.training?.pipeline;
  if (!p || p.schedule !== 'gpipe') return [];
  const k = p.stages.length;
  const rows = p.stages.map((s) => {
    const perMicro = s.peakStoredMicroBatches > 0 ? s.peakStoredBytes / s.peakStoredMicroBatches : 0;
    const after = Math.min(k - s.stage, p.microBatches);
    return { ...s, after, afterBytes: perMicro * after };
  });
  const worst = rows.reduce<(typeof rows)[number] | null>((w, r) => (r.peakStoredMicroBatches > r.after && (!w || r.peakStoredBytes - r.afterBytes > w.peakStoredBytes - w.afterBytes) ? r : w), null);
  if (!worst) return [];
  const step = trace.steps[0];
  return [
    {
      id: 'pipeline-schedule-memory',
      severity: 'info',
      message: `GPipe keeps ${worst.peakStoredMicroBatches} micro-batches of activations on stage ${worst.stage} (${mb(worst.peakStoredBytes)}) until their backwards; 1F1B keeps ${worst.after} (about ${mb(worst.afterBytes)}) and trains to the same weights.`,
      evidence: {
        lanes: rows.map((r) => r.stage),
        startUs: step?.startUs ?? 0,
        endUs: step?.endUs ?? 0,
        numbers: { stage: worst.stage, storedMicroBatches: worst.peakStoredMicroBatches, storedBytes: worst.peakStoredBytes, after1f1b: worst.after, after1f1bBytes: worst.afterBytes, microBatches: p.microBatches, stages: k },
      },
      change: {
        description: `Run with --schedule 1f1b: each stage s keeps at most ${k} − s micro-batches of activations instead of ${p.microBatches}, which leaves room for more micro-batches (a smaller bubble) or a larger batch in the same memory. The step does the same work; its time is not predicted to change.`,
        params: { schedule: '1f1b' },
      },
      currentStepUs,
      predictedStepUs: null,
    },
  ];
}
