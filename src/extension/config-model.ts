/**
 * The run-configuration file `parallax.json`: named plans a user runs again and again.
 *
 * ```jsonc
 * { "plans": { "pipe2": { "model": "models/x.onnx", "mode": "pipeline", "devices": "cpu:2",
 *                         "batch": 64, "microBatches": 4, "steps": 20 } } }
 * ```
 *
 * This module parses the file keeping every key's position (diagnostics, quick fixes and
 * hovers point at the exact key a finding is about), checks what the JSON schema
 * (schemas/parallax-config.schema.json) cannot express (micro-batches that divide the batch,
 * one stage per device), turns a plan into the runner's {@link ProfilePlan}, and names the
 * plan's trace files. No `vscode` import: it runs under plain Node in the unit tests.
 *
 * Parsing goes through `jsonc-parser` (VS Code's own JSON parser: comments, trailing commas,
 * error recovery, exact offsets). Its ESM build is imported because the UMD `main` hides its
 * internal `require`s from esbuild and breaks once bundled.
 */
import { isAbsolute, join, basename, dirname } from 'node:path';
import { findNodeAtLocation, getNodeValue, parseTree, printParseErrorCode, type Node, type ParseError } from 'jsonc-parser/lib/esm/main.js';
import type { ProfileRequest } from '../runtime/protocol';
import { DEFAULT_MICRO_BATCHES, GRAD_DTYPES, isParallelMode, makePlan, PARALLEL_MODES, PIPELINE_SCHEDULES, TRAIN_DEFAULTS, TRAIN_LOSSES, TRAIN_OPTIMIZERS, type ParallelMode, type PipelineSchedule, type TrainPlan } from '../profiler/plan';
import { parseByteSize } from '../profiler/units';
import type { ProfileSettings } from './run-config';
import { checkDeviceSpecText, deviceCount } from './run-config';

export { deviceCount };

/** A range of the file's text: offset and length in UTF-16 code units, as VS Code counts them. */
export interface TextSpan {
  offset: number;
  length: number;
}

/** Every key a plan may have, in the order the schema documents them. */
export const PLAN_KEYS = [
  'description',
  'model',
  'mode',
  'devices',
  'batch',
  'shards',
  'train',
  'microBatches',
  'stages',
  'cuts',
  'schedule',
  'tensor',
  'keepWhole',
  'data',
  'deviceMemory',
  'steps',
  'warmup',
  'seed',
  'baseline',
  'opLevel',
  'batchDim',
  'dims',
  'inputShapes',
  'values',
  'inputs',
] as const;
export type PlanKey = (typeof PLAN_KEYS)[number];

/** Keys that only pipeline plans use. */
export const PIPELINE_KEYS: readonly PlanKey[] = ['microBatches', 'stages', 'cuts', 'schedule'];

/** Keys that only tensor-parallel plans use. */
export const TENSOR_KEYS: readonly PlanKey[] = ['tensor', 'keepWhole'];

/** Keys that only data-parallel plans use. */
export const DATA_KEYS: readonly PlanKey[] = ['shards'];

export { DEFAULT_MICRO_BATCHES };

/** One key of a plan as written: where its name and its value are, and the value. */
export interface PlanKeyNode {
  key: string;
  /** The key's string token, quotes included. */
  keySpan: TextSpan;
  /** The value's token or subtree. */
  valueSpan: TextSpan;
  /** The whole `"key": value` property. */
  propertySpan: TextSpan;
  value: unknown;
}

