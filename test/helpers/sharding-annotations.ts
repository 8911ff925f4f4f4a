/**
 * Writes ONNX sharding annotations (NodeProto.device_configurations, field 10: a
 * NodeDeviceConfigurationProto with ShardingSpecProtos) into model bytes, as an exporter of
 * the ONNX multi-device proposal would. onnx-proto predates the field, so the bytes are
 * edited directly: every field is copied as it is, and the annotated nodes get field 10
 * appended.
 */
import { Reader, Writer } from 'protobufjs/minimal';

/** One annotation: node `node` cuts its tensor `tensor` along `axis` into `shards`. */
export interface Annotation {
  node: string;
  tensor: string;
  axis: number;
  shards: number;
}

const LEN = 2;

function deviceConfiguration(specs: readonly Annotation[]): Uint8Array {
  const w = Writer.create();
  w.uint32((1 << 3) | LEN).string('tensor-parallel');
  for (const a of specs) {
    w.uint32((2 << 3) | LEN).fork();
    w.uint32((1 << 3) | LEN).string(a.tensor);
    w.uint32((2 << 3) | LEN).fork();
    for (let d = 0; d < a.shards; d++) w.int64(d);
    w.ldelim();
    w.uint32((4 << 3) | LEN).fork();
    w.uint32((1 << 3) | 0).int64(a.axis);
    w.uint32((2 << 3) | LEN).fork().uint32((3 << 3) | 0).int64(a.shards).ldelim();
    w.ldelim();
    w.ldelim();
  }
  return w.finish();
}

/** The raw fields of a message: [tag, bytes of the whole field] in order. */
function fields(bytes: Uint8Array): { field: number; wire: number; start: number; end: number; body: [number, number] | null }[] {
  const r = Reader.create(bytes);
  const out: { field: number; wire: number; start: number; end: number; body: [number, number] | null }[] = [];
  while (r.pos < r.len) {
    const start = r.pos;
    const tag = r.uint32();
    const wire = tag & 7;
    let body: [number, number] | null = null;
    if (wire === LEN) {
      const n = r.uint32();
      body = [r.pos, r.pos + n];
      r.pos += n;
    } else r.skipType(wire);
    out.push({ field: tag >>> 3, wire, start, end: r.pos, body });
  }
  return out;
}

function nodeName(node: Uint8Array): string {
  for (const f of fields(node)) if (f.field === 3 && f.body) return Buffer.from(node.subarray(f.body[0], f.body[1])).toString('utf8');
  return '';
}

/** `model` with each annotated node's sharding annotations added. */
export function annotateSharding(model: Uint8Array, annotations: readonly Annotation[]): Uint8Array {
  const w = Writer.create();
  for (const f of fields(model)) {
    if (f.field !== 7 || !f.body) {
      w.uint32((f.field << 3) | f.wire);
      if (f.body) w.bytes(model.subarray(f.body[0], f.body[1]));
      else writeRaw(w, model.subarray(f.start, f.end), f.field, f.wire);
      continue;
    }
    const graph = model.subarray(f.body[0], f.body[1]);
    const g = Writer.create();
    for (const gf of fields(graph)) {
      if (gf.field === 1 && gf.body) {
        const node = graph.subarray(gf.body[0], gf.body[1]);
        const mine = annotations.filter((a) => a.node === nodeName(node));
        const extra = mine.length > 0 ? Writer.create().uint32((10 << 3) | LEN).bytes(deviceConfiguration(mine)).finish() : new Uint8Array(0);
        const joined = new Uint8Array(node.length + extra.length);
        joined.set(node, 0);
        joined.set(extra, node.length);
        g.uint32((1 << 3) | LEN).bytes(joined);
      } else {
        g.uint32((gf.field << 3) | gf.wire);
        if (gf.body) g.bytes(graph.subarray(gf.body[0], gf.body[1]));
        else writeRaw(g, graph.subarray(gf.start, gf.end), gf.field, gf.wire);
      }
    }
    w.uint32((7 << 3) | LEN).bytes(g.finish());
  }
  return w.finish();
}

/** Copies a non-length-delimited field's value (its tag is already written). */
function writeRaw(w: Writer, whole: Uint8Array, _field: number, wire: number): void {
  const r = Reader.create(whole);
  r.uint32();
  if (wire === 0) w.uint64(r.uint64());
  else if (wire === 1) w.fixed64(r.fixed64());
  else if (wire === 5) w.fixed32(r.fixed32());
  else throw new Error(`wire type ${wire} is not copied`);
}
