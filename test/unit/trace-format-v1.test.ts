import { test } from 'node:test';
import assert from 'node:assert/strict';
import { analyse } from '../../src/profiler/analysis/index';
import { findings } from '../../src/profiler/findings';
import { deriveIdle } from '../../src/profiler/idle';
import { summarize } from '../../src/profiler/summary';
import { CommOpCode, PhaseCode, SpanFlag, TraceFormatError, spanRow, traceFromJson, traceToJson, type SpanRow, type Trace } from '../../src/profiler/trace-format';
import { dataPlan, meta, pipelinePlan, traceOf } from '../helpers/trace-builders';

/**
 * A version-1 document written by hand, as Parallax 0.1 wrote them: no `comm` or `phase`
 * columns, meanings only in span names, and a flat `meta.plan` beside `meta.mode`.
 */
function v1Document(mode: string, plan: Record<string, unknown>, rows: (Omit<SpanRow, 'comm' | 'phase'> & { stage?: number })[], steps: [number, number][]): Record<string, unknown> {
  const strings: string[] = [];
  const intern = (s: string): number => {
    const i = strings.indexOf(s);
    return i >= 0 ? i : strings.push(s) - 1;
  };
  const kinds = ['compute', 'comm', 'idle'];
  const causes = ['none', 'bubble', 'collective', 'host', 'other'];
  const col = (f: (r: (typeof rows)[number]) => number): number[] => rows.map(f);
  const m = meta({}, 2);
  return {
    format: 'parallax-trace',
    version: 1,
    meta: { ...m, formatVersion: 1, mode, plan },
    strings,
    lanes: m.devices.map((d, i) => ({ device: i, label: d.label, group: d.physicalUnit })),
    steps: steps.map(([startUs, endUs], index) => ({ index, startUs, endUs })),
    spans: {
      count: rows.length,
      lane: col((r) => r.lane),
      kind: col((r) => kinds.indexOf(r.kind)),
      name: col((r) => intern(r.name)),
      opType: col((r) => (r.opType === undefined ? -1 : intern(r.opType))),
      start: col((r) => r.start),
      dur: col((r) => r.dur),
      step: col((r) => r.step ?? -1),
      micro: col((r) => r.micro ?? -1),
      stage: col((r) => r.stage ?? -1),
      bytes: col((r) => r.bytes ?? 0),
      peer: col((r) => r.peer ?? -1),
      parent: col((r) => r.parent ?? -1),
      flags: col((r) => r.flags ?? 0),
      cause: col((r) => causes.indexOf(r.cause ?? 'none')),
    },
  };
}

/** Two stages, two micro-batches: stage 1 is three times slower, so the calibration suggests new cuts. */
const pipelineRows: SpanRow[] = [
  { lane: 0, kind: 'compute', name: 'stage.run', start: 0, dur: 10, step: 0, micro: 0, stage: 0, phase: 'forward' },
  { lane: 0, kind: 'comm', name: 'send', comm: 'send', start: 10, dur: 1, step: 0, micro: 0, stage: 0, peer: 1, bytes: 64 },
  { lane: 0, kind: 'compute', name: 'stage.run', start: 11, dur: 10, step: 0, micro: 1, stage: 0, phase: 'forward' },
  { lane: 0, kind: 'comm', name: 'send', comm: 'send', start: 21, dur: 1, step: 0, micro: 1, stage: 0, peer: 1, bytes: 64 },
  { lane: 1, kind: 'comm', name: 'recv', comm: 'recv', start: 10, dur: 1, step: 0, micro: 0, stage: 1, peer: 0, bytes: 64 },
  { lane: 1, kind: 'compute', name: 'stage.run', start: 11, dur: 30, step: 0, micro: 0, stage: 1, phase: 'forward' },
  { lane: 1, kind: 'comm', name: 'recv', comm: 'recv', start: 41, dur: 1, step: 0, micro: 1, stage: 1, peer: 0, bytes: 64 },
  { lane: 1, kind: 'compute', name: 'stage.run', start: 42, dur: 30, step: 0, micro: 1, stage: 1, phase: 'forward' },
];
const stageNodes = [['a'], ['b', 'c', 'd']];
const nodeCostUs = { a: 10, b: 10, c: 10, d: 10 };

/** Data parallel with a synthetic-gradient all-reduce after each device's compute. */
const dataRows: SpanRow[] = [
  { lane: 0, kind: 'comm', name: 'scatter', comm: 'scatter', start: 0, dur: 2, step: 0, bytes: 100 },
  { lane: 0, kind: 'compute', name: 'session.run', start: 2, dur: 20, step: 0, phase: 'forward' },
  { lane: 0, kind: 'comm', name: 'allreduce.ring (synthetic gradients)', comm: 'allreduce', flags: SpanFlag.synthetic, start: 40, dur: 10, step: 0, bytes: 800 },
  { lane: 1, kind: 'comm', name: 'scatter', comm: 'scatter', start: 0, dur: 2, step: 0, bytes: 100 },
  { lane: 1, kind: 'compute', name: 'session.run', start: 2, dur: 38, step: 0, phase: 'forward' },
  { lane: 1, kind: 'comm', name: 'allreduce.ring (synthetic gradients)', comm: 'allreduce', flags: SpanFlag.synthetic, start: 40, dur: 10, step: 0, bytes: 800 },
  { lane: 1, kind: 'comm', name: 'gather', comm: 'gather', start: 50, dur: 2, step: 0, bytes: 50 },
];

