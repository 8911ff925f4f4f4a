/**
 * Measurement quality (src/profiler/quality.ts) and how it gates findings: a verdict from the
 * `cpu`/`wait` columns, other processes' load and step spread; timing findings held back when
 * it is poor; a finding fires only when its effect exceeds the run's step-time noise.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { deriveIdle } from '../../src/profiler/idle';
import { activeFindings, findingEffectUs, findings, type Finding } from '../../src/profiler/findings';
import { measurementQuality } from '../../src/profiler/quality';
import { summarize } from '../../src/profiler/summary';
import type { SpanRow, Trace, TraceMeta } from '../../src/profiler/trace-format';
import { syntheticPipelineTrace } from '../../src/profiler/analysis/synthetic';
import { dataPlan, meta, traceOf } from '../helpers/trace-builders';
import { formatSummary } from '../../src/cli/format';
import { lensSummary, planHints } from '../../src/extension/hints';
import { findPlan, parseConfig } from '../../src/extension/config-model';

const all = (t: Trace): Finding[] => findings(t, summarize(t));

interface StragglerOptions {
  /** Length of each step window, µs (default ten steps of 100 µs). */
  stepUs?: number[];
  /** Share of each compute span's duration spent on a CPU / waiting for one; undefined: not measured. */
  cpu?: number;
  wait?: number;
  meta?: Partial<TraceMeta>;
}

/**
 * Data parallel on two unlike CPU devices (see unlikeDevices), 4 rows each: lane 0 computes 40 µs per step, lane 1 85 µs
 * (a straggler). Rebalanced to 6/2 rows the step is predicted to shrink from 100 to 75 µs,
 * an effect of 25 µs.
 */
function straggler(o: StragglerOptions = {}): Trace {
  const lens = o.stepUs ?? Array.from({ length: 10 }, () => 100);
  const rows: SpanRow[] = [];
  const steps: [number, number][] = [];
  let t0 = 0;
  lens.forEach((len, step) => {
    const m = (x: number): Pick<SpanRow, 'cpu' | 'wait'> =>
      o.cpu === undefined ? {} : { cpu: x * o.cpu, wait: x * (o.wait ?? 0) };
    rows.push({ lane: 0, kind: 'comm', name: 'scatter', comm: 'scatter', start: t0 + 5, dur: 5, step, bytes: 100 });
    rows.push({ lane: 0, kind: 'compute', name: 'session.run', start: t0 + 10, dur: 40, step, ...m(40) });
    rows.push({ lane: 0, kind: 'comm', name: 'gather', comm: 'gather', start: t0 + 50, dur: 10, step, bytes: 100 });
    rows.push({ lane: 1, kind: 'comm', name: 'scatter', comm: 'scatter', start: t0, dur: 5, step, bytes: 100 });
    rows.push({ lane: 1, kind: 'compute', name: 'session.run', start: t0 + 5, dur: 85, step, ...m(85) });
    rows.push({ lane: 1, kind: 'comm', name: 'gather', comm: 'gather', start: t0 + 90, dur: 10, step, bytes: 100 });
    steps.push([t0, t0 + len]);
    t0 += Math.max(len, 100) + 20;
  });
  return deriveIdle(traceOf(rows, steps, meta({ plan: dataPlan({ batch: 8, shards: [4, 4], steps: lens.length }), devices: unlikeDevices(), ...o.meta })));
}

/**
 * A CPU worker and a second CPU device of another class (two intra-op threads): different
 * configurations, so a difference in their compute is theirs (two CPU workers of one class
 * are interchangeable threads, and the straggler rule does not rebalance them).
 */
function unlikeDevices(): TraceMeta['devices'] {
  const m = meta();
  return [m.devices[0]!, { ...m.devices[1]!, threads: 2, label: 'cpu:1 (2 threads)' }];
}

test('a quiet run with CPU ≈ wall and no wait is good, and keeps its straggler finding', () => {
  const t = straggler({ cpu: 0.99, wait: 0.001, meta: { measurement: { otherLoadCores: 0.05, cores: 4, windowMs: 500 } } });
  const q = measurementQuality(t);
  assert.equal(q.verdict, 'good');
  assert.deepEqual(q.reasons, []);
  assert.equal(q.basis, 'schedstat');
  assert.ok(Math.abs(q.cpuShare! - 0.99) < 1e-9 && Math.abs(q.waitShare! - 0.001) < 1e-9);
  assert.equal(q.noiseUs, 0);
  const f = all(t);
  assert.deepEqual(f.map((x) => x.id), ['straggler']);
  assert.equal(f[0].heldBack, undefined);
  assert.equal(f[0].severity, 'critical'); // 85 > 2 × 40
  assert.ok(Math.abs(findingEffectUs(f[0])! - 25) < 1e-9);
});

