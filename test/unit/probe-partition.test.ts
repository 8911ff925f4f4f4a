/**
 * What the micro-batch probe runs: a plan without cuts is cut again from the calibration at
 * the probe's micro-batch size (node costs by name, as the calibration record keeps them),
 * and the runner's malloc settings.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { buildDemoModel } from '../../src/runtime/onnx/demo-model';
import { estimateCosts, parseModel } from '../../src/runtime/onnx/model';
import { partitionPipeline } from '../../src/runtime/pipeline/partition';
import { partitionFromCosts } from '../../src/runtime/runner/calibrate';
import { runnerMallocTunables } from '../../src/runtime/api';

const ir = parseModel(buildDemoModel({ layers: 8, hidden: 64, ffn: 128 }), 'demo.onnx');
const flops = estimateCosts(ir, { batch: 1 }).nodes.map((c) => c.flops ?? 0);
const byName = (scale: (layer: number) => number): Record<string, number> =>
  Object.fromEntries(ir.nodes.map((n, i) => [n.name, flops[i]! * scale(Number(/layers\.(\d+)/.exec(n.name)?.[1] ?? 0))]));

test('costs by name partition as the run partitions its calibration, and the cuts follow the costs', () => {
  const even = byName(() => 1);
  const p = partitionFromCosts(ir, even, 2, {});
  const q = partitionPipeline(ir, Float64Array.from(ir.nodes, (n) => even[n.name] ?? 0), 2, { costSource: 'measured', dimValues: {}, slack: 0.02, commCostUsPerByte: 1 / 5000 });
  assert.deepEqual(p.cuts, q.cuts);
  assert.equal(p.cuts.length, 1);
  // The first layers three times as costly at the other size: the cut moves towards the input.
  const front = partitionFromCosts(ir, byName((layer) => (layer < 4 ? 3 : 1)), 2, {});
  const at = (cut: string): number => ir.nodes.findIndex((n) => n.name === cut);
  assert.ok(at(front.cuts[0]!) < at(p.cuts[0]!), `${front.cuts[0]} is not before ${p.cuts[0]}`);
  // Nodes the record lacks (costs of 0 are not kept) count as free, as in the run.
  const sparse = Object.fromEntries(Object.entries(even).filter(([, c]) => c > 0));
  assert.deepEqual(partitionFromCosts(ir, sparse, 2, {}).cuts, p.cuts);
});

test('the runner keeps freed memory (no trim, heap chunks up to 32 MiB), and settings given first still apply', () => {
  assert.equal(runnerMallocTunables(undefined), 'glibc.malloc.trim_threshold=4294967295:glibc.malloc.mmap_threshold=33554432');
  assert.equal(runnerMallocTunables(''), runnerMallocTunables(undefined));
  // glibc reads the string left to right, the later setting of a name winning: the caller's last.
  assert.equal(runnerMallocTunables('glibc.malloc.arena_max=2'), 'glibc.malloc.trim_threshold=4294967295:glibc.malloc.mmap_threshold=33554432:glibc.malloc.arena_max=2');
});
