/**
 * Reading and writing the values of floating-point initializers: the trainable parameters a
 * training step feeds in, updates and keeps resident between steps.
 */
import { onnx } from 'onnx-proto';
import { UserError } from '../../common/errors';
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
