/**
 * The data × tensor hybrid compiler (pure): replicas on their own rows, each a tensor group
 * whose all-reduces name only its ranks, segment models shared by the replicas, the plan's
 * flags, and the simulator's prediction of the program (group all-reduces that wait only on
 * their own replica).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { buildDemoModel } from '../../src/runtime/onnx/demo-model';
import { parseModel } from '../../src/runtime/onnx/model';
import { prepareTensor } from '../../src/runtime/compile/tensor';
import { compileHybrid, compileHybridPipeline, replicaGroup } from '../../src/runtime/compile/hybrid';
import { estimateNodeCostsUs, partitionPipeline } from '../../src/runtime/pipeline/partition';
import { collectiveSubgroups } from '../../src/runtime/comm/subgroups';
import type { CompileContext } from '../../src/runtime/compile';
import type { Program } from '../../src/profiler/program';
import { makePlan, PlanFieldError, type HybridTensorPlan } from '../../src/profiler/plan';
import { isUserError } from '../../src/common/errors';
import { CommOpCode, SpanKind, type Trace } from '../../src/profiler/trace-format';
import { FREE_LINK, setComputeCost, simulate, type CostModel } from '../../src/profiler/simulate';
import { syntheticMeta } from '../../src/profiler/analysis/synthetic';

const HIDDEN = 32;
const LAYERS = 2;

function hybridPlan(data: number, tensor: number, batch: number): HybridTensorPlan {
  return { mode: 'hybrid', devices: `cpu:${data * tensor}`, batch, steps: 1, warmup: 0, seed: 0, data, tensor };
}

function compileDemo(data: number, tensor: number, batch: number, devices = data * tensor): Program {
  const ir = parseModel(buildDemoModel({ layers: LAYERS, hidden: HIDDEN, ffn: 4 * HIDDEN }), 'demo.onnx');
  const ctx: CompileContext = {
    inputs: [{ name: ir.inputs[0]!.name, dtype: 'float32', dims: [batch, HIDDEN], batchAxis: 0 }],
    outputs: [{ name: ir.outputs[0]!.name, batchAxis: 0 }],
    parameterCount: ir.parameterCount,
    devices,
    nodeNames: ir.nodes.map((n) => n.name),
  };
  return compileHybrid(hybridPlan(data, tensor, batch), prepareTensor(ir, tensor, {}), ctx);
}

test('a data 2 × tensor 2 program: each replica scatters its half of the rows and all-reduces inside its own group', () => {
  const batch = 8;
  const p = compileDemo(2, 2, batch);
  assert.equal(p.mode, 'hybrid');
  assert.equal(p.devices.length, 4);
  assert.deepEqual(p.devices.map((d) => d.rank), [0, 1, 2, 3]);
  // One replica's segment models, loaded by the same tensor rank of every replica.
  const perDevice = p.segments.length / 2;
  assert.ok(p.segments.every((s) => s.kind === 'shard'));
  assert.deepEqual(p.devices[0]!.segments, p.devices[2]!.segments);
  assert.deepEqual(p.devices[1]!.segments, p.devices[3]!.segments);
  assert.notDeepEqual(p.devices[0]!.segments, p.devices[1]!.segments);
  assert.equal(p.devices[0]!.segments.length, perDevice);
  p.buffers.forEach((b) => assert.equal(b.elements, (batch / 2) * HIDDEN, 'an all-reduce carries the replica\'s rows only'));

  for (const d of p.devices) {
    const replica = Math.floor(d.rank / 2);
    const group = replicaGroup(replica, 2);
    const scatter = d.instructions.find((i) => i.op === 'scatter');
    assert.ok(scatter && scatter.op === 'scatter');
    assert.deepEqual(scatter.rows, { start: replica * (batch / 2), count: batch / 2 }, `rank ${d.rank} scatters its replica's rows`);
    const collectives = d.instructions.filter((i) => i.op === 'collective');
    assert.equal(collectives.length, LAYERS, 'one all-reduce per block');
    for (const c of collectives) assert.ok(c.op === 'collective' && c.group.join(',') === group.join(','), `rank ${d.rank}: all-reduce over [${group.join(', ')}]`);
    const gathers = d.instructions.filter((i) => i.op === 'gather');
    if (d.rank % 2 === 0) assert.deepEqual(gathers.map((g) => g.op === 'gather' && g.rows), [{ start: replica * (batch / 2), count: batch / 2 }], 'the first device of a replica hands over its rows');
    else assert.equal(gathers.length, 0);
  }
  assert.deepEqual(collectiveSubgroups(p).map((g) => g.group), [[0, 1], [2, 3]], 'two sub-communicators, one per replica');
});

test('a data 2 × pipeline 2 program: each replica streams its rows through its own two stages, over one shared partition', () => {
  const batch = 8;
  const micro = 2;
  const ir = parseModel(buildDemoModel({ layers: LAYERS, hidden: HIDDEN, ffn: 4 * HIDDEN }), 'demo.onnx');
  const ctx: CompileContext = {
    inputs: [{ name: ir.inputs[0]!.name, dtype: 'float32', dims: [batch, HIDDEN], batchAxis: 0 }],
    outputs: [{ name: ir.outputs[0]!.name, batchAxis: 0 }],
    parameterCount: ir.parameterCount,
    devices: 4,
    nodeNames: ir.nodes.map((n) => n.name),
  };
  const partition = partitionPipeline(ir, estimateNodeCostsUs(ir), 2, { costSource: 'estimated' });
  const plan = { mode: 'hybrid' as const, devices: 'cpu:4', batch, steps: 1, warmup: 0, seed: 0, data: 2, pipeline: 2, schedule: 'gpipe' as const, microBatches: micro };
  const p = compileHybridPipeline(plan, partition, ctx);
  assert.equal(p.mode, 'hybrid');
  assert.deepEqual(p.segments.map((s) => s.kind), ['stage', 'stage'], 'one set of stage models for both replicas');
  assert.deepEqual(p.devices.map((d) => [d.rank, d.stage, d.segments]), [[0, 0, [0]], [1, 1, [1]], [2, 0, [0]], [3, 1, [1]]]);
  for (const d of p.devices) {
    const replica = Math.floor(d.rank / 2);
    const peer = d.stage === 0 ? d.rank + 1 : d.rank - 1;
    const sends = d.instructions.filter((i) => i.op === 'send');
    const recvs = d.instructions.filter((i) => i.op === 'recv');
    if (d.stage === 0) {
      assert.equal(sends.length, micro);
      assert.ok(sends.every((i) => i.op === 'send' && i.to === peer), `rank ${d.rank} sends to its replica's second stage only`);
      const rows = d.instructions.flatMap((i) => (i.op === 'scatter' ? [i.rows] : []));
      assert.deepEqual(rows, [{ start: replica * 4, count: 2 }, { start: replica * 4 + 2, count: 2 }], 'the replica\'s rows in two micro-batches');
    } else {
      assert.equal(recvs.length, micro);
      assert.ok(recvs.every((i) => i.op === 'recv' && i.from === peer), `rank ${d.rank} receives from its replica's first stage only`);
      const rows = d.instructions.flatMap((i) => (i.op === 'gather' ? [i.rows] : []));
      assert.deepEqual(rows, [{ start: replica * 4, count: 2 }, { start: replica * 4 + 2, count: 2 }]);
    }
  }
  assert.throws(() => compileHybridPipeline({ ...plan, batch: 7 }, partition, ctx), /--batch 7 does not split evenly over --data 2 replicas/);
});

test('a hybrid whose devices are not data × tensor, or whose batch does not split evenly, is refused in one line', () => {
  const oneLine = (re: RegExp) => (e: unknown) => isUserError(e) && re.test((e as Error).message) && !(e as Error).message.includes('\n');
  assert.throws(() => compileDemo(2, 2, 8, 3), oneLine(/--data 2 × --tensor 2 needs 4 devices, but --devices cpu:4 gives 3/));
  assert.throws(() => compileDemo(2, 2, 7), oneLine(/--batch 7 does not split evenly over --data 2 replicas/));
});

test('makePlan builds a hybrid from --data and --tensor and refuses flags of other modes', () => {
  const base = { devices: 'cpu:4', batch: 8, steps: 1, warmup: 0, seed: 0 };
  assert.deepEqual(makePlan({ mode: 'hybrid', ...base, data: 2, tensor: 2 }), { mode: 'hybrid', ...base, data: 2, tensor: 2 });
  assert.throws(() => makePlan({ mode: 'hybrid', ...base, tensor: 2 }), (e: unknown) => e instanceof PlanFieldError && /needs --data <replicas> and --tensor/.test(e.message));
  assert.throws(() => makePlan({ mode: 'hybrid', ...base, data: 2, tensor: 2, microBatches: 4 }), /--micro-batches applies to --mode pipeline only/);
  assert.throws(() => makePlan({ mode: 'tensor', ...base, data: 2 }), /--data applies to --mode hybrid only/);
  assert.deepEqual(makePlan({ mode: 'hybrid', ...base, data: 2, pipeline: 2, microBatches: 2 }), { mode: 'hybrid', ...base, data: 2, pipeline: 2, schedule: 'gpipe', microBatches: 2 });
  assert.throws(() => makePlan({ mode: 'hybrid', ...base, data: 2, pipeline: 2, tensor: 2 }), /pipeline × tensor hybrids are not run/);
  assert.throws(() => makePlan({ mode: 'pipeline', ...base, pipeline: 2 }), /--pipeline applies to --mode hybrid only/);
});

/** Per lane, the [start, end) of its all-reduce spans in step 0. */
function allReduces(trace: Trace): Map<number, [number, number][]> {
  const s = trace.spans;
  const out = new Map<number, [number, number][]>();
  for (let i = 0; i < s.count; i++) {
    if (s.step[i] !== 0 || s.kind[i] !== SpanKind.comm || s.comm[i] !== CommOpCode.allreduce) continue;
    out.set(s.lane[i]!, [...(out.get(s.lane[i]!) ?? []), [s.start[i]!, s.start[i]! + s.dur[i]!]]);
  }
  return out;
}

