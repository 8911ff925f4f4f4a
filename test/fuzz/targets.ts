/**
 * The fuzz targets: what a mutated input is made from (seeds), how it is mutated, and what
 * it is run through. Every run must end in a result or a one-line UserError; anything else
 * (an untyped exception, a multi-line message, a hang, running out of memory, a crash of
 * the thread) is a finding.
 *
 *  - onnx: real models and models built in code, mutated as bytes and as protobuf
 *    structure, through the loader, cost estimation, the pipeline partitioner and stage-model
 *    extraction (each stage model is loaded again).
 *  - traces: Kineto traces (the real fixtures, cut short, and hand-built ones), Chrome
 *    exports and native Parallax traces, mutated as JSON values and as text (gzip too),
 *    through the importers and every analysis `parallax import` runs.
 */
import { readFileSync } from 'node:fs';
import { UserError } from '../../src/common/errors';
import { gunzipSync, gzipSync } from 'node:zlib';
import { onnx } from 'onnx-proto';
import { buildDemoModel } from '../../src/runtime/onnx/demo-model';
import { decodeModelProto, estimateCosts, parseModel } from '../../src/runtime/onnx/model';
import { estimateNodeCostsUs, partitionPipeline } from '../../src/runtime/pipeline/partition';
import { buildStageModel } from '../../src/runtime/pipeline/stage-model';
import { decodeText, parseJsonDocument } from '../../src/profiler/import/read-json';
import { extractKinetoRank, mergeKinetoRanks } from '../../src/profiler/import/kineto';
import { analyseRanks } from '../../src/profiler/import/ranks';
import { parseTrace, serializeTrace } from '../../src/profiler/trace-io';
import { toChromeTrace } from '../../src/profiler/export-chrome';
import { deriveIdle } from '../../src/profiler/idle';
import { summarize } from '../../src/profiler/summary';
import { analyse } from '../../src/profiler/analysis';
import { findings } from '../../src/profiler/findings';
import { TRACE_FORMAT_TAG, type Trace } from '../../src/profiler/trace-format';
import { MISSING_MODELS_HINT, ocrClsModelPath, sileroV4ModelPath } from '../helpers/models';
import { tinyMatMulModelBytes } from '../helpers/tiny-model';
import { ddpRank, kinetoDoc, kinetoFixture } from '../helpers/kineto';
import { externalDataModel, nestedIfModel } from '../helpers/hostile';
import { HOSTILE_NUMBERS, HOSTILE_STRINGS, mutateBytes, type Rand } from './mutate';

export type TargetName = 'onnx' | 'traces' | 'selftest';

/** A fuzz target: builds input `index`'s bytes from the seeds, and runs bytes through Parallax. */
export interface FuzzTarget {
  /** Names of the seeds, for the report. */
  seedNames: string[];
  /** Input `index`, from a random source seeded for it (deterministic in both). */
  generate(r: Rand, index: number): Uint8Array;
  /** Runs one input; resolves with a result or rejects (a UserError is the expected refusal). */
  run(bytes: Uint8Array): Promise<void>;
  /** File extension of saved inputs. */
  ext: string;
}

// ---------------------------------------------------------------------------------------
// ONNX

function required(path: string | null, what: string): string {
  if (path === null) throw new Error(`${what} is missing: ${MISSING_MODELS_HINT}`);
  return path;
}

/**
 * The models mutated, with how often each is picked: the real ones cost tens of
 * milliseconds per input through the whole pipeline, the built ones well under one, so the
 * real ones are picked less often to keep a CI run within its budget.
 */
function onnxSeeds(): { name: string; bytes: Uint8Array; weight: number }[] {
  return [
    { name: 'tiny MatMul+Add+Relu', bytes: tinyMatMulModelBytes({ relu: true }).bytes, weight: 3 },
    { name: 'demo (2 layers)', bytes: buildDemoModel({ layers: 2, hidden: 16, ffn: 32 }), weight: 3 },
    { name: 'nested If (3 levels)', bytes: nestedIfModel(3), weight: 2 },
    { name: 'external data', bytes: externalDataModel('weights.bin'), weight: 1 },
    { name: 'PP-OCR direction classifier', bytes: readFileSync(required(ocrClsModelPath(), 'the PP-OCR classifier')), weight: 0.6 },
    { name: 'silero VAD v4 (If node)', bytes: readFileSync(required(sileroV4ModelPath(), 'silero VAD v4')), weight: 0.6 },
  ];
}

/** Index of a seed, picked in proportion to its weight. */
function pickWeighted(weights: readonly number[], r: Rand): number {
  let x = r.float() * weights.reduce((a, b) => a + b, 0);
  for (let i = 0; i < weights.length; i++) {
    x -= weights[i]!;
    if (x < 0) return i;
  }
  return weights.length - 1;
}

