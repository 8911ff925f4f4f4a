/**
 * What every compiler needs besides its plan: the model's inputs as laid out in the shared
 * global batch and its outputs with their batch axes. Compilers are pure: no ONNX Runtime,
 * no files; the runner materialises the segments they name.
 */
import { bytesPerElement } from '../tensor-util';
import type { RowRange, TrainingProgram } from '../../profiler/program';
import type { StageTrainingContext } from '../train/pipeline-models';

/** A graph input as the compilers see it. */
export interface InputLayoutTyped {
  name: string;
  dtype: string;
  /** Global dims (batch axis at the full batch). */
  dims: number[];
  batchAxis: number | null;
}

export interface CompileContext {
  inputs: InputLayoutTyped[];
  /** Graph outputs and the axis each is gathered on. */
  outputs: { name: string; batchAxis: number }[];
  /** Elements of all parameters (for a gradient buffer). */
  parameterCount: number;
  /** Number of devices of the run. */
  devices: number;
  /** Node names of the model, in graph order (segments list theirs). */
  nodeNames: readonly string[];
  /** What a training plan compiles against: its step models' names (absent for inference). */
  training?: TrainingContext;
  /** What a pipeline training plan compiles against: its stages' training models (absent otherwise). */
  pipelineTraining?: PipelineTrainingContext;
  /** What a tensor training plan compiles against: its devices' training models (absent otherwise). */
  tensorTraining?: TensorTrainingContext;
}

/** A tensor-parallel run's training models as its compiler names them (runtime/train/tensor-models.ts). */
export interface TensorTrainingContext {
  /** The labels input of the last chain part (the whole model's). */
  labels: string;
  /**
   * Per chain part, the backward all-reduce of its column-parallel layers' input gradient
   * (`gradient`, the tensor that holds the gradient of `of`; its size per batch row, or per
   * step without a batch dimension; `layer` the split group's label), or null.
   */
  reductions: ({ of: string; gradient: string; layer: string; bytesPerRow: number | null } | null)[];
  /**
   * Replicated weights read inside a split region (an attention scale): each device's
   * gradient of one is a partial sum, so they are all-reduced before the optimizer. The
   * backward output holding each gradient (the same on every device) and its elements.
   */
  partialGradients: { param: string; grad: string; elements: number }[];
  /** Per device: its trainable parameters (slices under their own names) in chain order, its loss output, its optimizer's slots. */
  ranks: { parameters: { name: string; dims: number[]; grad: string }[]; loss: string; optimizer: TrainingContext['optimizer'] }[];
}

/** The stages' training models as the pipeline training compiler names them (runtime/train/pipeline-models.ts). */
export interface PipelineTrainingContext {
  labels: string;
  stages: { context: StageTrainingContext }[];
}

/** The training step's models as the compiler names them (built by runtime/train/step-models.ts). */
export interface TrainingContext {
  /** Trainable parameters in model order, with the backward output holding each gradient. */
  parameters: { name: string; dims: number[]; grad: string }[];
  /** The scalar loss output of the forward segment. */
  loss: string;
  /** The labels graph input (rows of the global batch, like the model's inputs). */
  labels: string;
  /** Optimizer model slots: state tensors, updated outputs, scalar inputs. */
  optimizer: Omit<TrainingProgram, 'parameters' | 'loss' | 'lr' | 'optimizer'>;
}

/** Bytes of `rows` rows of the named inputs (inputs without a batch count whole). */
export function inputBytes(inputs: readonly InputLayoutTyped[], names: readonly string[], rows: number): number {
  let total = 0;
  for (const inp of inputs) {
    if (!names.includes(inp.name)) continue;
    const all = inp.dims.reduce((a, b) => a * b, 1) * bytesPerElement(inp.dtype);
    total += inp.batchAxis === null ? all : (all / Math.max(1, inp.dims[inp.batchAxis])) * rows;
  }
  return total;
}

/** Consecutive row ranges of the given sizes. */
export function rowRanges(counts: readonly number[]): RowRange[] {
  let start = 0;
  return counts.map((count) => {
    const r = { start, count };
    start += count;
    return r;
  });
}
