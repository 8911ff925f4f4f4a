/**
 * Tiny ONNX models built in code for tests, so that no test depends on a downloaded file to
 * exercise a real ONNX Runtime session. Built with onnx-proto's static protobuf code and
 * written to os.tmpdir().
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { onnx } from 'onnx-proto';

/** What {@link writeTinyMatMulModel} built. */
export interface TinyModel {
  /** Path of the .onnx file (in a fresh folder under os.tmpdir()). */
  path: string;
  /** Removes the model's temp folder. */
  dispose(): void;
  /** Input name (`x`, float32 `[batch, k]`; batch is a free dimension). */
  input: string;
  /** Output name (`y`, float32 `[batch, n]`). */
  output: string;
  /** Inner dimension. */
  k: number;
  /** Output width. */
  n: number;
  /** Weight `[k, n]`, row-major, as stored in the model. */
  weight: Float32Array;
  /** Bias `[n]`. */
  bias: Float32Array;
  /** Node names in graph order: `matmul`, `add` (and `relu` when asked for). */
  nodeNames: string[];
}

/** Options for {@link writeTinyMatMulModel}. */
export interface TinyModelOptions {
  k?: number;
  n?: number;
  /** Appends a Relu node, for tests that want three nodes. */
  relu?: boolean;
}

/** Deterministic pseudo-random values in [-1, 1), so runs are reproducible. */
export function seededValues(count: number, seed = 1): Float32Array {
  const out = new Float32Array(count);
  let s = seed >>> 0;
  for (let i = 0; i < count; i++) {
    // xorshift32: cheap and reproducible; quality does not matter here.
    s ^= s << 13;
    s >>>= 0;
    s ^= s >>> 17;
    s ^= s << 5;
    s >>>= 0;
    out[i] = (s / 0x100000000) * 2 - 1;
  }
  return out;
}

function floatTensor(name: string, dims: number[], values: Float32Array): onnx.ITensorProto {
  return {
    name,
    dims,
    dataType: onnx.TensorProto.DataType.FLOAT,
    // raw_data is little-endian IEEE floats, which is how a Float32Array is laid out on
    // every platform Node runs on.
    rawData: new Uint8Array(values.buffer, values.byteOffset, values.byteLength),
  };
}

function valueInfo(name: string, dims: (number | string)[]): onnx.IValueInfoProto {
  return {
    name,
    type: {
      tensorType: {
        elemType: onnx.TensorProto.DataType.FLOAT,
        shape: { dim: dims.map((d) => (typeof d === 'number' ? { dimValue: d } : { dimParam: d })) },
      },
    },
  };
}

/** Encodes the model y = x·W + b (optionally followed by Relu). */
export function tinyMatMulModelBytes(opts: TinyModelOptions = {}): { bytes: Uint8Array; model: Omit<TinyModel, 'path' | 'dispose'> } {
  const k = opts.k ?? 16;
  const n = opts.n ?? 8;
  const weight = seededValues(k * n, 7);
  const bias = seededValues(n, 11);
  const nodes: onnx.INodeProto[] = [
    { name: 'matmul', opType: 'MatMul', input: ['x', 'W'], output: ['xw'] },
    { name: 'add', opType: 'Add', input: ['xw', 'b'], output: [opts.relu ? 'pre' : 'y'] },
  ];
  if (opts.relu) nodes.push({ name: 'relu', opType: 'Relu', input: ['pre'], output: ['y'] });
  const model: onnx.IModelProto = {
    irVersion: 8,
    producerName: 'parallax-tests',
    opsetImport: [{ domain: '', version: 17 }],
    graph: {
      name: 'tiny',
      node: nodes,
      initializer: [floatTensor('W', [k, n], weight), floatTensor('b', [n], bias)],
      input: [valueInfo('x', ['batch', k])],
      output: [valueInfo('y', ['batch', n])],
    },
  };
  const bytes = onnx.ModelProto.encode(onnx.ModelProto.create(model)).finish();
  return {
    bytes,
    model: { input: 'x', output: 'y', k, n, weight, bias, nodeNames: nodes.map((x) => x.name!) },
  };
}

/** Writes the tiny MatMul(+Add(+Relu)) model to a fresh temp folder and describes it. */
export function writeTinyMatMulModel(opts: TinyModelOptions = {}): TinyModel {
  const { bytes, model } = tinyMatMulModelBytes(opts);
  const dir = mkdtempSync(join(tmpdir(), 'parallax-tiny-'));
  const path = join(dir, 'tiny-matmul.onnx');
  writeFileSync(path, bytes);
  return { path, dispose: () => rmSync(dir, { recursive: true, force: true }), ...model };
}

/** Reference result of the tiny model computed in plain JS (float64 accumulation). */
export function tinyMatMulReference(model: Pick<TinyModel, 'k' | 'n' | 'weight' | 'bias'>, x: Float32Array, relu = false): Float32Array {
  const rows = x.length / model.k;
  const y = new Float32Array(rows * model.n);
  for (let r = 0; r < rows; r++) {
    for (let j = 0; j < model.n; j++) {
      let acc = model.bias[j];
      for (let i = 0; i < model.k; i++) acc += x[r * model.k + i] * model.weight[i * model.n + j];
      y[r * model.n + j] = relu ? Math.max(0, acc) : acc;
    }
  }
  return y;
}
