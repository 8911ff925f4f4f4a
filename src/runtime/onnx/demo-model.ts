/**
 * The bundled demo model: a stack of pre-norm transformer MLP blocks, built in code so that
 * the extension ships no model binary and every machine builds the same bytes from a seed.
 *
 * It is what `parallax profile demo` runs, so it has to be worth parallelising: a step must
 * take long enough on one core (50–150 ms for a batch of 64 on one intra-op thread) that
 * communication and scheduling overheads are visible next to it rather than dominant. At
 * hidden 256 / ffn 1024 a batch of 64 is 1.6 GFLOP and took only ~17 ms on the project's
 * 2-core EPYC machine (ORT's MLAS kernels reach ~90 GFLOP/s there), so the defaults are
 * hidden 512 / ffn 2048: 6.4 GFLOP, ~66 ms measured (median of 15), 50 M parameters
 * (200 MB). Its 168 nodes in one chain give the pipeline partitioner something to cut. Node names follow the
 * TorchScript exporter's module scopes (`/layers.3/mlp/fc1/MatMul`) as if it had been
 * exported from
 *
 * ```python
 * class Block(nn.Module):            # self.ln, self.mlp = MLP(...)
 * class MLP(nn.Module):              # self.fc1, self.act = nn.ReLU(), self.fc2
 * class DemoMLP(nn.Module):          # self.layers = nn.ModuleList([Block() ...])
 * ```
 * so that features which map scopes back to Python definitions can be tried on it.
 */
import { existsSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { homedir } from 'node:os';
import { join } from 'node:path';
import type { onnx } from 'onnx-proto';
import { encodeModel, parseModel, saveModel } from './model';
import { mulberry32 } from './random';

/** Shape and seed of the demo model. */
export interface DemoModelOptions {
  /** Number of MLP blocks (default 24). */
  layers?: number;
  /** Width of the residual stream (default 512). */
  hidden?: number;
  /** Width of each block's inner layer (default 2048). */
  ffn?: number;
  /** Seed for the weights (default 1). */
  seed?: number;
}

/** Defaults of {@link DemoModelOptions}. */
export const DEMO_DEFAULTS = { layers: 24, hidden: 512, ffn: 2048, seed: 1 } as const;

/** Nodes per block: LayerNormalization, MatMul, Add, Relu, MatMul, Add, residual Add. */
export const DEMO_NODES_PER_LAYER = 7;

const FLOAT = 1; // TensorProto.DataType.FLOAT
const ATTR_FLOAT = 1;
const ATTR_INT = 2;
const METADATA_KEY = 'parallax.demo';

function resolveOptions(opts: DemoModelOptions): Required<DemoModelOptions> {
  const o = { ...DEMO_DEFAULTS, ...stripUndefined(opts) };
  for (const k of ['layers', 'hidden', 'ffn'] as const) {
    if (!Number.isInteger(o[k]) || o[k] < 1) throw new RangeError(`demo model: ${k} must be a positive integer, got ${o[k]}`);
  }
  if (!Number.isInteger(o.seed)) throw new RangeError(`demo model: seed must be an integer, got ${o.seed}`);
  return o;
}

function stripUndefined(o: DemoModelOptions): DemoModelOptions {
  return Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined));
}

/**
 * Builds the demo model's ONNX bytes (opset 17, IR version 8). Input `x` and output `y` are
 * float32 `[batch, hidden]` with `batch` symbolic. The same options give the same bytes.
 */