/** The values of a plan that are well-typed (a wrong-typed key is left out and reported). */
export interface PlanValues {
  description?: string;
  model?: string;
  mode?: ParallelMode;
  devices?: string;
  batch?: number;
  /** Data parallel: rows per device, in device order. */
  shards?: number[];
  /** Train (the CLI's --train; data, pipeline and tensor modes); each setting falls back to its default. */
  train?: Partial<TrainPlan>;
  microBatches?: number;
  stages?: number;
  cuts?: string[];
  schedule?: PipelineSchedule;
  /** Tensor parallel: devices each weight is split over (must equal the device count). */
  tensor?: number;
  /** Tensor plans: layers kept whole (node names, scopes or globs). */
  keepWhole?: string[];
  /** Hybrid: replicas the batch is split over. */
  data?: number;
  /** Memory per device to check the run against, e.g. "16GiB" (`--device-memory`). */
  deviceMemory?: string;
  steps?: number;
  warmup?: number;
  seed?: number;
  baseline?: boolean;
  opLevel?: boolean;
  batchDim?: string;
  dims?: Record<string, number>;
  inputShapes?: Record<string, number[]>;
  /** Values of inputs shared by every row, e.g. { "sr": 16000 } (`--value`). */
  values?: Record<string, number>;
  inputs?: string;
}

export interface ConfigProblem {
  span: TextSpan;
  message: string;
  severity: 'error' | 'warning';
  /**
   * True when VS Code's JSON validation reports the same thing from the schema (syntax,
   * types, required keys, unknown keys): the extension then does not repeat it.
   */
  bySchema: boolean;
  /** The plan and key it is about, when it is about one. */
  plan?: string;
  key?: string;
}

/** One named plan. */
export interface ConfigPlan {
  name: string;
  /** The plan's name token in `plans`, quotes included (where CodeLenses and plan-level diagnostics go). */
  nameSpan: TextSpan;
  /** The whole `"name": { … }` property. */
  span: TextSpan;
  /** Keys as written, by name (unknown keys included). */
  keys: Map<string, PlanKeyNode>;
  values: PlanValues;
  /** This plan's problems; a plan with an error problem cannot run. */
  problems: ConfigProblem[];
}

export interface ConfigDoc {
  plans: ConfigPlan[];
  /** Problems of the file as a whole (syntax, no `plans`). Plan problems are in each plan. */
  problems: ConfigProblem[];
}

const spanOf = (n: Node): TextSpan => ({ offset: n.offset, length: n.length });

/** jsonc-parser builds objects without a prototype; plans hold plain ones. */
function plain(v: unknown): unknown {
  if (Array.isArray(v)) return v.map(plain);
  if (typeof v === 'object' && v !== null) return Object.fromEntries(Object.entries(v).map(([k, x]) => [k, plain(x)]));
  return v;
}

const isPosInt = (v: unknown): v is number => typeof v === 'number' && Number.isInteger(v) && v >= 1;
const isNonNegInt = (v: unknown): v is number => typeof v === 'number' && Number.isInteger(v) && v >= 0;
const isRecord = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);
const isPositive = (v: unknown): boolean => typeof v === 'number' && Number.isFinite(v) && v > 0;
/** A plan's `train` object: known keys only, each optional and valid. */
function isTrainSettings(v: unknown): boolean {
  if (!isRecord(v)) return false;
  return Object.entries(v).every(([k, x]) => {
    switch (k) {
      case 'loss':
        return (TRAIN_LOSSES as readonly unknown[]).includes(x);
      case 'optimizer':
        return (TRAIN_OPTIMIZERS as readonly unknown[]).includes(x);
      case 'lr':
      case 'bucketMb':
        return isPositive(x);
      case 'gradDtype':
        return (GRAD_DTYPES as readonly unknown[]).includes(x);
      case 'syncEvery':
        return isPosInt(x);
      case 'labels':
        return typeof x === 'string' && x !== '';
      case 'freeze':
        return Array.isArray(x) && x.length > 0 && x.every((f) => typeof f === 'string' && f !== '');
      default:
        return false;
    }
  });
}

