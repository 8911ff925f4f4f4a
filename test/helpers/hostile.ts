/**
 * Hostile inputs for the reliability tests: crafted models and traces, each one of a class
 * of failure Parallax must answer with one line (or a result), never a crash. Built in code
 * so the tests own their inputs and every variant is a parameter away.
 */
import { onnx } from 'onnx-proto';
import { gzipSync } from 'node:zlib';
import { tinyMatMulModelBytes, seededValues } from './tiny-model';

/** A one-kernel Kineto trace, with `distributedInfo` and the event's fields as given. */
export function kinetoOneEvent(opts: { rank?: unknown; worldSize?: unknown; ts?: unknown; dur?: unknown; name?: string } = {}): Record<string, unknown> {
  const doc: Record<string, unknown> = {
    schemaVersion: 1,
    traceEvents: [
      { ph: 'X', cat: 'kernel', name: opts.name ?? 'gemm', pid: 0, tid: 7, ts: opts.ts ?? 1000, dur: opts.dur ?? 50, args: { device: 0 } },
    ],
  };
  if (opts.rank !== undefined || opts.worldSize !== undefined) doc['distributedInfo'] = { backend: 'nccl', rank: opts.rank ?? 0, world_size: opts.worldSize ?? 1 };
  return doc;
}

/** `depth` levels of nested arrays around a Kineto-looking object. */
export function deepJson(depth: number): string {
  return `{"traceEvents":${'['.repeat(depth)}${']'.repeat(depth)}}`;
}

/** gzip of `bytes` zero bytes: about 1,000× expansion, a decompression bomb. */
export function gzipZeros(bytes: number): Buffer {
  return gzipSync(Buffer.alloc(bytes), { level: 9 });
}

function floatTensor(name: string, dims: number[], values: Float32Array): onnx.ITensorProto {
  return { name, dims, dataType: onnx.TensorProto.DataType.FLOAT, rawData: new Uint8Array(values.buffer, values.byteOffset, values.byteLength) };
}

function valueInfo(name: string, dims: (number | string)[]): onnx.IValueInfoProto {
  return {
    name,
    type: { tensorType: { elemType: onnx.TensorProto.DataType.FLOAT, shape: { dim: dims.map((d) => (typeof d === 'number' ? { dimValue: d } : { dimParam: d })) } } },
  };
}

function encode(model: onnx.IModelProto): Uint8Array {
  return onnx.ModelProto.encode(onnx.ModelProto.create(model)).finish();
}

/**
 * y = x·W + b where W's data is external, at `location` (with `length` bytes); the model is
 * otherwise the tiny MatMul model.
 */
export function externalDataModel(location: string, length = 16 * 8 * 4): Uint8Array {
  const k = 16;
  const n = 8;
  return encode({
    irVersion: 8,
    opsetImport: [{ domain: '', version: 17 }],
    graph: {
      name: 'external',
      node: [
        { name: 'matmul', opType: 'MatMul', input: ['x', 'W'], output: ['xw'] },
        { name: 'add', opType: 'Add', input: ['xw', 'b'], output: ['y'] },
      ],
      initializer: [
        {
          name: 'W',
          dims: [k, n],
          dataType: onnx.TensorProto.DataType.FLOAT,
          dataLocation: onnx.TensorProto.DataLocation.EXTERNAL,
          externalData: [
            { key: 'location', value: location },
            { key: 'offset', value: '0' },
            { key: 'length', value: String(length) },
          ],
        },
        floatTensor('b', [n], seededValues(n, 11)),
      ],
      input: [valueInfo('x', ['batch', k])],
      output: [valueInfo('y', ['batch', n])],
    },
  });
}

function varint(n: number): number[] {
  const out: number[] = [];
  while (n > 0x7f) {
    out.push((n & 0x7f) | 0x80);
    n = Math.floor(n / 128);
  }
  out.push(n);
  return out;
}

