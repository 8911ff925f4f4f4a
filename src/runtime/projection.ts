/**
 * What a projection (and the Chakra export) needs from the runtime side (the profiler never
 * imports the runtime): the FLOPs and bytes of each segment (src/runtime/onnx/costs.ts's
 * estimate), and the compiled programs for the device counts asked for.
 */
import type { DataPlan } from '../profiler/plan';
import type { Program, Segment } from '../profiler/program';
import { segmentKey } from '../profiler/simulate/costs';
import type { SegmentWork } from '../profiler/simulate/hardware';
import type { TraceMeta } from '../profiler/trace-format';
import { UserError } from '../common/errors';
import { compileData } from './compile/data';
import type { CompileContext } from './compile/common';
import { estimateCosts, loadModel } from './onnx/model';
import { resolveInputShapes } from './inputs';
import { batchNames } from './batch-axes';

/**
 * FLOPs and bytes of one run of each segment (the whole model, or a pipeline stage's nodes),
 * split into a fixed part (weights, which every run reads once) and a part per row, from the
 * estimate at one and at two rows. Nodes without an estimate count as nothing.
 */
export async function segmentWork(modelPath: string, segments: readonly Segment[], expectSha256?: string): Promise<Record<string, SegmentWork>> {
  const ir = await loadModel(modelPath);
  if (expectSha256 !== undefined && ir.sha256 !== expectSha256) {
    throw new UserError(`${modelPath} is not the model the trace was recorded with (its sha256 differs); give that model with --model`);
  }
  const at = (batch: number): { flops: number[]; bytes: number[] } => {
    const resolved = resolveInputShapes(ir, { batch });
    const dims: Record<string, number> = {};
    for (const name of batchNames(resolved)) dims[name] = batch;
    const e = estimateCosts(ir, dims, Object.fromEntries(resolved.map((r) => [r.name, r.dims])));
    return { flops: e.nodes.map((n) => n.flops ?? 0), bytes: e.nodes.map((n) => n.bytes ?? 0) };
  };
  const one = at(1);
  const two = at(2);
  const index = new Map(ir.nodes.map((n, i) => [n.name, i]));
  const out: Record<string, SegmentWork> = {};
  for (const seg of segments) {
    // Training segments (forward, backward parts, optimizer) are not projected yet: no estimate.
    if (seg.kind !== 'whole' && seg.kind !== 'stage') continue;
    const nodes = seg.kind === 'whole' ? ir.nodes.map((_, i) => i) : seg.nodes.flatMap((name) => (index.has(name) ? [index.get(name)!] : []));
    let f1 = 0, f2 = 0, b1 = 0, b2 = 0;
    for (const i of nodes) {
      f1 += one.flops[i];
      f2 += two.flops[i];
      b1 += one.bytes[i];
      b2 += two.bytes[i];
    }
    const flopsPerRow = Math.max(0, f2 - f1);
    const bytesPerRow = Math.max(0, b2 - b1);
    out[segmentKey(seg)] = { flopsPerRow, bytesPerRow, flopsFixed: Math.max(0, f1 - flopsPerRow), bytesFixed: Math.max(0, b1 - bytesPerRow) };
  }
  return out;
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
