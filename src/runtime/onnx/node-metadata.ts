/**
 * Reads `NodeProto.metadata_props` and `NodeProto.device_configurations` of the top-level
 * graph's nodes.
 *
 * onnx-proto 8 is generated from ONNX 1.10, which predates `metadata_props` on nodes (field
 * 9, added in ONNX 1.16). Its decoder skips the field, yet that is where
 * `torch.onnx.export(dynamo=True)` writes `pkg.torch.onnx.stack_trace` and
 * `pkg.torch.onnx.name_scopes`, the only link from a node to the user's Python source. This
 * module walks just the path ModelProto.graph (7) → GraphProto.node (1) →
 * NodeProto.metadata_props (9) → StringStringEntryProto key (1) / value (2) with protobufjs'
 * own Reader, the way the generated static code does, and skips everything else (so the
 * multi-megabyte initializers cost one seek each).
 *
 * The same walk reads ONNX's multi-device annotations (ONNX 1.18, IR 11; "multi-device"
 * proposal): NodeProto.device_configurations (10) → NodeDeviceConfigurationProto
 * sharding_spec (2) → ShardingSpecProto tensor_name (1), device (2), sharded_dim (4) →
 * ShardedDimProto axis (1), simple_sharding (2) → SimpleShardedDimProto num_shards (3): which
 * axis of which of the node's tensors is cut into how many shards.
 */
import { Reader } from 'protobufjs/minimal';

const WIRE_LEN = 2;

/**
 * Metadata of every node of the model's main graph, in file order (the order the static
 * decoder returns them in); null for nodes without metadata. Call it only on bytes the
 * onnx-proto decoder has already accepted.
 */
export function readNodeMetadata(bytes: Uint8Array): Array<Record<string, string> | null> {
  return readNodeExtras(bytes).map((n) => n.metadata);
}

/** One axis of a tensor cut into shards, as a node's sharding annotation says. */
export interface ShardedDim {
  axis: number;
  /** Shards along the axis (the product of its simple shardings' counts). */
  shards: number;
}

/** A node's sharding annotation of one of its tensors (ShardingSpecProto). */
export interface ShardingSpec {
  /** Configuration the annotation belongs to (NodeDeviceConfigurationProto.configuration_id). */
  configuration: string;
  tensor: string;
  /** Logical devices the tensor is spread over. */
  devices: number[];
  dims: ShardedDim[];
}

/** What the walk reads of one node: its metadata, and its sharding annotations. */
export interface NodeExtras {
  metadata: Record<string, string> | null;
  sharding: ShardingSpec[];
}

/** Metadata and sharding annotations of every node of the main graph, in file order. */
export function readNodeExtras(bytes: Uint8Array): NodeExtras[] {
  const r = Reader.create(bytes);
  const nodes: NodeExtras[] = [];
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

function readNode(r: Reader, end: number): NodeExtras {
  let meta: Record<string, string> | null = null;
  const sharding: ShardingSpec[] = [];
  while (r.pos < end) {
    const t = r.uint32();
    if (t >>> 3 === 10 && (t & 7) === WIRE_LEN) {
      sharding.push(...readDeviceConfiguration(r, r.uint32() + r.pos));
    } else if (t >>> 3 === 9 && (t & 7) === WIRE_LEN) {
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
  return { metadata: meta, sharding };
}

/** Repeated int64 (packed or not) read as numbers. */
function readInt64s(r: Reader, wire: number, into: number[]): void {
  if (wire === WIRE_LEN) {
    const end = r.uint32() + r.pos;
    while (r.pos < end) into.push(Number(r.int64()));
  } else into.push(Number(r.int64()));
}

function readDeviceConfiguration(r: Reader, end: number): ShardingSpec[] {
  let configuration = '';
  const specs: Omit<ShardingSpec, 'configuration'>[] = [];
  while (r.pos < end) {
    const t = r.uint32();
    if (t >>> 3 === 1 && (t & 7) === WIRE_LEN) configuration = r.string();
    else if (t >>> 3 === 2 && (t & 7) === WIRE_LEN) specs.push(readShardingSpec(r, r.uint32() + r.pos));
    else r.skipType(t & 7);
  }
  return specs.map((s) => ({ configuration, ...s }));
}

function readShardingSpec(r: Reader, end: number): Omit<ShardingSpec, 'configuration'> {
  let tensor = '';
  const devices: number[] = [];
  const dims: ShardedDim[] = [];
  while (r.pos < end) {
    const t = r.uint32();
    const field = t >>> 3;
    if (field === 1 && (t & 7) === WIRE_LEN) tensor = r.string();
    else if (field === 2) readInt64s(r, t & 7, devices);
    else if (field === 4 && (t & 7) === WIRE_LEN) dims.push(readShardedDim(r, r.uint32() + r.pos));
    else r.skipType(t & 7);
  }
  return { tensor, devices, dims };
}

function readShardedDim(r: Reader, end: number): ShardedDim {
  let axis = 0;
  let shards = 1;
  while (r.pos < end) {
    const t = r.uint32();
    if (t >>> 3 === 1 && (t & 7) === 0) axis = Number(r.int64());
    else if (t >>> 3 === 2 && (t & 7) === WIRE_LEN) {
      const simpleEnd = r.uint32() + r.pos;
      while (r.pos < simpleEnd) {
        const st = r.uint32();
        if (st >>> 3 === 3 && (st & 7) === 0) shards *= Number(r.int64());
        else r.skipType(st & 7);
      }
    } else r.skipType(t & 7);
  }
  return { axis, shards };
}
