/**
 * The training models of a tensor-parallel run (pure: no ONNX Runtime). Each device's chain
 * of shard segments (runtime/tensor/shard-model.ts) is trained as a pipeline whose stages all
 * run on that device, with an all-reduce where a pipeline would send: the stage forward and
 * backward models come from {@link buildStageTrainingModels}, given the device's shard
 * models instead of cuts of the whole model.
 *
 * Where the collectives sit is Megatron-LM's f and g operators:
 * - g, after a row-parallel layer: forward, its partial sums are all-reduced (as in
 *   inference); backward, the gradient of the sum is the gradient of every partial sum, and
 *   it is replicated, so nothing moves.
 * - f, before the column-parallel layers: forward, their input is replicated and read as it
 *   is; backward, each device's layers give only their columns' share of that input's
 *   gradient, so it is all-reduced before anything further back reads it (the LayerNorm,
 *   the residual stream). The backward of a segment is cut there in two
 *   ({@link StageTrainingOptions.cutGradientAt}), and the all-reduce runs between the parts.
 *   All-reducing a segment's input gradient instead would be wrong wherever a residual
 *   carries a replicated gradient past the layer: it would be summed N times.
 *
 * So a block of LayerNorm + MLP costs one all-reduce forward and one backward; an attention
 * block and its MLP two each. Each device trains its own slices (their gradients are local)
 * and the replicated weights, whose gradients are replicated: identical on every device. A
 * row-parallel Gemm's bias is added on device 0 only (zeros elsewhere), so only device 0
 * trains it; the others keep it frozen at zero. A replicated weight read inside a split
 * region (an attention scale, a Gelu constant kept as an initializer) sees only the device's
 * share of the split tensor, so its gradient is a partial sum: those gradients are packed
 * into one buffer and all-reduced before the optimizer ({@link TensorTrainingContext.partialGradients}).
 *
 * A weight that several segments read (a constant every block shares) is trained once: each
 * segment's backward gives its share of the gradient and the optimizer sums them.
 *
 * Refused, each with one line naming what to do: a graph output that is a partial sum (the
 * loss needs the whole output), the input of a column-parallel layer that a layer outside
 * the split reads too (its gradient would mix whole and partial terms), and a segment that
 * reads an activation of a segment other than the one before it.
 */
import { onnx } from 'onnx-proto';
import { UserError } from '../../common/errors';
import { freezePattern, type TrainPlan } from '../../profiler/plan';
import { encodeModel, estimateCosts, type ModelIR } from '../onnx/model';
import { batchDimName, nominalDims } from '../pipeline/partition';
import { NON_DIFFERENTIABLE_OPS } from './grad-ops';
import { buildStageTrainingModels, type BackwardCut, type PipelineTrainingModels, type StageLoss } from './pipeline-models';
import { buildStepOptimizer, optimizerSlots } from './step-models';
import { rowBiasName, shardChainModels } from '../tensor/shard-model';
import type { TensorPrepared } from '../compile/tensor';
import type { TensorTrainingContext } from '../compile/common';

/** A device's training models: per chain part its forward and backward (one model, or two around the f all-reduce), and its optimizer. */
export interface TensorRankModels {
  parts: { forward: Uint8Array; backward: Uint8Array[] }[];
  optimizer: Uint8Array;
}

/** Result of {@link buildTensorTrainingModels}. */
export interface TensorTrainingModels {
  ranks: TensorRankModels[];
  context: TensorTrainingContext;
}

const isFloat = (d: string | undefined): boolean => d === 'float32' || d === 'float64';

/**
 * The input of each split group's column-parallel layers (the f operator's tensor), by chain
 * part; null for a part with none, or whose input is a graph input (no gradient is needed).
 */
