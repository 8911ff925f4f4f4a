/**
 * Leave-one-out prediction for a sweep: a plan's step time is predicted from a cost table
 * fitted on the OTHER plans' measurements, never its own, then simulated
 * (src/profiler/simulate/). That makes it a prediction rather than a replay.
 *
 * Compute cost of each (rank, segment) of the target program, first basis that applies:
 *  1. `same segment`: other plans on as many devices ran the same segment (same whole model,
 *     or the same stage: same nodes) — their fitted fixed + per-row line, which already holds
 *     the interference of that many devices. With only one row size among them, the line
 *     keeps the shape (fixed : per-row) of the reference below and passes through the measured
 *     point (`same segment, one size`).
 *  2. a reference on one device, slowed by the measured interference factor of N devices:
 *     the whole model's fixed + per-row line from one-device data plans (`one-device line`;
 *     with one row size among them, its fixed : per-row shape comes from the whole model on
 *     more devices, or from the calibrated nodes),
 *     or, for a stage, the per-node calibration costs (ONNX Runtime's operator profile at two
 *     row sizes, taken before each pipeline run) summed over the stage's nodes and scaled by
 *     the measured ratio of the whole model's time to its nodes' summed time (`per-node
 *     calibration`).
 *     A tensor plan's shard segments run in no other plan: the whole model's one-device line
 *     is scaled by the segment's share of the split work, Σ w(node) · share(node) over its
 *     nodes / Σ w(node) over the model, where share is 1/T for a node the shard planner
 *     splits over T devices and 1 for a replicated one, and w is the node's calibrated
 *     per-row cost (pipeline runs in the training set) or else its estimated FLOPs
 *     ({@link SplitShares}, which the runtime takes from the shard plan).
 * Two slowdowns separate a device of an N-device plan from the one-device reference:
 *  - the thread factor τ: it has fewer cores (intra-op threads) than the one device had, so
 *    it is slower even computing alone; measured as measured / reference on plans whose
 *    devices (almost) never compute together (one-micro-batch pipelines), 1 without one;
 *  - contention I: N devices sharing the machine do not each run at their own speed, but
 *    only while they compute at the same time: a data-parallel step overlaps its devices'
 *    compute fully, a pipeline of one micro-batch not at all. A trace's compute runs slower
 *    by 1 + (I − 1) · overlap, where overlap is the share of its compute time during which
 *    another device computes too ({@link computeOverlap}). I for N devices is the median over
 *    the other plans on N devices of (measured / (τ · reference) − 1) / overlap + 1.
 * For device counts never measured, the largest measured count's (an assumption the row
 * carries). References are scaled by τ; same-segment lines (measured on as many devices, so
 * with τ already in them) are fitted on compute durations with each trace's contention taken
 * out, and the target's contention comes from its own overlap in a first simulation without
 * it.
 * Transfers (copy, point to point, collective links, receive copy) are fitted on the other
 * plans of the same mode; host time per instruction on those with the same device count. A
 * tensor plan's all-reduces take the collective α + β·bytes fit on their buffer size; when
 * the same mode measured none, the collectives of every other plan; when no plan measured
 * one, each ring step costs a measured point-to-point transfer (pipeline sends).
 */
import { median } from '../stats';
import { computeOverlap, spanOverlaps } from '../analysis/overlap';
import { SpanKind, type DeviceMeta, type Lane, type Trace, type TraceMeta } from '../trace-format';
import type { Instruction, Program, Segment } from '../program';
import {
  bytesKey,
  computeKey,
  fitCostModel,
  fitTwoTerms,
  segmentKey,
  simulate,
  type ComputeCost,
  type CostModel,
  type Sample,
} from '../simulate';

/** The overlap measures moved to analysis/overlap (the pipeline model reads them too); kept here for callers. */
export { computeOverlap, spanOverlaps };

/** The measured runs of one plan. */
export interface MeasuredRuns {
  /** Unique id of the plan in the sweep. */
  id: string;
  traces: Trace[];
}

/** The traces a plan's prediction may be fitted on: every other plan's, never its own. */
export function leaveOneOut(targetId: string, all: readonly MeasuredRuns[]): Trace[] {
  return all.filter((p) => p.id !== targetId).flatMap((p) => p.traces);
}