/** Parses `parallax.json` text. Never throws: whatever cannot be read is a problem. */
export function parseConfig(text: string): ConfigDoc {
  const errors: ParseError[] = [];
  const root = parseTree(text, errors, { allowTrailingComma: true, disallowComments: false });
  const problems: ConfigProblem[] = errors.map((e) => ({
    span: { offset: e.offset, length: Math.max(1, e.length) },
    message: `JSON syntax: ${printParseErrorCode(e.error)}`,
    severity: 'error',
    bySchema: true,
  }));
  if (!root || root.type !== 'object') {
    if (text.trim() !== '') {
      problems.push({ span: { offset: 0, length: Math.min(1, text.length) }, message: 'parallax.json must hold an object with "plans"', severity: 'error', bySchema: true });
    }
    return { plans: [], problems };
  }
  const plansNode = findNodeAtLocation(root, ['plans']);
  if (!plansNode || plansNode.type !== 'object') {
    const where = plansNode ?? root;
    problems.push({
      span: { offset: where.offset, length: plansNode ? where.length : 1 },
      message: 'parallax.json needs a "plans" object: { "plans": { "<name>": { "model": "…" } } }',
      severity: 'error',
      bySchema: true,
    });
    return { plans: [], problems };
  }
  const plans: ConfigPlan[] = [];
  for (const prop of plansNode.children ?? []) {
    const [keyNode, valueNode] = prop.children ?? [];
    if (!keyNode || typeof keyNode.value !== 'string') continue;
    plans.push(readPlan(keyNode.value, keyNode, prop, valueNode));
  }
  return { plans, problems };
}

function readPlan(name: string, keyNode: Node, prop: Node, valueNode: Node | undefined): ConfigPlan {
  const plan: ConfigPlan = { name, nameSpan: spanOf(keyNode), span: spanOf(prop), keys: new Map(), values: {}, problems: [] };
  const problem = (span: TextSpan, message: string, bySchema: boolean, key?: string, severity: 'error' | 'warning' = 'error'): void => {
    plan.problems.push({ span, message, severity, bySchema, plan: name, ...(key !== undefined ? { key } : {}) });
  };
  if (!valueNode || valueNode.type !== 'object') {
    problem(plan.nameSpan, `plan "${name}" must be an object with at least "model"`, true);
    return plan;
  }
  for (const p of valueNode.children ?? []) {
    const [k, v] = p.children ?? [];
    if (!k || typeof k.value !== 'string') continue;
    plan.keys.set(k.value, {
      key: k.value,
      keySpan: spanOf(k),
      valueSpan: v ? spanOf(v) : { offset: k.offset + k.length, length: 0 },
      propertySpan: spanOf(p),
      value: v ? plain(getNodeValue(v)) : undefined,
    });
  }
  const vals = plan.values;
  const typed = <K extends keyof PlanValues>(key: K, ok: (v: unknown) => boolean, what: string): void => {
    const node = plan.keys.get(key);
    if (!node) return;
    if (ok(node.value)) (vals as Record<string, unknown>)[key] = node.value;
    else problem(node.valueSpan, `"${key}" must be ${what}`, true, key);
  };
  typed('description', (v) => typeof v === 'string', 'a string');
  typed('model', (v) => typeof v === 'string' && v.trim() !== '', 'the path of an .onnx file');
  typed('mode', isParallelMode, PARALLEL_MODES.map((m) => `"${m}"`).join(' or '));
  typed('devices', (v) => typeof v === 'string' && checkDeviceSpecText(v) === null, 'comma-separated kind:count entries, e.g. "cpu:2" or "cpu:1,webgpu:1"');
  typed('batch', isPosInt, 'a whole number ≥ 1');
  typed('shards', (v) => Array.isArray(v) && v.length > 0 && v.every(isPosInt), 'an array of row counts ≥ 1, one per device');
  typed('train', isTrainSettings, `an object of "loss" (${TRAIN_LOSSES.join(', ')}), "optimizer" (${TRAIN_OPTIMIZERS.join(', ')}), "lr" and "bucketMb" (numbers > 0), "gradDtype" (${GRAD_DTYPES.join(', ')}), "syncEvery" (a whole number ≥ 1), "labels" (a .npy path), "freeze" (an array of patterns), each optional`);
  typed('microBatches', isPosInt, 'a whole number ≥ 1');
  typed('stages', isPosInt, 'a whole number ≥ 1');
  typed('cuts', (v) => Array.isArray(v) && v.every((c) => typeof c === 'string' && c !== ''), 'an array of node names');
  typed('schedule', (v) => (PIPELINE_SCHEDULES as readonly unknown[]).includes(v), PIPELINE_SCHEDULES.map((m) => `"${m}"`).join(' or '));
  typed('tensor', (v) => isPosInt(v) && (v as number) >= 2, 'a whole number ≥ 2');
  typed('keepWhole', (v) => Array.isArray(v) && v.length > 0 && v.every((c) => typeof c === 'string' && c.trim() !== ''), 'an array of node names, scopes (/layers.5/mlp) or globs');
  typed('data', isPosInt, 'a positive whole number');
  typed('deviceMemory', (v) => typeof v === 'string' && parseByteSize(v) !== null, 'a size such as "16GiB", "512MiB" or "80GB"');
  typed('steps', isPosInt, 'a whole number ≥ 1');
  typed('warmup', isNonNegInt, 'a whole number ≥ 0');
  typed('seed', (v) => typeof v === 'number' && Number.isInteger(v), 'a whole number');
  typed('baseline', (v) => typeof v === 'boolean', 'true or false');
  typed('opLevel', (v) => typeof v === 'boolean', 'true or false');
  typed('batchDim', (v) => typeof v === 'string' && v !== '', 'a dimension name');
  typed('dims', (v) => isRecord(v) && Object.values(v).every(isPosInt), 'an object of dimension name → whole number ≥ 1');
  typed('inputShapes', (v) => isRecord(v) && Object.values(v).every((s) => Array.isArray(s) && s.every(isPosInt)), 'an object of input name → array of whole numbers');
  typed('values', (v) => isRecord(v) && Object.values(v).every((x) => typeof x === 'number' && Number.isFinite(x)), 'an object of input name → number');
  typed('inputs', (v) => typeof v === 'string' && v !== '', 'the path of a .npy or .json file');
  for (const [key, node] of plan.keys) {
    if (!(PLAN_KEYS as readonly string[]).includes(key)) problem(node.keySpan, `unknown key "${key}"; a plan takes ${PLAN_KEYS.join(', ')}`, true, key, 'warning');
  }
  if (!plan.keys.has('model')) problem(plan.nameSpan, `plan "${name}" has no "model": give the path of the .onnx file to profile`, true);
  checkPlan(plan);
  return plan;
}

