/**
 * Fits a {@link CostModel} from measured traces that carry the program they ran
 * (`meta.program`). It reads the spans, not a replay: every top-level span of a measured step
 * is matched to the instruction that recorded it, by lane (= rank), operation, micro-batch and
 * order within the step.
 *
 * Timings on a shared machine vary 2–3× from run to run, so the fit is robust rather than
 * optimal: samples are reduced to the median per size (rows, or bytes), then a line goes
 * through the per-size medians by least squares. One outlier run moves a median little and a
 * line through medians not at all more.
 *
 * With a single distinct size a line is not determined. The fit then keeps the median as the
 * cost at that size and extrapolates proportionally (fixed part 0: compute `perRowUs =
 * median / rows`, links α = 0 and β = bytes / median); the entry's `rowSizes` and the model's
 * `notes` say so.
 *
 * Not fitted: interference. Costs are per rank, so a rank's measured slowdown is already in
 * its own costs; the factor stays for what-if use.
 */
import { median } from '../stats';
import { COMM_OPS, CommOpCode, IdleCauseCode, SpanKind, isCollectiveCode } from '../span-vocabulary';
import type { Instruction } from '../program';
import type { DeviceMeta, Trace } from '../trace-format';
import {
  FREE_LINK,
  bytesKey,
  collectiveTerms,
  computeKey,
  kindKey,
  segmentKey,
  type ComputeCost,
  type CostModel,
  type Link,
  type MeasuredBytes,
  type TransferClass,
} from './costs';

/** One sample of a cost that is linear in two known terms: dur ≈ x·a + y·b. */
export interface Sample {
  a: number;
  b: number;
  d: number;
}

interface Acc {
  compute: Map<string, Sample[]>;
  byKind: Map<string, Sample[]>;
  links: Record<TransferClass, Sample[]>;
  bytes: Map<string, { op: Instruction['op']; micro: number; values: number[] }>;
  recv: Sample[];
  /** Per rank, host idle per instruction in each measured step. */
  host: Map<number, number[]>;
}

export interface FitOptions {
  /**
   * Which compute spans give samples (by trace and span index); the others are still matched
   * to their instructions, so the spans after them keep theirs. All when absent.
   */
  keepCompute?: (trace: Trace, span: number) => boolean;
}

/**
 * Fits compute and transfer costs from one or more measured traces (each with
 * `meta.program`). Throws when a trace has no program.
 */
export function fitCostModel(traces: readonly Trace[], opts: FitOptions = {}): CostModel {
  const acc: Acc = { compute: new Map(), byKind: new Map(), links: { copy: [], p2p: [], collective: [] }, bytes: new Map(), recv: [], host: new Map() };
  for (const t of traces) collect(t, acc, opts);
  const notes: string[] = [];
  const compute: Record<string, ComputeCost> = {};
  for (const [key, samples] of acc.compute) compute[key] = computeCost(samples, `compute ${key}`, notes);
  const computeByKind: Record<string, ComputeCost> = {};
  for (const [key, samples] of acc.byKind) computeByKind[key] = computeCost(samples, '', []);
  const transfers = {
    copy: linkCost(acc.links.copy, 'copy', notes),
    p2p: linkCost(acc.links.p2p, 'p2p', notes),
    collective: linkCost(acc.links.collective, 'collective', notes),
  };
  const bytes: Record<string, MeasuredBytes> = {};
  for (const [key, m] of acc.bytes) bytes[key] = { op: m.op, micro: m.micro, bytes: median(m.values) };
  const hostUs: Record<string, number> = {};
  for (const [rank, v] of acc.host) hostUs[String(rank)] = median(v);
  const channel = traces.find((t) => t.meta.channel !== undefined)?.meta.channel;
  return { compute, computeByKind, transfers, recv: linkCost(acc.recv, 'p2p', []), hostUs, bytes, notes, ...(channel ? { channel } : {}) };
}

/** What an instruction does: its operation (the collective for collectives) and micro-batch. */
function instructionKey(ins: Instruction): { op: string; micro: number } {
  switch (ins.op) {
    case 'run':
    case 'scatter':
    case 'gather':
    case 'send':
    case 'recv':
      return { op: ins.op, micro: ins.micro };
    case 'collective':
    case 'collective-start':
      return { op: ins.collective, micro: -1 };
    case 'collective-wait':
      // Records nothing of its own: the collectives' spans match their start instructions.
      return { op: ins.op, micro: -1 };
    default: {
      const never: never = ins;
      throw new Error(`unknown instruction ${JSON.stringify(never)}`);
    }
  }
}

