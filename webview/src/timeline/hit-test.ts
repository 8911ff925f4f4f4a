/**
 * Hit-testing: from a point of the canvas to the row and span under it, and from a span
 * back to its row. Reads only the layout and the prepared model.
 */
import type { ScaleLinear } from 'd3-scale';
import type { Run } from '../data';
import { ROW_STATE, rowKindOf, visibleSpan } from '../model';
import type { RowLayout, SpanRef } from './types';

/** Spans scanned at most per hit test (a row can hold millions). */
const HIT_SCAN_LIMIT = 50_000;
/** How far from a span (CSS px) a point still hits it. */
export const HIT_TOLERANCE_PX = 3;

/** The row kind (state, ops, comm) a span is drawn in. */
export function rowKindOfSpan(run: Run, i: number): number {
  const sp = run.trace.spans;
  return rowKindOf(sp.kind[i], sp.parent[i], sp.flags[i]);
}

/** The row at content height `y` (CSS px, scroll included), or null. */
export function rowAt(rows: readonly RowLayout[], y: number): RowLayout | null {
  for (const r of rows) if (y >= r.y && y < r.y + r.h) return r;
  return null;
}

/** A lane's row of `kind`, falling back to its state row (every lane has one). */
export function rowOf(rows: readonly RowLayout[], run: number, lane: number, kind: number): RowLayout | undefined {
  // Lanes are few (tens to hundreds); a linear scan per flow endpoint is fine at the flow cap.
  let fallback: RowLayout | undefined;
  for (const r of rows) {
    if (r.run !== run || r.lane !== lane) continue;
    if (r.kind === kind) return r;
    if (r.kind === ROW_STATE) fallback = r;
  }
  return fallback;
}

/** The row a span is drawn in exactly (no fallback), or undefined. */
export function rowOfSpan(rows: readonly RowLayout[], runs: readonly Run[], ref: SpanRef): RowLayout | undefined {
  const run = runs[ref.run];
  if (!run) return undefined;
  const lane = run.trace.spans.lane[ref.span];
  const kind = rowKindOfSpan(run, ref.span);
  return rows.find((r) => r.run === ref.run && r.lane === lane && r.kind === kind);
}

/** The span of `row` under canvas x `xCss`, preferring the shortest containing span. */
export function hitSpan(runs: readonly Run[], row: RowLayout, x: ScaleLinear<number, number>, xCss: number): SpanRef | null {
  const run = runs[row.run];
  const sp = run.trace.spans;
  const p = run.prepared;
  const t = x.invert(xCss) + run.offsetUs;
  const tol = Math.abs(x.invert(xCss + HIT_TOLERANCE_PX) - x.invert(xCss));
  const a0 = p.rowOffsets[row.r];
  const b0 = p.rowOffsets[row.r + 1];
  const [a, b] = visibleSpan(a0, b0, (q) => sp.start[p.order[q]], p.maxEnd, t - tol, t + tol);
  let best = -1;
  let bestScore = Infinity;
  const limit = Math.min(b, a + HIT_SCAN_LIMIT);
  for (let q = a; q < limit; q++) {
    const i = p.order[q];
    const s = sp.start[i];
    const e = s + sp.dur[i];
    const dist = t < s ? s - t : t > e ? t - e : 0;
    if (dist > tol) continue;
    const score = dist > 0 ? 1e15 + dist : sp.dur[i];
    if (score < bestScore) {
      bestScore = score;
      best = i;
    }
  }
  return best >= 0 ? { run: row.run, span: best } : null;
}
