/**
 * Input: wheel (zoom, horizontal pan, shift+wheel scrolls lanes), pointer hover and clicks,
 * Perfetto's W/A/S/D keys anywhere outside text fields, and keyboard navigation of lanes and
 * spans in the gutter. d3-zoom handles drag and vertical wheel itself (viewport.ts).
 */
import { ROWS_PER_LANE, ROW_STATE, visibleSpan } from '../model';
import type { Timeline } from './index';

/** Wires the canvas area and the document to the timeline. */
export function attachInput(t: Timeline, wrap: HTMLElement): void {
  wrap.addEventListener('wheel', (e) => onWheel(t, e), { passive: false });
  wrap.addEventListener('pointermove', (e) => onPointerMove(t, e));
  wrap.addEventListener('pointerleave', () => {
    t.pointer = null;
    if (t.hover) {
      t.hover = null;
      t.requestDraw();
    }
    if (!t.selected) t.tooltip.hide();
  });
  wrap.addEventListener('click', (e) => {
    const hit = t.hitTest(e.offsetX, e.offsetY);
    t.selected = hit;
    if (hit) t.showTooltipAt(hit, e.offsetX, e.offsetY);
    t.requestDraw();
  });
  wrap.addEventListener('dblclick', (e) => {
    const hit = t.hitTest(e.offsetX, e.offsetY);
    if (hit) t.cb.onOpenSource(hit);
  });
  wrap.addEventListener('keydown', (e) => {
    if (e.key === 'ArrowUp' || e.key === 'ArrowDown') {
      e.preventDefault();
      t.lanes[t.focusLane]?.el.focus();
    }
  });
  document.addEventListener('keydown', (e) => onGlobalKey(t, e));
}

function onWheel(t: Timeline, e: WheelEvent): void {
  if (e.shiftKey) {
    e.preventDefault();
    t.scrollBy(e.deltaY || e.deltaX);
  } else if (Math.abs(e.deltaX) > Math.abs(e.deltaY)) {
    e.preventDefault();
    t.panBy(e.deltaX * (e.deltaMode === 1 ? 20 : 1));
  }
}

function onPointerMove(t: Timeline, e: PointerEvent): void {
  t.pointer = { x: e.offsetX, y: e.offsetY };
  if (e.buttons !== 0 || t.viewport.brushing) return;
  const hit = t.hitTest(e.offsetX, e.offsetY);
  const same = hit && t.hover && hit.run === t.hover.run && hit.span === t.hover.span;
  if (!same) {
    t.hover = hit;
    t.requestDraw();
  }
  if (hit) t.showTooltipAt(hit, e.offsetX, e.offsetY);
  else if (t.selected) t.showSelectedTooltip();
  else t.tooltip.hide();
}

function isTyping(e: KeyboardEvent): boolean {
  const el = e.target as HTMLElement | null;
  return !!el && (el.tagName === 'INPUT' || el.tagName === 'TEXTAREA' || el.tagName === 'SELECT' || el.isContentEditable);
}

/** Perfetto's navigation keys work wherever focus is, except in text fields. */
function onGlobalKey(t: Timeline, e: KeyboardEvent): void {
  if (e.defaultPrevented || e.ctrlKey || e.metaKey || e.altKey || isTyping(e) || t.runs.length === 0) return;
  const k = e.key.toLowerCase();
  if (k === 'w') t.zoomBy(1.25);
  else if (k === 's') t.zoomBy(0.8);
  else if (k === 'a') t.panBy(-t.viewport.width * 0.1);
  else if (k === 'd') t.panBy(t.viewport.width * 0.1);
  else if (k === '0') t.resetView();
  else if (k === 'f') t.fitSelection();
  else if (k === 'escape') t.clearAll();
  else return;
  e.preventDefault();
}

/** Keys on a focused lane of the gutter. */
export function onLaneKey(t: Timeline, e: KeyboardEvent, index: number): void {
  const move = (to: number): void => {
    const l = t.lanes[Math.max(0, Math.min(t.lanes.length - 1, to))];
    if (!l) return;
    for (const o of t.lanes) o.el.tabIndex = -1;
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
      move(t.lanes.length - 1);
      break;
    case 'ArrowLeft':
    case 'ArrowRight':
      stepSpan(t, index, e.key === 'ArrowRight' ? 1 : -1);
      break;
    case 'Enter':
      if (t.selected) {
        if (e.shiftKey) t.cb.onOpenSource(t.selected);
        else t.fitSpan(t.selected);
      } else t.toggleLaneHighlight(index);
      break;
    default:
      return;
  }
  e.preventDefault();
}

/** Moves the keyboard selection to the next/previous span of a lane's state row. */
function stepSpan(t: Timeline, index: number, dir: 1 | -1): void {
  const lane = t.lanes[index];
  if (!lane) return;
  const run = t.runs[lane.run];
  const p = run.prepared;
  const sp = run.trace.spans;
  const r = lane.lane * ROWS_PER_LANE + ROW_STATE;
  const a = p.rowOffsets[r];
  const b = p.rowOffsets[r + 1];
  if (a === b) return;
  let pos = -1;
  if (t.selected && t.selected.run === lane.run && sp.lane[t.selected.span] === lane.lane) {
    for (let q = a; q < b; q++) if (p.order[q] === t.selected.span) pos = q;
  }
  if (pos < 0) {
    const [v0, v1] = t.visibleRange();
    const mid = (v0 + v1) / 2 + run.offsetUs;
    pos = visibleSpan(a, b, (q) => sp.start[p.order[q]], p.maxEnd, mid, mid)[0];
    pos = Math.min(b - 1, Math.max(a, dir > 0 ? pos : pos - 1));
  } else {
    pos = Math.min(b - 1, Math.max(a, pos + dir));
  }
  const i = p.order[pos];
  t.selected = { run: lane.run, span: i };
  const [v0, v1] = t.visibleRange();
  const s = sp.start[i] - run.offsetUs;
  const e2 = s + sp.dur[i];
  if (e2 < v0 || s > v1) {
    const w = v1 - v0;
    t.setView(s + sp.dur[i] / 2 - w / 2, s + sp.dur[i] / 2 + w / 2, false);
  }
  t.requestDraw();
  void t.whenDrawn().then(() => t.showSelectedTooltip());
}