/** What a prediction is asked for. */
export interface PredictTarget {
  program: Program;
  /** Metadata template for the predicted trace (a measured trace's, or one made for N devices). */
  meta: TraceMeta;
  lanes?: Lane[];
  /** Steps to simulate (all are alike; more make a longer timeline). */
  steps: number;
  /** Tensor and data × tensor plans: how the shard planner splits the model's nodes. */
  split?: SplitShares;
}

/**
 * How a tensor split divides the model's work, per node name: `share` is the part of the
 * node's one-device work each device does (1/T for a node split over T devices, 1 for a
 * replicated one; every node of the model is listed), `flops` its estimated FLOPs per row
 * (the weight of a node when no calibration gives its time; unknown counts as 0).
 */
export interface SplitShares {
  share: Record<string, number>;
  flops: Record<string, number>;
}

/**
 * The fraction of the whole model's one-device work a shard segment over `nodes` does:
 * Σ w · share over its nodes / Σ w over the model. Weights are the calibrated per-row costs
 * when every node with FLOPs has one and they are not all zero, else the FLOP estimates. On
 * a small model every node's calibrated line can be all fixed cost (the per-row term of a
 * few-microsecond kernel is lost in the noise of two row sizes and fitted as 0), which
 * weighs nothing. Null when no node has a weight either way.
 */
export function shardWorkFraction(nodes: readonly string[], split: SplitShares, calibrated: ReadonlyMap<string, ComputeCost>): { fraction: number; weights: 'calibration' | 'flops' } | null {
  const all = Object.keys(split.share);
  const byCal = (n: string): number => Math.max(0, calibrated.get(n)?.perRowUs ?? 0);
  const byFlops = (n: string): number => Math.max(0, split.flops[n] ?? 0);
  const calOk = calibrated.size > 0 && all.every((n) => calibrated.has(n) || !(byFlops(n) > 0)) && all.some((n) => byCal(n) > 0);
  const w = calOk ? byCal : byFlops;
  const total = all.reduce((a, n) => a + w(n), 0);
  if (!(total > 0)) return null;
  const part = nodes.reduce((a, n) => a + w(n) * (split.share[n] ?? 1), 0);
  return { fraction: part / total, weights: calOk ? 'calibration' : 'flops' };
}

export interface Prediction {
  /** Median predicted step, µs. */
  predictedUs: number;
  /** The bases used, as phrases (see the module comment). */
  basis: string[];
  /** Assumptions beyond the measurements (extrapolated interference). */
  assumptions: string[];
  costs: CostModel;
  trace: Trace;
}

/** Thrown when no measured plan gives a cost for some segment of the target. */
export class NoBasisError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'NoBasisError';
  }
}

const lineAt = (c: ComputeCost, rows: number): number => c.fixedUs + c.perRowUs * rows;
const devicesOf = (t: Trace): number => t.meta.program?.devices.length ?? t.lanes.length;

/** The one-device references and the interference factors, from a training set. */
export interface References {
  /** Whole model on one device, per phase: fixed + per-row. */
  whole: Map<string, ComputeCost>;
  /** Per node: calibrated fixed + per-row cost (operator profile, optimisations off). */
  nodes: Map<string, ComputeCost>;
  /** The calibrated nodes' sum over the whole model; null without calibration. */
  nodeSum: ComputeCost | null;
  /** Whole-model time / summed calibrated node time, at the calibration sizes (1 when not measured). */
  nodeScale: number;
  /**
   * Contention by device count: how much slower a device computes while the others compute
   * too (applied in proportion to the compute overlap).
   */
  interference: Map<number, number>;
  /**
   * Slowdown of a device of an N-device plan computing alone, against the one-device
   * reference: it has fewer cores (intra-op threads) than the one device had. Measured on
   * plans whose devices hardly compute together (one-micro-batch pipelines); absent, 1.
   */
  threads: Map<number, number>;
}

