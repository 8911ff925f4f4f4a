/**
 * Synthetic GPipe traces with known answers, written straight into span columns (so a
 * million-span trace builds in a fraction of a second). The analysis tests and the analysis
 * benchmark use them; they also show, in code, what a pipeline trace looks like:
 *
 *   per step, per micro-batch m, per stage s (lane s):
 *     recv  (comm, peer s − 1; stages > 0)   from when stage s is free and stage s − 1 has
 *                                            finished computing m, lasting `commUs`;
 *     compute (stage s, micro m)             `stageUs[s]`, with operator spans under it;
 *     send  (comm, peer s + 1; stages < K−1) right after the compute, lasting `commUs`;
 *   idle gaps as idle.ts derives them (bubble: before a recv, before a lane's first span
 *   and after its last).
 *
 * With commUs = 0 and no jitter, a step lasts exactly (M − 1)·max_s t_s + Σ_s t_s, which is
 * (M + K − 1)·t for equal stages.
 */
import type { PipelinePlan, TracePlan } from '../plan';
import { CommOpCode, IdleCauseCode, PhaseCode, SpanFlag, SpanKind, TRACE_FORMAT_VERSION, allocSpans, type SpanColumns, type Trace, type TraceMeta } from '../trace-format';

export interface SyntheticPipelineOptions {
  /** Compute per micro-batch of each stage, µs; K = its length. */
  stageUs: number[];
  microBatches: number;
  steps: number;
  /** Duration of every send and every recv, µs (default 0: no comm spans). */
  commUs?: number;
  /** Operator spans per compute span; each stage then has this many nodes (default 0). */
  opsPerCompute?: number;
  /** Operator types, cycled over a stage's nodes (default MatMul, Add, Relu, LayerNormalization). */
  opTypes?: string[];
  /** Idle time between steps, µs (not part of any step window; default 10). */
  stepGapUs?: number;
  /** Relative random spread of compute durations, 0..1 (default 0: exact). */
  jitter?: number;
  /** Global batch for `plan.batch` (default 4 · M). */
  batch?: number;
  seed?: number;
  /**
   * Node costs for `plan.nodeCostUs` (default: each stage's `stageUs` split evenly over its
   * nodes); operator spans take the same proportions of their compute span.
   */
  nodeCostUs?: Record<string, number>;
  /** Nodes per stage for `plan.stageNodes` (default: `opsPerCompute` per stage, named by layer). */
  stageNodes?: string[][];
}

const KINDS = SpanKind;
const BUBBLE = IdleCauseCode.bubble;

/** Metadata of a synthetic run of `plan` on `lanes` CPU devices. */
export function syntheticMeta(lanes: number, plan: TracePlan): TraceMeta {
  return {
    formatVersion: TRACE_FORMAT_VERSION,
    tool: { name: 'parallax', version: 'synthetic' },
    source: 'predicted',
    mode: plan.mode,
    plan,
    devices: Array.from({ length: lanes }, (_, i) => ({
      id: `cpu:${i}`,
      kind: 'cpu' as const,
      provider: 'cpu',
      threads: 1,
      physicalUnit: 'host-cpu',
      sharesPhysicalUnit: false,
      software: false,
      label: `cpu:${i} (synthetic)`,
    })),
    host: { cpuModel: 'synthetic', cores: lanes, memoryBytes: 0, os: 'synthetic', node: process.version },
    startTimeUs: 0,
    opLevel: true,
    notes: ['synthetic trace'],
  };
}

