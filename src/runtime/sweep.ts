/**
 * `parallax sweep`: measure every plan that fits this machine, interleaved and repeated,
 * predict each from the others (leave-one-out, src/profiler/sweep/predict.ts), predict device
 * counts the machine does not have, and put it all in one table.
 *
 *   enumerate (pure) → resolve pipeline cuts (dry runs: calibrate and partition) →
 *   measure: `repeats` rounds, each running every plan once (round robin, so drift hits all
 *   plans alike) → predict each measured plan from the other plans' traces, and the
 *   predicted-only plans from all of them → memory per device → table
 */
import { mkdtempSync, rmSync } from 'node:fs';
import * as os from 'node:os';
import { join } from 'node:path';
import { UserError } from '../common/errors';
import { profile, type ProfileOutcome, type ProfileOptions } from './api';
import type { ProfileRequest } from './protocol';
import { parseDeviceSpec } from './device/discovery';
import { loadModel, type ModelIR } from './onnx/model';
import { memoryTable } from './tensor/memory';
import { planTensorSharding, type TensorShardPlan } from './tensor/shard-plan';
import { sweepSplit } from './tensor/sweep-split';
import { enumerateSweep, type SweepCandidate, type SweepMode } from '../profiler/sweep/enumerate';
import { fitReferences, leaveOneOut, NoBasisError, predictedMeta, predictFrom, type MeasuredRuns, type Prediction } from '../profiler/sweep/predict';
import { assembleSweep, type PlanOutcome } from '../profiler/sweep/table';
import type { SweepPlanRow, SweepResult } from '../profiler/sweep/schema';
import { readTrace } from '../profiler/trace-io';
import { summarize } from '../profiler/summary';
import { median } from '../profiler/stats';
import type { Trace } from '../profiler/trace-format';
import type { Plan } from '../profiler/plan';
import type { Program } from '../profiler/program';

/** Model input flags, as `profile` takes them. */
export type SweepInputFlags = Pick<ProfileRequest, 'batchDim' | 'dims' | 'inputShapes' | 'values'>;

export interface SweepRequest {
  modelPath: string;
  modelLabel: string;
  /** One device kind, e.g. `cpu:2`: measured plans use 1..N of them. */
  devices: string;
  modes: SweepMode[];
  batches: number[];
  microBatches: number[];
  repeats: number;
  steps: number;
  warmup: number;
  seed?: number;
  /** Device counts predicted beyond this machine's (default 4 and 8). */
  predictDevices?: number[];
  flags?: SweepInputFlags;
  /** Rows predicted elsewhere (other hardware, multi-node), added to the table as they are. */
  extraPredicted?: SweepPlanRow[];
  onProgress?: (message: string, done: number, total: number) => void;
  signal?: AbortSignal;
  nodePath?: string;
}

export interface SweepOutcome {
  result: SweepResult;
  /** Predicted trace per plan label (measured plans' predictions and predicted-only plans). */
  predicted: Map<string, Trace>;
  /** The first round's measured trace per measured plan label. */
  measured: Map<string, Trace>;
  /** Every measured run, per plan label (what the leave-one-out fits were made from). */
  runs: MeasuredRuns[];
}

const errText = (e: unknown): string => (e instanceof Error ? e.message : String(e)).split('\n')[0]!;

/** A candidate with its resolved plan (pipeline cuts) and, for predicted-only plans, its program. */
interface Resolved {
  c: SweepCandidate;
  plan: Plan;
  program: Program | null;
}

/** Constant nodes are copied into every stage that reads them, so they are no cut points. */
function cutCandidates(ir: ModelIR, stageNodes: readonly string[]): string[] {
  const constants = new Set(ir.nodes.filter((n) => n.opType === 'Constant').map((n) => n.name));
  return stageNodes.filter((n) => !constants.has(n));
}

