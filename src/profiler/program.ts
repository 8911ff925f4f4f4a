/**
 * Programs: what every parallel mode compiles to.
 *
 *   Plan ──compiler (src/runtime/compile/<mode>.ts)──▶ Program ──▶ interpreter (each device worker)
 *                                                              └─▶ simulator (src/profiler/simulate/)
 *
 * A program names the segment models the devices load (the whole model, a pipeline stage;
 * later weight shards and backward graphs) and, for every device, the instruction list of
 * one step. The schedule (GPipe today) is nothing but the order of those lists. The
 * interpreter executes any program without knowing which mode compiled it, and records
 * every span from the instruction it is executing (kind, phase, collective, bytes, peer,
 * micro-batch, stage); the simulator runs the same program on a cost table and predicts the
 * trace. Traces carry the program they ran as `meta.program`.
 *
 * Device indices in a program are ranks: positions in the run's device list, and lanes of
 * the trace it produces.
 */
import { Type, type Static } from '@sinclair/typebox';
import { COLLECTIVE_OPS, PHASES } from './span-vocabulary';
import { GRAD_DTYPES } from './plan';

/** Rows [start, start + count) of the global batch. */
export const RowRangeSchema = Type.Object({ start: Type.Integer({ minimum: 0 }), count: Type.Integer({ minimum: 1 }) });
export type RowRange = Static<typeof RowRangeSchema>;

/** A model a device loads. */
export const SegmentSchema = Type.Union([
  /** The user's model as it is (data parallelism, the one-device baseline). */
  Type.Object({ id: Type.Integer(), kind: Type.Literal('whole'), label: Type.String() }),
  /** Contiguous nodes of the graph in topological order; its inputs and outputs are the cut edges. */
  Type.Object({
    id: Type.Integer(),
    kind: Type.Literal('stage'),
    label: Type.String(),
    stage: Type.Integer({ minimum: 0 }),
    /** Node names, in topological order. */
    nodes: Type.Array(Type.String()),
  }),
  /**
   * A training step's forward: the model and its loss, with the trainable parameters as
   * inputs (fed from the weights the device keeps resident); it also outputs the
   * activations the backward segment reads.
   */
  Type.Object({ id: Type.Integer(), kind: Type.Literal('train-forward'), label: Type.String() }),
  /**
   * Part of a training step's backward: the gradients of one bucket (`bucket`, an index into
   * the program's gradient buffers), from the saved activations and the gradients earlier
   * parts handed on.
   */
  Type.Object({ id: Type.Integer(), kind: Type.Literal('train-backward'), label: Type.String(), bucket: Type.Integer({ minimum: 0 }) }),
  /**
   * The optimizer update: parameters, their (all-reduced) gradients and the optimizer state
   * in, new values out; the device writes them over its resident weights and state.
   */
  Type.Object({ id: Type.Integer(), kind: Type.Literal('optimizer'), label: Type.String() }),
  /**
   * Part of one device's tensor-parallel chain: contiguous nodes of the graph in topological
   * order, cut after every layer whose output is a partial sum, holding the device's slices
   * of the split weights (and everything else whole). Its inputs and outputs are the cut edges.
   */
  Type.Object({
    id: Type.Integer(),
    kind: Type.Literal('shard'),
    label: Type.String(),
    /** The device whose weight slices it holds. */
    rank: Type.Integer({ minimum: 0 }),
    /** Position in the device's chain. */
    part: Type.Integer({ minimum: 0 }),
    /** Node names, in topological order. */
    nodes: Type.Array(Type.String()),
  }),
  /**
   * A pipeline stage's training forward: the stage's nodes (the last stage's with the loss)
   * with its parameters as inputs; it outputs what the next stage receives and the
   * activations its backward reads.
   */
  Type.Object({ id: Type.Integer(), kind: Type.Literal('stage-forward'), label: Type.String(), stage: Type.Integer({ minimum: 0 }) }),
  /**
   * A pipeline stage's backward: from the gradients of the stage's outputs (received from the
   * next stage; the last stage starts from its loss) and the activations its forward saved,
   * the gradients of its parameters and of its input activations (sent to the previous stage).
   */
  Type.Object({
    id: Type.Integer(),
    kind: Type.Literal('stage-backward'),
    label: Type.String(),
    stage: Type.Integer({ minimum: 0 }),
    /**
     * Which part of a backward cut in two around a collective (tensor-parallel training: 0
     * up to the all-reduced gradient, 1 from it); absent for a backward run whole.
     */
    piece: Type.Optional(Type.Integer({ minimum: 0 })),
  }),
]);
export type Segment = Static<typeof SegmentSchema>;

