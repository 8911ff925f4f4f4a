/** The test hook, `window.__parallax` (types in hook-api.ts): read-only statistics and calls that resolve after the frame. */
import type { App } from './app';
import type { ParallaxHook, ViewStats } from './hook-api';
import { runSpanCount } from './data';
import { localIndex } from './tiles';
import { lastPrepWhere } from './prep-client';
import { cssOf } from './theme';

/**
 * Span refs as the hook speaks them: indices into the trace. For a run shown in tiles the
 * timeline holds positions in the current tile; these map them (-1: a merged bucket).
 */
function toTrace(app: App, ref: { run: number; span: number } | null): { run: number; span: number } | null {
  const st = ref ? app.runs[ref.run]?.tiled : null;
  return ref && st ? { run: ref.run, span: st.index[ref.span] ?? -1 } : ref;
}

export function viewStats(app: App): ViewStats {
  const { timeline } = app;
  const t = timeline.stats();
  t.hover = toTrace(app, t.hover);
  t.selected = toTrace(app, t.selected);
  const last = timeline.frameMs[timeline.frameMs.length - 1] ?? 0;
  return {
    loaded: app.loaded,
    error: app.lastError,
    runs: app.runs.map((r) => ({
      title: r.title,
      source: r.trace.meta.source,
      predicted: r.predicted,
      emulated: r.emulated,
      spans: runSpanCount(r),
      lanes: r.trace.lanes.length,
      offsetUs: r.offsetUs,
      counts: { ...r.prepared.counts },
      findings: r.findings.length,
      stepMedianUs: r.summary?.stepTimeUs?.median ?? null,
    })),
    ...t,
    frame: { count: timeline.frameCount, lastMs: last, firstFrameMs: app.firstFrameMs, prepMs: app.prepMs, prepWhere: lastPrepWhere },
    findings: app.findingButtons.length,
    ops: app.ops.state(),
    search: app.search.state(),
    legend: app.page.legend.labels(),
    alignedStep: app.alignedStep,
    tiles: app.runs.some((r) => r.tiled) ? { ...app.tiles.stats } : null,
    theme: { dark: app.palette?.dark ?? false, background: app.palette?.css.bg ?? '', laneBand: app.palette ? cssOf(app.palette.laneAlt) : '' },
  };
}

export function createHook(app: App): ParallaxHook {
  const { timeline, host } = app;
  return {
    stats: () => viewStats(app),
    frameTimes: () => [...timeline.frameMs],
    locate: (run, span) => {
      const st = app.runs[run]?.tiled;
      const local = st ? localIndex(st, span) : span;
      return local >= 0 ? timeline.locate({ run, span: local }) : null;
    },
    get sent() {
      return [...host.sent];
    },
    load: async (trace, compare, titles, tiled) => {
      await app.load(trace, compare, titles ?? {}, tiled);
      return viewStats(app);
    },
    setView: async (a, b) => {
      timeline.setView(a, b, false);
      await timeline.whenDrawn();
      return viewStats(app);
    },
    askHost: (run, query) => app.hostQueries.ask(run, query),
    nextFrame: async () => {
      await timeline.whenDrawn();
      return viewStats(app);
    },
  };
}