function fTensors(ir: ModelIR, prep: TensorPrepared, modelName: string): ({ tensor: string; layer: string } | null)[] {
  const { shard, chain } = prep;
  const byName = new Map(ir.nodes.map((n) => [n.name, n]));
  const partOf = new Map<number, number>();
  chain.stages.forEach((st, k) => st.nodeIndices.forEach((i) => partOf.set(i, k)));
  const out: ({ tensor: string; layer: string } | null)[] = chain.stages.map(() => null);
  const graphInputs = new Set(ir.inputs.map((i) => i.name));
  for (const g of shard.groups) {
    const cols = g.columnNodes.map((n) => byName.get(n)!);
    const inputs = [...new Set(cols.flatMap((n) => n.inputs.filter((t) => t && !ir.initializerByName.has(t) && shard.splitTensors[t] === undefined)))];
    if (inputs.length !== 1) {
      throw new UserError(`${modelName}: the column-parallel layers of ${g.label} read ${inputs.length} whole inputs (${inputs.join(', ')}); tensor-parallel training needs them to share one; profile it with --mode data or --mode pipeline`);
    }
    const x = inputs[0]!;
    const part = partOf.get(cols[0]!.index)!;
    if (cols.some((n) => partOf.get(n.index) !== part)) throw new Error(`${g.label}: column-parallel layers in two chain parts`);
    // A graph input needs no gradient, so whatever else reads it.
    if (graphInputs.has(x)) continue;
    const colSet = new Set(g.columnNodes);
    const other = (ir.consumers.get(x) ?? []).map((c) => ir.nodes[c]!).find((n) => !colSet.has(n.name) && !(n.domain === '' && NON_DIFFERENTIABLE_OPS.has(n.opType)));
    if (other) {
      throw new UserError(`${modelName}: "${x}" feeds the split layers of ${g.label} and also ${other.name}, which is not split, so its gradient would mix whole and partial terms; tensor-parallel training does not split such layers yet; profile it with --mode data or --mode pipeline`);
    }
    if (out[part]) throw new UserError(`${modelName}: two split groups begin in one segment of the tensor-parallel chain (${out[part]!.layer} and ${g.label}); tensor-parallel training needs an all-reduce between them; profile it with --mode data or --mode pipeline`);
    out[part] = { tensor: x, layer: g.label };
  }
  return out;
}

/**
 * Checks the chain (see the module comment) and returns the replicated weights read inside a
 * split region, whose gradients are partial sums.
 * @throws UserError for a chain tensor-parallel training cannot run.
 */
function checkChain(ir: ModelIR, prep: TensorPrepared, frozen: (name: string) => boolean, modelName: string): string[] {
  const { shard, chain } = prep;
  const last = ir.nodes[ir.topoOrder[ir.topoOrder.length - 1]!]!;
  const partialOut = shard.collectives.find((c) => c.op === 'all-reduce' && c.afterNode === last.name);
  if (partialOut) {
    throw new UserError(`${modelName}: the model's output "${partialOut.tensor}" is the partial sum of row-parallel ${partialOut.afterNode}, and the loss needs it whole; tensor-parallel training needs a node after that layer; profile it with --mode data or --mode pipeline`);
  }
  const floatWeight = (t: string): boolean => isFloat(ir.initializerByName.get(t)?.dtype);
  for (const st of chain.stages) {
    const skip = st.inputs.find((i) => i.from !== 'graph' && i.from !== st.index - 1);
    if (skip) throw new UserError(`${modelName}: segment ${st.index} of the tensor-parallel chain reads "${skip.name}" from segment ${String(skip.from)}, not the one before it, which tensor-parallel training does not do yet; profile it with --mode data or --mode pipeline`);
    const early = st.index < chain.stages.length - 1 ? st.outputs.find((o) => o.to.includes('graph')) : undefined;
    if (early) throw new UserError(`${modelName}: model output "${early.name}" is produced before the last segment of the tensor-parallel chain; tensor-parallel training needs the outputs at the end; profile it with --mode data or --mode pipeline`);
  }
  const placement = new Map(shard.initializers.map((p) => [p.name, p]));
  const byName = new Map(ir.nodes.map((n) => [n.name, n]));
  const partial = new Set<string>();
  for (const g of shard.groups) {
    const rows = new Set(g.rowNodes);
    for (const name of g.nodes) {
      if (rows.has(name)) continue;
      for (const t of byName.get(name)!.inputs) if (floatWeight(t) && placement.get(t)?.kind === 'replicated' && !frozen(t)) partial.add(t);
    }
  }
  return [...partial];
}

