/**
 * The timeline: lanes of spans on a canvas, a d3 time axis, d3-zoom for wheel / trackpad /
 * drag / W-A-S-D navigation, d3-brush on the axis to select a range, flows between lanes,
 * collective markers, hover tooltips and keyboard navigation.
 *
 * Drawing is two canvases: `spans` is painted as pixels (painter.ts) from a per-row
 * level-of-detail pass — spans at least WIDE_PX wide are drawn as rectangles, thinner ones
 * are merged into per-pixel columns coloured by the class covering most of the column, and
 * rows with very many spans in view read pre-aggregated pyramid buckets instead of spans
 * (model.ts). So a frame costs in proportion to the pixels on screen, not to the trace.
 * `overlay` holds what is drawn with vector calls: labels, flows, collective markers, step
 * boundaries, selection, highlight and hover outlines.
 *
 * Time on screen is "view time": trace time minus the run's offset (0 for a single run; the
 * first step start of each run when comparing two).
 */
import { select, type Selection } from 'd3-selection';
import { zoom as d3zoom, zoomIdentity, type ZoomBehavior, type ZoomTransform, type D3ZoomEvent } from 'd3-zoom';
import { scaleLinear, type ScaleLinear } from 'd3-scale';
import { axisTop } from 'd3-axis';
import { brushX, type BrushBehavior, type D3BrushEvent } from 'd3-brush';
import 'd3-transition';
import { COMM_OPS, IDLE_CAUSES, PHASES, SPAN_KINDS, SpanFlag } from '../../src/profiler/trace-format';
import type { Run } from './data';
import { axisUnit, displayText, formatAxisTick, formatBytes, formatUs } from './format';
import {
  CHANNELS,
  CLASS_MASK,
  C_COMM,
  C_COMPUTE,
  C_OP,
  C_OP_ALT,
  C_STAGING,
  EMPTY,
  M_EMULATED,
  M_PREDICTED,
  N_CLASSES,
  ROWS_PER_LANE,
  ROW_COMM,
  ROW_OPS,
  ROW_STATE,
  rowKindOf,
  visibleSpan,
  type Pyramid,
} from './model';
import { ALPHA_LEVELS, Painter } from './painter';
import type { Palette } from './theme';
import type { KindCounts, ViewStats } from './hook-api';

/** Spans at least this many device pixels wide are drawn one by one. */
const WIDE_PX = 1.5;
/** Rows with more spans in view than this many per pixel column read the pyramid. */
const PYRAMID_SPANS_PER_PX = 4;
/** Labels are drawn inside spans at least this wide (CSS px). */
const LABEL_MIN_PX = 36;
const MAX_LABELS = 400;
const MAX_FLOWS = 1000;
/** Narrowest view, µs across the whole width. */
const MIN_VIEW_US = 1;

const AXIS_H = 28;
const RUN_HEADER_H = 22;
const GROUP_HEADER_H = 18;
const ROW_H = [22, 14, 16];
const LANE_MIN_H = 32;
const LANE_GAP = 6;

export interface RowLayout {
  run: number;
  lane: number;
  kind: number;
  /** Row index in the run's prepared model (lane * 3 + kind). */
  r: number;
  y: number;
  h: number;
  label: string;
}

export interface LaneLayout {
  run: number;
  lane: number;
  y: number;
  h: number;
  rows: RowLayout[];
  el: HTMLElement;
}

interface Header {
  kind: 'run' | 'group';
  run: number;
  text: string;
  y: number;
  h: number;
}

export interface SpanRef {
  run: number;
  span: number;
}

export interface TimelineCallbacks {
  onSelectRange(range: { v0: number; v1: number } | null): void;
  onOpenSource(ref: SpanRef): void;
  onView(): void;
}

function zeroCounts(): KindCounts {
  return { compute: 0, comm: 0, idle: 0, op: 0 };
}

function kindOfClass(c: number): keyof KindCounts {
  const b = c & CLASS_MASK;
  if (b === C_COMPUTE) return 'compute';
  if (b === C_OP || b === C_OP_ALT) return 'op';
  if (b === C_COMM || b === C_STAGING) return 'comm';
  return 'idle';
}

function el<K extends keyof HTMLElementTagNameMap>(tag: K, cls: string, text?: string): HTMLElementTagNameMap[K] {
  const e = document.createElement(tag);
  if (cls) e.className = cls;
  if (text !== undefined) e.textContent = text;
  return e;
}

export class Timeline {
  readonly root: HTMLElement;
  private readonly cb: TimelineCallbacks;
  private readonly gutterInner: HTMLElement;
  private readonly gutterLanes: HTMLElement;
  private readonly wrap: HTMLElement;
  private readonly spansCanvas: HTMLCanvasElement;
  private readonly overlayCanvas: HTMLCanvasElement;
  private readonly spansCtx: CanvasRenderingContext2D;
  private readonly overlayCtx: CanvasRenderingContext2D;
  private readonly tooltip: HTMLElement;
  private readonly axisSvg: Selection<SVGSVGElement, unknown, null, undefined>;
  private readonly axisG: Selection<SVGGElement, unknown, null, undefined>;
  private readonly brushG: Selection<SVGGElement, unknown, null, undefined>;
  private readonly wrapSel: Selection<HTMLElement, unknown, null, undefined>;
  private readonly zoom: ZoomBehavior<HTMLElement, unknown>;
  private readonly brush: BrushBehavior<unknown>;
  private readonly painter = new Painter();
  private palette: Palette | null = null;
  private font = '11px sans-serif';

  runs: Run[] = [];
  lanes: LaneLayout[] = [];
  rows: RowLayout[] = [];
  private headers: Header[] = [];
  private contentH = 0;
  private scrollY = 0;
  private width = 300;
  private height = 150;
  private dpr = 1;
  private xBase: ScaleLinear<number, number> = scaleLinear().domain([0, 1]).range([0, 300]);
  private transform: ZoomTransform = zoomIdentity;
  private scheduled = false;
  private waiters: (() => void)[] = [];
  private cols = new Float32Array(0);
  private wide = new Int32Array(1024);
  /**
   * What binning one row left for the passes after it: the pixel columns it touched and how
   * many of `wide` it filled. One object reused for every row, so a frame allocates nothing per row.
   */
  private readonly rowBins = { minX: 0, maxX: -1, nWide: 0 };
  private labels: { run: number; span: number; x0: number; x1: number; y: number; h: number }[] = [];
  private nameCache: Map<number, string>[] = [];
  private pointer: { x: number; y: number } | null = null;
  private brushing = false;

