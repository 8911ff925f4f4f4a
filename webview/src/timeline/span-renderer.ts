/**
 * The span canvas, painted as pixels (painter.ts) from a per-row level-of-detail pass: spans
 * at least WIDE_PX wide are drawn as rectangles, thinner ones are merged into per-pixel
 * columns coloured by the class covering most of the column, and rows with very many spans
 * in view read pre-aggregated pyramid buckets instead of spans (model.ts). So a frame costs
 * in proportion to the pixels on screen, not to the trace. Step boundaries and collective
 * markers are pixels too.
 */
import type { ScaleLinear } from 'd3-scale';
import type { Run } from '../data';
import { CHANNELS, CLASS_MASK, C_OP, C_OP_ALT, EMPTY, M_EMULATED, M_PREDICTED, N_CLASSES, ROW_COMM, visibleSpan, type Pyramid } from '../model';
import { ALPHA_LEVELS, Painter } from '../painter';
import type { DrawnCounts } from '../hook-api';
import { rowOf } from './hit-test';
import { kindOfClass, zeroCounts, type Header, type LaneLayout, type RowLayout } from './types';

/** Spans at least this many device pixels wide are drawn one by one. */
const WIDE_PX = 1.5;
/** Rows with more spans in view than this many per pixel column read the pyramid. */
const PYRAMID_SPANS_PER_PX = 4;
/** Labels are drawn inside spans at least this wide (CSS px). */
const LABEL_MIN_PX = 36;
const MAX_LABELS = 400;
/** While a filter is on, spans it leaves out are drawn at this alpha level, and count this much in merged columns. */
const DIM_ALPHA = 2;
const DIM_COVERAGE = 0.15;

/** A wide span whose label the overlay may draw, CSS px. */
export interface LabelBox {
  run: number;
  span: number;
  x0: number;
  x1: number;
  y: number;
  h: number;
}

export type { DrawnCounts };

export function zeroDrawn(): DrawnCounts {
  return { rects: zeroCounts(), merged: zeroCounts(), columns: 0, buckets: 0, pyramidRows: 0, rawRows: 0, flows: 0, collectives: 0, labels: 0, steps: 0 };
}

/** Everything a frame of the span canvas reads. */
export interface SpanFrame {
  runs: readonly Run[];
  lanes: readonly LaneLayout[];
  rows: readonly RowLayout[];
  headers: readonly Header[];
  x: ScaleLinear<number, number>;
  v0: number;
  v1: number;
  scrollY: number;
  dpr: number;
  /**
   * Per run, the spans a filter (operator table, search) picked (1) or left out (0); null
   * when no filter is on. Left-out spans are drawn dimmed. Rows are drawn from spans, not
   * the pyramid, while a filter is on: the pyramid's buckets do not know the filter.
   */
  filter: readonly (Uint8Array | null)[] | null;
}

export class SpanRenderer {
  readonly painter = new Painter();
  /** Counts of the last frame; the overlay adds its own (flows, labels). */
  drawn: DrawnCounts = zeroDrawn();
  /** Wide spans of the last frame that have room for a label. */
  readonly labels: LabelBox[] = [];
  private cols = new Float32Array(0);
  private wide = new Int32Array(1024);
  /**
   * What binning one row left for the passes after it: the pixel columns it touched and how
   * many of `wide` it filled. One object reused for every row, so a frame allocates nothing per row.
   */
  private readonly rowBins = { minX: 0, maxX: -1, nWide: 0 };
  /** Spans merged into pixel columns this frame, by class (folded into `drawn.merged`). */
  private readonly mergedByClass = new Int32Array(N_CLASSES);
  private dpr = 1;
  /** The filter mask of the run being drawn, or null. */
  private mask: Uint8Array | null = null;

  resize(ctx: CanvasRenderingContext2D, w: number, h: number): void {
    this.painter.resize(ctx, w, h);
    this.cols = new Float32Array(w * CHANNELS);
  }

