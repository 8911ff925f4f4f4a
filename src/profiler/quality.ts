/**
 * Measurement quality: how far the timings of a run can be trusted, from how much of the
 * machine it got. Pure; reads only the trace.
 *
 * Evidence, strongest first:
 *  - per lane, the CPU time and run-queue wait the device's threads got during its compute
 *    spans (span columns `cpu` and `wait`, Linux schedstat): `cpuShare` = Σcpu / Σdur and
 *    `waitShare` = Σwait / Σdur over top-level compute spans, per thread counted (a CPU
 *    device whose intra-op pool was sampled counts its `threads`). For WebGPU and other
 *    non-CPU devices the sampled thread is the host thread that drives the device: its CPU
 *    share is reported but not judged (the GPU does the work), its wait is;
 *  - other processes' load during the measured steps (`meta.measurement.otherLoadCores`)
 *    against the cores the run itself asks for. Niced processes' share of it
 *    (`nicedLoadCores`) is reported but not judged: the scheduler lets the run's threads
 *    preempt them, and what they still cost shows in the lanes' run-queue wait;
 *  - the spread of step times (p90 / p10), which is all there is for traces without the
 *    columns (−1: imported, predicted or older traces). With the columns, spread alone makes
 *    a run `fair` at worst: a model whose steps vary by themselves (allocation, caches) is
 *    not a disturbed measurement, and findings must beat the spread through `noiseUs` anyway.
 *
 * Thresholds (exported, documented beside each constant) give `good`, `fair` or `poor`; the
 * worst signal wins. `noiseUs` is the run's measured noise on the quantity findings predict,
 * the median step time: the 90 % half-width of a difference of two medians of n steps, with
 * σ estimated robustly from the p10–p90 range. Findings fire only when their predicted effect
 * exceeds it; more steps narrow it, as they should.
 */
import { SpanKind, type Trace } from './trace-format';
import { quantile } from './stats';

export type QualityVerdict = 'good' | 'fair' | 'poor';

export interface LaneQuality {
  lane: number;
  device: string;
  /** The device's kind (`cpu`, `webgpu`, …): for non-CPU devices the shares are the host thread's. */
  kind: string;
  /** Σcpu / (Σdur · threads counted) of the lane's compute spans; null when not measured. */
  cpuShare: number | null;
  /** Σwait / (Σdur · threads counted); null when not measured. */
  waitShare: number | null;
  /** Compute spans with `cpu`/`wait` measured (the interpreter samples spans closer than 20 ms apart). */
  measuredSpans: number;
  /** Compute spans of the measured steps, measured or not. */
  computeSpans?: number;
  /** Measured compute spans that waited for a core for at least PREEMPTED_SPAN_WAIT of their duration. */
  preemptedSpans: number;
}

export interface MeasurementQuality {
  verdict: QualityVerdict;
  /** Why, one sentence each, worst first; empty when good. */
  reasons: string[];
  /** What the verdict rests on: schedstat columns and load, or step spread alone. */
  basis: 'schedstat' | 'step-spread';
  lanes: LaneQuality[];
  /** Lowest CPU share of a CPU lane (the device that got least of the machine); null when not measured. */
  cpuShare: number | null;
  /** Highest wait share of any lane; null when not measured. */
  waitShare: number | null;
  /** Other processes' average load during the run, cores; null when not measured. */
  otherLoadCores: number | null;
  /** Of that, niced processes' (reported, not judged); null when not measured. */
  nicedLoadCores: number | null;
  /**
   * Of that, the host's: time the hypervisor ran others on this virtual machine's ready CPUs
   * (steal), judged as other processes' load is; null when not measured, 0 on bare metal.
   */
  stealCores: number | null;
  /** Cores of the machine. */
  cores: number | null;
  /** Step-time p90 / p10 (1 = no spread); null with fewer than 2 steps. */
  stepSpread: number | null;
  /** Coefficient of variation of the step times; null with fewer than 2 steps. */
  stepCv: number | null;
  /**
   * Noise of a median-step comparison, µs: 1.645 · √2 · 1.2533 · σ / √n with σ = (p90 − p10) / 2.563
   * (≈ 1.14 · (p90 − p10) / √n).
   */
  noiseUs: number;
}

/** A lane whose compute spans wait for a core this share of their duration or more: poor… */
export const WAIT_SHARE_POOR = 0.2;
/** …this share or more: fair. */
export const WAIT_SHARE_FAIR = 0.05;
/** A CPU lane whose compute spans got under this share of their wall time on a CPU: poor… */
export const CPU_SHARE_POOR = 0.6;
/** …under this share: fair. */
export const CPU_SHARE_FAIR = 0.85;
/** Other processes' load (cores) that, added to what the run asks for, oversubscribes the machine is poor from this much on… */
export const OTHER_LOAD_POOR_CORES = 0.5;
/** …and fair from this share of the machine's cores, oversubscribed or not. */
export const OTHER_LOAD_FAIR_SHARE = 0.1;
/** Step time p90 / p10 at or above this: poor… */
export const STEP_SPREAD_POOR = 2;
/** …at or above this: fair. */
export const STEP_SPREAD_FAIR = 1.3;
/** A compute span that waits for a core this share of its duration or more was preempted. */
export const PREEMPTED_SPAN_WAIT = 0.5;

