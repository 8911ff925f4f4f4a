/**
 * The pure part of "Profile Model…": which choices the quick picks offer, where the trace
 * goes, and the plan handed to the runner. No `vscode` import, so it runs under plain Node.
 */
import { formatDuration } from '../profiler/units';
import { isAbsolute, join, basename } from 'node:path';
import { DEFAULT_MIN_TIME_S, DEFAULT_STEPS, type ProfileRequest, type Progress } from '../runtime/protocol';
import { formatEta } from '../runtime/progress-eta';
import { makePlan, MODE_DESCRIPTIONS, PARALLEL_MODES, type ParallelMode, type TrainPlan } from '../profiler/plan';
import type { DiscoveredDevices } from '../runtime/device/discovery';
import type { ProfileSummary } from '../profiler/summary';

/** Settings that shape a run (see {@link ../extension/ids Setting}). */
export interface ProfileSettings {
  mode: ParallelMode;
  devices: string;
  batch: number;
  steps: number;
  /** Seconds the timed steps of an inference run last at least (0: exactly `steps`). */
  minTime: number;
  warmup: number;
  baseline: boolean;
  opLevel: boolean;
  outputFolder: string;
  /** On a poorly measured run: hold timing findings back, or show them with a caveat. */
  adviceOnPoorQuality: 'hold' | 'show';
}

export const DEFAULT_PROFILE_SETTINGS: ProfileSettings = {
  mode: 'data',
  devices: 'cpu:2',
  batch: 64,
  steps: DEFAULT_STEPS,
  minTime: DEFAULT_MIN_TIME_S,
  warmup: 3,
  baseline: true,
  opLevel: true,
  outputFolder: 'runs',
  adviceOnPoorQuality: 'hold',
};

/** One entry of a quick pick: the value and the line that explains it. */
export interface Choice<T> {
  value: T;
  label: string;
  description?: string;
}

export const MODE_CHOICES: readonly Choice<ParallelMode>[] = PARALLEL_MODES.map((m) => ({ value: m, label: m, description: MODE_DESCRIPTIONS[m] }));

/** Puts the choice equal to `preferred` first (the quick pick's default), keeping the rest in order. */
export function preferredFirst<T>(choices: readonly Choice<T>[], preferred: T): Choice<T>[] {
  const i = choices.findIndex((c) => c.value === preferred);
  return i <= 0 ? [...choices] : [choices[i]!, ...choices.slice(0, i), ...choices.slice(i + 1)];
}

/** The device kinds a spec names (`cpu:1,webgpu:1` → cpu, webgpu), lower-cased. */
export function specKinds(spec: string): string[] {
  return spec.split(',').map((e) => e.trim().split(':')[0]!.trim().toLowerCase()).filter((k) => k !== '');
}

/**
 * Device specs to offer: only devices that exist. Before discovery that is CPU workers only
 * (every machine has a CPU); after it, WebGPU and CUDA where discovery found them. The
 * configured default comes first when its devices exist; CPU splits go up to the core count.
 */
export function deviceChoices(defaultSpec: string, cores: number, discovered: DiscoveredDevices | null): Choice<string>[] {
  const available = (kind: string): boolean => kind === 'cpu' || (discovered?.kinds.some((k) => k.kind === kind && k.available) ?? false);
  const note = (kind: string): string | undefined => discovered?.kinds.find((k) => k.kind === kind)?.detail;
  const out: Choice<string>[] = [];
  const add = (spec: string, description?: string): void => {
    if (!out.some((c) => c.value === spec)) out.push({ value: spec, label: spec, ...(description ? { description } : {}) });
  };
  if (specKinds(defaultSpec).every(available)) add(defaultSpec, 'default (setting parallax.profile.devices)');
  for (const n of [1, 2, 4, 8]) {
    if (n === 1 || n <= Math.max(2, cores)) add(`cpu:${n}`, `${n} CPU worker${n === 1 ? '' : 's'}${n > cores ? ` — more than the ${cores} cores, so they share them` : ''}`);
  }
  if (available('webgpu')) {
    add('cpu:1,webgpu:1', `one CPU worker and one WebGPU device${note('webgpu') ? ` (${note('webgpu')})` : ''}`);
    add('webgpu:1', note('webgpu') ?? 'WebGPU');
  }
  if (available('cuda')) add('cuda:1', note('cuda') ?? 'CUDA');
  return out;
}

/** Rough check of a device spec typed by hand; the runner validates it fully. Null when fine. */
export function checkDeviceSpecText(text: string): string | null {
  const entry = '\\s*(cpu|webgpu|cuda)(\\s*:\\s*\\d+)?\\s*';
  return new RegExp(`^${entry}(,${entry})*$`, 'i').test(text)
    ? null
    : 'Give comma-separated kind:count entries, e.g. cpu:2 or cpu:1,webgpu:1 (kinds: cpu, webgpu, cuda).';
}

export function batchChoices(defaultBatch: number): Choice<number>[] {
  const values = [defaultBatch, 1, 8, 16, 32, 64, 128, 256].filter((v, i, a) => a.indexOf(v) === i);
  return values.map((v, i) => ({ value: v, label: String(v), ...(i === 0 ? { description: 'default (setting parallax.profile.batch)' } : {}) }));
}

