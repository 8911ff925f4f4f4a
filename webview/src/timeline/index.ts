/**
 * The timeline: lanes of spans on a canvas, a d3 time axis, d3-zoom for wheel / trackpad /
 * drag / W-A-S-D navigation, d3-brush on the axis to select a range, flows between lanes,
 * collective markers, hover tooltips and keyboard navigation.
 *
 * This class holds the state and composes the parts, one module per role:
 *  - layout.ts        where lanes and rows sit, and the gutter's labels;
 *  - viewport.ts      the time scale, zoom, brush and axis;
 *  - input.ts         wheel, pointer and keyboard;
 *  - hit-test.ts      from a point to a span and back;
 *  - tooltip.ts       the span tooltip;
 *  - span-renderer.ts the span pixels (level of detail, pyramids, markers);
 *  - overlay.ts       vector drawing over them (labels, flows, selection, highlight);
 *  - stats.ts         what the test hook reports.
 *
 * Time on screen is "view time": trace time minus the run's offset (0 for a single run; the
 * first step start of each run when comparing two).
 */
import type { ScaleLinear } from 'd3-scale';
import { runSpanCount, type Run } from '../data';
import type { SpanColumns } from '../../../src/profiler/trace-format';
import { themeRoot, type Palette } from '../theme';
import { HIT_TOLERANCE_PX, hitSpan, rowAt, rowOfSpan } from './hit-test';
import { attachInput, onLaneKey } from './input';
import { buildLayout } from './layout';
import { NameCache } from './names';
import { drawOverlay } from './overlay';
import { SpanRenderer } from './span-renderer';
import { timelineStats, type TimelineStats } from './stats';
import { Tooltip, HELP_ID } from './tooltip';
import { AXIS_H, GROUP_HEADER_H, LANE_GAP, MIN_VIEW_US, el, type Header, type Highlight, type LaneLayout, type RowLayout, type SpanRef, type TimelineCallbacks, type ViewRange } from './types';
import { Viewport } from './viewport';

export type { LaneLayout, RowLayout, SpanRef, TimelineCallbacks } from './types';

export class Timeline {
  readonly root: HTMLElement;
  readonly cb: TimelineCallbacks;
  readonly viewport: Viewport;
  readonly tooltip: Tooltip;
  readonly names = new NameCache();
  readonly spans = new SpanRenderer();
  private readonly gutterInner: HTMLElement;
  private readonly wrap: HTMLElement;
  private readonly spansCanvas: HTMLCanvasElement;
  private readonly overlayCanvas: HTMLCanvasElement;
  private readonly spansCtx: CanvasRenderingContext2D;
  private readonly overlayCtx: CanvasRenderingContext2D;
  private palette: Palette | null = null;
  private font = '11px sans-serif';

  runs: Run[] = [];
  lanes: LaneLayout[] = [];
  rows: RowLayout[] = [];
  private headers: Header[] = [];
  private contentH = 0;
  scrollY = 0;
  dpr = 1;
  private scheduled = false;
  private waiters: (() => void)[] = [];
  pointer: { x: number; y: number } | null = null;

  selection: ViewRange | null = null;
  highlight: Highlight | null = null;
  hover: SpanRef | null = null;
  selected: SpanRef | null = null;
  /** Where the tooltip of a merged bucket stands, while the host is asked for the span beneath. */
  private tooltipAt: { ref: SpanRef; xCss: number; yCss: number } | null = null;
  focusLane = 0;
  /** Per run, the spans the operator table or search picked; null when no filter is on. */
  filter: (Uint8Array | null)[] | null = null;
  /** Spans the filter picked, over all runs. */
  filterCount = 0;

  /** Frame statistics for the test hook and the benchmark. */
  frameCount = 0;
  frameMs: number[] = [];
  /** Text of the span labels the last frame drew. */
  readonly labelTexts: string[] = [];
  /** Where the last frame's time went, ms. */
  phaseMs = { spans: 0, present: 0, overlay: 0, axis: 0 };

