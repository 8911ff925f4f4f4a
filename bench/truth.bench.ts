/**
 * Ground truth for findings: every finding's suggestion is run and its prediction compared
 * with the step time measured after the change, on a corpus of real models (PP-OCRv4
 * det/rec/cls, openWakeWord melspectrogram and embedding, silero VAD v4 and v5) and generated
 * ones (the demo MLP and a smaller variant). Table-driven: {@link CORPUS} lists the models with
 * the input flags each needs, {@link PLANS} the plans every model is run with.
 *
 * Per model and plan:
 *  - truth: base run → each finding with a prediction and plan parameters → the same request
 *    with those parameters (`withOverrides`) → changed run; repeated REPEATS times, interleaved
 *    (base, change A, change B, base, …). Error = predicted / measured-after − 1.
 *  - stability: the base plan is run STABILITY times in all (the truth repetitions' base runs
 *    and extra ones); how many runs give the most common set of finding ids.
 *  - recall: plans built to be improvable (M = 1, deliberately unbalanced cuts, uneven shards)
 *    name the rule that should fire; the share of their runs in which it fired.
 * Then: one device against its own configuration (speedup 1.00× within its interval) on the
 * demo, a small CNN and PP-OCR cls; capture overhead (capture on vs off, interleaved) per model.
 *
 * Targets: ≥ 90 % of suggestions within ±15 %; none measured slower than before by more than
 * the run's noise; the same findings in ≥ 4 of 5 identical runs (quiet machine); recall ≥ 90 %;
 * one device reads 1.00× within its interval; capture overhead ≤ 3 %.
 *
 *   npm run bench -- truth
 *   PARALLAX_TRUTH_QUICK=1 npm run bench -- truth        one model, one repetition
 *   PARALLAX_TRUTH_MODELS=cls,demo npm run bench -- truth   a subset of the corpus
 *   PARALLAX_TRUTH_PLANS=shards,M=1 …   plans whose name contains one of these
 *   PARALLAX_TRUTH_HELD=1 …     also run suggestions of findings held back for poor measurement quality
 */
import * as os from 'node:os';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { spawnSync } from 'node:child_process';
import { profile, type ProfileOutcome } from '../src/runtime/api';
import { defaultCacheDir, ensureDemoModel } from '../src/runtime/onnx/demo-model';
import { parseModel } from '../src/runtime/onnx/model';
import { makePlan, type PlanFields } from '../src/profiler/plan';
import { DEFAULT_MIN_TIME_S, DEFAULT_STEPS, type ProfileRequest } from '../src/runtime/protocol';
import type { Finding } from '../src/profiler/findings';
import { median } from '../src/profiler/stats';
import { parseProcStat } from '../src/runtime/device/schedstat';
import {
  ocrClsModelPath,
  ocrDetModelPath,
  ocrRecModelPath,
  sileroV4ModelPath,
  sileroV5ModelPath,
  wakewordEmbeddingModelPath,
  wakewordMelspectrogramModelPath,
} from '../test/helpers/models';
import { withOverrides, type DemoOverrides } from './demo-plan';

const QUICK = process.env['PARALLAX_TRUTH_QUICK'] === '1';
const INCLUDE_HELD = process.env['PARALLAX_TRUTH_HELD'] === '1';
const ONLY = (process.env['PARALLAX_TRUTH_MODELS'] ?? '').split(',').map((s) => s.trim()).filter(Boolean);
/** Plans whose name contains one of these (comma-separated), e.g. `shards,M=1`. */
const ONLY_PLANS = (process.env['PARALLAX_TRUTH_PLANS'] ?? '').split(',').map((s) => s.trim()).filter(Boolean);
const REPEATS = QUICK ? 1 : 3;
/** Identical runs of each base plan for stability (the truth repetitions' base runs count). */
const STABILITY = QUICK ? 2 : 5;
const CAPTURE_PAIRS = QUICK ? 2 : 5;
const ONE_DEVICE_RUNS = QUICK ? 1 : 3;
/**
 * The CLI's defaults (20 steps, more to last DEFAULT_MIN_TIME_S, `--warmup 3`): advice is
 * judged as a user running `profile` would get it.
 */
const STEPS = DEFAULT_STEPS;
const WARMUP = 3;
const WITHIN = 0.15;

/** Input flags of a model, as `profile`'s request fields. */
type InputFlags = Pick<ProfileRequest, 'batchDim' | 'dims' | 'inputShapes' | 'values'>;

interface CorpusModel {
  /** Short name used in tables and PARALLAX_TRUTH_MODELS. */
  name: string;
  label: string;
  source: 'real' | 'generated';
  /** The model file, or null when it is not in the cache (fetched once, else skipped). */
  resolve: () => Promise<string | null>;
  flags: InputFlags;
  /** Global batch (divisible by 2 devices and by 4 micro-batches). */
  batch: number;
}

