/**
 * The speedup over the one-device baseline, as the summary reports it and the scaling
 * analysis uses it.
 */
import type { Trace } from './trace-format';
import { blockRatio, median, pairedBlocks } from './stats';

/** True when the baseline's steps alternated with the run's in recorded blocks. */
export function pairedSchedule(trace: Trace): boolean {
  const base = trace.meta.baseline;
  return !!base?.stepTimesUs && base.schedule === 'interleaved' && !!trace.meta.timedBlocks;
}

/**
 * The speedup over the one-device baseline: where the two alternated in blocks, the median
 * over the blocks of the baseline's block median over the run's (see blockRatio), since
 * block i of each saw the same machine; otherwise the ratio of their median steps. Null
 * without a baseline.
 */
export function speedupOf(trace: Trace, stepTimes: readonly number[]): number | null {
  const base = trace.meta.baseline;
  if (!base || stepTimes.length === 0) return null;
  const paired = pairedSchedule(trace) ? blockRatio(base.stepTimesUs!, stepTimes, trace.meta.timedBlocks!) : null;
  if (paired !== null) return paired;
  const m = median(stepTimes);
  return m > 0 ? base.stepTimeUs.median / m : null;
}

/** How many pairs of blocks the speedup was read from (see speedupOf); 0 when it is the ratio of the medians. */
export function speedupBlockPairs(trace: Trace, stepTimes: readonly number[]): number {
  const base = trace.meta.baseline;
  const blocks = trace.meta.timedBlocks;
  return base?.stepTimesUs && blocks && pairedSchedule(trace) && pairedBlocks(base.stepTimesUs, stepTimes, blocks) ? blocks.length : 0;
}
