/**
 * The view's application object: the page, the timeline, the loaded runs and the host
 * channel. Loads either what the host sends (VS Code) or the traces embedded in the page
 * (standalone report: `<script type="application/json">` blocks with ids `parallax-trace`,
 * `parallax-compare` and `parallax-config`).
 */
import type { SpanFilter } from '../../src/profiler/span-query';
import { loadRun, runOrigin, runSpanCount, runSummary, type Run } from './data';
import { displayText } from './format';
import { rowKindOf } from './model';
import type { Host } from './host';
import { renderFindings, renderRange, renderSummary } from './panels';
import { buildPage } from './page';
import { readToWebview, type ToWebview } from './protocol';
import { renderSteps } from './compare';
import { alignAtStep, firstCommonStep } from './steps';
import { presentIn } from './legend';
import { OpsPanel } from './ops-panel';
import { hostQueries, localQueries, type HostQueries, type SpanQueries } from './queries';
import { SearchBox } from './search';
import { applyReadableText, readPalette, watchTheme, type Palette } from './theme';
import { Timeline } from './timeline/index';
import { localIndex, SpanAtFeed, TileFeed, type TiledInfo } from './tiles';

/** Below this many spans the summary is computed before the first frame; above, just after. */
const SUMMARY_SYNC_SPANS = 200_000;

function defaultTitle(doc: unknown, i: number): string {
  const meta = (doc as { meta?: { model?: { path?: unknown }; mode?: unknown; source?: unknown } }).meta;
  const model = typeof meta?.model?.path === 'string' ? meta.model.path : 'run';
  const mode = typeof meta?.mode === 'string' ? meta.mode : '';
  return `${model}${mode ? ` · ${mode}` : ''}${i > 0 ? ' (compare)' : ''}`;
}

/** A JSON block embedded in the standalone report's page, or undefined. */
function embedded(id: string): unknown {
  const node = document.getElementById(id);
  if (!node || node.getAttribute('type') !== 'application/json') return undefined;
  return JSON.parse(node.textContent ?? 'null') as unknown;
}

/** The view: the page, the timeline, the loaded runs and the host channel. */
export class App {
  readonly page = buildPage((open) => {
    if (open) void this.ops.refresh();
  });
  readonly timeline: Timeline;
  /**
   * Where span queries are answered: on the spans this view holds, or by the host for a run
   * shown in tiles (filter masks are then made for the tile in hand, again for each tile).
   */
  readonly queries: SpanQueries;
  /** The same queries answered by the host on its copy of the trace. */
  readonly hostQueries: HostQueries;
  readonly search: SearchBox;
  readonly ops: OpsPanel;
  /** The step the compare view is aligned at, or null. */
  alignedStep: number | null = null;
  runs: Run[] = [];
  findingButtons: HTMLButtonElement[] = [];
  palette: Palette | null = null;
  loaded = false;
  lastError: string | null = null;
  firstFrameMs: number | null = null;
  prepMs = 0;
  private generation = 0;
  /** Tiles of the runs shown in tiles. */
  readonly tiles: TileFeed;
  /** The host's answers naming the span beneath a hovered merged bucket. */
  readonly spanAt: SpanAtFeed;
  /** The filter in force, made again for each new tile. */
  private filter: SpanFilter | null = null;
  /** A trace span to select once a tile holds it (a search hit in a tiled run). */
  private selectWhenTiled: { run: number; span: number } | null = null;

  constructor(readonly host: Host) {
    this.timeline = this.createTimeline();
    this.hostQueries = hostQueries(host);
    const local = localQueries(() => this.runs);
    this.queries = {
      ask: (run, q) => (this.runs[run]?.tiled ? this.hostQueries.ask(run, q) : local.ask(run, q)),
      mask: (run, filter) => local.mask(run, filter),
    };
    this.tiles = new TileFeed(
      (m) => host.post(m),
      (run, prev) => this.tileApplied(run, prev),
      (message) => {
        this.lastError = message;
        host.post({ type: 'error', message });
      },
    );
    this.spanAt = new SpanAtFeed(
      (m) => host.post(m),
      (ask, span) => this.timeline.showSpanBeneath({ run: ask.run, span: ask.span }, span),
    );
    this.search = new SearchBox({
      runs: () => this.runs,
      queries: this.queries,
      onText: (text) => void this.applySearch(text),
      onGo: (ref, hit) => {
        const tiled = this.runs[ref.run]?.tiled;
        if (tiled) {
          // Search hits name trace spans; the view holds a tile: go there, select when it arrives.
          const run = this.runs[ref.run]!;
          const d = Math.max(hit.durUs, 1);
          this.selectWhenTiled = ref;
          this.timeline.setView(hit.startUs - run.offsetUs - d * 0.1, hit.startUs - run.offsetUs + d * 1.1);
          this.tileApplied(ref.run, tiled.index);
          return;
        }
        this.timeline.selected = ref;
        this.timeline.fitSpan(ref);
        void this.timeline.whenDrawn().then(() => this.timeline.showSelectedTooltip());
      },
    });
    this.page.tools.prepend(this.search.root);
    this.ops = new OpsPanel(this.page.opsBox, {
      runs: () => this.runs,
      queries: this.queries,
      range: (run) => {
        const sel = this.timeline.selection;
        const r = this.runs[run];
        return sel && r ? { startUs: sel.v0 + r.offsetUs, endUs: sel.v1 + r.offsetUs } : undefined;
      },
      text: () => this.search.text,
      onFilter: (choice) => void this.applyOpFilter(choice?.filter ?? null),
    });
    this.refreshTheme();
    watchTheme(() => this.refreshTheme());
  }

