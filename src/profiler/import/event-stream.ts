/**
 * Reading a Chrome-trace JSON document (`{"traceEvents": [...], ...}`) from its bytes, chunk by
 * chunk, without ever holding its whole text or its whole event array: the top-level
 * `traceEvents` array is cut at event boundaries into batches of a few MB, each batch is
 * decoded and parsed with `JSON.parse('[' + batch + ']')` and handed on as an array of
 * events, then dropped. Everything else in the document (`deviceProperties`,
 * `distributedInfo`, `baseTimeNanoseconds`, …) is kept as text with `traceEvents` emptied and
 * parsed once at the end; it is small.
 *
 * Why a specialised scanner and not a streaming JSON library. `@streamparser/json` is the
 * fastest maintained general streaming JSON tokenizer for JavaScript we know of, and
 * `bench/import.bench.ts` measures it on Kineto-shaped input beside this scanner and beside
 * `JSON.parse`: a tokenizer written in JavaScript visits every byte and builds every value
 * through JavaScript code. On a 1 GB Kineto-shaped trace (BENCHMARKS.md) it fed the same
 * event sink at 0.38× the speed of V8's native `JSON.parse` measured in the same run, while
 * the whole import through this scanner ran at 0.75× (the target is 0.7×) and peaked at
 * 0.29× the file's size in memory. This scanner leaves nearly all the
 * work to `JSON.parse`: it does not look at most bytes at all. It guesses a cut near the end
 * of each window (the last `}` followed by `,` and `{`) and lets `JSON.parse` check it: a cut that is
 * not between two events leaves the batch unbalanced or inside a string, which `JSON.parse`
 * refuses (JSON's grammar allows `[` + text + `]` to parse only when the text is a sequence of
 * complete values). Only then, and for the last window of the array, does an exact scan walk
 * the bytes tracking strings, escapes and nesting. The library therefore stays a development
 * dependency, used by the benchmark's comparison only.
 *
 * The text outside `traceEvents` is scanned byte by byte (it is small), which finds the
 * top-level key `traceEvents` (a second one replaces the first, as in `JSON.parse`) and the
 * last place where the document could be closed, for files that end early.
 *
 * Semantics match `parseJsonDocument` on the whole text: the same syntax errors are refused
 * (a trailing comma, an empty element), `NaN`/`Infinity` literals are read as null and
 * counted, and nesting deeper than `MAX_JSON_DEPTH` (counting the document and the array) is
 * refused. A file that ends inside `traceEvents` (a killed profiler, a partial copy) keeps
 * every complete event before the cut, as catapult and Perfetto do; {@link ScanResult}
 * says where it ended.
 */
import { constants as bufferConstants, isAscii } from 'node:buffer';
import { UserError } from '../../common/errors';
import { jsonDepth } from '../../common/json-depth';
import { MAX_JSON_DEPTH } from '../../common/limits';
import { parseJsonDocument, replaceNonFinite } from './read-json';

/** Batches are cut once this many bytes of events are waiting (1–8 MB keeps JSON.parse at full speed). */
export const DEFAULT_BATCH_BYTES = 4 * 2 ** 20;

/** How far back from a window's end the guess of a cut looks for `}` + `,` before giving up. */
const GUESS_TRIES = 256;

const QUOTE = 0x22;
const BACKSLASH = 0x5c;
const COMMA = 0x2c;
const COLON = 0x3a;
const OPEN_BRACE = 0x7b;
const CLOSE_BRACE = 0x7d;
const OPEN_BRACKET = 0x5b;
const CLOSE_BRACKET = 0x5d;
const isSpace = (c: number): boolean => c === 0x20 || c === 0x0a || c === 0x0d || c === 0x09;

/** Where a document that ended early was cut. */
export interface Truncation {
  /** Bytes of JSON read before the end. */
  bytes: number;
  /** Inside the `traceEvents` array, or after it (in the fields that follow). */
  where: 'traceEvents' | 'after';
}

