/**
 * Reading and writing the values of floating-point initializers: the trainable parameters a
 * training step feeds in, updates and keeps resident between steps.
 */
import { onnx } from 'onnx-proto';
import { UserError } from '../../common/errors';
import { decodeModelProto } from '../onnx/model';
import type { FloatType } from './graph-builder';

/** A parameter's values. */
export interface ParameterValue {
  name: string;
  dims: number[];
  dtype: FloatType;
  data: Float32Array | Float64Array;
}

const FLOAT = onnx.TensorProto.DataType.FLOAT;
const DOUBLE = onnx.TensorProto.DataType.DOUBLE;

function dimsOf(t: onnx.ITensorProto): number[] {
  return (t.dims ?? []).map((d) => Number(d));
}

/**
 * The values of a float32/float64 initializer (raw_data, float_data or double_data).
 * @throws UserError for external data, which this reader does not follow.
 */
export function readParameter(t: onnx.ITensorProto): ParameterValue {
  const name = t.name ?? '';
  const dtype: FloatType | null = t.dataType === FLOAT ? 'float32' : t.dataType === DOUBLE ? 'float64' : null;
  if (!dtype) throw new UserError(`initializer "${name}" is not float32 or float64; only those are trained`);
  if (t.dataLocation === onnx.TensorProto.DataLocation.EXTERNAL) {
    throw new UserError(`initializer "${name}" is stored as external data; save the model with its weights inside to train it`);
  }
  const dims = dimsOf(t);
  const n = dims.reduce((a, b) => a * b, 1);
  const Ctor = dtype === 'float64' ? Float64Array : Float32Array;
  let data: Float32Array | Float64Array;
  if (t.rawData && t.rawData.length > 0) {
    // Copy into an aligned buffer: raw_data may sit at any offset of the decoded message.
    data = new Ctor(new Uint8Array(t.rawData).buffer.slice(0, n * Ctor.BYTES_PER_ELEMENT));
  } else {
    data = Ctor.from(dtype === 'float64' ? (t.doubleData ?? []) : (t.floatData ?? []));
  }
  if (data.length !== n) throw new UserError(`initializer "${name}" holds ${data.length} values for shape [${dims.join(', ')}]; the model is damaged`);
  return { name, dims, dtype, data };
}

/** An initializer proto holding `value` as raw data. */
export function parameterTensor(value: ParameterValue): onnx.ITensorProto {
  const bytes = new Uint8Array(value.data.buffer, value.data.byteOffset, value.data.byteLength);
  return { name: value.name, dims: value.dims, dataType: value.dtype === 'float64' ? DOUBLE : FLOAT, rawData: new Uint8Array(bytes) };
}

/**
 * The values of the named parameters of a model: initializers, or tensors of Constant nodes
 * (where exporters keep weights, and which `buildGradientModel` trains as parameters).
 * @throws UserError naming a parameter the model does not hold.
 */
export function readParameterValues(bytes: Uint8Array, names: readonly string[], modelName = 'model'): Map<string, ParameterValue> {
  const graph = decodeModelProto(bytes, modelName).graph;
  const wanted = new Set(names);
  const found = new Map<string, ParameterValue>();
  for (const t of graph?.initializer ?? []) if (wanted.has(t.name ?? '')) found.set(t.name!, readParameter(t));
  for (const n of graph?.node ?? []) {
    const out = n.output?.[0] ?? '';
    const t = n.opType === 'Constant' && !n.domain && wanted.has(out) && !found.has(out) ? n.attribute?.find((a) => a.name === 'value')?.t : undefined;
    if (t) found.set(out, readParameter({ ...t, name: out }));
  }
  const missing = names.filter((n) => !found.has(n));
  if (missing.length > 0) throw new UserError(`${modelName}: no initializer or Constant tensor named ${missing.map((m) => `"${m}"`).join(', ')}`);
  return new Map(names.map((n) => [n, found.get(n)!]));
}
