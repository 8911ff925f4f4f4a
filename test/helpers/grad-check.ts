/**
 * Finite-difference checks of generated gradient models.
 *
 * A case is a small graph whose output `y` is turned into a scalar loss
 * `ReduceSum(y · R)` with fixed random weights R (so every output element matters with a
 * different weight). The gradient model from {@link buildGradientModel} runs in a real
 * onnxruntime-node session; the reference is a central difference of the same loss, run in
 * a second session of the forward graph in which the parameters are graph inputs, so each
 * perturbation is one `run` rather than one model build.
 */
import assert from 'node:assert/strict';
import { onnx } from 'onnx-proto';
import * as ort from 'onnxruntime-node';
import { encodeModel } from '../../src/runtime/onnx/model';
import { buildGradientModel, type GradientModel } from '../../src/runtime/train/autodiff';
import { seededValues } from './tiny-model';

/** A float tensor of a case: its dims and, optionally, its values (seeded random otherwise). */
export interface TensorSpec {
  dims: number[];
  values?: number[];
  /** Multiplies the seeded random values (default 1). */
  scale?: number;
  /** Added to the seeded random values (default 0). */
  offset?: number;
}

/** One gradient check. */
export interface GradCase {
  nodes: onnx.INodeProto[];
  /** Trainable parameters (initializers). */
  params?: Record<string, TensorSpec>;
  /** Graph inputs differentiated as well. */
  inputs?: Record<string, TensorSpec>;
  /** Non-trainable initializers (axes, shapes, indices, frozen weights). */
  constants?: onnx.ITensorProto[];
  /** Names of float initializers to freeze. */
  freeze?: string[];
  /** Tensor turned into the loss (default `y`). */
  output?: string;
  dtype: 'float32' | 'float64';
  opset?: number;
  /** Allowed |analytic − numeric| relative to max(1, the largest numeric gradient of the tensor). */
  tol: number;
  /** Finite-difference step (default 1e-6 for float64, 1e-2 for float32). */
  eps?: number;
  /** Elements checked per tensor at most (a seeded sample beyond; default 40). */
  maxElements?: number;
  seed?: number;
  /**
   * Piecewise-smooth models (Relu, MaxPool): nodes added to the finite-difference model only,
   * whose integer or boolean `outputs` identify the branch taken (Relu masks, MaxPool argmax).
   * An element whose ± step changes them straddles a kink, where a finite difference means
   * nothing; it is skipped and counted, and at most a quarter of the elements may be.
   */
  branches?: { nodes: onnx.INodeProto[]; outputs: string[] };
}

/** What a check measured. */
export interface GradCheckResult {
  /** Largest |analytic − numeric| / max(1, max |numeric|) over the checked elements. */
  worst: number;
  /** Elements compared. */
  checked: number;
  /** Elements skipped because a step crossed a kink (see {@link GradCase.branches}). */
  skipped: number;
  gradient: GradientModel;
}

const DT = { float32: onnx.TensorProto.DataType.FLOAT, float64: onnx.TensorProto.DataType.DOUBLE } as const;

function values(spec: TensorSpec, seed: number): number[] {
  const n = spec.dims.reduce((a, b) => a * b, 1);
  if (spec.values) return spec.values;
  return Array.from(seededValues(n, seed), (v) => v * (spec.scale ?? 1) + (spec.offset ?? 0));
}

function tensorProto(name: string, dims: number[], data: number[], dtype: 'float32' | 'float64'): onnx.ITensorProto {
  const arr = dtype === 'float64' ? Float64Array.from(data) : Float32Array.from(data);
  return { name, dims, dataType: DT[dtype], rawData: new Uint8Array(arr.buffer) };
}

function info(name: string, dims: number[], dtype: 'float32' | 'float64'): onnx.IValueInfoProto {
  return { name, type: { tensorType: { elemType: DT[dtype], shape: { dim: dims.map((d) => ({ dimValue: d })) } } } };
}

function ortTensor(dtype: 'float32' | 'float64', data: number[], dims: number[]): ort.Tensor {
  return new ort.Tensor(dtype, dtype === 'float64' ? Float64Array.from(data) : Float32Array.from(data), dims);
}

