/**
 * Reads Chakra execution-trace files the way a consumer outside Parallax would: the
 * length-delimited stream is split here (varint lengths), and every message is decoded by
 * `protoc --decode` from the official schema, never by the encoder's own protobufjs code.
 */
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';

const REPO = join(__dirname, '..', '..');
const PROTO_DIR = join(REPO, 'schemas', 'chakra');

/** Splits a stream of varint-length-prefixed messages. */
export function splitDelimited(buf: Uint8Array): Uint8Array[] {
  const out: Uint8Array[] = [];
  let i = 0;
  while (i < buf.length) {
    let len = 0;
    let shift = 0;
    for (;;) {
      if (i >= buf.length) throw new Error('truncated length prefix');
      const b = buf[i++];
      len += (b & 0x7f) * 2 ** shift;
      shift += 7;
      if ((b & 0x80) === 0) break;
    }
    if (i + len > buf.length) throw new Error(`message of ${len} bytes runs past the end`);
    out.push(buf.subarray(i, i + len));
    i += len;
  }
  return out;
}

/** protoc's text form of one message of the schema; throws with protoc's own words when it cannot decode. */
export function protocDecode(message: 'Node' | 'GlobalMetadata', bytes: Uint8Array): string {
  const r = spawnSync('protoc', [`--decode=ChakraProtoMsg.${message}`, `-I${PROTO_DIR}`, join(PROTO_DIR, 'et_def.proto')], { input: bytes });
  if (r.error) throw new Error(`protoc could not be run (install protobuf-compiler): ${r.error.message}`);
  if (r.status !== 0) throw new Error(`protoc --decode=${message} failed: ${r.stderr.toString()}`);
  return r.stdout.toString();
}

/** A node as protoc printed it. */
export interface DecodedNode {
  id: number;
  name: string;
  type: string;
  dataDeps: number[];
  ctrlDeps: number[];
  startMicros: number;
  durationMicros: number;
  /** Attribute values by name, with the value field protoc printed (`int64_val`, `bool_val`…). */
  attrs: Map<string, { field: string; value: string }>;
}

/** A string as protoc prints it (quoted, C escapes); names Parallax writes need no more than JSON's rules. */
function unquote(raw: string): string {
  try {
    return JSON.parse(raw) as string;
  } catch {
    return raw;
  }
}

/** Parses protoc's text form of a `Node` (top-level scalars and `attr { … }` blocks). */
export function parseNodeText(text: string): DecodedNode {
  const node: DecodedNode = { id: 0, name: '', type: 'INVALID_NODE', dataDeps: [], ctrlDeps: [], startMicros: 0, durationMicros: 0, attrs: new Map() };
  let attrName: string | null = null;
  let attrValue: { field: string; value: string } | null = null;
  for (const line of text.split('\n')) {
    if (line === 'attr {') {
      attrName = null;
      attrValue = null;
      continue;
    }
    if (line === '}') {
      if (attrName !== null && attrValue !== null) node.attrs.set(attrName, attrValue);
      continue;
    }
    const m = /^(\s*)(\w+): (.*)$/.exec(line);
    if (!m) continue;
    const [, indent, key, raw] = m;
    if (indent.length > 0) {
      if (key === 'name') attrName = unquote(raw);
      else attrValue = { field: key, value: raw };
      continue;
    }
    switch (key) {
      case 'id':
        node.id = Number(raw);
        break;
      case 'name':
        node.name = unquote(raw);
        break;
      case 'type':
        node.type = raw;
        break;
      case 'data_deps':
        node.dataDeps.push(Number(raw));
        break;
      case 'ctrl_deps':
        node.ctrlDeps.push(Number(raw));
        break;
      case 'start_time_micros':
        node.startMicros = Number(raw);
        break;
      case 'duration_micros':
        node.durationMicros = Number(raw);
        break;
      default:
        break;
    }
  }
  return node;
}

/** A numeric attribute of a decoded node; throws when it is missing. */
export function numAttr(n: DecodedNode, name: string): number {
  const a = n.attrs.get(name);
  if (!a) throw new Error(`node ${n.id} (${n.type}) has no attribute ${name}`);
  return Number(a.value);
}

/** A whole `.et` file: protoc's text of its metadata and its decoded nodes. */
export function decodeEtFile(path: string): { metadata: string; nodes: DecodedNode[] } {
  const [meta, ...rest] = splitDelimited(readFileSync(path));
  if (!meta) throw new Error(`${path} is empty`);
  return { metadata: protocDecode('GlobalMetadata', meta), nodes: rest.map((m) => parseNodeText(protocDecode('Node', m))) };
}
