/**
 * How much of a trace's compute ran while another device computed too: the quantity that
 * contention between devices sharing a machine scales with. A data-parallel step overlaps
 * its devices' compute fully, a pipeline of one micro-batch not at all; the sweep predictor
 * and the pipeline findings both charge contention in proportion to it.
 */
import { SpanKind, type Trace } from '../trace-format';

/** Per lane, the indices of its top-level compute spans of the measured steps, by start. */
function computeSpansByLane(trace: Trace): number[][] {
  const s = trace.spans;
  const measured = new Set(trace.steps.map((w) => w.index));
  const byLane = new Map<number, number[]>();
  for (let i = 0; i < s.count; i++) {
    if (s.kind[i] !== SpanKind.compute || s.parent[i]! >= 0 || !measured.has(s.step[i]!) || !(s.dur[i]! > 0)) continue;
    const l = s.lane[i]!;
    const list = byLane.get(l);
    if (list) list.push(i);
    else byLane.set(l, [i]);
  }
  return [...byLane.values()].map((list) => list.sort((x, y) => s.start[x]! - s.start[y]!));
}

/**
 * The share of a trace's top-level compute time (measured steps) during which at least one
 * other lane computes too: 1 when every device computes at once, 0 when they take turns.
 */
export function computeOverlap(trace: Trace): number {
  const s = trace.spans;
  const lanes = computeSpansByLane(trace);
  const edges: { t: number; lane: number; d: number }[] = [];
  let total = 0;
  for (const [l, list] of lanes.entries()) {
    for (const i of list) {
      edges.push({ t: s.start[i]!, lane: l, d: 1 }, { t: s.start[i]! + s.dur[i]!, lane: l, d: -1 });
      total += s.dur[i]!;
    }
  }
  return overlapOfEdges(edges, total);
}

/** Sweep over interval edges: the share of `total` spent while two or more lanes are busy. */
function overlapOfEdges(edges: { t: number; lane: number; d: number }[], total: number): number {
  if (total <= 0) return 0;
  edges.sort((a, b) => a.t - b.t || a.d - b.d);
  const active = new Map<number, number>();
  let busyLanes = 0;
  let overlapped = 0;
  let last = edges[0]?.t ?? 0;
  for (const e of edges) {
    if (busyLanes >= 2) overlapped += busyLanes * (e.t - last);
    last = e.t;
    const before = active.get(e.lane) ?? 0;
    const after = before + e.d;
    active.set(e.lane, after);
    if (before === 0 && after > 0) busyLanes++;
    else if (before > 0 && after === 0) busyLanes--;
  }
  return Math.min(1, overlapped / total);
}

/**
 * The compute overlap of intervals given directly (per lane, [start, end) pairs): what
 * {@link computeOverlap} gives for a trace with those compute spans.
 */
export function intervalOverlap(lanes: readonly (readonly [number, number])[][]): number {
  const edges: { t: number; lane: number; d: number }[] = [];
  let total = 0;
  lanes.forEach((list, l) => {
    for (const [a, b] of list) {
      if (!(b > a)) continue;
      edges.push({ t: a, lane: l, d: 1 }, { t: b, lane: l, d: -1 });
      total += b - a;
    }
  });
  return overlapOfEdges(edges, total);
}

/**
 * Per top-level compute span of the measured steps: the share of its time during which
 * another lane computes too (NaN for every other span). A lane's spans do not overlap one
 * another, so each other lane is walked once with a pointer: linear in the spans.
 */
export function spanOverlaps(trace: Trace): Float64Array {
  const s = trace.spans;
  const out = new Float64Array(s.count).fill(NaN);
  const lanes = computeSpansByLane(trace);
  for (const [li, list] of lanes.entries()) {
    const ptr = lanes.map(() => 0);
    for (const i of list) {
      const a = s.start[i]!;
      const b = a + s.dur[i]!;
      // Another lane computing at t: merged intervals of the other lanes' spans overlapping [a, b].
      const cuts: [number, number][] = [];
      for (const [lj, other] of lanes.entries()) {
        if (lj === li) continue;
        // Spans of `other` that end by `a` cannot reach this span or any later one.
        let p = ptr[lj]!;
        while (p < other.length && s.start[other[p]!]! + s.dur[other[p]!]! <= a) p++;
        ptr[lj] = p;
        for (let q = p; q < other.length; q++) {
          const j = other[q]!;
          const c = s.start[j]!;
          if (c >= b) break;
          cuts.push([Math.max(a, c), Math.min(b, c + s.dur[j]!)]);
        }
      }
      cuts.sort((x, y) => x[0] - y[0]);
      let covered = 0;
      let end = a;
      for (const [c, d] of cuts) {
        if (d <= end) continue;
        covered += d - Math.max(c, end);
        end = d;
      }
      out[i] = covered / (b - a);
    }
  }
  return out;
}
