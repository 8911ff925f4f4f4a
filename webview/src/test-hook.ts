/** The test hook, `window.__parallax` (types in hook-api.ts): read-only statistics and calls that resolve after the frame. */
import type { App } from './app';
import type { ParallaxHook, ViewStats } from './hook-api';
import { runSpanCount } from './data';
import { localIndex } from './tiles';
import { rowKindOf } from './model';
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
    tiles: app.runs.some((r) => r.tiled) ? { ...app.tiles.stats, spansNamed: app.spanAt.answered } : null,
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
    locateMerged: (run, rowKind) => {
      const r = app.runs[run];
      const st = r?.tiled;
      if (!r || !st) return null;
      const sp = r.trace.spans;
      let best: { x: number; y: number; lane: number; row: number; startUs: number; endUs: number } | null = null;
      let bestD = Infinity;
      const [v0, v1] = timeline.visibleRange();
      const mid = (v0 + v1) / 2 + r.offsetUs;
      for (let i = 0; i < sp.count; i++) {
        if (!(st.merged[i]! > 0)) continue;
        const row = rowKindOf(sp.kind[i]!, sp.parent[i]!, sp.flags[i]!);
        if (rowKind !== undefined && row !== rowKind) continue;
        const d = Math.abs(sp.start[i]! + sp.dur[i]! / 2 - mid);
        if (d >= bestD) continue;
        const at = timeline.locate({ run, span: i });
        if (!at) continue;
        bestD = d;
        best = { ...at, lane: sp.lane[i]!, row, startUs: sp.start[i]!, endUs: sp.start[i]! + sp.dur[i]! };
      }
      return best;
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