test('waiting for a core makes the run poor: timing findings are held back, not warnings, and the speedup is unreliable', () => {
  const base = { description: 'cpu:0 alone', stepTimeUs: { median: 150, p10: 150, p90: 150 } };
  const t = straggler({ cpu: 0.55, wait: 0.4, meta: { baseline: base } });
  const s = summarize(t);
  assert.equal(s.measurementQuality.verdict, 'poor');
  assert.match(s.measurementQuality.reasons[0], /waited for a CPU core for 40% of its compute time; 0 of|waited for a CPU core for 40%/);
  assert.match(s.measurementQuality.reasons.join(' '), /got a CPU for only 55%/);
  assert.equal(s.speedupVsOneDevice, 1.5);
  assert.equal(s.speedupReliable, false);
  const f = findings(t, s);
  assert.deepEqual(f.map((x) => x.id), ['straggler']);
  assert.equal(f[0].severity, 'info');
  assert.equal(f[0].heldBack?.severity, 'critical');
  assert.match(f[0].heldBack!.reason, /^Held back: measurement quality is poor\. /);
  assert.deepEqual(activeFindings(f), []);
  // The same run measured quietly: reliable.
  const quiet = summarize(straggler({ cpu: 1, wait: 0, meta: { baseline: base } }));
  assert.equal(quiet.speedupReliable, true);
});

test('a run that asked to see advice on poor quality keeps its timing findings, each with a caveat naming the contention', () => {
  const t = straggler({ cpu: 0.55, wait: 0.4, meta: { adviceOnPoorQuality: 'show' } });
  const s = summarize(t);
  assert.equal(s.measurementQuality.verdict, 'poor');
  const f = findings(t, s);
  assert.deepEqual(f.map((x) => x.id), ['straggler']);
  assert.equal(f[0].heldBack, undefined);
  assert.equal(f[0].severity, 'critical');
  assert.match(f[0].caveat!, /^Measured while the machine was busy: .*waited for a CPU core/);
  assert.deepEqual(activeFindings(f).map((x) => x.id), ['straggler']);
});

test('a noisy run suppresses a marginal finding that a quiet run keeps', () => {
  // Median step 100 µs in both; the noisy one spreads from 60 to 140 µs (noise ≈ 36 µs > 25).
  const noisy = straggler({ stepUs: [60, 140, 100, 60, 140, 100, 60, 140, 100, 100] });
  const q = measurementQuality(noisy);
  assert.equal(q.basis, 'step-spread');
  assert.ok(q.noiseUs > 25, `noise ${q.noiseUs}`);
  assert.equal(summarize(noisy).stepTimeUs.median, 100);
  assert.deepEqual(all(noisy).filter((f) => f.id === 'straggler'), []);
  // Slight spread, below the effect: kept.
  const calm = straggler({ stepUs: [98, 102, 100, 99, 101, 100, 98, 102, 100, 100] });
  const qc = measurementQuality(calm);
  assert.ok(qc.noiseUs > 0 && qc.noiseUs < 25);
  assert.equal(qc.verdict, 'good');
  assert.deepEqual(all(calm).map((f) => f.id), ['straggler']);
});

test('without cpu/wait columns the verdict rests on step spread: p10/p90 of 32/178 ms is poor', () => {
  const lens = [32, 35, 40, 60, 90, 120, 150, 170, 178, 180].map((ms) => ms * 1000);
  const q = measurementQuality(straggler({ stepUs: lens }));
  assert.equal(q.basis, 'step-spread');
  assert.equal(q.verdict, 'poor');
  assert.ok(q.stepSpread! > 4);
  assert.match(q.reasons[0], /^Step times spread from /);
  assert.equal(q.cpuShare, null);
  assert.equal(q.waitShare, null);
  assert.ok(q.lanes.every((l) => l.cpuShare === null && l.measuredSpans === 0));
});

test('other processes oversubscribing the machine make the run poor; light load is fair', () => {
  const busy = measurementQuality(straggler({ cpu: 1, wait: 0, meta: { measurement: { otherLoadCores: 1.8, cores: 2, windowMs: 400 } } }));
  assert.equal(busy.verdict, 'poor');
  assert.match(busy.reasons[0], /Other processes kept 1\.8 of 2 cores busy/);
  assert.equal(busy.otherLoadCores, 1.8);
  const light = measurementQuality(straggler({ cpu: 1, wait: 0, meta: { measurement: { otherLoadCores: 2, cores: 16, windowMs: 400 } } }));
  assert.equal(light.verdict, 'fair');
  const idle = measurementQuality(straggler({ cpu: 1, wait: 0, meta: { measurement: { otherLoadCores: 0.1, cores: 16, windowMs: 400 } } }));
  assert.equal(idle.verdict, 'good');
});