  constructor(root: HTMLElement, cb: TimelineCallbacks) {
    this.root = root;
    this.cb = cb;
    root.classList.add('px-timeline');
    const help = el(
      'p',
      'px-visually-hidden',
      'Timeline. W and S zoom, A and D pan, drag to pan, wheel to zoom, shift+wheel to scroll lanes. Drag on the time axis to select a range. Arrow keys on a lane move between spans; Enter zooms to the selected span; 0 resets the zoom; Escape clears.',
    );
    help.id = HELP_ID;
    const gutter = el('div', 'px-gutter');
    const gutterAxis = el('div', 'px-gutter-axis', 'device / row');
    const gutterLanes = el('div', 'px-gutter-lanes');
    gutterLanes.setAttribute('role', 'list');
    gutterLanes.setAttribute('aria-label', 'Lanes');
    this.gutterInner = el('div', 'px-gutter-inner');
    gutterLanes.append(this.gutterInner);
    gutter.append(gutterAxis, gutterLanes);
    const tracks = el('div', 'px-tracks');
    this.wrap = el('div', 'px-canvas-wrap');
    this.wrap.tabIndex = 0;
    this.wrap.setAttribute('role', 'application');
    this.wrap.setAttribute('aria-roledescription', 'timeline');
    this.wrap.setAttribute('aria-describedby', help.id);
    this.spansCanvas = el('canvas', 'px-spans');
    this.overlayCanvas = el('canvas', 'px-overlay');
    this.tooltip = new Tooltip(this.wrap, this.names);
    this.wrap.append(this.spansCanvas, this.overlayCanvas, this.tooltip.el);
    const svg = document.createElementNS('http://www.w3.org/2000/svg', 'svg');
    svg.setAttribute('class', 'px-axis');
    svg.setAttribute('height', String(AXIS_H));
    svg.setAttribute('aria-label', 'Time axis; drag to select a range');
    tracks.append(svg, this.wrap);
    root.append(help, gutter, tracks);

    this.spansCtx = this.spansCanvas.getContext('2d', { alpha: false })!;
    this.overlayCtx = this.overlayCanvas.getContext('2d')!;
    this.viewport = new Viewport(this.wrap, svg, {
      gestureStart: () => this.tooltip.hide(),
      zoomed: () => {
        if (this.selection) this.viewport.showBrush(this.selection);
        this.requestDraw();
        this.cb.onView();
      },
      brushed: (range, end) => {
        this.selection = range;
        this.requestDraw();
        if (end || this.selection) this.cb.onSelectRange(this.selection);
      },
    });
    attachInput(this, this.wrap);
    new ResizeObserver(() => this.resize()).observe(this.wrap);
    this.resize();
  }

  // ---------------------------------------------------------------------------------------
  // Data and layout

  setPalette(p: Palette): void {
    this.palette = p;
    this.spans.painter.setPalette(p);
    const family = getComputedStyle(themeRoot()).getPropertyValue('--px-font').trim() || 'sans-serif';
    this.font = `11px ${family}`;
    this.requestDraw();
  }

  setRuns(runs: Run[]): void {
    this.runs = runs;
    this.names.reset(runs);
    this.selection = null;
    this.highlight = null;
    this.hover = null;
    this.selected = null;
    this.filter = null;
    this.filterCount = 0;
    this.scrollY = 0;
    this.focusLane = 0;
    this.layout();
    this.fitExtent();
    this.requestDraw();
  }

  /**
   * The runs' offsets changed (the compare view aligned them at another step): the extent
   * is computed again and the view shows [v0, v1]; layout, selection and filter stay.
   */
  realign(v0: number, v1: number): void {
    this.selection = null;
    this.fitExtent();
    this.setView(v0, v1, false);
    this.cb.onSelectRange(null);
  }

