/**
 * Contention between pipeline stages: how much slower a stage computes while another does,
 * measured from one run's own spans, and the pipeline model charging it to new cuts at the
 * new schedule's overlap. Also the overlap measures it rests on.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { aloneStagePerMicroUs, flowShopOverlap, measureStageContention, pipelineFormulaUs, predictPipelineStepUs, type PipelineModel } from '../../src/profiler/analysis/pipeline';
import { computeOverlap, intervalOverlap, spanOverlaps } from '../../src/profiler/analysis/overlap';
import { syntheticPipelineTrace } from '../../src/profiler/analysis/synthetic';
import { SpanKind, type Trace } from '../../src/profiler/trace-format';

/**
 * Two equal stages of 10 µs per micro-batch alone, 4 micro-batches: the spans that overlap
 * another stage's compute are stretched `factor`×, the schedule moved to match (stage 0's
 * first and stage 1's last micro-batch run alone).
 */
function contendedTrace(factor: number, steps = 3): Trace {
  const t = syntheticPipelineTrace({ stageUs: [10, 10], microBatches: 4, steps, stepGapUs: 10 });
  const s = t.spans;
  const o = 10 * factor;
  // Per micro-batch m: stage 0 starts at m>0 ? 10 + (m−1)·o : 0; stage 1 at 10 + m·o.
  const startOf = (stage: number, m: number): number => (stage === 0 ? (m === 0 ? 0 : 10 + (m - 1) * o) : 10 + m * o);
  const durOf = (stage: number, m: number): number => ((stage === 0 && m === 0) || (stage === 1 && m === 3) ? 10 : o);
  const stepUs = 10 + 3 * o + 10;
  for (let i = 0; i < s.count; i++) {
    if (s.kind[i] !== SpanKind.compute || s.parent[i]! >= 0) continue;
    const step = s.step[i]!;
    const t0 = step * (stepUs + 10);
    s.start[i] = t0 + startOf(s.lane[i]!, s.micro[i]!);
    s.dur[i] = durOf(s.lane[i]!, s.micro[i]!);
  }
  t.steps = t.steps.map((w, k) => ({ ...w, startUs: k * (stepUs + 10), endUs: k * (stepUs + 10) + stepUs }));
  return t;
}

test('a stage computing while another does is measured as factor× slower than alone', () => {
  const c = measureStageContention(contendedTrace(1.6), Int32Array.from([0, 1]));
  assert.ok(c, 'contention measured');
  assert.ok(Math.abs(c.factor - 1.6) < 1e-9, `factor ${c.factor}`);
  assert.equal(c.aloneSpans, 6); // one alone span per stage per step
  assert.equal(c.overlappedSpans, 18);
});

test('no contention is charged when overlapped spans are no slower, or too few ran alone', () => {
  assert.equal(measureStageContention(contendedTrace(1.02), Int32Array.from([0, 1])), null, 'within noise');
  assert.equal(measureStageContention(contendedTrace(1.6, 2), Int32Array.from([0, 1])), null, 'two alone spans per stage');
  const training = contendedTrace(1.6);
  training.meta = { ...training.meta, training: {} as never };
  assert.equal(measureStageContention(training, Int32Array.from([0, 1])), null, 'training: forward and backward differ');
});

test('the schedule overlap: none for one micro-batch, more for more micro-batches and for balanced stages', () => {
  assert.equal(flowShopOverlap(1, [10, 10]), 0);
  const m4 = flowShopOverlap(4, [10, 10]);
  assert.ok(Math.abs(m4 - 6 / 8) < 1e-9, `M=4: ${m4}`); // 3 of each stage's 4 micro-batches overlap
  assert.ok(flowShopOverlap(8, [10, 10]) > m4);
  assert.ok(flowShopOverlap(4, [15, 5]) < m4, 'a lopsided pipeline overlaps less');
  // The same measure as a trace's: the synthetic schedule of those stages.
  const t = syntheticPipelineTrace({ stageUs: [15, 5], microBatches: 4, steps: 1 });
  assert.ok(Math.abs(computeOverlap(t) - flowShopOverlap(4, [15, 5])) < 1e-9);
  assert.equal(intervalOverlap([[[0, 10]], [[10, 20]]]), 0);
  assert.equal(intervalOverlap([[[0, 10]], [[0, 10]]]), 1);
});

