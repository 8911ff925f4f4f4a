/**
 * A pipeline training summary's stored activations as the summary panel shows them: the
 * schedule and, per stage, the most micro-batches of activations it kept between forward and
 * backward, the bound the schedule implies, and their bytes. Read defensively: the summary
 * comes from a file.
 */
import { num, obj, str } from './format';

/** What a pipeline training run's stages kept between forward and backward. */
export interface StoredActivationsView {
  schedule: string;
  microBatches: number;
  stages: { stage: number; peakMicroBatches: number; bound: number; bytes: number }[];
}

/** Reads `training.pipeline` of a summary defensively. */
export function storedActivationsView(training: unknown): StoredActivationsView | null {
  const p = obj(obj(training)?.['pipeline']);
  if (!p || !Array.isArray(p['stages'])) return null;
  const stages: StoredActivationsView['stages'] = [];
  for (const x of p['stages'].slice(0, 64)) {
    const st = obj(x);
    const stage = st ? num(st['stage']) : null;
    const peak = st ? num(st['peakStoredMicroBatches']) : null;
    if (!st || stage === null || peak === null) return null;
    stages.push({ stage, peakMicroBatches: peak, bound: num(st['compiledPeakMicroBatches']) ?? peak, bytes: num(st['peakStoredBytes']) ?? 0 });
  }
  return { schedule: str(p['schedule']) ?? '?', microBatches: num(p['microBatches']) ?? 0, stages };
}
