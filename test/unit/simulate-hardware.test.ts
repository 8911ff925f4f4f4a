import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { DeviceProgram, Instruction, Program, Segment } from '../../src/profiler/program';
import type { DataPlan } from '../../src/profiler/plan';
import type { Trace } from '../../src/profiler/trace-format';
import { syntheticMeta } from '../../src/profiler/analysis/synthetic';
import {
  DEVICE_KINDS,
  FREE_LINK,
  LINKS,
  calibratedRates,
  collectiveUs,
  customLink,
  hierarchicalCollectiveUs,
  linkOf,
  presetRates,
  scaleComputeCost,
  setComputeCost,
  simulate,
  type CostModel,
  type Topology,
} from '../../src/profiler/simulate';
import {
  amdahlBound,
  projectPoint,
  projectionModel,
  projectionRows,
  scaledDataPlan,
  serialFraction,
  stepUs,
  type ProjectionPoint,
  type ProjectionSetup,
} from '../../src/profiler/simulate/project';
import { COLLECTIVE_OPS } from '../../src/profiler/span-vocabulary';

const WHOLE: Segment = { id: 0, kind: 'whole', label: 'model' };

/** A data program as the compiler builds it: scatter, run, gather, all-reduce of the gradients. */
function dataProgram(shards: number[], gradBytes: number): Program {
  let start = 0;
  const group = shards.map((_, r) => r);
  const devices: DeviceProgram[] = shards.map((rows, rank) => {
    const range = { start, count: rows };
    start += rows;
    const ins: Instruction[] = [
      { op: 'scatter', micro: -1, rows: range, tensors: ['x'], bytes: rows * 2048 },
      { op: 'run', micro: -1, segment: 0, rows, phase: 'forward' },
      { op: 'gather', micro: -1, rows: range, tensors: ['y'], bytes: rows * 256 },
    ];
    if (shards.length > 1) ins.push({ op: 'collective', collective: 'allreduce', group, buffer: 'gradients', bytes: gradBytes });
    return { rank, stage: -1, segments: [0], instructions: ins };
  });
  const batch = shards.reduce((a, b) => a + b, 0);
  return { mode: 'data', schedule: 'replicated', batch, segments: [WHOLE], devices, outputs: [{ name: 'y', batchAxis: 0 }], buffers: [] };
}

function dataPlan(shards: number[]): DataPlan {
  return { mode: 'data', devices: `cpu:${shards.length}`, batch: shards.reduce((a, b) => a + b, 0), steps: 3, warmup: 0, seed: 0, shards };
}

/** A "measured" run: the simulator on known costs, labelled measured, with uneven shards so the fit sees two row sizes. */
function measuredRun(shards: number[], gradBytes = 1 << 20): Trace {
  const p = dataProgram(shards, gradBytes);
  const costs: CostModel = {
    compute: {},
    transfers: { copy: { alphaUs: 4, bytesPerUs: 2000 }, p2p: FREE_LINK, collective: { alphaUs: 20, bytesPerUs: 1000 } },
    hostUs: Object.fromEntries(shards.map((_, r) => [String(r), 15])),
  };
  shards.forEach((_, r) => setComputeCost(costs, r, WHOLE, 'forward', { fixedUs: 300, perRowUs: 50 }));
  return simulate(p, costs, { steps: 3, meta: { ...syntheticMeta(shards.length, dataPlan(shards)), source: 'measured' } });
}

function setupOf(o: Partial<ProjectionSetup> = {}): ProjectionSetup {
  return { kind: 'this', precision: 'fp32', nodeSize: 8, link: LINKS.nvlink4, interLink: LINKS['100gbe'], scaling: 'strong', ...o };
}

function point(measuredPlan: DataPlan, n: number, setup: ProjectionSetup, gradBytes = 1 << 20): ProjectionPoint {
  const plan = scaledDataPlan(measuredPlan, n, setup.scaling, `cpu:${n}`);
  const base = Math.floor(plan.batch / n);
  const shards = Array.from({ length: n }, (_, r) => base + (r < plan.batch % n ? 1 : 0));
  return { devices: n, plan: { ...plan, shards }, program: dataProgram(shards, gradBytes) };
}