/**
 * What the schema cannot say: pipeline keys in a data plan, micro-batches that do not divide
 * the batch, stage and cut counts that do not match the devices. These are the runner's own
 * rules, caught before a run starts.
 */
function checkPlan(plan: ConfigPlan): void {
  const v = plan.values;
  const add = (key: string, message: string, severity: 'error' | 'warning' = 'error'): void => {
    const node = plan.keys.get(key);
    plan.problems.push({ span: node ? node.keySpan : plan.nameSpan, message, severity, bySchema: false, plan: plan.name, key });
  };
  const mode = v.mode ?? 'data';
  if (mode === 'hybrid') {
    if (plan.keys.has('train')) add('train', 'not yet: training runs in "mode": "data"; hybrid training is coming');
    for (const k of [...DATA_KEYS, ...PIPELINE_KEYS]) {
      if (k !== 'train' && plan.keys.has(k)) add(k, `"${k}" applies to "mode": "${DATA_KEYS.includes(k) ? 'data' : 'pipeline'}" only; this plan runs a data × tensor hybrid`, 'warning');
    }
    for (const k of ['data', 'tensor'] as const) if (v[k] === undefined && !plan.keys.has(k)) add(k, `"mode": "hybrid" needs "data" (replicas) and "tensor" (devices per replica), e.g. "data": 2, "tensor": 2 with "devices": "cpu:4"`);
    const n = v.devices !== undefined ? deviceCount(v.devices) : null;
    if (n !== null && v.data !== undefined && v.tensor !== undefined && v.data * v.tensor !== n) add('data', `"data": ${v.data} × "tensor": ${v.tensor} needs ${v.data * v.tensor} devices, but "devices": "${v.devices}" has ${n}`);
    return;
  }
  if (plan.keys.has('data')) add('data', `"data" applies to "mode": "hybrid" only; this plan runs ${mode === 'pipeline' ? 'a pipeline' : mode === 'tensor' ? 'tensor parallel' : 'data parallel'}`, 'warning');
  if (mode !== 'tensor') for (const k of TENSOR_KEYS) if (plan.keys.has(k)) add(k, `"${k}" applies to "mode": "tensor" only; this plan runs ${mode === 'pipeline' ? 'a pipeline' : 'data parallel'}`, 'warning');
  if (mode === 'tensor') {
    for (const k of [...DATA_KEYS, ...PIPELINE_KEYS]) {
      if (k !== 'train' && plan.keys.has(k)) add(k, `"${k}" applies to "mode": "${DATA_KEYS.includes(k) ? 'data' : 'pipeline'}" only; this plan runs tensor parallel`, 'warning');
    }
    const n = v.devices !== undefined ? deviceCount(v.devices) : null;
    if (n !== null && v.tensor !== undefined && v.tensor !== n) add('tensor', `"tensor": ${v.tensor} splits every weight over ${v.tensor} devices, but "devices": "${v.devices}" has ${n}; give as many devices`);
    return;
  }
  if (mode !== 'pipeline') {
    for (const k of PIPELINE_KEYS) if (plan.keys.has(k)) add(k, `"${k}" applies to "mode": "pipeline" only; this plan runs data parallel`, 'warning');
    if (v.shards !== undefined) {
      const n = v.devices !== undefined ? deviceCount(v.devices) : null;
      const total = v.shards.reduce((a, b) => a + b, 0);
      if (n !== null && v.shards.length !== n) add('shards', `${v.shards.length} shards but "devices": "${v.devices}" has ${n}; give one row count per device`);
      else if (v.batch !== undefined && total !== v.batch) add('shards', `the shards add up to ${total} rows, not the batch of ${v.batch}`);
    }
    if ((v.train?.syncEvery ?? 1) > 1 && (v.train?.gradDtype ?? 'float32') !== 'float32') {
      add('train', '"gradDtype" compresses the gradients of the all-reduce, which local SGD ("syncEvery" above 1) does not send; use one or the other');
    }
    return;
  }
  if (v.schedule === '1f1b' && v.train === undefined) add('schedule', '"schedule": "1f1b" interleaves forward and backward micro-batches, so it needs "train" (inference has no backward); use "gpipe"');
  for (const k of DATA_KEYS) if (plan.keys.has(k)) add(k, `"${k}" applies to "mode": "data" only; this plan runs a pipeline`, 'warning');
  const k = v.devices !== undefined ? deviceCount(v.devices) : null;
  if (v.batch !== undefined && v.microBatches !== undefined && v.batch % v.microBatches !== 0) {
    const near = [v.microBatches - 1, v.microBatches + 1, v.microBatches - 2, v.microBatches + 2].filter((x) => x >= 1 && v.batch! % x === 0);
    add('microBatches', `${v.microBatches} micro-batches do not divide the batch of ${v.batch}${near.length ? `; e.g. ${near[0]} does` : ''}`);
  }
  if (k !== null && v.stages !== undefined && v.stages !== k) {
    add('stages', `${v.stages} stages but "devices": "${v.devices}" has ${k}; the pipeline runs one stage per device`);
  }
  if (k !== null && v.cuts !== undefined && v.cuts.length > 0 && v.cuts.length !== k - 1) {
    add('cuts', `${v.cuts.length} cut${v.cuts.length === 1 ? '' : 's'} make ${v.cuts.length + 1} stages, but "devices": "${v.devices}" has ${k}; give ${k - 1}`);
  }
}