test('per-span overlap walks each lane once and agrees with the brute-force measure', () => {
  const t = syntheticPipelineTrace({ stageUs: [7, 13, 9], microBatches: 6, steps: 4, jitter: 0.3, commUs: 1, seed: 7 });
  const fast = spanOverlaps(t);
  const s = t.spans;
  const measured = new Set(t.steps.map((w) => w.index));
  const top = (i: number): boolean => s.kind[i] === SpanKind.compute && s.parent[i]! < 0 && measured.has(s.step[i]!) && s.dur[i]! > 0;
  for (let i = 0; i < s.count; i++) {
    if (!top(i)) {
      assert.ok(Number.isNaN(fast[i]!));
      continue;
    }
    const a = s.start[i]!;
    const b = a + s.dur[i]!;
    // Brute force: sample the span finely.
    let covered = 0;
    const n = 2000;
    for (let k = 0; k < n; k++) {
      const x = a + ((k + 0.5) / n) * (b - a);
      let other = false;
      for (let j = 0; j < s.count && !other; j++) if (j !== i && top(j) && s.lane[j] !== s.lane[i] && s.start[j]! <= x && x < s.start[j]! + s.dur[j]!) other = true;
      if (other) covered++;
    }
    assert.ok(Math.abs(fast[i]! - covered / n) < 0.01, `span ${i}: ${fast[i]} vs ${covered / n}`);
  }
});

/** The model of a run measured as {@link contendedTrace}: 2 stages, 4 micro-batches. */
function modelOf(factor: number | null, stagePerMicroUs: number[]): PipelineModel {
  const formulaUs = pipelineFormulaUs(4, stagePerMicroUs);
  const measuredStepUs = formulaUs;
  return {
    stages: 2,
    microBatches: 4,
    stagePerMicroUs,
    stageCommPerMicroUs: [0, 0],
    measuredStepUs,
    formulaUs,
    scale: 1,
    microBatchRows: 2,
    stageFixedShare: [0, 0],
    probe: null,
    contention: factor === null ? null : { factor, aloneSpans: 6, overlappedSpans: 18 },
  };
}

test('new cuts are charged the contention their schedule overlaps into; without contention the model is unchanged', () => {
  // Measured: stage costs 15 / 5 µs per micro-batch, the stages slowing each other 1.8×.
  const measured = [15, 5];
  const plain = modelOf(null, measured);
  const contended = modelOf(1.8, measured);
  const balanced = [10, 10];
  const before = plain.measuredStepUs;
  // Without contention: the old prediction, the formula at the new costs.
  assert.equal(predictPipelineStepUs(plain, { stagePerMicroUs: balanced }), pipelineFormulaUs(4, balanced));
  // At the current costs, contention changes nothing much: the step is the measured one.
  const same = predictPipelineStepUs(contended, { stagePerMicroUs: measured });
  assert.ok(Math.abs(same / before - 1) < 0.02, `${same} vs ${before}`);
  // Balanced stages overlap more, so they are predicted to gain less than without contention.
  const withC = predictPipelineStepUs(contended, { stagePerMicroUs: balanced });
  assert.ok(withC > pipelineFormulaUs(4, balanced) * 1.05, `${withC}`);
  assert.ok(withC < before * 1.5);
  // Alone costs given as such: the measured ones less the slowdown at the run's overlap.
  const alone = aloneStagePerMicroUs(contended);
  const ov = flowShopOverlap(4, measured);
  alone.forEach((a, s) => assert.ok(Math.abs(a * (1 + 0.8 * ov) - measured[s]!) < 1e-9));
  assert.equal(predictPipelineStepUs(contended, { stagePerMicroUs: alone, alone: true }), same);
  // A change of micro-batch count is not charged (the probe measures it).
  assert.equal(predictPipelineStepUs(contended, { microBatches: 8 }), predictPipelineStepUs(plain, { microBatches: 8 }));
});
