/**
 * Emitting ONNX nodes and constants into a graph under construction.
 *
 * The gradient rules ({@link ./grad-ops}) describe each backward computation as a few calls
 * on a {@link GraphBuilder}: `op('Mul', [a, b])` appends a node and returns its output name,
 * `floats([0.5])` and `ints([0, 1])` add constants as initializers (deduplicated by value),
 * and the helpers below hide the differences between opsets (ReduceSum takes its axes as an
 * input from opset 13, ReduceMean only from opset 18). Every name the builder makes starts
 * with a prefix the caller chooses, so generated tensors cannot collide with the model's.
 */
import { onnx } from 'onnx-proto';

/** Attribute values a rule can set, by the ONNX attribute kind they need. */
export type Attr =
  | { name: string; i: number }
  | { name: string; f: number }
  | { name: string; ints: number[] }
  | { name: string; floats: number[] }
  | { name: string; s: string }
  | { name: string; t: onnx.ITensorProto };

const A = onnx.AttributeProto.AttributeType;

/** Element types the gradient graph computes in. */
export type FloatType = 'float32' | 'float64';

const DT_FLOAT = onnx.TensorProto.DataType.FLOAT;
const DT_DOUBLE = onnx.TensorProto.DataType.DOUBLE;
const DT_INT64 = onnx.TensorProto.DataType.INT64;

function toAttribute(a: Attr): onnx.IAttributeProto {
  if ('i' in a) return { name: a.name, type: A.INT, i: a.i };
  if ('f' in a) return { name: a.name, type: A.FLOAT, f: a.f };
  if ('ints' in a) return { name: a.name, type: A.INTS, ints: a.ints };
  if ('floats' in a) return { name: a.name, type: A.FLOATS, floats: a.floats };
  if ('s' in a) return { name: a.name, type: A.STRING, s: new TextEncoder().encode(a.s) };
  return { name: a.name, type: A.TENSOR, t: a.t };
}

/** Appends nodes and constants to a graph; see the module comment. */
export class GraphBuilder {
  /** Nodes appended so far, in order. */
  readonly nodes: onnx.INodeProto[] = [];
  /** Constants added so far (become initializers of the output graph). */
  readonly constants: onnx.ITensorProto[] = [];
  private readonly constantByKey = new Map<string, string>();
  private readonly shapes = new Map<string, string>();
  private counter = 0;
  /** Scope of the names made next (the forward node being differentiated). */
  scope = '';

  constructor(
    /** Prefix of every generated name (a path segment: names are `<prefix>/<scope>/<op>_<n>`). */
    readonly prefix: string,
    /** Opset of the default domain. */
    readonly opset: number,
    /** Element type of gradients and float constants. */
    readonly floatType: FloatType,
  ) {}

  /** ONNX data type code of {@link floatType}. */
  get floatCode(): number {
    return this.floatType === 'float64' ? DT_DOUBLE : DT_FLOAT;
  }

  /** A fresh tensor name. */
  fresh(hint: string): string {
    return `${this.prefix}${this.scope}/${hint}_${this.counter++}`;
  }

  /** Appends a node with `outputs` fresh outputs and returns their names. */
  opN(opType: string, inputs: string[], outputs: number, attrs: Attr[] = []): string[] {
    const names = Array.from({ length: outputs }, () => this.fresh(opType));
    this.nodes.push({
      name: `${this.prefix}${this.scope}/${opType}_${this.counter++}`,
      opType,
      input: inputs,
      output: names,
      attribute: attrs.map(toAttribute),
    });
    return names;
  }

  /** Appends a single-output node and returns its output name. */
  op(opType: string, inputs: string[], attrs: Attr[] = []): string {
    return this.opN(opType, inputs, 1, attrs)[0]!;
  }

  /** A float constant of {@link floatType} (a scalar unless `dims` is given). */
  floats(values: number[], dims: number[] = values.length === 1 ? [] : [values.length]): string {
    return this.constant(`f:${dims.join('x')}:${values.join(',')}`, () => this.floatTensor('', values, dims));
  }