/** The plan of `doc` named `name`. */
export function findPlan(doc: ConfigDoc, name: string): ConfigPlan | undefined {
  return doc.plans.find((p) => p.name === name);
}

/** The plan whose property contains `offset` (for hovers and code actions). */
export function planAt(doc: ConfigDoc, offset: number): ConfigPlan | undefined {
  return doc.plans.find((p) => offset >= p.span.offset && offset <= p.span.offset + p.span.length);
}

/** The key of `plan` whose name or value contains `offset`. */
export function keyAt(plan: ConfigPlan, offset: number): PlanKeyNode | undefined {
  for (const k of plan.keys.values()) if (offset >= k.propertySpan.offset && offset <= k.propertySpan.offset + k.propertySpan.length) return k;
  return undefined;
}

/** True when the plan has no error problems (warnings do not stop a run). */
export function isRunnable(plan: ConfigPlan): boolean {
  return !plan.problems.some((p) => p.severity === 'error');
}

/** Absolute path of the plan's model: relative paths are relative to the config file's folder. */
export function planModelPath(plan: ConfigPlan, configPath: string): string | null {
  const m = plan.values.model;
  if (m === undefined) return null;
  return isAbsolute(m) ? m : join(dirname(configPath), m);
}

/**
 * The runner's plan for a config plan: the file's values over the settings' defaults. Null
 * when the plan cannot run (see {@link isRunnable}) or names no model.
 */