const sessionOptions: ort.InferenceSession.SessionOptions = { intraOpNumThreads: 1, interOpNumThreads: 1, graphOptimizationLevel: 'basic' };

/** Builds the case's model with the given tensors as initializers and the rest as graph inputs. */
function caseModel(c: GradCase, tensors: Map<string, { dims: number[]; data: number[] }>, asInitializer: (name: string) => boolean, extraNodes: onnx.INodeProto[], outputs: onnx.IValueInfoProto[]): Uint8Array {
  const initializer: onnx.ITensorProto[] = [...(c.constants ?? [])];
  const input: onnx.IValueInfoProto[] = [];
  for (const [name, t] of tensors) {
    if (asInitializer(name)) initializer.push(tensorProto(name, t.dims, t.data, c.dtype));
    else input.push(info(name, t.dims, c.dtype));
  }
  return encodeModel({
    irVersion: 8,
    opsetImport: [{ domain: '', version: c.opset ?? 17 }],
    producerName: 'parallax-tests',
    graph: { name: 'case', node: [...c.nodes, ...extraNodes], initializer, input, output: outputs },
  });
}

/**
 * Checks every parameter's and input's gradient against central finite differences and
 * asserts the worst error is within `c.tol`. Returns what was measured.
 */
export async function checkGradients(c: GradCase): Promise<GradCheckResult> {
  const seed = c.seed ?? 3;
  const y = c.output ?? 'y';
  const tensors = new Map<string, { dims: number[]; data: number[] }>();
  let k = seed;
  for (const [name, spec] of [...Object.entries(c.params ?? {}), ...Object.entries(c.inputs ?? {})]) {
    tensors.set(name, { dims: spec.dims, data: values(spec, (k += 17)) });
  }
  const paramNames = new Set(Object.keys(c.params ?? {}));
  const inputNames = Object.keys(c.inputs ?? {});
  const feedsOf = (names: Iterable<string>): Record<string, ort.Tensor> =>
    Object.fromEntries([...names].map((n) => [n, ortTensor(c.dtype, tensors.get(n)!.data, tensors.get(n)!.dims)]));

  // The output's shape, from a forward run.
  const fwd = await ort.InferenceSession.create(caseModel(c, tensors, (n) => paramNames.has(n), [], [{ name: y }]), sessionOptions);
  const yDims = [...(await fwd.run(feedsOf(inputNames)))[y]!.dims];
  await fwd.release();

  const rValues = Array.from(seededValues(yDims.reduce((a, b) => a * b, 1), seed + 101), Number);
  const lossNodes: onnx.INodeProto[] = [
    { name: 'loss/weight', opType: 'Mul', input: [y, 'loss_R'], output: ['loss_weighted'] },
    { name: 'loss/sum', opType: 'ReduceSum', input: ['loss_weighted'], output: ['loss'], attribute: [{ name: 'keepdims', type: onnx.AttributeProto.AttributeType.INT, i: 0 }] },
  ];
  const withR = new Map(tensors);
  withR.set('loss_R', { dims: yDims, data: rValues });
  const lossOut = [{ name: 'loss' }];

  const forwardBytes = caseModel(c, withR, (n) => paramNames.has(n) || n === 'loss_R', lossNodes, lossOut);
  const gradient = buildGradientModel(forwardBytes, { target: { kind: 'loss', tensor: 'loss' }, inputs: inputNames, freeze: ['loss_R', ...(c.freeze ?? [])] });
  const gradGraph = gradient.model.graph!;
  for (const n of gradGraph.node ?? []) assert.ok(!n.domain, `generated node ${n.name} uses domain ${n.domain}; only standard operators may be used`);
  const read = new Set([...(gradGraph.node ?? []).flatMap((n) => n.input ?? []), ...(gradGraph.output ?? []).map((o) => o.name)]);
  for (const t of gradGraph.initializer ?? []) if (t.name?.startsWith('grad/')) assert.ok(read.has(t.name), `generated constant ${t.name} is never read`);
  const gradSession = await ort.InferenceSession.create(gradient.bytes, sessionOptions);
  const result = await gradSession.run(feedsOf(inputNames));
  await gradSession.release();
  const analytic = new Map<string, number[]>();
  for (const g of [...gradient.parameters, ...gradient.inputGradients]) analytic.set(g.of, Array.from(result[g.output]!.data as Float32Array | Float64Array, Number));

  const branchOutputs = c.branches?.outputs ?? [];
  const fdModel = caseModel(c, withR, (n) => n === 'loss_R', [...(c.branches?.nodes ?? []), ...lossNodes], [...lossOut, ...branchOutputs.map((name) => ({ name }))]);
  const fdSession = await ort.InferenceSession.create(fdModel, sessionOptions);
  const frozen = new Set(c.freeze ?? []);
  const eps = c.eps ?? (c.dtype === 'float64' ? 1e-6 : 1e-2);
  const maxElements = c.maxElements ?? 40;
  let worst = 0;
  let checked = 0;
  let skipped = 0;
  try {
    const evaluate = async (): Promise<{ loss: number; branch: string }> => {
      const out = await fdSession.run(feedsOf(tensors.keys()));
      return { loss: Number(out['loss']!.data[0]), branch: branchOutputs.map((b) => Array.from(out[b]!.data as ArrayLike<unknown>, String).join(',')).join('|') };
    };
    const base = (await evaluate()).branch;
    for (const [name, t] of tensors) {
      if (frozen.has(name)) continue;
      const ana = analytic.get(name);
      assert.ok(ana, `no gradient output for ${name}`);
      assert.equal(ana.length, t.data.length, `gradient of ${name} has ${ana.length} elements, the tensor ${t.data.length}`);
      const picks = t.data.length <= maxElements ? t.data.map((_, i) => i) : samples(t.data.length, maxElements, seed);
      const numeric: Array<[number, number]> = [];
      for (const i of picks) {
        const v = t.data[i]!;
        t.data[i] = v + eps;
        const up = await evaluate();
        t.data[i] = v - eps;
        const down = await evaluate();
        t.data[i] = v;
        if (up.branch !== base || down.branch !== base) skipped++;
        else numeric.push([i, (up.loss - down.loss) / (2 * eps)]);
      }
      const scale = Math.max(1, ...numeric.map(([, f]) => Math.abs(f)));
      for (const [i, f] of numeric) {
        const err = Math.abs(ana[i]! - f) / scale;
        checked++;
        worst = Math.max(worst, err);
        assert.ok(err <= c.tol, `d loss / d ${name}[${i}]: analytic ${ana[i]}, numeric ${f} (error ${err.toExponential(2)} > ${c.tol})`);
      }
    }
  } finally {
    await fdSession.release();
  }
  assert.ok(checked > 0, 'no gradient element was checked');
  assert.ok(skipped <= (checked + skipped) / 4, `${skipped} of ${checked + skipped} steps crossed a kink; choose values further from the kinks`);
  return { worst, checked, skipped, gradient };
}

