/**
 * Transformer blocks built in code for the tensor-parallel planner's tests: pre-norm blocks
 * of multi-head self-attention (Q/K/V projections with biases, heads by Reshape and
 * Transpose, scaled scores, Softmax, the output projection) and an MLP whose activation is
 * Gelu in the Erf form exporters write (x · 0.5 · (1 + erf(x / √2))). Also a model with
 * nothing to split. Built with onnx-proto like the demo model; weights are seeded.
 */
import { onnx } from 'onnx-proto';
import { seededValues } from './tiny-model';

/** Sizes of {@link transformerModelBytes}. */
export interface TransformerOptions {
  blocks?: number;
  seq?: number;
  hidden?: number;
  heads?: number;
  ffn?: number;
  /**
   * Build the heads Reshape's shape at run time, as the PyTorch exporter writes
   * `view(batch, seq, heads, d)` with the batch read from the block's (normalised) input:
   * Concat(Unsqueeze(Gather(Shape(ln1), 0)), [seq], [heads], [d]).
   */
  computedShapes?: boolean;
}

const FLOAT = onnx.TensorProto.DataType.FLOAT;
const INT64 = onnx.TensorProto.DataType.INT64;

export function valueInfo(name: string, dims: (number | string)[]): onnx.IValueInfoProto {
  return { name, type: { tensorType: { elemType: FLOAT, shape: { dim: dims.map((d) => (typeof d === 'number' ? { dimValue: d } : { dimParam: d })) } } } };
}

/** A builder that names tensors after their node and collects nodes and initializers. */
export class GraphBuilder {
  readonly node: onnx.INodeProto[] = [];
  readonly initializer: onnx.ITensorProto[] = [];
  private seed = 1;

  weight(name: string, dims: number[], scale = 0.2): string {
    const v = seededValues(dims.reduce((a, b) => a * b, 1), this.seed++).map((x) => x * scale);
    this.initializer.push({ name, dims, dataType: FLOAT, rawData: new Uint8Array(v.buffer, v.byteOffset, v.byteLength) });
    return name;
  }

  scalar(name: string, value: number): string {
    this.initializer.push({ name, dims: [], dataType: FLOAT, rawData: new Uint8Array(new Float32Array([value]).buffer) });
    return name;
  }

  /** A scalar int64 initializer. */
  int(name: string, value: number): string {
    this.initializer.push({ name, dims: [], dataType: INT64, rawData: new Uint8Array(new BigInt64Array([BigInt(value)]).buffer) });
    return name;
  }

  ints(name: string, values: number[]): string {
    this.initializer.push({ name, dims: [values.length], dataType: INT64, rawData: new Uint8Array(new BigInt64Array(values.map(BigInt)).buffer) });
    return name;
  }

  op(name: string, opType: string, input: string[], attribute: onnx.IAttributeProto[] = []): string {
    const out = `${name}_output_0`;
    this.node.push({ name, opType, input, output: [out], attribute });
    return out;
  }

  bytes(name: string, inputs: onnx.IValueInfoProto[], outputs: onnx.IValueInfoProto[]): Uint8Array {
    const last = this.node[this.node.length - 1];
    last.output = [outputs[0].name!];
    const model: onnx.IModelProto = {
      irVersion: 8,
      producerName: 'parallax-tests',
      opsetImport: [{ domain: '', version: 17 }],
      graph: { name, node: this.node, initializer: this.initializer, input: inputs, output: outputs },
    };
    return onnx.ModelProto.encode(onnx.ModelProto.create(model)).finish();
  }
}

export const ints = (name: string, v: number[]): onnx.IAttributeProto => ({ name, type: onnx.AttributeProto.AttributeType.INTS, ints: v });
export const int = (name: string, v: number): onnx.IAttributeProto => ({ name, type: onnx.AttributeProto.AttributeType.INT, i: v });

/**
 * Pre-norm transformer blocks on input `x` float32 `[batch, seq, hidden]` (batch symbolic),
 * output `y` of the same shape. Node names follow module scopes (`/blocks.0/attn/q/MatMul`).
 */