  selection: { v0: number; v1: number } | null = null;
  highlight: { lanes: Set<string>; v0: number; v1: number } | null = null;
  hover: SpanRef | null = null;
  selected: SpanRef | null = null;
  private focusLane = 0;
  private reducedMotion = false;

  /** Frame statistics for the test hook and the benchmark. */
  frameCount = 0;
  frameMs: number[] = [];
  private drawn = {
    rects: zeroCounts(),
    merged: zeroCounts(),
    columns: 0,
    buckets: 0,
    pyramidRows: 0,
    rawRows: 0,
    flows: 0,
    collectives: 0,
    labels: 0,
    steps: 0,
  };
  /** Spans merged into pixel columns this frame, by class (folded into `drawn.merged`). */
  private mergedByClass = new Int32Array(N_CLASSES);
  private axisTicks: string[] = [];
  /** Where the last frame's time went, ms. */
  private phaseMs = { spans: 0, present: 0, overlay: 0, axis: 0 };
  private axisUnitName = 'µs';

  constructor(root: HTMLElement, cb: TimelineCallbacks) {
    this.root = root;
    this.cb = cb;
    root.classList.add('px-timeline');
    const help = el(
      'p',
      'px-visually-hidden',
      'Timeline. W and S zoom, A and D pan, drag to pan, wheel to zoom, shift+wheel to scroll lanes. Drag on the time axis to select a range. Arrow keys on a lane move between spans; Enter zooms to the selected span; 0 resets the zoom; Escape clears.',
    );
    help.id = 'px-timeline-help';
    const gutter = el('div', 'px-gutter');
    const gutterAxis = el('div', 'px-gutter-axis', 'device / row');
    this.gutterLanes = el('div', 'px-gutter-lanes');
    this.gutterLanes.setAttribute('role', 'list');
    this.gutterLanes.setAttribute('aria-label', 'Lanes');
    this.gutterInner = el('div', 'px-gutter-inner');
    this.gutterLanes.append(this.gutterInner);
    gutter.append(gutterAxis, this.gutterLanes);
    const tracks = el('div', 'px-tracks');
    this.wrap = el('div', 'px-canvas-wrap');
    this.wrap.tabIndex = 0;
    this.wrap.setAttribute('role', 'application');
    this.wrap.setAttribute('aria-roledescription', 'timeline');
    this.wrap.setAttribute('aria-describedby', help.id);
    this.spansCanvas = el('canvas', 'px-spans');
    this.overlayCanvas = el('canvas', 'px-overlay');
    this.tooltip = el('div', 'px-tooltip');
    this.tooltip.setAttribute('role', 'tooltip');
    this.tooltip.id = 'px-tooltip';
    this.tooltip.hidden = true;
    this.wrap.append(this.spansCanvas, this.overlayCanvas, this.tooltip);
    const svg = document.createElementNS('http://www.w3.org/2000/svg', 'svg');
    svg.setAttribute('class', 'px-axis');
    svg.setAttribute('height', String(AXIS_H));
    svg.setAttribute('aria-label', 'Time axis; drag to select a range');
    tracks.append(svg, this.wrap);
    root.append(help, gutter, tracks);

    this.spansCtx = this.spansCanvas.getContext('2d', { alpha: false })!;
    this.overlayCtx = this.overlayCanvas.getContext('2d')!;
    this.axisSvg = select(svg);
    this.axisG = this.axisSvg.append('g').attr('class', 'px-axis-g').attr('transform', `translate(0,${AXIS_H - 1})`);
    this.brushG = this.axisSvg.append('g').attr('class', 'px-brush');
    this.reducedMotion = matchMedia('(prefers-reduced-motion: reduce)').matches;

    this.zoom = d3zoom<HTMLElement, unknown>()
      .filter((event: Event) => {
        if (event.type === 'wheel') {
          const w = event as WheelEvent;
          // Horizontal swipes pan and shift+wheel scrolls lanes; both are handled in onWheel.
          return !(w.shiftKey || Math.abs(w.deltaX) > Math.abs(w.deltaY));
        }
        const m = event as MouseEvent;
        return !m.ctrlKey && !m.button;
      })
      .on('start', () => this.hideTooltip())
      .on('zoom', (e: D3ZoomEvent<HTMLElement, unknown>) => {
        this.transform = e.transform;
        this.syncBrush();
        this.requestDraw();
        this.cb.onView();
      });
    this.wrapSel = select<HTMLElement, unknown>(this.wrap);
    this.wrapSel.call(this.zoom).on('dblclick.zoom', null);

    this.brush = brushX<unknown>()
      .on('start', () => {
        this.brushing = true;
      })
      .on('brush end', (e: D3BrushEvent<unknown>) => {
        if (e.type === 'end') this.brushing = false;
        if (!e.sourceEvent) return; // moved by syncBrush, not by the user
        const s = e.selection as [number, number] | null;
        if (!s || s[1] - s[0] < 1) {
          this.selection = null;
        } else {
          const x = this.x();
          this.selection = { v0: x.invert(s[0]), v1: x.invert(s[1]) };
        }
        this.requestDraw();
        if (e.type === 'end' || this.selection) this.cb.onSelectRange(this.selection);
      });
    this.brushG.call(this.brush);

    this.wrap.addEventListener('wheel', (e) => this.onWheel(e), { passive: false });
    this.wrap.addEventListener('pointermove', (e) => this.onPointerMove(e));
    this.wrap.addEventListener('pointerleave', () => {
      this.pointer = null;
      if (this.hover) {
        this.hover = null;
        this.requestDraw();
      }
      if (!this.selected) this.hideTooltip();
    });
    this.wrap.addEventListener('click', (e) => this.onClick(e));
    this.wrap.addEventListener('dblclick', (e) => {
      const hit = this.hitTest(e.offsetX, e.offsetY);
      if (hit) this.cb.onOpenSource(hit);
    });
    this.wrap.addEventListener('keydown', (e) => this.onCanvasKey(e));
    document.addEventListener('keydown', (e) => this.onGlobalKey(e));

    new ResizeObserver(() => this.resize()).observe(this.wrap);
    this.resize();
  }

  // ---------------------------------------------------------------------------------------
  // Data and layout

  setPalette(p: Palette): void {
    this.palette = p;
    this.painter.setPalette(p);
    const family = getComputedStyle(document.documentElement).getPropertyValue('--px-font').trim() || 'sans-serif';
    this.font = `11px ${family}`;
    this.requestDraw();
  }