const CORPUS: CorpusModel[] = [
  { name: 'cls', label: 'PP-OCR mobile v2 cls (CNN)', source: 'real', resolve: async () => ocrClsModelPath(), flags: { inputShapes: { x: [1, 3, 48, 192] } }, batch: 8 },
  { name: 'det', label: 'PP-OCRv4 det (CNN, 128×128)', source: 'real', resolve: async () => ocrDetModelPath(), flags: { inputShapes: { x: [1, 3, 128, 128] } }, batch: 4 },
  { name: 'rec', label: 'PP-OCRv4 rec (48×160)', source: 'real', resolve: async () => ocrRecModelPath(), flags: { inputShapes: { x: [1, 3, 48, 160] } }, batch: 4 },
  { name: 'mel', label: 'openWakeWord melspectrogram', source: 'real', resolve: async () => wakewordMelspectrogramModelPath(), flags: { dims: { samples: 1280 } }, batch: 8 },
  { name: 'embedding', label: 'openWakeWord embedding_model', source: 'real', resolve: async () => wakewordEmbeddingModelPath(), flags: {}, batch: 8 },
  { name: 'silero-v4', label: 'silero VAD v4 (openWakeWord)', source: 'real', resolve: async () => sileroV4ModelPath(), flags: { dims: { sequence: 512 }, values: { sr: 16000 } }, batch: 8 },
  { name: 'silero-v5', label: 'silero VAD v5 (@ricky0123/vad-web)', source: 'real', resolve: async () => sileroV5ModelPath(), flags: { inputShapes: { input: [1, 512] }, values: { sr: 16000 } }, batch: 8 },
  { name: 'demo', label: 'demo MLP (24 × 512/2048)', source: 'generated', resolve: () => ensureDemoModel(defaultCacheDir()), flags: {}, batch: 32 },
  { name: 'demo-small', label: 'demo MLP (8 × 256/1024)', source: 'generated', resolve: () => ensureDemoModel(defaultCacheDir(), { layers: 8, hidden: 256, ffn: 1024 }), flags: {}, batch: 32 },
];

interface PlanSpec {
  name: string;
  fields: (batch: number) => Partial<PlanFields>;
  /** Cut deliberately off balance (found by a dry run of the balanced partition). */
  unbalancedCuts?: boolean;
  /** Built to be improvable: the rule that must fire where its remedy measures faster. */
  expect?: string;
  /**
   * The rule's remedies, as overrides of the plan (the balanced partition is the request
   * before `unbalancedCuts` applied its cuts). Each is run interleaved with the base plan; the
   * plan counts as improvable when the best of them is faster beyond the base run's noise
   * and by at least MIN_GAIN, so recall is judged where the right finding exists.
   */
  remedies?: (batch: number) => DemoOverrides[];
  /** Corpus models the plan applies to (all when absent): tensor plans need layers to split. */
  models?: readonly string[];
}

const PLANS: PlanSpec[] = [
  { name: 'data cpu:2', fields: () => ({ mode: 'data' }) },
  { name: 'pipeline cpu:2 M=2', fields: () => ({ mode: 'pipeline', microBatches: 2 }) },
  { name: 'pipeline cpu:2 M=4', fields: () => ({ mode: 'pipeline', microBatches: 4 }) },
  { name: 'pipeline cpu:2 M=1', fields: () => ({ mode: 'pipeline', microBatches: 1 }), expect: 'pipeline-bubble', remedies: () => [{ microBatches: 2 }, { microBatches: 4 }] },
  { name: 'pipeline cpu:2 M=4 unbalanced cuts', fields: () => ({ mode: 'pipeline', microBatches: 4 }), unbalancedCuts: true, expect: 'pipeline-imbalance', remedies: () => [{}] },
  { name: 'data cpu:2 shards 3:1', fields: (b) => ({ mode: 'data', shards: [(3 * b) / 4, b / 4] }), expect: 'straggler', remedies: (b) => [{ shards: [b / 2, b / 2] }] },
  // On two cores the all-reduce of every split layer costs more than its split saves, so data
  // parallelism (measured by the run's own probe) is the remedy.
  { name: 'tensor cpu:2', fields: () => ({ mode: 'tensor' }), expect: 'tensor-vs-data', remedies: () => [{ mode: 'data' }], models: ['demo', 'demo-small', 'embedding'] },
];

/** The least gain (share of the base step) that makes a plan count as improvable. */
const MIN_GAIN = 0.05;

/** Models for the one-device check: the demo, a small CNN, PP-OCR cls. */
const ONE_DEVICE_MODELS = ['demo', 'det', 'cls'];

// ── progress ──────────────────────────────────────────────────────────────────────────────
const t0 = Date.now();
/** /proc/stat's aggregate counters, read at the start and the end for the share of CPU time the VM's host took (null off Linux). */
function procStat(): { steal: number; total: number } | null {
  try {
    return parseProcStat(readFileSync('/proc/stat', 'latin1'));
  } catch {
    return null;
  }
}
const stat0 = procStat();
let runs = 0;
function log(msg: string): void {
  process.stderr.write(`[truth ${((Date.now() - t0) / 1000).toFixed(0).padStart(5)} s, ${String(runs).padStart(4)} runs] ${msg}\n`);
}