/**
 * Builds every device's training models for the tensor-parallel chain `prep`.
 * @param dims sizes of symbolic dimensions other than the batch (see buildGradientModel).
 * @throws UserError for what tensor-parallel training cannot do (see the module comment).
 */
export function buildTensorTrainingModels(modelBytes: Uint8Array, ir: ModelIR, prep: TensorPrepared, loss: StageLoss & { train: TrainPlan }, modelName: string, dims: Readonly<Record<string, number>> = {}): TensorTrainingModels {
  const { shard, chain } = prep;
  const patterns = (loss.train.freeze ?? []).map(freezePattern);
  const frozen = (name: string): boolean => patterns.some((p) => p.test(name));
  const partial = checkChain(ir, prep, frozen, modelName);
  const fs = fTensors(ir, prep, modelName);
  const byName = new Map(ir.nodes.map((n) => [n.name, n]));
  const rowBiases = shard.groups.flatMap((g) => g.rowNodes.map((r) => byName.get(r)!).flatMap((n) => (n.opType === 'Gemm' && n.inputs[2] ? [rowBiasName(n.inputs[2])] : [])));
  const built: (PipelineTrainingModels & { cuts: (BackwardCut | null)[] })[] = [];
  for (let rank = 0; rank < shard.devices; rank++) {
    const freeze = [...patterns, ...(rank > 0 ? rowBiases : [])];
    built.push(buildStageTrainingModels(shardChainModels(modelBytes, ir, prep, rank), ir, chain, loss, `${modelName} shard ${rank}`, dims, { freeze: () => freeze, cutGradientAt: (s) => fs[s]?.tensor ?? null }));
  }
  // Sizes of the f tensors, per batch row where the model has a batch dimension.
  const batchDim = batchDimName(ir);
  const shapes = estimateCosts(ir, { ...nominalDims(ir), ...dims, ...(batchDim ? { [batchDim]: 1 } : {}) }).shapes;
  const reductions = fs.map((f, k) => {
    const cut = built[0]!.cuts[k];
    if (!f || !cut) return null;
    for (const b of built) if (b.cuts[k]?.gradient !== cut.gradient) throw new Error(`part ${k}: devices name the gradient of ${f.tensor} differently`);
    const s = shapes.get(f.tensor);
    return { of: f.tensor, gradient: cut.gradient, layer: f.layer, bytesPerRow: s ? s.dims.reduce((a, b) => a * b, 1) * 4 : null };
  });
  // The gradients of the weights read inside split regions, under one name on every device.
  const partialGradients = partial.flatMap((w) => {
    const per = built.map((b) => b.stages.flatMap((st) => st.context.parameters).find((p) => p.name === w));
    const p = per[0];
    if (!p) return [];
    if (per.some((q) => q?.grad !== p.grad)) throw new Error(`devices name the gradient of ${w} differently`);
    return [{ param: w, grad: p.grad, elements: p.dims.reduce((a, b) => a * b, 1) }];
  });
  const ranks = built.map((b) => withSharedWeights(b));
  const optimizers = ranks.map((r) => {
    const opt = buildStepOptimizer(r.parameters, loss.train);
    return { ...opt, bytes: withGradientSums(opt.bytes, r.sums) };
  });
  return {
    ranks: ranks.map((r, i) => ({ parts: r.parts, optimizer: optimizers[i]!.bytes })),
    context: {
      labels: built[0]!.labels,
      reductions,
      // A weight several segments read has one partial gradient per segment, each all-reduced.
      partialGradients: partialGradients.flatMap((g) => {
        const sum = ranks[0]!.sums.find((x) => x.output === ranks[0]!.parameters.find((p) => p.name === g.param)?.grad);
        return sum ? sum.inputs.map((grad) => ({ ...g, grad })) : [g];
      }),
      ranks: ranks.map((r, i) => ({ parameters: r.parameters, loss: built[i]!.stages[built[i]!.stages.length - 1]!.context.loss, optimizer: optimizerSlots(optimizers[i]!) })),
    },
  };
}

