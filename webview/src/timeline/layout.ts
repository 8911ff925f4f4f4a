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
  const p = run.prepared;
  if (kind === ROW_STATE && p.rowStageMin[r] >= 0) {
    return p.rowStageMin[r] === p.rowStageMax[r] ? `stage ${p.rowStageMin[r]}` : `stages ${p.rowStageMin[r]}–${p.rowStageMax[r]}`;
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

/**
 * Lays the runs out top to bottom (run header in the compare view, then per physical unit a
 * group header and its lanes) and fills `gutter` with their labels.
 */
export function buildLayout(runs: Run[], gutter: HTMLElement, on: LaneHandlers): Layout {
  const out: Layout = { lanes: [], rows: [], headers: [], contentH: 0 };
  gutter.replaceChildren();
  const compare = runs.length > 1;
  let y = 0;
  runs.forEach((run, ri) => {
    if (compare) {
      const text = `${runLetter(ri)} · ${displayText(run.title, 120)}${run.predicted ? ' · predicted' : ''}`;
      out.headers.push({ kind: 'run', run: ri, text, y, h: RUN_HEADER_H });
      gutter.append(runHeaderEl(run, ri, y));
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
      out.headers.push({ kind: 'group', run: ri, text: group, y, h: GROUP_HEADER_H });
      gutter.append(groupHeaderEl(group, y));
      y += GROUP_HEADER_H;
      for (const li of laneIdx) {
        const rows: RowLayout[] = [];
        let ry = y;
        for (let kind = 0; kind < ROWS_PER_LANE; kind++) {
          const r = li * ROWS_PER_LANE + kind;
          const n = p.rowOffsets[r + 1] - p.rowOffsets[r];
          if (kind !== ROW_STATE && n === 0) continue;
          rows.push({ run: ri, lane: li, kind, r, y: ry, h: ROW_H[kind], label: rowLabel(run, r, kind) });
          ry += ROW_H[kind];
        }
        const h = Math.max(LANE_MIN_H, ry - y);
        const index = out.lanes.length;
        const e = laneEl(run, ri, li, rows, y, h, compare);
        e.tabIndex = index === 0 ? 0 : -1;
        e.addEventListener('focus', () => on.focus(index));
        e.addEventListener('keydown', (ev) => on.key(ev, index));
        e.addEventListener('click', () => on.click(index));
        gutter.append(e);
        out.lanes.push({ run: ri, lane: li, y, h, rows, el: e });
        out.rows.push(...rows);
        y += h + LANE_GAP;
      }
    }
  });
  out.contentH = y;
  gutter.style.height = `${y}px`;
  return out;
}