const micro = Type.Integer({ minimum: -1, description: 'micro-batch index; -1 when the step has none' });
const tensors = Type.Array(Type.String());
/** Bytes the instruction moves, as estimated by the compiler (0 when unknown until run). */
const bytes = Type.Number({ minimum: 0 });

/**
 * One instruction of a device's step. The `op` discriminates; every consumer switches on it
 * exhaustively.
 */
export const InstructionSchema = Type.Union([
  /** Copy rows of graph inputs from the shared global batch into the device's input buffers. */
  Type.Object({ op: Type.Literal('scatter'), micro, rows: RowRangeSchema, tensors, bytes }),
  /** Receive tensors from a peer (point to point), in this order. */
  Type.Object({ op: Type.Literal('recv'), micro, from: Type.Integer({ minimum: 0 }), tensors, bytes }),
  /** Run a segment on the rows at hand. */
  Type.Object({
    op: Type.Literal('run'),
    micro,
    segment: Type.Integer({ minimum: 0 }),
    rows: Type.Integer({ minimum: 1 }),
    phase: Type.Union(PHASES.filter((p) => p !== 'none').map((p) => Type.Literal(p))),
  }),
  /** Send tensors to a peer (point to point), in this order. */
  Type.Object({ op: Type.Literal('send'), micro, to: Type.Integer({ minimum: 0 }), tensors, bytes }),
  /** A collective over a group of ranks on a named buffer of the program. */
  Type.Object({
    op: Type.Literal('collective'),
    collective: Type.Union(COLLECTIVE_OPS.map((c) => Type.Literal(c))),
    group: Type.Array(Type.Integer({ minimum: 0 })),
    buffer: Type.String(),
    bytes,
    /**
     * Run only in steps whose optimizer update is a multiple of `every` (local SGD's
     * parameter averaging); absent: every step.
     */
    every: Type.Optional(Type.Integer({ minimum: 1 })),
  }),
  /**
   * Start a collective on the device's communication thread and go on: it runs while the
   * instructions after it do (a gradient bucket's all-reduce while the backward continues).
   * Every member starts its collectives in the same order.
   */
  Type.Object({
    op: Type.Literal('collective-start'),
    collective: Type.Union(COLLECTIVE_OPS.map((c) => Type.Literal(c))),
    group: Type.Array(Type.Integer({ minimum: 0 })),
    buffer: Type.String(),
    bytes,
  }),
  /** Wait until the collectives started on these buffers have finished. */
  Type.Object({ op: Type.Literal('collective-wait'), buffers: Type.Array(Type.String()) }),
  /** Copy graph outputs of the rows at hand into the shared outputs, on each output's batch axis. */
  Type.Object({ op: Type.Literal('gather'), micro, rows: RowRangeSchema, tensors, bytes }),
]);
export type Instruction = Static<typeof InstructionSchema>;
export type InstructionOp = Instruction['op'];

/** A parameter's gradient as packed into a bucket buffer: `elements` floats from `offset`. */
export const PackedGradientSchema = Type.Object({
  /** The parameter. */
  param: Type.String(),
  /** The backward segment's output holding its gradient. */
  grad: Type.String(),
  offset: Type.Integer({ minimum: 0 }),
  elements: Type.Integer({ minimum: 0 }),
});
export type PackedGradient = Static<typeof PackedGradientSchema>;

