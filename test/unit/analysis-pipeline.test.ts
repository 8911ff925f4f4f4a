import { test } from 'node:test';
import assert from 'node:assert/strict';
import { deriveIdle } from '../../src/profiler/idle';
import { analyse } from '../../src/profiler/analysis/index';
import { gpipeBubbleFraction, pipelineFormulaUs, predictPipelineStepUs } from '../../src/profiler/analysis/pipeline';
import { partitionContiguous, repartitionStages, stageCostsAtCuts } from '../../src/profiler/analysis/partition';
import { syntheticPipelineTrace } from '../../src/profiler/analysis/synthetic';
import { spanRow } from '../../src/profiler/trace-format';
import { dataPlan } from '../helpers/trace-builders';

const close = (a: number, b: number, eps = 1e-9): void => assert.ok(Math.abs(a - b) <= eps * Math.max(1, Math.abs(b)), `${a} ≠ ${b}`);

test("GPipe's bubble fraction is (K − 1) / (M + K − 1)", () => {
  close(gpipeBubbleFraction(4, 4), 3 / 7);
  close(gpipeBubbleFraction(2, 8), 1 / 9);
  assert.equal(gpipeBubbleFraction(1, 8), 0);
});

test('equal stages without comm show exactly the GPipe bubble on every stage', () => {
  const t = syntheticPipelineTrace({ stageUs: [10, 10, 10, 10], microBatches: 4, steps: 3 });
  const p = analyse(t).pipeline!;
  assert.equal(t.steps[0].endUs - t.steps[0].startUs, 70); // (M + K − 1) · t
  assert.equal(p.stages, 4);
  assert.equal(p.microBatches, 4);
  for (const s of p.perStage) close(s.bubbleFraction, 3 / 7);
  close(p.bubbleFraction, 3 / 7);
  close(p.idealBubbleFraction, 3 / 7);
  assert.equal(p.imbalance, 1);
});

test('an unequal pipeline has a bubble fraction per stage from its bubble idle over its step time', () => {
  // Stages of 10 and 20 µs per micro-batch, 2 micro-batches, 1 µs sends and recvs: a 52 µs
  // step; stage 0 is busy 22 µs (idle 30), stage 1 is busy 42 µs (idle 10).
  const t = syntheticPipelineTrace({ stageUs: [10, 20], microBatches: 2, steps: 2, commUs: 1 });
  const a = analyse(t);
  const p = a.pipeline!;
  assert.equal(a.stepTimeUs.median, 52);
  close(p.perStage[0].bubbleFraction, 30 / 52);
  close(p.perStage[1].bubbleFraction, 10 / 52);
  close(p.bubbleFraction, 40 / 104);
  close(p.idealBubbleFraction, 1 / 3);
  assert.deepEqual(p.perStage.map((s) => [s.computePerStepUs, s.computePerMicroUs, s.commPerMicroUs]), [
    [20, 10, 1],
    [40, 20, 1],
  ]);
});

test('stage imbalance is the slowest stage compute over the mean', () => {
  const p = analyse(syntheticPipelineTrace({ stageUs: [10, 20, 30], microBatches: 4, steps: 2, commUs: 1 })).pipeline!;
  close(p.imbalance, 30 / 20);
  assert.equal(p.slowestStage, 2);
});

test('the pipeline step model reproduces the measured step of a fill-drain schedule', () => {
  // Σ t + Σ c / 2 + (M − 1) · max (t + c) = 30 + 1 + 21 = 52 µs: calibration scale 1.
  const p = analyse(syntheticPipelineTrace({ stageUs: [10, 20], microBatches: 2, steps: 2, commUs: 1 })).pipeline!;
  close(p.model.formulaUs, 52);
  close(p.model.scale, 1);
  close(pipelineFormulaUs(4, [10, 10, 10, 10]), 70);
});

test('the model predicts the step of another plan as the synthetic schedule measures it', () => {
  const p = analyse(syntheticPipelineTrace({ stageUs: [12, 12, 12], microBatches: 4, steps: 2, commUs: 0 })).pipeline!;
  // 12 micro-batches of a third of the rows: 4 µs per micro-batch per stage.
  const measured = syntheticPipelineTrace({ stageUs: [4, 4, 4], microBatches: 12, steps: 1 }).steps[0];
  close(predictPipelineStepUs(p.model, { microBatches: 12 }), measured.endUs - measured.startUs);
  // Re-cut stages at the same M.
  const recut = syntheticPipelineTrace({ stageUs: [8, 14, 14], microBatches: 4, steps: 1 }).steps[0];
  close(predictPipelineStepUs(p.model, { stagePerMicroUs: [8, 14, 14] }), recut.endUs - recut.startUs);
});