const OP_TYPES = ['Relu', 'MatMul', 'Add', 'If', 'Loop', 'Scan', 'Constant', 'Reshape', 'Concat', 'Gemm', 'Conv', 'NoSuchOp', ''];

/** One structural mutation of a decoded model, in place. */
function mutateModel(m: onnx.ModelProto, r: Rand): void {
  const g = m.graph as onnx.GraphProto;
  const nodes = g.node as onnx.NodeProto[];
  const names = [...g.input.map((v) => v.name ?? ''), ...g.initializer.map((t) => t.name ?? ''), ...nodes.flatMap((n) => n.output)];
  const node = nodes.length > 0 ? nodes[r.int(nodes.length)]! : null;
  switch (r.int(12)) {
    case 0: {
      // A hostile dimension on an input, output or initializer.
      const infos = [...g.input, ...g.output, ...g.valueInfo];
      const vi = infos.length > 0 ? r.pick(infos) : null;
      const dims = vi?.type?.tensorType?.shape?.dim;
      if (dims && dims.length > 0) dims[r.int(dims.length)] = r.chance(0.5) ? { dimValue: r.pick(HOSTILE_NUMBERS) } : { dimParam: r.pick(HOSTILE_STRINGS) };
      else if (g.initializer.length > 0) r.pick(g.initializer).dims = [r.pick(HOSTILE_NUMBERS), r.pick(HOSTILE_NUMBERS)];
      return;
    }
    case 1:
      if (node && node.input.length > 0) node.input[r.int(node.input.length)] = r.chance(0.7) ? r.pick(names) : r.pick(HOSTILE_STRINGS);
      return;
    case 2:
      if (node && node.output.length > 0) node.output[r.int(node.output.length)] = r.pick(names);
      return;
    case 3:
      if (node) nodes.splice(nodes.indexOf(node), 1);
      return;
    case 4:
      if (node) nodes.splice(r.int(nodes.length + 1), 0, onnx.NodeProto.decode(onnx.NodeProto.encode(node).finish()));
      return;
    case 5:
      if (node) node.opType = r.pick(OP_TYPES);
      return;
    case 6:
      // A subgraph attribute holding a copy of the graph: nesting, outer-scope names.
      if (node) {
        const copy = onnx.GraphProto.decode(onnx.GraphProto.encode(g).finish());
        node.attribute.push(onnx.AttributeProto.create({ name: r.pick(['then_branch', 'body', 'else_branch']), type: onnx.AttributeProto.AttributeType.GRAPH, g: copy }));
      }
      return;
    case 7:
      if (g.initializer.length > 0) {
        const t = r.pick(g.initializer);
        if (r.chance(0.5)) t.dataType = r.int(30);
        else t.rawData = (t.rawData ?? new Uint8Array()).subarray(0, r.int((t.rawData?.length ?? 0) + 1));
      }
      return;
    case 8:
      if (g.initializer.length > 0) {
        const t = r.pick(g.initializer);
        t.dataLocation = onnx.TensorProto.DataLocation.EXTERNAL;
        t.externalData = [
          onnx.StringStringEntryProto.create({ key: 'location', value: r.pick([...HOSTILE_STRINGS, 'weights.bin', 'sub/../weights.bin', '.']) }),
          onnx.StringStringEntryProto.create({ key: 'offset', value: String(r.pick(HOSTILE_NUMBERS)) }),
          onnx.StringStringEntryProto.create({ key: 'length', value: String(r.pick(HOSTILE_NUMBERS)) }),
        ];
      }
      return;
    case 9:
      if (r.chance(0.5)) m.irVersion = r.pick(HOSTILE_NUMBERS);
      else if (m.opsetImport.length > 0) m.opsetImport[0]!.version = r.pick(HOSTILE_NUMBERS);
      return;
    case 10:
      if (node) node.name = r.pick(HOSTILE_STRINGS);
      return;
    default:
      // Remove an input or an output of the graph.
      if (r.chance(0.5) && g.input.length > 0) g.input.splice(r.int(g.input.length), 1);
      else if (g.output.length > 0) g.output.splice(r.int(g.output.length), 1);
  }
}

/** Loader → costs → partitioner → stage models (each loaded back). */
export async function runOnnx(bytes: Uint8Array): Promise<void> {
  // External data resolves next to this (non-existent) path, so nothing real is reached.
  const path = '/nonexistent-fuzz-folder/model.onnx';
  const ir = parseModel(bytes, path);
  estimateCosts(ir, { batch: 2 });
  const costs = estimateNodeCostsUs(ir, { batch: 2 });
  const p = partitionPipeline(ir, costs, 2, { dimValues: { batch: 2 }, slack: 0.02 });
  const model = decodeModelProto(bytes, path);
  for (const stage of p.stages) parseModel(buildStageModel(model, ir, stage, p.stages.length), `stage${stage.index}.onnx`, { checkExternalData: false });
}

