/**
 * Idle time is not recorded: it is derived as the gaps inside each step window where a lane
 * has neither compute nor communication, and each gap gets a cause from what surrounds it.
 *
 * Causes (see IDLE_CAUSES in trace-format.ts):
 *  - bubble: pipeline mode, a stage waiting for its previous stage — the gap before a lane's
 *    first span of the step (fill), after its last (drain), or before a receive.
 *  - collective: waiting for the slowest peer — the gap before a collective or at the end of a
 *    data-parallel step (the step barrier), which is how a straggler shows on the fast lanes.
 *  - host: the lane was released late at the start of a data-parallel step, or sat between
 *    two of its own spans (input preparation, scheduling, session overhead).
 *  - other: not produced by this derivation; importers use it for gaps they cannot explain.
 *  - backpressure: pipeline mode, the gap before a send: the sender waited for its peer to
 *    free the channel (the runtime starts a send span only once the channel had room).
 * What the next span is comes from its `comm` column, never from its name.
 */
import { CommOpCode, IdleCauseCode, PhaseCode, SPAN_COLUMNS, SpanKind, allocSpans, isCollectiveCode, isP2pCode, type IdleCause, type Trace } from './trace-format';

/** Gaps shorter than this are timer noise, not idle time. */
const MIN_GAP_US = 1;

/** Is span `i` a collective, where a lane waits for its slowest peer? */
function isCollective(trace: Trace, i: number): boolean {
  return trace.spans.kind[i] === SpanKind.comm && isCollectiveCode(trace.spans.comm[i]);
}

/** Is span `i` a send (pipeline activation leaving)? */
function isSend(trace: Trace, i: number): boolean {
  return trace.spans.kind[i] === SpanKind.comm && trace.spans.comm[i] === CommOpCode.send;
}

/** Is span `i` a receive (pipeline activation arriving)? */
function isRecv(trace: Trace, i: number): boolean {
  return trace.spans.kind[i] === SpanKind.comm && trace.spans.comm[i] === CommOpCode.recv;
}

/**
 * Outside pipelines, does a lane that waits before span `i` wait for its peers? Collectives
 * and point-to-point transfers (an imported trace's NCCL send and recv) both block until the
 * other side arrives.
 */
function waitsForPeers(trace: Trace, i: number): boolean {
  return isCollective(trace, i) || (trace.spans.kind[i] === SpanKind.comm && isP2pCode(trace.spans.comm[i]));
}

/**
 * Returns a copy of the trace whose spans include derived idle spans (any idle spans already
 * present are dropped first, so the function is idempotent).
 */
export function deriveIdle(trace: Trace): Trace {
  const s = trace.spans;
  const pipeline = trace.meta.plan.mode === 'pipeline';
  // Top-level busy spans per (lane, step).
  const byKey = new Map<string, number[]>();
  const keep: number[] = [];
  for (let i = 0; i < s.count; i++) {
    if (s.kind[i] === SpanKind.idle) continue;
    keep.push(i);
    if (s.parent[i] >= 0 || s.step[i] < 0) continue;
    const key = `${s.lane[i]}:${s.step[i]}`;
    let list = byKey.get(key);
    if (!list) byKey.set(key, (list = []));
    list.push(i);
  }
  const idle: { lane: number; step: number; start: number; dur: number; cause: IdleCause; micro: number; stage: number }[] = [];
  for (const w of trace.steps) {
    for (let lane = 0; lane < trace.lanes.length; lane++) {
      const list = (byKey.get(`${lane}:${w.index}`) ?? []).slice().sort((a, b) => s.start[a] - s.start[b]);
      let cursor = w.startUs;
      let prev = -1;
      const emit = (a: number, b: number, next: number): void => {
        if (b - a < MIN_GAP_US) return;
        let cause: IdleCause;
        if (pipeline && next >= 0 && isSend(trace, next)) {
          cause = 'backpressure';
        } else if (pipeline) {
          cause = next < 0 || prev < 0 || isRecv(trace, next) ? 'bubble' : isCollective(trace, next) ? 'collective' : 'host';
        } else if (next < 0 || waitsForPeers(trace, next)) {
          cause = 'collective';
        } else {
          cause = 'host';
        }
        const ref = next >= 0 ? next : prev;
        idle.push({
          lane,
          step: w.index,
          start: a,
          dur: b - a,
          cause,
          micro: ref >= 0 ? s.micro[ref] : -1,
          stage: ref >= 0 ? s.stage[ref] : -1,
        });
      };
      for (const i of list) {
        const a = Math.max(s.start[i], w.startUs);
        if (a > cursor) emit(cursor, a, i);
        cursor = Math.max(cursor, Math.min(w.endUs, s.start[i] + s.dur[i]));
        prev = i;
      }
      if (w.endUs > cursor) emit(cursor, w.endUs, -1);
    }
  }
  const n = keep.length + idle.length;
  const out = allocSpans(n);
  for (const c of SPAN_COLUMNS) {
    const src = s[c] as Float64Array;
    const dst = out[c] as Float64Array;
    for (let j = 0; j < keep.length; j++) dst[j] = src[keep[j]];
  }
  // Parent indices refer to positions before idle spans were dropped; remap them.
  const newIndex = new Int32Array(s.count).fill(-1);
  keep.forEach((old, j) => (newIndex[old] = j));
  for (let j = 0; j < keep.length; j++) if (out.parent[j] >= 0) out.parent[j] = newIndex[out.parent[j]];
  const strings = trace.strings.slice();
  let idleName = strings.indexOf('idle');
  if (idleName < 0) idleName = strings.push('idle') - 1;
  for (let k = 0; k < idle.length; k++) {
    const j = keep.length + k;
    const g = idle[k];
    out.lane[j] = g.lane;
    out.kind[j] = SpanKind.idle;
    out.name[j] = idleName;
    out.opType[j] = -1;
    out.start[j] = g.start;
    out.dur[j] = g.dur;
    out.step[j] = g.step;
    out.micro[j] = g.micro;
    out.stage[j] = g.stage;
    out.bytes[j] = 0;
    out.peer[j] = -1;
    out.parent[j] = -1;
    out.flags[j] = 0;
    out.cause[j] = IdleCauseCode[g.cause];
    out.comm[j] = CommOpCode.none;
    out.phase[j] = PhaseCode.none;
    out.cpu[j] = -1;
    out.wait[j] = -1;
  }
  return { ...trace, strings, spans: out };
}

/**
 * Step windows from the spans: each step runs from the earliest start to the latest end of
 * any top-level span recorded for it, on any lane.
 */
export function stepWindowsFromSpans(trace: Pick<Trace, 'spans'>): Trace['steps'] {
  const s = trace.spans;
  const lo = new Map<number, number>();
  const hi = new Map<number, number>();
  for (let i = 0; i < s.count; i++) {
    const st = s.step[i];
    if (st < 0 || s.parent[i] >= 0 || s.kind[i] === SpanKind.idle) continue;
    lo.set(st, Math.min(lo.get(st) ?? Infinity, s.start[i]));
    hi.set(st, Math.max(hi.get(st) ?? -Infinity, s.start[i] + s.dur[i]));
  }
  return [...lo.keys()].sort((a, b) => a - b).map((index) => ({ index, startUs: lo.get(index)!, endUs: hi.get(index)! }));
}
