/**
 * The discrete-event simulator: a {@link Program} and a {@link CostModel} in, a predicted
 * trace in the native format out; plus the cost fit from measured traces, the hardware
 * presets, and the projection of a measured run to other device counts, kinds and links.
 */
export * from './costs';
export { fitCostModel, fitTwoTerms, type FitOptions, type Sample } from './fit';
export { simulate, DeadlockError, type SimulateOptions } from './simulate';
export { selfConsistency, type SelfConsistency } from './consistency';
export * from './hardware';
export {
  projectionModel,
  projectPoint,
  projectionRows,
  scaledDataPlan,
  sequentialProgram,
  serialFraction,
  amdahlBound,
  stepUs,
  commShare,
  type ProjectionModel,
  type ProjectionPoint,
  type ProjectionRow,
  type ProjectionSetup,
  type Scaling,
} from './project';
