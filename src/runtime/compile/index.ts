/**
 * Compilers: a plan (and, for a pipeline, its partition) to a {@link Program}. One compiler
 * per mode; a new mode or schedule is a new file here and nothing else changes.
 */
import { assertNever, type Plan } from '../../profiler/plan';
import type { Program } from '../../profiler/program';
import type { Partition } from '../pipeline/partition';
import type { CompileContext } from './common';
import { compileData } from './data';
import { compilePipeline } from './pipeline';
import { compileTrainData } from './train-data';
import { compileTensor, type TensorPrepared } from './tensor';
import { compileTrainPipeline } from './train-pipeline';
import { compileTrainTensor } from './train-tensor';
import { compileHybrid, compileHybridPipeline } from './hybrid';

export { checkShards, resolveShards } from './data';
export type { CompileContext, InputLayoutTyped, PipelineTrainingContext, TensorTrainingContext, TrainingContext } from './common';

/** What a mode needs decided before it compiles (a pipeline's partition comes from calibration). */
export type Prepared =
  | { mode: 'data' }
  | { mode: 'pipeline' | 'hybrid-pipeline'; partition: Partition }
  | ({ mode: 'tensor' | 'hybrid' } & TensorPrepared);

/** Compiles a plan into the program every device runs. */
export function compile(plan: Plan, prepared: Prepared, ctx: CompileContext): Program {
  switch (plan.mode) {
    case 'data':
      if (plan.train) {
        if (!ctx.training) throw new Error('a training plan compiles only with its step models');
        return compileTrainData({ ...plan, train: plan.train }, { ...ctx, training: ctx.training });
      }
      return compileData(plan, ctx);
    case 'pipeline':
      if (prepared.mode !== 'pipeline') throw new Error('a pipeline plan compiles only with its partition');
      if (plan.train) {
        if (!ctx.pipelineTraining) throw new Error('a pipeline training plan compiles only with its stages\' training models');
        return compileTrainPipeline({ ...plan, train: plan.train }, prepared.partition, ctx, ctx.pipelineTraining);
      }
      return compilePipeline(plan, prepared.partition, ctx);
    case 'tensor':
      if (prepared.mode !== 'tensor') throw new Error('a tensor plan compiles only with its shard plan');
      if (plan.train) {
        if (!ctx.tensorTraining) throw new Error('a tensor training plan compiles only with its devices\' training models');
        return compileTrainTensor({ ...plan, train: plan.train }, prepared, ctx, ctx.tensorTraining);
      }
      return compileTensor(plan, prepared, ctx);
    case 'hybrid':
      if ('pipeline' in plan) {
        if (prepared.mode !== 'hybrid-pipeline') throw new Error('a data × pipeline plan compiles only with the partition of one replica');
        return compileHybridPipeline(plan, prepared.partition, ctx);
      }
      if (prepared.mode !== 'hybrid') throw new Error('a data × tensor plan compiles only with the shard plan of one replica');
      return compileHybrid(plan, prepared, ctx);
    default:
      return assertNever(plan, 'plan');
  }
}