  setRuns(runs: Run[]): void {
    this.runs = runs;
    this.nameCache = runs.map(() => new Map());
    this.selection = null;
    this.highlight = null;
    this.hover = null;
    this.selected = null;
    this.scrollY = 0;
    this.focusLane = 0;
    this.buildLayout();
    let lo = Infinity;
    let hi = -Infinity;
    for (const r of runs) {
      const [a, b] = r.prepared.extent;
      if (r.trace.spans.count === 0 && r.trace.steps.length === 0) continue;
      lo = Math.min(lo, a - r.offsetUs, ...r.trace.steps.slice(0, 1).map((s) => s.startUs - r.offsetUs));
      hi = Math.max(hi, b - r.offsetUs);
    }
    if (!Number.isFinite(lo) || !Number.isFinite(hi)) {
      lo = 0;
      hi = 1000;
    }
    if (hi - lo < MIN_VIEW_US) hi = lo + MIN_VIEW_US;
    const pad = (hi - lo) * 0.01;
    this.xBase = scaleLinear().domain([lo - pad, hi + pad]).range([0, this.width]);
    this.configureZoom();
    this.wrapSel.call(this.zoom.transform, zoomIdentity);
    this.brushG.call(this.brush.move, null);
    this.requestDraw();
  }

  private configureZoom(): void {
    const [d0, d1] = this.xBase.domain();
    this.zoom
      .extent([
        [0, 0],
        [this.width, this.height],
      ])
      .scaleExtent([1, Math.max(1, (d1 - d0) / MIN_VIEW_US)])
      .translateExtent([
        [0, -1e9],
        [this.width, 1e9],
      ]);
    this.brush.extent([
      [0, 0],
      [this.width, AXIS_H],
    ]);
    this.brushG.call(this.brush);
  }

  private buildLayout(): void {
    this.lanes = [];
    this.rows = [];
    this.headers = [];
    this.gutterInner.replaceChildren();
    const compare = this.runs.length > 1;
    let y = 0;
    this.runs.forEach((run, ri) => {
      if (compare) {
        const letter = String.fromCharCode(65 + ri);
        const text = `${letter} · ${displayText(run.title, 120)}${run.predicted ? ' · predicted' : ''}`;
        this.headers.push({ kind: 'run', run: ri, text, y, h: RUN_HEADER_H });
        const h = el('div', 'px-run-header');
        h.style.top = `${y}px`;
        h.style.height = `${RUN_HEADER_H}px`;
        h.append(el('span', 'px-run-letter', letter), el('span', 'px-label-text', displayText(run.title, 120)));
        if (run.predicted) h.append(el('span', 'px-badge px-badge-predicted', 'predicted'));
        this.gutterInner.append(h);
        y += RUN_HEADER_H;
      }
      const t = run.trace;
      const groups = new Map<string, number[]>();
      t.lanes.forEach((lane, li) => {
        let g = groups.get(lane.group);
        if (!g) groups.set(lane.group, (g = []));
        g.push(li);
      });
      const p = run.prepared;
      for (const [group, laneIdx] of groups) {
        this.headers.push({ kind: 'group', run: ri, text: group, y, h: GROUP_HEADER_H });
        const gh = el('div', 'px-group-header');
        gh.style.top = `${y}px`;
        gh.style.height = `${GROUP_HEADER_H}px`;
        gh.append(el('span', 'px-label-text', displayText(group, 120)));
        gh.title = `physical unit: ${displayText(group, 500)}`;
        this.gutterInner.append(gh);
        y += GROUP_HEADER_H;
        for (const li of laneIdx) {
          const lane = t.lanes[li];
          const dev = t.meta.devices[lane.device];
          const rows: RowLayout[] = [];
          let ry = y;
          for (let kind = 0; kind < ROWS_PER_LANE; kind++) {
            const r = li * ROWS_PER_LANE + kind;
            const n = p.rowOffsets[r + 1] - p.rowOffsets[r];
            if (kind !== ROW_STATE && n === 0) continue;
            let label = kind === ROW_STATE ? 'compute' : kind === ROW_OPS ? 'ops' : 'comm';
            if (kind === ROW_STATE && p.rowStageMin[r] >= 0) {
              label = p.rowStageMin[r] === p.rowStageMax[r] ? `stage ${p.rowStageMin[r]}` : `stages ${p.rowStageMin[r]}–${p.rowStageMax[r]}`;
            }
            rows.push({ run: ri, lane: li, kind, r, y: ry, h: ROW_H[kind], label });
            ry += ROW_H[kind];
          }
          const h = Math.max(LANE_MIN_H, ry - y);
          const laneEl = el('div', 'px-lane');
          laneEl.setAttribute('role', 'listitem');
          laneEl.tabIndex = this.lanes.length === 0 ? 0 : -1;
          laneEl.style.top = `${y}px`;
          laneEl.style.height = `${h}px`;
          const labelText = displayText(lane.label, 200);
          const name = el('span', 'px-label-text px-lane-label', labelText);
          name.dir = 'auto';
          laneEl.title = displayText(lane.label, 1000);
          const badges = el('span', 'px-badges');
          const badgeWords: string[] = [];
          const badge = (cls: string, text: string, title: string): void => {
            const b = el('span', `px-badge ${cls}`, text);
            b.title = title;
            badges.append(b);
            badgeWords.push(text);
          };
          if (dev?.sharesPhysicalUnit) badge('px-badge-shared', 'shared unit', 'This device shares its physical unit with another device of the run; its time is not that of separate hardware.');
          if (dev?.software) badge('px-badge-software', 'software', 'A software implementation of a GPU API (e.g. Mesa lavapipe), running on the CPU.');
          if (run.predicted) badge('px-badge-predicted', 'predicted', 'Predicted by the projection model, not measured.');
          if (run.emulated) badge('px-badge-emulated', 'emulated link', 'Some communication time is emulated by a link model.');
          const rowLabels = el('span', 'px-row-labels');
          for (const row of rows) {
            const rl = el('span', 'px-row-label', row.label);
            rl.style.top = `${row.y - y}px`;
            rl.style.height = `${row.h}px`;
            rowLabels.append(rl);
          }
          laneEl.append(name, badges, rowLabels);
          laneEl.setAttribute(
            'aria-label',
            `${compare ? `run ${String.fromCharCode(65 + ri)}, ` : ''}${labelText}${badgeWords.length ? `, ${badgeWords.join(', ')}` : ''}; rows: ${rows.map((r) => r.label).join(', ')}`,
          );
          const index = this.lanes.length;
          laneEl.addEventListener('focus', () => {
            this.focusLane = index;
            this.ensureLaneVisible(index);
          });
          laneEl.addEventListener('keydown', (e) => this.onLaneKey(e, index));
          laneEl.addEventListener('click', () => this.toggleLaneHighlight(index));
          this.gutterInner.append(laneEl);
          this.lanes.push({ run: ri, lane: li, y, h, rows, el: laneEl });
          this.rows.push(...rows);
          y += h + LANE_GAP;
        }
      }
    });
    this.contentH = y;
    this.gutterInner.style.height = `${y}px`;
    this.applyScroll();
  }

