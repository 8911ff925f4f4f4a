/**
 * Waiting for the process to go quiet between two runs' blocks.
 *
 * ONNX Runtime's intra-op threads (a session with more than one thread) spin after a
 * `session.run` returns, waiting for more work, before they sleep: 40–80 ms on a 2-core AMD
 * EPYC virtual machine. While they spin they hold a core. The runs a profile alternates (the
 * timed run, the one-device baseline, the probe) are sessions of one process, so the first
 * steps of a block ran against the spin of the run before it: with two sessions of the demo
 * MLP (2 threads each), the first step after the other session's run took 2× its steady
 * 28 ms, and block ratios of one device against its own configuration spread over
 * 0.67–1.30. Within a run's own block the spin is what the user's program gets too, so it
 * is left alone there; ONNX Runtime's `session.force_spinning_stop` would stop it after
 * every run, which cost back-to-back sub-millisecond runs 12–15 % (melspectrogram, 2 threads).
 *
 * So before a block of another run, the runner waits until this process's CPU time stops
 * growing: windows of {@link QUIET_WINDOW_MS} until one in which the process used less than
 * {@link QUIET_BUSY_SHARE} of one core, at most {@link QUIET_MAX_MS}. A thread's CPU counter
 * advances at least once per kernel tick (4 ms at HZ=250) while it runs, so a window of
 * 10 ms sees a spinning thread.
 */

/** One look at the process's CPU time, ms. */
export const QUIET_WINDOW_MS = 10;
/** A window is quiet when the process used less than this share of one core in it. */
export const QUIET_BUSY_SHARE = 0.2;
/** The longest wait, ms: past it the block starts anyway (a thread that never rests). */
export const QUIET_MAX_MS = 300;

/** CPU time this process has used so far, µs (every thread's). */
export type CpuClock = () => number;

const processCpuUs: CpuClock = () => {
  const u = process.cpuUsage();
  return u.user + u.system;
};

/** What one wait took. */
export interface QuietWait {
  /** Wall time waited, ms. */
  waitedMs: number;
  /** True when it stopped at QUIET_MAX_MS with the process still busy. */
  capped: boolean;
}

/**
 * Resolves once the process has been quiet for one window (see the module comment).
 * `cpu` and `sleep` are injectable for tests; the defaults read `process.cpuUsage()` and wait
 * on a timer.
 */
export async function quiesce(
  cpu: CpuClock = processCpuUs,
  sleep: (ms: number) => Promise<void> = (ms) => new Promise((r) => setTimeout(r, ms)),
  now: () => number = () => performance.now(),
): Promise<QuietWait> {
  const start = now();
  let before = cpu();
  let t0 = start;
  for (;;) {
    await sleep(QUIET_WINDOW_MS);
    const after = cpu();
    const t1 = now();
    const busyMs = (after - before) / 1000;
    if (busyMs < QUIET_BUSY_SHARE * Math.max(QUIET_WINDOW_MS, t1 - t0)) return { waitedMs: t1 - start, capped: false };
    if (t1 - start >= QUIET_MAX_MS) return { waitedMs: t1 - start, capped: true };
    before = after;
    t0 = t1;
  }
}

/** The waits of one profile, for its trace note. */
export class QuietLog {
  private readonly waits: number[] = [];
  private capped = 0;

  add(w: QuietWait): void {
    this.waits.push(w.waitedMs);
    if (w.capped) this.capped++;
  }

  /** A trace note, or null when no wait went beyond its first window. */
  note(): string | null {
    const longer = this.waits.filter((w) => w > 1.5 * QUIET_WINDOW_MS);
    if (longer.length === 0) return null;
    const total = this.waits.reduce((a, b) => a + b, 0);
    const most = Math.max(...this.waits);
    return (
      `Before each block of another run the runner waited for the process to go quiet (ONNX Runtime's intra-op threads spin for tens of milliseconds after a run and would take a core from the next run's first steps): ` +
      `${longer.length} of ${this.waits.length} waits went past the first ${QUIET_WINDOW_MS} ms window, ${Math.round(total)} ms in all, the longest ${Math.round(most)} ms` +
      (this.capped > 0 ? `; ${this.capped} stopped at ${QUIET_MAX_MS} ms with the process still busy.` : '.')
    );
  }
}