/** A segment's reference cost on one device and what it rests on, or null when the training set has none. */
function referenceOf(ref: References, seg: Segment, phase: string, split?: SplitShares): { cost: ComputeCost; basis: string } | null {
  switch (seg.kind) {
    case 'whole': {
      const own = ref.whole.get(phase);
      if (own) return { cost: own, basis: 'one-device line × interference' };
      // No other one-device plan: the calibrated nodes, summed over the whole model.
      if (!ref.nodeSum) return null;
      return { cost: { fixedUs: ref.nodeSum.fixedUs * ref.nodeScale, perRowUs: ref.nodeSum.perRowUs * ref.nodeScale }, basis: 'per-node calibration summed over the model × interference' };
    }
    case 'stage': {
      if (ref.nodes.size === 0) return null;
      let fixedUs = 0;
      let perRowUs = 0;
      for (const n of seg.nodes) {
        const c = ref.nodes.get(n);
        if (c) {
          fixedUs += c.fixedUs;
          perRowUs += c.perRowUs;
        }
      }
      return { cost: { fixedUs: fixedUs * ref.nodeScale, perRowUs: perRowUs * ref.nodeScale }, basis: 'per-node calibration × interference' };
    }
    case 'train-forward':
    case 'train-backward':
    case 'stage-forward':
    case 'stage-backward':
    case 'optimizer':
      // Sweeps measure inference plans; training segments have no per-node calibration.
      return null;
    case 'shard': {
      const whole = ref.whole.get(phase);
      if (!whole || !split) return null;
      const f = shardWorkFraction(seg.nodes, split, ref.nodes);
      if (!f) return null;
      const by = f.weights === 'calibration' ? 'per-node calibration' : 'estimated FLOPs';
      return { cost: { fixedUs: whole.fixedUs * f.fraction, perRowUs: whole.perRowUs * f.fraction }, basis: `one-device line × split share of the work (${by}) × interference` };
    }
    default: {
      const never: never = seg;
      throw new Error(`unknown segment ${JSON.stringify(never)}`);
    }
  }
}

/** Calls `f` for every run instruction of a program with its segment. */
function eachRun(p: Program, f: (rank: number, seg: Segment, ins: Extract<Instruction, { op: 'run' }>) => void): void {
  for (const d of p.devices) {
    for (const ins of d.instructions) {
      if (ins.op !== 'run') continue;
      const seg = p.segments.find((s) => s.id === ins.segment);
      if (seg) f(d.rank, seg, ins);
    }
  }
}

/** Compute slowdown of a trace with overlap `ov` when N devices computing together run I× slower. */
const slowdown = (interference: number, ov: number): number => 1 + (interference - 1) * ov;

/** `t` with its compute spans' durations divided by `factor` (the slowdown taken out). */
function withoutSlowdown(t: Trace, factor: number): Trace {
  if (factor === 1) return t;
  const s = t.spans;
  const dur = Float64Array.from(s.dur, (d, i) => (s.kind[i] === SpanKind.compute ? d / factor : d));
  return { ...t, spans: { ...s, dur } };
}