  /** Makes the extent of all runs (padded, view time) the zoomable extent, and shows it all. */
  private fitExtent(): void {
    const runs = this.runs;
    let lo = Infinity;
    let hi = -Infinity;
    for (const r of runs) {
      const [a, b] = r.prepared.extent;
      if (runSpanCount(r) === 0 && r.trace.steps.length === 0) continue;
      lo = Math.min(lo, a - r.offsetUs, ...r.trace.steps.slice(0, 1).map((s) => s.startUs - r.offsetUs));
      hi = Math.max(hi, b - r.offsetUs);
    }
    if (!Number.isFinite(lo) || !Number.isFinite(hi)) {
      lo = 0;
      hi = 1000;
    }
    if (hi - lo < MIN_VIEW_US) hi = lo + MIN_VIEW_US;
    const pad = (hi - lo) * 0.01;
    this.viewport.setExtent(lo - pad, hi + pad);
  }

  private layout(): void {
    const l = buildLayout(this.runs, this.gutterInner, {
      focus: (index) => {
        this.focusLane = index;
        this.ensureLaneVisible(index);
      },
      key: (e, index) => onLaneKey(this, e, index),
      click: (index) => this.toggleLaneHighlight(index),
    }, this.viewport.height);
    this.lanes = l.lanes;
    this.rows = l.rows;
    this.headers = l.headers;
    this.contentH = l.contentH;
    this.applyScroll();
  }

  // ---------------------------------------------------------------------------------------
  // Geometry

  /** The current view-time → CSS-pixel scale. */
  x(): ScaleLinear<number, number> {
    return this.viewport.x();
  }

  visibleRange(): [number, number] {
    return this.viewport.visibleRange();
  }

  /** The zoomable extent (all runs, padded), view time. */
  extent(): [number, number] {
    return this.viewport.extent();
  }

  private resize(): void {
    const r = this.wrap.getBoundingClientRect();
    const keep = this.runs.length > 0 ? this.visibleRange() : null;
    const width = Math.max(50, Math.floor(r.width));
    const height = Math.max(50, Math.floor(r.height));
    this.dpr = Math.max(1, Math.min(3, window.devicePixelRatio || 1));
    for (const c of [this.spansCanvas, this.overlayCanvas]) {
      c.width = Math.round(width * this.dpr);
      c.height = Math.round(height * this.dpr);
      c.style.width = `${width}px`;
      c.style.height = `${height}px`;
    }
    this.spans.resize(this.spansCtx, this.spansCanvas.width, this.spansCanvas.height);
    const relayout = height !== this.viewport.height && this.runs.length > 0;
    this.viewport.resize(width, height, keep);
    // Lanes share the view's height: a taller or shorter view lays them out again.
    if (relayout) this.layout();
    this.applyScroll();
    this.requestDraw();
  }

  /** Shows view time [v0, v1] (clamped to the extent). */
  setView(v0: number, v1: number, animate = true): void {
    this.viewport.setView(v0, v1, animate);
  }

  resetView(): void {
    this.viewport.reset();
  }

  zoomBy(factor: number, atX?: number): void {
    this.viewport.zoomBy(factor, atX ?? this.pointer?.x ?? this.viewport.width / 2);
  }

  /** Moves the view `dxPx` CSS pixels later in time (negative: earlier). */
  panBy(dxPx: number): void {
    this.viewport.panBy(dxPx);
  }

  /** Scrolls the lanes by `dy` CSS px. */
  scrollBy(dy: number): void {
    this.scrollY += dy;
    this.applyScroll();
    // What is under the pointer changed: hover it afresh.
    this.hover = this.pointer ? this.hitTest(this.pointer.x, this.pointer.y) : null;
    if (this.hover && this.pointer) this.showTooltipAt(this.hover, this.pointer.x, this.pointer.y);
    else this.tooltip.hide();
    this.requestDraw();
    // Other lanes are on screen: a run in tiles may need them.
    this.cb.onView();
  }