test('calibration carries overheads the formula leaves out into the prediction', () => {
  const p = analyse(syntheticPipelineTrace({ stageUs: [10, 10], microBatches: 2, steps: 2 })).pipeline!;
  const model = { ...p.model, measuredStepUs: 45, scale: 45 / p.model.formulaUs };
  close(predictPipelineStepUs(model, {}), 45);
  close(predictPipelineStepUs(model, { microBatches: 4 }), (45 / 30) * 25);
});

test('the synthetic pipeline trace has the idle spans idle.ts derives from it', () => {
  const t = syntheticPipelineTrace({ stageUs: [10, 25, 15], microBatches: 3, steps: 2, commUs: 2, opsPerCompute: 2 });
  const mine = new Set<string>();
  for (let i = 0; i < t.spans.count; i++) {
    const r = spanRow(t, i);
    if (r.kind === 'idle') mine.add(`${r.lane} ${r.start} ${r.dur} ${r.cause}`);
  }
  const derived = deriveIdle(t);
  const theirs = new Set<string>();
  for (let i = 0; i < derived.spans.count; i++) {
    const r = spanRow(derived, i);
    if (r.kind === 'idle') theirs.add(`${r.lane} ${r.start} ${r.dur} ${r.cause}`);
  }
  assert.deepEqual([...mine].sort(), [...theirs].sort());
  assert.ok(mine.size > 0);
});

test('a data-parallel trace has no pipeline analysis', () => {
  const t = syntheticPipelineTrace({ stageUs: [10], microBatches: 2, steps: 1 });
  t.meta.plan = dataPlan({ batch: 8, shards: [8] }, 1);
  t.meta.mode = t.meta.plan.mode;
  assert.equal(analyse(t).pipeline, null);
});

/** Every placement of k − 1 cuts, for checking the partition against brute force. */
function bruteForce(costs: number[], k: number, w: number[]): number {
  let best = Infinity;
  const rec = (from: number, s: number, worst: number): void => {
    if (s === k - 1) {
      let sum = 0;
      for (let i = from; i < costs.length; i++) sum += costs[i];
      best = Math.min(best, Math.max(worst, w[s] * sum));
      return;
    }
    let sum = 0;
    for (let end = from + 1; end <= costs.length - (k - 1 - s); end++) {
      sum += costs[end - 1];
      rec(end, s + 1, Math.max(worst, w[s] * sum));
    }
  };
  rec(0, 0, 0);
  return best;
}

test('the contiguous partition minimises the most expensive stage', () => {
  const p = partitionContiguous([1, 2, 3, 4, 5, 6, 7, 8, 9], 3)!;
  assert.equal(p.maxCost, 17);
  assert.deepEqual(p.bounds, [0, 5, 7, 9]);
  assert.deepEqual(p.stageCosts, [15, 13, 17]);
  assert.equal(partitionContiguous([1, 2], 3), null);
});

test('the contiguous partition is exact against brute force, with stages of different speed', () => {
  let seed = 12345;
  const rnd = (): number => ((seed = (seed * 1103515245 + 12345) % 2147483648) / 2147483648);
  for (let trial = 0; trial < 200; trial++) {
    const n = 2 + Math.floor(rnd() * 9);
    const k = 1 + Math.floor(rnd() * Math.min(4, n));
    const costs = Array.from({ length: n }, () => (rnd() < 0.2 ? 0 : Math.round(rnd() * 50)));
    const w = Array.from({ length: k }, () => 0.5 + rnd() * 2);
    const p = partitionContiguous(costs, k, w)!;
    close(p.maxCost, bruteForce(costs, k, w));
    assert.equal(p.bounds.length, k + 1);
    for (let s = 0; s < k; s++) assert.ok(p.bounds[s + 1] > p.bounds[s], 'every stage holds a node');
  }
});

