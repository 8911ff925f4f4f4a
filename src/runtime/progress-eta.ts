/**
 * Time left in a runner phase, from the runner's progress reports, for the CLI's progress bar
 * and the extension's progress notification.
 *
 * An estimate from one or two units is noise, so there is none until a phase has done at
 * least {@link EtaOptions.minUnits} units and {@link EtaOptions.minFraction} of its total. The
 * first unit of a phase carries its start-up (workers starting, first-run allocations), so the
 * rate is measured from the first report that counts a unit done, never from the phase's
 * start; after that it is smoothed (an exponential moving average of the rate between
 * reports). The
 * timed steps and the one-device baseline run interleaved in blocks, so they count as one
 * phase whose total is both of theirs. An estimate is a finite number of milliseconds or
 * null: never NaN or infinity, whatever the reports say.
 */
import type { Progress } from './protocol';

export interface EtaOptions {
  /** Units a phase must have done before it gets an estimate (default 2). */
  minUnits?: number;
  /** Share of a phase's total it must have done before it gets an estimate (default 0.1). */
  minFraction?: number;
  /** Weight of the newest rate in the moving average, 0–1 (default 0.3). */
  smoothing?: number;
}

/** Phases that run interleaved and so are estimated together. */
function phaseGroup(phase: Progress['phase']): string {
  return phase === 'baseline' ? 'steps' : phase;
}

const count = (n: number): number => (Number.isFinite(n) && n > 0 ? n : 0);

/** Estimates the time left in the current phase from successive progress reports. */
export class EtaEstimator {
  private readonly minUnits: number;
  private readonly minFraction: number;
  private readonly smoothing: number;
  private group: string | null = null;
  /** The first report of the phase that counted a unit done. */
  private first: { ms: number; done: number } | null = null;
  private parts = new Map<string, { done: number; total: number }>();
  private last: { ms: number; done: number } | null = null;
  /** Units per millisecond, smoothed; null until the phase has done enough to estimate. */
  private rate: number | null = null;

  constructor(options: EtaOptions = {}) {
    this.minUnits = options.minUnits ?? 2;
    this.minFraction = options.minFraction ?? 0.1;
    this.smoothing = options.smoothing ?? 0.3;
  }

  /** Takes a progress report made at `nowMs` and returns the milliseconds left in its phase, or null when not yet known. */
  update(p: Pick<Progress, 'phase' | 'done' | 'total'>, nowMs: number): number | null {
    const group = phaseGroup(p.phase);
    if (group !== this.group) {
      this.group = group;
      this.first = null;
      this.parts = new Map();
      this.last = null;
      this.rate = null;
    }
    this.parts.set(p.phase, { done: count(p.done), total: count(p.total) });
    let done = 0;
    let total = 0;
    for (const part of this.parts.values()) {
      done += Math.min(part.done, part.total);
      total += part.total;
    }
    if (total === 0) return null;
    if (done >= total) return 0;
    const last = this.last;
    if (!last || done > last.done) this.last = { ms: nowMs, done };
    if (this.first === null && done > 0) this.first = { ms: nowMs, done };
    if (done < Math.max(this.minUnits, Math.ceil(this.minFraction * total))) return null;
    if (this.rate === null) {
      const first = this.first;
      if (!first || done <= first.done || nowMs <= first.ms) return null;
      this.rate = (done - first.done) / (nowMs - first.ms);
    } else if (last && done > last.done && nowMs > last.ms) {
      const recent = (done - last.done) / (nowMs - last.ms);
      this.rate += this.smoothing * (recent - this.rate);
    }
    const left = (total - done) / this.rate;
    return Number.isFinite(left) && left >= 0 ? left : null;
  }
}

/** A time left as people say it: "<1 s", "12 s", "4 min 05 s", "1 h 02 min". */
export function formatEta(ms: number): string {
  if (!Number.isFinite(ms) || ms < 0) return '';
  const s = Math.round(ms / 1000);
  if (s < 1) return '<1 s';
  if (s < 60) return `${s} s`;
  const m = Math.floor(s / 60);
  if (m < 60) return `${m} min ${String(s % 60).padStart(2, '0')} s`;
  return `${Math.floor(m / 60)} h ${String(m % 60).padStart(2, '0')} min`;
}
