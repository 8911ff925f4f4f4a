/**
 * The operator table under the timeline (as in Perfetto, Nsight Systems and the PyTorch
 * profiler): operator spans grouped by type or by node with count, total, mean, share and
 * time per device, for the brushed range when there is one and for the searched text when
 * there is one. Choosing a row filters the timeline to that operator's spans (the others
 * are dimmed); choosing it again clears the filter. The numbers come from a {@link SpanQueries},
 * so they do not depend on where the spans live.
 */
import type { OpGroupBy, OpStatsResult, QueryRange, SpanFilter } from '../../src/profiler/span-query';
import type { Run } from './data';
import { el } from './dom';
import { displayText, formatPercent, formatUs } from './format';
import type { SpanQueries } from './queries';
import { runLetter } from './timeline/types';

/** Per-device columns shown at most; more devices go into the row's tooltip. */
const MAX_DEVICE_COLUMNS = 8;

export interface OpsPanelHost {
  runs(): readonly Run[];
  readonly queries: SpanQueries;
  /** The brushed range on the trace clock of run `run`, or undefined. */
  range(run: number): QueryRange | undefined;
  /** The searched text ('' when none). */
  text(): string;
  /** The user chose a row (a filter on run `run`) or cleared it (null). */
  onFilter(choice: { run: number; filter: SpanFilter } | null): void;
}

/** What the table shows now, for the test hook. */
export interface OpsTableState {
  open: boolean;
  run: number;
  groupBy: OpGroupBy;
  rows: { key: string; count: number; totalUs: number }[];
  selected: string | null;
}

export class OpsPanel {
  private groupBy: OpGroupBy = 'opType';
  private run = 0;
  private selected: string | null = null;
  private result: OpStatsResult | null = null;
  private generation = 0;
  private readonly body = el('div', 'px-ops-body');
  private readonly toolbar = el('div', 'px-ops-toolbar');

  constructor(
    private readonly root: HTMLElement,
    private readonly host: OpsPanelHost,
  ) {
    root.append(this.toolbar, this.body);
  }

  get open(): boolean {
    return !this.root.hidden;
  }

  state(): OpsTableState {
    return {
      open: this.open,
      run: this.run,
      groupBy: this.groupBy,
      rows: (this.result?.rows ?? []).map((r) => ({ key: r.key, count: r.count, totalUs: r.totalUs })),
      selected: this.selected,
    };
  }

  /** Forgets the chosen row and run (new traces loaded). */
  reset(): void {
    this.run = 0;
    this.selected = null;
    this.result = null;
  }

  /** Clears the chosen row without telling the host (another filter took over). */
  clearSelection(): void {
    this.selected = null;
    for (const tr of this.body.querySelectorAll('tr[aria-selected="true"]')) tr.setAttribute('aria-selected', 'false');
  }

  /** Computes and shows the table again when it is open. */
  async refresh(): Promise<void> {
    if (!this.open || this.host.runs().length === 0) return;
    const gen = ++this.generation;
    const run = Math.min(this.run, this.host.runs().length - 1);
    const text = this.host.text().trim();
    const result = await this.host.queries.ask(run, { type: 'opStats', groupBy: this.groupBy, range: this.host.range(run), ...(text ? { text } : {}) });
    if (gen !== this.generation || result.type !== 'opStats') return;
    this.run = run;
    this.result = result;
    this.render();
  }

  private segmented<T extends string>(label: string, options: [T, string][], current: T, set: (v: T) => void): HTMLElement {
    const g = el('div', 'px-segmented');
    g.setAttribute('role', 'group');
    g.setAttribute('aria-label', label);
    for (const [v, text] of options) {
      const b = el('button', 'px-seg-button', text);
      b.type = 'button';
      b.setAttribute('aria-pressed', String(v === current));
      b.addEventListener('click', () => {
        if (v === current) return;
        set(v);
        this.selected = null;
        this.host.onFilter(null);
        void this.refresh();
      });
      g.append(b);
    }
    return g;
  }

