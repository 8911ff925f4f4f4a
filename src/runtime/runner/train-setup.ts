/**
 * The runner's part of a training run: the step models built from the model (before any
 * worker starts, so a model the gradient rules cannot differentiate is refused first),
 * synthetic labels from a fixed teacher, the initial weights every replica starts from, and
 * the numerical check of the trained weights against the one-device training run.
 */
import { readFileSync, mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { InferenceSession, Tensor } from 'onnxruntime-node';
import { UserError } from '../../common/errors';
import { freezePattern, type TrainPlan } from '../../profiler/plan';
import { decodeModelProto } from '../onnx/model';
import type { NumericalCheck, TrainingMeta } from '../../profiler/trace-format';
import type { Program } from '../../profiler/program';
import { parseNpy, type ModelInput } from '../inputs';
import { teacherModel } from '../train/loss';
import { readParameterValues } from '../train/parameters';
import { buildTrainingModels, type TrainingModels } from '../train/step-models';
import type { PipelineTrainingModels } from '../train/pipeline-models';
import { stageSegments } from '../compile/train-pipeline';
import { tensorTrainingLayout } from '../compile/train-tensor';
import type { TensorTrainingModels } from '../train/tensor-models';
import { compareOutputs } from './trace';
import type { DoneMessage } from './workers';

type OrtModule = typeof import('onnxruntime-node');

function loadOrt(): OrtModule {
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  return require('onnxruntime-node') as OrtModule;
}

/** What a training run needs besides its plan. */
export interface TrainingSetup {
  models: TrainingModels;
  /** The labels of the global batch (a graph input of the forward, split like the inputs). */
  labels: ModelInput;
  /** Initial value of every trainable parameter, float32 in shared memory. */
  initial: Record<string, SharedArrayBuffer>;
  /** Weights `--freeze` left out of training. */
  frozen: string[];
}

/**
 * Builds the step models, the teacher's labels for `inputs` and the initial weights.
 * @param dims sizes of symbolic dimensions other than the batch (see buildGradientModel).
 */
export async function prepareTraining(modelPath: string, label: string, train: TrainPlan, inputs: readonly ModelInput[], labelAxis: number, dims: Record<string, number>): Promise<TrainingSetup> {
  const bytes = readFileSync(modelPath);
  const models = buildTrainingModels(bytes, train, label, dims);
  const params = models.context.parameters;
  if (params.length === 0) {
    const frozen = (train.freeze ?? []).length > 0 ? ` once --freeze ${train.freeze!.join(' --freeze ')} has left its weights out; freeze fewer` : '';
    throw new UserError(`${label}: no float weight leads to the output, so there is nothing to train${frozen}`);
  }
  const values = readParameterValues(bytes, params.map((p) => p.name), label);
  const initial: Record<string, SharedArrayBuffer> = {};
  for (const [name, v] of values) {
    if (v.dtype !== 'float32') throw new UserError(`${label}: parameter "${name}" is ${v.dtype}; training runs float32 models only`);
    const sab = new SharedArrayBuffer(v.data.byteLength);
    new Float32Array(sab).set(v.data);
    initial[name] = sab;
  }
  const teacher = await teacherLabels(bytes, models, inputs, labelAxis, label);
  const labels = train.labels ? fileLabels(train.labels, teacher) : teacher;
  return { models, labels, initial, frozen: frozenParameters(bytes, train, label) };
}

/**
 * The float weights `train.freeze` matches. A pattern that matches none is refused: it is
 * almost always a typo, and a run that silently trains everything would hide it.
 */
function frozenParameters(bytes: Uint8Array, train: TrainPlan, label: string): string[] {
  const patterns = train.freeze ?? [];
  if (patterns.length === 0) return [];
  const graph = decodeModelProto(bytes, label).graph;
  const names = [
    ...(graph?.initializer ?? []).filter((t) => t.dataType === 1 || t.dataType === 11).map((t) => t.name ?? ''),
    ...(graph?.node ?? []).filter((n) => n.opType === 'Constant' && !n.domain).map((n) => n.output?.[0] ?? ''),
  ];
  const frozen = new Set<string>();
  for (const p of patterns) {
    const re = freezePattern(p);
    const hit = names.filter((n) => re.test(n));
    if (hit.length === 0) {
      const some = names.slice(0, 4).map((n) => `"${n}"`).join(', ');
      throw new UserError(`--freeze ${p} matches no weight of ${label}; its weights are named like ${some || '(none)'}`);
    }
    for (const n of hit) frozen.add(n);
  }
  return [...frozen];
}

/** A `.npy` file's labels, checked against the shape and element type the loss reads (the teacher's labels show them). */
function fileLabels(file: string, want: ModelInput): ModelInput {
  let bytes: Uint8Array;
  try {
    bytes = readFileSync(file);
  } catch (e) {
    throw new UserError(`--labels ${file}: cannot read it (${(e as NodeJS.ErrnoException).code ?? (e as Error).message}); give the path of a .npy file`);
  }
  const npy = parseNpy(bytes, file);
  const shape = (d: readonly number[]): string => `(${d.join(', ')})`;
  const sameShape = npy.dims.length === want.dims.length && npy.dims.every((d, i) => d === want.dims[i]);
  // Class indices may come as int32 (np.int32) as well as NumPy's default int64.
  const dtypeOk = npy.dtype === want.dtype || (want.dtype === 'int64' && npy.dtype === 'int32');
  if (!sameShape || !dtypeOk) {
    const cast = want.dtype === 'int64' ? 'np.int64' : `np.${want.dtype}`;
    throw new UserError(`--labels ${file}: holds ${npy.dtype} ${shape(npy.dims)}, the loss needs ${want.dtype} ${shape(want.dims)} for this batch; save them with np.save(path, labels.astype(${cast}))`);
  }
  const data = npy.dtype === want.dtype ? npy.data : BigInt64Array.from(npy.data as Int32Array, (v) => BigInt(v));
  return { ...want, data };
}

/**
 * Labels from a teacher (the model with seeded noise on the weights training trains, wherever
 * the model keeps them): its outputs, or their argmax for cross-entropy.
 */
async function teacherLabels(bytes: Uint8Array, models: TrainingModels, inputs: readonly ModelInput[], batchAxis: number, label: string): Promise<ModelInput> {
  const ort = loadOrt();
  const wl = models.withLoss;
  let session: InferenceSession | null = null;
  try {
    session = await ort.InferenceSession.create(teacherModel(bytes, { parameters: models.context.parameters.map((p) => p.name) }, label), { intraOpNumThreads: 1, interOpNumThreads: 1, executionMode: 'sequential' });
    const feeds: Record<string, Tensor> = {};
    for (const i of inputs) feeds[i.name] = new ort.Tensor(i.dtype as 'float32', i.data as Float32Array, i.dims);
    const out = (await session.run(feeds, [wl.output]))[wl.output]!;
    const data = out.data as Float32Array;
    if (wl.labelType === 'int64') {
      const classes = out.dims[out.dims.length - 1]!;
      const ids = new BigInt64Array(data.length / classes);
      for (let r = 0; r < ids.length; r++) {
        let best = 0;
        for (let c = 1; c < classes; c++) if (data[r * classes + c]! > data[r * classes + best]!) best = c;
        ids[r] = BigInt(best);
      }
      return { name: wl.labels, dtype: 'int64', dims: out.dims.slice(0, -1), data: ids, batchAxis };
    }
    return { name: wl.labels, dtype: wl.labelType, dims: [...out.dims], data: Float32Array.from(data), batchAxis };
  } finally {
    await session?.release();
  }
}

/** Writes the step models into `dir` (the backward cut per gradient bucket of `program`); their paths by segment id. */
export function writeTrainingSegments(program: Program, models: TrainingModels, dir: string): Record<number, string> {
  mkdirSync(dir, { recursive: true });
  const paths: Record<number, string> = {};
  const buckets = program.buffers.filter((b) => b.gradients);
  const cut = models.cut(buckets.map((b) => b.gradients!.map((g) => g.grad)));
  for (const seg of program.segments) {
    const bytes = seg.kind === 'train-forward' ? cut.forward : seg.kind === 'train-backward' ? cut.backward[seg.bucket] : seg.kind === 'optimizer' ? models.optimizer.bytes : null;
    if (!bytes) continue;
    const path = join(dir, `${seg.kind}-${seg.id}.onnx`);
    writeFileSync(path, bytes);
    paths[seg.id] = path;
  }
  return paths;
}

/** Writes a pipeline training program's stage models into `dir`; their paths by segment id. */
export function writePipelineTrainingSegments(program: Program, models: PipelineTrainingModels, dir: string): Record<number, string> {
  mkdirSync(dir, { recursive: true });
  const paths: Record<number, string> = {};
  models.stages.forEach((st, s) => {
    const ids = stageSegments(s);
    for (const [id, bytes] of [[ids.forward, st.forward], [ids.backward, st.backward], [ids.optimizer, st.optimizer]] as const) {
      if (!program.segments.some((seg) => seg.id === id)) continue;
      const path = join(dir, `stage${s}-segment${id}.onnx`);
      writeFileSync(path, bytes);
      paths[id] = path;
    }
  });
  return paths;
}

/** Writes a tensor training run's per-device models into `dir`; their paths by segment id (layout: compile/train-tensor.ts). */
export function writeTensorTrainingSegments(models: TensorTrainingModels, dir: string): Record<number, string> {
  mkdirSync(dir, { recursive: true });
  const paths: Record<number, string> = {};
  const cut = models.context.reductions.map((r) => r !== null);
  tensorTrainingLayout(models.ranks.length, cut).forEach((ids, rank) => {
    const m = models.ranks[rank]!;
    const files: [number, Uint8Array, string][] = [
      ...m.parts.map((p, k): [number, Uint8Array, string] => [ids.forward[k]!, p.forward, `part${k}-forward`]),
      ...m.parts.flatMap((p, k) => p.backward.map((b, i): [number, Uint8Array, string] => [ids.backward[k]![i]!, b, `part${k}-backward${i}`])),
      [ids.optimizer, m.optimizer, 'optimizer'],
    ];
    for (const [id, bytes, name] of files) {
      const path = join(dir, `shard${rank}-${name}.onnx`);
      writeFileSync(path, bytes);
      paths[id] = path;
    }
  });
  return paths;
}

/** The global batch's loss per timed step: each device's loss weighted by its rows; a pipeline's from its last stage, a tensor-parallel run's from its last device (every device computes it whole). */
export function lossCurve(program: Program, done: readonly DoneMessage[]): number[] {
  if (program.stageTraining) return Array.from(done.at(-1)?.training?.losses ?? []);
  const steps = done[0]?.training?.losses.length ?? 0;
  const curve = new Array<number>(steps).fill(0);
  program.devices.forEach((dp, rank) => {
    let rows = 0;
    for (const ins of dp.instructions) if (ins.op === 'scatter') rows += ins.rows.count;
    const losses = done[rank]?.training?.losses;
    for (let s = 0; s < steps; s++) curve[s]! += (losses?.[s] ?? NaN) * (rows / program.batch);
  });
  return curve;
}

/**
 * Tolerance of the trained-weights check, float32: the N-device run sums each gradient in
 * another order (per shard, then over the ring) than the one-device run, which moves it by
 * float32 rounding (~1e-7 relative); SGD and momentum carry that into the weights scaled by
 * the learning rate, so |a−b| ≤ 1e-5 + 1e-4·|b| holds with a wide margin after tens of
 * steps. Adam divides by √v, so a gradient whose value is rounding noise can move its
 * weight by up to lr per step either way: its tolerance grows with lr × steps.
 */
export function trainingTolerance(train: TrainPlan, totalSteps: number): { atol: number; rtol: number; l2Tol: number } {
  const elementwise = train.optimizer === 'adam' ? { atol: 1e-5 + train.lr * totalSteps * 1e-2, rtol: 1e-3 } : { atol: 1e-5, rtol: 1e-4 };
  return { ...elementwise, l2Tol: TRAINED_L2_TOL };
}

/**
 * Relative L2 error a trained parameter may have when some of its elements miss the
 * element-wise tolerance. Rounding in another summation order can put an activation on the
 * other side of a ReLU's kink in one run and not the other; from that step on the two runs
 * train slightly different functions and the difference grows with the steps (demo model,
 * cpu:2, batch 16, SGD: the element-wise error jumps from 1e-7 to 2e-5 at one step, yet
 * every parameter stays within 1e-4 in L2 and the losses agree to 3e-8). A wrong gradient
 * (unscaled sum, a shard or bucket missed) moves every element by a share of the update and
 * lands far above this.
 */
export const TRAINED_L2_TOL = 1e-3;

/**
 * Why an N-device run's weights cannot be held to one-device training's, or null when they
 * can: compressed gradients and local SGD change the updates themselves (by up to half a
 * quantisation step per element and step, which error feedback only delays; local SGD by
 * the drift between averages), so no tolerance derived from float32 rounding holds; the two
 * loss curves are the comparison.
 */
export function notComparable(train: TrainPlan, devices: number): string | null {
  if (devices < 2) return null;
  if ((train.syncEvery ?? 1) > 1) return `local SGD (parameters averaged every ${train.syncEvery} steps) follows another path than one-device training; compare the loss curves`;
  if (train.gradDtype && train.gradDtype !== 'float32') return `${train.gradDtype} gradients on the wire change every update; compare the loss curves`;
  return null;
}

/** The trained weights of the parallel run against the one-device run's, and the training record. */
export function trainingResults(
  train: TrainPlan,
  models: TrainingModels,
  program: Program,
  done: readonly DoneMessage[],
  baseline: { program: Program; done: readonly DoneMessage[]; reference: string } | null,
  totalSteps: number,
  frozen: readonly string[] = [],
  merge?: (done: readonly DoneMessage[]) => Record<string, Float32Array>,
): { check: NumericalCheck | undefined; meta: TrainingMeta } {
  // Rank 0 holds every parameter in data mode; each pipeline stage holds its own; tensor-parallel
  // devices hold slices, which `merge` joins.
  const params: Record<string, Float32Array> = merge ? merge(done) : Object.assign({}, ...done.map((d) => d.training?.parameters ?? {}));
  const meta: TrainingMeta = {
    loss: train.loss,
    optimizer: train.optimizer,
    lr: train.lr,
    bucketMb: train.bucketMb,
    parameters: models.context.parameters.length,
    parameterElements: models.context.parameters.reduce((n, p) => n + p.dims.reduce((a, b) => a * b, 1), 0),
    buckets: program.buffers.filter((b) => b.gradients).map((b) => ({ name: b.name, bytes: b.elements * 4, parameters: b.gradients!.map((g) => g.param) })),
    untrained: models.untrained,
    lossCurve: lossCurve(program, done),
    ...(baseline ? { baselineLossCurve: lossCurve(baseline.program, baseline.done) } : {}),
    labels: train.labels ? 'file' : 'teacher',
    ...(train.gradDtype && train.gradDtype !== 'float32' ? { gradDtype: train.gradDtype } : {}),
    ...((train.syncEvery ?? 1) > 1 ? { syncEvery: train.syncEvery } : {}),
    ...(frozen.length > 0 ? { frozen: [...frozen] } : {}),
    ...(program.stageTraining && program.mode === 'pipeline' ? { pipeline: pipelineRecord(program, done) } : {}),
  };
  const differs = notComparable(train, program.devices.length);
  if (differs) meta.notComparable = differs;
  if (!baseline || differs) return { check: undefined, meta };
  const want = new Map(Object.entries(baseline.done[0]?.training?.parameters ?? {}));
  const got = new Map(Object.entries(params));
  const { atol, rtol, l2Tol } = trainingTolerance(train, totalSteps);
  const check = compareOutputs(got, want, baseline.reference, atol, rtol, l2Tol);
  return { check, meta };
}

/** A pipeline training run's schedule and, per stage, its stored activations as measured and as compiled. */
function pipelineRecord(program: Program, done: readonly DoneMessage[]): NonNullable<TrainingMeta['pipeline']> {
  const micro = new Set(program.devices[0]?.instructions.flatMap((i) => ('micro' in i && i.micro >= 0 ? [i.micro] : [])));
  return {
    schedule: program.schedule,
    microBatches: micro.size,
    stages: (program.stageTraining ?? []).map((t, s) => ({
      stage: s,
      parameters: t.parameters.length,
      peakStoredMicroBatches: done[s]?.training?.stash?.peakMicroBatches ?? 0,
      compiledPeakMicroBatches: program.peakStored?.[s] ?? 0,
      peakStoredBytes: done[s]?.training?.stash?.peakBytes ?? 0,
    })),
  };
}
