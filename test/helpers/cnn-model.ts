/**
 * A small convolutional classifier built in code for the tensor-parallel planner's tests
 * (NCHW, batch symbolic, seeded weights), written with the transformer helper's builder:
 *
 *   block.0: Conv 3×3 (3 → c) → BatchNormalization → Relu → Conv 3×3 (c → c) → Relu
 *   block.1: Conv 3×3 (c → 2c) → Mul [2c,1,1] → Add [1,2c,1,1] → Clip(0, 6) → MaxPool 2×2
 *            → Conv 1×1 (2c → c) → Relu
 *   head:    Conv 1×1 (c → 2c) → Relu → GlobalAveragePool → Flatten → Gemm (2c → classes)
 *
 * Each block is a Conv pair a channel split can take (output channels, per-channel ops,
 * input channels); the head's Conv pairs with the Gemm through the pool and the Flatten.
 * Options add a grouped or depthwise Conv inside block.1 (which carries a channel split when
 * the device count divides its groups, and stops it otherwise), or a head that flattens
 * channels-last (Transpose to NHWC, then Flatten, as channels-last exporters write it), which
 * interleaves the channel parts and stops the head's split.
 */
import { GraphBuilder, int, ints, valueInfo } from './transformer-model';
import { seededValues } from './tiny-model';
import { onnx } from 'onnx-proto';

/** Sizes and variants of {@link cnnModelBytes}. */
export interface CnnOptions {
  /** Channels of block.0 (block.1 and the head widen to twice this). */
  channels?: number;
  /** Input height and width. */
  size?: number;
  classes?: number;
  /** Groups of a grouped 3×3 Conv after block.1's Clip (2 × channels: depthwise); none when absent. */
  groups?: number;
  /** The head flattens channels-last (Transpose NCHW → NHWC, Flatten) instead of pooling. */
  channelsLastHead?: boolean;
}

const FLOAT = onnx.TensorProto.DataType.FLOAT;

/** A float initializer of the given values. */
function values(g: GraphBuilder, name: string, dims: number[], v: Float32Array): string {
  g.initializer.push({ name, dims, dataType: FLOAT, rawData: new Uint8Array(v.buffer, v.byteOffset, v.byteLength) });
  return name;
}

/** A convolutional classifier on input `x` float32 `[batch, 3, size, size]`, output `y` `[batch, classes]`. */
export function cnnModelBytes(opts: CnnOptions = {}): Uint8Array {
  const { channels: c = 8, size = 16, classes = 10, groups, channelsLastHead = false } = opts;
  const g = new GraphBuilder();
  const pads = (k: number): onnx.IAttributeProto => ints('pads', Array(4).fill((k - 1) / 2));
  const conv = (scope: string, input: string, cin: number, cout: number, k: number, group = 1): string =>
    g.op(`${scope}/Conv`, 'Conv', [input, g.weight(`${scope.slice(1).replace(/\//g, '.')}.weight`, [cout, cin / group, k, k], 0.3), g.weight(`${scope.slice(1).replace(/\//g, '.')}.bias`, [cout], 0.05)], [
      ints('kernel_shape', [k, k]),
      pads(k),
      int('group', group),
    ]);

  // block.0: Conv → BatchNormalization → Relu → Conv → Relu
  const c1 = conv('/block.0/conv1', 'x', 3, c, 3);
  const stat = (name: string, offset: number, seed: number): string =>
    values(g, `block.0.bn.${name}`, [c], seededValues(c, seed).map((v) => offset + 0.2 * v));
  const bn = g.op('/block.0/bn/BatchNormalization', 'BatchNormalization', [c1, stat('weight', 1, 101), stat('bias', 0, 102), stat('running_mean', 0, 103), stat('running_var', 1, 104)]);
  const r0 = g.op('/block.0/relu1/Relu', 'Relu', [bn]);
  const b0 = g.op('/block.0/relu2/Relu', 'Relu', [conv('/block.0/conv2', r0, c, c, 3)]);

  // block.1: Conv → per-channel scale and shift → Clip → MaxPool → Conv 1×1 → Relu
  const c3 = conv('/block.1/conv1', b0, c, 2 * c, 3);
  const scaled = g.op('/block.1/scale/Mul', 'Mul', [c3, g.weight('block.1.scale', [2 * c, 1, 1], 0.5)]);
  const shifted = g.op('/block.1/shift/Add', 'Add', [scaled, g.weight('block.1.shift', [1, 2 * c, 1, 1], 0.1)]);
  let act = g.op('/block.1/act/Clip', 'Clip', [shifted, g.scalar('block.1.act.min', 0), g.scalar('block.1.act.max', 6)]);
  if (groups !== undefined) act = conv('/block.1/dw', act, 2 * c, 2 * c, 3, groups);
  const pooled = g.op('/block.1/pool/MaxPool', 'MaxPool', [act], [ints('kernel_shape', [2, 2]), ints('strides', [2, 2])]);
  const b1 = g.op('/block.1/relu/Relu', 'Relu', [conv('/block.1/conv2', pooled, 2 * c, c, 1)]);

  // head: Conv 1×1 → Relu → (GlobalAveragePool | NHWC Transpose) → Flatten → Gemm
  const h = g.op('/head/relu/Relu', 'Relu', [conv('/head/conv', b1, c, 2 * c, 1)]);
  const half = size / 2;
  const features = channelsLastHead
    ? g.op('/head/flatten/Flatten', 'Flatten', [g.op('/head/nhwc/Transpose', 'Transpose', [h], [ints('perm', [0, 2, 3, 1])])], [int('axis', 1)])
    : g.op('/head/flatten/Flatten', 'Flatten', [g.op('/head/pool/GlobalAveragePool', 'GlobalAveragePool', [h])], [int('axis', 1)]);
  const width = channelsLastHead ? half * half * 2 * c : 2 * c;
  g.op('/head/fc/Gemm', 'Gemm', [features, g.weight('head.fc.weight', [classes, width], 0.3), g.weight('head.fc.bias', [classes], 0.05)], [int('transB', 1)]);
  return g.bytes('cnn', [valueInfo('x', ['batch', 3, size, size])], [valueInfo('y', ['batch', classes])]);
}