async function run(req: ProfileRequest): Promise<ProfileOutcome> {
  runs++;
  return profile(req);
}

function errText(e: unknown): string {
  return (e instanceof Error ? e.message : String(e)).split('\n')[0].slice(0, 160);
}

// ── requests ──────────────────────────────────────────────────────────────────────────────
function baseRequest(path: string, m: CorpusModel): ProfileRequest {
  return {
    modelPath: path,
    modelLabel: m.name,
    plan: makePlan({ mode: 'data', devices: 'cpu:2', batch: m.batch, steps: STEPS, warmup: WARMUP, seed: 0 }),
    capture: true,
    opLevel: false,
    baseline: false,
    // As the CLI without --steps: short steps are timed for at least DEFAULT_MIN_TIME_S.
    minTimedMs: DEFAULT_MIN_TIME_S * 1000,
    outPath: null,
    ...m.flags,
  };
}

/**
 * Cuts that put about a quarter of the balanced first stage's nodes in stage 0 (the rest of
 * the graph in stage 1); candidates nearer the balanced cut are tried when a cut is refused,
 * then cuts inside the balanced second stage (a heavier stage 0). The balanced cut itself is
 * never taken: that plan would be the remedy, and any difference measured between the two
 * noise. A model with no other cut (silero VAD v4: its graph is one `Equal` and one `If`
 * around the whole network) is not applicable.
 */
async function unbalancedCuts(req: ProfileRequest): Promise<string[]> {
  const dry = await run({ ...req, dryRun: true });
  const stages = (dry.planInfo?.program.segments ?? []).flatMap((s) => (s.kind === 'stage' ? [s] : [])).sort((a, b) => a.stage - b.stage);
  if (stages.length < 2) throw new Error('dry run gave no 2-stage partition');
  // Constant nodes are copied into every stage that reads them, so they are no cut points.
  const ir = parseModel(readFileSync(req.modelPath), req.modelPath);
  const constants = new Set(ir.nodes.filter((n) => n.opType === 'Constant').map((n) => n.name));
  const first = stages[0].nodes.filter((n) => !constants.has(n));
  const second = stages[1].nodes.filter((n) => !constants.has(n));
  const balanced = first[first.length - 1];
  const candidates: string[] = [];
  for (const share of [0.25, 0.4, 0.15, 0.55]) if (first.length >= 2) candidates.push(first[Math.max(0, Math.min(first.length - 2, Math.floor(first.length * share)))]);
  // After the second stage's last node the last stage would be empty.
  for (const share of [0.5, 0.25]) if (second.length >= 2) candidates.push(second[Math.min(second.length - 2, Math.floor(second.length * share))]);
  const tried = [...new Set(candidates)].filter((c) => c !== balanced);
  if (tried.length === 0) throw new NotApplicable(`the balanced cut (after ${balanced}) is the only cut between computing nodes`);
  let lastErr: unknown = null;
  for (const c of tried) {
    const cuts = [c];
    try {
      await run({ ...withOverrides(req, { cuts }), dryRun: true });
      return cuts;
    } catch (e) {
      lastErr = e;
    }
  }
  throw new Error(`no unbalanced cut accepted: ${errText(lastErr)}`);
}

/** A plan the model cannot be given (reported as not applicable, not as a failure). */
class NotApplicable extends Error {}

/** A plan's failure as the tables show it. */
function failText(f: string): string {
  return f.startsWith('not applicable') ? f : `failed: ${f}`;
}

// ── results ───────────────────────────────────────────────────────────────────────────────
interface Suggestion {
  rule: string;
  change: string;
  params: Record<string, unknown>;
  heldBack: boolean;
  /** Per repetition: base step, prediction (null when the rep's finding differed), step after. */
  before: number[];
  predicted: (number | null)[];
  after: number[];
  batchBefore: number;
  batchAfter: number;
  noiseUs: number;
  error: number | null;
  within: boolean | null;
  slowerBeyondNoise: boolean | null;
  failed?: string;
}

interface PlanResult {
  model: string;
  plan: string;
  expect: string | null;
  cuts?: string[];
  /** Active finding ids per identical base run (sorted), and held-back ones. */
  runsFindings: string[][];
  runsHeld: string[][];
  stableK: number;
  stableN: number;
  modalSet: string[];
  expectFired: number | null;
  /** Per remedy: its step time in each repetition, interleaved with the base runs. */
  remedySteps: { label: string; stepUs: number[] }[];
  /** Whether the best remedy measured faster than the base beyond noise and MIN_GAIN; null without remedies. */
  improvable: boolean | null;
  /** Best remedy against the base plan, median step: remedy / base − 1. */
  remedyGain: number | null;
  suggestions: Suggestion[];
  baseStepUs: number[];
  qualities: string[];
  failed?: string;
}

interface SkippedModel {
  model: string;
  reason: string;
}

function usable(f: Finding): boolean {
  return f.predictedStepUs !== null && Object.keys(f.change.params).length > 0 && (INCLUDE_HELD || !f.heldBack);
}