export const BufferSchema = Type.Object({
  name: Type.String(),
  dtype: Type.Literal('float32'),
  elements: Type.Integer({ minimum: 0 }),
  synthetic: Type.Boolean(),
  /**
   * A gradient bucket: the gradients it carries, in packing order. Before its collective the
   * device packs them (scaled by its share of the batch) into the buffer; after it, the
   * buffer holds the global batch's gradients, which the optimizer reads.
   */
  gradients: Type.Optional(Type.Array(PackedGradientSchema)),
  /**
   * An activation a collective combines (tensor parallelism): before the collective the device
   * copies the latest run's output `tensor` (a partial sum) into the buffer; after it, the
   * buffer, shaped as that output, feeds the later segments under the same name. `layer`
   * names the split layers it closes, for the timeline.
   */
  activation: Type.Optional(
    Type.Object({
      tensor: Type.String(),
      layer: Type.String(),
      /** The pass it belongs to (absent: forward): tensor-parallel training all-reduces a column-parallel layer's input gradient in the backward. */
      phase: Type.Optional(Type.Literal('backward')),
    }),
  ),
  /**
   * A parameter buffer (local SGD): before its collective the device packs its current
   * weights, scaled by its share of the batch; after it, the buffer holds their average over
   * the devices, which the device copies over its weights.
   */
  parameters: Type.Optional(Type.Array(Type.Object({ param: Type.String(), offset: Type.Integer({ minimum: 0 }), elements: Type.Integer({ minimum: 0 }) }))),
});
export type ProgramBuffer = Static<typeof BufferSchema>;

/** What a training program's devices keep between steps and feed to its segments. */
export const TrainingProgramSchema = Type.Object({
  /** Trainable parameters in model order (each is a graph input of the forward, backward and optimizer segments). */
  parameters: Type.Array(Type.Object({ name: Type.String(), dims: Type.Array(Type.Integer({ minimum: 0 })) })),
  /** The scalar loss output of the forward segment (recorded per step). */
  loss: Type.String(),
  optimizer: Type.Union([Type.Literal('sgd'), Type.Literal('momentum'), Type.Literal('adam')]),
  lr: Type.Number(),
  /** Optimizer state tensors (zeros at start; same shape as their parameter): input name, output name, parameter. */
  state: Type.Array(Type.Object({ input: Type.String(), output: Type.String(), param: Type.String() })),
  /** Per parameter, the optimizer segment's output with its new value. */
  updated: Type.Array(Type.Object({ param: Type.String(), output: Type.String() })),
  /** Element type of the gradient buckets on the wire of their all-reduces (absent: float32). */
  gradDtype: Type.Optional(Type.Union(GRAD_DTYPES.map((d) => Type.Literal(d)))),
  /** The optimizer's scalar learning-rate input, and its 1-based step input (Adam), if any. */
  lrInput: Type.String(),
  stepInput: Type.Union([Type.String(), Type.Null()]),
  /**
   * A pipeline stage's micro-batches (absent in data mode): the tensors its backward reads of
   * its forward, kept per micro-batch from the forward to the backward of that micro-batch,
   * and the parameter gradients summed over the step's micro-batches, each scaled by
   * `scale` (1/M: the mean of equal micro-batches' mean losses is the batch's). A stage
   * without the loss has `loss` "".
   */
  pipeline: Type.Optional(
    Type.Object({
      stash: Type.Array(Type.String()),
      gradients: Type.Array(Type.Object({ param: Type.String(), grad: Type.String() })),
      scale: Type.Number(),
    }),
  ),
  /** Each device trains parameters of its own (tensor-parallel slices), so each reports its trained weights (absent: rank 0 speaks for replicas). */
  ownParameters: Type.Optional(Type.Boolean()),
});
export type TrainingProgram = Static<typeof TrainingProgramSchema>;

export const DeviceProgramSchema = Type.Object({
  rank: Type.Integer({ minimum: 0 }),
  /** Pipeline stage this device runs, -1 when the mode has no stages. */
  stage: Type.Integer({ minimum: -1 }),
  /** Segment ids this device loads. */
  segments: Type.Array(Type.Integer({ minimum: 0 })),
  /** One step, in order. */
  instructions: Type.Array(InstructionSchema),
});
export type DeviceProgram = Static<typeof DeviceProgramSchema>;