  /** The lanes [a, b) of run `run` that are (partly) on screen, or null when none is. */
  lanesOnScreen(run: number): [number, number] | null {
    const top = this.scrollY;
    const bottom = top + this.viewport.height;
    let a = Infinity;
    let b = -Infinity;
    for (const l of this.lanes) {
      if (l.run !== run || l.y + l.h <= top || l.y >= bottom) continue;
      a = Math.min(a, l.lane);
      b = Math.max(b, l.lane + 1);
    }
    return b > a ? [a, b] : null;
  }

  private applyScroll(): void {
    const max = Math.max(0, this.contentH - this.viewport.height);
    this.scrollY = Math.max(0, Math.min(max, this.scrollY));
    this.gutterInner.style.transform = `translateY(${-this.scrollY}px)`;
  }

  private ensureLaneVisible(index: number): void {
    const l = this.lanes[index];
    if (!l) return;
    if (l.y < this.scrollY) this.scrollY = l.y - GROUP_HEADER_H;
    else if (l.y + l.h > this.scrollY + this.viewport.height) this.scrollY = l.y + l.h - this.viewport.height + LANE_GAP;
    this.applyScroll();
    this.requestDraw();
    this.cb.onView();
  }

  /** Selects view time [v0, v1] as if brushed (null clears). */
  setSelection(range: ViewRange | null): void {
    this.selection = range;
    this.viewport.showBrush(range);
    this.requestDraw();
    this.cb.onSelectRange(range);
  }

  rowAt(yCss: number): RowLayout | null {
    return rowAt(this.rows, yCss + this.scrollY);
  }

  /** The span under a point of the canvas (CSS px), preferring the shortest containing span. */
  hitTest(xCss: number, yCss: number): SpanRef | null {
    const row = this.rowAt(yCss);
    return row ? hitSpan(this.runs, row, this.x(), xCss) : null;
  }

  /** Centre of a span's visible part in client (page) coordinates, or null when off screen. */
  locate(ref: SpanRef): { x: number; y: number } | null {
    const run = this.runs[ref.run];
    if (!run || ref.span < 0 || ref.span >= run.trace.spans.count) return null;
    const sp = run.trace.spans;
    const row = rowOfSpan(this.rows, this.runs, ref);
    if (!row) return null;
    const x = this.x();
    const x0 = Math.max(0, x(sp.start[ref.span] - run.offsetUs));
    const x1 = Math.min(this.viewport.width, x(sp.start[ref.span] + sp.dur[ref.span] - run.offsetUs));
    const y = row.y + row.h / 2 - this.scrollY;
    if (x1 < x0 || y < 0 || y > this.viewport.height) return null;
    const rect = this.wrap.getBoundingClientRect();
    return { x: rect.left + (x0 + x1) / 2, y: rect.top + y };
  }

  // ---------------------------------------------------------------------------------------
  // Selection, highlight, tooltip

  fitSpan(ref: SpanRef): void {
    const run = this.runs[ref.run];
    const sp = run.trace.spans;
    const s = sp.start[ref.span] - run.offsetUs;
    const d = Math.max(sp.dur[ref.span], MIN_VIEW_US);
    this.setView(s - d * 0.1, s + d * 1.1);
  }

  fitSelection(): void {
    if (this.selection) this.setView(this.selection.v0, this.selection.v1);
    else if (this.selected) this.fitSpan(this.selected);
  }

  toggleLaneHighlight(index: number): void {
    const l = this.lanes[index];
    if (!l) return;
    const key = `${l.run}:${l.lane}`;
    if (this.highlight && this.highlight.lanes.size === 1 && this.highlight.lanes.has(key)) this.setHighlight(null);
    else {
      const [v0, v1] = this.visibleRange();
      this.setHighlight({ lanes: new Set([key]), v0, v1 });
    }
  }