async function runPlan(m: CorpusModel, path: string, spec: PlanSpec): Promise<PlanResult> {
  const base0 = baseRequest(path, m);
  let req = withOverrides(base0, spec.fields(m.batch) as DemoOverrides);
  const res: PlanResult = {
    model: m.name,
    plan: spec.name,
    expect: spec.expect ?? null,
    runsFindings: [],
    runsHeld: [],
    stableK: 0,
    stableN: 0,
    modalSet: [],
    expectFired: null,
    remedySteps: [],
    improvable: null,
    remedyGain: null,
    suggestions: [],
    baseStepUs: [],
    qualities: [],
  };
  let remedyReqs: { label: string; req: ProfileRequest }[] = [];
  let noiseMax = 0;
  try {
    const balanced = req;
    if (spec.unbalancedCuts) {
      res.cuts = await unbalancedCuts(req);
      req = withOverrides(req, { cuts: res.cuts });
    }
    remedyReqs = (spec.remedies?.(m.batch) ?? []).map((o) => {
      const label = Object.keys(o).length ? Object.entries(o).map(([k, v]) => `${k} ${Array.isArray(v) ? v.join(',') : String(v)}`).join(', ') : 'balanced cuts';
      return { label, req: Object.keys(o).length ? withOverrides(req, o) : balanced };
    });
    res.remedySteps = remedyReqs.map((r) => ({ label: r.label, stepUs: [] }));
    for (let r = 0; r < STABILITY; r++) {
      const a = await run(req);
      res.baseStepUs.push(a.summary.stepTimeUs.median);
      res.qualities.push(a.summary.measurementQuality.verdict);
      res.runsFindings.push(a.findings.filter((f) => !f.heldBack).map((f) => f.id).sort());
      res.runsHeld.push(a.findings.filter((f) => f.heldBack).map((f) => f.id).sort());
      if (r >= REPEATS) continue;
      // A suggestion is defined by the first repetition in which its rule fires, and run in
      // that repetition and every later one.
      for (const f of a.findings.filter(usable)) {
        if (!res.suggestions.some((s) => s.rule === f.id)) {
          res.suggestions.push({
            rule: f.id,
            change: f.change.description,
            params: f.change.params,
            heldBack: f.heldBack !== undefined,
            before: [],
            predicted: [],
            after: [],
            batchBefore: req.plan.batch,
            batchAfter: typeof f.change.params['batch'] === 'number' ? (f.change.params['batch'] as number) : req.plan.batch,
            noiseUs: 0,
            error: null,
            within: null,
            slowerBeyondNoise: null,
          });
        }
      }
      const noise = a.summary.measurementQuality.noiseUs;
      noiseMax = Math.max(noiseMax, noise);
      for (const [k, r] of remedyReqs.entries()) {
        try {
          res.remedySteps[k].stepUs.push((await run(r.req)).summary.stepTimeUs.median);
        } catch (e) {
          log(`${m.name} · ${spec.name} · remedy ${r.label}: failed: ${errText(e)}`);
        }
      }
      for (const s of res.suggestions) {
        if (s.failed) continue;
        const same = a.findings.find((f) => f.id === s.rule && JSON.stringify(f.change.params) === JSON.stringify(s.params));
        try {
          const b = await run(withOverrides(req, s.params as DemoOverrides));
          s.before.push(a.summary.stepTimeUs.median);
          s.predicted.push(same?.predictedStepUs ?? null);
          s.after.push(b.summary.stepTimeUs.median);
          s.noiseUs = Math.max(s.noiseUs, noise);
        } catch (e) {
          s.failed = errText(e);
        }
      }
      log(`${m.name} · ${spec.name} · rep ${r + 1}: ${(a.summary.stepTimeUs.median / 1000).toFixed(2)} ms, findings ${a.findings.map((f) => f.id + (f.heldBack ? ' (held back)' : '')).join(', ') || 'none'}`);
    }
  } catch (e) {
    res.failed = e instanceof NotApplicable ? `not applicable: ${e.message}` : errText(e);
    log(`${m.name} · ${spec.name}: ${failText(res.failed)}`);
  }
  // Stability: the most common set of active finding ids.
  const counts = new Map<string, number>();
  for (const ids of res.runsFindings) counts.set(ids.join(','), (counts.get(ids.join(',')) ?? 0) + 1);
  let best = '';
  for (const [k, v] of counts) if (v > res.stableK) [res.stableK, best] = [v, k];
  res.modalSet = best ? best.split(',') : [];
  res.stableN = res.runsFindings.length;
  if (spec.expect) res.expectFired = res.runsFindings.filter((ids) => ids.includes(spec.expect!)).length;
  const remedyMedians = res.remedySteps.filter((r) => r.stepUs.length > 0).map((r) => median(r.stepUs));
  if (remedyMedians.length > 0 && res.baseStepUs.length > 0) {
    // The base runs interleaved with the remedies are the first REPEATS of them.
    const base = median(res.baseStepUs.slice(0, REPEATS));
    const best = Math.min(...remedyMedians);
    res.remedyGain = best / base - 1;
    res.improvable = base - best > Math.max(noiseMax, MIN_GAIN * base);
  }
  for (const s of res.suggestions) scoreSuggestion(s);
  return res;
}