/** The same for a span, from its kind, `comm` column and micro-batch; undefined for spans no instruction records. */
function spanKey(trace: Trace, i: number): { op: string; micro: number } | undefined {
  const s = trace.spans;
  if (s.kind[i] === SpanKind.compute) return { op: 'run', micro: s.micro[i]! };
  const code = s.comm[i]!;
  if (s.kind[i] !== SpanKind.comm || code === CommOpCode.none) return undefined;
  return { op: COMM_OPS[code]!, micro: isCollectiveCode(code) ? -1 : s.micro[i]! };
}

/**
 * Matches spans to a device's instructions: the k-th span of an operation and micro-batch
 * is the k-th such instruction. A span without a micro-batch (-1) where the instructions
 * have one takes the next unused instruction of its operation, so a runtime that does not
 * record micro-batches still gets matched by order.
 */
class InstructionMatcher {
  private readonly queues = new Map<string, { list: number[]; pos: number }>();
  private readonly used = new Set<number>();

  constructor(instructions: readonly Instruction[]) {
    instructions.forEach((ins, idx) => {
      const k = instructionKey(ins);
      this.add(`${k.op}:${k.micro}`, idx);
      this.add(`${k.op}:*`, idx);
    });
  }

  private add(key: string, idx: number): void {
    const q = this.queues.get(key);
    if (q) q.list.push(idx);
    else this.queues.set(key, { list: [idx], pos: 0 });
  }

  private next(key: string): number | undefined {
    const q = this.queues.get(key);
    while (q && q.pos < q.list.length) {
      const idx = q.list[q.pos++]!;
      if (!this.used.has(idx)) {
        this.used.add(idx);
        return idx;
      }
    }
    return undefined;
  }

  take(k: { op: string; micro: number }): number | undefined {
    return this.next(`${k.op}:${k.micro}`) ?? (k.micro < 0 ? this.next(`${k.op}:*`) : undefined);
  }
}

/** Top-level busy spans of measured steps, per `lane:step`, in start order. */
function spansByLaneStep(trace: Trace): Map<string, number[]> {
  const s = trace.spans;
  const measured = new Set(trace.steps.map((w) => w.index));
  const out = new Map<string, number[]>();
  for (let i = 0; i < s.count; i++) {
    // Idle spans come along: the host's share of them is a cost too (see collect).
    if (s.parent[i]! >= 0 || !measured.has(s.step[i]!)) continue;
    const key = `${s.lane[i]}:${s.step[i]}`;
    const list = out.get(key) ?? [];
    list.push(i);
    out.set(key, list);
  }
  for (const list of out.values()) list.sort((x, y) => s.start[x]! - s.start[y]! || x - y);
  return out;
}

function collect(trace: Trace, acc: Acc, opts: FitOptions): void {
  const program = trace.meta.program;
  if (!program) throw new Error('cannot fit costs from a trace without meta.program (the program it ran)');
  const s = trace.spans;
  const segments = new Map(program.segments.map((g) => [g.id, segmentKey(g)]));
  for (const [key, list] of spansByLaneStep(trace)) {
    const rank = Number(key.slice(0, key.indexOf(':')));
    const dev = program.devices.find((d) => d.rank === rank);
    if (!dev) continue;
    const lane = trace.lanes[rank];
    const kind: DeviceMeta['kind'] | undefined = lane ? trace.meta.devices[lane.device]?.kind : undefined;
    const matcher = new InstructionMatcher(dev.instructions);
    let hostIdle = 0;
    for (const i of list) {
      if (s.kind[i] === SpanKind.idle) {
        if (s.cause[i] === IdleCauseCode.host) hostIdle += s.dur[i]!;
        continue;
      }
      const k = spanKey(trace, i);
      const idx = k === undefined ? undefined : matcher.take(k);
      if (idx === undefined) continue;
      if (s.kind[i] === SpanKind.compute && opts.keepCompute && !opts.keepCompute(trace, i)) continue;
      addSample(acc, { rank, kind, segments }, idx, dev.instructions[idx]!, s.dur[i]!, s.bytes[i]!);
    }
    if (dev.instructions.length > 0) acc.host.set(rank, [...(acc.host.get(rank) ?? []), hostIdle / dev.instructions.length]);
  }
}

function push<K>(map: Map<K, Sample[]>, key: K, sample: Sample): void {
  const list = map.get(key);
  if (list) list.push(sample);
  else map.set(key, [sample]);
}

interface Where {
  rank: number;
  kind: DeviceMeta['kind'] | undefined;
  /** Segment id → {@link segmentKey} in the trace's program. */
  segments: Map<number, string>;
}