/** Fits the one-device references and the interference factors from `training`. */
export function fitReferences(training: readonly Trace[]): References {
  // Per node: the calibration records of pipeline runs (two sizes each), fitted together.
  const samples = new Map<string, Sample[]>();
  const calibrations: { rows: number; total: number }[] = [];
  for (const t of training) {
    const plan = t.meta.plan;
    if (plan.mode !== 'pipeline' || !plan.calibration) continue;
    const cal = plan.calibration;
    const sets = [{ rows: cal.rows, costs: cal.nodeCostUs }, ...(cal.alt ? [{ rows: cal.alt.rows, costs: cal.alt.nodeCostUs }] : [])];
    for (const s of sets) {
      let total = 0;
      for (const [node, us] of Object.entries(s.costs)) {
        total += us;
        const list = samples.get(node) ?? [];
        list.push({ a: s.rows, b: 1, d: us });
        samples.set(node, list);
      }
      calibrations.push({ rows: s.rows, total });
    }
  }
  const nodes = new Map<string, ComputeCost>();
  const nodeSum: ComputeCost = { fixedUs: 0, perRowUs: 0 };
  for (const [node, list] of samples) {
    const f = fitTwoTerms(list);
    nodes.set(node, { fixedUs: f.y, perRowUs: f.x });
    nodeSum.fixedUs += f.y;
    nodeSum.perRowUs += f.x;
  }
  const wholeLines = (n: number): Map<string, ComputeCost> => {
    const out = new Map<string, ComputeCost>();
    const set = training.filter((t) => devicesOf(t) === n && t.meta.program?.segments.some((s) => s.kind === 'whole'));
    if (set.length === 0) return out;
    for (const [key, c] of Object.entries(fitCostModel(set).compute)) {
      const [rank, seg, phase] = key.split('|');
      if (rank === '0' && seg === 'whole' && phase !== undefined) out.set(phase, c);
    }
    return out;
  };
  // Lines of the whole model on several devices: interference scales them, so their shape
  // (fixed : per-row) is the one-device line's.
  const counts = [...new Set(training.map(devicesOf))].filter((n) => n > 1).sort((a, b) => a - b);
  const shapes = counts.map(wholeLines);
  const whole = new Map<string, ComputeCost>();
  for (const [phase, c] of wholeLines(1)) {
    const r0 = c.rowSizes?.[0] ?? 0;
    if ((c.rowSizes?.length ?? 0) >= 2 || r0 <= 0) {
      whole.set(phase, { fixedUs: c.fixedUs, perRowUs: c.perRowUs });
      continue;
    }
    // One row size cannot split fixed from per-row cost: take the shape of a line with two
    // sizes (the whole model on more devices, else the calibrated nodes' sum) through the
    // measured point.
    const shape = shapes.map((m) => m.get(phase)).find((x) => x !== undefined && (x.rowSizes?.length ?? 0) >= 2) ?? (nodes.size > 0 ? nodeSum : null);
    if (shape && lineAt(shape, r0) > 0) {
      const s = lineAt(c, r0) / lineAt(shape, r0);
      whole.set(phase, { fixedUs: shape.fixedUs * s, perRowUs: shape.perRowUs * s });
    } else whole.set(phase, { fixedUs: c.fixedUs, perRowUs: c.perRowUs });
  }
  const forward = whole.get('forward');
  const scales = forward ? calibrations.filter((c) => c.total > 0).map((c) => lineAt(forward, c.rows) / c.total) : [];
  const nodeScale = scales.length > 0 ? median(scales) : 1;
  const ref: References = { whole, nodes, nodeSum: nodes.size > 0 ? nodeSum : null, nodeScale, interference: new Map(), threads: new Map() };
  // Measured compute on N devices against the one-device reference, per run instruction.
  const ratiosOf = (keep: (ov: number) => boolean): Map<number, { ratio: number; ov: number }[]> => {
    const out = new Map<number, { ratio: number; ov: number }[]>();
    for (const t of training) {
      const n = devicesOf(t);
      const program = t.meta.program;
      const ov = computeOverlap(t);
      if (n < 2 || !program || !keep(ov)) continue;
      const fit = fitCostModel([t]);
      eachRun(program, (rank, seg, ins) => {
        const measured = fit.compute[computeKey(rank, segmentKey(seg), ins.phase)];
        const reference = referenceOf(ref, seg, ins.phase);
        if (!measured || !reference) return;
        const r = lineAt(reference.cost, ins.rows);
        if (r > 0) out.set(n, [...(out.get(n) ?? []), { ratio: lineAt(measured, ins.rows) / r, ov }]);
      });
    }
    return out;
  };
  // Fewer cores per device: plans whose devices compute (almost) alone show it undiluted.
  // Devices never run faster on fewer cores; a median below 1 is the machine's noise.
  for (const [n, list] of ratiosOf((ov) => ov <= MAX_ALONE_OVERLAP)) ref.threads.set(n, Math.max(1, median(list.map((x) => x.ratio))));
  // Without such a plan (a sweep of M ≥ 2 pipelines, say), the spans that ran alone in the
  // others: a pipeline's fill and drain, a stage waiting on its neighbour. Otherwise all of a
  // device's slowdown would pass for contention, which is then charged in proportion to the
  // overlap: two one-thread workers on two cores that do not slow each other at all looked
  // 2× contended (the one-device reference had both cores), and pipelines were predicted
  // 10–27 % off, too fast at M = 2 and too slow at M = 4.
  for (const [n, list] of aloneSpanRatios(training, ref)) if (!ref.threads.has(n)) ref.threads.set(n, Math.max(1, median(list)));
  // Contention: what is left once the thread factor is divided out, per unit of overlap.
  // Traces whose devices hardly compute together say little about it.
  for (const [n, list] of ratiosOf((ov) => ov >= MIN_OVERLAP)) {
    const tau = ref.threads.get(n) ?? 1;
    ref.interference.set(n, Math.max(1, median(list.map((x) => 1 + (x.ratio / tau - 1) / x.ov))));
  }
  return ref;
}

