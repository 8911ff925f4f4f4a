/**
 * The time geometry: the base scale over the zoomable extent, d3-zoom's transform on it, the
 * d3-brush on the axis that selects a range, and the d3 time axis. "View time" is trace time
 * minus the run's offset (0 for a single run; where the runs are aligned when comparing).
 */
import { select, type Selection } from 'd3-selection';
import { zoom as d3zoom, zoomIdentity, type ZoomBehavior, type ZoomTransform, type D3ZoomEvent } from 'd3-zoom';
import { scaleLinear, type ScaleLinear } from 'd3-scale';
import { axisTop } from 'd3-axis';
import { brushX, type BrushBehavior, type D3BrushEvent } from 'd3-brush';
import 'd3-transition';
import { axisUnit, formatAxisTick } from '../format';
import { AXIS_H, MIN_VIEW_US, type ViewRange } from './types';

/** What the viewport tells its owner. */
export interface ViewportEvents {
  /** A zoom or pan gesture started. */
  gestureStart(): void;
  /** The transform changed. */
  zoomed(): void;
  /** The user brushed a range (null: cleared); `end` at the end of the gesture. */
  brushed(range: ViewRange | null, end: boolean): void;
}

export class Viewport {
  width = 300;
  height = 150;
  /** True while the user drags the brush. */
  brushing = false;
  private xBase: ScaleLinear<number, number> = scaleLinear().domain([0, 1]).range([0, 300]);
  private transform: ZoomTransform = zoomIdentity;
  private readonly zoom: ZoomBehavior<HTMLElement, unknown>;
  private readonly brush: BrushBehavior<unknown>;
  private readonly wrapSel: Selection<HTMLElement, unknown, null, undefined>;
  private readonly axisSvg: Selection<SVGSVGElement, unknown, null, undefined>;
  private readonly axisG: Selection<SVGGElement, unknown, null, undefined>;
  private readonly brushG: Selection<SVGGElement, unknown, null, undefined>;
  private readonly reducedMotion: boolean;
  /** Tick labels of the last axis drawn, and their unit. */
  axisTicks: string[] = [];
  axisUnitName = 'µs';

  constructor(wrap: HTMLElement, svg: SVGSVGElement, on: ViewportEvents) {
    this.axisSvg = select(svg);
    this.axisG = this.axisSvg.append('g').attr('class', 'px-axis-g').attr('transform', `translate(0,${AXIS_H - 1})`);
    this.brushG = this.axisSvg.append('g').attr('class', 'px-brush');
    this.reducedMotion = matchMedia('(prefers-reduced-motion: reduce)').matches;
    this.zoom = d3zoom<HTMLElement, unknown>()
      .filter((event: Event) => {
        if (event.type === 'wheel') {
          const w = event as WheelEvent;
          // Horizontal swipes pan and shift+wheel scrolls lanes; the input module handles both.
          return !(w.shiftKey || Math.abs(w.deltaX) > Math.abs(w.deltaY));
        }
        const m = event as MouseEvent;
        return !m.ctrlKey && !m.button;
      })
      .on('start', () => on.gestureStart())
      .on('zoom', (e: D3ZoomEvent<HTMLElement, unknown>) => {
        this.transform = e.transform;
        on.zoomed();
      });
    this.wrapSel = select<HTMLElement, unknown>(wrap);
    this.wrapSel.call(this.zoom).on('dblclick.zoom', null);
    this.brush = brushX<unknown>()
      .on('start', () => {
        this.brushing = true;
      })
      .on('brush end', (e: D3BrushEvent<unknown>) => {
        if (e.type === 'end') this.brushing = false;
        if (!e.sourceEvent) return; // moved by syncBrush, not by the user
        const s = e.selection as [number, number] | null;
        const x = this.x();
        on.brushed(!s || s[1] - s[0] < 1 ? null : { v0: x.invert(s[0]), v1: x.invert(s[1]) }, e.type === 'end');
      });
    this.brushG.call(this.brush);
  }

  /** The current view-time → CSS-pixel scale. */
  x(): ScaleLinear<number, number> {
    return this.transform.rescaleX(this.xBase);
  }

  /** The zoom factor (1: the whole extent). */
  get k(): number {
    return this.transform.k;
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

  /** Makes [lo, hi] the zoomable extent and shows all of it. */
  setExtent(lo: number, hi: number): void {
    this.xBase = scaleLinear().domain([lo, hi]).range([0, this.width]);
    this.configure();
    this.wrapSel.call(this.zoom.transform, zoomIdentity);
    this.brushG.call(this.brush.move, null);
  }

  /** New canvas size, CSS px; keeps the visible range when `keep`. */
  resize(width: number, height: number, keep: [number, number] | null): void {
    this.width = width;
    this.height = height;
    this.axisSvg.attr('width', width);
    this.xBase.range([0, width]);
    this.configure();
    if (keep) this.setView(keep[0], keep[1], false);
  }

  private configure(): void {
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

  reset(): void {
    this.wrapSel.call(this.zoom.transform, zoomIdentity);
  }

  zoomBy(factor: number, atX: number): void {
    this.zoom.scaleBy(this.wrapSel, factor, [atX, 0]);
  }

  /** Moves the view `dxPx` CSS pixels later in time (negative: earlier). */
  panBy(dxPx: number): void {
    this.zoom.translateBy(this.wrapSel, -dxPx / this.transform.k, 0);
  }

  /** Moves the brush to show `range` (null clears it), without reporting it as the user's. */
  showBrush(range: ViewRange | null): void {
    if (!range) {
      this.brushG.call(this.brush.move, null);
      return;
    }
    const x = this.x();
    const a = Math.max(0, x(range.v0));
    const b = Math.min(this.width, x(range.v1));
    this.brushG.call(this.brush.move, b - a >= 1 ? [a, b] : null);
  }

  drawAxis(v0: number, v1: number): void {
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
}