export function toProfilePlan(plan: ConfigPlan, configPath: string, settings: ProfileSettings, outPath: string): ProfileRequest | null {
  const modelPath = planModelPath(plan, configPath);
  if (!isRunnable(plan) || modelPath === null) return null;
  const v = plan.values;
  const mode = v.mode ?? 'data';
  const pipeline = mode === 'pipeline';
  const data = mode === 'data';
  // Files a plan names are relative to the config's folder.
  const besideConfig = (f: string): string => (isAbsolute(f) ? f : join(dirname(configPath), f));
  return {
    modelPath,
    // The trace records the label as the model's path, so it stays the path as written
    // (relative to the config's folder); the plan's name is in the trace's file name.
    modelLabel: v.model!,
    plan: makePlan({
      mode,
      devices: (v.devices ?? settings.devices).replace(/\s+/g, ''),
      batch: v.batch ?? settings.batch,
      steps: v.steps ?? settings.steps,
      warmup: v.warmup ?? settings.warmup,
      seed: v.seed ?? 0,
      ...(data && v.shards !== undefined ? { shards: v.shards } : {}),
      ...((data || pipeline || mode === 'tensor') && v.train !== undefined ? { train: { ...TRAIN_DEFAULTS, ...v.train, ...(v.train.labels !== undefined ? { labels: besideConfig(v.train.labels) } : {}) } } : {}),
      ...((mode === 'tensor' || mode === 'hybrid') && v.tensor !== undefined ? { tensor: v.tensor } : {}),
      ...((mode === 'tensor' || mode === 'hybrid') && v.keepWhole !== undefined ? { keepWhole: v.keepWhole } : {}),
      ...(mode === 'hybrid' && v.data !== undefined ? { data: v.data } : {}),
      ...(pipeline ? { microBatches: v.microBatches ?? DEFAULT_MICRO_BATCHES } : {}),
      ...(pipeline && v.stages !== undefined ? { stages: v.stages } : {}),
      ...(pipeline && v.cuts !== undefined && v.cuts.length > 0 ? { cuts: v.cuts } : {}),
      ...(pipeline && v.schedule !== undefined ? { schedule: v.schedule } : {}),
    }),
    capture: true,
    opLevel: v.opLevel ?? settings.opLevel,
    adviceOnPoorQuality: settings.adviceOnPoorQuality,
    baseline: v.baseline ?? settings.baseline,
    // A configuration that names its steps times exactly those.
    ...(v.steps === undefined && settings.minTime > 0 ? { minTimedMs: settings.minTime * 1000 } : {}),
    outPath,
    ...(v.batchDim !== undefined ? { batchDim: v.batchDim } : {}),
    ...(v.dims !== undefined ? { dims: v.dims } : {}),
    ...(v.inputShapes !== undefined ? { inputShapes: v.inputShapes } : {}),
    ...(v.values !== undefined ? { values: v.values } : {}),
    ...(v.inputs !== undefined ? { inputsFile: besideConfig(v.inputs) } : {}),
    ...(v.deviceMemory !== undefined && parseByteSize(v.deviceMemory) !== null ? { deviceMemory: parseByteSize(v.deviceMemory)! } : {}),
  };
}

