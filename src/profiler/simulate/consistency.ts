/**
 * Self-consistency of the simulator: fit costs on measured runs, predict another measured
 * run of a program, and compare step times. The number the consistency benchmark reports.
 */
import { median } from '../stats';
import type { Trace } from '../trace-format';
import { fitCostModel } from './fit';
import { simulate } from './simulate';

/** Predicted and measured median step time, and the relative error (predicted − measured) / measured. */
export interface SelfConsistency {
  predictedStepUs: number;
  measuredStepUs: number;
  error: number;
}

function medianStepUs(trace: Trace): number {
  return median(trace.steps.map((w) => w.endUs - w.startUs));
}

/**
 * Fits a cost model on `measured`, simulates `target.meta.program` for as many steps as
 * `target` measured (with `target`'s metadata and lanes), and compares median step times.
 * Throws when `target` has no program or no measured step.
 */
export function selfConsistency(measured: readonly Trace[], target: Trace): SelfConsistency {
  const program = target.meta.program;
  if (!program) throw new Error('the target trace has no meta.program to simulate');
  if (target.steps.length === 0) throw new Error('the target trace has no measured steps');
  const costs = fitCostModel(measured);
  const predicted = simulate(program, costs, { steps: target.steps.length, meta: target.meta, lanes: target.lanes });
  const predictedStepUs = medianStepUs(predicted);
  const measuredStepUs = medianStepUs(target);
  return { predictedStepUs, measuredStepUs, error: measuredStepUs > 0 ? (predictedStepUs - measuredStepUs) / measuredStepUs : NaN };
}
