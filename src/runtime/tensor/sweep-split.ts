/**
 * What a plan sweep asks the tensor-parallel shard planner (src/profiler cannot ask it
 * itself): whether a model splits, and how a tensor plan's split divides each node's work.
 */
import { UserError } from '../../common/errors';
import type { Plan } from '../../profiler/plan';
import type { TensorVerdict } from '../../profiler/sweep/enumerate';
import type { SplitShares } from '../../profiler/sweep/predict';
import { parseDeviceSpec } from '../device/discovery';
import { estimateCosts, type ModelIR } from '../onnx/model';
import { nominalDims } from '../pipeline/partition';
import { planTensorSharding } from './shard-plan';

/** The planner's answers for one model. */
export interface SweepSplit {
  /** Whether the model splits over `n` devices, or the planner's one-line reason why not. */
  verdict: (n: number) => TensorVerdict;
  /** For a tensor or data × tensor plan, each node's share of work per device and its FLOPs; null for other plans. */
  sharesFor: (plan: Plan) => SplitShares | null;
}

/**
 * The shard planner's answers for a sweep: whether the model splits over `n` devices (the
 * planner's one-line reason when not), and for a tensor or data × tensor plan which share of
 * each node's work a device does, with the nodes' FLOP estimates (see {@link SplitShares}).
 */
export function sweepSplit(ir: ModelIR, dims: Record<string, number> | undefined): SweepSplit {
  const dimValues = dims ?? {};
  let flops: Record<string, number> | null = null;
  const flopsOf = (): Record<string, number> => {
    if (!flops) {
      const est = estimateCosts(ir, { ...nominalDims(ir), ...dimValues });
      flops = Object.fromEntries(ir.nodes.map((node, i) => [node.name, est.nodes[i]?.flops ?? 0]));
    }
    return flops;
  };
  return {
    verdict: (n) => {
      try {
        planTensorSharding(ir, n, { dimValues });
        return { splits: true };
      } catch (e) {
        if (!(e instanceof UserError)) throw e;
        // The planner's line names the model path first; the table names the model already.
        return { splits: false, reason: e.message.replace(`${ir.path}: `, '') };
      }
    },
    sharesFor: (plan) => {
      const t = plan.mode === 'tensor' ? (plan.tensor ?? parseDeviceSpec(plan.devices).reduce((a, d) => a + d.count, 0)) : plan.mode === 'hybrid' && 'tensor' in plan ? plan.tensor : null;
      if (t === null || t < 2) return null;
      let shard;
      try {
        shard = planTensorSharding(ir, t, { dimValues });
      } catch {
        return null;
      }
      const split = new Set(shard.groups.flatMap((g) => g.nodes));
      return { share: Object.fromEntries(ir.nodes.map((node) => [node.name, split.has(node.name) ? 1 / t : 1])), flops: flopsOf() };
    },
  };
}