/** A length-delimited protobuf field: how a nested message is appended to its parent's bytes. */
function frame(field: number, bytes: Uint8Array): Uint8Array {
  return Buffer.concat([Buffer.from([...varint((field << 3) | 2), ...varint(bytes.length)]), bytes]);
}

/**
 * A model whose output comes out of `depth` nested If nodes (each then-branch holds the next
 * If; every else-branch is an Identity of x). Nested messages are framed by hand, since
 * protobufjs' own encoder recurses per level and cannot write thousands of them.
 */
export function nestedIfModel(depth: number): Uint8Array {
  const T = onnx.AttributeProto.AttributeType;
  const identity = (out: string): onnx.IGraphProto => ({
    name: `leaf_${out}`,
    node: [{ name: `id_${out}`, opType: 'Identity', input: ['x'], output: [out] }],
    output: [valueInfo(out, ['batch', 4])],
  });
  let body: Uint8Array = onnx.GraphProto.encode(onnx.GraphProto.create(identity('y0'))).finish();
  let out = 'y0';
  for (let d = 1; d <= depth; d++) {
    out = d === depth ? 'y' : `y${d}`;
    const thenAttr = Buffer.concat([onnx.AttributeProto.encode({ name: 'then_branch', type: T.GRAPH }).finish(), frame(6, body)]);
    const node = Buffer.concat([
      onnx.NodeProto.encode({
        name: `if${d}`,
        opType: 'If',
        input: ['cond'],
        output: [out],
        attribute: [{ name: 'else_branch', type: T.GRAPH, g: identity(`e${d}`) }],
      }).finish(),
      frame(5, thenAttr),
    ]);
    if (d === depth) {
      const graph = Buffer.concat([
        onnx.GraphProto.encode({
          name: 'nested',
          input: [valueInfo('x', ['batch', 4]), { name: 'cond', type: { tensorType: { elemType: onnx.TensorProto.DataType.BOOL, shape: { dim: [] } } } }],
          output: [valueInfo('y', ['batch', 4])],
        }).finish(),
        frame(1, node),
      ]);
      const head = onnx.ModelProto.encode({ irVersion: 8, opsetImport: [{ domain: '', version: 17 }] }).finish();
      return Buffer.concat([head, frame(7, graph)]);
    }
    body = Buffer.concat([onnx.GraphProto.encode({ name: `level${d}`, output: [valueInfo(out, ['batch', 4])] }).finish(), frame(1, node)]);
  }
  throw new Error('depth must be at least 1');
}

/** The tiny MatMul model with its node names replaced (e.g. by names carrying escape bytes). */
export function renamedNodesModel(names: [string, string]): Uint8Array {
  const { bytes } = tinyMatMulModelBytes();
  const m = onnx.ModelProto.decode(bytes);
  const nodes = m.graph!.node as onnx.NodeProto[];
  nodes[0]!.name = names[0];
  nodes[1]!.name = names[1];
  return onnx.ModelProto.encode(m).finish();
}

/** The tiny MatMul model with both nodes writing the same tensor: invalid, refused by the loader with both names quoted. */
export function duplicateOutputModel(names: [string, string]): Uint8Array {
  const { bytes } = tinyMatMulModelBytes();
  const m = onnx.ModelProto.decode(bytes);
  const nodes = m.graph!.node as onnx.NodeProto[];
  nodes[0]!.name = names[0];
  nodes[1]!.name = names[1];
  nodes[0]!.output = ['y'];
  return onnx.ModelProto.encode(m).finish();
}

/** The tiny MatMul model with its Add replaced by an operator no ONNX Runtime knows. */
export function unknownOpModel(opType = 'NoSuchOperator'): Uint8Array {
  const { bytes } = tinyMatMulModelBytes();
  const m = onnx.ModelProto.decode(bytes);
  (m.graph!.node as onnx.NodeProto[])[1]!.opType = opType;
  return onnx.ModelProto.encode(m).finish();
}