const RANK: Record<QualityVerdict, number> = { good: 0, fair: 1, poor: 2 };
const pct = (x: number): string => `${(x * 100).toFixed(0)}%`;

/**
 * Who kept the cores busy, as the start of a sentence: other processes of this machine, the
 * virtual machine's host (steal time), or both with their shares. Steal is named once it is
 * at least a tenth of a core.
 */
function loadWho(load: number, steal: number, cores: number): string {
  const c = (x: number): string => x.toFixed(1);
  if (steal < 0.1) return `Other processes kept ${c(load)} of ${cores} cores busy`;
  const host = `the virtual machine's host ran other work on its CPUs (steal time) for ${c(steal)} of ${cores} cores`;
  const rest = load - steal;
  if (rest < 0.1) return host.charAt(0).toUpperCase() + host.slice(1);
  return `Other processes kept ${c(rest)} of ${cores} cores busy and ${host}`;
}

/** Threads the `cpu`/`wait` columns of device `d` count. */
function threadsCounted(trace: Trace, d: number): number {
  const dev = trace.meta.devices[d];
  const how = trace.meta.measurement?.threads?.[d];
  return how === 'worker+pool' && dev && dev.threads > 1 ? dev.threads : 1;
}

/** The measurement-quality verdict of a trace whose idle spans may or may not be derived. */
export function measurementQuality(trace: Trace): MeasurementQuality {
  const s = trace.spans;
  const n = trace.lanes.length;
  const dur = new Float64Array(n);
  const cpu = new Float64Array(n);
  const wait = new Float64Array(n);
  const measured = new Int32Array(n);
  const preempted = new Int32Array(n);
  const steps = new Set(trace.steps.map((w) => w.index));
  const all = new Int32Array(n);
  for (let i = 0; i < s.count; i++) {
    if (s.kind[i] !== SpanKind.compute || s.parent[i] >= 0) continue;
    if (steps.size > 0 && !steps.has(s.step[i])) continue;
    all[s.lane[i]]++;
    if (s.cpu[i] < 0 || s.wait[i] < 0) continue;
    const l = s.lane[i];
    dur[l] += s.dur[i];
    cpu[l] += s.cpu[i];
    wait[l] += s.wait[i];
    measured[l]++;
    if (s.dur[i] > 0 && s.wait[i] >= PREEMPTED_SPAN_WAIT * s.dur[i]) preempted[l]++;
  }
  const lanes: LaneQuality[] = trace.lanes.map((lane, l) => {
    const dev = trace.meta.devices[lane.device];
    const k = threadsCounted(trace, lane.device);
    const ok = measured[l] > 0 && dur[l] > 0;
    return {
      lane: l,
      device: dev?.id ?? lane.label,
      kind: dev?.kind ?? 'cpu',
      cpuShare: ok ? cpu[l] / (dur[l] * k) : null,
      waitShare: ok ? wait[l] / (dur[l] * k) : null,
      measuredSpans: measured[l],
      computeSpans: all[l],
      preemptedSpans: preempted[l],
    };
  });

  let verdict: QualityVerdict = 'good';
  const reasons: { rank: number; text: string }[] = [];
  const flag = (v: QualityVerdict, text: string): void => {
    if (RANK[v] > RANK[verdict]) verdict = v;
    reasons.push({ rank: RANK[v], text });
  };

  // Run-queue wait and CPU share per lane.
  const cpuLanes = lanes.filter((q) => q.cpuShare !== null && q.kind === 'cpu');
  const waitLanes = lanes.filter((q) => q.waitShare !== null);
  const worstWait = waitLanes.reduce<LaneQuality | null>((w, q) => (!w || q.waitShare! > w.waitShare! ? q : w), null);
  const worstCpu = cpuLanes.reduce<LaneQuality | null>((w, q) => (!w || q.cpuShare! < w.cpuShare! ? q : w), null);
  if (worstWait && worstWait.waitShare! >= WAIT_SHARE_FAIR) {
    const sampled = (worstWait.computeSpans ?? worstWait.measuredSpans) > worstWait.measuredSpans ? ` read (of ${worstWait.computeSpans})` : '';
    const preemptedWords = worstWait.preemptedSpans > 0 ? `; ${worstWait.preemptedSpans} of its ${worstWait.measuredSpans} compute spans${sampled} waited more than they ran` : '';
    flag(
      worstWait.waitShare! >= WAIT_SHARE_POOR ? 'poor' : 'fair',
      `${worstWait.device}${worstWait.kind === 'cpu' ? '' : ' (host thread)'} waited for a CPU core for ${pct(worstWait.waitShare!)} of its compute time${preemptedWords}.`,
    );
  }
  if (worstCpu && worstCpu.cpuShare! < CPU_SHARE_FAIR) {
    flag(worstCpu.cpuShare! < CPU_SHARE_POOR ? 'poor' : 'fair', `${worstCpu.device} got a CPU for only ${pct(worstCpu.cpuShare!)} of its compute time.`);
  }

  // Other processes' load against what the run asks for.
  const m = trace.meta.measurement;
  const cores = m?.cores ?? (trace.meta.host.cores > 0 ? trace.meta.host.cores : null);
  const otherLoad = m ? m.otherLoadCores : null;
  const nicedLoad = m ? (m.nicedLoadCores ?? 0) : null;
  const stealLoad = m ? Math.min(otherLoad ?? 0, m.stealCores ?? 0) : null;
  const judgedLoad = otherLoad !== null ? Math.max(0, otherLoad - (nicedLoad ?? 0)) : null;
  if (judgedLoad !== null && cores !== null) {
    const otherLoad = judgedLoad;
    const demand = trace.meta.devices.reduce((a, d) => a + (d.kind === 'cpu' ? Math.max(1, d.threads) : d.kind === 'rank' ? 0 : 1), 0);
    const over = otherLoad + demand > cores;
    const who = loadWho(otherLoad, Math.min(otherLoad, stealLoad ?? 0), cores);
    if (otherLoad >= OTHER_LOAD_POOR_CORES && over) {
      flag('poor', `${who} during the run, which asks for ${demand}: the devices competed for the machine.`);
    } else if (otherLoad >= Math.max(0.25, OTHER_LOAD_FAIR_SHARE * cores)) {
      flag('fair', `${who} during the run.`);
    }
  }

  const basis = lanes.some((q) => q.measuredSpans > 0) || otherLoad !== null ? 'schedstat' : 'step-spread';
  // Step spread.
  const times = trace.steps.map((w) => w.endUs - w.startUs).filter((t) => t > 0);
  let stepSpread: number | null = null;
  let stepCv: number | null = null;
  let noiseUs = 0;
  if (times.length >= 2) {
    const p10 = quantile(times, 0.1);
    const p90 = quantile(times, 0.9);
    stepSpread = p10 > 0 ? p90 / p10 : null;
    const mean = times.reduce((a, b) => a + b, 0) / times.length;
    const sd = Math.sqrt(times.reduce((a, b) => a + (b - mean) ** 2, 0) / (times.length - 1));
    stepCv = mean > 0 ? sd / mean : null;
    // σ from the p10–p90 range (2.563 σ for a normal sample, robust to a few preempted
    // steps); the standard error of a median is 1.2533 σ/√n, of a difference of two √2 times
    // that, and 1.645 of those make a 90 % interval.
    noiseUs = Math.SQRT2 * medianHalfWidthUs(times);
    if (stepSpread !== null && stepSpread >= STEP_SPREAD_FAIR) {
      flag(
        stepSpread >= STEP_SPREAD_POOR && basis === 'step-spread' ? 'poor' : 'fair',
        `Step times spread from ${(p10 / 1000).toFixed(1)} ms (p10) to ${(p90 / 1000).toFixed(1)} ms (p90), ${stepSpread.toFixed(1)}×.`,
      );
    }
  }

  return {
    verdict,
    reasons: reasons.sort((a, b) => b.rank - a.rank).map((r) => r.text),
    basis,
    lanes,
    cpuShare: worstCpu ? worstCpu.cpuShare : null,
    waitShare: worstWait ? worstWait.waitShare : null,
    otherLoadCores: otherLoad,
    nicedLoadCores: nicedLoad,
    stealCores: stealLoad,
    cores,
    stepSpread,
    stepCv,
    noiseUs,
  };
}

/**
 * The 90 % half-width of the median of `times`, µs: 1.645 · 1.2533 σ / √n, σ from the
 * p10–p90 range as for {@link measurementQuality}'s noise (which is that of a difference of
 * two medians, √2 times this). 0 for fewer than two times.
 */
export function medianHalfWidthUs(times: readonly number[]): number {
  const t = times.filter((x) => x > 0);
  if (t.length < 2) return 0;
  const sigma = (quantile(t, 0.9) - quantile(t, 0.1)) / 2.563;
  return Math.max(0, (1.645 * 1.2533 * sigma) / Math.sqrt(t.length));
}
