/**
 * Entry of the timeline bundle (webview/dist/timeline.js + timeline.css). Builds the page,
 * wires the host channel and the test hook, and loads either what the host sends (VS Code)
 * or the traces embedded in the page (standalone report: `<script type="application/json">`
 * blocks with ids `parallax-trace`, `parallax-compare` and `parallax-config`).
 */
import './timeline.css';
import { loadRun, runOrigin, runSummary, type Run } from './data';
import { displayText } from './format';
import type { ParallaxHook, ViewStats } from './hook-api';
import { createHost } from './host';
import { Legend, el, renderFindings, renderRange, renderSummary } from './panels';
import { lastPrepWhere } from './prep-client';
import { PROTOCOL_VERSION, readToWebview, type ToWebview } from './protocol';
import { readPalette, watchTheme, type Palette } from './theme';
import { Timeline } from './timeline';

/** Below this many spans the summary is computed before the first frame; above, just after. */
const SUMMARY_SYNC_SPANS = 200_000;

function boot(): void {
  const host = createHost();
  document.documentElement.classList.add(host.kind === 'vscode' ? 'px-in-vscode' : 'px-standalone');

  const app = el('div', 'px-app');
  const header = el('header', 'px-header');
  const title = el('h1', 'px-title', 'Parallax timeline');
  title.dir = 'auto';
  const status = el('span', 'px-status', 'Waiting for a trace…');
  status.setAttribute('role', 'status');
  const legend = new Legend();
  header.append(title, status, legend.root);
  const errorBox = el('div', 'px-error');
  errorBox.setAttribute('role', 'alert');
  errorBox.hidden = true;
  const summary = el('section', 'px-summary');
  summary.setAttribute('aria-label', 'Summary');
  const main = el('div', 'px-main');
  const tlRoot = el('div');
  const side = el('aside', 'px-side');
  const findingsBox = el('section', 'px-findings-box');
  findingsBox.setAttribute('aria-label', 'Findings');
  const rangeBox = el('section', 'px-range-box');
  rangeBox.setAttribute('aria-label', 'Selected range');
  side.append(findingsBox, rangeBox);
  main.append(tlRoot, side);
  app.append(header, errorBox, summary, main);
  document.body.append(app);

  let runs: Run[] = [];
  let findingButtons: HTMLButtonElement[] = [];
  let palette: Palette | null = null;
  let loaded = false;
  let lastError: string | null = null;
  let firstFrameMs: number | null = null;
  let prepMs = 0;
  let generation = 0;

  const timeline = new Timeline(tlRoot, {
    onSelectRange(range) {
      renderRange(rangeBox, runs, range);
      const off = runs[0]?.offsetUs ?? 0;
      host.post({ type: 'selectRange', startUs: range ? range.v0 + off : null, endUs: range ? range.v1 + off : null });
    },
    onOpenSource(ref) {
      const run = runs[ref.run];
      if (!run) return;
      const sp = run.trace.spans;
      const lane = run.trace.lanes[sp.lane[ref.span]];
      host.post({
        type: 'openSource',
        run: ref.run,
        span: ref.span,
        name: run.trace.strings[sp.name[ref.span]] ?? '',
        opType: sp.opType[ref.span] >= 0 ? (run.trace.strings[sp.opType[ref.span]] ?? null) : null,
        lane: sp.lane[ref.span],
        device: run.trace.meta.devices[lane?.device ?? -1]?.id ?? '',
      });
    },
    onView() {
      /* The view lives in the timeline; nothing else follows it yet. */
    },
  });

  const refreshTheme = (): void => {
    palette = readPalette();
    timeline.setPalette(palette);
    legend.paint(palette);
  };
  refreshTheme();
  watchTheme(refreshTheme);

  const showError = (message: string): void => {
    lastError = message;
    errorBox.textContent = message;
    errorBox.hidden = false;
    status.textContent = 'Could not show the trace.';
    host.post({ type: 'error', message });
  };

  const selectFinding = (ri: number, fi: number): void => {
    const run = runs[ri];
    const f = run?.findings[fi];
    if (!run || !f) return;
    const v0 = f.evidence.startUs - run.offsetUs;
    const v1 = f.evidence.endUs - run.offsetUs;
    const pad = Math.max((v1 - v0) * 0.04, 1);
    timeline.setView(v0 - pad, v1 + pad);
    timeline.setHighlight({ lanes: new Set(f.evidence.lanes.map((l) => `${ri}:${l}`)), v0, v1 });
    let k = 0;
    runs.forEach((r, rj) =>
      r.findings.forEach((_, fj) => {
        findingButtons[k++]?.setAttribute('aria-pressed', String(rj === ri && fj === fi));
      }),
    );
    host.post({ type: 'selectFinding', run: ri, index: fi, id: f.id });
  };

  const defaultTitle = (doc: unknown, i: number): string => {
    const meta = (doc as { meta?: { model?: { path?: unknown }; mode?: unknown; source?: unknown } }).meta;
    const model = typeof meta?.model?.path === 'string' ? meta.model.path : 'run';
    const mode = typeof meta?.mode === 'string' ? meta.mode : '';
    return `${model}${mode ? ` · ${mode}` : ''}${i > 0 ? ' (compare)' : ''}`;
  };

  const load = async (trace: unknown, compare: unknown, titles: { title?: string; compareTitle?: string }): Promise<void> => {
    const gen = ++generation;
    const t0 = performance.now();
    loaded = false;
    lastError = null;
    errorBox.hidden = true;
    status.textContent = 'Preparing the trace…';
    let next: Run[];
    try {
      const docs = compare === undefined ? [trace] : [trace, compare];
      next = await Promise.all(docs.map((d, i) => loadRun(d, (i === 0 ? titles.title : titles.compareTitle) ?? defaultTitle(d, i))));
    } catch (e) {
      if (gen === generation) showError(`This trace cannot be shown: ${e instanceof Error ? e.message : String(e)}`);
      return;
    }
    if (gen !== generation) return;
    if (next.length > 1) for (const r of next) r.offsetUs = runOrigin(r);
    runs = next;
    prepMs = Math.max(...next.map((r) => r.prepared.prepMs));
    const total = next.reduce((a, r) => a + r.trace.spans.count, 0);
    const docTitle = next.length > 1 ? `${next[0].title} vs ${next[1].title}` : next[0].title;
    title.textContent = displayText(docTitle, 200);
    document.title = `Parallax · ${displayText(docTitle, 100)}`;
    if (total <= SUMMARY_SYNC_SPANS) for (const r of next) r.summary = runSummary(r);
    timeline.setRuns(next);
    renderSummary(summary, next);
    findingButtons = renderFindings(findingsBox, next, (ri, fi) => selectFinding(ri, fi));
    renderRange(rangeBox, next, null);
    await timeline.whenDrawn();
    // One more animation frame: the drawn frame has then been presented.
    await new Promise<void>((r) => requestAnimationFrame(() => r()));
    if (gen !== generation) return;
    firstFrameMs = performance.now() - t0;
    loaded = true;
    const kinds = next.map((r) => (r.predicted ? 'predicted' : r.trace.meta.source));
    status.textContent = `${total.toLocaleString('en-US')} spans · ${next.length > 1 ? `compare (${kinds.join(' vs ')})` : kinds[0]}`;
    host.post({
      type: 'loaded',
      runs: next.map((r) => ({ spans: r.trace.spans.count, lanes: r.trace.lanes.length, source: r.trace.meta.source })),
      firstFrameMs,
    });
    if (total > SUMMARY_SYNC_SPANS) {
      setTimeout(() => {
        if (gen !== generation) return;
        for (const r of next) r.summary = runSummary(r);
        renderSummary(summary, next);
      }, 0);
    }
  };

  const handle = async (data: unknown): Promise<void> => {
    const read = readToWebview(data);
    if (!read.ok) {
      lastError = read.error;
      host.post({ type: 'error', message: read.error });
      return;
    }
    const m: ToWebview = read.message;
    switch (m.type) {
      case 'load':
        await load(m.trace, m.compare, { title: m.title, compareTitle: m.compareTitle });
        break;
      case 'reveal': {
        const ri = m.run ?? 0;
        const run = runs[ri];
        if (!run) return;
        const v0 = m.startUs - run.offsetUs;
        const v1 = m.endUs - run.offsetUs;
        const pad = Math.max((v1 - v0) * 0.04, 1);
        timeline.setView(v0 - pad, v1 + pad);
        if (m.lanes) timeline.setHighlight({ lanes: new Set(m.lanes.map((l) => `${ri}:${l}`)), v0, v1 });
        break;
      }
      case 'selectFinding':
        selectFinding(m.run ?? 0, m.index);
        break;
      case 'theme':
        refreshTheme();
        break;
      case 'clear':
        generation++;
        runs = [];
        loaded = false;
        timeline.setRuns([]);
        summary.replaceChildren();
        findingsBox.replaceChildren();
        rangeBox.replaceChildren();
        status.textContent = 'Waiting for a trace…';
        break;
    }
  };
  host.listen((d) => void handle(d));

  const stats = (): ViewStats => {
    const t = timeline.stats();
    const last = timeline.frameMs[timeline.frameMs.length - 1] ?? 0;
    return {
      loaded,
      error: lastError,
      runs: runs.map((r) => ({
        title: r.title,
        source: r.trace.meta.source,
        predicted: r.predicted,
        emulated: r.emulated,
        spans: r.trace.spans.count,
        lanes: r.trace.lanes.length,
        offsetUs: r.offsetUs,
        counts: { ...r.prepared.counts },
        findings: r.findings.length,
        stepMedianUs: r.summary?.stepTimeUs?.median ?? null,
      })),
      ...t,
      frame: { count: timeline.frameCount, lastMs: last, firstFrameMs, prepMs, prepWhere: lastPrepWhere },
      findings: findingButtons.length,
      theme: { dark: palette?.dark ?? false, background: palette?.css.bg ?? '' },
    };
  };
  const hook: ParallaxHook = {
    stats,
    frameTimes: () => [...timeline.frameMs],
    locate: (run, span) => timeline.locate({ run, span }),
    get sent() {
      return [...host.sent];
    },
    load: async (trace, compare, titles) => {
      await load(trace, compare, titles ?? {});
      return stats();
    },
    setView: async (a, b) => {
      timeline.setView(a, b, false);
      await timeline.whenDrawn();
      return stats();
    },
    nextFrame: async () => {
      await timeline.whenDrawn();
      return stats();
    },
  };
  Object.defineProperty(window, '__parallax', { value: Object.freeze(hook), configurable: false, writable: false });

  // Standalone report: the traces are embedded in the page.
  const embedded = (id: string): unknown => {
    const node = document.getElementById(id);
    if (!node || node.getAttribute('type') !== 'application/json') return undefined;
    return JSON.parse(node.textContent ?? 'null') as unknown;
  };
  if (host.kind === 'standalone') {
    try {
      const trace = embedded('parallax-trace');
      const config = (embedded('parallax-config') ?? {}) as { title?: unknown; compareTitle?: unknown };
      if (trace !== undefined && trace !== null) {
        void handle({
          type: 'load',
          trace,
          compare: embedded('parallax-compare') ?? undefined,
          title: typeof config.title === 'string' ? config.title : undefined,
          compareTitle: typeof config.compareTitle === 'string' ? config.compareTitle : undefined,
        });
      }
    } catch (e) {
      showError(`The embedded trace is not valid JSON: ${e instanceof Error ? e.message : String(e)}`);
    }
  }
  host.post({ type: 'ready', protocol: PROTOCOL_VERSION });
}

if (document.readyState === 'loading') document.addEventListener('DOMContentLoaded', boot);
else boot();
