/**
 * The overlay canvas: what is drawn with vector calls over the span pixels — finding / lane
 * highlight, the brushed selection, labels inside wide spans, send → recv flows, and the
 * hovered and selected spans' outlines.
 */
import type { ScaleLinear } from 'd3-scale';
import { bestInk } from '../contrast';
import type { Run } from '../data';
import { CLASS_MASK, ROW_COMM, visibleSpan } from '../model';
import type { Palette } from '../theme';
import { rowKindOfSpan, rowOf } from './hit-test';
import { spanLabel } from './labels';
import type { NameCache } from './names';
import type { DrawnCounts, LabelBox } from './span-renderer';
import type { Highlight, LaneLayout, RowLayout, SpanRef, ViewRange } from './types';

const MAX_FLOWS = 1000;

/** Everything a frame of the overlay reads. */
export interface OverlayFrame {
  runs: readonly Run[];
  lanes: readonly LaneLayout[];
  rows: readonly RowLayout[];
  x: ScaleLinear<number, number>;
  v0: number;
  v1: number;
  scrollY: number;
  dpr: number;
  width: number;
  height: number;
  palette: Palette;
  font: string;
  labels: readonly LabelBox[];
  highlight: Highlight | null;
  selection: ViewRange | null;
  hover: SpanRef | null;
  selected: SpanRef | null;
  names: NameCache;
  /** Counts to add the overlay's flows and labels to. */
  drawn: DrawnCounts;
  /** Receives the text of every label drawn (for the test hook). */
  labelTexts: string[];
}

export function drawOverlay(ctx: CanvasRenderingContext2D, f: OverlayFrame): void {
  f.labelTexts.length = 0;
  ctx.setTransform(1, 0, 0, 1, 0, 0);
  ctx.clearRect(0, 0, ctx.canvas.width, ctx.canvas.height);
  ctx.setTransform(f.dpr, 0, 0, f.dpr, 0, 0);
  drawHighlight(ctx, f);
  drawSelection(ctx, f);
  drawLabels(ctx, f);
  drawFlows(ctx, f);
  drawFocus(ctx, f);
}

/** Finding / lane highlight: the lanes outlined, their evidence range tinted. */
function drawHighlight(ctx: CanvasRenderingContext2D, f: OverlayFrame): void {
  const h = f.highlight;
  if (!h) return;
  const pal = f.palette;
  const W = f.width;
  const hx0 = Math.max(0, f.x(h.v0));
  const hx1 = Math.min(W, f.x(h.v1));
  for (const l of f.lanes) {
    if (!h.lanes.has(`${l.run}:${l.lane}`)) continue;
    const y = l.y - f.scrollY;
    if (hx1 > hx0) {
      ctx.globalAlpha = 0.6;
      ctx.fillStyle = pal.css.highlight;
      ctx.fillRect(hx0, y, hx1 - hx0, l.h);
      ctx.globalAlpha = 1;
    }
    ctx.strokeStyle = pal.css.focus;
    ctx.lineWidth = 2;
    ctx.strokeRect(1, y + 1, W - 2, l.h - 2);
  }
}

/** Brushed selection across all lanes. */
function drawSelection(ctx: CanvasRenderingContext2D, f: OverlayFrame): void {
  if (!f.selection) return;
  const pal = f.palette;
  const W = f.width;
  const H = f.height;
  const sx0 = f.x(f.selection.v0);
  const sx1 = f.x(f.selection.v1);
  if (sx1 > 0 && sx0 < W) {
    ctx.fillStyle = pal.css.selection;
    ctx.fillRect(sx0, 0, sx1 - sx0, H);
    ctx.strokeStyle = pal.css.focus;
    ctx.lineWidth = 1;
    ctx.beginPath();
    ctx.moveTo(Math.round(sx0) + 0.5, 0);
    ctx.lineTo(Math.round(sx0) + 0.5, H);
    ctx.moveTo(Math.round(sx1) - 0.5, 0);
    ctx.lineTo(Math.round(sx1) - 0.5, H);
    ctx.stroke();
  }
}

/** Black or white, whichever contrasts more with draw class `cls` (WCAG contrast). */
function inkOn(palette: Palette, cls: number): string {
  return bestInk(palette.classes[cls]).r === 0 ? '#000' : '#fff';
}

