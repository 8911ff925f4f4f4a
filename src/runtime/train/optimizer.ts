/**
 * Optimizer updates as ONNX graphs: parameters, their gradients and the optimizer state in,
 * new parameters and new state out. One model updates every parameter of a model (or of a
 * bucket of parameters), so a worker runs it once per step on whatever device holds the
 * weights, and the caller swaps the outputs in for the inputs (weights stay resident).
 *
 * Update rules (PyTorch's conventions; no weight decay):
 * - `sgd`:      p ← p − lr·g
 * - `momentum`: v ← μ·v + g;  p ← p − lr·v                       (state: `<p>.velocity`)
 * - `adam`:     m ← β1·m + (1−β1)·g;  v ← β2·v + (1−β2)·g²;
 *               p ← p − lr·(m / (1−β1^t)) / (√(v / (1−β2^t)) + ε)   (state: `<p>.m`, `<p>.v`)
 * The learning rate `lr` and, for Adam, the 1-based step number `step` are scalar inputs of
 * the parameters' type, so schedules need no new model. State starts at zero.
 */
import { onnx } from 'onnx-proto';
import { encodeModel } from '../onnx/model';
import { GraphBuilder, type FloatType } from './graph-builder';

/** Optimizer kinds and their hyper-parameters. */
export type OptimizerConfig =
  | { kind: 'sgd' }
  | { kind: 'momentum'; momentum?: number }
  | { kind: 'adam'; beta1?: number; beta2?: number; epsilon?: number };

/** A parameter the optimizer updates. */
export interface OptimizedParameter {
  name: string;
  dims: number[];
}

/** Names of one parameter's inputs and outputs in the optimizer model. */
export interface ParameterSlots {
  param: string;
  /** Input: the parameter's current value (named like the parameter). */
  value: string;
  /** Input: its gradient. */
  grad: string;
  /** Output: its new value. */
  updated: string;
  /** Optimizer state tensors (same shape as the parameter): input name and output name. */
  state: Array<{ input: string; output: string }>;
}

/** Result of {@link buildOptimizerModel}. */
export interface OptimizerModel {
  bytes: Uint8Array;
  slots: ParameterSlots[];
  /** Scalar learning-rate input. */
  lr: string;
  /** Scalar 1-based step input (Adam only). */
  step: string | null;
}

/** Defaults of the hyper-parameters. */
export const OPTIMIZER_DEFAULTS = { momentum: 0.9, beta1: 0.9, beta2: 0.999, epsilon: 1e-8 } as const;

/** Builds the update model for `params` (opset 17). */
export function buildOptimizerModel(params: readonly OptimizedParameter[], config: OptimizerConfig, floatType: FloatType = 'float32'): OptimizerModel {
  const b = new GraphBuilder('opt', 17, floatType);
  const lr = 'optimizer.lr';
  const step = config.kind === 'adam' ? 'optimizer.step' : null;
  const input: onnx.IValueInfoProto[] = [];
  const output: onnx.IValueInfoProto[] = [];
  const tensor = (name: string, dims: number[]): onnx.IValueInfoProto => ({
    name,
    type: { tensorType: { elemType: b.floatCode, shape: { dim: dims.map((d) => ({ dimValue: d })) } } },
  });
  input.push(tensor(lr, []));
  if (step) input.push(tensor(step, []));

  // Adam's bias corrections depend only on the step: computed once for all parameters.
  let adam: { c1: string; c2: string; beta1: number; beta2: number; epsilon: number } | null = null;
  if (config.kind === 'adam' && step) {
    const beta1 = config.beta1 ?? OPTIMIZER_DEFAULTS.beta1;
    const beta2 = config.beta2 ?? OPTIMIZER_DEFAULTS.beta2;
    b.scope = '/bias_correction';
    const c1 = b.sub(b.floats([1]), b.op('Pow', [b.floats([beta1]), step]));
    const c2 = b.sub(b.floats([1]), b.op('Pow', [b.floats([beta2]), step]));
    adam = { c1, c2, beta1, beta2, epsilon: config.epsilon ?? OPTIMIZER_DEFAULTS.epsilon };
  }

  const slots: ParameterSlots[] = params.map((p) => {
    b.scope = `/${p.name}`;
    const grad = `${p.name}_grad`;
    const updated = `${p.name}_new`;
    input.push(tensor(p.name, p.dims), tensor(grad, p.dims));
    const state: ParameterSlots['state'] = [];
    const stateIn = (suffix: string): string => {
      const name = `${p.name}.${suffix}`;
      input.push(tensor(name, p.dims));
      output.push(tensor(`${name}_new`, p.dims));
      state.push({ input: name, output: `${name}_new` });
      return name;
    };
    let delta: string;
    const outs: Array<[string, string]> = [];
    switch (config.kind) {
      case 'sgd':
        delta = grad;
        break;
      case 'momentum': {
        const v = stateIn('velocity');
        const v2 = b.add(b.mul(v, b.floats([config.momentum ?? OPTIMIZER_DEFAULTS.momentum])), grad);
        outs.push([v2, `${v}_new`]);
        delta = v2;
        break;
      }
      case 'adam': {
        const a = adam!;
        const m = stateIn('m');
        const v = stateIn('v');
        const m2 = b.add(b.mul(m, b.floats([a.beta1])), b.mul(grad, b.floats([1 - a.beta1])));
        const v2 = b.add(b.mul(v, b.floats([a.beta2])), b.mul(b.mul(grad, grad), b.floats([1 - a.beta2])));
        outs.push([m2, `${m}_new`], [v2, `${v}_new`]);
        delta = b.div(b.div(m2, a.c1), b.add(b.op('Sqrt', [b.div(v2, a.c2)]), b.floats([a.epsilon])));
        break;
      }
      default: {
        const never: never = config;
        throw new Error(`unknown optimizer ${JSON.stringify(never)}`);
      }
    }
    outs.push([b.sub(p.name, b.mul(delta, lr)), updated]);
    for (const [from, to] of outs) b.nodes.push({ name: `opt/${to}`, opType: 'Identity', input: [from], output: [to] });
    output.push(tensor(updated, p.dims));
    return { param: p.name, value: p.name, grad, updated, state };
  });

  const model: onnx.IModelProto = {
    irVersion: 8,
    opsetImport: [{ domain: '', version: 17 }],
    producerName: 'parallax',
    graph: { name: `optimizer_${config.kind}`, node: b.nodes, initializer: b.constants, input, output },
  };
  return { bytes: encodeModel(model), slots, lr, step };
}