  private render(): void {
    const r = this.result;
    if (!r) return;
    const runs = this.host.runs();
    this.toolbar.replaceChildren(
      el('h2', 'px-side-heading', 'Operators'),
      this.segmented<OpGroupBy>('Group operators', [['opType', 'by type'], ['node', 'by node']], this.groupBy, (v) => (this.groupBy = v)),
    );
    if (runs.length > 1) {
      this.toolbar.append(this.segmented('Run', runs.map((_, i): [string, string] => [String(i), `run ${runLetter(i)}`]), String(this.run), (v) => (this.run = Number(v))));
    }
    const scope: string[] = [`${r.spans.toLocaleString('en-US')} operator spans, ${formatUs(r.totalUs)}`];
    if (this.host.range(this.run)) scope.push('in the selected range');
    if (this.host.text().trim()) scope.push(`matching “${displayText(this.host.text().trim(), 60)}”`);
    this.toolbar.append(el('span', 'px-muted px-ops-scope', scope.join(' · ')));
    if (r.rows.length === 0) {
      this.body.replaceChildren(el('p', 'px-muted', r.spans === 0 && !this.host.text().trim() && !this.host.range(this.run) ? 'This trace has no operator spans (profile with operator detail to see them).' : 'No operator spans match.'));
      return;
    }
    const lanes = r.lanes.slice(0, MAX_DEVICE_COLUMNS);
    const table = el('table', 'px-ops-table');
    const head = el('tr');
    const cols = [this.groupBy === 'opType' ? 'operator type' : 'node', ...(this.groupBy === 'node' ? ['type'] : []), 'count', 'total', 'mean', 'share', ...lanes.map((l) => displayText(l, 40))];
    for (const c of cols) {
      const th = el('th', '', c);
      th.scope = 'col';
      head.append(th);
    }
    const thead = el('thead');
    thead.append(head);
    const tbody = el('tbody');
    for (const row of r.rows) {
      const tr = el('tr', 'px-ops-row');
      tr.tabIndex = 0;
      tr.dataset['key'] = row.key;
      tr.setAttribute('aria-selected', String(row.key === this.selected));
      const name = el('td', 'px-ops-name', displayText(row.key, 200));
      name.title = displayText(row.key, 1000);
      name.dir = 'auto';
      tr.append(name);
      if (this.groupBy === 'node') tr.append(el('td', 'px-ops-type', displayText(row.opType, 60)));
      tr.append(el('td', '', row.count.toLocaleString('en-US')), el('td', '', formatUs(row.totalUs)), el('td', '', formatUs(row.meanUs)), el('td', '', formatPercent(row.share)));
      for (let l = 0; l < lanes.length; l++) tr.append(el('td', '', row.byLaneUs[l] > 0 ? formatUs(row.byLaneUs[l]) : '–'));
      if (r.lanes.length > MAX_DEVICE_COLUMNS) {
        tr.title = r.lanes.map((l, i) => `${displayText(l, 80)}: ${formatUs(row.byLaneUs[i])}`).join('\n');
      }
      const choose = (): void => this.choose(row.key);
      tr.addEventListener('click', choose);
      tr.addEventListener('keydown', (e) => {
        if (e.key === 'Enter' || e.key === ' ') {
          e.preventDefault();
          choose();
        }
      });
      tbody.append(tr);
    }
    table.append(thead, tbody);
    const more = r.totalRows > r.rows.length ? el('p', 'px-muted', `${r.rows.length} of ${r.totalRows.toLocaleString('en-US')} rows shown (the largest).`) : null;
    this.body.replaceChildren(table, ...(more ? [more] : []));
  }

  /** Filters the timeline to a row's spans, or clears the filter when the row is chosen again. */
  private choose(key: string): void {
    this.selected = this.selected === key ? null : key;
    for (const tr of this.body.querySelectorAll<HTMLElement>('tr.px-ops-row')) tr.setAttribute('aria-selected', String(tr.dataset['key'] === this.selected));
    this.host.onFilter(this.selected === null ? null : { run: this.run, filter: { by: this.groupBy, key } });
  }
}