  private createTimeline(): Timeline {
    const { host, page } = this;
    return new Timeline(page.tlRoot, {
      onSelectRange: (range) => {
        renderRange(page.rangeBox, this.runs, range);
        void this.ops?.refresh();
        const off = this.runs[0]?.offsetUs ?? 0;
        host.post({ type: 'selectRange', startUs: range ? range.v0 + off : null, endUs: range ? range.v1 + off : null });
      },
      onOpenSource: (ref) => {
        const run = this.runs[ref.run];
        if (!run) return;
        // A merged bucket of a tile is no one span.
        const global = run.tiled ? (run.tiled.index[ref.span] ?? -1) : ref.span;
        if (global < 0) return;
        const sp = run.trace.spans;
        const lane = run.trace.lanes[sp.lane[ref.span]];
        host.post({
          type: 'openSource',
          run: ref.run,
          span: global,
          name: run.trace.strings[sp.name[ref.span]] ?? '',
          opType: sp.opType[ref.span] >= 0 ? (run.trace.strings[sp.opType[ref.span]] ?? null) : null,
          lane: sp.lane[ref.span],
          device: run.trace.meta.devices[lane?.device ?? -1]?.id ?? '',
        });
      },
      onView: () => this.updateTiles(),
      onHoverMerged: (ref, timeUs, toleranceUs) => {
        const run = this.runs[ref.run];
        if (!run?.tiled) return;
        const sp = run.trace.spans;
        this.spanAt.ask({ run: ref.run, span: ref.span, request: { lane: sp.lane[ref.span]!, row: rowKindOf(sp.kind[ref.span]!, sp.parent[ref.span]!, sp.flags[ref.span]!), timeUs, toleranceUs } });
      },
    });
  }

  /** Asks for the tiles the view now needs (tiled runs only). */
  private updateTiles(): void {
    if (!this.runs.some((r) => r.tiled)) return;
    const [v0, v1] = this.timeline.visibleRange();
    this.tiles.update(this.runs, v0, v1, this.timeline.viewport.width * this.timeline.dpr, (ri) => this.timeline.lanesOnScreen(ri));
  }

  /**
   * A new tile is in place for run `ri`: the span positions of the old one (`prev` maps them
   * to trace spans) are carried over to the new one for the selection, the hover is dropped,
   * the legend and the filter follow the new spans.
   */
  private tileApplied(ri: number, prev: Int32Array): void {
    const run = this.runs[ri];
    const st = run?.tiled;
    if (!run || !st) return;
    const tl = this.timeline;
    const pending = this.selectWhenTiled?.run === ri ? this.selectWhenTiled.span : -1;
    if (pending >= 0) {
      // A search hit to select once a tile holds it.
      const local = localIndex(st, pending);
      if (local >= 0) {
        tl.selected = { run: ri, span: local };
        this.selectWhenTiled = null;
        void tl.whenDrawn().then(() => tl.showSelectedTooltip());
      }
    } else if (tl.selected?.run === ri) {
      // The selected span, found again in the new tile (a merged bucket is not carried over).
      const global = prev[tl.selected.span] ?? -1;
      const local = global >= 0 ? localIndex(st, global) : -1;
      tl.selected = local >= 0 ? { run: ri, span: local } : null;
    }
    if (tl.hover?.run === ri) {
      tl.hover = null;
      tl.tooltip.hide();
      this.spanAt.cancel();
    }
    this.page.legend.show(presentIn(this.runs));
    if (this.filter) void this.filterAll(this.filter);
    tl.requestDraw();
  }

