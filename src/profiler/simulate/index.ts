/**
 * The discrete-event simulator: a {@link Program} and a {@link CostModel} in, a predicted
 * trace in the native format out; plus the cost fit from measured traces.
 */
export * from './costs';
export { fitCostModel, fitTwoTerms, type Sample } from './fit';
export { simulate, DeadlockError, type SimulateOptions } from './simulate';
export { selfConsistency, type SelfConsistency } from './consistency';
export * from './hardware';
