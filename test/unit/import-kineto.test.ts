import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { gzipSync } from 'node:zlib';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Command } from 'commander';
import { importTrace } from '../../src/profiler/import/detect';
import { canonicalCollective, collectiveFromKernelName, dtypeBytes, formatRanges, kinetoTrace } from '../../src/profiler/import/kineto';
import { analyseRanks } from '../../src/profiler/import/ranks';
import { deriveIdle } from '../../src/profiler/idle';
import { summarize, type ProfileSummary } from '../../src/profiler/summary';
import { analyse, type Analysis } from '../../src/profiler/analysis';
import { findings } from '../../src/profiler/findings';
import { IdleCauseCode, spanRow, type Trace } from '../../src/profiler/trace-format';
import type { ImportedPlan } from '../../src/profiler/plan';
import { readTrace, writeTrace } from '../../src/profiler/trace-io';
import { UserError } from '../../src/common/errors';
import { formatAnalysis, formatSummary } from '../../src/cli/format';
import { registerImportExport } from '../../src/cli/import-export';
import { traceOf } from '../helpers/trace-builders';
import {
  ddpRank,
  deviceEvents,
  isNcclKernel,
  kinetoDoc,
  kinetoFixture,
  launchSteps,
  profilerSteps,
  readRawKineto,
  unionLength,
  type RawKineto,
  type RawKinetoEvent,
} from '../helpers/kineto';

const COMPUTE = 0;
const COMM = 1;
const IDLE = 2;

/** The trace's plan, which an import always writes as an imported plan. */
function importedPlan(t: Trace): ImportedPlan {
  assert.equal(t.meta.plan.mode, 'imported');
  return t.meta.plan as ImportedPlan;
}

/** Everything the CLI computes for an imported trace. */
function report(t: Trace): { trace: Trace; summary: ProfileSummary; analysis: Analysis } {
  const trace = deriveIdle(t);
  const summary = summarize(trace);
  const analysis = analyse(trace);
  findings(trace, summary, { analysis });
  formatSummary(summary, []);
  formatAnalysis(summary, analysis);
  return { trace, summary, analysis };
}

const names = (t: Trace, kind: number): Map<string, number> => {
  const m = new Map<string, number>();
  for (let i = 0; i < t.spans.count; i++) {
    if (t.spans.kind[i] !== kind) continue;
    const n = t.strings[t.spans.name[i]];
    m.set(n, (m.get(n) ?? 0) + 1);
  }
  return m;
};

const near = (actual: number, expected: number, tol: number, what: string): void =>
  assert.ok(Math.abs(actual - expected) <= tol, `${what}: ${actual} is not within ${tol} of ${expected}`);

/**
 * Step windows computed from the raw JSON the way the importer documents them (recorded
 * clocks): step N ends at the last end of any rank's GPU events launched in ProfilerStep#N
 * and starts where step N−1 ended (the first at the earliest such start).
 */
function expectedWindows(docs: RawKineto[]): { index: number; start: number; end: number }[] {
  const abs = (d: RawKineto, ts: number): number => ts + (d.baseTimeNanoseconds ?? 0) / 1000;
  const first = new Map<number, number>();
  const last = new Map<number, number>();
  for (const d of docs) {
    for (const [e, n] of launchSteps(d)) {
      first.set(n, Math.min(first.get(n) ?? Infinity, abs(d, e.ts)));
      last.set(n, Math.max(last.get(n) ?? -Infinity, abs(d, e.ts + (e.dur ?? 0))));
    }
  }
  const common = [...profilerSteps(docs[0]).keys()].filter((n) => docs.every((d) => profilerSteps(d).has(n))).sort((a, b) => a - b);
  const out: { index: number; start: number; end: number }[] = [];
  for (const n of common) {
    const prev = out[out.length - 1];
    out.push({ index: n, start: prev && prev.index === n - 1 ? prev.end : first.get(n)!, end: last.get(n)! });
  }
  return out;
}

/** Per rank, from raw events in the windows: compute (non-NCCL kernels), NCCL time, idle, trailing idle. */
function expectedPerRank(doc: RawKineto, windows: { start: number; end: number }[]) {
  const abs = (ts: number): number => ts + (doc.baseTimeNanoseconds ?? 0) / 1000;
  let compute = 0;
  let nccl = 0;
  let idle = 0;
  let trailing = 0;
  for (const w of windows) {
    const inside = deviceEvents(doc).filter((e) => abs(e.ts) >= w.start && abs(e.ts) < w.end);
    for (const e of inside) {
      if (e.cat === 'kernel' && !isNcclKernel(e)) compute += e.dur ?? 0;
      if (isNcclKernel(e)) nccl += e.dur ?? 0;
    }
    const iv = inside.map((e): [number, number] => [abs(e.ts), abs(e.ts) + (e.dur ?? 0)]);
    idle += w.end - w.start - unionLength(iv, w.start, w.end);
    const lastEnd = Math.max(w.start, ...iv.map(([, b]) => Math.min(b, w.end)));
    trailing += w.end - lastEnd;
  }
  return { compute, nccl, idle, trailing };
}