/**
 * Per device count: measured / reference cost of the compute spans that ran alone (another
 * device computing for at most {@link MAX_ALONE_SPAN_OVERLAP} of the span), per run
 * instruction, over multi-device traces with enough such spans.
 */
function aloneSpanRatios(training: readonly Trace[], ref: References): Map<number, number[]> {
  const out = new Map<number, number[]>();
  for (const t of training) {
    const n = devicesOf(t);
    const program = t.meta.program;
    if (n < 2 || !program) continue;
    const ov = spanOverlaps(t);
    const fit = fitCostModel([t], { keepCompute: (_, i) => ov[i]! <= MAX_ALONE_SPAN_OVERLAP });
    eachRun(program, (rank, seg, ins) => {
      const measured = fit.compute[computeKey(rank, segmentKey(seg), ins.phase)];
      const reference = referenceOf(ref, seg, ins.phase);
      if (!measured || !reference) return;
      const r = lineAt(reference.cost, ins.rows);
      if (r > 0) out.set(n, [...(out.get(n) ?? []), lineAt(measured, ins.rows) / r]);
    });
  }
  return out;
}

/** Most overlap with other devices' compute for a span to count as computing alone. */
const MAX_ALONE_SPAN_OVERLAP = 0.1;

/** Least compute overlap for a trace to count in the interference estimate. */
const MIN_OVERLAP = 0.25;
/** Most compute overlap for a trace to show the thread factor (devices computing alone). */
const MAX_ALONE_OVERLAP = 0.05;

/** The thread factor for `n` devices: measured, else the largest measured smaller count's, else 1. */
function threadFactorFor(ref: References, n: number): number {
  if (n <= 1) return 1;
  const own = ref.threads.get(n);
  if (own !== undefined) return own;
  const smaller = [...ref.threads.keys()].filter((k) => k < n).sort((a, b) => b - a);
  return smaller.length > 0 ? ref.threads.get(smaller[0]!)! : 1;
}

/** The interference factor for `n` devices, and the assumption it rests on when not measured. */
function interferenceFor(ref: References, n: number): { factor: number; assumption: string | null } {
  if (n <= 1) return { factor: 1, assumption: null };
  const own = ref.interference.get(n);
  if (own !== undefined) return { factor: own, assumption: null };
  const measured = [...ref.interference.keys()].filter((k) => k < n).sort((a, b) => b - a);
  if (measured.length > 0) {
    const k = measured[0]!;
    const f = ref.interference.get(k)!;
    return { factor: f, assumption: `interference of ${n} devices taken as measured for ${k} (×${f.toFixed(2)}): assumes each device has cores of its own as the measured ones had` };
  }
  return { factor: 1, assumption: `no interference measured for ${n} devices; taken as none` };
}

/** Per-row bytes of transfers whose compiler estimate is 0, by operation and tensors, from the training set. */
function bytesPerRow(training: readonly Trace[]): Map<string, number> {
  const acc = new Map<string, number[]>();
  for (const t of training) {
    const p = t.meta.program;
    if (!p) continue;
    const fit = fitCostModel([t]);
    for (const d of p.devices) {
      const runs = d.instructions.filter((i) => i.op === 'run').length;
      d.instructions.forEach((ins, idx) => {
        if (ins.op === 'run' || ins.op === 'collective' || ins.op === 'collective-start' || ins.op === 'collective-wait') return;
        const m = fit.bytes?.[bytesKey(d.rank, idx)];
        if (!m || m.bytes <= 0) return;
        const rows = 'rows' in ins ? ins.rows.count : p.batch / Math.max(1, runs);
        const key = `${ins.op}:${ins.tensors.join(',')}`;
        acc.set(key, [...(acc.get(key) ?? []), m.bytes / rows]);
      });
    }
  }
  return new Map([...acc].map(([k, v]) => [k, median(v)]));
}

/**
 * Predicts `target` from `training` (which must not hold the target's own runs: see
 * {@link leaveOneOut}). Throws {@link NoBasisError} when a segment has no basis.
 */