/** Builds a GPipe trace (idle spans included) with the given stage costs. */
export function syntheticPipelineTrace(o: SyntheticPipelineOptions): Trace {
  const K = o.stageUs.length;
  const M = o.microBatches;
  const nOps = o.opsPerCompute ?? 0;
  const opTypes = o.opTypes ?? ['MatMul', 'Add', 'Relu', 'LayerNormalization'];
  const gap = o.stepGapUs ?? 10;

  const stageNodes =
    o.stageNodes ?? Array.from({ length: K }, (_, s) => Array.from({ length: nOps }, (_, j) => `/layers.${s}/block.${j}/${opTypes[j % opTypes.length]}`));
  const nodeCostUs: Record<string, number> = o.nodeCostUs ?? {};
  if (!o.nodeCostUs) stageNodes.forEach((list, s) => list.forEach((nm) => (nodeCostUs[nm] = o.stageUs[s] / Math.max(1, list.length))));

  const { strings, intern } = stringTable();
  const names = { recv: intern('recv'), send: intern('send'), compute: intern('stage.run'), idle: intern('idle') };
  // Operator spans of stage s: names, types and shares of the compute span.
  const opName = stageNodes.map((list) => list.slice(0, nOps).map((nm) => intern(nm)));
  const opType = stageNodes.map((list) => list.slice(0, nOps).map((_, j) => intern(opTypes[j % opTypes.length])));
  const opShare = stageNodes.map((list) => {
    const c = list.slice(0, nOps).map((nm) => nodeCostUs[nm] ?? 0);
    const tot = c.reduce((a, b) => a + b, 0);
    return c.map((v) => (tot > 0 ? v / tot : 1 / Math.max(1, c.length)));
  });

  const perStepBusy = K * M * (1 + nOps) + (K - 1) * M * 2;
  const sim: PipelineSim = {
    o,
    K,
    M,
    commUs: o.commUs ?? 0,
    jitter: o.jitter ?? 0,
    rand: xorshift32(o.seed ?? 1),
    spans: new SpanWriter(o.steps * (perStepBusy + K * (M + 2)) + 16),
    names,
    opName,
    opType,
    opShare,
    laneSpans: Array.from({ length: K }, () => []),
    free: new Float64Array(K),
    computeEnd: new Float64Array(K),
  };
  const steps: Trace['steps'] = [];
  let t0 = 0;
  for (let step = 0; step < o.steps; step++) {
    const end = simulateStep(sim, step, t0);
    steps.push({ index: step, startUs: t0, endUs: end });
    pushBubbles(sim, step, t0, end);
    t0 = end + gap;
  }
  const meta = syntheticMeta(K, pipelinePlan(o, stageNodes, nodeCostUs));
  return {
    meta,
    strings,
    lanes: meta.devices.map((d, i) => ({ device: i, label: d.label, group: d.physicalUnit })),
    steps,
    spans: sim.spans.finish(),
  };
}

/** A deterministic, fast random stream in [0, 1) (xorshift32; quality is not the point here). */
function xorshift32(seed: number): () => number {
  let rng = seed >>> 0 || 1;
  return () => {
    rng ^= rng << 13;
    rng >>>= 0;
    rng ^= rng >>> 17;
    rng ^= rng << 5;
    rng >>>= 0;
    return rng / 4294967296;
  };
}

/** A trace string table and its interning function. */
function stringTable(): { strings: string[]; intern: (str: string) => number } {
  const strings: string[] = [];
  const index = new Map<string, number>();
  const intern = (str: string): number => {
    let i = index.get(str);
    if (i === undefined) index.set(str, (i = strings.push(str) - 1));
    return i;
  };
  return { strings, intern };
}

/** Span columns filled one span at a time, trimmed to size at the end. */
class SpanWriter {
  private readonly c: SpanColumns;
  private n = 0;

  constructor(capacity: number) {
    this.c = allocSpans(capacity);
  }

  /** Columns written so far (valid up to the last index {@link push} returned). */
  get columns(): SpanColumns {
    return this.c;
  }

  push(lane: number, kind: number, name: number, start: number, dur: number, step: number, micro: number, stage: number, peer: number): number {
    const c = this.c;
    const i = this.n++;
    c.lane[i] = lane;
    c.kind[i] = kind;
    c.name[i] = name;
    c.opType[i] = -1;
    c.start[i] = start;
    c.dur[i] = dur;
    c.step[i] = step;
    c.micro[i] = micro;
    c.stage[i] = stage;
    c.bytes[i] = kind === KINDS.comm ? 4096 : 0;
    c.peer[i] = peer;
    c.parent[i] = -1;
    c.flags[i] = 0;
    c.cause[i] = 0;
    c.comm[i] = CommOpCode.none;
    c.cpu[i] = -1;
    c.wait[i] = -1;
    // Top-level compute is a forward pass; operator spans below inherit it through `parent`.
    c.phase[i] = kind === SpanKind.compute ? PhaseCode.forward : PhaseCode.none;
    return i;
  }

  /** The spans written, in columns of exactly their count. */
  finish(): SpanColumns {
    const n = this.n;
    const spans = allocSpans(n);
    for (const key of Object.keys(spans) as (keyof SpanColumns)[]) {
      if (key === 'count') continue;
      (spans[key] as Float64Array).set((this.c[key] as Float64Array).subarray(0, n));
    }
    return spans;
  }
}

/** State of the GPipe simulation behind {@link syntheticPipelineTrace}. */
interface PipelineSim {
  o: SyntheticPipelineOptions;
  K: number;
  M: number;
  commUs: number;
  jitter: number;
  rand: () => number;
  spans: SpanWriter;
  names: { recv: number; send: number; compute: number; idle: number };
  opName: number[][];
  opType: number[][];
  opShare: number[][];
  /** Per lane, this step's busy spans as (start, end, micro, isRecv) quadruples, for the idle gaps. */
  laneSpans: number[][];
  /** Per lane: when it is next free. */
  free: Float64Array;
  /** Per stage: when its last compute ended. */
  computeEnd: Float64Array;
}