test('re-partitioning moves nodes off the slow stage, keeping each stage device speed', () => {
  // Four nodes of 1 unit; the run measured 30 and 10 µs per micro-batch: 10 µs per unit on both.
  const re = repartitionStages([['a', 'b', 'c'], ['d']], { a: 1, b: 1, c: 1, d: 1 }, [30, 10])!;
  assert.deepEqual(re.stageNodes, [['a', 'b'], ['c', 'd']]);
  assert.deepEqual(re.cuts, ['b']);
  assert.deepEqual(re.stagePerMicroUs, [20, 20]);
  assert.deepEqual(re.weights, [10, 10]);
  // Stage 1 on a device twice as slow per unit: it should get less work.
  const slow = repartitionStages([['a', 'b'], ['c', 'd']], { a: 1, b: 1, c: 1, d: 1 }, [20, 40])!;
  assert.deepEqual(slow.stageNodes, [['a', 'b', 'c'], ['d']]);
  assert.deepEqual(slow.stagePerMicroUs, [30, 20]);
});

test('stages on devices of one kind share one line: what a stage costs beyond its nodes stays per stage, and moved nodes cost the same on either side', () => {
  // Eight nodes of 1 unit; every stage costs 30 µs per micro-batch beyond its nodes (a run,
  // layout reorders at its edges) and 10 µs per unit. Cut after 2 nodes: 50 and 90 µs.
  const nodes = { a: 1, b: 1, c: 1, d: 1, e: 1, f: 1, g: 1, h: 1 };
  const stages = [['a', 'b'], ['c', 'd', 'e', 'f', 'g', 'h']];
  const own = repartitionStages(stages, nodes, [50, 90])!;
  // Per-stage weights read stage 0 as a device 25 µs per unit against 15: the move stops early.
  assert.deepEqual(own.cuts, ['c']);
  const same = repartitionStages(stages, nodes, [50, 90], { sameDevices: true })!;
  assert.deepEqual(same.cuts, ['d']);
  assert.deepEqual(same.stagePerMicroUs, [70, 70]);
  assert.deepEqual(same.fixedUs, [30, 30]);
  assert.deepEqual(same.weights, [10, 10]);
  assert.deepEqual(stageCostsAtCuts(stages, nodes, [50, 90], ['b'], { sameDevices: true }), [50, 90], 'the measured cuts give the measured stages back');
  assert.equal(same.fit, 'line');
  assert.deepEqual(same.currentPerMicroUs, [50, 90], 'a fitted line reproduces the measured stages');
  // A line that is not physical (the heavier stage measured cheaper): one pooled rate, so the
  // difference the nodes do not explain is not read as one device being slower.
  const odd = repartitionStages(stages, nodes, [90, 50], { sameDevices: true })!;
  assert.equal(odd.fit, 'pooled');
  assert.deepEqual(odd.fixedUs, [0, 0]);
  assert.deepEqual(odd.weights, [17.5, 17.5]);
  assert.deepEqual(odd.currentPerMicroUs, [35, 105]);
  assert.deepEqual(odd.cuts, ['d']);
  close(odd.ratioSpread, 45 / (50 / 6));
  assert.equal(same.ratioSpread, 25 / 15);
  // Devices of different kinds keep their own speeds.
  const own2 = repartitionStages(stages, nodes, [90, 50])!;
  assert.equal(own2.fit, 'per-stage');
  assert.deepEqual(own2.weights, [45, 50 / 6]);
  assert.deepEqual(own2.currentPerMicroUs, [90, 50]);
});

test('stages of equal node costs on devices of one kind that measured apart are not re-cut', () => {
  // Calibrated 20 units each; measured 10 and 30 µs: no line through two equal x, so one pooled
  // rate (1 µs per unit) and the balanced cut stays where it is.
  const nodes = { a: 10, b: 10, c: 10, d: 10 };
  const re = repartitionStages([['a', 'b'], ['c', 'd']], nodes, [10, 30], { sameDevices: true })!;
  assert.equal(re.fit, 'pooled');
  assert.deepEqual(re.cuts, ['b']);
  assert.deepEqual(re.stagePerMicroUs, [20, 20]);
  assert.deepEqual(re.currentPerMicroUs, [20, 20]);
});

test('nodes without a measured cost are reported, not guessed', () => {
  const re = repartitionStages([['a', 'b'], ['c']], { a: 1, c: 1 }, [10, 10])!;
  assert.deepEqual(re.missingCosts, ['b']);
});