/** Labels inside wide spans. */
function drawLabels(ctx: CanvasRenderingContext2D, f: OverlayFrame): void {
  ctx.font = f.font;
  ctx.textBaseline = 'middle';
  const charW = ctx.measureText('0').width || 6;
  for (const lb of f.labels) {
    const w = lb.x1 - lb.x0 - 6;
    const max = Math.floor(w / charW);
    if (max < 3) continue;
    const run = f.runs[lb.run];
    let text = spanLabel(run, lb.run, lb.span, f.names);
    if (text.length > max) text = `${text.slice(0, max - 1)}…`;
    const c = run.prepared.cls[lb.span] & CLASS_MASK;
    ctx.fillStyle = inkOn(f.palette, c);
    ctx.fillText(text, lb.x0 + 3, lb.y + lb.h / 2, w);
    f.drawn.labels++;
    f.labelTexts.push(text);
  }
}

function arrow(ctx: CanvasRenderingContext2D, xa: number, ya: number, xb: number, yb: number): void {
  const mid = (xa + xb) / 2;
  ctx.beginPath();
  ctx.moveTo(xa, ya);
  ctx.bezierCurveTo(mid, ya, mid, yb, xb, yb);
  ctx.stroke();
  const ang = Math.atan2(yb - ya, (xb - mid) * 3 || 1e-6);
  const s = 5;
  ctx.beginPath();
  ctx.moveTo(xb, yb);
  ctx.lineTo(xb - s * Math.cos(ang - 0.45), yb - s * Math.sin(ang - 0.45));
  ctx.lineTo(xb - s * Math.cos(ang + 0.45), yb - s * Math.sin(ang + 0.45));
  ctx.closePath();
  ctx.fill();
}

/** Flows: send → recv arrows between comm rows. */
function drawFlows(ctx: CanvasRenderingContext2D, f: OverlayFrame): void {
  const { x, scrollY: sy, width: W, drawn: d } = f;
  ctx.strokeStyle = f.palette.css.flow;
  ctx.fillStyle = f.palette.css.flow;
  ctx.lineWidth = 1.25;
  f.runs.forEach((run, ri) => {
    const fl = run.prepared.flows;
    const n = fl.send.length;
    if (n === 0) return;
    const sp = run.trace.spans;
    const off = run.offsetUs;
    const [a, b] = visibleSpan(0, n, (q) => fl.index.start[q], fl.index.maxEnd, f.v0 + off, f.v1 + off);
    // Dense flows (more than one per 8 px) are drawn as plain lines, and at most one per pixel.
    const dense = b - a > W / 8;
    let lastKey = '';
    let lastX = -Infinity;
    for (let q = a; q < b && d.flows < MAX_FLOWS; q++) {
      const s = fl.send[q];
      const r = fl.recv[q];
      const rs = rowOf(f.rows, ri, sp.lane[s], ROW_COMM);
      const rr = rowOf(f.rows, ri, sp.lane[r], ROW_COMM);
      if (!rs || !rr) continue;
      const xa = x(sp.start[s] - off);
      const xb = x(sp.start[r] + sp.dur[r] - off);
      const ya = rs.y + rs.h / 2 - sy;
      const yb = rr.y + rr.h / 2 - sy;
      const key = `${Math.round(xa)},${Math.round(xb)},${ya},${yb}`;
      if (key === lastKey || (dense && xa - lastX < 1)) continue;
      lastKey = key;
      lastX = xa;
      if (dense) {
        ctx.beginPath();
        ctx.moveTo(xa, ya);
        ctx.lineTo(xb, yb);
        ctx.stroke();
      } else arrow(ctx, xa, ya, xb, yb);
      d.flows++;
    }
  });
}

/** Hovered and selected spans. */
function drawFocus(ctx: CanvasRenderingContext2D, f: OverlayFrame): void {
  const { x, scrollY: sy, width: W } = f;
  for (const [ref, dashed] of [
    [f.hover, false],
    [f.selected, true],
  ] as const) {
    if (!ref) continue;
    const run = f.runs[ref.run];
    if (!run) continue;
    const sp = run.trace.spans;
    const row = rowOf(f.rows, ref.run, sp.lane[ref.span], rowKindOfSpan(run, ref.span));
    if (!row) continue;
    const xa = x(sp.start[ref.span] - run.offsetUs);
    const xb = x(sp.start[ref.span] + sp.dur[ref.span] - run.offsetUs);
    ctx.strokeStyle = f.palette.css.focus;
    ctx.lineWidth = 2;
    ctx.setLineDash(dashed ? [4, 2] : []);
    ctx.strokeRect(Math.max(-2, xa) - 1, row.y - sy, Math.max(2, Math.min(W + 2, xb) - Math.max(-2, xa)) + 2, row.h);
    ctx.setLineDash([]);
  }
}