  private refreshTheme(): void {
    this.palette = readPalette();
    applyReadableText(this.page.app, this.palette);
    this.timeline.setPalette(this.palette);
    this.page.legend.paint(this.palette);
  }

  /** Dims every span the filter does not pick, in every run (null: no filter). */
  private async filterAll(filter: SpanFilter | null): Promise<void> {
    this.filter = filter;
    const runs = this.runs;
    const masks = filter ? await Promise.all(runs.map((_, r) => this.queries.mask(r, filter))) : null;
    if (runs === this.runs) this.timeline.setFilter(masks);
  }

  /** The search text changed: it filters the timeline and narrows the operator table. */
  private async applySearch(text: string): Promise<void> {
    this.ops.clearSelection();
    await this.filterAll(text ? { by: 'text', text } : null);
    await this.ops.refresh();
  }

  /** A row of the operator table was chosen (or cleared: the search, if any, filters again). */
  private async applyOpFilter(filter: SpanFilter | null): Promise<void> {
    const text = this.search.text;
    await this.filterAll(filter ?? (text ? { by: 'text', text } : null));
  }

  /** Aligns the compared runs at step `index` and shows that step. */
  private alignStep(index: number): void {
    const w = alignAtStep(this.runs, index);
    if (!w) return;
    this.alignedStep = index;
    const pad = (w.v1 - w.v0) * 0.02;
    this.timeline.realign(w.v0 - pad, w.v1 + pad);
    renderSteps(this.page.stepsBox, this.runs, index, (i) => this.alignStep(i));
  }

  showError(message: string): void {
    this.lastError = message;
    this.page.errorBox.textContent = message;
    this.page.errorBox.hidden = false;
    this.page.status.textContent = 'Could not show the trace.';
    this.host.post({ type: 'error', message });
  }

  /** Shows [v0, v1] (view time) with a little margin, highlighting `lanes` of run `ri` when given. */
  private reveal(ri: number, v0: number, v1: number, lanes: readonly number[] | undefined): void {
    const pad = Math.max((v1 - v0) * 0.04, 1);
    this.timeline.setView(v0 - pad, v1 + pad);
    if (lanes) this.timeline.setHighlight({ lanes: new Set(lanes.map((l) => `${ri}:${l}`)), v0, v1 });
  }

  private selectFinding(ri: number, fi: number): void {
    const run = this.runs[ri];
    const f = run?.findings[fi];
    if (!run || !f) return;
    this.reveal(ri, f.evidence.startUs - run.offsetUs, f.evidence.endUs - run.offsetUs, f.evidence.lanes);
    let k = 0;
    this.runs.forEach((r, rj) =>
      r.findings.forEach((_, fj) => {
        this.findingButtons[k++]?.setAttribute('aria-pressed', String(rj === ri && fj === fi));
      }),
    );
    this.host.post({ type: 'selectFinding', run: ri, index: fi, id: f.id });
  }

  async load(trace: unknown, compare: unknown, titles: { title?: string; compareTitle?: string }, tiled?: (TiledInfo | null)[]): Promise<void> {
    const gen = ++this.generation;
    const t0 = performance.now();
    this.loaded = false;
    this.lastError = null;
    this.page.errorBox.hidden = true;
    this.page.status.textContent = 'Preparing the trace…';
    let next: Run[];
    try {
      const docs = compare === undefined ? [trace] : [trace, compare];
      next = await Promise.all(docs.map((d, i) => loadRun(d, (i === 0 ? titles.title : titles.compareTitle) ?? defaultTitle(d, i), tiled?.[i])));
    } catch (e) {
      if (gen === this.generation) this.showError(`This trace cannot be shown: ${e instanceof Error ? e.message : String(e)}`);
      return;
    }
    if (gen !== this.generation) return;
    const total = this.show(next);
    // Tiled runs: the first frame is the one with their first tiles.
    this.updateTiles();
    await this.tiles.whenReady(next);
    if (gen !== this.generation) return;
    await this.timeline.whenDrawn();
    // One more animation frame: the drawn frame has then been presented.
    await new Promise<void>((r) => requestAnimationFrame(() => r()));
    if (gen !== this.generation) return;
    this.firstFrameMs = performance.now() - t0;
    this.loaded = true;
    const kinds = next.map((r) => (r.predicted ? 'predicted' : r.trace.meta.source));
    this.page.status.textContent = `${total.toLocaleString('en-US')} spans · ${next.length > 1 ? `compare (${kinds.join(' vs ')})` : kinds[0]}`;
    this.host.post({
      type: 'loaded',
      runs: next.map((r) => ({ spans: runSpanCount(r), lanes: r.trace.lanes.length, source: r.trace.meta.source })),
      firstFrameMs: this.firstFrameMs,
    });
    if (total > SUMMARY_SYNC_SPANS) {
      setTimeout(() => {
        if (gen !== this.generation) return;
        for (const r of next) r.summary = runSummary(r);
        renderSummary(this.page.summary, next);
      }, 0);
    }
  }