  /** Paints one frame into the painter's buffer (not yet presented). */
  draw(f: SpanFrame): void {
    const d = (this.drawn = zeroDrawn());
    this.labels.length = 0;
    this.mergedByClass.fill(0);
    this.dpr = f.dpr;
    const painter = this.painter;
    painter.clear();
    const { dpr, scrollY: sy } = f;
    const Hdev = painter.height;
    for (const h of f.headers) {
      const y0 = Math.round((h.y - sy) * dpr);
      const y1 = Math.round((h.y + h.h - sy) * dpr);
      if (y1 < 0 || y0 > Hdev) continue;
      painter.laneBand(y0, y1);
      painter.hline(y0);
    }
    f.lanes.forEach((lane, li) => {
      const y0 = Math.round((lane.y - sy) * dpr);
      const y1 = Math.round((lane.y + lane.h - sy) * dpr);
      if (y1 < 0 || y0 > Hdev) return;
      if (li % 2 === 1) painter.laneBand(y0, y1);
      for (const row of lane.rows) {
        const ry0 = Math.round((row.y - sy) * dpr) + 1;
        const ry1 = Math.round((row.y + row.h - sy) * dpr) - 1;
        if (ry1 <= 0 || ry0 >= Hdev) continue;
        this.mask = f.filter?.[row.run] ?? null;
        this.drawRow(f.runs[row.run], row, ry0, ry1, f.v0, f.v1);
      }
    });
    for (let c = 0; c < N_CLASSES; c++) d.merged[kindOfClass(c)] += this.mergedByClass[c];
    this.drawMarkers(f);
  }

  private drawRow(run: Run, row: RowLayout, y0: number, y1: number, v0: number, v1: number): void {
    const p = run.prepared;
    const start = run.trace.spans.start;
    const order = p.order;
    const a0 = p.rowOffsets[row.r];
    const b0 = p.rowOffsets[row.r + 1];
    if (a0 === b0) return;
    const t0 = v0 + run.offsetUs;
    const t1 = v1 + run.offsetUs;
    const W = this.painter.width;
    const k = W / (t1 - t0);
    const [a, b] = visibleSpan(a0, b0, (q) => start[order[q]], p.maxEnd, t0, t1);
    if (a >= b) return;
    const py = p.pyramids[row.r];
    let level = -1;
    if (py && !this.mask && b - a > PYRAMID_SPANS_PER_PX * W) {
      const pxDur = 1 / k;
      level = Math.floor(Math.log2(pxDur / 2 / py.width0));
      if (level >= py.levels.length) level = py.levels.length - 1;
    }
    if (level >= 0 && py) this.binPyramid(py, level, t0, t1, k);
    else this.binSpans(run, a, b, t0, k);
    this.fillColumns(y0, y1);
    this.drawWideSpans(run, row, y0, y1, t0, k);
  }

  /** Bins the pyramid buckets of one level that the view covers into the pixel columns. */
  private binPyramid(py: Pyramid, level: number, t0: number, t1: number, k: number): void {
    const cols = this.cols;
    const W = this.painter.width;
    const d = this.drawn;
    let minX = W;
    let maxX = -1;
    d.pyramidRows++;
    const L = py.levels[level];
    const bw = py.width0 * 2 ** level;
    const nb = L.cls.length;
    const bA = Math.max(0, Math.floor((t0 - py.t0) / bw));
    const bB = Math.min(nb, Math.ceil((t1 - py.t0) / bw));
    const bwPx = bw * k;
    for (let q = bA; q < bB; q++) {
      const c = L.cls[q];
      if (c === EMPTY) continue;
      const xs = (py.t0 + q * bw - t0) * k;
      let col = Math.floor(xs + bwPx / 2);
      if (col < 0) col = 0;
      else if (col >= W) col = W - 1;
      const cov = (L.cov[q] / 255) * bwPx;
      let base = c & CLASS_MASK;
      if (base === C_OP_ALT) base = C_OP;
      const o = col * CHANNELS;
      cols[o + base] += cov;
      if (c & M_EMULATED) cols[o + N_CLASSES] += cov;
      if (c & M_PREDICTED) cols[o + N_CLASSES + 1] += cov;
      if (col < minX) minX = col;
      if (col > maxX) maxX = col;
      d.buckets++;
    }
    const bins = this.rowBins;
    bins.minX = minX;
    bins.maxX = maxX;
    bins.nWide = 0;
  }

