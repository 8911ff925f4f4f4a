/**
 * Losses as ONNX subgraphs appended to a model, and synthetic labels from a fixed teacher.
 *
 * A loss adds a graph input for the labels and a scalar graph output `loss`, built only
 * from operators the gradient rules cover, so {@link buildGradientModel} differentiates the
 * model and its loss in one piece:
 * - `mse`: mean over every element of (output − labels)²; labels have the output's shape
 *   and type.
 * - `cross-entropy`: softmax cross-entropy over the last axis of the output (the logits),
 *   averaged over every other position; labels are int64 class indices shaped like the
 *   logits without their last axis. The one-hot mask is built with Equal/Range, so no
 *   gradient flows into the labels.
 * Both average over the batch, so the mean of the gradients of equal shards is the gradient
 * of the whole batch.
 *
 * Synthetic labels: {@link teacherModel} copies the model with every trained weight moved by
 * seeded noise; its outputs (regression) or their argmax (classification) are labels that
 * the model can fit exactly, so the loss of a correct training step falls.
 */
import type { onnx } from 'onnx-proto';
import { UserError } from '../../common/errors';
import { decodeModelProto, encodeModel, parseModel } from '../onnx/model';
import { mulberry32 } from '../onnx/random';
import { GraphBuilder } from './graph-builder';
import { parameterTensor, readParameter } from './parameters';

/** Loss kinds. */
export type LossKind = 'mse' | 'cross-entropy';

/** Options of {@link appendLoss}. */
export interface LossOptions {
  kind: LossKind;
  /** The model output the loss is of (default: the first output). */
  output?: string;
  /** Name of the labels input (default `labels`, made unique). */
  labels?: string;
}

/** Result of {@link appendLoss}. */
export interface ModelWithLoss {
  bytes: Uint8Array;
  /** The labels graph input. */
  labels: string;
  /** Element type of the labels. */
  labelType: 'float32' | 'float64' | 'int64';
  /** The scalar loss output. */
  loss: string;
  /** The output the loss is of. */
  output: string;
}

/**
 * Appends a loss to the model in `bytes`.
 * @throws UserError where the output is not a float tensor of known rank.
 */
export function appendLoss(bytes: Uint8Array, opts: LossOptions, modelName = 'model'): ModelWithLoss {
  const proto = decodeModelProto(bytes, modelName);
  const ir = parseModel(bytes, modelName, { checkExternalData: false });
  const output = opts.output ?? ir.outputs[0]?.name;
  const info = ir.outputs.find((o) => o.name === output);
  if (!output || !info) throw new UserError(`${modelName}: "${opts.output}" is not an output of the model; name one of ${ir.outputs.map((o) => o.name).join(', ')}`);
  if (info.dtype !== 'float32' && info.dtype !== 'float64') throw new UserError(`${modelName}: output "${output}" is ${info.dtype}; a loss needs float32 or float64`);
  const taken = new Set<string>([...ir.producers.keys(), ...ir.initializerByName.keys(), ...ir.inputs.map((i) => i.name)]);
  const unique = (want: string): string => {
    let n = want;
    for (let i = 1; taken.has(n); i++) n = `${want}_${i}`;
    taken.add(n);
    return n;
  };
  const labels = unique(opts.labels ?? 'labels');
  const loss = unique('loss');
  let prefix = 'loss';
  while ([...taken].some((t) => t.startsWith(`${prefix}/`))) prefix += '_';
  const b = new GraphBuilder(prefix, ir.opsetVersion ?? 17, info.dtype);
  const dims = info.dims;
  const rank = dims?.length;
  if (rank === undefined || rank < 1) throw new UserError(`${modelName}: the rank of output "${output}" is not declared; add its shape to the model's outputs`);
  const dimProto = (d: number | string | null): onnx.TensorShapeProto.IDimension => (typeof d === 'number' ? { dimValue: d } : typeof d === 'string' ? { dimParam: d } : {});

  let labelType: ModelWithLoss['labelType'];
  let labelsInfo: onnx.IValueInfoProto;
  let value: string;
  if (opts.kind === 'mse') {
    labelType = info.dtype;
    labelsInfo = { name: labels, type: { tensorType: { elemType: b.floatCode, shape: { dim: dims!.map(dimProto) } } } };
    const diff = b.sub(output, labels);
    value = b.reduce('ReduceMean', b.mul(diff, diff), Array.from({ length: rank }, (_, i) => i), false);
  } else {
    if (rank < 2) throw new UserError(`${modelName}: cross-entropy needs logits with a class axis last and at least one batch axis; output "${output}" has rank ${rank}`);
    labelType = 'int64';
    labelsInfo = { name: labels, type: { tensorType: { elemType: 7, shape: { dim: dims!.slice(0, -1).map(dimProto) } } } };
    const logProbs = b.op('LogSoftmax', [output], [{ name: 'axis', i: -1 }]);
    // With a fixed class count the class indices are a constant, which keeps every shape in
    // the loss statically known; otherwise they are counted at run time.
    const last = dims![rank - 1];
    const classIds =
      typeof last === 'number'
        ? b.ints(Array.from({ length: last }, (_, i) => i))
        : b.op('Range', [b.int(0), b.op('Gather', [b.shape(output), b.int(-1)]), b.int(1)]);
    const oneHot = b.op('Cast', [b.op('Equal', [b.unsqueeze(labels, [-1]), classIds])], [{ name: 'to', i: b.floatCode }]);
    const picked = b.reduce('ReduceSum', b.mul(oneHot, logProbs), [-1], false);
    value = b.neg(b.reduce('ReduceMean', picked, Array.from({ length: rank - 1 }, (_, i) => i), false));
  }
  b.nodes.push({ name: `${prefix}/output`, opType: 'Identity', input: [value], output: [loss] });
  const graph = proto.graph!;
  const model: onnx.IModelProto = {
    ...proto,
    graph: {
      ...graph,
      node: [...(graph.node ?? []), ...b.nodes],
      initializer: [...(graph.initializer ?? []), ...b.constants],
      input: [...(graph.input ?? []), labelsInfo],
      output: [...(graph.output ?? []), { name: loss, type: { tensorType: { elemType: b.floatCode, shape: { dim: [] } } } }],
    },
  };
  return { bytes: encodeModel(model), labels, labelType, loss, output };
}

