/**
 * Reads `NodeProto.metadata_props` of the top-level graph's nodes.
 *
 * onnx-proto 8 is generated from ONNX 1.10, which predates `metadata_props` on nodes (field
 * 9, added in ONNX 1.16). Its decoder skips the field, yet that is where
 * `torch.onnx.export(dynamo=True)` writes `pkg.torch.onnx.stack_trace` and
 * `pkg.torch.onnx.name_scopes`, the only link from a node to the user's Python source. This
 * module walks just the path ModelProto.graph (7) → GraphProto.node (1) →
 * NodeProto.metadata_props (9) → StringStringEntryProto key (1) / value (2) with protobufjs'
 * own Reader, the way the generated static code does, and skips everything else (so the
 * multi-megabyte initializers cost one seek each).
 */
import { Reader } from 'protobufjs/minimal';

const WIRE_LEN = 2;

/**
 * Metadata of every node of the model's main graph, in file order (the order the static
 * decoder returns them in); null for nodes without metadata. Call it only on bytes the
 * onnx-proto decoder has already accepted.
 */
export function readNodeMetadata(bytes: Uint8Array): Array<Record<string, string> | null> {
  const r = Reader.create(bytes);
  const nodes: Array<Record<string, string> | null> = [];
  while (r.pos < r.len) {
    const tag = r.uint32();
    if (tag >>> 3 === 7 && (tag & 7) === WIRE_LEN) {
      // A repeated occurrence of the graph field merges into the first one, so its nodes
      // append: the same rule protobufjs applies to the repeated `node` field itself.
      const end = r.uint32() + r.pos;
      while (r.pos < end) {
        const t = r.uint32();
        if (t >>> 3 === 1 && (t & 7) === WIRE_LEN) {
          const nodeEnd = r.uint32() + r.pos;
          nodes.push(readNode(r, nodeEnd));
        } else {
          r.skipType(t & 7);
        }
      }
    } else {
      r.skipType(tag & 7);
    }
  }
  return nodes;
}

function readNode(r: Reader, end: number): Record<string, string> | null {
  let meta: Record<string, string> | null = null;
  while (r.pos < end) {
    const t = r.uint32();
    if (t >>> 3 === 9 && (t & 7) === WIRE_LEN) {
      const entryEnd = r.uint32() + r.pos;
      let key = '';
      let value = '';
      while (r.pos < entryEnd) {
        const et = r.uint32();
        if (et >>> 3 === 1 && (et & 7) === WIRE_LEN) key = r.string();
        else if (et >>> 3 === 2 && (et & 7) === WIRE_LEN) value = r.string();
        else r.skipType(et & 7);
      }
      meta ??= {};
      meta[key] = value;
    } else {
      r.skipType(t & 7);
    }
  }
  return meta;
}
