/**
 * `parallax export --format chakra` on real runs through the built CLI: a data-parallel run
 * with its gradient all-reduce, a pipeline run, and a prediction simulated from the
 * data-parallel one. Every file is split and decoded by `protoc` from the official schema,
 * and its nodes are checked against the trace's spans.
 */
import { test, before } from 'node:test';
import assert from 'node:assert/strict';
import { readdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { runCli } from '../helpers/cli';
import { tempDir } from '../helpers/temp';
import { needs, protocMissing } from '../helpers/prerequisites';
import { decodeEtFile, numAttr, type DecodedNode } from '../helpers/chakra';
import { readTrace, writeTrace } from '../../src/profiler/trace-io';
import { COMM_OPS, SpanFlag, SpanKind, type Trace } from '../../src/profiler/trace-format';
import { fitCostModel, simulate } from '../../src/profiler/simulate';
import { estimateCosts, loadModel } from '../../src/runtime/onnx/model';
import { ensureDemoModel } from '../../src/runtime/onnx/demo-model';

const dir = tempDir('chakra');
const env = { PARALLAX_CACHE: join(dir, 'cache') };
const dataRun = join(dir, 'dp.parallax.json');
const pipeRun = join(dir, 'pp.parallax.json');

before(async () => {
  const common = ['--devices', 'cpu:2', '--batch', '16', '--steps', '3', '--warmup', '1', '--json'];
  const dp = await runCli(['profile', 'demo', ...common, '--grad-sync', '--out', dataRun], { env });
  assert.equal(dp.code, 0, dp.stderr);
  const pp = await runCli(['profile', 'demo', '--mode', 'pipeline', '--micro-batches', '4', ...common, '--out', pipeRun], { env });
  assert.equal(pp.code, 0, pp.stderr);
});

/** The Chakra node type each top-level span must become. */
function expectedType(t: Trace, i: number): string {
  if (t.spans.kind[i] === SpanKind.compute) return 'COMP_NODE';
  const op = COMM_OPS[t.spans.comm[i]];
  switch (op) {
    case 'scatter':
      return 'MEM_LOAD_NODE';
    case 'gather':
      return 'MEM_STORE_NODE';
    case 'send':
      return 'COMM_SEND_NODE';
    case 'recv':
      return 'COMM_RECV_NODE';
    default:
      return 'COMM_COLL_NODE';
  }
}

/** The top-level compute and comm spans of `step` on `lane`, in start order. */
function laneSpans(t: Trace, lane: number, step: number): number[] {
  const s = t.spans;
  const out: number[] = [];
  for (let i = 0; i < s.count; i++) {
    if (s.lane[i] !== lane || s.step[i] !== step || s.parent[i] >= 0) continue;
    if ((s.flags[i] & (SpanFlag.op | SpanFlag.profiled)) !== 0) continue;
    if (s.kind[i] === SpanKind.compute || s.kind[i] === SpanKind.comm) out.push(i);
  }
  return out.sort((a, b) => s.start[a] - s.start[b] || a - b);
}

/** The step of median length (the lower one of an even count), found independently of the exporter. */
function medianStep(t: Trace): number {
  const sorted = [...t.steps].sort((a, b) => a.endUs - a.startUs - (b.endUs - b.startUs));
  return sorted[Math.floor((sorted.length - 1) / 2)].index;
}

/** The bytes of the one collective a rank's program runs per step (its buffer, e.g. the gradients). */
function collectiveBuffer(t: Trace, rank: number): number {
  const colls = t.meta.program?.devices[rank]?.instructions.filter((i) => i.op === 'collective') ?? [];
  assert.equal(colls.length, 1, 'one collective per step in these programs');
  return colls[0]!.bytes;
}

/** The estimate of FLOPs and bytes of the demo model at `rows` rows, computed directly from the model. */
async function modelEstimate(rows: number): Promise<{ totalFlops: number; totalBytes: number }> {
  const ir = await loadModel(await ensureDemoModel(env.PARALLAX_CACHE));
  return estimateCosts(ir, { batch: rows });
}

/** Exports through the CLI and decodes every rank's file. */
async function exportAndDecode(trace: string, out: string, extra: string[] = []): Promise<{ stdout: string; ranks: { metadata: string; nodes: DecodedNode[] }[] }> {
  const r = await runCli(['export', trace, '--format', 'chakra', '--out', out, ...extra], { env });
  assert.equal(r.code, 0, r.stderr);
  const name = trace.replace(/^.*\//, '').replace(/\.parallax\.json$/, '');
  const files = readdirSync(out).filter((f) => f.endsWith('.et')).sort();
  return { stdout: r.stdout, ranks: files.map((_, k) => decodeEtFile(join(out, `${name}.${k}.et`))) };
}

/** Every node matches its span: type, duration, size, and the chain of data dependencies. */
function checkAgainstTrace(t: Trace, ranks: { nodes: DecodedNode[] }[], step: number): void {
  assert.equal(ranks.length, t.lanes.length, 'one file per rank');
  ranks.forEach((r, lane) => {
    const spans = laneSpans(t, lane, step);
    assert.equal(r.nodes.length, spans.length, `rank ${lane}: one node per span of step ${step}`);
    r.nodes.forEach((n, k) => {
      const i = spans[k];
      assert.equal(n.id, k);
      assert.equal(n.type, expectedType(t, i), `rank ${lane} node ${k}`);
      assert.equal(n.durationMicros, Math.round(t.spans.dur[i]));
      assert.equal(n.attrs.get('is_cpu_op')?.value, 'false');
      // Parallax's lanes run one instruction at a time: each node follows the previous one.
      assert.deepEqual(n.dataDeps, k === 0 ? [] : [k - 1]);
      const bytes = Math.round(t.spans.bytes[i]);
      if (n.type === 'MEM_LOAD_NODE' || n.type === 'MEM_STORE_NODE') assert.equal(numAttr(n, 'tensor_size'), bytes);
      if (n.type === 'COMM_SEND_NODE' || n.type === 'COMM_RECV_NODE') assert.equal(numAttr(n, 'comm_size'), bytes, `rank ${lane} node ${k} comm_size`);
      if (n.type === 'COMM_COLL_NODE') assert.equal(numAttr(n, 'comm_size'), collectiveBuffer(t, lane), `rank ${lane} node ${k}: comm_size is the buffer`);
    });
  });
}

test('a data-parallel run with gradient all-reduce exports one file per rank that protoc decodes, matching the trace', needs(protocMissing()), async () => {
  const t = await readTrace(dataRun);
  const { stdout, ranks } = await exportAndDecode(dataRun, join(dir, 'et-dp'));
  const step = medianStep(t);
  assert.match(stdout, new RegExp(`step ${step}\\b`));
  checkAgainstTrace(t, ranks, step);
  for (const r of ranks) {
    assert.doesNotMatch(stdout, /left out of compute nodes/);
    const colls = r.nodes.filter((n) => n.type === 'COMM_COLL_NODE');
    assert.equal(colls.length, 1, 'one gradient all-reduce per step');
    assert.equal(colls[0].attrs.get('comm_type')?.value, '0', 'ALL_REDUCE');
    // The gradients: one float32 per parameter of the model.
    assert.equal(numAttr(colls[0], 'comm_size'), 4 * t.meta.model!.parameters);
    // Compute nodes carry the model's FLOPs and bytes at the rows the rank ran (8 of 16).
    const comp = r.nodes.find((n) => n.type === 'COMP_NODE')!;
    const est = await modelEstimate(8);
    assert.equal(numAttr(comp, 'num_ops'), est.totalFlops);
    assert.equal(numAttr(comp, 'tensor_size'), est.totalBytes);
    assert.match(r.metadata, /string_val: "measured"/);
  }
  // The same collective, of the same size, on every rank.
  assert.equal(numAttr(ranks[0].nodes.find((n) => n.type === 'COMM_COLL_NODE')!, 'comm_size'), numAttr(ranks[1].nodes.find((n) => n.type === 'COMM_COLL_NODE')!, 'comm_size'));
});

test('a pipeline run exports sends and receives whose source, destination, tag and size pair up across ranks', needs(protocMissing()), async () => {
  const t = await readTrace(pipeRun);
  const { ranks } = await exportAndDecode(pipeRun, join(dir, 'et-pp'));
  checkAgainstTrace(t, ranks, medianStep(t));
  const sends = ranks[0].nodes.filter((n) => n.type === 'COMM_SEND_NODE');
  const recvs = ranks[1].nodes.filter((n) => n.type === 'COMM_RECV_NODE');
  assert.ok(sends.length >= 4, `at least one activation send per micro-batch (got ${sends.length})`);
  assert.equal(recvs.length, sends.length);
  const key = (n: DecodedNode): string => ['comm_src', 'comm_dst', 'comm_tag', 'comm_size'].map((a) => numAttr(n, a)).join('/');
  assert.deepEqual(recvs.map(key), sends.map(key), 'k-th send meets k-th receive');
  for (const n of sends) assert.deepEqual([numAttr(n, 'comm_src'), numAttr(n, 'comm_dst')], [0, 1]);
  assert.deepEqual(sends.map((n) => numAttr(n, 'comm_tag')), sends.map((_, k) => k));
  // The stages' FLOPs for one micro-batch (16 rows / 4) add up to the whole model's.
  const stageOps = ranks.map((r) => numAttr(r.nodes.find((n) => n.type === 'COMP_NODE')!, 'num_ops'));
  assert.ok(stageOps.every((x) => x > 0));
  assert.equal(stageOps[0]! + stageOps[1]!, (await modelEstimate(4)).totalFlops);
});

test('--steps all exports every step in one chain; --step picks one', needs(protocMissing()), async () => {
  const t = await readTrace(pipeRun);
  const all = await exportAndDecode(pipeRun, join(dir, 'et-all'), ['--steps', 'all']);
  for (let lane = 0; lane < t.lanes.length; lane++) {
    const expected = t.steps.reduce((a, w) => a + laneSpans(t, lane, w.index).length, 0);
    assert.equal(all.ranks[lane].nodes.length, expected);
    all.ranks[lane].nodes.forEach((n, k) => assert.deepEqual(n.dataDeps, k === 0 ? [] : [k - 1]));
  }
  const first = t.steps[0].index;
  const one = await exportAndDecode(pipeRun, join(dir, 'et-one'), ['--step', String(first)]);
  checkAgainstTrace(t, one.ranks, first);
});

test('a predicted trace simulated from the measured run exports its predicted durations', needs(protocMissing()), async () => {
  const measured = await readTrace(dataRun);
  const program = measured.meta.program;
  assert.ok(program, 'the run records its program');
  const predicted = simulate(program, fitCostModel([measured]), { steps: 2, meta: measured.meta });
  const path = join(dir, 'dp-predicted.parallax.json');
  await writeTrace(path, predicted);
  const t = await readTrace(path);
  const { ranks } = await exportAndDecode(path, join(dir, 'et-pred'));
  checkAgainstTrace(t, ranks, medianStep(t));
  assert.match(ranks[0].metadata, /string_val: "predicted"/);
  assert.ok(ranks[0].nodes.some((n) => n.type === 'COMM_COLL_NODE'));
});

test('bad input ends in one line and exit 2', async () => {
  const notTrace = join(dir, 'not-a-trace.json');
  writeFileSync(notTrace, '{"hello": 1}');
  const aFile = join(dir, 'a-file');
  writeFileSync(aFile, 'x');
  const cases: [string[], RegExp][] = [
    [['export', notTrace, '--format', 'chakra', '--out', join(dir, 'et-bad')], /not-a-trace\.json/],
    [['export', dataRun, '--format', 'ns3', '--out', join(dir, 'et-bad')], /ns3|format/],
    [['export', dataRun, '--format', 'chakra', '--out', join(aFile, 'et')], /a part of the path is a file/],
    [['export', dataRun, '--format', 'chakra', '--out', join(dir, 'et-bad'), '--step', '99'], /--step 99: the trace has no such step/],
    [['export', dataRun, '--format', 'chakra', '--out', join(dir, 'et-bad'), '--step', '1', '--steps', 'all'], /not both/],
  ];
  for (const [args, pattern] of cases) {
    const r = await runCli(args, { env });
    assert.equal(r.code, 2, `${args.join(' ')}: ${r.stderr}`);
    const lines = r.stderr.trim().split('\n');
    assert.equal(lines.length, 1, r.stderr);
    assert.match(lines[0], pattern);
    assert.doesNotMatch(r.stderr, /\n\s+at /);
  }
});
