/**
 * The test hook's types: `window.__parallax`, installed by main.ts in every page (VS Code
 * webview and standalone report). DOM-free so that Node-side tests can import the types.
 *
 * Read-only: `stats()`, `frameTimes()`, `locate()`, `sent`. The other calls do what a host
 * message or a user could do anyway (load a trace, set the view), and resolve once the frame
 * that shows the result is drawn, so tests and benchmarks need no sleeps.
 */
import type { SpanQuery, SpanQueryResult } from '../../src/profiler/span-query';
import type { TileSummary } from '../../src/profiler/span-tiles';

export interface KindCounts {
  compute: number;
  comm: number;
  idle: number;
  /** Operator spans (nested under compute). */
  op: number;
}

/** What one frame drew: rects and per-pixel columns per kind, and the other things drawn. */
export interface DrawnCounts {
  rects: KindCounts;
  merged: KindCounts;
  columns: number;
  buckets: number;
  pyramidRows: number;
  rawRows: number;
  flows: number;
  collectives: number;
  labels: number;
  steps: number;
}

export interface ViewStats {
  /** A trace is loaded and its first frame drawn. */
  loaded: boolean;
  /** The last load or message error shown, or null. */
  error: string | null;
  runs: {
    title: string;
    source: string;
    predicted: boolean;
    emulated: boolean;
    spans: number;
    lanes: number;
    /** View time = trace time − offsetUs. */
    offsetUs: number;
    /** Spans per kind in the trace (operators counted apart from compute). */
    counts: KindCounts;
    findings: number;
    stepMedianUs: number | null;
  }[];
  /** Lanes in draw order, with their rows' labels and their position in content (CSS px). */
  lanes: {
    run: number;
    lane: number;
    label: string;
    group: string;
    device: string;
    shared: boolean;
    software: boolean;
    rows: string[];
    y: number;
    height: number;
  }[];
  /** The view, in view time (µs). */
  visible: { startUs: number; endUs: number };
  /** The zoomable extent, view time. */
  extent: { startUs: number; endUs: number };
  /** Tick labels the axis shows now, and their unit. */
  axis: { ticks: string[]; unit: string };
  canvas: { width: number; height: number; dpr: number };
  /**
   * What the last frame drew: spans drawn one by one (`rects`) and spans merged into
   * per-pixel columns (`merged`) per kind, the columns and pyramid buckets drawn, rows drawn
   * from spans vs from the pyramid, flows, collective groups, labels and step lines.
   */
  drawn: DrawnCounts & {
    phaseMs: { spans: number; present: number; overlay: number; axis: number };
  };
  selection: { startUs: number; endUs: number } | null;
  highlight: { lanes: { run: number; lane: number }[]; startUs: number; endUs: number } | null;
  hover: { run: number; span: number } | null;
  selected: { run: number; span: number } | null;
  tooltip: { visible: boolean; text: string };
  scrollY: number;
  /** Text of the span labels the last frame drew (at most 100). */
  labels: string[];
  /** The operator table's or the search's filter: spans it picked (the others are dimmed); null when off. */
  filter: { spans: number } | null;
  frame: {
    count: number;
    lastMs: number;
    /** From receiving the data to the first frame on screen, ms. */
    firstFrameMs: number | null;
    /** Preparation (sorting, indexing, pyramids) of the last load, ms, and where it ran. */
    prepMs: number;
    prepWhere: 'worker' | 'main';
  };
  /** The operator table: open or not, its grouping, the run it shows, its rows (largest first) and the row chosen. */
  ops: { open: boolean; run: number; groupBy: 'opType' | 'node'; rows: { key: string; count: number; totalUs: number }[]; selected: string | null };
  /** The search box: its text, the matches and the one shown (-1: none). */
  search: { text: string; count: number; index: number };
  /** Legend entries listed. */
  legend: string[];
  /** The step the compare view is aligned at, or null. */
  alignedStep: number | null;
  /**
   * Tile traffic when a run is shown in tiles (null otherwise): requests sent, tiles put in
   * place, answers dropped, the last round trip (ms), the spans the tiles in place hold, and
   * the host's answers naming the span beneath a hovered merged bucket that were shown.
   */
  tiles: { requested: number; received: number; dropped: number; lastMs: number; spans: number; spansNamed: number } | null;
  /** Finding buttons shown. */
  findings: number;
  /** The theme the page resolved to. */
  /** The theme the page resolved to: dark or not, the canvas background and the shade of alternate lanes and header bands. */
  theme: { dark: boolean; background: string; laneBand: string };
}

export interface ParallaxHook {
  stats(): ViewStats;
  /** Draw times (ms) of recent frames, oldest first. */
  frameTimes(): number[];
  /**
   * Centre of a span's visible part in page coordinates, or null when off screen. Spans are
   * named by their index in the trace, for a run shown in tiles too (null when the tile in
   * hand does not hold it); `stats().hover` and `selected` name them the same way.
   */
  locate(run: number, span: number): { x: number; y: number } | null;
  /**
   * A merged bucket of a run shown in tiles, on screen: the one nearest the middle of the view
   * (in the rows of `rowKind` 0 state, 1 ops, 2 comm, when given), with its centre in page
   * coordinates, its lane and row kind and the time it is drawn over (trace clock); null when
   * the tile in hand has none on screen.
   */
  locateMerged(run: number, rowKind?: number): { x: number; y: number; lane: number; row: number; startUs: number; endUs: number } | null;
  /** Messages the view posted to its host. */
  readonly sent: readonly unknown[];
  /** Same as a host `load` message; resolves when the first frame is on screen. */
  load(trace: unknown, compare?: unknown, titles?: { title?: string; compareTitle?: string }, tiled?: (TileSummary | null)[]): Promise<ViewStats>;
  /** Shows view time [startUs, endUs]; resolves after the frame. */
  setView(startUs: number, endUs: number): Promise<ViewStats>;
  /** Resolves after the next frame is drawn. */
  nextFrame(): Promise<ViewStats>;
  /** Asks the host to answer a span query on its copy of the trace (as a view showing tiles would). */
  askHost(run: number, query: SpanQuery): Promise<SpanQueryResult>;
}
