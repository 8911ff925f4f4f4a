/**
 * Streaming import of one trace file: the bytes (inflated as a stream when the file is gzip)
 * go through a {@link TraceEventScanner}, whose batches of events go straight into a
 * {@link KinetoEventSink} and are dropped, so memory holds the rank's columns, one batch of
 * text and its parsed events, never the whole text or the whole event array. This lifts the
 * one-string limit (about 512 MiB) of reading the whole text; the gzip caps still hold.
 *
 * A file that ends early (a killed profiler, a partial copy, a gzip stream cut short) keeps
 * every complete event before the cut and says so in a note, as catapult and Perfetto do. A
 * file cut before its first complete event is refused as the whole-text reader refuses it.
 */
import { UserError } from '../../common/errors';
import { extractKinetoRank, KinetoEventSink, kinetoHeader, kinetoRankOf, type KinetoRank } from './kineto';
import { openTextStream } from './read-json';
import { DEFAULT_BATCH_BYTES, TraceEventScanner, type Truncation } from './event-stream';
import { parseJsonDocument } from './read-json';

/** What a streamed file turned out to be. */
export type StreamedFile =
  /** A Chrome-trace object with a top-level `traceEvents` array, reduced to one rank. */
  | { kind: 'kineto'; rank: KinetoRank }
  /**
   * Anything else, parsed whole (its text holds no events, or its top level is not an
   * object): a Parallax trace, a bare event array, another document.
   */
  | { kind: 'document'; doc: unknown; text: string; nonFinite: number };

/** Options of {@link streamTraceFile}. */
export interface StreamImportOptions {
  /** Bytes of events per batch (see `event-stream.ts`); tests make it small to cut often. */
  batchBytes?: number;
}

/** The note for a file cut short. */
export function truncationNote(source: string, t: Truncation, events: number, gzip: boolean): string {
  const size = `${t.bytes} bytes${gzip ? ' (inflated)' : ''}`;
  return t.where === 'traceEvents'
    ? `${source}: the file ends after ${size} inside traceEvents; ${events} events were imported, the rest are missing.`
    : `${source}: the file ends after ${size}, after traceEvents; every event was imported, the fields after the cut are missing.`;
}

/**
 * Reads one file as a stream. A Kineto trace comes back as a rank; any other document
 * comes back parsed, for the caller to recognise or refuse.
 */
export async function streamTraceFile(path: string, options: StreamImportOptions = {}): Promise<StreamedFile> {
  let gzipCut = false;
  const stream = await openTextStream(path, { onCut: () => (gzipCut = true) });
  let sink = new KinetoEventSink();
  const scanner = new TraceEventScanner(
    path,
    (events, restart) => {
      if (restart) sink = new KinetoEventSink();
      for (let i = 0; i < events.length; i++) sink.add(events[i]);
    },
    options.batchBytes ?? DEFAULT_BATCH_BYTES,
  );
  for await (const chunk of stream.chunks) scanner.push(chunk);
  let r: ReturnType<TraceEventScanner['end']>;
  try {
    r = scanner.end();
    if (r.kind === 'other') {
      const { doc, nonFinite } = parseJsonDocument(r.text, path);
      return { kind: 'document', doc, text: r.text, nonFinite };
    }
  } catch (e) {
    // A gzip stream cut before anything usable is refused as the whole-text reader does.
    if (gzipCut && e instanceof UserError) {
      throw new UserError(`${path}: corrupt gzip data (unexpected end of file); copy the file again or give the uncompressed JSON`);
    }
    throw e;
  }
  if (!r.hasEvents) return { kind: 'document', doc: r.header, text: r.headerText, nonFinite: r.nonFinite };
  // The header is checked first, as the whole-document reader does.
  const header = kinetoHeader(r.header, path);
  const note = r.truncated ? truncationNote(path, r.truncated, r.events, stream.gzip) : null;
  return { kind: 'kineto', rank: kinetoRankOf(path, header, sink.finish(path), r.nonFinite, note) };
}

/** Reads one Kineto file (plain or gzip) as a stream and reduces it to a {@link KinetoRank}. */
export async function streamKinetoRank(path: string, options: StreamImportOptions = {}): Promise<KinetoRank> {
  const f = await streamTraceFile(path, options);
  // A document without traceEvents is refused with the whole-document reader's words.
  return f.kind === 'kineto' ? f.rank : extractKinetoRank(f.doc, path, f.nonFinite);
}