const close = (a: number, b: number, rel: number, what: string): void => assert.ok(Math.abs(a - b) <= rel * Math.abs(b), `${what}: ${a} vs ${b}`);

test('link presets carry their datasheet figures per direction, and a custom link is gigabits per second', () => {
  assert.equal(linkOf(LINKS.nvlink4).bytesPerUs, 450_000, 'NVLink 4: 450 GB/s per direction');
  close(linkOf(LINKS.pcie4x16).bytesPerUs, 31_500, 1e-9, 'PCIe 4 x16');
  assert.equal(linkOf(LINKS['ib-ndr']).bytesPerUs, 50_000, 'NDR: 400 Gb/s');
  assert.equal(linkOf(LINKS['100gbe']).bytesPerUs, 12_500, '100 GbE');
  assert.deepEqual(linkOf(customLink(7, 200)), { alphaUs: 7, bytesPerUs: 25_000 });
  for (const l of Object.values(LINKS)) assert.match(l.source, /\S/);
  for (const d of Object.values(DEVICE_KINDS)) assert.match(d.source, /datasheet/);
  assert.equal(presetRates(DEVICE_KINDS.h100, 'bf16').flopsPerUs, 989.5e6);
  assert.throws(() => presetRates(DEVICE_KINDS.a100, 'fp8'), /no fp8 peak/);
});

test('ring all-reduce on one node is 2(N−1)/N·S/β + 2(N−1)·α, and the two-level cost reduces to it when the node holds every rank', () => {
  const S = 256 << 20;
  const link = linkOf(LINKS.nvlink4);
  for (const n of [2, 4, 8]) {
    const t: Topology = { nodeSize: 8, intra: link, inter: linkOf(LINKS['100gbe']) };
    const expected = ((2 * (n - 1)) / n) * (S / 450_000) + 2 * (n - 1) * 3.4;
    close(hierarchicalCollectiveUs('allreduce', S, n, t), expected, 1e-12, `all-reduce over ${n}`);
    for (const op of COLLECTIVE_OPS) close(hierarchicalCollectiveUs(op, S, n, { ...t, nodeSize: n + 3 }), collectiveUs(op, S, n, link), 1e-12, `${op} node ≥ N`);
  }
  // One device per node: every step crosses nodes, the flat ring over the inter-node link.
  const inter = linkOf(LINKS['ib-ndr']);
  for (const op of COLLECTIVE_OPS) close(hierarchicalCollectiveUs(op, S, 16, { nodeSize: 1, intra: link, inter }), collectiveUs(op, S, 16, inter), 1e-12, `${op} node size 1`);
  // Across nodes it costs more than one big NVLink node would, and less than a flat ring over the network.
  const two = hierarchicalCollectiveUs('allreduce', S, 64, { nodeSize: 8, intra: link, inter });
  assert.ok(two > collectiveUs('allreduce', S, 64, link) && two < collectiveUs('allreduce', S, 64, inter));
});

test('more bandwidth never makes a collective, or a predicted step, slower', () => {
  const sizes = [1, 1 << 10, 1 << 20, 1 << 28];
  const bws = [1_000, 12_500, 50_000, 450_000];
  for (const op of COLLECTIVE_OPS) {
    for (const S of sizes) {
      for (const n of [2, 8, 64]) {
        let prev = Infinity;
        for (const b of bws) {
          const t = hierarchicalCollectiveUs(op, S, n, { nodeSize: 8, intra: { alphaUs: 3, bytesPerUs: b }, inter: { alphaUs: 9, bytesPerUs: b / 4 } });
          assert.ok(t <= prev, `${op} ${S} B over ${n}: ${t} after ${prev}`);
          prev = t;
        }
      }
    }
  }
  const measured = measuredRun([24, 40]);
  let prev = Infinity;
  for (const link of [LINKS['100gbe'], LINKS['ib-ndr'], LINKS.nvlink4]) {
    const setup = setupOf({ link, interLink: link });
    const t = stepUs(projectPoint(projectionModel([measured], setup), setup, point(measured.meta.plan as DataPlan, 64, setup)));
    assert.ok(t <= prev, `${link.id}: ${t} after ${prev}`);
    prev = t;
  }
});