function scoreSuggestion(s: Suggestion): void {
  if (s.after.length === 0) return;
  // Each repetition's prediction (from its base run) against the changed run that followed
  // it: the machine drifts between repetitions, and a repetition whose base run did not make
  // the same suggestion has no prediction to judge.
  const errors = s.after.flatMap((a, i) => {
    const p = s.predicted[i];
    return p !== null && p !== undefined && a > 0 ? [p / a - 1] : [];
  });
  if (errors.length === 0) return;
  const after = median(s.after);
  const before = median(s.before);
  s.error = median(errors);
  s.within = Math.abs(s.error) <= WITHIN;
  // A change of batch changes the work per step: compare time per row.
  const afterSameWork = (after * s.batchBefore) / s.batchAfter;
  s.slowerBeyondNoise = afterSameWork - before > s.noiseUs;
}

interface OneDevice {
  model: string;
  speedups: number[];
  intervals: ({ lo: number; hi: number } | null)[];
  inside: number;
  failed?: string;
}

async function oneDevice(m: CorpusModel, path: string): Promise<OneDevice> {
  const out: OneDevice = { model: m.name, speedups: [], intervals: [], inside: 0 };
  const req = withOverrides({ ...baseRequest(path, m), baseline: true }, { mode: 'data', devices: 'cpu:1' });
  try {
    for (let r = 0; r < ONE_DEVICE_RUNS; r++) {
      const s = (await run(req)).summary;
      out.speedups.push(s.speedupVsOneDevice ?? NaN);
      out.intervals.push(s.speedupInterval);
      if (s.speedupInterval && s.speedupInterval.lo <= 1 && s.speedupInterval.hi >= 1) out.inside++;
    }
  } catch (e) {
    out.failed = errText(e);
  }
  log(`${m.name} · one device: ${out.speedups.map((v) => v.toFixed(2)).join(', ')}${out.failed ? ` failed: ${out.failed}` : ''}`);
  return out;
}

interface Capture {
  model: string;
  /** Timed steps per run (sized from a pilot run). */
  steps: number;
  off: number[];
  on: number[];
  /** Per run: captured / uncaptured median step − 1, and its 90 % interval. */
  ratios: { ratio: number; lo: number; hi: number }[];
  overhead: number | null;
  failed?: string;
}

/**
 * Timed steps per capture-overhead run: enough for about CAPTURE_SECONDS of captured steps
 * (a short pilot run gives the step time), at least CAPTURE_MIN_STEPS, at most
 * CAPTURE_MAX_STEPS. The effect sought is a few per cent: 40 steps of a sub-millisecond
 * model (40 ms) spread ±5 % between runs.
 */
const CAPTURE_SECONDS = 1.5;
const CAPTURE_MIN_STEPS = 80;
const CAPTURE_MAX_STEPS = 1000;

/**
 * Capture overhead with the runner's capture check: in each run the timed steps also run
 * with spans off, in blocks alternating with the captured ones, in the same workers and
 * sessions — so the comparison is free of the run-to-run differences between processes
 * (thread placement, allocation) that dwarf a few per cent. The median over the runs.
 */
async function captureOverhead(m: CorpusModel, path: string): Promise<Capture> {
  const out: Capture = { model: m.name, steps: 0, off: [], on: [], ratios: [], overhead: null };
  try {
    const pilot = (await run({ ...withOverrides(baseRequest(path, m), { steps: 10 }), capture: true, opLevel: false })).summary.stepTimeUs.median;
    out.steps = Math.round(Math.min(CAPTURE_MAX_STEPS, Math.max(CAPTURE_MIN_STEPS, (CAPTURE_SECONDS * 1e6) / pilot)));
    const req = withOverrides(baseRequest(path, m), { steps: out.steps });
    for (let r = 0; r < CAPTURE_PAIRS; r++) {
      const c = (await run({ ...req, capture: true, captureCheck: true, opLevel: false })).summary.captureOverhead;
      if (!c) throw new Error('the run reported no capture check');
      out.off.push(c.uncapturedUs);
      out.on.push(c.capturedUs);
      out.ratios.push({ ratio: c.ratio, lo: c.lo, hi: c.hi });
    }
    out.overhead = median(out.ratios.map((x) => x.ratio));
  } catch (e) {
    out.failed = errText(e);
  }
  log(`${m.name} · capture overhead: ${out.overhead === null ? `failed: ${out.failed}` : `${(out.overhead * 100).toFixed(1)} %`}`);
  return out;
}

