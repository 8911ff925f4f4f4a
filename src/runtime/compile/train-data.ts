/**
 * The data-parallel training compiler: the model replicated on every device, each step
 *
 *   scatter rows (inputs and labels) → run forward → per gradient bucket, in reverse layer
 *   order: run its backward part, start its all-reduce → wait for the all-reduces → run optimizer
 *
 * Gradients are grouped into buckets as PyTorch DDP groups them: walking the parameters from
 * the last layer to the first (the order backward produces them), each bucket is filled up
 * to the bucket size; a parameter larger than a bucket gets a bucket of its own. Each bucket
 * is one shared buffer and one all-reduce, so the timeline shows one span per bucket.
 *
 * The backward is cut into one part per bucket, and each bucket's all-reduce starts on the
 * device's communication thread (`collective-start`) as soon as its part has run, while the
 * next part runs; the optimizer waits for all of them (`collective-wait`).
 *
 * With `gradDtype` float16 or int8 the buckets travel encoded (runtime/comm/compress.ts);
 * the instructions' bytes are the encoded sizes.
 *
 * Local SGD (`syncEvery` k > 1): no gradient moves. Each device runs forward, backward (one
 * part: nothing overlaps it) and the optimizer on its own gradients, then, in every k-th
 * step, all-reduces its parameters (packed into one buffer, scaled by its share of the
 * batch), so that all replicas continue from their weighted average.
 */
import type { DataPlan, TrainPlan } from '../../profiler/plan';
import type { Instruction, PackedGradient, Program, ProgramBuffer, Segment } from '../../profiler/program';
import { inputBytes, rowRanges, type CompileContext, type TrainingContext } from './common';
import { resolveShards } from './data';
import { wireCodec } from '../comm/compress';

/** Bytes in a MB of `--bucket-mb` (PyTorch's `bucket_cap_mb` counts 2^20; the flag says MB, so 10^6). */
export const BUCKET_MB_BYTES = 1_000_000;

/** A bucket of gradients: parameters in the order they are packed. */
export interface Bucket {
  parameters: { name: string; grad: string; elements: number }[];
  /** float32 elements of the bucket. */
  elements: number;
}

/**
 * Groups float32 gradients into buckets of at most `bucketBytes`, in reverse order of
 * `params` (model order, so the last layer's gradients come first). A parameter larger than
 * a bucket gets one of its own; no parameter is split.
 */
export function bucketGradients(params: readonly { name: string; grad: string; elements: number }[], bucketBytes: number): Bucket[] {
  const buckets: Bucket[] = [];
  let cur: Bucket | null = null;
  for (let i = params.length - 1; i >= 0; i--) {
    const p = params[i]!;
    const bytes = p.elements * 4;
    if (cur && (cur.elements * 4 + bytes > bucketBytes)) {
      buckets.push(cur);
      cur = null;
    }
    cur ??= { parameters: [], elements: 0 };
    cur.parameters.push({ ...p });
    cur.elements += p.elements;
  }
  if (cur) buckets.push(cur);
  return buckets;
}

const elementsOf = (dims: readonly number[]): number => dims.reduce((a, b) => a * b, 1);

/** Buffer name of gradient bucket `i`. */
export function bucketName(i: number): string {
  return `gradients.b${i}`;
}

/** Buffer name of the parameters local SGD averages. */
export const PARAMETERS_BUFFER = 'parameters';