/**
 * The value a plan runs with for `key`, written or defaulted: what a finding's suggestion is
 * compared with to tell whether the user already changed it.
 */
export function effectiveValue(plan: ConfigPlan, key: PlanKey, settings: Pick<ProfileSettings, 'devices' | 'batch'>): unknown {
  const v = plan.values as Record<string, unknown>;
  if (v[key] !== undefined) return v[key];
  if (key === 'devices') return settings.devices;
  if (key === 'batch') return settings.batch;
  if (key === 'microBatches' && (plan.values.mode ?? 'data') === 'pipeline') return DEFAULT_MICRO_BATCHES;
  return undefined;
}

// ---------------------------------------------------------------------------------------------
// Trace files of config plans: `<model>.<plan>.<YYYYMMDD-HHMMSS>[-N].parallax.json` in the
// output folder. Every run of a plan keeps its own file, so the Runs view has a history to
// compare and the plan's CodeLens finds its latest run by name alone.

/** A plan name as it appears in a file name: anything but letters, digits, `_` and `-` becomes `_`. */
export function planSlug(name: string): string {
  return name.replace(/[^A-Za-z0-9_-]/g, '_') || '_';
}

/** Model base name without `.onnx`. */
export function modelBase(modelPath: string): string {
  return basename(modelPath).replace(/\.onnx$/i, '');
}

const pad = (n: number, w = 2): string => String(n).padStart(w, '0');

/** Local-time stamp `YYYYMMDD-HHMMSS`. */
export function timeStamp(d: Date): string {
  return `${d.getFullYear()}${pad(d.getMonth() + 1)}${pad(d.getDate())}-${pad(d.getHours())}${pad(d.getMinutes())}${pad(d.getSeconds())}`;
}

/** File name of a run of `planName` on `modelPath` started at `at`; `n` > 0 tells apart runs of the same second. */
export function configTraceName(modelPath: string, planName: string, at: Date, n = 0): string {
  return `${modelBase(modelPath)}.${planSlug(planName)}.${timeStamp(at)}${n > 0 ? `-${n}` : ''}.parallax.json`;
}

const STAMP = /^(\d{8}-\d{6})(?:-(\d+))?$/;

/** True when `fileName` is a run of `planName` on `modelPath` (see {@link configTraceName}). */
export function isConfigTraceOf(fileName: string, modelPath: string, planName: string): boolean {
  const prefix = `${modelBase(modelPath)}.${planSlug(planName)}.`;
  const suffix = '.parallax.json';
  if (!fileName.startsWith(prefix) || !fileName.endsWith(suffix)) return false;
  return STAMP.test(fileName.slice(prefix.length, fileName.length - suffix.length));
}

/** Sort key of a config trace name: stamp then counter, so that later runs sort later. */
export function configTraceOrder(fileName: string): string {
  const m = /\.(\d{8}-\d{6})(?:-(\d+))?\.parallax\.json$/.exec(fileName);
  return m ? `${m[1]}-${pad(Number(m[2] ?? 0), 6)}` : '';
}

/** Of a plan's trace file names, those to delete so that the newest `keep` remain (keep 0: none). */
export function tracesToPrune(fileNames: string[], keep: number): string[] {
  if (keep <= 0 || fileNames.length <= keep) return [];
  const sorted = fileNames.slice().sort((a, b) => configTraceOrder(a).localeCompare(configTraceOrder(b)));
  return sorted.slice(0, sorted.length - keep);
}