  // ---------------------------------------------------------------------------------------
  // Geometry

  /** The current view-time → CSS-pixel scale. */
  x(): ScaleLinear<number, number> {
    return this.transform.rescaleX(this.xBase);
  }

  visibleRange(): [number, number] {
    const d = this.x().domain();
    return [d[0], d[1]];
  }

  /** The zoomable extent (all runs, padded), view time. */
  extent(): [number, number] {
    const d = this.xBase.domain();
    return [d[0], d[1]];
  }

  private resize(): void {
    const r = this.wrap.getBoundingClientRect();
    const keep = this.runs.length > 0 ? this.visibleRange() : null;
    this.width = Math.max(50, Math.floor(r.width));
    this.height = Math.max(50, Math.floor(r.height));
    this.dpr = Math.max(1, Math.min(3, window.devicePixelRatio || 1));
    for (const c of [this.spansCanvas, this.overlayCanvas]) {
      c.width = Math.round(this.width * this.dpr);
      c.height = Math.round(this.height * this.dpr);
      c.style.width = `${this.width}px`;
      c.style.height = `${this.height}px`;
    }
    this.axisSvg.attr('width', this.width);
    this.painter.resize(this.spansCtx, this.spansCanvas.width, this.spansCanvas.height);
    this.cols = new Float32Array(this.spansCanvas.width * CHANNELS);
    this.xBase.range([0, this.width]);
    this.configureZoom();
    if (keep) this.setView(keep[0], keep[1], false);
    this.applyScroll();
    this.requestDraw();
  }

  /** Shows view time [v0, v1] (clamped to the extent). */
  setView(v0: number, v1: number, animate = true): void {
    const [d0, d1] = this.xBase.domain();
    let a = Math.max(d0, Math.min(v0, v1));
    let b = Math.min(d1, Math.max(v0, v1));
    if (b - a < MIN_VIEW_US) {
      const c = (a + b) / 2;
      a = Math.max(d0, c - MIN_VIEW_US / 2);
      b = Math.min(d1, a + MIN_VIEW_US);
    }
    const k = (d1 - d0) / (b - a);
    const t = zoomIdentity.translate(-this.xBase(a) * k, 0).scale(k);
    if (animate && !this.reducedMotion) this.wrapSel.transition().duration(250).call(this.zoom.transform, t);
    else this.wrapSel.call(this.zoom.transform, t);
  }

  resetView(): void {
    this.wrapSel.call(this.zoom.transform, zoomIdentity);
  }

  zoomBy(factor: number, atX?: number): void {
    const px = atX ?? this.pointer?.x ?? this.width / 2;
    this.zoom.scaleBy(this.wrapSel, factor, [px, 0]);
  }

  /** Moves the view `dxPx` CSS pixels later in time (negative: earlier). */
  panBy(dxPx: number): void {
    this.zoom.translateBy(this.wrapSel, -dxPx / this.transform.k, 0);
  }

  private scrollBy(dy: number): void {
    this.scrollY += dy;
    this.applyScroll();
    // What is under the pointer changed: hover it afresh.
    this.hover = this.pointer ? this.hitTest(this.pointer.x, this.pointer.y) : null;
    if (this.hover && this.pointer) this.showTooltip(this.hover, this.pointer.x, this.pointer.y);
    else this.hideTooltip();
    this.requestDraw();
  }

  private applyScroll(): void {
    const max = Math.max(0, this.contentH - this.height);
    this.scrollY = Math.max(0, Math.min(max, this.scrollY));
    this.gutterInner.style.transform = `translateY(${-this.scrollY}px)`;
  }

  private ensureLaneVisible(index: number): void {
    const l = this.lanes[index];
    if (!l) return;
    if (l.y < this.scrollY) this.scrollY = l.y - GROUP_HEADER_H;
    else if (l.y + l.h > this.scrollY + this.height) this.scrollY = l.y + l.h - this.height + LANE_GAP;
    this.applyScroll();
    this.requestDraw();
  }

  private syncBrush(): void {
    if (!this.selection) return;
    const x = this.x();
    const a = Math.max(0, x(this.selection.v0));
    const b = Math.min(this.width, x(this.selection.v1));
    this.brushG.call(this.brush.move, b - a >= 1 ? [a, b] : null);
  }

  /** Selects view time [v0, v1] as if brushed (null clears). */
  setSelection(range: { v0: number; v1: number } | null): void {
    this.selection = range;
    if (range) this.syncBrush();
    else this.brushG.call(this.brush.move, null);
    this.requestDraw();
    this.cb.onSelectRange(range);
  }

  rowAt(yCss: number): RowLayout | null {
    const y = yCss + this.scrollY;
    for (const r of this.rows) if (y >= r.y && y < r.y + r.h) return r;
    return null;
  }