/** Resolves a model; fetches the real models once when one is missing. */
let fetched: string | null | undefined;
async function resolveModel(m: CorpusModel): Promise<string | SkippedModel> {
  try {
    let p = await m.resolve();
    if (p === null && m.source === 'real' && fetched === undefined) {
      log('fetching the real models (node scripts/fetch-models.mjs)…');
      const r = spawnSync(process.execPath, ['scripts/fetch-models.mjs'], { encoding: 'utf8' });
      fetched = r.status === 0 ? null : (r.stderr || `exit ${r.status}`).trim().split('\n')[0];
      p = await m.resolve();
    }
    if (p === null || !existsSync(p)) return { model: m.name, reason: `not in the model cache${fetched ? ` (fetch failed: ${fetched})` : ''}` };
    return p;
  } catch (e) {
    return { model: m.name, reason: errText(e) };
  }
}

// ── report ────────────────────────────────────────────────────────────────────────────────
const pct = (v: number | null): string => (v === null || !Number.isFinite(v) ? '–' : `${(v * 100).toFixed(0)} %`);
const pct1 = (v: number): string => `${(v * 100).toFixed(1)} %`;
const ms = (us: number): string => (Number.isFinite(us) ? `${(us / 1000).toFixed(2)} ms` : '–');
const mark = (ok: boolean): string => (ok ? 'PASS' : 'MISS');