export function predictFrom(target: PredictTarget, training: readonly Trace[], refs: References = fitReferences(training)): Prediction {
  const program = target.program;
  const n = program.devices.length;
  const withProgram = training.filter((t) => t.meta.program);
  const sameN = withProgram.filter((t) => devicesOf(t) === n);
  const sameMode = withProgram.filter((t) => t.meta.program!.mode === program.mode);
  const sameModeN = sameMode.filter((t) => devicesOf(t) === n);
  const costs: CostModel = { compute: {}, transfers: { copy: { alphaUs: 0, bytesPerUs: Infinity }, p2p: { alphaUs: 0, bytesPerUs: Infinity }, collective: { alphaUs: 0, bytesPerUs: Infinity } }, interference: {}, notes: [] };
  const basis = new Set<string>();
  const assumptions = new Set<string>();
  // Compute, per rank and segment.
  const segKeys = new Set<string>();
  eachRun(program, (_, seg) => segKeys.add(segmentKey(seg)));
  const inter = interferenceFor(refs, n);
  const tau = threadFactorFor(refs, n);
  // Same-segment lines hold each trace's own slowdown; take it out, so the target's own is put back once.
  const sharing = sameN
    .filter((t) => t.meta.program!.segments.some((s) => segKeys.has(segmentKey(s))))
    .map((t) => withoutSlowdown(t, slowdown(inter.factor, computeOverlap(t))));
  const shared = sharing.length > 0 ? fitCostModel(sharing) : null;
  eachRun(program, (rank, seg, ins) => {
    const key = computeKey(rank, segmentKey(seg), ins.phase);
    if (costs.compute[key]) return;
    const own = shared?.compute[key];
    const found = referenceOf(refs, seg, ins.phase, target.split);
    const ref = found?.cost ?? null;
    if (own && (own.rowSizes?.length ?? 0) >= 2) {
      const sizes = own.rowSizes!;
      const lo = sizes[0]!;
      const hi = sizes[sizes.length - 1]!;
      const slope = ref ? ref.perRowUs * tau : null;
      if (slope !== null && slope > 0 && (ins.rows > hi || ins.rows < lo)) {
        // Beyond the rows the other plans measured, the line through their few sizes knows
        // least about the slope (on a stage whose fixed cost — streaming its weights — is most
        // of its time, run-to-run noise of a few per cent is the whole slope): the slope of
        // the reference (calibrated per row, with this device's thread factor) carries on from
        // the nearest measured size.
        // No more than in proportion to the rows (a cost with no fixed part), either way.
        const at = ins.rows > hi ? hi : lo;
        const byRef = lineAt(own, at) + slope * (ins.rows - at);
        const proportional = lineAt(own, at) * (ins.rows / at);
        const value = ins.rows > hi ? Math.min(byRef, proportional) : Math.max(byRef, proportional);
        costs.compute[key] = { fixedUs: value - slope * ins.rows, perRowUs: slope };
        basis.add('same segment on as many devices in other plans, the reference per-row cost beyond their rows');
      } else {
        costs.compute[key] = { fixedUs: own.fixedUs, perRowUs: own.perRowUs };
        basis.add('same segment on as many devices in other plans');
      }
    } else if (own && ref && lineAt(ref, own.rowSizes?.[0] ?? ins.rows) > 0) {
      const r0 = own.rowSizes?.[0] ?? ins.rows;
      const s = lineAt(own, r0) / lineAt(ref, r0);
      costs.compute[key] = { fixedUs: ref.fixedUs * s, perRowUs: ref.perRowUs * s };
      basis.add('same segment in other plans (one row size; fixed/per-row shape of the one-device reference)');
    } else if (own) {
      costs.compute[key] = { fixedUs: own.fixedUs, perRowUs: own.perRowUs };
      basis.add('same segment in other plans (one row size, scaled proportionally)');
    } else if (ref) {
      // The reference ran on one device with all the cores; a device of this plan has fewer.
      costs.compute[key] = { fixedUs: ref.fixedUs * tau, perRowUs: ref.perRowUs * tau };
      if (inter.assumption) assumptions.add(inter.assumption);
      basis.add(found!.basis);
    } else {
      throw new NoBasisError(`no measured plan gives a cost for ${segmentKey(seg)} (${ins.phase}) on ${n} device(s)`);
    }
  });
  // Transfers from plans of the same mode (any device count), else from all.
  const linkSet = sameMode.length > 0 ? sameMode : withProgram;
  if (linkSet.length > 0) {
    const links = fitCostModel(linkSet);
    costs.transfers = links.transfers;
    if (links.recv) costs.recv = links.recv;
  }
  const collectives = program.devices.some((d) => d.instructions.some((i) => i.op === 'collective' || i.op === 'collective-start'));
  if (collectives) {
    const free = (l: CostModel['transfers']['collective']): boolean => l.alphaUs === 0 && l.bytesPerUs === Infinity;
    let from = sameMode.length > 0 ? 'other plans of this mode' : 'every other plan';
    if (free(costs.transfers.collective) && sameMode.length > 0 && withProgram.length > sameMode.length) {
      costs.transfers = { ...costs.transfers, collective: fitCostModel(withProgram).transfers.collective };
      from = 'every other plan';
    }
    if (free(costs.transfers.collective) && !free(costs.transfers.p2p)) {
      // A ring collective is 2(N−1) point-to-point steps over the same channels: without a
      // measured collective, each step costs what a measured send/receive pair does.
      costs.transfers = { ...costs.transfers, collective: { ...costs.transfers.p2p } };
      basis.add('collectives: ring of point-to-point steps, α + β·bytes of the sends and receives of other plans');
    } else if (free(costs.transfers.collective)) assumptions.add('no collective or point-to-point transfer measured in the other plans: collectives taken as free');
    else basis.add(`collectives: α + β·bytes fitted on ${from}`);
  }
  // Host time per instruction: same mode and device count, else same mode, else all.
  const hostSet = sameModeN.length > 0 ? sameModeN : linkSet;
  if (hostSet.length > 0) {
    const host = fitCostModel(hostSet).hostUs ?? {};
    const all = Object.values(host);
    const fallback = all.length > 0 ? median(all) : 0;
    costs.hostUs = {};
    for (const d of program.devices) costs.hostUs[String(d.rank)] = host[String(d.rank)] ?? fallback;
  }
  // Bytes the compiler could not estimate (outputs gathered), per row as measured elsewhere.
  const perRow = bytesPerRow(withProgram);
  costs.bytes = {};
  for (const d of program.devices) {
    const runs = d.instructions.filter((i) => i.op === 'run').length;
    d.instructions.forEach((ins, idx) => {
      if (ins.op === 'run' || ins.op === 'collective' || ins.op === 'collective-start' || ins.op === 'collective-wait' || ins.bytes > 0) return;
      const b = perRow.get(`${ins.op}:${ins.tensors.join(',')}`);
      if (b === undefined) return;
      const rows = 'rows' in ins ? ins.rows.count : program.batch / Math.max(1, runs);
      costs.bytes![bytesKey(d.rank, idx)] = { op: ins.op, micro: ins.micro, bytes: b * rows };
    });
  }
  const opts = { steps: target.steps, meta: target.meta, ...(target.lanes ? { lanes: target.lanes } : {}) };
  // The target's slowdown: the measured interference, scaled by how much its devices would
  // compute together (from a first run without it).
  if (n > 1 && inter.factor !== 1) {
    const f = slowdown(inter.factor, computeOverlap(simulate(program, costs, { ...opts, steps: 1 })));
    for (const d of program.devices) costs.interference![String(d.rank)] = f;
  }
  const trace = simulate(program, costs, opts);
  const predictedUs = median(trace.steps.map((w) => w.endUs - w.startUs));
  return { predictedUs, basis: [...basis], assumptions: [...assumptions], costs, trace };
}

/**
 * Metadata for a predicted plan on `n` devices of the kind `template` ran on: the template's
 * first device repeated, labelled as predicted.
 */
export function predictedMeta(template: TraceMeta, n: number, plan: TraceMeta['plan']): TraceMeta {
  const d0 = template.devices[0]!;
  const kind = d0.kind;
  const devices: DeviceMeta[] = Array.from({ length: n }, (_, i) => ({ ...d0, id: `${kind}:${i}`, label: `${kind}:${i} (predicted)`, sharesPhysicalUnit: false }));
  return { ...template, plan, mode: plan.mode, devices, source: 'predicted', notes: [...template.notes, `predicted for ${n} ${kind} devices`] };
}
