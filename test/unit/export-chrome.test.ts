import { describe, test, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { toChromeTrace, writeChromeTrace, type ChromeTrace, type ChromeTraceEvent } from '../../src/profiler/export-chrome';
import { deriveIdle } from '../../src/profiler/idle';
import { importTrace } from '../../src/profiler/import/detect';
import { IDLE_SPAN_CAUSES, type SpanRow, type Trace } from '../../src/profiler/trace-format';
import { meta, pipelinePlan, traceOf } from '../helpers/trace-builders';
import { kinetoFixture } from '../helpers/kineto';

/**
 * Checks what Perfetto and chrome://tracing need of a JSON trace, without either: the
 * object form, well-typed events, names for every process and thread, slices that nest on
 * each thread, and flows whose ends both bind to a slice. Returns the problems found.
 */
function chromeTraceProblems(doc: unknown): string[] {
  const problems: string[] = [];
  const d = doc as Partial<ChromeTrace>;
  if (!Array.isArray(d.traceEvents)) return ['traceEvents is not an array'];
  if (d.displayTimeUnit !== 'ms' && d.displayTimeUnit !== 'ns') problems.push('displayTimeUnit is neither ms nor ns');
  const procNames = new Set<number>();
  const threadNames = new Set<string>();
  const slices = new Map<string, ChromeTraceEvent[]>();
  const flows = new Map<number, ChromeTraceEvent[]>();
  for (const e of d.traceEvents) {
    if (typeof e.name !== 'string') problems.push(`event without a string name: ${JSON.stringify(e)}`);
    if (!Number.isInteger(e.pid) || !Number.isInteger(e.tid)) problems.push(`event without integer pid/tid: ${e.name}`);
    if (e.ph === 'M') {
      if (e.name === 'process_name') procNames.add(e.pid);
      if (e.name === 'thread_name') threadNames.add(`${e.pid}/${e.tid}`);
    } else if (e.ph === 'X') {
      if (!(typeof e.ts === 'number' && Number.isFinite(e.ts) && e.ts >= 0)) problems.push(`bad ts on ${e.name}`);
      if (!(typeof e.dur === 'number' && Number.isFinite(e.dur) && e.dur >= 0)) problems.push(`bad dur on ${e.name}`);
      const key = `${e.pid}/${e.tid}`;
      let list = slices.get(key);
      if (!list) slices.set(key, (list = []));
      list.push(e);
    } else if (e.ph === 's' || e.ph === 'f') {
      let list = flows.get(e.id ?? -1);
      if (!list) flows.set(e.id ?? -1, (list = []));
      list.push(e);
    } else {
      problems.push(`unexpected phase ${String(e.ph)}`);
    }
  }
  for (const [key, list] of slices) {
    if (!threadNames.has(key)) problems.push(`thread ${key} has no thread_name`);
    if (!procNames.has(Number(key.split('/')[0]))) problems.push(`process of ${key} has no process_name`);
    // Slices on one thread must nest: each starts after the enclosing one and ends inside it.
    // Compared in integer nanoseconds, as Perfetto stores them (it rounds µs × 1000).
    const ns = (us: number): number => Math.round(us * 1000);
    const sorted = list.slice().sort((a, b) => ns(a.ts!) - ns(b.ts!) || ns(b.dur!) - ns(a.dur!));
    const stack: number[] = [];
    for (const e of sorted) {
      const a = ns(e.ts!);
      const b = a + ns(e.dur!);
      while (stack.length > 0 && stack[stack.length - 1] <= a) stack.pop();
      if (stack.length > 0 && b > stack[stack.length - 1]) problems.push(`slice ${e.name} on ${key} overlaps the slice it starts in`);
      stack.push(b);
    }
  }
  for (const [id, ends] of flows) {
    const s = ends.filter((e) => e.ph === 's');
    const f = ends.filter((e) => e.ph === 'f');
    if (s.length !== 1 || f.length !== 1) problems.push(`flow ${id} has ${s.length} starts and ${f.length} ends`);
    if (f[0] && f[0].bp !== 'e') problems.push(`flow ${id} end does not bind to its enclosing slice`);
    for (const e of ends) {
      const on = slices.get(`${e.pid}/${e.tid}`) ?? [];
      if (!on.some((x) => x.ts! <= e.ts! && e.ts! <= x.ts! + x.dur!)) problems.push(`flow ${id} ${e.ph} is in no slice of its thread`);
    }
  }
  return problems;
}

const slicesOf = (c: ChromeTrace): ChromeTraceEvent[] => c.traceEvents.filter((e) => e.ph === 'X' && e.cat !== 'step');
const threadName = (c: ChromeTrace, e: ChromeTraceEvent): string =>
  c.traceEvents.find((m) => m.ph === 'M' && m.name === 'thread_name' && m.pid === e.pid && m.tid === e.tid)?.args?.['name'] as string;

/** A 2-stage GPipe step with 2 micro-batches: stage 0 computes and sends, stage 1 receives and computes. */
function pipelineTrace(): Trace {
  const rows: SpanRow[] = [
    { lane: 0, kind: 'compute', name: 'stage0.run', start: 0, dur: 10, step: 0, micro: 0, stage: 0 },
    { lane: 0, kind: 'compute', name: '/fc1/MatMul', opType: 'MatMul', start: 1, dur: 6, step: 0, micro: 0, stage: 0, parent: 0, flags: 8 },
    { lane: 0, kind: 'comm', name: 'send', comm: 'send', start: 10, dur: 2, step: 0, micro: 0, stage: 0, bytes: 4096, peer: 1 },
    { lane: 0, kind: 'compute', name: 'stage0.run', start: 12, dur: 10, step: 0, micro: 1, stage: 0 },
    { lane: 0, kind: 'comm', name: 'send', comm: 'send', start: 22, dur: 2, step: 0, micro: 1, stage: 0, bytes: 4096, peer: 1 },
    { lane: 1, kind: 'comm', name: 'recv', comm: 'recv', start: 4, dur: 8, step: 0, micro: 0, stage: 1, bytes: 4096, peer: 0 },
    { lane: 1, kind: 'compute', name: 'stage1.run', start: 12, dur: 10, step: 0, micro: 0, stage: 1 },
    // The second recv is posted while micro-batch 0 still computes: comm under compute.
    { lane: 1, kind: 'comm', name: 'recv', comm: 'recv', start: 18, dur: 6, step: 0, micro: 1, stage: 1, bytes: 4096, peer: 0 },
    { lane: 1, kind: 'compute', name: 'stage1.run', start: 24, dur: 10, step: 0, micro: 1, stage: 1 },
  ];
  return traceOf(rows, [[0, 34]], meta({ plan: pipelinePlan({ stages: 2, microBatches: 2, batch: 8 }) }));
}

describe('Chrome trace export', () => {
  const dir = mkdtempSync(join(tmpdir(), 'parallax-chrome-'));
  after(() => rmSync(dir, { recursive: true, force: true }));

  test('a pipeline trace exports as a valid Chrome trace with every span as a complete event', () => {
    const t = deriveIdle(pipelineTrace());
    const c = toChromeTrace(t);
    assert.deepEqual(chromeTraceProblems(JSON.parse(JSON.stringify(c))), []);
    assert.equal(c.displayTimeUnit, 'ms');
    assert.equal(slicesOf(c).length, t.spans.count);
    assert.equal(c.traceEvents.filter((e) => e.cat === 'step').length, 1);
    assert.equal((c.otherData['parallax'] as { mode: string }).mode, 'pipeline');
  });

  test('lanes of one physical unit share a process, and each lane has its own threads', () => {
    const c = toChromeTrace(pipelineTrace());
    const procs = c.traceEvents.filter((e) => e.name === 'process_name').map((e) => e.args?.['name']);
    assert.deepEqual(procs, ['host-cpu', 'steps']);
    const threads = c.traceEvents.filter((e) => e.name === 'thread_name').map((e) => e.args?.['name']);
    assert.deepEqual(threads, [
      'cpu:0 (1 thread)',
      'cpu:0 (1 thread) · comm',
      'cpu:0 (1 thread) · operators',
      'cpu:1 (1 thread)',
      'cpu:1 (1 thread) · comm',
      'step windows',
    ]);
    const op = slicesOf(c).find((e) => e.name === '/fc1/MatMul')!;
    assert.equal(threadName(c, op), 'cpu:0 (1 thread) · operators');
    assert.equal(op.cat, 'compute,operator');
  });

  test('each send is joined to its matching recv by a flow, micro-batch by micro-batch', () => {
    const c = toChromeTrace(pipelineTrace());
    const starts = c.traceEvents.filter((e) => e.ph === 's');
    const ends = c.traceEvents.filter((e) => e.ph === 'f');
    assert.equal(starts.length, 2);
    assert.equal(ends.length, 2);
    for (const s of starts) {
      const f = ends.find((e) => e.id === s.id)!;
      assert.equal(f.args?.['micro'], s.args?.['micro']);
      const send = slicesOf(c).find((e) => e.name === 'send' && e.args?.['micro'] === s.args?.['micro'])!;
      const recv = slicesOf(c).find((e) => e.name === 'recv' && e.args?.['micro'] === s.args?.['micro'])!;
      assert.ok(send.tid === s.tid && send.ts! <= s.ts! && s.ts! <= send.ts! + send.dur!);
      assert.ok(recv.tid === f.tid && recv.ts! <= f.ts! && f.ts! <= recv.ts! + recv.dur!);
      assert.equal(f.bp, 'e');
    }
  });

  test('args carry bytes, peer, step, micro-batch, stage, comm operation, operator type and idle cause', () => {
    const c = toChromeTrace(deriveIdle(pipelineTrace()));
    const send = slicesOf(c).find((e) => e.name === 'send')!;
    assert.deepEqual(send.args, { lane: 'cpu:0 (1 thread)', step: 0, micro: 0, stage: 0, bytes: 4096, peer: 'cpu:1 (1 thread)', peerLane: 1, comm: 'send' });
    assert.equal(slicesOf(c).find((e) => e.name === '/fc1/MatMul')!.args?.['opType'], 'MatMul');
    const idle = slicesOf(c).filter((e) => e.cat === 'idle');
    assert.ok(idle.length > 0);
    for (const e of idle) {
      assert.ok((IDLE_SPAN_CAUSES as readonly unknown[]).includes(e.args?.['cause']), String(e.args?.['cause']));
      assert.equal(e.name, `idle: ${String(e.args?.['cause'])}`);
    }
    // Stage 1 waits for its first micro-batch: a fill bubble from the step start.
    assert.ok(idle.some((e) => e.args?.['lane'] === 'cpu:1 (1 thread)' && e.ts === 0 && e.args?.['cause'] === 'bubble'));
  });

  test('spans that overlap on one lane go to separate threads, so slices still nest', () => {
    const t = traceOf(
      [
        { lane: 0, kind: 'compute', name: 'kernel a', start: 0, dur: 10, step: 0 },
        { lane: 0, kind: 'compute', name: 'kernel b', start: 5, dur: 10, step: 0 },
        { lane: 0, kind: 'compute', name: 'kernel c', start: 10, dur: 3, step: 0 },
        { lane: 1, kind: 'compute', name: 'kernel d', start: 0, dur: 15, step: 0 },
      ],
      [[0, 15]],
    );
    const c = toChromeTrace(t);
    assert.deepEqual(chromeTraceProblems(c), []);
    const on = (n: string): string => threadName(c, slicesOf(c).find((e) => e.name === n)!);
    assert.equal(on('kernel a'), 'cpu:0 (1 thread)');
    assert.equal(on('kernel b'), 'cpu:0 (1 thread) #2');
    assert.equal(on('kernel c'), 'cpu:0 (1 thread)', 'a slice that starts as another ends reuses its thread');
  });

  test('emulated and predicted spans say so in their names, categories and args', () => {
    const t = traceOf(
      [
        { lane: 0, kind: 'comm', name: 'all_reduce', comm: 'allreduce', start: 0, dur: 10, step: 0, flags: 1 },
        { lane: 1, kind: 'compute', name: 'session.run', start: 0, dur: 10, step: 0, flags: 2 },
        { lane: 1, kind: 'comm', name: 'copy', start: 10, dur: 2, step: 0, flags: 4, bytes: 8 },
      ],
      [[0, 12]],
    );
    const c = toChromeTrace(t);
    const [emu, pred, staging] = slicesOf(c);
    assert.equal(emu.name, 'all_reduce (emulated)');
    assert.equal(emu.cat, 'comm,emulated');
    assert.equal(emu.args?.['emulated'], true);
    assert.equal(pred.name, 'session.run (predicted)');
    assert.equal(pred.cat, 'compute,predicted');
    assert.equal(staging.cat, 'comm,staging');
    // A predicted trace labels every span, whatever its flags.
    const whole = toChromeTrace({ ...t, meta: { ...t.meta, source: 'predicted' } });
    assert.ok(slicesOf(whole).every((e) => e.name.endsWith('(predicted)') && e.args?.['predicted'] === true));
    assert.ok(whole.traceEvents.some((e) => e.name === 'process_labels' && e.args?.['labels'] === 'predicted'));
  });

  test('hostile names stay plain strings, in memory and in the written file', async () => {
    const hostile = ['</script><script>alert(1)</script>', '"quoted", \\back\\ and\nnewline', '__proto__', 'constructor', '\u0000nul \u2028 line sep', '<img src=x onerror=alert(1)>', '🙂 ünïcode'];
    const m = meta();
    m.devices[0].label = hostile[0];
    m.devices[0].physicalUnit = '__proto__';
    const t = traceOf(
      hostile.map((name, i) => ({ lane: i % 2, kind: 'compute' as const, name, opType: name, start: i * 10, dur: 5, step: 0 })),
      [[0, 70]],
      m,
    );
    t.lanes[0].label = hostile[0];
    const c = toChromeTrace(t);
    assert.deepEqual(slicesOf(c).map((e) => e.name), hostile);
    assert.deepEqual(slicesOf(c).map((e) => e.args?.['opType']), hostile);
    assert.ok(c.traceEvents.some((e) => e.name === 'process_name' && e.args?.['name'] === '__proto__'));
    assert.ok(c.traceEvents.some((e) => e.name === 'thread_name' && e.args?.['name'] === hostile[0]));
    const out = join(dir, 'hostile.json');
    await writeChromeTrace(t, out);
    const back = JSON.parse(readFileSync(out, 'utf8')) as ChromeTrace;
    assert.deepEqual(slicesOf(back).map((e) => e.name), hostile);
    assert.deepEqual(chromeTraceProblems(back), []);
    assert.equal(({} as Record<string, unknown>)['polluted'], undefined);
  });

  test('writeChromeTrace writes exactly what toChromeTrace returns, and leaves no temporary file', async () => {
    const t = deriveIdle(pipelineTrace());
    const out = join(dir, 'pipeline.chrome.json');
    await writeChromeTrace(t, out);
    assert.deepEqual(JSON.parse(readFileSync(out, 'utf8')), JSON.parse(JSON.stringify(toChromeTrace(t))));
    assert.deepEqual(readdirSync(dir).filter((f) => f.endsWith('.tmp')), []);
  });

  test('an imported Kineto trace exports with its NCCL kernels on comm threads and every slice nested', async () => {
    const t = deriveIdle(await importTrace([kinetoFixture('ddp-2rank-rank0.json.gz')]));
    const c = JSON.parse(JSON.stringify(toChromeTrace(t))) as ChromeTrace;
    assert.deepEqual(chromeTraceProblems(c), []);
    const nccl = slicesOf(c).filter((e) => e.name.startsWith('nccl:'));
    assert.equal(nccl.length, 21);
    assert.ok(nccl.every((e) => threadName(c, e).startsWith('rank 0 · GPU 0 (NVIDIA A100-PG509-200) · comm')));
    assert.equal(c.traceEvents.filter((e) => e.cat === 'step').length, 3);
    assert.ok(slicesOf(c).some((e) => e.cat === 'idle' && e.args?.['cause'] === 'collective'));
  });
});