function onnxTarget(): FuzzTarget {
  const seeds = onnxSeeds();
  const decoded = seeds.map((s) => onnx.ModelProto.decode(s.bytes));
  const weights = seeds.map((s) => s.weight);
  return {
    seedNames: seeds.map((s) => s.name),
    ext: 'onnx',
    generate(r) {
      const i = pickWeighted(weights, r);
      // Big real models mutate cheaply as bytes; structure mutations re-encode the whole model.
      if (r.chance(0.5)) {
        let b = seeds[i]!.bytes;
        for (let n = 1 + r.int(3); n > 0; n--) b = mutateBytes(b, r);
        return b;
      }
      const m = onnx.ModelProto.decode(onnx.ModelProto.encode(decoded[i]!).finish());
      for (let n = 1 + r.int(3); n > 0; n--) mutateModel(m, r);
      try {
        return onnx.ModelProto.encode(m).finish();
      } catch {
        // A mutation protobufjs cannot encode: mutate the seed's bytes instead.
        return mutateBytes(seeds[i]!.bytes, r);
      }
    },
    run: runOnnx,
  };
}

// ---------------------------------------------------------------------------------------
// Traces

/** A real Kineto fixture cut to its first `n` trace events (and its descriptive fields). */
function cutFixture(name: string, n: number): Record<string, unknown> {
  const doc = JSON.parse(gunzipSync(readFileSync(kinetoFixture(name))).toString('utf8')) as Record<string, unknown>;
  const events = doc['traceEvents'] as Record<string, unknown>[];
  // Keep a mix: the first events (metadata, steps) and the first kernels with their launches.
  const kernels = events.filter((e) => e['cat'] === 'kernel').slice(0, n >> 1);
  const corr = new Set(kernels.map((k) => (k['args'] as Record<string, unknown> | undefined)?.['correlation']));
  const launches = events.filter((e) => e['cat'] === 'cuda_runtime' && corr.has((e['args'] as Record<string, unknown> | undefined)?.['correlation']));
  return { ...doc, traceEvents: [...events.slice(0, n >> 2), ...launches, ...kernels] };
}

function traceSeeds(): { name: string; doc: Record<string, unknown> }[] {
  const kineto = [
    { name: 'DDP rank 0 (real, cut)', doc: cutFixture('ddp-2rank-rank0.json.gz', 400) },
    { name: '128-rank job rank 0 (real, cut)', doc: cutFixture('job128-rank0.json.gz', 400) },
    { name: '128-rank job rank 1 (real, cut)', doc: cutFixture('job128-rank1.json.gz', 400) },
    { name: 'hand-built DDP rank 0', doc: ddpRank({ rank: 0, worldSize: 2, steps: 3, stepUs: 1000, computeUs: 600, allReduceEndUs: 900 }) },
    { name: 'hand-built DDP rank 1', doc: ddpRank({ rank: 1, worldSize: 2, steps: 3, stepUs: 1000, computeUs: 700, allReduceEndUs: 900, clockUs: 50 }) },
    {
      name: 'hand-built steps and copies',
      doc: kinetoDoc({
        steps: [[1, 0, 500], [2, 500, 500]],
        kernels: [
          { name: 'gemm', ts: 10, dur: 200 },
          { name: 'Memcpy HtoD', ts: 250, dur: 20, cat: 'gpu_memcpy', args: { bytes: 4096 } },
          { name: 'ncclDevKernel_AllReduce_Sum_f32', ts: 600, dur: 100, launchTs: null },
        ],
      }),
    },
  ];
  const native = deriveIdle(mergeKinetoRanks([extractKinetoRank(kineto[3]!.doc, 'a'), extractKinetoRank(kineto[4]!.doc, 'b')]));
  return [
    ...kineto,
    { name: 'native trace (imported DDP)', doc: JSON.parse(serializeTrace(native)) as Record<string, unknown> },
    { name: 'Chrome export', doc: toChromeTrace(native) as unknown as Record<string, unknown> },
  ];
}

/** A random place in a JSON value: the container and the key or index there. */
function randomSlot(doc: unknown, r: Rand): { parent: Record<string, unknown> | unknown[]; key: string | number } | null {
  let parent: Record<string, unknown> | unknown[] | null = null;
  let key: string | number = '';
  let cur: unknown = doc;
  for (let depth = 0; depth < 6; depth++) {
    if (Array.isArray(cur) && cur.length > 0) {
      parent = cur;
      key = r.int(cur.length);
    } else if (typeof cur === 'object' && cur !== null && Object.keys(cur).length > 0) {
      parent = cur as Record<string, unknown>;
      key = r.pick(Object.keys(cur));
    } else break;
    cur = (parent as Record<string | number, unknown>)[key];
    if (r.chance(0.25)) break;
  }
  return parent === null ? null : { parent, key };
}

