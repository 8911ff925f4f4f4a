import { test } from 'node:test';
import assert from 'node:assert/strict';
import { deriveIdle } from '../../src/profiler/idle';
import { analyse } from '../../src/profiler/analysis/index';
import { modelNodeName } from '../../src/profiler/analysis/ops';
import { syntheticPipelineTrace } from '../../src/profiler/analysis/synthetic';
import { TraceBuilder } from '../../src/profiler/trace-format';
import { meta } from '../helpers/trace-builders';

const FC1 = 'fused /layers.0/mlp/fc1/MatMul/MatMulAddFusion';
const LN = '/layers.0/ln/LayerNormalization';

/**
 * Two data-parallel lanes, one 100 µs step each, every step a 100 µs session.run with
 * operator spans under it: lane 0 runs FC1 for 60 µs and LN for 30 µs; lane 1 FC1 for 70 µs
 * and LN for 20 µs, plus 5 µs Add.
 */
function withOps(): ReturnType<typeof deriveIdle> {
  const b = new TraceBuilder();
  const r0 = b.push({ lane: 0, kind: 'compute', name: 'session.run', start: 0, dur: 100, step: 0 });
  b.push({ lane: 0, kind: 'compute', name: FC1, opType: 'FusedGemm', start: 0, dur: 60, step: 0, parent: r0, flags: 8 });
  b.push({ lane: 0, kind: 'compute', name: LN, opType: 'LayerNormalization', start: 60, dur: 30, step: 0, parent: r0, flags: 8 });
  const r1 = b.push({ lane: 1, kind: 'compute', name: 'session.run', start: 0, dur: 100, step: 0 });
  b.push({ lane: 1, kind: 'compute', name: FC1, opType: 'FusedGemm', start: 0, dur: 70, step: 0, parent: r1, flags: 8 });
  b.push({ lane: 1, kind: 'compute', name: LN, opType: 'LayerNormalization', start: 70, dur: 20, step: 0, parent: r1, flags: 8 });
  b.push({ lane: 1, kind: 'compute', name: '/layers.0/Add', opType: 'Add', start: 90, dur: 5, step: 0, parent: r1, flags: 8 });
  const m = meta();
  return deriveIdle({
    meta: m,
    strings: b.strings,
    lanes: m.devices.map((d, i) => ({ device: i, label: d.label, group: d.physicalUnit })),
    steps: [{ index: 0, startUs: 0, endUs: 100 }],
    spans: b.finish(),
  });
}

test('top ops per device list the operators by time with their share of the step', () => {
  const ops = analyse(withOps()).ops;
  assert.equal(ops.available, true);
  const l0 = ops.perLane[0];
  assert.deepEqual(
    l0.ops.map((o) => [o.name, o.opType, o.totalUs, o.count, o.shareOfStep]),
    [
      [FC1, 'FusedGemm', 60, 1, 0.6],
      [LN, 'LayerNormalization', 30, 1, 0.3],
    ],
  );
  assert.equal(l0.opUs, 90);
  assert.equal(ops.perLane[1].ops[2].name, '/layers.0/Add');
});

test('fused operator names map back to the model node they were built from', () => {
  const top = analyse(withOps()).ops.perLane[0].ops[0];
  assert.equal(top.node, '/layers.0/mlp/fc1/MatMul');
  assert.equal(modelNodeName(FC1), '/layers.0/mlp/fc1/MatMul');
  assert.equal(modelNodeName('/layers.0/mlp/fc1/MatMul/MatMulAddFusion'), '/layers.0/mlp/fc1/MatMul');
  assert.equal(modelNodeName('/layers.1/ln/Mul/LayerNormFusion/'), '/layers.1/ln/Mul');
  assert.equal(modelNodeName('fused /conv1/Conv_token_3'), '/conv1/Conv');
  assert.equal(modelNodeName(LN), LN);
});

test('with the model’s node names, the mapping stops at the first real node and undoes numbered names', () => {
  const known = new Set(['/fc/Gemm', '/a/b_1', '/layers.0/mlp/fc1/MatMul/MatMulAddFusion']);
  assert.equal(modelNodeName('fused /fc/Gemm_1', known), '/fc/Gemm');
  assert.equal(modelNodeName('/a/b_1', known), '/a/b_1');
  // A Gemm node that exists in the model under the fusion's name is the model's node.
  assert.equal(modelNodeName(FC1, known), '/layers.0/mlp/fc1/MatMul/MatMulAddFusion');
});

test('outside pipelines every device forms one group whose op types add up across devices', () => {
  const g = analyse(withOps()).ops.perStage;
  assert.equal(g.length, 1);
  assert.deepEqual(g[0].lanes, [0, 1]);
  assert.deepEqual(
    g[0].opTypes.map((t) => [t.opType, t.totalUs, t.count, t.shareOfStep, t.shareOfCompute, t.topOp]),
    [
      ['FusedGemm', 130, 2, 0.65, 0.65, FC1],
      ['LayerNormalization', 50, 2, 0.25, 0.25, LN],
      ['Add', 5, 1, 0.025, 0.025, '/layers.0/Add'],
    ],
  );
  assert.equal(g[0].tinyOpFraction, 1 / 3);
});

test('in a pipeline the operators are grouped by stage', () => {
  const t = syntheticPipelineTrace({ stageUs: [10, 40], microBatches: 2, steps: 2, opsPerCompute: 4, opTypes: ['MatMul', 'Add'] });
  const g = analyse(t).ops.perStage;
  assert.deepEqual(g.map((x) => x.lanes), [[0], [1]]);
  // Stage 1: four nodes of 10 µs per micro-batch, 2 micro-batches, 2 steps.
  assert.deepEqual(
    g[1].ops.map((o) => [o.name, o.totalUs, o.count]),
    [
      ['/layers.1/block.0/MatMul', 40, 4],
      ['/layers.1/block.1/Add', 40, 4],
      ['/layers.1/block.2/MatMul', 40, 4],
      ['/layers.1/block.3/Add', 40, 4],
    ],
  );
  assert.deepEqual(g[1].opTypes.map((x) => [x.opType, x.shareOfCompute]), [
    ['Add', 0.5],
    ['MatMul', 0.5],
  ]);
});

test('a trace without operator spans says so', () => {
  const t = syntheticPipelineTrace({ stageUs: [10, 10], microBatches: 2, steps: 1 });
  const ops = analyse(t).ops;
  assert.equal(ops.available, false);
  assert.deepEqual(ops.perLane[0].ops, []);
});
