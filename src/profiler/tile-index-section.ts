/**
 * The tile index section of a span side file (spans-file.ts): the index the tiled timeline
 * needs ({@link SpanTilesIndex}), stored when the trace is written so that opening a trace of
 * tens of millions of spans reads it instead of building it (the build is seconds there).
 *
 * The section is optional: side files written without it, or by an older Parallax, open as
 * before and the index is built. Its description sits in the side file's JSON header:
 *
 * ```
 * tileIndex: { layout, count, lanes, offset, bytes, sha256, parts: [{ name, type, offset, length }] }
 * ```
 *
 * `layout` is {@link TILE_INDEX_LAYOUT} of the writer (the index's rules); `offset` and
 * `bytes` place the section in the file; each part lies at `offset + part.offset` (a multiple
 * of 8, so that every typed array is a view of the bytes read, never a copy) and holds
 * `length` elements of `type`. `sha256` is the digest of the section's bytes. Reading checks
 * the description, the digest and the index's own invariants; any failure is a reason to
 * build the index instead, never an error of the trace.
 */
import { createHash } from 'node:crypto';
import { TILE_INDEX_LAYOUT, type SpanTilesIndex } from './span-tiles';

/** The parts of a section, in file order, with their element types. */
const PARTS = [
  ['extent', 'f64'],
  ['rowOffsets', 'f64'],
  ['blockOffsets', 'f64'],
  ['blockMax', 'f64'],
  ['pyramidW0', 'f64'],
  ['pyramidLevels', 'f64'],
  ['levelFirst', 'f64'],
  ['levelOffsets', 'f64'],
  ['levelData', 'f32'],
  ['order', 'u32'],
  ['keys', 'u8'],
] as const;

type PartName = (typeof PARTS)[number][0];
type PartType = (typeof PARTS)[number][1];
const CTORS = { f64: Float64Array, f32: Float32Array, u32: Uint32Array, u8: Uint8Array } as const;

export interface TileIndexPart {
  name: PartName;
  type: PartType;
  /** Byte offset from the section's start. */
  offset: number;
  /** Elements. */
  length: number;
}

/** The header's description of a section. */
export interface TileIndexSection {
  layout: string;
  count: number;
  lanes: number;
  /** Byte offset of the section in the file, and its size. */
  offset: number;
  bytes: number;
  sha256: string;
  parts: TileIndexPart[];
}

const align8 = (n: number): number => Math.ceil(n / 8) * 8;

/** The bytes of an index's section (views of the index's own arrays, padded to 8) and its description, placed at `offset`. */
export function encodeTileIndex(index: SpanTilesIndex, offset: number): { section: TileIndexSection; chunks: Uint8Array[] } {
  const chunks: Uint8Array[] = [];
  const parts: TileIndexPart[] = [];
  const hash = createHash('sha256');
  let at = 0;
  for (const [name, type] of PARTS) {
    const a = index[name];
    const bytes = new Uint8Array(a.buffer, a.byteOffset, a.byteLength);
    parts.push({ name, type, offset: at, length: a.length });
    chunks.push(bytes);
    hash.update(bytes);
    const pad = align8(a.byteLength) - a.byteLength;
    if (pad > 0) {
      const zeros = new Uint8Array(pad);
      chunks.push(zeros);
      hash.update(zeros);
    }
    at += align8(a.byteLength);
  }
  return { section: { layout: TILE_INDEX_LAYOUT, count: index.count, lanes: index.lanes, offset, bytes: at, sha256: hash.digest('hex'), parts }, chunks };
}

/**
 * Why a described section cannot be read for a trace of `count` spans on `lanes` lanes in a
 * file of `fileSize` bytes whose columns end at `dataEnd`; null when it can. Checked before
 * anything is read or allocated.
 */
export function tileIndexSectionProblem(raw: unknown, count: number, lanes: number, dataEnd: number, fileSize: number): string | null {
  if (typeof raw !== 'object' || raw === null) return 'is described wrongly';
  const s = raw as Partial<TileIndexSection>;
  if (s.layout !== TILE_INDEX_LAYOUT) return `was built by other rules (${String(s.layout).slice(0, 80)})`;
  if (s.count !== count || s.lanes !== lanes) return `was built for ${String(s.count)} spans on ${String(s.lanes)} lanes, the trace has ${count} on ${lanes}`;
  if (!Number.isSafeInteger(s.offset) || !Number.isSafeInteger(s.bytes) || s.offset! < dataEnd || s.offset! % 8 !== 0 || s.bytes! < 0 || s.offset! + s.bytes! > fileSize) {
    return 'lies outside the file (truncated?)';
  }
  if (typeof s.sha256 !== 'string' || !/^[0-9a-f]{64}$/.test(s.sha256)) return 'has no checksum';
  if (!Array.isArray(s.parts) || s.parts.length !== PARTS.length) return 'has a wrong part table';
  let end = 0;
  for (let k = 0; k < PARTS.length; k++) {
    const p = s.parts[k] as Partial<TileIndexPart> | null;
    const [name, type] = PARTS[k]!;
    if (typeof p !== 'object' || p === null || p.name !== name || p.type !== type || p.offset !== end || !Number.isSafeInteger(p.length) || p.length! < 0) return 'has a wrong part table';
    end = p.offset + align8(p.length! * CTORS[type].BYTES_PER_ELEMENT);
  }
  return end === s.bytes ? null : 'has a wrong part table';
}

/**
 * The index in a section's bytes (`buf` holds exactly the section, starting at a multiple of
 * 8 in its buffer); throws with the reason when the digest does not match. The arrays are
 * views of `buf`.
 */
export function decodeTileIndex(buf: Uint8Array, section: TileIndexSection): SpanTilesIndex {
  if (buf.byteOffset % 8 !== 0 || buf.byteLength !== section.bytes) throw new Error('tile index: the section buffer is misplaced');
  if (createHash('sha256').update(buf).digest('hex') !== section.sha256) throw new Error('does not match its checksum (corrupt)');
  const out: Record<string, unknown> = { count: section.count, lanes: section.lanes };
  for (const p of section.parts) out[p.name] = new CTORS[p.type](buf.buffer as ArrayBuffer, buf.byteOffset + p.offset, p.length);
  return out as unknown as SpanTilesIndex;
}
