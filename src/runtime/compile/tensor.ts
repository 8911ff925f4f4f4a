/**
 * The tensor-parallel compiler: every device runs the whole batch through its own chain of
 * segment models, cut after every row-parallel layer. Each segment holds the device's slices
 * of the split weights (runtime/tensor/shard-model.ts writes them) and everything else whole.
 * A row-parallel layer's output is a partial sum, so after the segment that ends with it the
 * devices all-reduce it (real data, through the communicator) and the next segment reads the
 * sum. One step per device:
 *
 *   scatter every row → run part 0 → all-reduce (layer 0) → run part 1 → … → run part K−1 → gather
 *
 * The chain is the partition of the graph at the all-reduces (a pipeline partition cut after
 * each row-parallel node), so segments are cut and typed by the same code as pipeline stages.
 */
import type { TensorPlan } from '../../profiler/plan';
import type { Instruction, Program, ProgramBuffer, Segment } from '../../profiler/program';
import { UserError } from '../../common/errors';
import { partitionFromCuts, type Partition } from '../pipeline/partition';
import { planTensorSharding, type TensorShardPlan } from '../tensor/shard-plan';
import type { ModelIR } from '../onnx/model';
import { inputBytes, type CompileContext } from './common';

/** What a tensor plan compiles against: the shard plan and the chain of segments cut at its all-reduces. */
export interface TensorPrepared {
  shard: TensorShardPlan;
  chain: Partition;
}

/** Node names after which the chain is cut: the row-parallel nodes whose outputs are all-reduced, in chain order. */
export function chainCuts(shard: TensorShardPlan, nodeOrder: readonly string[]): string[] {
  const after = new Set(shard.collectives.filter((c) => c.op === 'all-reduce').map((c) => c.afterNode));
  return nodeOrder.filter((n) => after.has(n));
}

/**
 * Plans the split of `ir` over `devices` devices and cuts the graph into the chain every
 * device runs: a part ends with each row-parallel node whose output is all-reduced (an
 * all-reduce after the graph's last node follows the last part, with no cut).
 * @throws UserError when nothing can be split (naming what was looked for).
 */
export function prepareTensor(ir: ModelIR, devices: number, dimValues: Record<string, number>, keepWhole: readonly string[] = []): TensorPrepared {
  const shard = planTensorSharding(ir, devices, { dimValues, keepWhole });
  const order = ir.topoOrder.map((i) => ir.nodes[i]!.name);
  const cuts = chainCuts(shard, order).filter((c) => c !== order[order.length - 1]);
  return { shard, chain: partitionFromCuts(ir, cuts, { dimValues }) };
}

/** Name of the buffer the all-reduce of collective `i` works on. */
export function activationBufferName(i: number): string {
  return `tensor.allreduce${i}`;
}

/**
 * Compiles a tensor plan: segment `rank × K + part` is part `part` of device `rank`'s chain.
 * @throws UserError when the plan needs a collective that is not run yet (an all-gather of a
 *   split graph output), or an all-reduced tensor whose size is not known.
 */
export function compileTensor(plan: TensorPlan, prep: TensorPrepared, ctx: CompileContext): Program {
  const { shard, chain } = prep;
  const n = ctx.devices;
  if (shard.devices !== n) throw new Error(`shard plan for ${shard.devices} devices compiled for ${n}`);
  const gather = shard.collectives.find((c) => c.op === 'all-gather');
  if (gather) {
    throw new UserError(
      `${shard.modelPath}: graph output "${gather.tensor}" stays split across devices and would need an all-gather, which tensor-parallel runs do not do yet; profile it with --mode data or --mode pipeline`,
    );
  }
  const group = Array.from({ length: n }, (_, r) => r);
  const lastNode = (k: number): string => ctx.nodeNames[chain.stages[k]!.nodeIndices[chain.stages[k]!.nodeIndices.length - 1]!] ?? '';
  const buffers: ProgramBuffer[] = [];
  /** Chain part → the all-reduce after it. */
  const after = new Map<number, { buffer: string; bytes: number }>();
  shard.collectives.forEach((c, i) => {
    const part = chain.stages.findIndex((_, k) => lastNode(k) === c.afterNode);
    if (part < 0) throw new Error(`no chain part ends with ${c.afterNode}`);
    if (c.bytesPerRow === null) {
      throw new UserError(`${shard.modelPath}: the size of "${c.tensor}", which tensor parallelism all-reduces after ${c.afterNode}, is unknown; give --dim values for the model's symbolic dimensions`);
    }
    const bytes = shard.batchDim !== null ? c.bytesPerRow * plan.batch : c.bytesPerRow;
    const name = activationBufferName(i);
    buffers.push({ name, dtype: 'float32', elements: bytes / 4, synthetic: false, activation: { tensor: c.tensor, layer: shard.groups[c.group]?.label ?? c.afterNode } });
    after.set(part, { buffer: name, bytes });
  });

  const k = chain.stages.length;
  const segments: Segment[] = [];
  for (let rank = 0; rank < n; rank++) {
    chain.stages.forEach((st, part) => {
      segments.push({ id: rank * k + part, kind: 'shard', label: `shard ${rank} part ${part}`, rank, part, nodes: st.nodeIndices.map((i) => ctx.nodeNames[i] ?? String(i)) });
    });
  }
  const rows = { start: 0, count: plan.batch };
  const inputs = ctx.inputs.map((i) => i.name);
  const graphOut = new Set(ctx.outputs.map((o) => o.name));
  const devices = group.map((rank) => {
    const instructions: Instruction[] = [{ op: 'scatter', micro: -1, rows, tensors: inputs, bytes: inputBytes(ctx.inputs, inputs, plan.batch) }];
    chain.stages.forEach((st, part) => {
      instructions.push({ op: 'run', micro: -1, segment: rank * k + part, rows: plan.batch, phase: 'forward' });
      const ar = after.get(part);
      if (ar) instructions.push({ op: 'collective', collective: 'allreduce', group, buffer: ar.buffer, bytes: ar.bytes });
      // Every device ends with the same outputs; the first one hands them over.
      const produced = st.outputs.filter((o) => o.to.includes('graph') && graphOut.has(o.name)).map((o) => o.name);
      if (rank === 0 && produced.length > 0) instructions.push({ op: 'gather', micro: -1, rows, tensors: produced, bytes: 0 });
    });
    return { rank, stage: -1, segments: chain.stages.map((_, part) => rank * k + part), instructions };
  });
  return { mode: 'tensor', schedule: 'megatron', batch: plan.batch, segments, outputs: ctx.outputs, buffers, devices };
}