export const ProgramSchema = Type.Object({
  /** The compiler that made it (a plan's mode) and its schedule. */
  mode: Type.String(),
  schedule: Type.String(),
  /** Rows per step. */
  batch: Type.Integer({ minimum: 1 }),
  segments: Type.Array(SegmentSchema),
  devices: Type.Array(DeviceProgramSchema),
  /** Graph outputs and the axis each is gathered on. */
  outputs: Type.Array(Type.Object({ name: Type.String(), batchAxis: Type.Integer({ minimum: 0 }) })),
  /** Shared buffers collectives work on (e.g. gradients). `synthetic`: its values are not real data. */
  buffers: Type.Array(BufferSchema),
  /** The training part of a training program (absent for inference and in pipeline mode). */
  training: Type.Optional(TrainingProgramSchema),
  /**
   * A pipeline training program's training part per stage (= rank): each stage keeps only
   * its own parameters and optimizer state. Absent otherwise.
   */
  stageTraining: Type.Optional(Type.Array(TrainingProgramSchema)),
  /**
   * Peak micro-batches of activations each stage keeps between a forward and its backward,
   * by stage, as the instruction order implies (pipeline training only; GPipe: M, 1F1B:
   * at most K − s).
   */
  peakStored: Type.Optional(Type.Array(Type.Integer({ minimum: 0 }))),
});
export type Program = Static<typeof ProgramSchema>;

/** What an activation collective's span says after its operation: the layer, and `backward` for a gradient (`/layers.3/mlp, backward`). */
export function activationSpanLabel(act: NonNullable<ProgramBuffer['activation']>): string {
  return `${act.layer}${act.phase === 'backward' ? ', backward' : ''}`;
}

/** One instruction as a short line of text, e.g. `recv  m3 ← 0  [x] 16.0 KiB`. */
export function formatInstruction(ins: Instruction, segments: readonly Segment[]): string {
  const m = 'micro' in ins && ins.micro >= 0 ? `m${ins.micro} ` : '';
  const kib = (b: number): string => (b > 0 ? ` ${(b / 1024).toFixed(1)} KiB` : '');
  const names = (t: string[]): string => (t.length <= 3 ? t.join(', ') : `${t.slice(0, 3).join(', ')} +${t.length - 3}`);
  switch (ins.op) {
    case 'scatter':
      return `scatter    ${m}rows ${ins.rows.start}..${ins.rows.start + ins.rows.count - 1}${kib(ins.bytes)}`;
    case 'recv':
      return `recv       ${m}← ${ins.from}  [${names(ins.tensors)}]${kib(ins.bytes)}`;
    case 'run':
      return `run        ${m}${segments[ins.segment]?.label ?? `segment ${ins.segment}`} (${ins.rows} rows, ${ins.phase})`;
    case 'send':
      return `send       ${m}→ ${ins.to}  [${names(ins.tensors)}]${kib(ins.bytes)}`;
    case 'collective':
      return `${ins.collective.padEnd(10)} ${ins.buffer} over [${ins.group.join(', ')}]${kib(ins.bytes)}${ins.every ? ` (every ${ins.every} steps)` : ''}`;
    case 'collective-start':
      return `${`${ins.collective}…`.padEnd(10)} ${ins.buffer} over [${ins.group.join(', ')}]${kib(ins.bytes)} (on the communication thread)`;
    case 'collective-wait':
      return `wait       ${names(ins.buffers)}`;
    case 'gather':
      return `gather     ${m}rows ${ins.rows.start}..${ins.rows.start + ins.rows.count - 1}${kib(ins.bytes)}`;
    default: {
      const never: never = ins;
      return String(never);
    }
  }
}

/** A program as text: per device, the instruction list of one step (`parallax plan`). */
export function formatProgram(p: Program, deviceIds: readonly string[] = []): string {
  const lines = [`program: ${p.mode} (${p.schedule}), ${p.batch} rows per step, ${p.segments.length} segment model(s)`];
  for (const d of p.devices) {
    const id = deviceIds[d.rank] ?? `rank ${d.rank}`;
    const segs = d.segments.map((s) => p.segments[s]?.label ?? String(s)).join(', ');
    const peak = p.peakStored?.[d.rank];
    const kept = peak !== undefined ? ` — keeps at most ${peak} micro-batch${peak === 1 ? '' : 'es'} of activations` : '';
    lines.push(`  ${id}${d.stage >= 0 ? ` — stage ${d.stage}` : ''} — loads ${segs}${kept}`);
    for (const ins of d.instructions) lines.push(`    ${formatInstruction(ins, p.segments)}`);
  }
  return lines.join('\n');
}