export function transformerModelBytes(opts: TransformerOptions = {}): Uint8Array {
  const { blocks = 1, seq = 8, hidden = 32, heads = 4, ffn = 64, computedShapes = false } = opts;
  const d = hidden / heads;
  const g = new GraphBuilder();
  const headsShape = g.ints('shape.heads', [0, seq, heads, d]);
  const mergedShape = g.ints('shape.merged', [0, seq, hidden]);
  const sqrtD = g.scalar('const.sqrt_d', Math.sqrt(d));
  const sqrt2 = g.scalar('const.sqrt2', Math.SQRT2);
  const one = g.scalar('const.one', 1);
  const pieces = computedShapes
    ? { zero: g.int('const.zero', 0), axes0: g.ints('const.axes0', [0]), seq: g.ints('const.seq', [seq]), heads: g.ints('const.heads', [heads]), d: g.ints('const.head_dim', [d]) }
    : null;
  const half = g.scalar('const.half', 0.5);
  let h = 'x';
  for (let b = 0; b < blocks; b++) {
    const s = `/blocks.${b}`;
    const p = `blocks.${b}`;
    const ln = (name: string, input: string): string =>
      g.op(`${s}/${name}/LayerNormalization`, 'LayerNormalization', [input, g.weight(`${p}.${name}.weight`, [hidden], 0.1), g.weight(`${p}.${name}.bias`, [hidden], 0.1)], [int('axis', -1)]);
    const linear = (scope: string, name: string, input: string, fanIn: number, fanOut: number): string => {
      const mm = g.op(`${s}/${scope}/${name}/MatMul`, 'MatMul', [input, g.weight(`${p}.${scope}.${name}.weight`, [fanIn, fanOut])]);
      return g.op(`${s}/${scope}/${name}/Add`, 'Add', [mm, g.weight(`${p}.${scope}.${name}.bias`, [fanOut], 0.05)]);
    };
    const shapeOf = (name: string, t: string): string => {
      if (!pieces) return headsShape;
      const batch = g.op(`${s}/attn/${name}/Gather`, 'Gather', [g.op(`${s}/attn/${name}/Shape`, 'Shape', [t]), pieces.zero], [int('axis', 0)]);
      const b1 = g.op(`${s}/attn/${name}/Unsqueeze`, 'Unsqueeze', [batch, pieces.axes0]);
      return g.op(`${s}/attn/${name}/Concat`, 'Concat', [b1, pieces.seq, pieces.heads, pieces.d], [int('axis', 0)]);
    };
    const toHeads = (name: string, t: string, perm: number[]): string =>
      g.op(`${s}/attn/${name}/Transpose`, 'Transpose', [g.op(`${s}/attn/${name}/Reshape`, 'Reshape', [t, shapeOf(name, a)])], [ints('perm', perm)]);

    const a = ln('ln1', h);
    const q = toHeads('q', linear('attn', 'q', a, hidden, hidden), [0, 2, 1, 3]);
    const k = toHeads('k', linear('attn', 'k', a, hidden, hidden), [0, 2, 3, 1]);
    const v = toHeads('v', linear('attn', 'v', a, hidden, hidden), [0, 2, 1, 3]);
    const scores = g.op(`${s}/attn/Div`, 'Div', [g.op(`${s}/attn/scores/MatMul`, 'MatMul', [q, k]), sqrtD]);
    const probs = g.op(`${s}/attn/Softmax`, 'Softmax', [scores], [int('axis', -1)]);
    const ctx = g.op(`${s}/attn/context/MatMul`, 'MatMul', [probs, v]);
    const merged = g.op(`${s}/attn/merge/Reshape`, 'Reshape', [g.op(`${s}/attn/merge/Transpose`, 'Transpose', [ctx], [ints('perm', [0, 2, 1, 3])]), mergedShape]);
    const h1 = g.op(`${s}/attn/Add`, 'Add', [h, linear('attn', 'o', merged, hidden, hidden)]);

    const m = ln('ln2', h1);
    const f1 = linear('mlp', 'fc1', m, hidden, ffn);
    const erf = g.op(`${s}/mlp/act/Erf`, 'Erf', [g.op(`${s}/mlp/act/Div`, 'Div', [f1, sqrt2])]);
    const gelu = g.op(`${s}/mlp/act/Mul_1`, 'Mul', [g.op(`${s}/mlp/act/Mul`, 'Mul', [f1, g.op(`${s}/mlp/act/Add`, 'Add', [erf, one])]), half]);
    h = g.op(`${s}/Add`, 'Add', [h1, linear('mlp', 'fc2', gelu, ffn, hidden)]);
  }
  return g.bytes('transformer', [valueInfo('x', ['batch', seq, hidden])], [valueInfo('y', ['batch', seq, hidden])]);
}

/**
 * A model with no weight matrix to split: y = LayerNorm(x) · W + x, where W is a graph input
 * (fed at run time, not an initializer).
 */
export function nothingToSplitModelBytes(hidden = 16): Uint8Array {
  const g = new GraphBuilder();
  const ln = g.op('/ln/LayerNormalization', 'LayerNormalization', ['x', g.weight('ln.weight', [hidden]), g.weight('ln.bias', [hidden])], [int('axis', -1)]);
  const mm = g.op('/proj/MatMul', 'MatMul', [ln, 'w']);
  g.op('/Add', 'Add', [mm, 'x']);
  return g.bytes('nothing_to_split', [valueInfo('x', ['batch', hidden]), valueInfo('w', [hidden, hidden])], [valueInfo('y', ['batch', hidden])]);
}

/**
 * A two-layer MLP written with Gemm nodes, as older exporters write `nn.Linear`: y =
 * Gemm(Relu(Gemm(x, W1, b1)), W2ᵀ, b2) with `transB=1` on the second (its weight stored
 * [out, in]), so a tensor-parallel split cuts W2 along its second axis and has a bias after a
 * row-parallel layer to add once. `residual` adds the input to the output.
 */
export function gemmMlpModelBytes(hidden = 16, ffn = 32, opts: { residual?: boolean } = {}): Uint8Array {
  const g = new GraphBuilder();
  const h = g.op('/fc1/Gemm', 'Gemm', ['x', g.weight('fc1.weight', [hidden, ffn]), g.weight('fc1.bias', [ffn], 0.05)]);
  const a = g.op('/act/Relu', 'Relu', [h]);
  const o = g.op('/fc2/Gemm', 'Gemm', [a, g.weight('fc2.weight', [hidden, ffn]), g.weight('fc2.bias', [hidden], 0.5)], [int('transB', 1)]);
  // With `residual`, y = x + MLP(x): the row-parallel Gemm's output is no longer the graph's.
  if (opts.residual) g.op('/Add', 'Add', ['x', o]);
  return g.bytes('gemm_mlp', [valueInfo('x', ['batch', hidden])], [valueInfo('y', ['batch', hidden])]);
}
