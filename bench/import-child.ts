/**
 * One measurement of the import benchmark, run in its own process so that its peak memory
 * (`process.resourceUsage().maxRSS`) is its own. Prints one JSON line.
 *
 *   import FILE...  [--workers N]   importTrace (streaming), in this thread or N workers
 *   parse FILE BYTES                JSON.parse of the file's first BYTES, closed at an event boundary
 *   library FILE BYTES              @streamparser/json over the file's first BYTES into the same event sink
 *   baseline                        nothing: the memory of the process and its modules
 */
import { closeSync, createReadStream, openSync, readSync } from 'node:fs';
import { performance } from 'node:perf_hooks';
import { importTrace } from '../src/profiler/import/detect';
import { KinetoEventSink } from '../src/profiler/import/kineto';

const maxRssBytes = (): number => process.resourceUsage().maxRSS * 1024;

/** The file's first `bytes`, cut after the last complete event and closed, as one string. */
function slice(file: string, bytes: number): string {
  const buf = Buffer.alloc(bytes);
  const fd = openSync(file, 'r');
  const n = readSync(fd, buf, 0, bytes, 0);
  closeSync(fd);
  const cut = buf.subarray(0, n).lastIndexOf('},\n');
  return `${buf.toString('utf8', 0, cut + 1)}]}`;
}

async function main(): Promise<void> {
  const [mode, ...rest] = process.argv.slice(2);
  if (mode === 'import') {
    const w = rest.indexOf('--workers');
    const workers = w >= 0 ? Number(rest[w + 1]) : 1;
    const files = w >= 0 ? rest.filter((_, i) => i !== w && i !== w + 1) : rest;
    const t = performance.now();
    const trace = await importTrace(files, { workers });
    const ms = performance.now() - t;
    const notes = trace.meta.notes.filter((n) => n.includes('the file ends after'));
    process.stdout.write(`${JSON.stringify({ ms, spans: trace.spans.count, lanes: trace.lanes.length, maxRss: maxRssBytes(), notes })}\n`);
  } else if (mode === 'parse') {
    const text = slice(rest[0], Number(rest[1]));
    const t = performance.now();
    const doc = JSON.parse(text) as { traceEvents: unknown[] };
    const ms = performance.now() - t;
    process.stdout.write(`${JSON.stringify({ ms, bytes: Buffer.byteLength(text), events: doc.traceEvents.length, maxRss: maxRssBytes() })}\n`);
  } else if (mode === 'library') {
    const limit = Number(rest[1]);
    const { JSONParser } = await import('@streamparser/json');
    const sink = new KinetoEventSink();
    const parser = new JSONParser({ paths: ['$.traceEvents.*'], keepStack: false });
    parser.onValue = ({ value }): void => sink.add(value);
    let fed = 0;
    const t = performance.now();
    for await (const chunk of createReadStream(rest[0], { end: limit - 1 })) {
      parser.write(chunk as Buffer);
      fed += (chunk as Buffer).length;
    }
    const ms = performance.now() - t;
    process.stdout.write(`${JSON.stringify({ ms, bytes: fed, events: sink.events, maxRss: maxRssBytes() })}\n`);
  } else if (mode === 'baseline') {
    process.stdout.write(`${JSON.stringify({ maxRss: maxRssBytes() })}\n`);
  } else {
    throw new Error(`unknown mode ${String(mode)}`);
  }
}

void main();