/** A positive whole number typed by hand, or the reason it is not one. */
export function checkBatchText(text: string): string | null {
  return /^\s*[1-9]\d{0,6}\s*$/.test(text) ? null : 'Give a whole number from 1 to 9999999.';
}

/** Trace file name for a model and mode: `<model>-<mode>.parallax.json`. */
export function traceFileName(modelPath: string, mode: ParallelMode): string {
  return `${basename(modelPath).replace(/\.onnx$/i, '')}-${mode}.parallax.json`;
}

/** Where the trace goes: `outputFolder` under `root` (the model's workspace folder), unless absolute; `train` for a training run. */
export function tracePath(root: string, outputFolder: string, modelPath: string, mode: ParallelMode | 'train'): string {
  const folder = isAbsolute(outputFolder) ? outputFolder : join(root, outputFolder || DEFAULT_PROFILE_SETTINGS.outputFolder);
  return join(folder, mode === 'train' ? trainingTraceFileName(modelPath) : traceFileName(modelPath, mode));
}

/** The choices the user made in the quick picks. */
export interface RunChoices {
  modelPath: string;
  modelLabel: string;
  mode: ParallelMode;
  devices: string;
  batch: number;
  /** "Profile Training Step…": the training part of a data plan. */
  train?: TrainPlan;
}

/** Trace file name of a training run: `<model>-train.parallax.json`, beside the inference traces. */
export function trainingTraceFileName(modelPath: string): string {
  return `${basename(modelPath).replace(/\.onnx$/i, '')}-train.parallax.json`;
}

/**
 * The hybrid the quick picks run on the chosen devices: two replicas, each tensor parallel
 * over half the devices (a run configuration names other shapes). An odd count is left for
 * the runner to refuse in one line.
 */
export function hybridShape(devices: string): { data: number; tensor: number } {
  return { data: 2, tensor: Math.max(2, Math.floor((deviceCount(devices) ?? 4) / 2)) };
}

/**
 * Total device count of a device spec (`cpu:2,webgpu:1` → 3; a kind without a count is one
 * device), or null when the spec does not parse.
 */
export function deviceCount(spec: string): number | null {
  if (checkDeviceSpecText(spec) !== null) return null;
  let n = 0;
  for (const part of spec.split(',')) {
    const m = /:\s*(\d+)\s*$/.exec(part);
    n += m ? Number(m[1]) : 1;
  }
  return n;
}


export function buildPlan(choices: RunChoices, settings: ProfileSettings, outPath: string): ProfileRequest {
  return {
    modelPath: choices.modelPath,
    modelLabel: choices.modelLabel,
    plan: makePlan({
      mode: choices.mode,
      devices: choices.devices.replace(/\s+/g, ''),
      batch: choices.batch,
      steps: settings.steps,
      warmup: settings.warmup,
      seed: 0,
      ...(choices.train ? { train: choices.train } : {}),
      ...(choices.mode === 'hybrid' ? hybridShape(choices.devices) : {}),
    }),
    capture: true,
    opLevel: settings.opLevel,
    adviceOnPoorQuality: settings.adviceOnPoorQuality,
    baseline: settings.baseline,
    ...(settings.minTime > 0 ? { minTimedMs: settings.minTime * 1000 } : {}),
    outPath,
  };
}

const ms = (us: number): string => formatDuration(us, { msDigits: 2, sDigits: false });

/** One line for the completion notification: median step, speedup, numerics. */
export function summaryLine(s: ProfileSummary): string {
  const parts = [`median step ${ms(s.stepTimeUs.median)}`];
  if (s.speedupVsOneDevice !== null) parts.push(`${s.speedupVsOneDevice.toFixed(2)}× vs one device`);
  if (s.numericalCheck && !s.numericalCheck.ok) parts.push('numerical MISMATCH against one device');
  return parts.join(', ');
}

/** Share of a whole run each runner phase stands for, to drive the progress bar. */
const PHASE_WEIGHT: Record<Progress['phase'], number> = { load: 5, baseline: 30, warmup: 5, steps: 55, analyse: 3, write: 2 };
const PHASE_ORDER: readonly Progress['phase'][] = ['load', 'baseline', 'warmup', 'steps', 'analyse', 'write'];

/**
 * How far a run is, from 0 to 100, given the runner's latest progress report. Phases a run
 * skips (no baseline) are left out of the total, so the bar still ends at 100.
 */
export function progressPercent(p: Progress, baseline: boolean): number {
  const phases = PHASE_ORDER.filter((ph) => baseline || ph !== 'baseline');
  const total = phases.reduce((s, ph) => s + PHASE_WEIGHT[ph], 0);
  const i = phases.indexOf(p.phase);
  if (i < 0) return 0;
  const before = phases.slice(0, i).reduce((s, ph) => s + PHASE_WEIGHT[ph], 0);
  const within = p.total > 0 ? Math.min(1, Math.max(0, p.done / p.total)) : 0;
  return (100 * (before + within * PHASE_WEIGHT[p.phase])) / total;
}

/**
 * The progress notification's text: the runner's message, with counts for step phases and
 * the time left once it can be estimated (`etaMs`, from runtime/progress-eta.ts).
 */
export function progressMessage(p: Progress, etaMs: number | null = null): string {
  const text = p.phase === 'steps' || p.phase === 'baseline' ? `${p.message} ${p.done}/${p.total}` : p.message;
  return etaMs !== null && etaMs > 0 ? `${text} · ${formatEta(etaMs)} left` : text;
}