/** Compiles a data plan with a training part. */
export function compileTrainData(plan: DataPlan & { train: TrainPlan }, ctx: CompileContext & { training: TrainingContext }): Program {
  const t = ctx.training;
  const shards = rowRanges(resolveShards(plan, ctx.devices));
  const group = shards.map((_, r) => r);
  const syncEvery = group.length > 1 ? (plan.train.syncEvery ?? 1) : 1;
  const gradDtype = plan.train.gradDtype ?? 'float32';
  const codec = wireCodec(gradDtype);
  const buckets = bucketGradients(
    t.parameters.map((p) => ({ name: p.name, grad: p.grad, elements: elementsOf(p.dims) })),
    syncEvery > 1 ? Infinity : plan.train.bucketMb * BUCKET_MB_BYTES,
  );
  const buffers: ProgramBuffer[] = buckets.map((b, i) => {
    let offset = 0;
    const gradients: PackedGradient[] = b.parameters.map((p) => {
      const g = { param: p.name, grad: p.grad, offset, elements: p.elements };
      offset += p.elements;
      return g;
    });
    return { name: bucketName(i), dtype: 'float32', elements: b.elements, synthetic: false, gradients };
  });
  if (syncEvery > 1) {
    let offset = 0;
    const parameters = t.parameters.map((p) => {
      const e = elementsOf(p.dims);
      const packed = { param: p.name, offset, elements: e };
      offset += e;
      return packed;
    });
    buffers.push({ name: PARAMETERS_BUFFER, dtype: 'float32', elements: offset, synthetic: false, parameters });
  }
  const scattered = [...ctx.inputs.map((i) => i.name)];
  // Segments: the forward, one backward part per bucket, the optimizer.
  const gradientBuffers = buffers.filter((b) => b.gradients);
  const optimizer = 1 + gradientBuffers.length;
  return {
    mode: 'data',
    schedule: 'train',
    batch: plan.batch,
    segments: [
      { id: 0, kind: 'train-forward', label: 'forward + loss' },
      ...gradientBuffers.map((b, k): Segment => ({ id: 1 + k, kind: 'train-backward', label: `backward (${b.name})`, bucket: k })),
      { id: optimizer, kind: 'optimizer', label: `optimizer (${plan.train.optimizer})` },
    ],
    outputs: [],
    buffers,
    training: {
      parameters: t.parameters.map((p) => ({ name: p.name, dims: p.dims })),
      loss: t.loss,
      optimizer: plan.train.optimizer,
      lr: plan.train.lr,
      ...(gradDtype !== 'float32' && group.length > 1 ? { gradDtype } : {}),
      ...t.optimizer,
    },
    devices: shards.map((rows, rank) => {
      const backward = gradientBuffers.map((_, k): Instruction => ({ op: 'run', micro: -1, segment: 1 + k, rows: rows.count, phase: 'backward' }));
      const instructions: Instruction[] = [
        { op: 'scatter', micro: -1, rows, tensors: scattered, bytes: inputBytes(ctx.inputs, scattered, rows.count) },
        { op: 'run', micro: -1, segment: 0, rows: rows.count, phase: 'forward' },
        ...(syncEvery > 1
          ? // Local SGD: the optimizer reads this device's own gradients as the backward left them.
            backward
          : group.length > 1
            ? // Each bucket's all-reduce starts on the communication thread as soon as its
              // backward part has run, while the next part runs.
              [
                ...gradientBuffers.flatMap((b, k): Instruction[] => [
                  backward[k]!,
                  { op: 'collective-start', collective: 'allreduce', group, buffer: b.name, bytes: codec.bytes(b.elements) },
                ]),
                { op: 'collective-wait', buffers: gradientBuffers.map((b) => b.name) } satisfies Instruction,
              ]
            : // One device: the buckets are still packed (the optimizer reads them); nothing moves.
              [...backward, ...gradientBuffers.map((b): Instruction => ({ op: 'collective', collective: 'allreduce', group, buffer: b.name, bytes: 0 }))]),
        { op: 'run', micro: -1, segment: optimizer, rows: rows.count, phase: 'optimizer' },
        ...(syncEvery > 1 ? [{ op: 'collective', collective: 'allreduce', group, buffer: PARAMETERS_BUFFER, bytes: buffers.at(-1)!.elements * 4, every: syncEvery } satisfies Instruction] : []),
      ];
      return { rank, stage: -1, segments: Array.from({ length: optimizer + 1 }, (_, i) => i), instructions };
    }),
  };
}
