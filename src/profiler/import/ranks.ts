/**
 * The picture of a distributed job across its ranks: who computes longest per step (the
 * straggler the others wait for) and where the others' waiting shows. In GPU traces most
 * waiting for a slow peer happens inside the NCCL kernels, which spin until every rank has
 * arrived, so NCCL time not hidden under compute ("exposed comm") is reported beside the
 * idle gaps the idle derivation attributes to collectives.
 *
 * The data-parallel analysis and the straggler finding read a Parallax data-parallel plan
 * (shards, rows); imported traces have none, so this analysis compares ranks on their
 * measured time alone and predicts nothing.
 */
import { STRAGGLER_THRESHOLD, type Analysis } from '../analysis/index';
import { formatDuration, formatPercent } from '../units';

export interface RankStats {
  lane: number;
  /** Device id, `rank:N`. */
  id: string;
  label: string;
  /** Means over the measured steps, µs. */
  computePerStepUs: number;
  commPerStepUs: number;
  /** Comm not overlapped by compute on the same lane. */
  exposedCommPerStepUs: number;
  /** Idle attributed to waiting at a collective or the step's end (cause `collective`). */
  collectiveWaitPerStepUs: number;
  /** Idle attributed to the host (launch gaps, input pipeline). */
  hostIdlePerStepUs: number;
  /** Compute per step / the median of the other ranks' (1 with one rank). */
  slowdown: number;
  straggler: boolean;
}

export interface RankAnalysis {
  steps: number;
  ranks: RankStats[];
  /** Lane with the most compute per step, −1 without ranks. */
  slowest: number;
  /** Lane with the most exposed comm + collective wait per step, −1 without ranks. */
  mostWaiting: number;
  /** Lanes whose compute exceeds the others' median by more than `threshold`, slowest first. */
  stragglers: number[];
  threshold: number;
  /** Largest minus smallest compute per step across ranks, µs. */
  computeSpreadUs: number;
  /** Σ collective idle / Σ step windows over all ranks. */
  collectiveWaitShare: number;
  /** Σ exposed comm / Σ step windows over all ranks. */
  exposedCommShare: number;
  /** What the numbers say, in sentences. */
  message: string;
}

const medianOf = (xs: number[]): number => {
  if (xs.length === 0) return 0;
  const s = xs.slice().sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
};

const ms = (us: number): string => formatDuration(us, { sDigits: false });
const pct = (x: number): string => formatPercent(x, 0);

/** Compares the ranks of an analysed trace (idle derived, one lane per rank). */
export function analyseRanks(a: Analysis, threshold = STRAGGLER_THRESHOLD): RankAnalysis {
  const steps = Math.max(1, a.steps);
  const lanes = a.breakdown.lanes;
  const ranks: RankStats[] = lanes.map((l) => ({
    lane: l.lane,
    id: l.id,
    label: l.label,
    computePerStepUs: l.computeUs / steps,
    commPerStepUs: l.commUs / steps,
    exposedCommPerStepUs: l.exposedCommUs / steps,
    collectiveWaitPerStepUs: l.idleByCauseUs.collective / steps,
    hostIdlePerStepUs: l.idleByCauseUs.host / steps,
    slowdown: 1,
    straggler: false,
  }));
  for (const r of ranks) {
    const others = ranks.filter((o) => o.lane !== r.lane).map((o) => o.computePerStepUs);
    const ref = medianOf(others);
    r.slowdown = others.length > 0 && ref > 0 ? r.computePerStepUs / ref : 1;
    r.straggler = others.length > 0 && r.slowdown > 1 + threshold;
  }
  const argmax = (f: (r: RankStats) => number): number =>
    ranks.length === 0 ? -1 : ranks.reduce((best, r) => (f(r) > f(best) ? r : best), ranks[0]).lane;
  const slowest = argmax((r) => r.computePerStepUs);
  const mostWaiting = argmax((r) => r.exposedCommPerStepUs + r.collectiveWaitPerStepUs);
  const computes = ranks.map((r) => r.computePerStepUs);
  const computeSpreadUs = ranks.length > 0 ? Math.max(...computes) - Math.min(...computes) : 0;
  const windows = lanes.reduce((x, l) => x + l.stepUs, 0);
  const collectiveWaitShare = windows > 0 ? lanes.reduce((x, l) => x + l.idleByCauseUs.collective, 0) / windows : 0;
  const exposedCommShare = windows > 0 ? lanes.reduce((x, l) => x + l.exposedCommUs, 0) / windows : 0;
  const stragglers = ranks.filter((r) => r.straggler).sort((x, y) => y.slowdown - x.slowdown).map((r) => r.lane);

  const words: string[] = [];
  if (ranks.length < 2) {
    const r = ranks[0];
    words.push(
      r
        ? `Only ${r.id} is in the trace, so ranks cannot be compared; it spends ${ms(r.exposedCommPerStepUs)} per step in communication no compute hides and ${ms(r.collectiveWaitPerStepUs)} idle before collectives or at the step's end.`
        : 'The trace has no ranks.',
    );
  } else {
    const s = ranks[slowest];
    const others = medianOf(ranks.filter((r) => r.lane !== slowest).map((r) => r.computePerStepUs));
    words.push(
      s.straggler
        ? `${s.id} is a straggler: it computes ${ms(s.computePerStepUs)} per step against ${ms(others)} on the other ranks (${pct(s.slowdown - 1)} more), and they wait for it.`
        : `${s.id} computes the most, ${ms(s.computePerStepUs)} per step against ${ms(others)} on the other ranks (${pct(Math.max(0, s.slowdown - 1))} more, under the ${pct(threshold)} straggler threshold).`,
    );
    const w = ranks[mostWaiting];
    words.push(
      `${w.id} waits the most: ${ms(w.exposedCommPerStepUs)} per step of communication no compute hides, plus ${ms(w.collectiveWaitPerStepUs)} idle before collectives or at the step's end.`,
    );
  }
  return {
    steps: a.steps,
    ranks,
    slowest,
    mostWaiting,
    stragglers,
    threshold,
    computeSpreadUs,
    collectiveWaitShare,
    exposedCommShare,
    message: words.join(' '),
  };
}