async function main(): Promise<void> {
  const models = QUICK ? CORPUS.filter((m) => m.name === (ONLY[0] ?? 'cls')) : ONLY.length ? CORPUS.filter((m) => ONLY.includes(m.name)) : CORPUS;
  const planSpecs = PLANS.filter((x) => ONLY_PLANS.length === 0 || ONLY_PLANS.some((o) => x.name.includes(o)));
  log(`${QUICK ? 'quick: ' : ''}${models.length} model(s) × ${planSpecs.length} plans, ${REPEATS} repetition(s), ${STABILITY} identical runs; steps ${STEPS}, warm-up ${WARMUP}`);
  const skipped: SkippedModel[] = [];
  const paths = new Map<string, string>();
  for (const m of models) {
    const p = await resolveModel(m);
    if (typeof p === 'string') paths.set(m.name, p);
    else {
      skipped.push(p);
      log(`${m.name}: skipped: ${p.reason}`);
    }
  }
  const plans: PlanResult[] = [];
  for (const m of models) {
    const p = paths.get(m.name);
    if (!p) continue;
    for (const spec of planSpecs) if (!spec.models || spec.models.includes(m.name)) plans.push(await runPlan(m, p, spec));
  }
  const oneDev: OneDevice[] = [];
  for (const name of ONE_DEVICE_MODELS) {
    const m = CORPUS.find((c) => c.name === name)!;
    if (QUICK && !models.includes(m)) continue;
    const p = paths.get(name) ?? (await resolveModel(m));
    if (typeof p === 'string') oneDev.push(await oneDevice(m, p));
    else oneDev.push({ model: name, speedups: [], intervals: [], inside: 0, failed: `skipped: ${p.reason}` });
  }
  const capture: Capture[] = [];
  for (const m of models) {
    const p = paths.get(m.name);
    if (p) capture.push(await captureOverhead(m, p));
  }

  // Aggregates.
  const sugg = plans.flatMap((p) => p.suggestions.map((s) => ({ ...s, model: p.model, plan: p.plan })));
  const scored = sugg.filter((s) => s.error !== null);
  const byRule = new Map<string, typeof scored>();
  for (const s of scored) byRule.set(s.rule, [...(byRule.get(s.rule) ?? []), s]);
  const agg = (xs: typeof scored): { n: number; within: number; medAbs: number; slower: number } => ({
    n: xs.length,
    within: xs.filter((s) => s.within).length,
    medAbs: xs.length ? median(xs.map((s) => Math.abs(s.error!))) : NaN,
    slower: xs.filter((s) => s.slowerBeyondNoise).length,
  });
  const overall = agg(scored);
  const recallPlans = plans.filter((p) => p.expect !== null && !p.failed && p.improvable === true);
  const recallHits = recallPlans.reduce((a, p) => a + (p.expectFired ?? 0), 0);
  const recallRuns = recallPlans.reduce((a, p) => a + p.runsFindings.length, 0);
  // The expected rule firing where its remedy did not measure faster: advice with nothing to gain.
  const notImprovable = plans.filter((p) => p.expect !== null && !p.failed && p.improvable === false);
  const falseAlarms = notImprovable.reduce((a, p) => a + (p.expectFired ?? 0), 0);
  const falseAlarmRuns = notImprovable.reduce((a, p) => a + p.runsFindings.length, 0);
  const stablePlans = plans.filter((p) => !p.failed && p.stableN > 0);
  const stableOk = stablePlans.filter((p) => p.stableK >= Math.ceil(0.8 * p.stableN)).length;
  const qualities = plans.flatMap((p) => p.qualities);
  const poor = qualities.filter((q) => q === 'poor').length;

  const cpu = os.cpus()[0]?.model ?? 'unknown';
  const elapsedS = (Date.now() - t0) / 1000;
  const stat1 = procStat();
  // Steal: time the VM's host ran other work on this machine's CPUs while they had work.
  const stealShare = stat0 && stat1 && stat1.total > stat0.total ? (stat1.steal - stat0.steal) / (stat1.total - stat0.total) : null;
  mkdirSync('bench/results', { recursive: true });
  writeFileSync(
    'bench/results/truth.json',
    JSON.stringify(
      {
        machine: { cpu, cores: os.availableParallelism(), loadavg: os.loadavg(), stealShare },
        settings: { quick: QUICK, includeHeld: INCLUDE_HELD, repeats: REPEATS, stability: STABILITY, steps: STEPS, warmup: WARMUP, capturePairs: CAPTURE_PAIRS, oneDeviceRuns: ONE_DEVICE_RUNS },
        corpus: CORPUS.map((m) => ({ name: m.name, label: m.label, source: m.source, batch: m.batch, flags: m.flags, path: paths.get(m.name) ?? null })),
        skipped,
        plans,
        overall,
        byRule: Object.fromEntries([...byRule].map(([k, v]) => [k, agg(v)])),
        recall: { hits: recallHits, runs: recallRuns, falseAlarms, falseAlarmRuns },
        oneDevice: oneDev,
        capture,
        runs,
        elapsedS,
      },
      null,
      2,
    ),
  );

  const lines: string[] = [];
  const L = (s = ''): void => {
    lines.push(s);
  };
  L(`## Findings against ground truth: every suggestion run on real and generated models${QUICK ? ' (quick subset)' : ''}`);
  L();
  L(`Machine: ${cpu}, ${os.availableParallelism()} logical cores, load average ${os.loadavg().map((v) => v.toFixed(1)).join(' / ')} at the end${stealShare === null ? '' : `, the host took ${(stealShare * 100).toFixed(1)} % of the CPU time over the run (steal)`}. Command: \`${QUICK ? 'PARALLAX_TRUTH_QUICK=1 ' : ''}npm run bench -- truth\`.`);
  L(`${REPEATS} interleaved repetition(s) of base and changed run per suggestion, ${STABILITY} identical runs per plan, ${STEPS} steps (more where they take under ${DEFAULT_MIN_TIME_S} s, as the CLI without --steps) after ${WARMUP} warm-up, capture on, operator profile off; ${runs} profile runs in ${(elapsedS / 60).toFixed(1)} min.`);
  L(`Measurement quality of the base runs: ${qualities.length - poor} of ${qualities.length} not poor${INCLUDE_HELD ? '; suggestions of held-back findings were run too (PARALLAX_TRUTH_HELD=1)' : '; held-back findings are not run (their advice is not shown)'}.`);
  L('Error = predicted / measured after − 1 in each repetition (its base run\'s prediction against the changed run that followed it), median over the repetitions; "slower" = after (per row, for batch changes) exceeds before by more than the base run\'s noise (medians over repetitions).');
  L();
  L('Corpus:');
  L();
  L('| model | source | batch | input flags | status |');
  L('|---|---|---|---|---|');
  for (const m of models) {
    const flags = [
      ...Object.entries(m.flags.inputShapes ?? {}).map(([k, v]) => `--input-shape ${k}=${v.join(',')}`),
      ...Object.entries(m.flags.dims ?? {}).map(([k, v]) => `--dim ${k}=${v}`),
      ...Object.entries(m.flags.values ?? {}).map(([k, v]) => `--value ${k}=${v}`),
      ...(m.flags.batchDim ? [`--batch-dim ${m.flags.batchDim}`] : []),
    ].join(' ');
    const sk = skipped.find((s) => s.model === m.name);
    L(`| ${m.label} | ${m.source} | ${m.batch} | ${flags ? `\`${flags}\`` : '–'} | ${sk ? `skipped: ${sk.reason}` : 'run'} |`);
  }
  L();
  L('Per rule:');
  L();
  L('| rule | suggestions run | within ±15 % | median \\|error\\| | slower than before beyond noise |');
  L('|---|---|---|---|---|');
  for (const [rule, xs] of [...byRule].sort()) {
    const a = agg(xs);
    L(`| ${rule} | ${a.n} | ${a.within} (${pct(a.within / a.n)}) | ${pct(a.medAbs)} | ${a.slower} |`);
  }
  L(`| **overall** | ${overall.n} | ${overall.within} (${pct(overall.n ? overall.within / overall.n : null)}) ${overall.n ? mark(overall.within / overall.n >= 0.9) : '–'} (≥ 90 %) | ${pct(overall.medAbs)} | ${overall.slower} ${mark(overall.slower === 0)} (none) |`);
  L();
  L('Suggestions:');
  L();
  L('| model | plan | rule | change | before | predicted | after | error |');
  L('|---|---|---|---|---|---|---|---|');
  for (const s of sugg) {
    const pred = median(s.predicted.filter((p): p is number => p !== null));
    L(`| ${s.model} | ${s.plan} | ${s.rule}${s.heldBack ? ' (held back)' : ''} | ${s.change.replace(/\|/g, '\\|')} | ${ms(median(s.before))} | ${ms(pred)} | ${s.failed ? `failed: ${s.failed}` : ms(median(s.after))} | ${pct(s.error)}${s.slowerBeyondNoise ? ' slower' : ''} |`);
  }
  if (sugg.length === 0) L('| – | – | no finding with a suggestion | | | | | |');
  L();
  L(`Stability (same active finding ids in k of ${STABILITY} identical runs; target ≥ ${Math.ceil(0.8 * STABILITY)}): ${stableOk} of ${stablePlans.length} plans ${mark(stableOk === stablePlans.length)}.`);
  L();
  L('| model | plan | base step (median) | most common findings | k / n | held back (any run) |');
  L('|---|---|---|---|---|---|');
  for (const p of plans) {
    const held = [...new Set(p.runsHeld.flat())].join(', ') || '–';
    L(`| ${p.model} | ${p.plan} | ${p.failed ? failText(p.failed) : ms(median(p.baseStepUs))} | ${p.modalSet.join(', ') || 'none'} | ${p.stableK} / ${p.stableN} | ${held} |`);
  }
  L();
  L(
    `Recall on plans built to be improvable, where the rule's remedy measured faster (by > ${MIN_GAIN * 100} % and beyond the run's noise, ${REPEATS} interleaved repetitions): ${recallHits} of ${recallRuns} runs (${pct(recallRuns ? recallHits / recallRuns : null)}) ${recallRuns ? mark(recallHits / recallRuns >= 0.9) : '–'} (≥ 90 %). ` +
      `Where the remedy was not faster the rule should stay silent: it fired in ${falseAlarms} of ${falseAlarmRuns} runs.`,
  );
  L();
  L('| model | plan | expected rule | remedy: step (median) | remedy vs base | improvable | fired (active) | held back instead |');
  L('|---|---|---|---|---|---|---|---|');
  for (const p of plans.filter((x) => x.expect !== null)) {
    const held = p.runsHeld.filter((ids) => ids.includes(p.expect!)).length;
    const rem = p.remedySteps.map((r) => `${r.label}: ${r.stepUs.length ? ms(median(r.stepUs)) : 'failed'}`).join('; ') || '–';
    const gain = p.remedyGain === null ? '–' : `${p.remedyGain > 0 ? '+' : ''}${(p.remedyGain * 100).toFixed(0)} %`;
    const imp = p.improvable === null ? '–' : p.improvable ? 'yes' : 'no';
    L(`| ${p.model} | ${p.plan}${p.cuts ? ` (cut after \`${p.cuts.join(',')}\`)` : ''} | ${p.expect} | ${rem} | ${gain} | ${imp} | ${p.failed ? failText(p.failed) : `${p.expectFired} / ${p.runsFindings.length}`} | ${held} |`);
  }
  L();
  L('One device against its own configuration (`--devices cpu:1`, baseline on): speedup and its 90 % interval, which resamples whole blocks of the alternating schedule (block i of the run against block i of the baseline), not single steps.');
  L();
  L('| model | speedups | intervals | 1.00× inside |');
  L('|---|---|---|---|');
  for (const o of oneDev) {
    const iv = o.intervals.map((i) => (i ? `[${i.lo.toFixed(2)}, ${i.hi.toFixed(2)}]` : '–')).join(' ');
    L(`| ${o.model} | ${o.failed ? o.failed : o.speedups.map((v) => `${v.toFixed(2)}×`).join(', ')} | ${iv || '–'} | ${o.failed ? '–' : `${o.inside} / ${o.speedups.length} ${mark(o.inside === o.speedups.length)}`} |`);
  }
  L();
  L(`Capture overhead (\`--capture-check\`: in each run the timed steps (enough for about ${CAPTURE_SECONDS} s, ${CAPTURE_MIN_STEPS}–${CAPTURE_MAX_STEPS}) also run with capture off, in slices alternating with the captured ones in the same workers; ${CAPTURE_PAIRS} runs per model, data cpu:2, operator profile off; overhead = median over the runs of captured / uncaptured median step − 1; target ≤ 3 %):`);
  L();
  L('| model | steps | step off | step on | overhead | per run (90 % interval) |');
  L('|---|---|---|---|---|---|');
  for (const c of capture) {
    const runsText = c.ratios.map((x) => `${pct1(x.ratio)} [${pct1(x.lo)}, ${pct1(x.hi)}]`).join('; ');
    L(`| ${c.model} | ${c.steps || '–'} | ${c.failed ? `failed: ${c.failed}` : ms(median(c.off))} | ${ms(median(c.on))} | ${c.overhead === null ? '–' : `${pct1(c.overhead)} ${mark(c.overhead <= 0.03)}`} | ${runsText} |`);
  }
  if (skipped.length) {
    L();
    L(`Skipped: ${skipped.map((s) => `${s.model} (${s.reason})`).join('; ')}.`);
  }
  process.stdout.write(`${lines.join('\n')}\n`);
  log(`done: ${runs} runs in ${(elapsedS / 60).toFixed(1)} min`);
}

void main().catch((e: unknown) => {
  console.error(e);
  process.exit(1);
});