test("the virtual machine's host taking its CPUs (steal) is named as such and judged as other load", () => {
  const host = measurementQuality(straggler({ cpu: 1, wait: 0, meta: { measurement: { otherLoadCores: 0.6, stealCores: 0.6, cores: 2, windowMs: 400 } } }));
  assert.equal(host.verdict, 'poor');
  assert.match(host.reasons[0], /^The virtual machine's host ran other work on its CPUs \(steal time\) for 0\.6 of 2 cores during the run, which asks for \d/);
  assert.equal(host.stealCores, 0.6);
  const both = measurementQuality(straggler({ cpu: 1, wait: 0, meta: { measurement: { otherLoadCores: 1.0, stealCores: 0.3, cores: 2, windowMs: 400 } } }));
  assert.match(both.reasons[0], /^Other processes kept 0\.7 of 2 cores busy and the virtual machine's host ran other work on its CPUs \(steal time\) for 0\.3 of 2 cores/);
  // A trickle of steal is not named.
  const trickle = measurementQuality(straggler({ cpu: 1, wait: 0, meta: { measurement: { otherLoadCores: 1.8, stealCores: 0.05, cores: 2, windowMs: 400 } } }));
  assert.match(trickle.reasons[0], /^Other processes kept 1\.8 of 2 cores busy/);
});

test('niced processes that yield to the run are reported, not judged; their cost shows in the wait', () => {
  const niced = measurementQuality(straggler({ cpu: 1, wait: 0, meta: { measurement: { otherLoadCores: 1.8, nicedLoadCores: 1.7, cores: 2, windowMs: 400 } } }));
  assert.equal(niced.verdict, 'good');
  assert.equal(niced.nicedLoadCores, 1.7);
  assert.equal(niced.otherLoadCores, 1.8);
  // The same load, not niced (or under session autogroups, where it is reported as 0): poor.
  const full = measurementQuality(straggler({ cpu: 1, wait: 0, meta: { measurement: { otherLoadCores: 1.8, nicedLoadCores: 0, cores: 2, windowMs: 400 } } }));
  assert.equal(full.verdict, 'poor');
  // Niced load that still costs the run its cores is caught by the wait.
  const waited = measurementQuality(straggler({ cpu: 0.7, wait: 0.3, meta: { measurement: { otherLoadCores: 1.8, nicedLoadCores: 1.7, cores: 2, windowMs: 400 } } }));
  assert.equal(waited.verdict, 'poor');
});

test('with cpu/wait columns that show no contention, step spread alone makes a run fair, not poor', () => {
  const lens = [32, 35, 40, 60, 90, 120, 150, 170, 178, 180].map((ms) => ms * 1000);
  const q = measurementQuality(straggler({ stepUs: lens, cpu: 1, wait: 0, meta: { measurement: { otherLoadCores: 0, cores: 2, windowMs: 400 } } }));
  assert.equal(q.basis, 'schedstat');
  assert.equal(q.verdict, 'fair');
  assert.match(q.reasons[0], /^Step times spread from /);
  // …and the spread still sets the noise a finding must beat.
  assert.ok(q.noiseUs > 50_000, `noise ${q.noiseUs}`);
});

test('a WebGPU lane reports its host thread share without judging it; its wait still counts', () => {
  const m = meta();
  m.devices[1] = { ...m.devices[1], id: 'webgpu:0', kind: 'webgpu', provider: 'webgpu', label: 'webgpu:0' };
  const low = measurementQuality(straggler({ cpu: 0.1, wait: 0, meta: { devices: m.devices } }));
  // The CPU lane (cpu:0) also got 10%: judged; the WebGPU lane is not the worst CPU lane.
  assert.equal(low.lanes[1].kind, 'webgpu');
  assert.ok(Math.abs(low.lanes[1].cpuShare! - 0.1) < 1e-9);
  assert.match(low.reasons.join(' '), /cpu:0 got a CPU for only 10%/);
  assert.doesNotMatch(low.reasons.join(' '), /webgpu:0 got a CPU/);
  const t = straggler({ cpu: 1, wait: 0, meta: { devices: m.devices } });
  for (let i = 0; i < t.spans.count; i++) if (t.spans.lane[i] === 1 && t.spans.cpu[i] >= 0) t.spans.wait[i] = 0.3 * t.spans.dur[i];
  const waits = measurementQuality(t);
  assert.equal(waits.verdict, 'poor');
  assert.match(waits.reasons[0], /^webgpu:0 \(host thread\) waited for a CPU core for 30%/);
});

test('an intra-op pool sampled with its worker counts every thread of the device', () => {
  const m = meta();
  m.devices = m.devices.map((d) => ({ ...d, threads: 2 }));
  // cpu = 2 × dur: both threads busy throughout → share 1.
  const t = straggler({ cpu: 2, wait: 0, meta: { devices: m.devices, measurement: { otherLoadCores: 0, cores: 4, windowMs: 1, threads: ['worker+pool', 'worker+pool'] } } });
  const q = measurementQuality(t);
  assert.ok(Math.abs(q.cpuShare! - 1) < 1e-9);
  assert.equal(q.verdict, 'good');
});

test('a preempted pipeline stage is named in the reasons and its findings held back', () => {
  const t = syntheticPipelineTrace({ stageUs: [1000, 1000], microBatches: 4, steps: 6 });
  // Stage 1's compute spans waited 95% of their time (a 22 ms session.run for ~1 ms of work).
  for (let i = 0; i < t.spans.count; i++) {
    if (t.spans.kind[i] !== 0 || t.spans.parent[i] >= 0) continue;
    const w = t.spans.lane[i] === 1 ? 0.95 : 0;
    t.spans.cpu[i] = t.spans.dur[i] * (1 - w);
    t.spans.wait[i] = t.spans.dur[i] * w;
  }
  const q = measurementQuality(t);
  assert.equal(q.verdict, 'poor');
  assert.match(q.reasons[0], /^cpu:1 waited for a CPU core for 95% of its compute time; \d+ of its \d+ compute spans waited more than they ran\./);
  for (const f of all(t)) if (f.id !== 'dominant-op') assert.ok(f.heldBack && f.severity === 'info', `${f.id} held back`);
});

test('the terminal summary says poor quality first, marks the speedup unreliable and lists held-back findings apart', () => {
  const base = { description: 'cpu:0 alone', stepTimeUs: { median: 150, p10: 150, p90: 150 } };
  const poor = straggler({ cpu: 0.55, wait: 0.4, meta: { baseline: base } });
  const s = summarize(poor);
  const text = formatSummary(s, findings(poor, s));
  const lines = text.split('\n');
  assert.equal(lines[0], 'MEASUREMENT QUALITY: POOR — timings are unreliable on this run');
  assert.match(lines[1], /waited for a CPU core for 40%/);
  assert.match(text, /speedup {5}1\.50× vs cpu:0 alone .* — unreliable \(measurement quality poor\)/);
  assert.doesNotMatch(text, /^findings$/m);
  assert.match(text, /^held back .*\n {2}\[critical\] cpu:1 is a straggler/m);
  // Good: nothing said about quality, findings as before.
  const good = straggler({ cpu: 1, wait: 0, meta: { baseline: base } });
  const g = summarize(good);
  const gt = formatSummary(g, findings(good, g));
  assert.doesNotMatch(gt, /quality|unreliable|held back/i);
  assert.match(gt, /^findings\n {2}\[critical\] cpu:1 is a straggler/m);
});

test('the editor gives no hint for a held-back finding, and its CodeLens line leads with the poor quality', () => {
  const poor = straggler({ cpu: 0.55, wait: 0.4, meta: { baseline: { description: 'one', stepTimeUs: { median: 150, p10: 150, p90: 150 } } } });
  const s = summarize(poor);
  const f = findings(poor, s);
  const doc = parseConfig(JSON.stringify({ plans: { p: { mode: 'data', model: 'm.onnx', devices: 'cpu:2', batch: 8, shards: [4, 4] } } }));
  const plan = findPlan(doc, 'p');
  assert.ok(plan);
  const runPlan = { mode: 'data', devices: 'cpu:2', batch: 8, shards: [4, 4] };
  assert.equal(planHints(f, plan, runPlan, { devices: 'cpu:2', batch: 8 }).length, 0);
  const unheld = f.map(({ heldBack: _h, ...x }) => ({ ...x, severity: 'critical' as const }));
  assert.equal(planHints(unheld, plan, runPlan, { devices: 'cpu:2', batch: 8 }).length, 1);
  assert.match(lensSummary(s), /^measurement quality poor · last step .* · efficiency 75% \(unreliable\)$/);
});