test('the simulator predicts a hybrid program: each replica\'s all-reduces wait for its own group only', () => {
  const p = compileDemo(2, 2, 8);
  const costs: CostModel = { compute: {}, transfers: { copy: FREE_LINK, p2p: FREE_LINK, collective: { alphaUs: 10, bytesPerUs: 1000 } } };
  // Replica 1 (ranks 2 and 3) computes ten times slower than replica 0.
  for (const d of p.devices) {
    for (const id of d.segments) setComputeCost(costs, d.rank, p.segments[id]!, 'forward', { fixedUs: d.rank < 2 ? 100 : 1000, perRowUs: 0 });
  }
  const trace = simulate(p, costs, { steps: 1, meta: syntheticMeta(4, hybridPlan(2, 2, 8)) });
  const ar = allReduces(trace);
  for (let lane = 0; lane < 4; lane++) assert.equal(ar.get(lane)?.length, LAYERS, `lane ${lane}: one predicted all-reduce per block`);
  // Inside a replica the members meet: the same start for every all-reduce.
  for (const [a, b] of [[0, 1], [2, 3]] as const) assert.deepEqual(ar.get(a)!.map((x) => x[0]), ar.get(b)!.map((x) => x[0]));
  // Across replicas nobody waits: replica 0 finishes all its all-reduces before replica 1's first starts.
  const lastOfFast = Math.max(...ar.get(0)!.map((x) => x[1]));
  const firstOfSlow = Math.min(...ar.get(2)!.map((x) => x[0]));
  assert.ok(lastOfFast < firstOfSlow, `replica 0's all-reduces (until ${lastOfFast} µs) do not wait for replica 1 (from ${firstOfSlow} µs)`);
});
