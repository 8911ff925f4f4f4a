/**
 * The runner process's resident memory over a run: a profile is started through the public
 * API, and the runner's RSS (from /proc) is sampled together with the steps it reports done.
 * Used by the memory test (a bound on growth per step) and the memory benchmark (the figure).
 */
import { readdirSync, readFileSync } from 'node:fs';
import { profile, type ProfileOutcome } from '../../src/runtime/api';
import { SPAN_ROW_BYTES } from '../../src/runtime/spans';
import type { ProfileRequest } from '../../src/runtime/protocol';

/** Bytes one span takes in a device worker's span buffer (one row of float64 fields). */
export const SPAN_BYTES = SPAN_ROW_BYTES;

/** One sample: measured steps done (as the runner last reported) and the runner's RSS. */
export interface RssSample {
  step: number;
  rssBytes: number;
}

export interface RssRun {
  outcome: ProfileOutcome;
  samples: RssSample[];
}

/** The resident set of a process in bytes, or null once it is gone. */
export function rssOf(pid: number): number | null {
  try {
    const m = /^VmRSS:\s+(\d+) kB/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m ? Number(m[1]) * 1024 : null;
  } catch {
    return null;
  }
}

/** Runner processes (dist/runner.js) that are children of this process. */
export function runnerChildren(): number[] {
  const out: number[] = [];
  for (const name of readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    try {
      const stat = readFileSync(`/proc/${name}/stat`, 'utf8');
      const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
      if (ppid === process.pid && readFileSync(`/proc/${name}/cmdline`, 'utf8').includes('runner.js')) out.push(Number(name));
    } catch {
      // Gone meanwhile.
    }
  }
  return out;
}

/**
 * Runs `req` and samples the runner's RSS every `everyMs` while it measures steps (not while
 * it loads, nor while it builds the trace at the end, which holds every span once more).
 * The runner reports steps done at most every 100 ms or so, so each sample's step is
 * interpolated in time between the two reports around it; samples outside the reports are
 * dropped. The number of samples then depends on how long the run measures, not on how
 * often it reports.
 */
export async function sampleRunnerRss(req: ProfileRequest, everyMs = 100): Promise<RssRun> {
  let measuring = false;
  let runner = 0;
  const reports: { t: number; step: number }[] = [];
  const raw: { t: number; rssBytes: number }[] = [];
  const timer = setInterval(() => {
    if (!measuring) return;
    if (runner === 0) runner = runnerChildren()[0] ?? 0;
    const rss = runner > 0 ? rssOf(runner) : null;
    if (rss !== null) raw.push({ t: performance.now(), rssBytes: rss });
  }, everyMs);
  try {
    const outcome = await profile(req, {
      onProgress: (p) => {
        measuring = p.phase === 'steps';
        if (measuring) reports.push({ t: performance.now(), step: p.done });
      },
    });
    return { outcome, samples: stepsAt(raw, reports) };
  } finally {
    clearInterval(timer);
  }
}

/** Each timed RSS reading with its step, interpolated between the step reports around it. */
export function stepsAt(raw: readonly { t: number; rssBytes: number }[], reports: readonly { t: number; step: number }[]): RssSample[] {
  const out: RssSample[] = [];
  let j = 0;
  for (const r of raw) {
    while (j + 1 < reports.length && reports[j + 1]!.t < r.t) j++;
    const a = reports[j];
    const b = reports[j + 1];
    if (!a || !b || r.t < a.t) continue;
    const f = b.t > a.t ? (r.t - a.t) / (b.t - a.t) : 0;
    out.push({ step: a.step + f * (b.step - a.step), rssBytes: r.rssBytes });
  }
  return out;
}

/**
 * Least-squares slope of RSS against steps (bytes per step) over the samples whose step is
 * past `fromStep` (the start of a run allocates its sessions and buffers; growth after that
 * is what would add up over a long run).
 */
export function rssSlope(samples: RssSample[], fromStep: number): { bytesPerStep: number; samples: number } {
  const s = samples.filter((x) => x.step >= fromStep);
  if (s.length < 3) return { bytesPerStep: Number.NaN, samples: s.length };
  const mx = s.reduce((a, x) => a + x.step, 0) / s.length;
  const my = s.reduce((a, x) => a + x.rssBytes, 0) / s.length;
  let num = 0;
  let den = 0;
  for (const x of s) {
    num += (x.step - mx) * (x.rssBytes - my);
    den += (x.step - mx) ** 2;
  }
  return { bytesPerStep: den > 0 ? num / den : Number.NaN, samples: s.length };
}