/** Runs one GPipe step from `t0` (every micro-batch through every stage); returns its end. */
function simulateStep(sim: PipelineSim, step: number, t0: number): number {
  const { K, M, free } = sim;
  free.fill(t0);
  for (const l of sim.laneSpans) l.length = 0;
  for (let m = 0; m < M; m++) {
    for (let s = 0; s < K; s++) free[s] = runStage(sim, step, m, s);
  }
  let end = t0;
  for (let s = 0; s < K; s++) end = Math.max(end, free[s]);
  return end;
}

/** Micro-batch `m` on stage `s`: recv, compute with its operator spans, send. Returns when the lane is free. */
function runStage(sim: PipelineSim, step: number, m: number, s: number): number {
  const { K, commUs: x, jitter, spans, names, laneSpans, computeEnd } = sim;
  let t = sim.free[s];
  if (s > 0 && x > 0) {
    t = Math.max(sim.free[s], computeEnd[s - 1]);
    spans.columns.comm[spans.push(s, KINDS.comm, names.recv, t, x, step, m, s, s - 1)] = CommOpCode.recv;
    laneSpans[s].push(t, t + x, m, 1);
    t += x;
  } else if (s > 0) {
    t = Math.max(sim.free[s], computeEnd[s - 1]);
  }
  const d = sim.o.stageUs[s] * (jitter > 0 ? 1 + jitter * (sim.rand() - 0.5) : 1);
  const parent = spans.push(s, KINDS.compute, names.compute, t, d, step, m, s, -1);
  laneSpans[s].push(t, t + d, m, 0);
  let ot = t;
  const c = spans.columns;
  for (let j = 0; j < sim.opName[s].length; j++) {
    const od = d * sim.opShare[s][j];
    const i = spans.push(s, KINDS.compute, sim.opName[s][j], ot, od, step, -1, -1, -1);
    c.opType[i] = sim.opType[s][j];
    c.parent[i] = parent;
    c.flags[i] = SpanFlag.op;
    c.phase[i] = PhaseCode.none;
    ot += od;
  }
  t += d;
  computeEnd[s] = t;
  if (s < K - 1 && x > 0) {
    spans.columns.comm[spans.push(s, KINDS.comm, names.send, t, x, step, m, s, s + 1)] = CommOpCode.send;
    laneSpans[s].push(t, t + x, m, 0);
    t += x;
  }
  return t;
}

/** Idle spans for the step's gaps: every gap is a bubble here (before a recv, before the first span, after the last). */
function pushBubbles(sim: PipelineSim, step: number, t0: number, end: number): void {
  const { spans, names } = sim;
  const c = spans.columns;
  for (let s = 0; s < sim.K; s++) {
    const l = sim.laneSpans[s];
    let cursor = t0;
    for (let j = 0; j < l.length; j += 4) {
      if (l[j] - cursor >= 1) {
        const i = spans.push(s, KINDS.idle, names.idle, cursor, l[j] - cursor, step, l[j + 2], s, -1);
        c.cause[i] = BUBBLE;
      }
      cursor = Math.max(cursor, l[j + 1]);
    }
    if (end - cursor >= 1) {
      const i = spans.push(s, KINDS.idle, names.idle, cursor, end - cursor, step, l.length > 0 ? l[l.length - 2] : -1, s, -1);
      c.cause[i] = BUBBLE;
    }
  }
}

/** The trace's pipeline plan; cuts, partition and calibration only when every stage has nodes. */
function pipelinePlan(o: SyntheticPipelineOptions, stageNodes: string[][], nodeCostUs: Record<string, number>): PipelinePlan {
  const K = o.stageUs.length;
  const M = o.microBatches;
  const cuts = stageNodes.slice(0, -1).map((list) => list[list.length - 1]).filter((v): v is string => v !== undefined);
  const plan: PipelinePlan = {
    mode: 'pipeline',
    devices: `cpu:${K}`,
    batch: o.batch ?? 4 * M,
    steps: o.steps,
    warmup: 0,
    seed: o.seed ?? 1,
    schedule: 'gpipe',
    stages: K,
    microBatches: M,
  };
  if (stageNodes.every((l) => l.length > 0)) {
    const stageCostUs = o.stageUs.slice();
    const mean = stageCostUs.reduce((a, b) => a + b, 0) / Math.max(1, K);
    plan.cuts = cuts;
    plan.partition = { stageNodes, stageCostUs, balance: mean > 0 ? Math.max(...stageCostUs) / mean : 1 };
    plan.calibration = { device: 'cpu:0', rows: (o.batch ?? 4 * M) / M, runs: 1, note: 'synthetic', nodeCostUs };
  }
  return plan;
}