  /** The span under a point of the canvas (CSS px), preferring the shortest containing span. */
  hitTest(xCss: number, yCss: number): SpanRef | null {
    const row = this.rowAt(yCss);
    if (!row) return null;
    const run = this.runs[row.run];
    const sp = run.trace.spans;
    const p = run.prepared;
    const x = this.x();
    const t = x.invert(xCss) + run.offsetUs;
    const tol = Math.abs(x.invert(xCss + 3) - x.invert(xCss));
    const a0 = p.rowOffsets[row.r];
    const b0 = p.rowOffsets[row.r + 1];
    const [a, b] = visibleSpan(a0, b0, (q) => sp.start[p.order[q]], p.maxEnd, t - tol, t + tol);
    let best = -1;
    let bestScore = Infinity;
    const limit = Math.min(b, a + 50_000);
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

  /** Centre of a span's visible part in client (page) coordinates, or null when off screen. */
  locate(ref: SpanRef): { x: number; y: number } | null {
    const run = this.runs[ref.run];
    if (!run || ref.span < 0 || ref.span >= run.trace.spans.count) return null;
    const sp = run.trace.spans;
    const lane = sp.lane[ref.span];
    const kind = this.rowKindOfSpan(run, ref.span);
    const row = this.rows.find((r) => r.run === ref.run && r.lane === lane && r.kind === kind);
    if (!row) return null;
    const x = this.x();
    const x0 = Math.max(0, x(sp.start[ref.span] - run.offsetUs));
    const x1 = Math.min(this.width, x(sp.start[ref.span] + sp.dur[ref.span] - run.offsetUs));
    const y = row.y + row.h / 2 - this.scrollY;
    if (x1 < x0 || y < 0 || y > this.height) return null;
    const rect = this.wrap.getBoundingClientRect();
    return { x: rect.left + (x0 + x1) / 2, y: rect.top + y };
  }

  private rowKindOfSpan(run: Run, i: number): number {
    const sp = run.trace.spans;
    return rowKindOf(sp.kind[i], sp.parent[i], sp.flags[i]);
  }

  // ---------------------------------------------------------------------------------------
  // Interaction

  private onWheel(e: WheelEvent): void {
    if (e.shiftKey) {
      e.preventDefault();
      this.scrollBy(e.deltaY || e.deltaX);
    } else if (Math.abs(e.deltaX) > Math.abs(e.deltaY)) {
      e.preventDefault();
      this.panBy(e.deltaX * (e.deltaMode === 1 ? 20 : 1));
    }
  }

  private onPointerMove(e: PointerEvent): void {
    this.pointer = { x: e.offsetX, y: e.offsetY };
    if (e.buttons !== 0 || this.brushing) return;
    const hit = this.hitTest(e.offsetX, e.offsetY);
    const same = hit && this.hover && hit.run === this.hover.run && hit.span === this.hover.span;
    if (!same) {
      this.hover = hit;
      this.requestDraw();
    }
    if (hit) this.showTooltip(hit, e.offsetX, e.offsetY);
    else if (this.selected) this.showSelectedTooltip();
    else this.hideTooltip();
  }

  private onClick(e: MouseEvent): void {
    const hit = this.hitTest(e.offsetX, e.offsetY);
    this.selected = hit;
    if (hit) this.showTooltip(hit, e.offsetX, e.offsetY);
    this.requestDraw();
  }

  private isTyping(e: KeyboardEvent): boolean {
    const t = e.target as HTMLElement | null;
    return !!t && (t.tagName === 'INPUT' || t.tagName === 'TEXTAREA' || t.tagName === 'SELECT' || t.isContentEditable);
  }

  /** Perfetto's navigation keys work wherever focus is, except in text fields. */
  private onGlobalKey(e: KeyboardEvent): void {
    if (e.defaultPrevented || e.ctrlKey || e.metaKey || e.altKey || this.isTyping(e) || this.runs.length === 0) return;
    const k = e.key.toLowerCase();
    if (k === 'w') this.zoomBy(1.25);
    else if (k === 's') this.zoomBy(0.8);
    else if (k === 'a') this.panBy(-this.width * 0.1);
    else if (k === 'd') this.panBy(this.width * 0.1);
    else if (k === '0') this.resetView();
    else if (k === 'f') this.fitSelection();
    else if (k === 'escape') {
      this.selected = null;
      this.highlight = null;
      this.setSelection(null);
      this.hideTooltip();
      for (const l of this.lanes) l.el.classList.remove('px-highlighted');
    } else return;
    e.preventDefault();
  }

  private onCanvasKey(e: KeyboardEvent): void {
    if (e.key === 'ArrowUp' || e.key === 'ArrowDown') {
      e.preventDefault();
      this.lanes[this.focusLane]?.el.focus();
    }
  }

  private onLaneKey(e: KeyboardEvent, index: number): void {
    const move = (to: number): void => {
      const l = this.lanes[Math.max(0, Math.min(this.lanes.length - 1, to))];
      if (!l) return;
      for (const o of this.lanes) o.el.tabIndex = -1;
      l.el.tabIndex = 0;
      l.el.focus();
    };
    switch (e.key) {
      case 'ArrowUp':
        move(index - 1);
        break;
      case 'ArrowDown':
        move(index + 1);
        break;
      case 'Home':
        move(0);
        break;
      case 'End':
        move(this.lanes.length - 1);
        break;
      case 'ArrowLeft':
      case 'ArrowRight':
        this.stepSpan(index, e.key === 'ArrowRight' ? 1 : -1);
        break;
      case 'Enter':
        if (this.selected) {
          if (e.shiftKey) this.cb.onOpenSource(this.selected);
          else this.fitSpan(this.selected);
        } else this.toggleLaneHighlight(index);
        break;
      default:
        return;
    }
    e.preventDefault();
  }

  /** Moves the keyboard selection to the next/previous span of a lane's state row. */
  private stepSpan(index: number, dir: 1 | -1): void {
    const lane = this.lanes[index];
    if (!lane) return;
    const run = this.runs[lane.run];
    const p = run.prepared;
    const sp = run.trace.spans;
    const r = lane.lane * ROWS_PER_LANE + ROW_STATE;
    const a = p.rowOffsets[r];
    const b = p.rowOffsets[r + 1];
    if (a === b) return;
    let pos = -1;
    if (this.selected && this.selected.run === lane.run && sp.lane[this.selected.span] === lane.lane) {
      for (let q = a; q < b; q++) if (p.order[q] === this.selected.span) pos = q;
    }
    if (pos < 0) {
      const [v0, v1] = this.visibleRange();
      const mid = (v0 + v1) / 2 + run.offsetUs;
      pos = visibleSpan(a, b, (q) => sp.start[p.order[q]], p.maxEnd, mid, mid)[0];
      pos = Math.min(b - 1, Math.max(a, dir > 0 ? pos : pos - 1));
    } else {
      pos = Math.min(b - 1, Math.max(a, pos + dir));
    }
    const i = p.order[pos];
    this.selected = { run: lane.run, span: i };
    const [v0, v1] = this.visibleRange();
    const s = sp.start[i] - run.offsetUs;
    const e2 = s + sp.dur[i];
    if (e2 < v0 || s > v1) {
      const w = v1 - v0;
      this.setView(s + sp.dur[i] / 2 - w / 2, s + sp.dur[i] / 2 + w / 2, false);
    }
    this.requestDraw();
    this.whenDrawn().then(() => this.showSelectedTooltip());
  }

  private fitSpan(ref: SpanRef): void {
    const run = this.runs[ref.run];
    const sp = run.trace.spans;
    const s = sp.start[ref.span] - run.offsetUs;
    const d = Math.max(sp.dur[ref.span], MIN_VIEW_US);
    this.setView(s - d * 0.1, s + d * 1.1);
  }

  private fitSelection(): void {
    if (this.selection) this.setView(this.selection.v0, this.selection.v1);
    else if (this.selected) this.fitSpan(this.selected);
  }

  private toggleLaneHighlight(index: number): void {
    const l = this.lanes[index];
    if (!l) return;
    const key = `${l.run}:${l.lane}`;
    if (this.highlight && this.highlight.lanes.size === 1 && this.highlight.lanes.has(key)) this.setHighlight(null);
    else {
      const [v0, v1] = this.visibleRange();
      this.setHighlight({ lanes: new Set([key]), v0, v1 });
    }
  }

  setHighlight(h: { lanes: Set<string>; v0: number; v1: number } | null): void {
    this.highlight = h;
    for (const l of this.lanes) l.el.classList.toggle('px-highlighted', !!h && h.lanes.has(`${l.run}:${l.lane}`));
    this.requestDraw();
  }

  // ---------------------------------------------------------------------------------------
  // Tooltip

  private hideTooltip(): void {
    this.tooltip.hidden = true;
    this.wrap.removeAttribute('aria-describedby');
    this.wrap.setAttribute('aria-describedby', 'px-timeline-help');
  }

  private showSelectedTooltip(): void {
    if (!this.selected) return;
    const loc = this.locate(this.selected);
    if (!loc) return this.hideTooltip();
    const rect = this.wrap.getBoundingClientRect();
    this.showTooltip(this.selected, loc.x - rect.left, loc.y - rect.top);
  }

  private displayName(run: number, nameIdx: number): string {
    const cache = this.nameCache[run];
    let s = cache.get(nameIdx);
    if (s === undefined) {
      s = displayText(this.runs[run].trace.strings[nameIdx] ?? '');
      cache.set(nameIdx, s);
    }
    return s;
  }

  private showTooltip(ref: SpanRef, xCss: number, yCss: number): void {
    const run = this.runs[ref.run];
    const t = run.trace;
    const sp = t.spans;
    const i = ref.span;
    const title = el('div', 'px-tt-title', this.displayName(ref.run, sp.name[i]));
    title.dir = 'auto';
    const dl = el('dl', 'px-tt-fields');
    const add = (k: string, v: string): void => {
      const dd = el('dd', '', v);
      dd.dir = 'auto';
      dl.append(el('dt', '', k), dd);
    };
    const kind = SPAN_KINDS[sp.kind[i]] ?? 'compute';
    const isOp = sp.parent[i] >= 0 || (sp.flags[i] & SpanFlag.op) !== 0;
    add('kind', kind === 'idle' ? `idle (${IDLE_CAUSES[sp.cause[i]] ?? 'other'})` : isOp ? 'operator' : kind);
    if (sp.comm[i] !== 0) add('operation', COMM_OPS[sp.comm[i]] ?? '?');
    if (sp.phase[i] !== 0) add('phase', PHASES[sp.phase[i]] ?? '?');
    if (sp.opType[i] >= 0) add('op type', this.displayName(ref.run, sp.opType[i]));
    const lane = t.lanes[sp.lane[i]];
    add('device', displayText(lane?.label ?? String(sp.lane[i]), 200));
    if (this.runs.length > 1) add('run', `${String.fromCharCode(65 + ref.run)} · ${displayText(run.title, 80)}`);
    add('start', formatUs(sp.start[i] - run.offsetUs, 6));
    add('duration', formatUs(sp.dur[i], 4));
    if (sp.step[i] >= 0) add('step', String(sp.step[i]));
    if (sp.micro[i] >= 0) add('micro-batch', String(sp.micro[i]));
    if (sp.stage[i] >= 0) add('stage', String(sp.stage[i]));
    if (sp.bytes[i] > 0) add('bytes', `${formatBytes(sp.bytes[i])} (${sp.bytes[i].toLocaleString('en-US')} B)`);
    if (sp.peer[i] >= 0) add('peer', displayText(t.lanes[sp.peer[i]]?.label ?? String(sp.peer[i]), 200));
    const flags: string[] = [];
    if (sp.flags[i] & SpanFlag.emulated) flags.push('emulated');
    if ((sp.flags[i] & SpanFlag.predicted) || run.predicted) flags.push('predicted');
    if (sp.flags[i] & SpanFlag.staging) flags.push('staging copy');
    if (sp.flags[i] & SpanFlag.synthetic) flags.push('synthetic data');
    if (flags.length) add('note', flags.join(', '));
    this.tooltip.replaceChildren(title, dl);
    this.tooltip.hidden = false;
    this.wrap.setAttribute('aria-describedby', 'px-tooltip');
    // Keep the tooltip inside the canvas area.
    const tw = this.tooltip.offsetWidth;
    const th = this.tooltip.offsetHeight;
    let left = xCss + 14;
    let top = yCss + 14;
    if (left + tw > this.width) left = Math.max(0, xCss - tw - 14);
    if (top + th > this.height) top = Math.max(0, yCss - th - 14);
    this.tooltip.style.left = `${left}px`;
    this.tooltip.style.top = `${top}px`;
  }

  // ---------------------------------------------------------------------------------------
  // Drawing

  requestDraw(): void {
    if (this.scheduled) return;
    this.scheduled = true;
    requestAnimationFrame(() => {
      this.scheduled = false;
      this.draw();
      const w = this.waiters;
      this.waiters = [];
      for (const f of w) f();
    });
  }

  /** Resolves after the next frame is drawn. */
  whenDrawn(): Promise<void> {
    return new Promise((resolve) => {
      this.waiters.push(resolve);
      this.requestDraw();
    });
  }

  draw(): void {
    if (!this.palette) return;
    const t0 = performance.now();
    const d = this.drawn;
    d.rects = zeroCounts();
    d.merged = zeroCounts();
    d.columns = d.buckets = d.pyramidRows = d.rawRows = d.flows = d.collectives = d.labels = d.steps = 0;
    this.labels.length = 0;
    this.mergedByClass.fill(0);
    const painter = this.painter;
    painter.clear();
    const dpr = this.dpr;
    const [v0, v1] = this.visibleRange();
    const sy = this.scrollY;
    const Hdev = painter.height;
    for (const h of this.headers) {
      const y0 = Math.round((h.y - sy) * dpr);
      const y1 = Math.round((h.y + h.h - sy) * dpr);
      if (y1 < 0 || y0 > Hdev) continue;
      painter.laneBand(y0, y1);
      painter.hline(y0);
    }
    this.lanes.forEach((lane, li) => {
      const y0 = Math.round((lane.y - sy) * dpr);
      const y1 = Math.round((lane.y + lane.h - sy) * dpr);
      if (y1 < 0 || y0 > Hdev) return;
      if (li % 2 === 1) painter.laneBand(y0, y1);
      for (const row of lane.rows) {
        const ry0 = Math.round((row.y - sy) * dpr) + 1;
        const ry1 = Math.round((row.y + row.h - sy) * dpr) - 1;
        if (ry1 <= 0 || ry0 >= Hdev) continue;
        this.drawRow(row, ry0, ry1, v0, v1);
      }
    });
    for (let c = 0; c < N_CLASSES; c++) d.merged[kindOfClass(c)] += this.mergedByClass[c];
    this.drawMarkers(v0, v1);
    const t1 = performance.now();
    painter.present(this.spansCtx);
    const t2 = performance.now();
    this.drawOverlay(v0, v1);
    const t3 = performance.now();
    this.drawAxis(v0, v1);
    const ms = performance.now() - t0;
    this.phaseMs = { spans: t1 - t0, present: t2 - t1, overlay: t3 - t2, axis: t0 + ms - t3 };
    this.frameCount++;
    this.frameMs.push(ms);
    if (this.frameMs.length > 2000) this.frameMs.splice(0, this.frameMs.length - 2000);
  }

  private drawRow(row: RowLayout, y0: number, y1: number, v0: number, v1: number): void {
    const run = this.runs[row.run];
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
    if (py && b - a > PYRAMID_SPANS_PER_PX * W) {
      const pxDur = 1 / k;
      level = Math.floor(Math.log2(pxDur / 2 / py.width0));
      if (level >= py.levels.length) level = py.levels.length - 1;
    }
    if (level >= 0 && py) this.binPyramid(py, level, t0, t1, k);
    else this.binSpans(run, a, b, t0, k);
    this.fillColumns(y0, y1);
    this.drawWideSpans(row, y0, y1, t0, k);
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
      const cov = w > 0.08 ? w : 0.08;
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
  private drawWideSpans(row: RowLayout, y0: number, y1: number, t0: number, k: number): void {
    const run = this.runs[row.run];
    const sp = run.trace.spans;
    const start = sp.start;
    const dur = sp.dur;
    const cls = run.prepared.cls;
    const W = this.painter.width;
    const d = this.drawn;
    const painter = this.painter;
    const nWide = this.rowBins.nWide;
    // Spans wide enough to see, over the merged columns.
    const labelMin = LABEL_MIN_PX * this.dpr;
    const dpr = this.dpr;
    for (let j = 0; j < nWide; j++) {
      const i = this.wide[j];
      const x0 = (start[i] - t0) * k;
      const x1 = x0 + dur[i] * k;
      const c = cls[i];
      painter.fill(Math.round(x0), Math.max(Math.round(x0) + 1, Math.round(x1)), y0, y1, c, ALPHA_LEVELS, true);
      d.rects[kindOfClass(c)]++;
      if (x1 - x0 >= labelMin && y1 - y0 >= 10 * dpr && this.labels.length < MAX_LABELS) {
        this.labels.push({ run: row.run, span: i, x0: Math.max(0, x0) / dpr, x1: Math.min(W, x1) / dpr, y: y0 / dpr, h: (y1 - y0) / dpr });
      }
    }
  }

  private rowY(run: number, lane: number, kind: number): RowLayout | undefined {
    // Lanes are few (tens to hundreds); a linear scan per flow endpoint is fine at ≤ MAX_FLOWS.
    let fallback: RowLayout | undefined;
    for (const r of this.rows) {
      if (r.run !== run || r.lane !== lane) continue;
      if (r.kind === kind) return r;
      if (r.kind === ROW_STATE) fallback = r;
    }
    return fallback;
  }

  /**
   * Step boundaries and collective markers, as pixels: at a zoomed-out view there are
   * thousands, and vector paths (dashed ones above all) cost far more to rasterise in
   * software than the few pixels each covers.
   */
  private drawMarkers(v0: number, v1: number): void {
    const painter = this.painter;
    const dpr = this.dpr;
    const x = this.x();
    const sy = this.scrollY;
    const d = this.drawn;
    const H = painter.height;
    this.runs.forEach((run, ri) => {
      const rows = this.rows.filter((r) => r.run === ri);
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
          const row = this.rowY(ri, sp.lane[i], ROW_COMM);
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

  private drawOverlay(v0: number, v1: number): void {
    const ctx = this.overlayCtx;
    const dpr = this.dpr;
    ctx.setTransform(1, 0, 0, 1, 0, 0);
    ctx.clearRect(0, 0, this.overlayCanvas.width, this.overlayCanvas.height);
    ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
    const x = this.x();
    this.drawHighlight(ctx, x);
    this.drawSelection(ctx, x);
    this.drawLabels(ctx);
    this.drawFlows(ctx, x, v0, v1);
    this.drawFocus(ctx, x);
  }

  /** Finding / lane highlight: the lanes outlined, their evidence range tinted. */
  private drawHighlight(ctx: CanvasRenderingContext2D, x: ScaleLinear<number, number>): void {
    if (!this.highlight) return;
    const pal = this.palette!;
    const sy = this.scrollY;
    const W = this.width;
    const h = this.highlight;
    const hx0 = Math.max(0, x(h.v0));
    const hx1 = Math.min(W, x(h.v1));
    for (const l of this.lanes) {
      if (!h.lanes.has(`${l.run}:${l.lane}`)) continue;
      const y = l.y - sy;
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
  private drawSelection(ctx: CanvasRenderingContext2D, x: ScaleLinear<number, number>): void {
    if (!this.selection) return;
    const pal = this.palette!;
    const W = this.width;
    const H = this.height;
    const sx0 = x(this.selection.v0);
    const sx1 = x(this.selection.v1);
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

  /** Labels inside wide spans. */
  private drawLabels(ctx: CanvasRenderingContext2D): void {
    const d = this.drawn;
    ctx.font = this.font;
    ctx.textBaseline = 'middle';
    const charW = ctx.measureText('0').width || 6;
    for (const lb of this.labels) {
      const w = lb.x1 - lb.x0 - 6;
      const max = Math.floor(w / charW);
      if (max < 3) continue;
      const run = this.runs[lb.run];
      let text = this.displayName(lb.run, run.trace.spans.name[lb.span]);
      if (text.length > max) text = `${text.slice(0, max - 1)}…`;
      const c = run.prepared.cls[lb.span] & CLASS_MASK;
      ctx.fillStyle = this.inkOn(c);
      ctx.fillText(text, lb.x0 + 3, lb.y + lb.h / 2, w);
      d.labels++;
    }
  }

  /** Flows: send → recv arrows between comm rows. */
  private drawFlows(ctx: CanvasRenderingContext2D, x: ScaleLinear<number, number>, v0: number, v1: number): void {
    const pal = this.palette!;
    const sy = this.scrollY;
    const W = this.width;
    const d = this.drawn;
    ctx.strokeStyle = pal.css.flow;
    ctx.fillStyle = pal.css.flow;
    ctx.lineWidth = 1.25;
    this.runs.forEach((run, ri) => {
      const f = run.prepared.flows;
      const n = f.send.length;
      if (n === 0) return;
      const sp = run.trace.spans;
      const off = run.offsetUs;
      const [a, b] = visibleSpan(0, n, (q) => f.index.start[q], f.index.maxEnd, v0 + off, v1 + off);
      // Dense flows (more than one per 8 px) are drawn as plain lines, and at most one per pixel.
      const dense = b - a > W / 8;
      let lastKey = '';
      let lastX = -Infinity;
      for (let q = a; q < b && d.flows < MAX_FLOWS; q++) {
        const s = f.send[q];
        const r = f.recv[q];
        const rs = this.rowY(ri, sp.lane[s], ROW_COMM);
        const rr = this.rowY(ri, sp.lane[r], ROW_COMM);
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
        } else this.arrow(ctx, xa, ya, xb, yb);
        d.flows++;
      }
    });
  }

  /** Hovered and selected spans. */
  private drawFocus(ctx: CanvasRenderingContext2D, x: ScaleLinear<number, number>): void {
    const pal = this.palette!;
    const sy = this.scrollY;
    const W = this.width;
    for (const [ref, dashed] of [
      [this.hover, false],
      [this.selected, true],
    ] as const) {
      if (!ref) continue;
      const run = this.runs[ref.run];
      if (!run) continue;
      const sp = run.trace.spans;
      const row = this.rowY(ref.run, sp.lane[ref.span], this.rowKindOfSpan(run, ref.span));
      if (!row) continue;
      const xa = x(sp.start[ref.span] - run.offsetUs);
      const xb = x(sp.start[ref.span] + sp.dur[ref.span] - run.offsetUs);
      ctx.strokeStyle = pal.css.focus;
      ctx.lineWidth = 2;
      ctx.setLineDash(dashed ? [4, 2] : []);
      ctx.strokeRect(Math.max(-2, xa) - 1, row.y - sy, Math.max(2, Math.min(W + 2, xb) - Math.max(-2, xa)) + 2, row.h);
      ctx.setLineDash([]);
    }
  }

  private inkOn(cls: number): string {
    const c = this.palette!.classes[cls];
    const lum = (0.2126 * c.r + 0.7152 * c.g + 0.0722 * c.b) / 255;
    return lum > 0.55 ? '#000' : '#fff';
  }

  private arrow(ctx: CanvasRenderingContext2D, xa: number, ya: number, xb: number, yb: number): void {
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

  private drawAxis(v0: number, v1: number): void {
    const x = this.x();
    const n = Math.max(2, Math.floor(this.width / 110));
    const ticks = x.ticks(n);
    const step = ticks.length > 1 ? ticks[1] - ticks[0] : v1 - v0;
    const unit = axisUnit(v1 - v0);
    this.axisUnitName = unit.unit;
    const axis = axisTop<number>(x)
      .ticks(n)
      .tickSizeOuter(0)
      .tickFormat((t) => formatAxisTick(t.valueOf(), unit, step));
    this.axisG.call(axis);
    this.axisTicks = ticks.map((t) => formatAxisTick(t, unit, step));
  }

  // ---------------------------------------------------------------------------------------
  // Test hook

  stats(): Pick<ViewStats, 'visible' | 'extent' | 'axis' | 'canvas' | 'drawn' | 'selection' | 'highlight' | 'hover' | 'selected' | 'tooltip' | 'lanes' | 'scrollY'> {
    const [v0, v1] = this.visibleRange();
    const [e0, e1] = this.extent();
    return {
      visible: { startUs: v0, endUs: v1 },
      extent: { startUs: e0, endUs: e1 },
      axis: { ticks: [...this.axisTicks], unit: this.axisUnitName },
      canvas: { width: this.width, height: this.height, dpr: this.dpr },
      drawn: { ...this.drawn, rects: { ...this.drawn.rects }, merged: { ...this.drawn.merged }, phaseMs: { ...this.phaseMs } },
      selection: this.selection ? { startUs: this.selection.v0, endUs: this.selection.v1 } : null,
      highlight: this.highlight
        ? {
            lanes: [...this.highlight.lanes].map((k) => {
              const [run, lane] = k.split(':').map(Number);
              return { run, lane };
            }),
            startUs: this.highlight.v0,
            endUs: this.highlight.v1,
          }
        : null,
      hover: this.hover ? { ...this.hover } : null,
      selected: this.selected ? { ...this.selected } : null,
      tooltip: { visible: !this.tooltip.hidden, text: this.tooltip.hidden ? '' : this.tooltip.textContent ?? '' },
      lanes: this.lanes.map((l) => {
        const run = this.runs[l.run];
        const lane = run.trace.lanes[l.lane];
        const dev = run.trace.meta.devices[lane.device];
        return {
          run: l.run,
          lane: l.lane,
          label: lane.label,
          group: lane.group,
          device: dev?.id ?? '',
          shared: dev?.sharesPhysicalUnit ?? false,
          software: dev?.software ?? false,
          rows: l.rows.map((r) => r.label),
          y: l.y,
          height: l.h,
        };
      }),
      scrollY: this.scrollY,
    };
  }
}