  /**
   * Dims every span but those `masks` pick (one mask per run, null: the run has none
   * picked); null clears the filter.
   */
  setFilter(masks: (Uint8Array | null)[] | null): void {
    this.filter = masks;
    let n = 0;
    for (const m of masks ?? []) if (m) for (let i = 0; i < m.length; i++) n += m[i];
    this.filterCount = n;
    this.requestDraw();
  }

  setHighlight(h: Highlight | null): void {
    this.highlight = h;
    for (const l of this.lanes) l.el.classList.toggle('px-highlighted', !!h && h.lanes.has(`${l.run}:${l.lane}`));
    this.requestDraw();
  }

  /** Escape: clears the selected span, the highlight, the brushed range and the tooltip. */
  clearAll(): void {
    this.selected = null;
    this.highlight = null;
    this.setSelection(null);
    this.tooltip.hide();
    for (const l of this.lanes) l.el.classList.remove('px-highlighted');
  }

  showTooltipAt(ref: SpanRef, xCss: number, yCss: number): void {
    this.tooltip.show(this.runs, ref, xCss, yCss, this.viewport.width, this.viewport.height);
    const run = this.runs[ref.run];
    if ((run?.tiled?.merged[ref.span] ?? 0) > 0) {
      const x = this.x();
      this.tooltipAt = { ref, xCss, yCss };
      this.cb.onHoverMerged(ref, x.invert(xCss) + run!.offsetUs, Math.abs(x.invert(xCss + HIT_TOLERANCE_PX) - x.invert(xCss)));
    } else this.tooltipAt = null;
  }

  /**
   * The host named the span beneath a merged bucket: shown in the tooltip if it still stands
   * at that bucket.
   */
  showSpanBeneath(ref: SpanRef, beneath: SpanColumns): void {
    const at = this.tooltipAt;
    if (!at || at.ref.run !== ref.run || at.ref.span !== ref.span || !this.tooltip.visible) return;
    this.tooltip.show(this.runs, ref, at.xCss, at.yCss, this.viewport.width, this.viewport.height, beneath);
  }

  showSelectedTooltip(): void {
    if (!this.selected) return;
    const loc = this.locate(this.selected);
    if (!loc) return this.tooltip.hide();
    const rect = this.wrap.getBoundingClientRect();
    this.showTooltipAt(this.selected, loc.x - rect.left, loc.y - rect.top);
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
    const palette = this.palette;
    if (!palette) return;
    const t0 = performance.now();
    const [v0, v1] = this.visibleRange();
    const x = this.x();
    const { runs, lanes, rows, scrollY, dpr } = this;
    this.spans.draw({ runs, lanes, rows, headers: this.headers, x, v0, v1, scrollY, dpr, filter: this.filter });
    const t1 = performance.now();
    this.spans.painter.present(this.spansCtx);
    const t2 = performance.now();
    const { width, height } = this.viewport;
    drawOverlay(this.overlayCtx, {
      runs,
      lanes,
      rows,
      x,
      v0,
      v1,
      scrollY,
      dpr,
      width,
      height,
      palette,
      font: this.font,
      labels: this.spans.labels,
      highlight: this.highlight,
      selection: this.selection,
      hover: this.hover,
      selected: this.selected,
      names: this.names,
      drawn: this.spans.drawn,
      labelTexts: this.labelTexts,
    });
    const t3 = performance.now();
    this.viewport.drawAxis(v0, v1);
    const ms = performance.now() - t0;
    this.phaseMs = { spans: t1 - t0, present: t2 - t1, overlay: t3 - t2, axis: t0 + ms - t3 };
    this.frameCount++;
    this.frameMs.push(ms);
    if (this.frameMs.length > 2000) this.frameMs.splice(0, this.frameMs.length - 2000);
  }

  // ---------------------------------------------------------------------------------------
  // Test hook

  stats(): TimelineStats {
    return timelineStats(this);
  }
}
