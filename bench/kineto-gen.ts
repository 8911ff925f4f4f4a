/**
 * Kineto-shaped traces of any size for the import benchmark, made from the real 2-rank DDP
 * fixture's event mix: CPU ops, CUDA runtime calls, kernels on several streams, copies and
 * NCCL all-reduce kernels with their `record_param_comms` bytes. The fixture's events are
 * replicated as whole profiler windows, each shifted in time by the window's length, with
 * correlation and external ids shifted too so every launch still finds its kernel and
 * every `ProfilerStep#N` is a new step. Written in 8 MB pieces: the generator never holds
 * the text it writes.
 *
 *   node --import tsx bench/kineto-gen.ts out.json 1024 [rank] [worldSize]
 */
import { closeSync, openSync, readFileSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { gunzipSync } from 'node:zlib';

type Event = Record<string, unknown> & { args?: Record<string, unknown> };

const FIXTURE = join(__dirname, '..', 'test', 'fixtures', 'kineto', 'ddp-2rank-rank0.json.gz');
const ID_KEYS = ['correlation', 'External id', 'external id'] as const;

interface Template {
  header: Record<string, unknown>;
  events: Event[];
  /** Length of one window of events, µs, and the id and step offsets between windows. */
  periodUs: number;
  idStride: number;
  stepStride: number;
}

let template: Template | null = null;

function load(): Template {
  if (template) return template;
  const doc = JSON.parse(gunzipSync(readFileSync(FIXTURE)).toString('utf8')) as Record<string, unknown>;
  const events = doc['traceEvents'] as Event[];
  let t0 = Infinity;
  let t1 = -Infinity;
  let maxId = 0;
  let maxStep = 0;
  for (const e of events) {
    if (typeof e['ts'] === 'number') {
      t0 = Math.min(t0, e['ts']);
      t1 = Math.max(t1, e['ts'] + (typeof e['dur'] === 'number' ? e['dur'] : 0));
    }
    for (const k of ID_KEYS) {
      const v = e.args?.[k];
      if (typeof v === 'number') maxId = Math.max(maxId, v);
    }
    const m = typeof e['name'] === 'string' ? /^ProfilerStep#(\d+)$/.exec(e['name']) : null;
    if (m) maxStep = Math.max(maxStep, Number(m[1]));
  }
  const header = { ...doc };
  delete header['traceEvents'];
  template = { header, events, periodUs: Math.ceil((t1 - t0) * 1.02), idStride: maxId + 1, stepStride: maxStep + 1 };
  return template;
}

/** Writes a Kineto trace of about `targetBytes` to `path`; returns its size and event count. */
export function writeKinetoTrace(path: string, targetBytes: number, rank = 0, worldSize = 1): { bytes: number; events: number } {
  const t = load();
  const fd = openSync(path, 'w');
  let bytes = 0;
  let parts: string[] = [];
  let pending = 0;
  const put = (s: string): void => {
    parts.push(s);
    pending += s.length;
    if (pending >= 8 << 20) flush();
  };
  const flush = (): void => {
    const b = Buffer.from(parts.join(''));
    writeSync(fd, b);
    bytes += b.length;
    parts = [];
    pending = 0;
  };
  const { traceName: _name, baseTimeNanoseconds, displayTimeUnit, ...head } = t.header;
  head['distributedInfo'] = { backend: 'nccl', rank, world_size: worldSize };
  const headText = JSON.stringify(head, null, 2);
  put(`${headText.slice(0, -2)},\n  "traceEvents": [\n`);
  const tail = `\n  ],\n  "traceName": "generated-rank${rank}.json",\n  "displayTimeUnit": ${JSON.stringify(displayTimeUnit ?? 'ms')},\n  "baseTimeNanoseconds": ${JSON.stringify(baseTimeNanoseconds ?? 0)}\n}\n`;
  let events = 0;
  for (let w = 0; bytes + pending + tail.length < targetBytes; w++) {
    for (const e of t.events) {
      const copy: Event = { ...e };
      if (typeof e['ts'] === 'number') copy['ts'] = e['ts'] + w * t.periodUs;
      if (e.args) {
        const args = { ...e.args };
        for (const k of ID_KEYS) if (typeof args[k] === 'number') args[k] = (args[k] as number) + w * t.idStride;
        copy.args = args;
      }
      const m = typeof e['name'] === 'string' ? /^ProfilerStep#(\d+)$/.exec(e['name']) : null;
      if (m) copy['name'] = `ProfilerStep#${Number(m[1]) + w * t.stepStride}`;
      put(`${events > 0 ? ',\n' : ''}  ${JSON.stringify(copy)}`);
      events++;
      if (bytes + pending + tail.length >= targetBytes) break;
    }
  }
  put(tail);
  flush();
  closeSync(fd);
  return { bytes, events };
}

if (require.main === module) {
  const [out, mb, rank, world] = process.argv.slice(2);
  if (!out || !mb) {
    process.stderr.write('usage: node --import tsx bench/kineto-gen.ts out.json MB [rank] [worldSize]\n');
    process.exit(2);
  }
  const r = writeKinetoTrace(out, Number(mb) * 2 ** 20, Number(rank ?? 0), Number(world ?? 1));
  process.stdout.write(`${out}: ${(r.bytes / 2 ** 20).toFixed(0)} MiB, ${r.events} events\n`);
}