  /**
   * Bins the row's visible spans `order[a..b)` into the pixel columns, and sets aside in
   * `this.wide` those wide enough to be drawn one by one.
   */
  private binSpans(run: Run, a: number, b: number, t0: number, k: number): void {
    const p = run.prepared;
    const sp = run.trace.spans;
    const start = sp.start;
    const dur = sp.dur;
    const order = p.order;
    const cls = p.cls;
    const cols = this.cols;
    const W = this.painter.width;
    let minX = W;
    let maxX = -1;
    let nWide = 0;
    this.drawn.rawRows++;
    if (this.wide.length < b - a) this.wide = new Int32Array(Math.max(b - a, this.wide.length * 2));
    const wide = this.wide;
    const merged = this.mergedByClass;
    const mask = this.mask;
    for (let q = a; q < b; q++) {
      const i = order[q];
      const x0 = (start[i] - t0) * k;
      const w = dur[i] * k;
      if (w >= WIDE_PX) {
        wide[nWide++] = i;
        continue;
      }
      let col = Math.floor(x0 + w / 2);
      if (col < 0) col = 0;
      else if (col >= W) col = W - 1;
      const c = cls[i];
      let base = c & CLASS_MASK;
      if (base === C_OP_ALT) base = C_OP;
      const o = col * CHANNELS;
      let cov = w > 0.08 ? w : 0.08;
      if (mask && mask[i] === 0) cov *= DIM_COVERAGE;
      cols[o + base] += cov;
      if (c & M_EMULATED) cols[o + N_CLASSES] += cov;
      if (c & M_PREDICTED) cols[o + N_CLASSES + 1] += cov;
      if (col < minX) minX = col;
      if (col > maxX) maxX = col;
      merged[base]++;
    }
    const bins = this.rowBins;
    bins.minX = minX;
    bins.maxX = maxX;
    bins.nWide = nWide;
  }

  /** Paints the columns binned for one row and clears them for the next. */
  private fillColumns(y0: number, y1: number): void {
    // Resolve the merged columns: the class covering most of each column, drawn at an
    // opacity that says how much of the column is covered; runs of equal columns are one fill.
    const cols = this.cols;
    const d = this.drawn;
    const { minX, maxX } = this.rowBins;
    let runStart = -1;
    let runCls = -1;
    let runAlpha = 0;
    const painter = this.painter;
    for (let x = minX; x <= maxX + 1; x++) {
      let c = -1;
      let alpha = 0;
      if (x <= maxX) {
        const o = x * CHANNELS;
        let best = -1;
        let bestW = 0;
        let total = 0;
        for (let j = 0; j < N_CLASSES; j++) {
          const w = cols[o + j];
          if (w > 0) {
            total += w;
            if (w > bestW) {
              bestW = w;
              best = j;
            }
            cols[o + j] = 0;
          }
        }
        if (best >= 0) {
          c = best;
          if (cols[o + N_CLASSES] * 2 >= total) c |= M_EMULATED;
          if (cols[o + N_CLASSES + 1] * 2 >= total) c |= M_PREDICTED;
          alpha = Math.max(1, Math.min(ALPHA_LEVELS, Math.ceil(total * ALPHA_LEVELS)));
          d.columns++;
        }
        cols[o + N_CLASSES] = 0;
        cols[o + N_CLASSES + 1] = 0;
      }
      if (c !== runCls || alpha !== runAlpha) {
        if (runCls >= 0) painter.fill(runStart, x, y0, y1, runCls, runAlpha);
        runStart = x;
        runCls = c;
        runAlpha = alpha;
      }
    }
  }