function addSample(acc: Acc, where: Where, idx: number, ins: Instruction, dur: number, spanBytes: number): void {
  const { rank, kind } = where;
  if (ins.op === 'run') {
    const seg = where.segments.get(ins.segment);
    if (seg === undefined) return;
    const sample = { a: ins.rows, b: 1, d: dur };
    push(acc.compute, computeKey(rank, seg, ins.phase), sample);
    if (kind !== undefined) push(acc.byKind, kindKey(kind, seg, ins.phase), sample);
    return;
  }
  if (ins.op === 'collective-wait') return;
  // The span's bytes are what moved; the instruction's are the compiler's estimate.
  const bytes = spanBytes > 0 ? spanBytes : ins.bytes;
  const micro = 'micro' in ins ? ins.micro : -1;
  const bk = bytesKey(rank, idx);
  const m = acc.bytes.get(bk);
  if (m) m.values.push(bytes);
  else acc.bytes.set(bk, { op: ins.op, micro, values: [bytes] });
  switch (ins.op) {
    case 'scatter':
    case 'gather':
      acc.links.copy.push({ a: bytes, b: 1, d: dur });
      return;
    case 'send':
      acc.links.p2p.push({ a: bytes, b: 1, d: dur });
      return;
    case 'recv':
      // The recv span starts when the data arrived; the transfer is charged on the send, and
      // the span is the copy out of the channel.
      acc.recv.push({ a: bytes, b: 1, d: dur });
      return;
    case 'collective':
    case 'collective-start': {
      // The ring formula takes the buffer's size, as the simulator charges it; the span's
      // bytes are what this rank moved (about 2(N−1)/N of the buffer each way), which would
      // count the ring's factor twice.
      const n = ins.group.length;
      const buffer = ins.bytes > 0 ? ins.bytes : bytes;
      if (n > 1) acc.links.collective.push({ ...collectiveTerms(ins.collective, buffer, n), d: dur });
      return;
    }
    default: {
      const never: never = ins;
      throw new Error(`unknown instruction ${JSON.stringify(never)}`);
    }
  }
}

/**
 * Robust fit of d ≈ x·a + y·b: the median d per distinct (a, b), then least squares through
 * those medians, with x, y ≥ 0. `sizes` is the number of distinct (a, b); below 2, or when
 * a and b are proportional, y is taken as 0 (see the module comment).
 */
export function fitTwoTerms(samples: readonly Sample[]): { x: number; y: number; sizes: number } {
  const groups = new Map<string, { a: number; b: number; d: number[] }>();
  for (const p of samples) {
    const k = `${p.a}|${p.b}`;
    const g = groups.get(k);
    if (g) g.d.push(p.d);
    else groups.set(k, { a: p.a, b: p.b, d: [p.d] });
  }
  let saa = 0, sab = 0, sbb = 0, sad = 0, sbd = 0;
  for (const g of groups.values()) {
    const d = median(g.d);
    saa += g.a * g.a;
    sab += g.a * g.b;
    sbb += g.b * g.b;
    sad += g.a * d;
    sbd += g.b * d;
  }
  const onlyX = (): { x: number; y: number } => (saa > 0 ? { x: Math.max(0, sad / saa), y: 0 } : { x: 0, y: sbb > 0 ? Math.max(0, sbd / sbb) : 0 });
  const onlyY = (): { x: number; y: number } => (sbb > 0 ? { x: 0, y: Math.max(0, sbd / sbb) } : onlyX());
  const det = saa * sbb - sab * sab;
  let fit: { x: number; y: number };
  if (groups.size < 2 || det <= 1e-12 * saa * sbb) fit = onlyX();
  else {
    fit = { x: (sad * sbb - sbd * sab) / det, y: (saa * sbd - sab * sad) / det };
    // A negative term is noise pulling the line over; drop it and refit the other alone.
    if (fit.x < 0) fit = onlyY();
    else if (fit.y < 0) fit = onlyX();
  }
  return { ...fit, sizes: groups.size };
}

function computeCost(samples: Sample[], what: string, notes: string[]): ComputeCost {
  const f = fitTwoTerms(samples);
  const rowSizes = [...new Set(samples.map((p) => p.a))].sort((a, b) => a - b);
  if (f.sizes < 2 && what) notes.push(`${what}: one row size (${rowSizes.join(', ')}), scaled proportionally to other sizes`);
  return { fixedUs: f.y, perRowUs: f.x, rowSizes };
}

function linkCost(samples: Sample[], what: TransferClass, notes: string[]): Link {
  if (samples.length === 0) {
    notes.push(`${what}: no transfers measured, taken as free`);
    return { ...FREE_LINK };
  }
  const f = fitTwoTerms(samples);
  if (f.sizes < 2) notes.push(`${what}: one transfer size, latency α not separable (taken as 0)`);
  return { alphaUs: f.y, bytesPerUs: f.x > 0 ? 1 / f.x : Infinity };
}