/** Runs the sweep. Throws {@link UserError} for bad input. */
export async function runSweep(req: SweepRequest): Promise<SweepOutcome> {
  const specs = parseDeviceSpec(req.devices);
  const kinds = [...new Set(specs.map((s) => s.kind))];
  if (kinds.length !== 1) throw new UserError(`--devices ${req.devices}: a sweep takes one device kind (e.g. cpu:2), since its plans use 1..N devices of it`);
  const kind = kinds[0]!;
  const count = specs.reduce((s, r) => s + r.count, 0);
  const ir = await loadModel(req.modelPath);
  const splits = sweepSplit(ir, req.flags?.dims);
  const en = enumerateSweep({
    deviceKind: kind,
    count,
    modes: req.modes,
    batches: req.batches,
    microBatches: req.microBatches,
    predictDevices: req.predictDevices ?? [4, 8],
    steps: req.steps,
    warmup: req.warmup,
    seed: req.seed ?? 0,
    ...(req.modes.includes('tensor') || req.modes.includes('hybrid') ? { tensor: splits.verdict(Math.max(2, count)) } : {}),
  });
  const skipped = [...en.skipped];
  const opts: ProfileOptions = { ...(req.signal ? { signal: req.signal } : {}), ...(req.nodePath ? { nodePath: req.nodePath } : {}) };
  const request = (plan: Plan, extra: Partial<ProfileRequest> = {}): ProfileRequest => ({
    modelPath: req.modelPath,
    modelLabel: req.modelLabel,
    plan,
    capture: true,
    opLevel: false,
    baseline: false,
    // The sweep measures every plan itself; a probe per plan would only add time.
    probe: false,
    outPath: null,
    ...(req.flags ?? {}),
    ...extra,
  });
  const dry = (plan: Plan): Promise<ProfileOutcome> => profile(request(plan, { dryRun: true }), opts);
  const progress = (m: string, d: number, t: number): void => req.onProgress?.(m, d, t);

  // Pipeline cuts: one dry run per (stages, batch) gives the balanced cut; the shifted cut
  // moves its first cut earlier, to a node the partitioner accepts.
  const cuts = new Map<string, { balanced: string[]; shifted: string[] | null } | string>();
  const resolved: Resolved[] = [];
  const candidates = en.candidates;
  for (const [i, c] of candidates.entries()) {
    if (c.plan.mode !== 'pipeline') {
      resolved.push({ c, plan: c.plan, program: null });
      continue;
    }
    const key = `${c.devices}|${c.plan.batch}`;
    if (!cuts.has(key)) {
      progress(`partitioning ${c.devices} stages at batch ${c.plan.batch}`, i, candidates.length);
      try {
        const got = await dry(c.plan);
        const balanced = got.planInfo?.cuts ?? [];
        const stage0 = got.planInfo?.program.segments.find((s) => s.kind === 'stage' && s.stage === 0);
        let shifted: string[] | null = null;
        if (c.kind === 'measured' && stage0 && stage0.kind === 'stage' && balanced.length > 0) {
          const nodes = cutCandidates(ir, stage0.nodes);
          for (const share of [0.6, 0.75, 0.45]) {
            const at = nodes[Math.max(0, Math.min(nodes.length - 2, Math.floor(nodes.length * share)))];
            if (at === undefined || at === balanced[0]) continue;
            const cand = [at, ...balanced.slice(1)];
            try {
              await dry({ ...c.plan, cuts: cand });
              shifted = cand;
              break;
            } catch {
              // Refused (e.g. a cut a residual crosses); try the next share.
            }
          }
        }
        cuts.set(key, { balanced, shifted });
      } catch (e) {
        if (req.signal?.aborted) throw e;
        cuts.set(key, errText(e));
      }
    }
    const got = cuts.get(key)!;
    if (typeof got === 'string') {
      skipped.push({ label: c.label, reason: got });
      continue;
    }
    const chosen = c.cut === 'shifted' ? got.shifted : got.balanced;
    if (chosen === null) {
      skipped.push({ label: c.label, reason: 'no shifted cut the partitioner accepts' });
      continue;
    }
    resolved.push({ c, plan: { ...c.plan, cuts: chosen }, program: null });
  }

  // Predicted-only plans: the real compiler's program (a dry run), not run.
  for (const r of resolved.filter((x) => x.c.kind === 'predicted')) {
    try {
      r.program = (await dry(r.plan)).planInfo?.program ?? null;
    } catch (e) {
      if (req.signal?.aborted) throw e;
      skipped.push({ label: r.c.label, reason: errText(e) });
    }
  }

  // Measure: round robin over the plans, `repeats` rounds.
  const work = mkdtempSync(join(os.tmpdir(), 'parallax-sweep-'));
  const measuredPlans = resolved.filter((r) => r.c.kind === 'measured');
  const runs = new Map<string, { traces: Trace[]; summaries: NonNullable<ProfileOutcome['summary']>[] }>();
  const failed = new Set<string>();
  try {
    const total = req.repeats * measuredPlans.length;
    let done = 0;
    for (let round = 0; round < req.repeats; round++) {
      for (const [i, r] of measuredPlans.entries()) {
        if (failed.has(r.c.label)) continue;
        progress(`round ${round + 1}/${req.repeats}: ${r.c.label}`, done, total);
        const out = join(work, `${i}-${round}.parallax.json`);
        try {
          const got = await profile(request(r.plan, { outPath: out }), opts);
          const trace = await readTrace(out);
          rmSync(out, { force: true });
          const entry = runs.get(r.c.label) ?? { traces: [], summaries: [] };
          entry.traces.push(trace);
          entry.summaries.push(got.summary);
          runs.set(r.c.label, entry);
        } catch (e) {
          if (req.signal?.aborted) throw e;
          failed.add(r.c.label);
          runs.delete(r.c.label);
          skipped.push({ label: r.c.label, reason: `run failed: ${errText(e)}` });
        }
        done++;
      }
    }
  } finally {
    rmSync(work, { recursive: true, force: true });
  }

  // Predict: each measured plan from the others; predicted-only plans from all.
  const all: MeasuredRuns[] = [...runs].map(([id, v]) => ({ id, traces: v.traces }));
  const allTraces = all.flatMap((p) => p.traces);
  const predicted = new Map<string, Trace>();
  const outcomes: PlanOutcome[] = [];
  const qualityReasons: string[] = [];
  const fullFitUs: Record<string, number> = {};
  const memory = memoryOf(ir, req.flags?.dims);
  const predictOne = (program: Program, template: Trace, steps: number, training: Trace[], plan: Plan): { p: Prediction | null; why: string } => {
    try {
      const meta = template.meta.program?.devices.length === program.devices.length ? template.meta : predictedMeta(template.meta, program.devices.length, plan);
      const lanes = meta === template.meta ? template.lanes : undefined;
      const split = splits.sharesFor(plan);
      const p = predictFrom({ program, meta: { ...meta, plan }, ...(lanes ? { lanes } : {}), steps, ...(split ? { split } : {}) }, training, fitReferences(training));
      return { p, why: p.basis.join('; ') };
    } catch (e) {
      if (e instanceof NoBasisError) return { p: null, why: `no prediction: ${e.message}` };
      throw e;
    }
  };
  for (const r of resolved) {
    const m = memory(r.plan, r.c.devices);
    if (r.c.kind === 'measured') {
      const got = runs.get(r.c.label);
      if (!got) continue;
      const t0 = got.traces[0]!;
      const { p, why } = predictOne(t0.meta.program!, t0, t0.steps.length, leaveOneOut(r.c.label, all), t0.meta.plan as Plan);
      if (p) predicted.set(r.c.label, p.trace);
      if (r.plan.mode === 'data') {
        const full = predictOne(t0.meta.program!, t0, t0.steps.length, allTraces, t0.meta.plan as Plan).p;
        if (full) fullFitUs[r.c.label] = full.predictedUs;
      }
      for (const s of got.summaries) if (s.measurementQuality.verdict !== 'good') qualityReasons.push(...s.measurementQuality.reasons);
      const bubbles = got.summaries.flatMap((s) => (s.bubbleFraction !== undefined ? [s.bubbleFraction] : []));
      outcomes.push({
        label: r.c.label,
        plan: t0.meta.plan as Plan,
        kind: 'measured',
        devices: r.c.devices,
        stepTimesUs: got.traces.flatMap((t) => t.steps.map((w) => w.endUs - w.startUs)),
        runs: got.traces.length,
        qualities: got.summaries.map((s) => s.measurementQuality.verdict),
        predictedUs: p?.predictedUs ?? null,
        predictionBasis: why,
        assumptions: p?.assumptions ?? [],
        bubble: bubbles.length > 0 ? median(bubbles) : null,
        commShare: median(got.summaries.map((s) => s.totals.commShare)),
        ...m,
      });
    } else {
      if (!r.program || allTraces.length === 0) continue;
      const template = allTraces.find((t) => t.meta.plan.mode === r.plan.mode) ?? allTraces[0]!;
      const { p, why } = predictOne(r.program, template, 3, allTraces, r.plan);
      if (p) predicted.set(r.c.label, p.trace);
      const s = p ? summarize(p.trace) : null;
      outcomes.push({
        label: r.c.label,
        plan: r.plan,
        kind: 'predicted',
        devices: r.c.devices,
        stepTimesUs: [],
        runs: 0,
        qualities: [],
        predictedUs: p?.predictedUs ?? null,
        predictionBasis: why,
        assumptions: [`${r.c.devices} ${kind} devices of this machine's kind, not measured`, ...(p?.assumptions ?? [])],
        bubble: s?.bubbleFraction ?? null,
        commShare: s?.totals.commShare ?? null,
        ...m,
      });
    }
  }
  const interference: Record<string, number> = {};
  // What the table reports: the whole slowdown of a device of N computing with the others (thread factor × contention).
  const refs = fitReferences(allTraces);
  for (const [n, f] of refs.interference) interference[String(n)] = f * (refs.threads.get(n) ?? 1);
  const result = assembleSweep({
    model: req.modelLabel,
    devices: req.devices,
    settings: { modes: req.modes, batches: req.batches, microBatches: req.microBatches, repeats: req.repeats, steps: req.steps, warmup: req.warmup },
    outcomes,
    ...(req.extraPredicted ? { extraPredicted: req.extraPredicted } : {}),
    qualityReasons,
    fullFitUs,
    interference,
    notRunnable: en.notRunnable,
    skipped,
  });
  const measured = new Map([...runs].map(([label, v]) => [label, v.traces[0]!] as const));
  return { result, predicted, measured, runs: all };
}