  /** A 1-D int64 constant (axes, shapes, starts). */
  ints(values: number[]): string {
    return this.constant(`i:${values.join(',')}`, () => ({
      name: '',
      dims: [values.length],
      dataType: DT_INT64,
      rawData: new Uint8Array(BigInt64Array.from(values.map((v) => BigInt(v))).buffer),
    }));
  }

  /** A scalar int64 constant. */
  int(value: number): string {
    return this.constant(`s:${value}`, () => ({ name: '', dims: [], dataType: DT_INT64, rawData: new Uint8Array(BigInt64Array.of(BigInt(value)).buffer) }));
  }

  /** A tensor proto of {@link floatType}. */
  floatTensor(name: string, values: number[], dims: number[]): onnx.ITensorProto {
    const data = this.floatType === 'float64' ? Float64Array.from(values) : Float32Array.from(values);
    return { name, dims, dataType: this.floatCode, rawData: new Uint8Array(data.buffer) };
  }

  private constant(key: string, make: () => onnx.ITensorProto): string {
    const known = this.constantByKey.get(key);
    if (known) return known;
    const name = `${this.prefix}/const_${this.constantByKey.size}`;
    this.constants.push({ ...make(), name });
    this.constantByKey.set(key, name);
    return name;
  }

  /** Shape(x), emitted once per tensor. */
  shape(x: string): string {
    let s = this.shapes.get(x);
    if (!s) {
      const saved = this.scope;
      this.scope = '/shape';
      s = this.op('Shape', [x]);
      this.scope = saved;
      this.shapes.set(x, s);
    }
    return s;
  }

  /** Number of elements of `x` as a scalar of {@link floatType}. */
  sizeAsFloat(x: string): string {
    return this.op('Cast', [this.op('Size', [x])], [{ name: 'to', i: this.floatCode }]);
  }

  /** Zeros shaped like `x`. */
  zerosLike(x: string): string {
    return this.op('ConstantOfShape', [this.shape(x)], [{ name: 'value', t: this.floatTensor('', [0], [1]) }]);
  }

  /** ReduceSum/ReduceMean over `axes` (non-empty), with axes as attribute or input as the opset wants. */
  reduce(op: 'ReduceSum' | 'ReduceMean', x: string, axes: number[], keepdims: boolean): string {
    const axesAsInput = op === 'ReduceSum' ? this.opset >= 13 : this.opset >= 18;
    const keep = { name: 'keepdims', i: keepdims ? 1 : 0 };
    return axesAsInput ? this.op(op, [x, this.ints(axes)], [keep]) : this.op(op, [x], [keep, { name: 'axes', ints: axes }]);
  }

  /** Unsqueeze (axes as input from opset 13). */
  unsqueeze(x: string, axes: number[]): string {
    return this.opset >= 13 ? this.op('Unsqueeze', [x, this.ints(axes)]) : this.op('Unsqueeze', [x], [{ name: 'axes', ints: axes }]);
  }

  /** Transpose with an explicit permutation. */
  transpose(x: string, perm: number[]): string {
    return this.op('Transpose', [x], [{ name: 'perm', ints: perm }]);
  }

  /** Reshape `x` to the runtime shape of `like`. */
  reshapeLike(x: string, like: string): string {
    return this.op('Reshape', [x, this.shape(like)]);
  }

  /** x · y, x − y, x / y, −x, with broadcasting. */
  mul(x: string, y: string): string {
    return this.op('Mul', [x, y]);
  }
  sub(x: string, y: string): string {
    return this.op('Sub', [x, y]);
  }
  div(x: string, y: string): string {
    return this.op('Div', [x, y]);
  }
  add(x: string, y: string): string {
    return this.op('Add', [x, y]);
  }
  neg(x: string): string {
    return this.op('Neg', [x]);
  }
}