/** What {@link TraceEventScanner.end} returns. */
export type ScanResult =
  | {
      /** The top level is an object: its events went to the callback. */
      kind: 'object';
      /** The document with the events of `traceEvents` left out (`"traceEvents": []`), parsed. */
      header: unknown;
      /** Its text, for readers that want it whole (a Parallax trace has no `traceEvents` at all). */
      headerText: string;
      /** Elements of `traceEvents` handed to the callback. */
      events: number;
      /** True when the document has a top-level `traceEvents` array. */
      hasEvents: boolean;
      /** `NaN`/`Infinity` literals read as null, in the events and the rest. */
      nonFinite: number;
      truncated: Truncation | null;
    }
  /** The top level is not an object (a bare array, a number): its whole text, for the general reader. */
  | { kind: 'other'; text: string };

/** True when `w[0, end)` is only whitespace. */
function isBlank(w: Uint8Array, end: number): boolean {
  for (let i = 0; i < end; i++) if (!isSpace(w[i])) return false;
  return true;
}

/** Deepest nesting of a parsed value (1 for an object of plain values), stopping past `limit`. */
function depthOf(v: object, limit: number): number {
  if (limit <= 0) return 1;
  let max = 0;
  // Arrays by index: a for-in over an array enumerates its indices as strings, far slower.
  if (Array.isArray(v)) {
    for (let i = 0; i < v.length && max < limit; i++) {
      const x: unknown = v[i];
      if (typeof x === 'object' && x !== null) max = Math.max(max, depthOf(x, limit - 1));
    }
  } else {
    for (const k in v) {
      const x = (v as Record<string, unknown>)[k];
      if (typeof x === 'object' && x !== null) max = Math.max(max, depthOf(x, limit - 1));
      if (max >= limit) break;
    }
  }
  return max + 1;
}

/** The exact structure of a window of events (see {@link TraceEventScanner}). */
interface WindowScan {
  /** Index of the `]` that closes the array, or −1. */
  end: number;
  /** Index of the last comma between elements, or −1. */
  lastComma: number;
  /** Index just past the last complete object, array or string element, or −1. */
  lastComplete: number;
}

/** Walks a window of the events array from an element boundary, tracking strings and nesting. */
function scanWindow(w: Uint8Array): WindowScan {
  let depth = 0;
  let lastComma = -1;
  let lastComplete = -1;
  for (let i = 0; i < w.length; i++) {
    const c = w[i];
    if (c === QUOTE) {
      // Skip the string: find its closing quote, not preceded by an odd run of backslashes.
      let j = i + 1;
      for (;;) {
        j = w.indexOf(QUOTE, j);
        if (j < 0) return { end: -1, lastComma, lastComplete };
        let b = j - 1;
        while (w[b] === BACKSLASH) b--;
        if ((j - 1 - b) % 2 === 0) break;
        j++;
      }
      i = j;
      if (depth === 0) lastComplete = i + 1;
    } else if (c === OPEN_BRACE || c === OPEN_BRACKET) {
      depth++;
    } else if (c === CLOSE_BRACE || c === CLOSE_BRACKET) {
      if (depth === 0) return { end: i, lastComma, lastComplete };
      if (--depth === 0) lastComplete = i + 1;
    } else if (c === COMMA && depth === 0) {
      lastComma = i;
    }
  }
  return { end: -1, lastComma, lastComplete };
}

/**
 * Push-based reader of a Chrome-trace document: {@link push} the bytes as they arrive, then
 * {@link end}. Events reach `onEvents` in document order, a batch at a time.
 */
export class TraceEventScanner {
  private mode: 'start' | 'top' | 'events' | 'other' = 'start';
  /** The document's text outside the events, as byte chunks. */
  private readonly rest: Buffer[] = [];
  private restBytes = 0;
  /** Top-level scanner state (outside the events). */
  private depth = 0;
  private inString = false;
  private escaped = false;
  private expectKey = false;
  private afterColon = false;
  private keyParts: Buffer[] | null = null;
  private lastKey: Buffer | null = null;
  /** Rest bytes up to which the document can be closed with `}` when it ends early, or −1. */
  private safe = -1;
  /** Events mode: bytes waiting to be cut, and when to try a cut next. */
  private pending: Buffer[] = [];
  private pendingBytes = 0;
  private nextTry: number;
  /** True once a cut was made at a comma, so an empty last element is a trailing comma. */
  private afterComma = false;
  private totalBytes = 0;
  private events = 0;
  private nonFinite = 0;
  private hasEvents = false;
  private eventsEnded = false;

