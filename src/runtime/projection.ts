/**
 * What a projection needs from the runtime side (the profiler never imports the runtime):
 * the FLOPs and bytes of the model for the roofline (src/runtime/onnx/costs.ts's estimate),
 * and the compiled programs for the device counts asked for.
 */
import type { DataPlan } from '../profiler/plan';
import type { Program } from '../profiler/program';
import type { SegmentWork } from '../profiler/simulate/hardware';
import type { TraceMeta } from '../profiler/trace-format';
import { UserError } from '../common/errors';
import { compileData } from './compile/data';
import type { CompileContext } from './compile/common';
import { estimateCosts, loadModel } from './onnx/model';
import { resolveInputShapes } from './inputs';
import { batchNames } from './batch-axes';

/**
 * FLOPs and bytes of one run of the whole model, split into a fixed part (weights, which
 * every run reads once) and a part per row, from the estimate at one and at two rows.
 */
export async function wholeModelWork(modelPath: string): Promise<SegmentWork> {
  const ir = await loadModel(modelPath);
  const at = (batch: number): { flops: number; bytes: number } => {
    const resolved = resolveInputShapes(ir, { batch });
    const dims: Record<string, number> = {};
    for (const name of batchNames(resolved)) dims[name] = batch;
    const e = estimateCosts(ir, dims, Object.fromEntries(resolved.map((r) => [r.name, r.dims])));
    return { flops: e.totalFlops, bytes: e.totalBytes };
  };
  const one = at(1);
  const two = at(2);
  const flopsPerRow = Math.max(0, two.flops - one.flops);
  const bytesPerRow = Math.max(0, two.bytes - one.bytes);
  return { flopsPerRow, bytesPerRow, flopsFixed: Math.max(0, one.flops - flopsPerRow), bytesFixed: Math.max(0, one.bytes - bytesPerRow) };
}

/**
 * The compile context of a measured data-parallel run, rebuilt from its trace for `devices`
 * devices: input layout from the plan and the model's dtypes, outputs from the program.
 */
export function compileContextOf(meta: TraceMeta, devices: number): CompileContext {
  const program = meta.program;
  const model = meta.model;
  const layout = meta.plan.mode === 'imported' ? undefined : meta.plan.inputs;
  if (!program || !model || !layout) throw new UserError('the trace does not record its program, model and input layout; project a run recorded by `parallax profile`');
  const dtypes = new Map(model.inputs.map((i) => [i.name, i.dtype]));
  return {
    inputs: layout.map((i) => ({ name: i.name, dtype: dtypes.get(i.name) ?? 'float32', dims: i.dims, batchAxis: i.batchAxis })),
    outputs: program.outputs,
    parameterCount: model.parameters,
    devices,
    nodeNames: [],
  };
}

/** The program of a data plan on its devices. */
export function compileDataFor(meta: TraceMeta, plan: DataPlan, devices: number): Program {
  return compileData(plan, compileContextOf(meta, devices));
}