export function buildDemoModel(opts: DemoModelOptions = {}): Uint8Array {
  const { layers, hidden, ffn, seed } = resolveOptions(opts);
  const rand = mulberry32(seed);
  const initializer: onnx.ITensorProto[] = [];
  const node: onnx.INodeProto[] = [];

  const tensor = (name: string, dims: number[], fill: (i: number) => number): string => {
    const n = dims.reduce((a, b) => a * b, 1);
    const data = new Float32Array(n);
    for (let i = 0; i < n; i++) data[i] = fill(i);
    // raw_data is little-endian; typed arrays use the host's order, which is little-endian
    // on every platform onnxruntime-node ships for (x64, arm64).
    initializer.push({ name, dims, dataType: FLOAT, rawData: new Uint8Array(data.buffer) });
    return name;
  };
  const uniform = (limit: number) => () => (rand() * 2 - 1) * limit;
  // Xavier/Glorot uniform keeps the variance of each MatMul's output near its input's, so the
  // residual stream grows by a bounded amount per block and stays finite through 24 blocks.
  const xavier = (fanIn: number, fanOut: number) => uniform(Math.sqrt(6 / (fanIn + fanOut)));

  let h = 'x';
  for (let i = 0; i < layers; i++) {
    const scope = `/layers.${i}`;
    const param = `layers.${i}`;
    const out = (op: string, sub: string): string => `${scope}${sub}/${op}_output_0`;
    const lnW = tensor(`${param}.ln.weight`, [hidden], () => 1 + (rand() - 0.5) * 0.1);
    const lnB = tensor(`${param}.ln.bias`, [hidden], uniform(0.05));
    const w1 = tensor(`${param}.mlp.fc1.weight`, [hidden, ffn], xavier(hidden, ffn));
    const b1 = tensor(`${param}.mlp.fc1.bias`, [ffn], uniform(0.05));
    const w2 = tensor(`${param}.mlp.fc2.weight`, [ffn, hidden], xavier(ffn, hidden));
    const b2 = tensor(`${param}.mlp.fc2.bias`, [hidden], uniform(0.05));

    const ln = out('LayerNormalization', '/ln');
    node.push({
      name: `${scope}/ln/LayerNormalization`,
      opType: 'LayerNormalization',
      input: [h, lnW, lnB],
      output: [ln],
      attribute: [
        { name: 'axis', type: ATTR_INT, i: -1 },
        { name: 'epsilon', type: ATTR_FLOAT, f: 1e-5 },
      ],
    });
    const mm1 = out('MatMul', '/mlp/fc1');
    node.push({ name: `${scope}/mlp/fc1/MatMul`, opType: 'MatMul', input: [ln, w1], output: [mm1] });
    const add1 = out('Add', '/mlp/fc1');
    node.push({ name: `${scope}/mlp/fc1/Add`, opType: 'Add', input: [mm1, b1], output: [add1] });
    const act = out('Relu', '/mlp/act');
    node.push({ name: `${scope}/mlp/act/Relu`, opType: 'Relu', input: [add1], output: [act] });
    const mm2 = out('MatMul', '/mlp/fc2');
    node.push({ name: `${scope}/mlp/fc2/MatMul`, opType: 'MatMul', input: [act, w2], output: [mm2] });
    const add2 = out('Add', '/mlp/fc2');
    node.push({ name: `${scope}/mlp/fc2/Add`, opType: 'Add', input: [mm2, b2], output: [add2] });
    const res = i === layers - 1 ? 'y' : `${scope}/Add_output_0`;
    node.push({ name: `${scope}/Add`, opType: 'Add', input: [h, add2], output: [res] });
    h = res;
  }

  const io = (name: string): onnx.IValueInfoProto => ({
    name,
    type: { tensorType: { elemType: FLOAT, shape: { dim: [{ dimParam: 'batch' }, { dimValue: hidden }] } } },
  });
  const model: onnx.IModelProto = {
    irVersion: 8,
    opsetImport: [{ domain: '', version: 17 }],
    producerName: 'parallax',
    producerVersion: 'demo-1',
    docString: `Parallax demo model: ${layers} pre-norm MLP blocks, hidden ${hidden}, ffn ${ffn}, seed ${seed}.`,
    metadataProps: [{ key: METADATA_KEY, value: metadataValue({ layers, hidden, ffn, seed }) }],
    graph: { name: 'demo_mlp', node, initializer, input: [io('x')], output: [io('y')] },
  };
  return encodeModel(model);
}

function metadataValue(o: Required<DemoModelOptions>): string {
  // Bump `v` whenever the construction above changes, so cached files are rebuilt.
  return JSON.stringify({ v: 1, layers: o.layers, hidden: o.hidden, ffn: o.ffn, seed: o.seed });
}

/** File name of a cached demo model: `demo-mlp-L{layers}-H{hidden}-F{ffn}.onnx` (plus `-S{seed}` off the default seed). */
export function demoModelFileName(opts: DemoModelOptions = {}): string {
  const o = resolveOptions(opts);
  const seed = o.seed === DEMO_DEFAULTS.seed ? '' : `-S${o.seed}`;
  return `demo-mlp-L${o.layers}-H${o.hidden}-F${o.ffn}${seed}.onnx`;
}

/**
 * Returns the path of the demo model in `cacheDir`, building and writing it first unless a
 * valid copy is already there. The write is atomic (temporary file, then rename), so
 * concurrent callers and interrupted runs never leave a half-written model to be reused.
 */
export async function ensureDemoModel(cacheDir: string, opts: DemoModelOptions = {}): Promise<string> {
  const o = resolveOptions(opts);
  const path = join(cacheDir, demoModelFileName(o));
  if (existsSync(path) && (await isValidDemo(path, o))) return path;
  saveModel(path, buildDemoModel(o));
  return path;
}

async function isValidDemo(path: string, o: Required<DemoModelOptions>): Promise<boolean> {
  try {
    const ir = parseModel(await readFile(path), path);
    return ir.metadata[METADATA_KEY] === metadataValue(o) && ir.nodes.length === o.layers * DEMO_NODES_PER_LAYER;
  } catch {
    // A damaged or foreign file under our name is rebuilt, not reported: the cache is ours.
    return false;
  }
}

/** Where the demo model (and other generated files) are cached: $PARALLAX_CACHE or ~/.cache/parallax. */
export function defaultCacheDir(): string {
  return process.env['PARALLAX_CACHE'] ?? join(homedir(), '.cache', 'parallax');
}
