/**
 * The runner process's resident set while device workers run. Every device is a worker
 * thread of this one process, so what it measures is process-wide: the sum of what all
 * devices hold, plus what the process itself allocates meanwhile.
 *
 * The peak is the kernel's high-water mark (`process.resourceUsage().maxRSS`) when the
 * process set a new one while watched (then it is exact); otherwise the high-water mark was
 * set before (loading the model, say) and the largest of the samples taken every
 * `sampleMs` stands in for it.
 */
import type { RunMemory } from '../../profiler/memory-format';

/** How often the resident set is sampled, ms. */
export const RSS_SAMPLE_MS = 25;

export class RssWatch {
  private readonly before = process.memoryUsage.rss();
  private readonly maxBefore = process.resourceUsage().maxRSS * 1024;
  private sampled = this.before;
  private readonly timer: NodeJS.Timeout;

  constructor(private readonly sampleMs = RSS_SAMPLE_MS) {
    this.timer = setInterval(() => this.sample(), sampleMs);
    // A sampler must never keep the runner alive.
    this.timer.unref();
  }

  private sample(): void {
    this.sampled = Math.max(this.sampled, process.memoryUsage.rss());
  }

  /** Stops sampling (again: harmless). */
  dispose(): void {
    clearInterval(this.timer);
  }

  /** Stops sampling; the resident set before, its peak and the growth, with what else ran meanwhile. */
  stop(alsoRan: string[]): NonNullable<RunMemory['process']> {
    this.dispose();
    this.sample();
    const maxAfter = process.resourceUsage().maxRSS * 1024;
    const exact = maxAfter > this.maxBefore;
    const peak = exact ? Math.max(maxAfter, this.sampled) : this.sampled;
    return {
      rssBeforeBytes: this.before,
      peakRssBytes: peak,
      growthBytes: Math.max(0, peak - this.before),
      peakSource: exact ? 'maxRSS' : 'sampled',
      sampleMs: this.sampleMs,
      alsoRan,
    };
  }
}