/** Options of {@link teacherModel}. */
export interface TeacherOptions {
  /** Seed of the noise (default 1). */
  seed?: number;
  /** Noise relative to each weight tensor's root-mean-square (default 0.5). */
  noise?: number;
  /**
   * The weights to move: initializers or outputs of Constant nodes, by name (default: every
   * float initializer). Training passes the parameters it trains, so the teacher differs
   * from the student exactly where the student can learn, also in models whose exporter
   * keeps the weights in Constant nodes (paddle2onnx, older tf2onnx), and leaves alone what
   * is not a weight to learn: frozen weights, BatchNormalization statistics (noise could
   * make a variance negative) and float constants such as Resize scales (noise would change
   * the output's shape).
   */
  parameters?: readonly string[];
}

/**
 * A teacher for synthetic labels: the model with each weight moved by uniform noise of
 * `noise` × that tensor's RMS (unit-variance noise scaled, so small and large tensors move
 * alike). Same options, same bytes.
 */
export function teacherModel(bytes: Uint8Array, opts: TeacherOptions = {}, modelName = 'model'): Uint8Array {
  const proto = decodeModelProto(bytes, modelName);
  const rand = mulberry32(opts.seed ?? 1);
  const noise = opts.noise ?? 0.5;
  const chosen = opts.parameters ? new Set(opts.parameters) : null;
  const isFloat = (t: onnx.ITensorProto): boolean => t.dataType === 1 || t.dataType === 11;
  const move = (t: onnx.ITensorProto): onnx.ITensorProto => {
    const p = readParameter(t);
    let sq = 0;
    for (const v of p.data) sq += v * v;
    const rms = Math.sqrt(sq / Math.max(1, p.data.length)) || 1;
    const data = p.data.map((v) => v + (rand() * 2 - 1) * Math.sqrt(3) * noise * rms);
    return parameterTensor({ ...p, data });
  };
  const graph = proto.graph!;
  // Initializers first, then Constant nodes, each in model order: the noise stream is drawn in
  // that order, so a model without Constant weights gets the same teacher as before they counted.
  const initializer = (graph.initializer ?? []).map((t) => (isFloat(t) && (chosen ? chosen.has(t.name ?? '') : true) ? move(t) : t));
  const node = (graph.node ?? []).map((n) => {
    const out = n.output?.[0] ?? '';
    if (!chosen?.has(out) || n.opType !== 'Constant' || n.domain) return n;
    const value = n.attribute?.find((a) => a.name === 'value');
    if (!value?.t || !isFloat(value.t)) return n;
    const t = { ...move({ ...value.t, name: out }), name: value.t.name ?? null };
    return { ...n, attribute: (n.attribute ?? []).map((a) => (a === value ? { ...a, t } : a)) };
  });
  return encodeModel({ ...proto, graph: { ...graph, initializer, node } });
}
