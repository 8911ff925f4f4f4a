/** What the timeline reports to the test hook (`window.__parallax.stats()`). */
import type { ViewStats } from '../hook-api';
import type { Timeline } from './index';

export type TimelineStats = Pick<ViewStats, 'visible' | 'extent' | 'axis' | 'canvas' | 'drawn' | 'selection' | 'highlight' | 'hover' | 'selected' | 'tooltip' | 'lanes' | 'scrollY' | 'filter' | 'labels'>;

export function timelineStats(t: Timeline): TimelineStats {
  const [v0, v1] = t.visibleRange();
  const [e0, e1] = t.extent();
  const d = t.spans.drawn;
  return {
    visible: { startUs: v0, endUs: v1 },
    extent: { startUs: e0, endUs: e1 },
    axis: { ticks: [...t.viewport.axisTicks], unit: t.viewport.axisUnitName },
    canvas: { width: t.viewport.width, height: t.viewport.height, dpr: t.dpr },
    drawn: { ...d, rects: { ...d.rects }, merged: { ...d.merged }, phaseMs: { ...t.phaseMs } },
    selection: t.selection ? { startUs: t.selection.v0, endUs: t.selection.v1 } : null,
    highlight: t.highlight
      ? {
          lanes: [...t.highlight.lanes].map((k) => {
            const [run, lane] = k.split(':').map(Number);
            return { run, lane };
          }),
          startUs: t.highlight.v0,
          endUs: t.highlight.v1,
        }
      : null,
    hover: t.hover ? { ...t.hover } : null,
    selected: t.selected ? { ...t.selected } : null,
    tooltip: { visible: t.tooltip.visible, text: t.tooltip.text },
    lanes: t.lanes.map((l) => {
      const run = t.runs[l.run];
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
    scrollY: t.scrollY,
    labels: t.labelTexts.slice(0, 100),
    filter: t.filter ? { spans: t.filterCount } : null,
  };
}