describe('the 2-rank DDP fixture (rank 0 of 2)', () => {
  let raw: RawKineto;
  let trace: Trace;
  let summary: ProfileSummary;
  let analysis: Analysis;
  before(async () => {
    const file = kinetoFixture('ddp-2rank-rank0.json.gz');
    raw = readRawKineto(file);
    ({ trace, summary, analysis } = report(await importTrace([file])));
  });

  test('imports as one rank lane of a world of two, and says which rank is missing', () => {
    assert.equal(trace.lanes.length, 1);
    assert.equal(trace.meta.devices[0].id, 'rank:0');
    assert.equal(trace.meta.devices[0].kind, 'rank');
    assert.equal(trace.meta.devices[0].provider, 'kineto');
    assert.equal(trace.lanes[0].label, 'rank 0 · GPU 0 (NVIDIA A100-PG509-200)');
    assert.equal(importedPlan(trace).worldSize, 2);
    assert.deepEqual(importedPlan(trace).ranks, [0]);
    assert.ok(trace.meta.notes.some((n) => /1 of the world's 2 ranks has no file here \(rank 1\)/.test(n)), trace.meta.notes.join('\n'));
    assert.equal(trace.meta.source, 'imported:kineto');
    assert.equal(trace.meta.mode, 'imported');
    assert.equal(trace.meta.opLevel, false);
  });

  test('the trace starts at the absolute time of its first GPU event (baseTimeNanoseconds + ts)', () => {
    const firstTs = Math.min(...deviceEvents(raw).map((e) => e.ts));
    near(trace.meta.startTimeUs, raw.baseTimeNanoseconds! / 1000 + firstTs, 1, 'startTimeUs');
  });

  test('every GPU event becomes one span, and NCCL kernels become comm spans named by their collective', () => {
    const dev = deviceEvents(raw);
    assert.equal(trace.spans.count - names(trace, IDLE).get('idle')!, dev.length);
    const expected = new Map<string, number>();
    for (const e of dev.filter(isNcclKernel)) {
      const c = e.args!['Collective name'] === 'allreduce' ? 'nccl:all_reduce' : `nccl:${String(e.args!['Collective name'])}`;
      expected.set(c, (expected.get(c) ?? 0) + 1);
    }
    const comm = names(trace, COMM);
    for (const [n, count] of expected) assert.equal(comm.get(n), count, n);
    assert.equal(expected.get('nccl:all_reduce'), 15);
    // Every NCCL span is a collective: no peer.
    for (let i = 0; i < trace.spans.count; i++) {
      if (trace.strings[trace.spans.name[i]].startsWith('nccl:')) assert.equal(trace.spans.peer[i], -1);
    }
  });

  test('NCCL spans carry the message bytes: In msg nelems × the dtype size', () => {
    const size: Record<string, number> = { Float: 4, Long: 8 };
    const want = deviceEvents(raw)
      .filter(isNcclKernel)
      .reduce((a, e) => a + (e.args!['In msg nelems'] as number) * size[e.args!['dtype'] as string]!, 0);
    let got = 0;
    for (let i = 0; i < trace.spans.count; i++) if (trace.strings[trace.spans.name[i]].startsWith('nccl:')) got += trace.spans.bytes[i];
    assert.equal(got, want);
    assert.ok(got > 0);
  });

  test('copies and fills are comm spans on their own lane, not compute', () => {
    const dev = deviceEvents(raw);
    const comm = names(trace, COMM);
    assert.equal(comm.get('Memcpy DtoD (Device -> Device)'), dev.filter((e) => e.name === 'Memcpy DtoD (Device -> Device)').length);
    assert.equal(comm.get('Memset (Device)'), dev.filter((e) => e.cat === 'gpu_memset').length);
    for (let i = 0; i < trace.spans.count; i++) {
      if (trace.strings[trace.spans.name[i]].startsWith('Mem')) assert.equal(trace.spans.peer[i], trace.spans.lane[i]);
    }
    const kernels = dev.filter((e) => e.cat === 'kernel' && !isNcclKernel(e)).length;
    assert.equal([...names(trace, COMPUTE).values()].reduce((a, b) => a + b, 0), kernels);
  });

  test('the ProfilerStep annotations give the steps, with windows as documented', () => {
    assert.deepEqual(
      trace.steps.map((w) => w.index),
      [...profilerSteps(raw).keys()].sort((a, b) => a - b),
    );
    const want = expectedWindows([raw]);
    const t0 = trace.meta.startTimeUs;
    want.forEach((w, p) => {
      near(trace.steps[p].startUs + t0, w.start, 1, `step ${w.index} start`);
      near(trace.steps[p].endUs + t0, w.end, 1, `step ${w.index} end`);
    });
  });

  test('compute, communication and idle add up to what the raw events say', () => {
    const want = expectedPerRank(raw, expectedWindows([raw]));
    const d = summary.devices[0];
    near(d.computeUs, want.compute, 1e-3 * want.compute, 'compute');
    near(d.idleUs, want.idle, 0.01 * want.idle, 'idle');
    assert.ok(summary.totals.commShare > 0, 'comm share is positive');
    assert.ok(want.nccl > 0);
  });

  test('a gap before an NCCL kernel is idle waiting on the collective', () => {
    // Independently: some NCCL kernel starts after every earlier event of its step has ended.
    const windows = expectedWindows([raw]);
    const abs = (ts: number): number => ts + raw.baseTimeNanoseconds! / 1000;
    const gapBeforeNccl = windows.some((w) => {
      const evs = deviceEvents(raw)
        .filter((e) => abs(e.ts) >= w.start && abs(e.ts) < w.end)
        .sort((a, b) => a.ts - b.ts);
      let reach = w.start;
      for (const e of evs) {
        if (isNcclKernel(e) && abs(e.ts) - reach >= 1) return true;
        reach = Math.max(reach, abs(e.ts + (e.dur ?? 0)));
      }
      return false;
    });
    assert.equal(gapBeforeNccl, true);
    assert.ok(summary.devices[0].idleByCauseUs.collective > 0);
  });

  test('the analyses run and the rank picture says it has no peer to compare with', () => {
    assert.equal(analysis.steps, 3);
    const r = analyseRanks(analysis);
    assert.equal(r.ranks.length, 1);
    assert.match(r.message, /Only rank:0 is in the trace/);
  });
});

describe('two ranks of the 128-rank job', () => {
  let raws: RawKineto[];
  let trace: Trace;
  let summary: ProfileSummary;
  let analysis: Analysis;
  before(async () => {
    const files = ['job128-rank0.json.gz', 'job128-rank1.json.gz'].map(kinetoFixture);
    raws = files.map(readRawKineto);
    // Given in reverse order: lanes still come out in rank order.
    ({ trace, summary, analysis } = report(await importTrace([files[1], files[0]])));
  });

  test('imports one lane per rank, in rank order, with the world size and the missing ranks', () => {
    assert.deepEqual(trace.meta.devices.map((d) => d.id), ['rank:0', 'rank:1']);
    assert.deepEqual(trace.lanes.map((l) => l.label), ['rank 0 · GPU 0', 'rank 1 · GPU 1']);
    assert.equal(importedPlan(trace).worldSize, 128);
    assert.ok(trace.meta.notes.some((n) => /126 of the world's 128 ranks.*ranks 2–127/.test(n)), trace.meta.notes.join('\n'));
  });

  test('the recorded clocks agree at step starts, so they are kept, and the note says so', () => {
    const [a, b] = raws.map(profilerSteps);
    const diffs = [...a.keys()].map((n) => Math.abs(b.get(n)!.ts - a.get(n)!.ts));
    assert.ok(Math.max(...diffs) < 1000, 'the fixture ranks start their steps within a millisecond');
    assert.ok(trace.meta.notes.some((n) => /kept as recorded/.test(n)));
    // Kept means: rank 1's first event sits where its raw timestamp says, relative to rank 0's.
    const first = (d: RawKineto): number => Math.min(...deviceEvents(d).map((e) => e.ts));
    let lane1First = Infinity;
    for (let i = 0; i < trace.spans.count; i++) if (trace.spans.lane[i] === 1 && trace.spans.kind[i] !== IDLE) lane1First = Math.min(lane1First, trace.spans.start[i]);
    near(lane1First, first(raws[1]) - Math.min(first(raws[0]), first(raws[1])), 1e-6, 'rank 1 first span');
  });

  test('steps 551 and 552 are found, with windows computed from both ranks', () => {
    const want = expectedWindows(raws);
    assert.deepEqual(trace.steps.map((w) => w.index), [551, 552]);
    want.forEach((w, p) => {
      near(trace.steps[p].startUs + trace.meta.startTimeUs, w.start, 1e-3, 'start');
      near(trace.steps[p].endUs + trace.meta.startTimeUs, w.end, 1e-3, 'end');
    });
  });

  test('NCCL kernels are named from the nccl:* annotation around their launch', () => {
    // The fixture's kernels are all ncclKernel_SendRecv; the CPU annotations say what ran.
    const want = new Map<string, number>();
    for (const d of raws) {
      const ann = d.traceEvents.filter((e) => e.ph === 'X' && e.name.startsWith('nccl:'));
      const rt = new Map<number, RawKinetoEvent>();
      for (const e of d.traceEvents) if (e.cat === 'cuda_runtime') rt.set(e.args!['correlation'] as number, e);
      for (const k of deviceEvents(d).filter(isNcclKernel)) {
        assert.match(k.name, /^ncclKernel_SendRecv/);
        const r = rt.get(k.args!['correlation'] as number)!;
        const around = ann.filter((a) => a.tid === r.tid && a.ts <= r.ts && r.ts <= a.ts + a.dur!).pop()!;
        const n = `nccl:${around.name.replace(/^nccl:_?/, '').replace(/_base$/, '')}`;
        want.set(n, (want.get(n) ?? 0) + 1);
      }
    }
    const got = new Map([...names(trace, COMM)].filter(([n]) => n.startsWith('nccl:')));
    assert.deepEqual(got, want);
    assert.deepEqual([...got.keys()].sort(), ['nccl:all_gather', 'nccl:all_reduce', 'nccl:all_to_all']);
    assert.ok(!trace.meta.notes.some((n) => /named from the kernel name/.test(n)));
  });

  test('NCCL bytes come from the annotation input dims and types', () => {
    // rank 0's first all_to_all moves 419430400 unsigned chars.
    let found = false;
    for (let i = 0; i < trace.spans.count; i++) {
      if (trace.spans.lane[i] === 0 && trace.strings[trace.spans.name[i]] === 'nccl:all_to_all' && trace.spans.bytes[i] === 419430400) found = true;
    }
    assert.ok(found);
  });

  test('per-rank compute and idle match the raw events, and the straggler is the rank that computes longest', () => {
    const windows = expectedWindows(raws);
    const want = raws.map((d) => expectedPerRank(d, windows));
    summary.devices.forEach((d, r) => {
      near(d.computeUs, want[r].compute, 1e-6 * want[r].compute, `rank ${r} compute`);
      near(d.idleUs, want[r].idle, 0.01 * want[r].idle, `rank ${r} idle`);
    });
    const ranks = analyseRanks(analysis);
    const slow = want[0].compute > want[1].compute ? 0 : 1;
    assert.equal(ranks.slowest, slow);
    const ratio = want[slow].compute / want[1 - slow].compute;
    near(ranks.ranks[slow].slowdown, ratio, 1e-9, 'slowdown');
    assert.equal(ranks.ranks[slow].straggler, ratio > 1.2);
    assert.match(ranks.message, new RegExp(`rank:${slow}`));
  });

  test('the rank that finishes its steps first waits for the other: trailing idle is collective wait', () => {
    const windows = expectedWindows(raws);
    const want = raws.map((d) => expectedPerRank(d, windows));
    for (let r = 0; r < 2; r++) {
      // The gap from a rank's last event to the step's end is idle with cause collective.
      assert.ok(summary.devices[r].idleByCauseUs.collective >= want[r].trailing - 1, `rank ${r}`);
    }
    const early = want[0].trailing > want[1].trailing ? 0 : 1;
    assert.ok(want[early].trailing > 0);
    assert.ok(summary.devices[early].idleByCauseUs.collective > 0);
    assert.ok(analyseRanks(analysis).collectiveWaitShare > 0);
  });

  test('summary, analyses and findings give plausible numbers', () => {
    assert.equal(summary.steps, 2);
    assert.ok(summary.totals.commShare > 0 && summary.totals.commShare < 1);
    const shares = summary.totals.computeShare + summary.totals.commShare + summary.totals.idleShare;
    near(shares, 1, 1e-9, 'shares');
    near(summary.stepTimeUs.median, (trace.steps[0].endUs - trace.steps[0].startUs + trace.steps[1].endUs - trace.steps[1].startUs) / 2, 1e-6, 'median step');
    assert.equal(analysis.breakdown.lanes.length, 2);
    assert.equal(analysis.criticalPath.lengthUs.length, 2);
  });

  test('the imported trace survives writing and reading as a Parallax trace', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'parallax-kineto-'));
    try {
      const p = join(dir, 'job.parallax.json');
      await writeTrace(p, trace);
      const back = await importTrace([p]);
      assert.equal(back.spans.count, trace.spans.count);
      assert.deepEqual(back.meta.notes, trace.meta.notes);
      assert.deepEqual(spanRow(back, 10), spanRow(trace, 10));
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('hand-written Kineto traces', () => {
  const ddp = (rank: number, computeUs: number, clockUs = 0, worldSize = 2) =>
    ddpRank({ rank, worldSize, steps: 3, stepUs: 10_000, computeUs, allReduceEndUs: 8_000, clockUs });

  test('a slower rank is the straggler and the faster one waits inside the all-reduce', () => {
    const t = kinetoTrace([
      { doc: ddp(0, 3000), source: 'r0.json' },
      { doc: ddp(1, 6000), source: 'r1.json' },
    ]);
    const { analysis } = report(t);
    const r = analyseRanks(analysis);
    assert.equal(r.slowest, 1);
    assert.deepEqual(r.stragglers, [1]);
    near(r.ranks[1].slowdown, 2, 1e-9, 'slowdown');
    assert.equal(r.mostWaiting, 0);
    near(r.ranks[0].commPerStepUs - r.ranks[1].commPerStepUs, 3000, 1e-6, 'extra time inside the all-reduce');
    assert.deepEqual([...names(t, COMM).keys()], ['nccl:all_reduce']);
    for (let i = 0; i < t.spans.count; i++) if (t.spans.kind[i] === COMM) assert.equal(t.spans.bytes[i], 4096);
  });

  test('ranks missing from the world are listed as ranges', () => {
    const t = kinetoTrace([
      { doc: ddp(0, 3000, 0, 8), source: 'r0.json' },
      { doc: ddp(5, 3000, 0, 8), source: 'r5.json' },
    ]);
    assert.equal(importedPlan(t).worldSize, 8);
    assert.deepEqual(importedPlan(t).ranks, [0, 5]);
    assert.ok(t.meta.notes.some((n) => n.includes('6 of the world\'s 8 ranks have no file here (ranks 1–4, 6–7)')), t.meta.notes.join('\n'));
  });

  test('the same rank twice is refused, naming both files', () => {
    assert.throws(
      () => kinetoTrace([{ doc: ddp(0, 1), source: 'a.json' }, { doc: ddp(0, 1), source: 'b.json' }]),
      (e: Error) => e instanceof UserError && /^b\.json: rank 0 again \(also in a\.json\)/.test(e.message),
    );
  });

  test('files from jobs of different world sizes are refused', () => {
    assert.throws(
      () => kinetoTrace([{ doc: ddp(0, 1, 0, 2), source: 'a.json' }, { doc: ddp(1, 1, 0, 4), source: 'b.json' }]),
      (e: Error) => e instanceof UserError && /world size/.test(e.message),
    );
  });

  test('a rank on a clock seconds away is aligned by its step starts, and the note says so', () => {
    const t = kinetoTrace([
      { doc: ddp(0, 3000), source: 'r0.json' },
      { doc: ddp(1, 3000, 7_000_000), source: 'r1.json' },
    ]);
    assert.ok(t.meta.notes.some((n) => /rank 1's clock is 7\.00 s ahead of rank 0's/.test(n)), t.meta.notes.join('\n'));
    // Both ranks' first kernel now starts at the same time, and the steps are 10 ms apart.
    const firstOf = (lane: number): number => {
      let m = Infinity;
      for (let i = 0; i < t.spans.count; i++) if (t.spans.lane[i] === lane) m = Math.min(m, t.spans.start[i]);
      return m;
    };
    assert.equal(firstOf(0), firstOf(1));
    assert.deepEqual(t.steps.map((w) => w.endUs - w.startUs), [7990, 10_000, 10_000]);
  });

  test('a rank whose clock differs by less than half a step keeps its skew', () => {
    const t = kinetoTrace([
      { doc: ddp(0, 3000), source: 'r0.json' },
      { doc: ddp(1, 3000, 300), source: 'r1.json' },
    ]);
    assert.ok(t.meta.notes.some((n) => /kept as recorded.*within 300 µs/.test(n)), t.meta.notes.join('\n'));
    let a = Infinity;
    let b = Infinity;
    for (let i = 0; i < t.spans.count; i++) {
      if (t.spans.lane[i] === 0) a = Math.min(a, t.spans.start[i]);
      else b = Math.min(b, t.spans.start[i]);
    }
    assert.equal(b - a, 300);
  });

  test('without steps, a rank whose activity does not overlap the others is aligned by its first kernel', () => {
    const kernels = [{ name: 'a', ts: 10, dur: 20 }, { name: 'b', ts: 50, dur: 20 }];
    const t = kinetoTrace([
      { doc: kinetoDoc({ rank: 0, kernels }), source: 'r0.json' },
      { doc: kinetoDoc({ rank: 1, gpu: 1, kernels, clockUs: 3_600_000_000 }), source: 'r1.json' },
    ]);
    assert.ok(t.meta.notes.some((n) => /rank 1's activity does not overlap rank 0's.*aligned by its first kernel/.test(n)), t.meta.notes.join('\n'));
    assert.deepEqual(t.steps, [{ index: 0, startUs: 0, endUs: 60 }]);
    assert.deepEqual([0, 1, 2, 3].map((i) => [t.spans.lane[i], t.spans.start[i]]), [[0, 0], [0, 40], [1, 0], [1, 40]]);
  });

  test('baseTimeNanoseconds puts ranks with relative timestamps on one clock', () => {
    const t = kinetoTrace([
      { doc: { ...ddp(0, 3000), baseTimeNanoseconds: 1_700_000_000_000_000_000 }, source: 'r0.json' },
      { doc: { ...ddp(1, 3000, -1000), baseTimeNanoseconds: 1_700_000_000_001_000_000 }, source: 'r1.json' },
    ]);
    assert.equal(t.meta.startTimeUs, 1_700_000_000_000_010);
    let a = Infinity;
    let b = Infinity;
    for (let i = 0; i < t.spans.count; i++) {
      if (t.spans.lane[i] === 0) a = Math.min(a, t.spans.start[i]);
      else b = Math.min(b, t.spans.start[i]);
    }
    assert.equal(b, a, 'a base one millisecond later cancels timestamps one millisecond earlier');
  });

  test('kernels overlapping on two streams stay two spans, and idle is what neither covers', () => {
    const doc = kinetoDoc({
      rank: 0,
      worldSize: 1,
      steps: [[0, 0, 1000]],
      kernels: [
        { name: 'gemm', ts: 10, dur: 100, stream: 7 },
        { name: 'softmax', ts: 50, dur: 100, stream: 8 },
        { name: 'gemm', ts: 200, dur: 50, stream: 7 },
      ],
    });
    const { trace, summary } = report(kinetoTrace([{ doc, source: 'streams.json' }]));
    assert.equal(names(trace, COMPUTE).get('gemm'), 2);
    assert.equal(names(trace, COMPUTE).get('softmax'), 1);
    assert.deepEqual(trace.steps, [{ index: 0, startUs: 0, endUs: 240 }]);
    assert.equal(summary.devices[0].computeUs, 250);
    assert.equal(summary.devices[0].idleUs, 240 - 140 - 50);
  });

  test('an NCCL kernel without a collective name is named from the annotation around its launch, with bytes from its inputs', () => {
    const doc = kinetoDoc({
      rank: 0,
      worldSize: 2,
      steps: [[0, 0, 1000]],
      cpu: [{ name: 'nccl:all_reduce', ts: 5, dur: 20, tid: 3, args: { 'Input Dims': [[1000, 2]], 'Input type': ['c10::BFloat16'] } }],
      kernels: [
        { name: 'gemm', ts: 10, dur: 100 },
        { name: 'ncclKernel_SendRecv_RING_SIMPLE_Sum_int8_t(ncclDevComm*, unsigned long, ncclWork*)', ts: 120, dur: 50, stream: 20, launchTs: 8, launchTid: 3 },
      ],
    });
    const t = kinetoTrace([{ doc, source: 'ann.json' }]);
    const i = [...Array(t.spans.count).keys()].find((k) => t.spans.kind[k] === COMM)!;
    assert.equal(t.strings[t.spans.name[i]], 'nccl:all_reduce');
    assert.equal(t.spans.bytes[i], 1000 * 2 * 2);
  });

  test('record_param_comms with the kernel’s External id names it when nothing closer does', () => {
    const doc = kinetoDoc({
      rank: 0,
      worldSize: 2,
      steps: [[0, 0, 1000]],
      cpu: [{ name: 'record_param_comms', cat: 'cpu_op', ts: 1, dur: 5, args: { 'External id': 1000, 'Collective name': '_reduce_scatter_base', 'In msg nelems': 256, dtype: 'Half' } }],
      kernels: [{ name: 'ncclDevKernel_Generic(ncclDevComm*, unsigned long, ncclWork*)', ts: 10, dur: 50 }],
    });
    const t = kinetoTrace([{ doc, source: 'param.json' }]);
    assert.equal(t.strings[t.spans.name[0]], 'nccl:reduce_scatter');
    assert.equal(t.spans.bytes[0], 512);
  });

  test('an NCCL kernel with nothing else to go by is named from its kernel name, and a note says how many', () => {
    const doc = kinetoDoc({
      rank: 0,
      worldSize: 2,
      steps: [[0, 0, 1000]],
      kernels: [{ name: 'ncclDevKernel_AllGather_RING_LL(ncclDevComm*, unsigned long, ncclWork*)', ts: 10, dur: 50 }],
    });
    const t = kinetoTrace([{ doc, source: 'bare.json' }]);
    assert.equal(t.strings[t.spans.name[0]], 'nccl:all_gather');
    assert.ok(t.meta.notes.some((n) => /1 of 1 NCCL kernels had no collective name/.test(n)));
  });

  test('host↔device copies carry the staging flag, device copies do not', () => {
    const doc = kinetoDoc({
      rank: 0,
      worldSize: 1,
      steps: [[0, 0, 1000]],
      kernels: [
        { name: 'Memcpy HtoD (Pinned -> Device)', cat: 'gpu_memcpy', ts: 10, dur: 5, args: { bytes: 4096 } },
        { name: 'Memcpy DtoD (Device -> Device)', cat: 'gpu_memcpy', ts: 20, dur: 5, args: { bytes: 8192 } },
        { name: 'Memset (Device)', cat: 'gpu_memset', ts: 30, dur: 5, args: { bytes: 64 } },
      ],
    });
    const t = kinetoTrace([{ doc, source: 'copies.json' }]);
    assert.deepEqual(
      [0, 1, 2].map((i) => [spanRow(t, i).kind, spanRow(t, i).flags ?? 0, spanRow(t, i).bytes]),
      [['comm', 4, 4096], ['comm', 0, 8192], ['comm', 0, 64]],
    );
  });

  test('a kernel whose launch is missing takes its step from its own start, and the note counts it', () => {
    const doc = kinetoDoc({
      rank: 0,
      worldSize: 1,
      steps: [[0, 0, 100], [1, 100, 100]],
      kernels: [
        { name: 'a', ts: 10, dur: 20 },
        { name: 'b', ts: 150, dur: 20, launchTs: null },
      ],
    });
    const t = kinetoTrace([{ doc, source: 'nolaunch.json' }]);
    assert.deepEqual(t.steps.map((w) => w.index), [0, 1]);
    assert.equal(t.spans.step[1], 1);
    assert.ok(t.meta.notes.some((n) => /1 GPU spans had no launch call/.test(n)));
  });

  test('without ProfilerStep annotations the whole trace is one step', () => {
    const doc = kinetoDoc({ kernels: [{ name: 'a', ts: 10, dur: 20 }, { name: 'b', ts: 100, dur: 20 }] });
    const t = kinetoTrace([{ doc, source: 'nosteps.json' }]);
    assert.deepEqual(t.steps, [{ index: 0, startUs: 0, endUs: 110 }]);
    assert.equal(importedPlan(t).worldSize, 1);
    assert.ok(t.meta.notes.some((n) => /No ProfilerStep#N annotations/.test(n)));
    const { summary } = report(t);
    assert.equal(summary.devices[0].idleUs, 70);
  });

  test('steps not recorded by every rank are left out, with a note', () => {
    const a = kinetoDoc({ rank: 0, steps: [[1, 0, 100], [2, 100, 100]], kernels: [{ name: 'k', ts: 10, dur: 10, launchTs: 5 }, { name: 'k', ts: 110, dur: 10, launchTs: 105 }] });
    const b = kinetoDoc({ rank: 1, gpu: 1, steps: [[2, 100, 100]], kernels: [{ name: 'k', ts: 110, dur: 10, launchTs: 105 }] });
    const t = kinetoTrace([{ doc: a, source: 'a.json' }, { doc: b, source: 'b.json' }]);
    assert.deepEqual(t.steps.map((w) => w.index), [2]);
    assert.ok(t.meta.notes.some((n) => /Steps 1 were not recorded by every rank/.test(n)));
  });

  test('small helpers: dtype sizes, collective names, rank ranges', () => {
    assert.equal(dtypeBytes('Float'), 4);
    assert.equal(dtypeBytes('c10::BFloat16'), 2);
    assert.equal(dtypeBytes('unsigned char'), 1);
    assert.equal(dtypeBytes('mystery'), 0);
    assert.equal(canonicalCollective('allreduce'), 'all_reduce');
    assert.equal(canonicalCollective('nccl:_all_gather_base'), 'all_gather');
    assert.equal(canonicalCollective('alltoall_base'), 'all_to_all');
    assert.equal(collectiveFromKernelName('ncclKernel_ReduceScatter_RING_LL_Sum_half(x)'), 'reduce_scatter');
    assert.equal(collectiveFromKernelName('gemm'), null);
    assert.equal(formatRanges([1, 2, 3, 5, 7, 8]), '1–3, 5, 7–8');
  });
});

describe('files that are not Kineto traces', () => {
  const dir = mkdtempSync(join(tmpdir(), 'parallax-kineto-bad-'));
  after(() => rmSync(dir, { recursive: true, force: true }));
  const file = (name: string, data: string | Buffer): string => {
    const p = join(dir, name);
    writeFileSync(p, data);
    return p;
  };
  /** The import fails with a one-line UserError that names the file and matches `why`. */
  const refused = async (paths: string[], named: string, why: RegExp): Promise<void> => {
    await assert.rejects(importTrace(paths), (e: Error) => {
      assert.ok(e instanceof UserError, `${e.name}: ${e.message}`);
      assert.ok(!e.message.includes('\n'));
      assert.ok(e.message.startsWith(`${named}: `), e.message);
      assert.match(e.message, why);
      return true;
    });
  };

  test('text that is not JSON is refused as invalid JSON', async () => {
    const p = file('notjson.json', 'hello');
    await refused([p], p, /not valid JSON/);
  });

  test('a gzip file cut before its first complete event is refused as corrupt gzip', async () => {
    // Files cut after some events import what came before the cut (import-stream.test.ts).
    const gz = gzipSync(JSON.stringify(kinetoDoc({ kernels: [{ name: 'a', ts: 0, dur: 1 }] })));
    const p = file('cut.json.gz', gz.subarray(0, 14));
    await refused([p], p, /corrupt gzip/);
  });

  test('gzip of garbage is refused as corrupt gzip', async () => {
    const p = file('garbage.json.gz', Buffer.from([0x1f, 0x8b, 8, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9]));
    await refused([p], p, /corrupt gzip/);
  });

  test('a JSON object without traceEvents is neither format', async () => {
    const p = file('other.json', JSON.stringify({ hello: 'world' }));
    await refused([p], p, /neither a Parallax trace nor a PyTorch profiler/);
  });

  test('a bare array of events is refused with what to do instead', async () => {
    const p = file('array.json', JSON.stringify([{ ph: 'X', name: 'a', ts: 0, dur: 1 }]));
    await refused([p], p, /bare array/);
  });

  test('a CPU-only trace is refused because it has no GPU timeline', async () => {
    const p = file('cpu.json', JSON.stringify({ traceEvents: [{ ph: 'X', cat: 'cpu_op', name: 'aten::mm', ts: 0, dur: 5, pid: 1, tid: 1 }] }));
    await refused([p], p, /no GPU activity/);
  });

  test('a missing file is named', async () => {
    const p = join(dir, 'nope.json');
    await refused([p], p, /no such file/);
  });

  test('a Parallax trace mixed with Kineto files is refused', async () => {
    const native = join(dir, 'run.parallax.json');
    await writeTrace(native, traceOf([{ lane: 0, kind: 'compute', name: 'x', start: 0, dur: 1, step: 0 }], [[0, 1]]));
    const k = file('k.json', JSON.stringify(kinetoDoc({ kernels: [{ name: 'a', ts: 0, dur: 1 }] })));
    await refused([native, k], native, /on its own/);
  });

  test('a gzip-compressed Kineto file imports like the plain one', async () => {
    const doc = kinetoDoc({ rank: 0, worldSize: 1, steps: [[0, 0, 100]], kernels: [{ name: 'a', ts: 10, dur: 20 }] });
    const plain = await importTrace([file('p.json', JSON.stringify(doc))]);
    const gz = await importTrace([file('p.bin', gzipSync(JSON.stringify(doc)))]);
    assert.deepEqual(gz.steps, plain.steps);
    assert.deepEqual(spanRow(gz, 0), spanRow(plain, 0));
  });

  test('a Parallax trace, plain or gzip-compressed, comes back as it was written', async () => {
    const t = traceOf([{ lane: 0, kind: 'compute', name: 'x', start: 0, dur: 1, step: 0 }], [[0, 1]]);
    const p = join(dir, 'native.parallax.json');
    await writeTrace(p, t);
    const back = await importTrace([p]);
    assert.deepEqual(spanRow(back, 0), spanRow(t, 0));
    const gz = file('native.parallax.json.gz', gzipSync(readFileSync(p)));
    assert.deepEqual(spanRow(await importTrace([gz]), 0), spanRow(t, 0));
  });
});

describe('the import and export commands', () => {
  const dir = mkdtempSync(join(tmpdir(), 'parallax-import-cli-'));
  after(() => rmSync(dir, { recursive: true, force: true }));

  /** Runs the commands in-process, as main.ts will once it registers them. */
  async function run(args: string[]): Promise<string> {
    const program = new Command().exitOverride();
    const out: string[] = [];
    registerImportExport(program, { write: (s) => out.push(s) });
    await program.parseAsync(['node', 'parallax', ...args]);
    return out.join('');
  }

  test('import prints the summary, the ranks and the notes, and writes a trace report can read', async () => {
    const out = join(dir, 'job.parallax.json');
    const text = await run(['import', kinetoFixture('job128-rank0.json.gz'), kinetoFixture('job128-rank1.json.gz'), '--out', out]);
    assert.match(text, /imported from kineto · 2 devices · 2 steps/);
    assert.match(text, /ranks \(per step\)/);
    assert.match(text, /126 of the world's 128 ranks/);
    assert.match(text, /trace written to/);
    const t = await readTrace(out);
    assert.equal(t.lanes.length, 2);
    assert.ok(t.summary !== undefined && Array.isArray(t.findings));
    assert.ok(t.spans.cause.some((c) => c === IdleCauseCode.collective));
  });

  test('import --json prints the summary, findings and ranks as JSON', async () => {
    const doc = JSON.parse(await run(['import', kinetoFixture('ddp-2rank-rank0.json.gz'), '--json'])) as Record<string, unknown>;
    assert.equal(doc['source'], 'imported:kineto');
    assert.ok(Array.isArray(doc['findings']));
    assert.equal((doc['ranks'] as { ranks: unknown[] }).ranks.length, 1);
    assert.equal(doc['tracePath'], null);
  });

  test('export writes a Chrome trace from Kineto files', async () => {
    const out = join(dir, 'job.chrome.json');
    const text = await run(['export', kinetoFixture('ddp-2rank-rank0.json.gz'), '--format', 'chrome', '--out', out]);
    assert.match(text, /Chrome trace written to/);
    const doc = JSON.parse(readFileSync(out, 'utf8')) as { traceEvents: { ph: string; cat?: string }[] };
    assert.ok(doc.traceEvents.some((e) => e.ph === 'X' && e.cat === 'idle'));
  });

  test('errors surface as one-line UserErrors', async () => {
    await assert.rejects(run(['import', join(dir, 'missing.json')]), (e: Error) => e instanceof UserError && /no such file/.test(e.message));
  });
});