test('predicted speedup never exceeds the Amdahl bound of the calibrated serial fraction', () => {
  const measured = measuredRun([24, 40]);
  const plan = measured.meta.plan as DataPlan;
  for (const link of [LINKS.nvlink4, LINKS['100gbe']]) {
    const setup = setupOf({ link });
    const model = projectionModel([measured], setup);
    const one = point(plan, 1, setup);
    const s = serialFraction(model, setup, one);
    // Fixed 300 µs + host 15 µs × 3 instructions + copy latencies against 64 rows × 50 µs: a few percent.
    assert.ok(s > 0.05 && s < 0.2, `serial fraction ${s}`);
    const oneTrace = projectPoint(model, setup, one);
    const points = [2, 8, 16, 64].map((n) => ({ devices: n, trace: projectPoint(model, setup, point(plan, n, setup)) }));
    for (const r of projectionRows(oneTrace, points, 'strong')) {
      assert.ok(r.speedup <= amdahlBound(s, r.devices) + 1e-9, `${link.id} ${r.devices} devices: ${r.speedup} > ${amdahlBound(s, r.devices)}`);
      assert.ok(r.efficiency > 0 && r.efficiency <= 1 + 1e-9);
    }
  }
});

test('the projection recovers the calibrated compute and marks its traces predicted with their assumptions', () => {
  const measured = measuredRun([24, 40]);
  const setup = setupOf();
  const model = projectionModel([measured], setup);
  const c = model.costs.computeByKind?.['cpu|whole|forward'];
  assert.ok(c);
  close(c.fixedUs, 300, 0.01, 'fixed');
  close(c.perRowUs, 50, 0.01, 'per row');
  const t = projectPoint(model, setup, point(measured.meta.plan as DataPlan, 8, setup));
  assert.equal(t.meta.source, 'predicted');
  assert.equal(t.lanes.length, 8);
  assert.ok(t.meta.devices.every((d) => /predicted/.test(d.label)));
  assert.ok(t.meta.notes.some((n) => /Assumed links: NVLink 4/.test(n)));
  assert.ok(t.meta.notes.some((n) => /strong/.test(n)));
  assert.equal(t.meta.measurement, undefined, 'nothing was measured');
  // 8 devices of 8 rows each: 300 + 8·50 µs of compute per step at least.
  assert.ok(stepUs(t) >= 700);
});

test('roofline scaling keeps costs on a device with the same rates, shrinks them on a faster one, and keeps host-only fixed parts', () => {
  const work = { flopsFixed: 0, flopsPerRow: 2e8, bytesFixed: 4e8, bytesPerRow: 1e5 };
  const cost = { fixedUs: 8000, perRowUs: 4000 };
  const from = calibratedRates([{ cost, work }]);
  assert.equal(from.flopsPerUs, 2e8 / 4000);
  assert.equal(from.bytesPerUs, 4e8 / 8000);
  assert.deepEqual(scaleComputeCost(cost, work, from, from), cost);
  const h100 = presetRates(DEVICE_KINDS.h100, 'fp32');
  const fast = scaleComputeCost(cost, work, from, h100);
  assert.ok(fast.perRowUs < cost.perRowUs / 100 && fast.fixedUs < cost.fixedUs / 10, JSON.stringify(fast));
  // Per row: 2e8 FLOPs at 67 TFLOP/s, as long as the bytes do not dominate.
  close(fast.perRowUs, cost.perRowUs * (2e8 / h100.flopsPerUs) / (2e8 / from.flopsPerUs), 1e-12, 'per-row ratio');
  const hostOnly = scaleComputeCost({ fixedUs: 100, perRowUs: 10 }, { ...work, bytesFixed: 0 }, from, h100);
  assert.equal(hostOnly.fixedUs, 100, 'no work in the fixed part: host overhead, kept');
  const a100 = scaleComputeCost(cost, work, from, presetRates(DEVICE_KINDS.a100, 'fp32'));
  assert.ok(a100.perRowUs > fast.perRowUs, 'an A100 is slower than an H100 at fp32');
});