  constructor(
    private readonly source: string,
    private readonly onEvents: (events: unknown[], restart: boolean) => void,
    private readonly batchBytes = DEFAULT_BATCH_BYTES,
  ) {
    this.nextTry = batchBytes;
  }

  /** Reads the next chunk of the document. */
  push(chunk: Uint8Array): void {
    const buf = Buffer.isBuffer(chunk) ? chunk : Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength);
    this.totalBytes += buf.length;
    this.feed(buf);
  }

  private feed(buf: Buffer): void {
    while (buf.length > 0) {
      if (this.mode === 'events') {
        this.pending.push(buf);
        this.pendingBytes += buf.length;
        if (this.pendingBytes < this.nextTry) return;
        const after = this.cutWindow(false);
        if (after === null) return;
        buf = after;
      } else if (this.mode === 'other') {
        this.keep(buf);
        return;
      } else {
        const used = this.scanTop(buf);
        if (used === buf.length) return;
        buf = buf.subarray(used);
      }
    }
  }

  private keep(buf: Buffer): void {
    this.restBytes += buf.length;
    if (this.restBytes > bufferConstants.MAX_STRING_LENGTH) {
      throw new UserError(
        `${this.source}: more than ${(bufferConstants.MAX_STRING_LENGTH / 2 ** 20).toFixed(0)} MiB of JSON outside "traceEvents", more than one JavaScript string can hold; this is not a trace Parallax can read`,
      );
    }
    this.rest.push(buf);
  }

  /**
   * Scans top-level bytes, keeping them, until the value of a top-level `traceEvents` key
   * opens; returns how many bytes of `buf` it used.
   */
  private scanTop(buf: Buffer): number {
    // Where a key that started in this chunk starts (−1: none, or it started in an earlier chunk).
    let keyStart = -1;
    for (let i = 0; i < buf.length; i++) {
      const c = buf[i];
      if (this.mode === 'start') {
        if (isSpace(c)) continue;
        this.mode = c === OPEN_BRACE ? 'top' : 'other';
        if (this.mode === 'other') {
          this.keep(buf);
          return buf.length;
        }
        this.depth = 1;
        this.expectKey = true;
        this.safe = this.restBytes + i + 1;
        continue;
      }
      if (this.inString) {
        if (this.escaped) this.escaped = false;
        else if (c === BACKSLASH) this.escaped = true;
        else if (c === QUOTE) {
          this.inString = false;
          if (this.keyParts) {
            this.keyParts.push(buf.subarray(Math.max(keyStart, 0), i + 1));
            this.lastKey = Buffer.concat(this.keyParts);
            this.keyParts = null;
          }
        }
        continue;
      }
      if (isSpace(c)) continue;
      if (this.depth === 1 && this.afterColon) {
        this.afterColon = false;
        if (c === OPEN_BRACKET && this.lastKey !== null && this.isEventsKey(this.lastKey)) {
          this.keep(buf.subarray(0, i + 1));
          this.startEvents();
          return i + 1;
        }
      }
      if (c === QUOTE) {
        this.inString = true;
        if (this.depth === 1 && this.expectKey) {
          this.expectKey = false;
          this.keyParts = [];
          keyStart = i;
        }
      } else if (c === OPEN_BRACE || c === OPEN_BRACKET) {
        this.depth++;
      } else if (c === CLOSE_BRACE || c === CLOSE_BRACKET) {
        this.depth--;
        if (this.depth === 0) this.safe = -1;
      } else if (this.depth === 1 && c === COMMA) {
        this.expectKey = true;
        this.safe = this.restBytes + i;
      } else if (this.depth === 1 && c === COLON) {
        this.afterColon = true;
      }
    }
    // A key that goes on into the next chunk: keep its bytes so far.
    if (this.keyParts) this.keyParts.push(buf.subarray(Math.max(keyStart, 0)));
    this.keep(buf);
    return buf.length;
  }

  private isEventsKey(raw: Buffer): boolean {
    if (raw.length === 13 && raw.toString('latin1') === '"traceEvents"') return true;
    // A key spelled with escapes (`"trace\u0045vents"`) means the same to JSON.parse.
    if (raw.includes(BACKSLASH)) {
      try {
        return JSON.parse(raw.toString('utf8')) === 'traceEvents';
      } catch {
        return false;
      }
    }
    return false;
  }

  private startEvents(): void {
    if (this.hasEvents) {
      // A second top-level traceEvents replaces the first, as in JSON.parse.
      this.onEvents([], true);
      this.events = 0;
    }
    this.hasEvents = true;
    this.eventsEnded = false;
    this.mode = 'events';
    this.pending = [];
    this.pendingBytes = 0;
    this.nextTry = this.batchBytes;
    this.afterComma = false;
  }

  /**
   * Cuts the waiting event bytes: the complete events go to the callback, what follows the
   * cut waits for more bytes. Returns the bytes after the end of the array when the array
   * ended in this window (the scanner is back at the top level), else null.
   */
  private cutWindow(final: boolean): Buffer | null {
    const w = this.pending.length === 1 ? this.pending[0] : Buffer.concat(this.pending, this.pendingBytes);
    this.pending = [];
    this.pendingBytes = 0;
    if (!final) {
      const guess = this.guessCut(w);
      if (guess !== null && this.parseBatch(w, guess.end, false)) {
        this.wait(w.subarray(guess.comma + 1));
        return null;
      }
    }
    const s = scanWindow(w);
    if (s.end >= 0) {
      this.lastSegment(w, s.end);
      this.mode = 'top';
      this.eventsEnded = true;
      this.depth = 1;
      this.expectKey = false;
      this.afterColon = false;
      // The closing bracket is the first byte the top level reads again; after it the
      // document can be closed.
      this.keep(w.subarray(s.end, s.end + 1));
      this.safe = this.restBytes;
      return w.subarray(s.end + 1);
    }
    if (final) {
      // The file ended inside the array: keep the complete events before the cut.
      if (s.lastComplete > s.lastComma) this.parseBatch(w, s.lastComplete, true);
      else if (s.lastComma >= 0) this.parseSegment(w, s.lastComma);
      return null;
    }
    if (s.lastComma >= 0) {
      this.parseSegment(w, s.lastComma);
      this.wait(w.subarray(s.lastComma + 1));
    } else {
      // One element longer than the window: wait for twice as much before scanning again.
      this.wait(w, this.afterComma);
      this.nextTry = 2 * w.length;
    }
    return null;
  }

  /** The events before a comma at `end`: an empty element there (`[,` or `,,`) is invalid JSON. */
  private parseSegment(w: Buffer, end: number): void {
    if (isBlank(w, end)) this.invalid();
    this.parseBatch(w, end, true);
  }

  private wait(buf: Buffer, afterComma = true): void {
    this.afterComma = afterComma;
    this.pending = buf.length > 0 ? [buf] : [];
    this.pendingBytes = buf.length;
    this.nextTry = this.pendingBytes + this.batchBytes;
  }

  /** The events before the array's closing bracket at `end`. */
  private lastSegment(w: Buffer, end: number): void {
    if (!isBlank(w, end)) this.parseBatch(w, end, true);
    else if (this.afterComma) this.invalid();
  }

  /** The last `}` followed by `,` and `{` in the window, a likely boundary between two events. */
  private guessCut(w: Buffer): { end: number; comma: number } | null {
    let i = w.length - 1;
    for (let tries = 0; tries < GUESS_TRIES; tries++) {
      i = w.lastIndexOf(CLOSE_BRACE, i);
      if (i < 0) return null;
      let j = i + 1;
      while (j < w.length && isSpace(w[j])) j++;
      if (j < w.length && w[j] === COMMA) {
        let k = j + 1;
        while (k < w.length && isSpace(w[k])) k++;
        if (k < w.length && w[k] === OPEN_BRACE) return { end: i + 1, comma: j };
      }
      i--;
    }
    return null;
  }

  /**
   * Parses `w[0, end)` as a sequence of events and hands them on. A batch that does not
   * parse is an error when `strict`, else (a guessed cut) returns false.
   */
  private parseBatch(w: Buffer, end: number, strict: boolean): boolean {
    // Traces are almost always ASCII, which decodes as Latin-1 byte for byte, several times
    // faster than the UTF-8 decoder; anything else goes through it.
    const bytes = w.subarray(0, end);
    const text = `[${isAscii(bytes) ? bytes.toString('latin1') : bytes.toString('utf8')}]`;
    let events: unknown[];
    try {
      events = JSON.parse(text) as unknown[];
    } catch {
      // A guessed cut that does not parse is settled by the exact scan, which parses again.
      if (!strict) return false;
      const fixed = replaceNonFinite(text);
      let parsed: unknown[] | null = null;
      if (fixed) {
        try {
          parsed = JSON.parse(fixed.text) as unknown[];
          this.nonFinite += fixed.count;
        } catch {
          // Not the only problem.
        }
      }
      if (parsed === null) {
        this.checkTextDepth(text);
        this.invalid();
      }
      events = parsed;
    }
    // The document and the traceEvents array are two levels above each event.
    const limit = MAX_JSON_DEPTH - 2;
    for (const e of events) {
      if (typeof e === 'object' && e !== null && depthOf(e, limit + 1) > limit) this.tooDeep();
    }
    this.events += events.length;
    this.onEvents(events, false);
    return true;
  }

  private checkTextDepth(text: string): void {
    // The batch's own brackets stand for the traceEvents array; the document is one more.
    if (jsonDepth(text, MAX_JSON_DEPTH) + 1 > MAX_JSON_DEPTH) this.tooDeep();
  }

  private tooDeep(): never {
    throw new UserError(`${this.source}: JSON nested more than ${MAX_JSON_DEPTH} levels deep, which no trace is; the file is not a trace`);
  }

  private invalid(): never {
    throw new UserError(`${this.source}: not valid JSON (is the file truncated?); give a complete trace file`);
  }

  /**
   * Ends the document: parses what is outside the events and says whether the file was cut
   * short. A file cut inside `traceEvents` before its first complete event is refused as
   * invalid JSON, as `JSON.parse` of the whole text would.
   */
  end(): ScanResult {
    if (this.mode === 'other' || this.mode === 'start') return { kind: 'other', text: this.restText() };
    let truncated: Truncation | null = null;
    while (this.mode === 'events') {
      const after = this.cutWindow(true);
      if (after === null) {
        truncated = { bytes: this.totalBytes, where: 'traceEvents' };
        if (this.events === 0) this.invalid();
        // Close the array and the document where the file ended.
        this.rest.push(Buffer.from(']}'));
        this.restBytes += 2;
        break;
      }
      this.feed(after);
    }
    if (truncated === null && this.depth > 0 && this.eventsEnded && this.safe >= 0) {
      truncated = { bytes: this.totalBytes, where: 'after' };
      const kept = Buffer.concat(this.rest, this.restBytes).subarray(0, this.safe);
      this.rest.length = 0;
      this.rest.push(kept, Buffer.from('}'));
    }
    const headerText = this.restText();
    const { doc, nonFinite } = parseJsonDocument(headerText, this.source);
    return {
      kind: 'object',
      header: doc,
      headerText,
      events: this.events,
      hasEvents: this.hasEvents,
      nonFinite: this.nonFinite + nonFinite,
      truncated,
    };
  }

  private restText(): string {
    return Buffer.concat(this.rest).toString('utf8');
  }
}