function samples(n: number, count: number, seed: number): number[] {
  const r = seededValues(count, seed + 7);
  return [...new Set(Array.from(r, (v) => Math.floor(((v + 1) / 2) * n)))];
}

/** An int64 initializer (axes, shapes, indices). */
export function int64s(name: string, data: number[], dims: number[] = [data.length]): onnx.ITensorProto {
  return { name, dims, dataType: onnx.TensorProto.DataType.INT64, rawData: new Uint8Array(BigInt64Array.from(data.map(BigInt)).buffer) };
}

/** A node with attributes given as a plain object (integers as INT, other numbers as FLOAT, arrays of integers as INTS, strings as STRING). */
export function node(opType: string, input: string[], output: string[], attrs: Record<string, number | number[] | string | { f: number }> = {}, name = opType): onnx.INodeProto {
  const T = onnx.AttributeProto.AttributeType;
  const attribute: onnx.IAttributeProto[] = Object.entries(attrs).map(([key, v]) => {
    if (typeof v === 'string') return { name: key, type: T.STRING, s: new TextEncoder().encode(v) };
    if (Array.isArray(v)) return { name: key, type: T.INTS, ints: v };
    if (typeof v === 'object') return { name: key, type: T.FLOAT, f: v.f };
    return Number.isInteger(v) ? { name: key, type: T.INT, i: v } : { name: key, type: T.FLOAT, f: v };
  });
  return { name, opType, input, output, attribute };
}