/**
 * A device's parts and parameters, where a weight that several segments read (a constant every
 * block shares) is trained once: each segment's backward outputs its share of the gradient
 * under a name of its own (`<gradient>.part<k>`), and the optimizer reads their sum (`sums`).
 */
function withSharedWeights(b: PipelineTrainingModels & { cuts: (BackwardCut | null)[] }): {
  parts: TensorRankModels['parts'];
  parameters: { name: string; dims: number[]; grad: string }[];
  sums: { output: string; inputs: string[] }[];
} {
  const uses = new Map<string, { part: number; grad: string; dims: number[] }[]>();
  b.stages.forEach((st, part) => st.context.parameters.forEach((p) => uses.set(p.name, [...(uses.get(p.name) ?? []), { part, grad: p.grad, dims: p.dims }])));
  const renames = b.stages.map(() => new Map<string, string>());
  const sums: { output: string; inputs: string[] }[] = [];
  const parameters = [...uses].map(([name, us]) => {
    if (us.length === 1) return { name, dims: us[0]!.dims, grad: us[0]!.grad };
    const inputs = us.map((u) => `${u.grad}.part${u.part}`);
    us.forEach((u, i) => renames[u.part]!.set(u.grad, inputs[i]!));
    const output = `${us[0]!.grad}.sum`;
    sums.push({ output, inputs });
    return { name, dims: us[0]!.dims, grad: output };
  });
  const parts = b.stages.map((st, k) => {
    const backward = b.cuts[k] ? [...b.cuts[k].parts] : [st.backward];
    // Parameter gradients come out of the last piece of a part's backward.
    if (renames[k]!.size > 0) backward[backward.length - 1] = renameOutputs(backward[backward.length - 1]!, renames[k]!);
    return { forward: st.forward, backward };
  });
  return { parts, parameters, sums };
}

/** The model with graph outputs (and the nodes producing them) renamed. */
function renameOutputs(bytes: Uint8Array, to: ReadonlyMap<string, string>): Uint8Array {
  const model = onnx.ModelProto.decode(bytes);
  const graph = model.graph!;
  for (const n of graph.node ?? []) n.output = (n.output ?? []).map((o) => to.get(o) ?? o);
  for (const o of graph.output ?? []) if (o.name && to.has(o.name)) o.name = to.get(o.name)!;
  return encodeModel(model);
}

/** The optimizer model reading each summed gradient as its parts, summed by a `Sum` node in front. */
function withGradientSums(bytes: Uint8Array, sums: readonly { output: string; inputs: string[] }[]): Uint8Array {
  if (sums.length === 0) return bytes;
  const model = onnx.ModelProto.decode(bytes);
  const graph = model.graph!;
  const inputs: onnx.IValueInfoProto[] = [];
  for (const i of graph.input ?? []) {
    const sum = sums.find((x) => x.output === i.name);
    if (sum) inputs.push(...sum.inputs.map((name) => ({ ...i, name })));
    else inputs.push(i);
  }
  graph.input = inputs;
  graph.node = [...sums.map((x) => onnx.NodeProto.create({ name: `${x.output}/Sum`, opType: 'Sum', input: x.inputs, output: [x.output] })), ...(graph.node ?? [])];
  return encodeModel(model);
}