/** The rows as version 1 stored them: no comm operation, no phase, no synthetic flag. */
const asV1 = (rows: SpanRow[]): SpanRow[] =>
  rows.map(({ comm: _comm, phase: _phase, ...r }) => ({ ...r, ...(r.flags !== undefined ? { flags: r.flags & ~SpanFlag.synthetic } : {}) }));

/** Everything derived from a trace, for comparing two traces' answers. */
function answers(t: Trace): unknown {
  const d = deriveIdle(t);
  const summary = summarize(d);
  const analysis = analyse(d);
  return { summary, analysis: { ...analysis, criticalPath: { ...analysis.criticalPath, representative: undefined } }, findings: findings(d, summary, { analysis }) };
}

test('a version-1 pipeline trace loads with comm codes, phases and a typed plan, and analyses give the same answers', () => {
  const doc = v1Document(
    'pipeline',
    {
      devices: 'cpu:2',
      batch: 8,
      steps: 1,
      warmup: 1,
      seed: 7,
      stages: 2,
      microBatches: 2,
      schedule: 'gpipe',
      cuts: ['a'],
      stageNodes,
      nodeCostUs,
      microBatchRows: 4,
      stageCostUs: [10, 30],
      partitionBalance: 1.5,
      nodeCostUsAlt: { rows: 2, costs: { a: 6, b: 5, c: 5, d: 5 } },
      calibration: { device: 'cpu:0', rows: 4, runs: 3, note: 'calibrated on cpu:0' },
    },
    asV1(pipelineRows),
    [[0, 72]],
  );
  const t = traceFromJson(doc);
  const plan = pipelinePlan({
    devices: 'cpu:2',
    batch: 8,
    steps: 1,
    warmup: 1,
    seed: 7,
    stages: 2,
    microBatches: 2,
    cuts: ['a'],
    partition: { stageNodes, stageCostUs: [10, 30], balance: 1.5 },
    calibration: { device: 'cpu:0', rows: 4, runs: 3, note: 'calibrated on cpu:0', nodeCostUs, alt: { rows: 2, nodeCostUs: { a: 6, b: 5, c: 5, d: 5 } } },
  });
  assert.equal(t.meta.mode, 'pipeline');
  assert.deepEqual(t.meta.plan, plan);
  const rows = Array.from({ length: t.spans.count }, (_, i) => spanRow(t, i));
  assert.deepEqual(rows.map((r) => r.comm ?? 'none'), pipelineRows.map((r) => r.comm ?? 'none'));
  assert.deepEqual(
    Array.from(t.spans.comm).filter((c) => c !== 0),
    [CommOpCode.send, CommOpCode.send, CommOpCode.recv, CommOpCode.recv],
  );
  assert.ok(rows.filter((r) => r.kind === 'compute').every((r) => r.phase === 'forward'));
  assert.equal(t.spans.phase[1], PhaseCode.none);

  const native = traceOf(pipelineRows, [[0, 72]], { ...meta({ plan }), formatVersion: 1 });
  assert.deepEqual(answers(t), answers(native));
  // The calibration still drives the same suggestion: cut after b instead of after a.
  const pipelineFinding = (answers(t) as { findings: { id: string }[] }).findings.map((f) => f.id);
  assert.ok(pipelineFinding.includes('pipeline-imbalance'));
  // And the migrated trace writes out as version 2 and reads back unchanged.
  const again = traceFromJson(JSON.parse(JSON.stringify(traceToJson(t))));
  assert.deepEqual(again.meta.plan, plan);
  assert.deepEqual(Array.from(again.spans.comm), Array.from(t.spans.comm));
});

test('a version-1 data-parallel trace marks its synthetic gradients by flag and its all-reduce by code', () => {
  const doc = v1Document('data', { devices: 'cpu:2', batch: 8, steps: 1, warmup: 0, seed: 0, shards: [4, 4], gradSync: { elements: 200, synthetic: true } }, asV1(dataRows), [[0, 52]]);
  const t = traceFromJson(doc);
  assert.deepEqual(t.meta.plan, dataPlan({ shards: [4, 4], gradSync: true }));
  const rows = Array.from({ length: t.spans.count }, (_, i) => spanRow(t, i));
  const ar = rows.filter((r) => r.comm === 'allreduce');
  assert.equal(ar.length, 2);
  assert.ok(ar.every((r) => ((r.flags ?? 0) & SpanFlag.synthetic) !== 0));
  assert.deepEqual(rows.map((r) => r.comm ?? 'none'), dataRows.map((r) => r.comm ?? 'none'));
  const native = traceOf(dataRows, [[0, 52]], { ...meta({ plan: dataPlan({ shards: [4, 4], gradSync: true }) }), formatVersion: 1 });
  assert.deepEqual(answers(t), answers(native));
});

test('a version-1 one-device run (mode "single") becomes a one-device data plan', () => {
  const doc = v1Document('single', { devices: 'cpu:1', batch: 8, steps: 1, warmup: 0, seed: 0 }, [{ lane: 0, kind: 'compute', name: 'session.run', start: 0, dur: 10, step: 0 }], [[0, 10]]);
  const t = traceFromJson(doc);
  assert.equal(t.meta.mode, 'data');
  assert.equal(t.meta.plan.mode, 'data');
});

test('a trace whose meta.mode disagrees with its plan is refused, naming both', () => {
  const doc = traceToJson(traceOf(dataRows, [[0, 52]], meta({ plan: dataPlan() })));
  const bad = { ...doc, meta: { ...doc.meta, mode: 'pipeline' } };
  assert.throws(
    () => traceFromJson(bad),
    (e: Error) => e instanceof TraceFormatError && /meta\.mode is "pipeline" but meta\.plan\.mode is "data"/.test(e.message),
  );
});