  /** Draws the wide spans {@link binSpans} set aside for one row, and queues their labels. */
  private drawWideSpans(run: Run, row: RowLayout, y0: number, y1: number, t0: number, k: number): void {
    const sp = run.trace.spans;
    const start = sp.start;
    const dur = sp.dur;
    const cls = run.prepared.cls;
    const W = this.painter.width;
    const d = this.drawn;
    const painter = this.painter;
    const nWide = this.rowBins.nWide;
    // Spans wide enough to see, over the merged columns.
    const dpr = this.dpr;
    const labelMin = LABEL_MIN_PX * dpr;
    const mask = this.mask;
    for (let j = 0; j < nWide; j++) {
      const i = this.wide[j];
      const x0 = (start[i] - t0) * k;
      const x1 = x0 + dur[i] * k;
      const c = cls[i];
      const dim = mask !== null && mask[i] === 0;
      painter.fill(Math.round(x0), Math.max(Math.round(x0) + 1, Math.round(x1)), y0, y1, c, dim ? DIM_ALPHA : ALPHA_LEVELS, !dim);
      d.rects[kindOfClass(c)]++;
      if (!dim && x1 - x0 >= labelMin && y1 - y0 >= 10 * dpr && this.labels.length < MAX_LABELS) {
        this.labels.push({ run: row.run, span: i, x0: Math.max(0, x0) / dpr, x1: Math.min(W, x1) / dpr, y: y0 / dpr, h: (y1 - y0) / dpr });
      }
    }
  }

  /**
   * Step boundaries and collective markers, as pixels: at a zoomed-out view there are
   * thousands, and vector paths (dashed ones above all) cost far more to rasterise in
   * software than the few pixels each covers.
   */
  private drawMarkers(f: SpanFrame): void {
    const painter = this.painter;
    const { dpr, x, scrollY: sy, v0, v1 } = f;
    const d = this.drawn;
    const H = painter.height;
    f.runs.forEach((run, ri) => {
      const rows = f.rows.filter((r) => r.run === ri);
      if (rows.length === 0) return;
      const top = Math.max(0, (rows[0].y - sy) * dpr);
      const bottom = Math.min(H, (rows[rows.length - 1].y + rows[rows.length - 1].h - sy) * dpr);
      if (bottom <= top) return;
      // Step boundaries: a faint dashed line at each step start, at most one per 3 px.
      const steps = run.trace.steps;
      let lastX = -Infinity;
      for (const s of steps) {
        const sx = x(s.startUs - run.offsetUs) * dpr;
        if (sx < 0 || sx >= painter.width || sx - lastX < 3 * dpr) continue;
        lastX = sx;
        painter.vline(sx, top, bottom, false, 2 * dpr);
        d.steps++;
      }
      // Collectives: a diamond where each participant's part ends and a dashed line where
      // the last one finishes (everyone is released there); one group per 4 px at most.
      const g = run.prepared.collectives;
      const n = g.offsets.length - 1;
      if (n <= 0) return;
      const sp = run.trace.spans;
      const off = run.offsetUs;
      const [a, b] = visibleSpan(0, n, (q) => g.index.start[q], g.index.maxEnd, v0 + off, v1 + off);
      const r = Math.round(3 * dpr);
      lastX = -Infinity;
      for (let q = a; q < b; q++) {
        const gx = x(g.end[q] - off) * dpr;
        if (gx - lastX < 4 * dpr) continue;
        lastX = gx;
        let gtop = Infinity;
        let gbottom = -Infinity;
        for (let m = g.offsets[q]; m < g.offsets[q + 1]; m++) {
          const i = g.members[m];
          const row = rowOf(f.rows, ri, sp.lane[i], ROW_COMM);
          if (!row) continue;
          const yc = (row.y + row.h / 2 - sy) * dpr;
          gtop = Math.min(gtop, yc);
          gbottom = Math.max(gbottom, yc);
          painter.diamond(x(sp.start[i] + sp.dur[i] - off) * dpr, yc, r);
        }
        if (gbottom > gtop) painter.vline(gx, gtop, gbottom, true, 3 * dpr);
        d.collectives++;
      }
    });
  }
}