  /** Puts loaded runs on the page (the summary too, for small traces); returns their span count. */
  private show(next: Run[]): number {
    const { page } = this;
    // Compared runs are aligned by step: the first step both have starts at view time 0 in
    // both (runs without a common step start at their first step or span).
    for (const r of next) if (next.length > 1) r.offsetUs = runOrigin(r);
    this.alignedStep = firstCommonStep(next);
    if (this.alignedStep !== null) alignAtStep(next, this.alignedStep);
    this.runs = next;
    this.tiles.reset();
    this.spanAt.reset();
    this.filter = null;
    this.selectWhenTiled = null;
    this.search.reset();
    this.ops.reset();
    page.legend.show(presentIn(next));
    this.prepMs = Math.max(...next.map((r) => r.prepared.prepMs));
    const total = next.reduce((a, r) => a + runSpanCount(r), 0);
    const docTitle = next.length > 1 ? `${next[0].title} vs ${next[1].title}` : next[0].title;
    page.title.textContent = displayText(docTitle, 200);
    document.title = `Parallax · ${displayText(docTitle, 100)}`;
    if (total <= SUMMARY_SYNC_SPANS) for (const r of next) r.summary = runSummary(r);
    this.timeline.setRuns(next);
    renderSummary(page.summary, next);
    this.findingButtons = renderFindings(page.findingsBox, next, (ri, fi) => this.selectFinding(ri, fi));
    renderRange(page.rangeBox, next, null);
    renderSteps(page.stepsBox, next, this.alignedStep, (i) => this.alignStep(i));
    void this.ops.refresh();
    return total;
  }

  async handle(data: unknown): Promise<void> {
    const read = readToWebview(data);
    if (!read.ok) {
      this.lastError = read.error;
      this.host.post({ type: 'error', message: read.error });
      return;
    }
    const m: ToWebview = read.message;
    switch (m.type) {
      case 'load':
        await this.load(m.trace, m.compare, { title: m.title, compareTitle: m.compareTitle }, m.tiled);
        break;
      case 'reveal': {
        const ri = m.run ?? 0;
        const run = this.runs[ri];
        if (!run) return;
        this.reveal(ri, m.startUs - run.offsetUs, m.endUs - run.offsetUs, m.lanes);
        break;
      }
      case 'selectFinding':
        this.selectFinding(m.run ?? 0, m.index);
        break;
      case 'theme':
        this.refreshTheme();
        break;
      case 'clear':
        this.clear();
        break;
      case 'queryResult':
        this.hostQueries.settle(m);
        break;
      case 'tileResult':
        this.tiles.receive(this.runs, m);
        break;
      case 'spanAtResult':
        this.spanAt.receive(this.runs, m);
        break;
    }
  }

  private clear(): void {
    this.generation++;
    this.runs = [];
    this.tiles.reset();
    this.spanAt.reset();
    this.loaded = false;
    this.timeline.setRuns([]);
    this.page.summary.replaceChildren();
    this.page.findingsBox.replaceChildren();
    this.page.rangeBox.replaceChildren();
    this.page.stepsBox.hidden = true;
    this.search.reset();
    this.ops.reset();
    this.page.legend.show(null);
    this.page.status.textContent = 'Waiting for a trace…';
  }

  /** Standalone report: loads the traces embedded in the page. */
  loadEmbedded(): void {
    try {
      const trace = embedded('parallax-trace');
      const config = (embedded('parallax-config') ?? {}) as { title?: unknown; compareTitle?: unknown };
      if (trace !== undefined && trace !== null) {
        void this.handle({
          type: 'load',
          trace,
          compare: embedded('parallax-compare') ?? undefined,
          title: typeof config.title === 'string' ? config.title : undefined,
          compareTitle: typeof config.compareTitle === 'string' ? config.compareTitle : undefined,
        });
      }
    } catch (e) {
      this.showError(`The embedded trace is not valid JSON: ${e instanceof Error ? e.message : String(e)}`);
    }
  }
}