/**
 * Memory per device of a plan (the largest device: parameters + estimated peak activations)
 * and whether it fits this machine's memory shared evenly by the plan's devices.
 */
function memoryOf(ir: ModelIR, dims: Record<string, number> | undefined): (plan: Plan, devices: number) => { memoryPerDeviceBytes: number | null; fits: boolean | null } {
  const capacity = os.totalmem();
  const shardOrReason = (n: number): TensorShardPlan | { reason: string; devices: number } => {
    try {
      return planTensorSharding(ir, n, { dimValues: dims ?? {} });
    } catch (e) {
      return { reason: errText(e), devices: n };
    }
  };
  return (plan, devices) => {
    try {
      const t = memoryTable(ir, {
        devices,
        batch: plan.batch,
        microBatches: plan.mode === 'pipeline' ? plan.microBatches : 1,
        capacityBytes: capacity / devices,
        tensor: plan.mode === 'tensor' ? shardOrReason(devices) : { reason: 'not this plan' },
        ...(plan.mode === 'hybrid' && 'tensor' in plan ? { hybrids: [{ data: plan.data, tensor: shardOrReason(plan.tensor) }] } : {}),
        ...(dims ? { dimValues: dims } : {}),
      });
      const entry = t.plans.find((p) => p.mode === plan.mode);
      if (!entry || entry.kind !== 'planned') return { memoryPerDeviceBytes: null, fits: null };
      return { memoryPerDeviceBytes: entry.maxBytes, fits: entry.fits };
    } catch {
      return { memoryPerDeviceBytes: null, fits: null };
    }
  };
}