function hostileValue(r: Rand): unknown {
  switch (r.int(7)) {
    case 0:
      return r.pick(HOSTILE_NUMBERS);
    case 1:
      return r.pick(HOSTILE_STRINGS);
    case 2:
      return null;
    case 3:
      return [];
    case 4:
      return {};
    case 5:
      return String(r.pick(HOSTILE_NUMBERS));
    default: {
      // Nesting around the depth limit.
      let v: unknown = [];
      for (let n = r.int(300); n > 0; n--) v = [v];
      return v;
    }
  }
}

/** One JSON-level mutation, in place. */
function mutateJson(doc: Record<string, unknown>, r: Rand): void {
  const slot = randomSlot(doc, r);
  if (!slot) return;
  const { parent, key } = slot;
  const p = parent as Record<string | number, unknown>;
  switch (r.int(4)) {
    case 0:
      p[key] = hostileValue(r);
      return;
    case 1:
      if (Array.isArray(parent)) parent.splice(key as number, 1);
      else delete p[key];
      return;
    case 2:
      if (Array.isArray(parent)) for (let n = 1 + r.int(50); n > 0; n--) parent.push(structuredClone(parent[key as number]));
      else p[`${String(key)}_`] = p[key];
      return;
    default:
      // Numbers nudged out of range, the way broken clocks and counters look.
      if (typeof p[key] === 'number') p[key] = (p[key] as number) * r.pick([-1, 1e6, 1e300, 0]) + r.pick([0, 1e15, -1e15]);
      else p[key] = r.pick(HOSTILE_NUMBERS);
  }
}

/** Everything `parallax import` runs on a trace. */
function analyseAll(trace: Trace): void {
  const t = deriveIdle(trace);
  const summary = summarize(t);
  const analysis = analyse(t);
  findings(t, summary, { analysis });
  analyseRanks(analysis);
  serializeTrace(t);
}

/**
 * Runs one trace input: gzip or plain text → JSON → native reader or Kineto importer (one
 * rank, or the first half and the second half of its events as two ranks) → analyses.
 */
export async function runTrace(bytes: Uint8Array): Promise<void> {
  const text = await decodeText(Buffer.from(bytes), 'fuzz.json');
  const { doc, nonFinite } = parseJsonDocument(text, 'fuzz.json');
  if (typeof doc === 'object' && doc !== null && (doc as { format?: unknown }).format === TRACE_FORMAT_TAG) {
    analyseAll(parseTrace(text, 'fuzz.json'));
    return;
  }
  const rank = extractKinetoRank(doc, 'fuzz.json', nonFinite);
  analyseAll(mergeKinetoRanks(rank.rank === null ? [rank, { ...rank, source: 'fuzz-copy.json' }] : [rank]));
}

function tracesTarget(): FuzzTarget {
  const seeds = traceSeeds();
  return {
    seedNames: seeds.map((s) => s.name),
    ext: 'json',
    generate(r) {
      const seed = r.pick(seeds);
      const doc = structuredClone(seed.doc);
      for (let n = 1 + r.int(3); n > 0; n--) mutateJson(doc, r);
      let text = JSON.stringify(doc);
      // Python's json writes NaN and Infinity; so do broken exporters.
      if (r.chance(0.1)) text = text.replace(/\b\d+(\.\d+)?\b/, r.pick(['NaN', 'Infinity', '-Infinity']));
      let bytes: Uint8Array = Buffer.from(text, 'utf8');
      if (r.chance(0.2)) bytes = mutateBytes(bytes, r);
      if (r.chance(0.15)) bytes = gzipSync(bytes);
      if (r.chance(0.05)) bytes = mutateBytes(bytes, r);
      return bytes;
    },
    run: runTrace,
  };
}

/**
 * A target whose inputs misbehave on purpose, by index modulo 8: a result, a refusal, an
 * untyped exception, a hang, a result, a heap blow-up, a result, a refusal. It shows that
 * the harness catches each kind of finding and carries on after it.
 */
function selftestTarget(): FuzzTarget {
  return {
    seedNames: ['selftest'],
    ext: 'bin',
    generate: (_r, index) => Uint8Array.of(index % 8),
    async run(bytes) {
      switch (bytes[0]) {
        case 1:
        case 7:
          throw new UserError('refused in one line');
        case 2:
          throw new TypeError('an untyped bug');
        case 3:
          for (;;);
        case 5: {
          const hog: number[][] = [];
          for (;;) hog.push(new Array<number>(1 << 20).fill(1));
        }
        default:
      }
    },
  };
}

/** The target of a name. */
export function fuzzTarget(name: TargetName): FuzzTarget {
  if (name === 'selftest') return selftestTarget();
  return name === 'onnx' ? onnxTarget() : tracesTarget();
}
