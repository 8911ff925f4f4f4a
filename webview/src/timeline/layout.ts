/**
 * Lane layout: where each run header, physical-unit group, lane and row sits in the content
 * (CSS px from the top), and the gutter's DOM labels for them. The gutter is a list of
 * focusable lanes; the handlers given here are wired to each lane element.
 */
import type { Run } from '../data';
import { displayText } from '../format';
import { ROWS_PER_LANE, ROW_OPS, ROW_STATE } from '../model';
import { GROUP_HEADER_H, LANE_GAP, LANE_MIN_H, ROW_H, RUN_HEADER_H, el, runLetter, type Header, type LaneLayout, type RowLayout } from './types';

export interface Layout {
  lanes: LaneLayout[];
  rows: RowLayout[];
  headers: Header[];
  /** Height of all content, CSS px. */
  contentH: number;
}

/** What a lane's gutter element does when focused, clicked or given a key. */
export interface LaneHandlers {
  focus(index: number): void;
  key(e: KeyboardEvent, index: number): void;
  click(index: number): void;
}

/** The label of a lane row: its kind, or the pipeline stage(s) its state row runs. */
function rowLabel(run: Run, r: number, kind: number): string {
  // A run shown in tiles: the host's summary of the whole trace, not the tile in hand.
  const info = run.tiled?.info;
  const lo = info ? (info.rowStageMin[r] ?? -1) : run.prepared.rowStageMin[r];
  const hi = info ? (info.rowStageMax[r] ?? -1) : run.prepared.rowStageMax[r];
  if (kind === ROW_STATE && lo >= 0) {
    return lo === hi ? `stage ${lo}` : `stages ${lo}–${hi}`;
  }
  return kind === ROW_STATE ? 'compute' : kind === ROW_OPS ? 'ops' : 'comm';
}

function runHeaderEl(run: Run, ri: number, y: number): HTMLElement {
  const h = el('div', 'px-run-header');
  h.style.top = `${y}px`;
  h.style.height = `${RUN_HEADER_H}px`;
  const title = el('span', 'px-label-text', displayText(run.title, 120));
  h.title = displayText(run.title, 1000);
  h.append(el('span', 'px-run-letter', runLetter(ri)), title);
  if (run.predicted) h.append(el('span', 'px-badge px-badge-predicted', 'predicted'));
  return h;
}

function groupHeaderEl(group: string, y: number): HTMLElement {
  const gh = el('div', 'px-group-header');
  gh.style.top = `${y}px`;
  gh.style.height = `${GROUP_HEADER_H}px`;
  gh.append(el('span', 'px-label-text', displayText(group, 120)));
  gh.title = `physical unit: ${displayText(group, 500)}`;
  return gh;
}

/** The gutter element of one lane: its label, badges and row labels. */
function laneEl(run: Run, ri: number, li: number, rows: RowLayout[], y: number, h: number, compare: boolean): HTMLElement {
  const t = run.trace;
  const lane = t.lanes[li];
  const dev = t.meta.devices[lane.device];
  const e = el('div', 'px-lane');
  e.setAttribute('role', 'listitem');
  e.style.top = `${y}px`;
  e.style.height = `${h}px`;
  const labelText = displayText(lane.label, 200);
  const name = el('span', 'px-label-text px-lane-label', labelText);
  name.dir = 'auto';
  e.title = displayText(lane.label, 1000);
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
  e.append(name, badges, rowLabels);
  e.setAttribute(
    'aria-label',
    `${compare ? `run ${runLetter(ri)}, ` : ''}${labelText}${badgeWords.length ? `, ${badgeWords.join(', ')}` : ''}; rows: ${rows.map((r) => r.label).join(', ')}`,
  );
  return e;
}

/** Lanes grow to fill the view's height, up to this many times their natural height. */
const MAX_GROW = 6;

/** A lane's place before it has an element. */
type Placed = Omit<LaneLayout, 'el'>;

/**
 * Lays the runs out top to bottom (run header in the compare view, then per physical unit a
 * group header and its lanes), rows `grow` times their natural height.
 */
function place(runs: Run[], grow: number): { lanes: Placed[]; headers: Header[]; contentH: number; lanesH: number } {
  const lanes: Placed[] = [];
  const headers: Header[] = [];
  const compare = runs.length > 1;
  let y = 0;
  let lanesH = 0;
  runs.forEach((run, ri) => {
    if (compare) {
      const text = `${runLetter(ri)} · ${displayText(run.title, 120)}${run.predicted ? ' · predicted' : ''}`;
      headers.push({ kind: 'run', run: ri, text, y, h: RUN_HEADER_H });
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
      headers.push({ kind: 'group', run: ri, text: group, y, h: GROUP_HEADER_H });
      y += GROUP_HEADER_H;
      for (const li of laneIdx) {
        const rows: RowLayout[] = [];
        let ry = y;
        for (let kind = 0; kind < ROWS_PER_LANE; kind++) {
          const r = li * ROWS_PER_LANE + kind;
          const n = run.tiled ? (run.tiled.info.rowSpans[r] ?? 0) : p.rowOffsets[r + 1] - p.rowOffsets[r];
          if (kind !== ROW_STATE && n === 0) continue;
          const h = Math.floor(ROW_H[kind] * grow);
          rows.push({ run: ri, lane: li, kind, r, y: ry, h, label: rowLabel(run, r, kind) });
          ry += h;
        }
        const h = Math.max(Math.floor(LANE_MIN_H * grow), ry - y);
        lanes.push({ run: ri, lane: li, y, h, rows });
        lanesH += h;
        y += h + LANE_GAP;
      }
    }
  });
  return { lanes, headers, contentH: y, lanesH };
}

/**
 * Lays the runs out and fills `gutter` with their labels. Lanes share the height of a view
 * `viewH` px tall that they would leave partly empty (each up to {@link MAX_GROW} times its
 * natural height); a view too short for them scrolls instead.
 */
export function buildLayout(runs: Run[], gutter: HTMLElement, on: LaneHandlers, viewH: number): Layout {
  const natural = place(runs, 1);
  const fixed = natural.contentH - natural.lanesH;
  const grow = natural.lanesH > 0 ? Math.max(1, Math.min(MAX_GROW, (viewH - fixed) / natural.lanesH)) : 1;
  const placed = grow > 1 ? place(runs, grow) : natural;
  const compare = runs.length > 1;
  // Headers and lanes go into the gutter in reading order (top to bottom).
  const items: [number, HTMLElement][] = placed.headers.map((h) => [h.y, h.kind === 'run' ? runHeaderEl(runs[h.run], h.run, h.y) : groupHeaderEl(h.text, h.y)]);
  const lanes: LaneLayout[] = placed.lanes.map((l, index) => {
    const e = laneEl(runs[l.run], l.run, l.lane, l.rows, l.y, l.h, compare);
    e.tabIndex = index === 0 ? 0 : -1;
    e.addEventListener('focus', () => on.focus(index));
    e.addEventListener('keydown', (ev) => on.key(ev, index));
    e.addEventListener('click', () => on.click(index));
    items.push([l.y, e]);
    return { ...l, el: e };
  });
  items.sort((a, b) => a[0] - b[0]);
  gutter.replaceChildren(...items.map((i) => i[1]));
  gutter.style.height = `${placed.contentH}px`;
  return { lanes, rows: lanes.flatMap((l) => l.rows), headers: placed.headers, contentH: placed.contentH };
}
