/**
 * What a plan sweep asks the shard planner, on models built in code: the demo model splits
 * and gets tensor plans; a model without MatMul pairs is listed with the planner's reason;
 * a tensor plan's split divides exactly the split nodes' work by the tensor degree.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { buildDemoModel } from '../../src/runtime/onnx/demo-model';
import { parseModel } from '../../src/runtime/onnx/model';
import { planTensorSharding } from '../../src/runtime/tensor/shard-plan';
import { sweepSplit } from '../../src/runtime/tensor/sweep-split';
import { makePlan } from '../../src/profiler/plan';
import { enumerateSweep, type SweepSpec } from '../../src/profiler/sweep/enumerate';
import { shardWorkFraction } from '../../src/profiler/sweep/predict';
import { nothingToSplitModelBytes } from '../helpers/transformer-model';

const demo = parseModel(buildDemoModel({ layers: 2, hidden: 64, ffn: 128 }), 'demo.onnx');
const nothing = parseModel(nothingToSplitModelBytes(), 'nothing.onnx');
const SPEC: SweepSpec = { deviceKind: 'cpu', count: 2, modes: ['data', 'tensor'], batches: [8], microBatches: [2], predictDevices: [4], steps: 2, warmup: 1, seed: 0 };
const base = { devices: 'cpu:2', batch: 8, steps: 2, warmup: 1, seed: 0 };

test('the demo model splits, so the sweep lists a measured tensor plan on cpu:2 and a predicted one on 4 devices', () => {
  const verdict = sweepSplit(demo, undefined).verdict(2);
  assert.deepEqual(verdict, { splits: true });
  const e = enumerateSweep({ ...SPEC, tensor: verdict });
  assert.deepEqual(
    e.candidates.filter((c) => c.plan.mode === 'tensor').map((c) => `${c.kind} ${c.label}`),
    ['measured tensor cpu:2 b8', 'predicted tensor cpu:4 b8'],
  );
  assert.deepEqual(e.notRunnable, []);
});

test('a model without MatMul pairs lists tensor as not applicable with the planner one-line reason, without the model path', () => {
  const verdict = sweepSplit(nothing, undefined).verdict(2);
  assert.equal(verdict.splits, false);
  if (verdict.splits) return;
  assert.match(verdict.reason, /^nothing to split for tensor parallelism over 2 devices: looked for MatMul\/Gemm/);
  assert.doesNotMatch(verdict.reason, /nothing\.onnx|\n/);
  const e = enumerateSweep({ ...SPEC, tensor: verdict });
  assert.deepEqual(e.notRunnable, [{ mode: 'tensor', reason: `not applicable: ${verdict.reason}` }]);
  assert.ok(e.candidates.every((c) => c.plan.mode === 'data'));
});

test("a tensor plan's shares are 1/T on exactly the planner's split nodes, and its shards together do the model's work once", () => {
  const split = sweepSplit(demo, undefined);
  const shard = planTensorSharding(demo, 2);
  const splitNodes = new Set(shard.groups.flatMap((g) => g.nodes));
  assert.ok(splitNodes.size > 0);
  const shares = split.sharesFor(makePlan({ mode: 'tensor', ...base }))!;
  assert.deepEqual(Object.keys(shares.share).sort(), demo.nodes.map((n) => n.name).sort());
  for (const n of demo.nodes) assert.equal(shares.share[n.name], splitNodes.has(n.name) ? 0.5 : 1, n.name);
  assert.ok(Object.values(shares.flops).some((f) => f > 0));
  // Two devices' fractions of the whole model: split work counted once, replicated work twice.
  const all = demo.nodes.map((n) => n.name);
  const f = shardWorkFraction(all, shares, new Map())!.fraction;
  const total = all.reduce((a, n) => a + shares.flops[n]!, 0);
  const replicated = all.filter((n) => !splitNodes.has(n)).reduce((a, n) => a + shares.flops[n]!, 0);
  assert.ok(Math.abs(2 * f - (total + replicated) / total) < 1e-9);
  // A data × tensor hybrid splits over its tensor degree; other plans have no split.
  const hybrid = split.sharesFor(makePlan({ mode: 'hybrid', ...base, devices: 'cpu:4', data: 2, tensor: 2 }))!;
  assert.deepEqual(hybrid.share, shares.share);
  assert.equal(split.sharesFor(makePlan({ mode: 'data', ...base })), null);
  assert.equal(sweepSplit(nothing, undefined).sharesFor(makePlan({ mode: 'tensor', ...base })), null);
});
