/**
 * The span tooltip: a `role="tooltip"` box inside the canvas area listing the span's fields,
 * linked to the canvas by `aria-describedby` while shown.
 */
import { COMM_OPS, IDLE_CAUSES, PHASES, SPAN_KINDS, SpanFlag, type SpanColumns } from '../../../src/profiler/trace-format';
import type { Run } from '../data';
import { displayText, formatBytes, formatUs } from '../format';
import type { NameCache } from './names';
import { el, runLetter, type SpanRef } from './types';

const HELP_ID = 'px-timeline-help';
const TOOLTIP_ID = 'px-tooltip';
/** Distance of the tooltip from the pointer, CSS px. */
const OFFSET = 14;

export class Tooltip {
  readonly el: HTMLElement;

  constructor(
    private readonly owner: HTMLElement,
    private readonly names: NameCache,
  ) {
    this.el = el('div', 'px-tooltip');
    this.el.setAttribute('role', 'tooltip');
    this.el.id = TOOLTIP_ID;
    this.el.hidden = true;
  }

  get visible(): boolean {
    return !this.el.hidden;
  }

  get text(): string {
    return this.el.hidden ? '' : (this.el.textContent ?? '');
  }

  hide(): void {
    this.el.hidden = true;
    this.owner.removeAttribute('aria-describedby');
    this.owner.setAttribute('aria-describedby', HELP_ID);
  }

  /**
   * Shows span `ref`'s fields near (xCss, yCss), kept inside a `width`×`height` area. Where
   * `ref` is a merged bucket of a tile, `beneath` (when the host has named it) is the span under
   * the pointer: its fields are shown, with a note of the bucket it is drawn in.
   */
  show(runs: readonly Run[], ref: SpanRef, xCss: number, yCss: number, width: number, height: number, beneath?: SpanColumns): void {
    const run = runs[ref.run];
    const t = run.trace;
    const sp = beneath ?? t.spans;
    const i = beneath ? 0 : ref.span;
    const title = el('div', 'px-tt-title', this.names.get(ref.run, sp.name[i]));
    title.dir = 'auto';
    const dl = el('dl', 'px-tt-fields');
    const add = (k: string, v: string): void => {
      const dd = el('dd', '', v);
      dd.dir = 'auto';
      dl.append(el('dt', '', k), dd);
    };
    const kind = SPAN_KINDS[sp.kind[i]] ?? 'compute';
    const isOp = sp.parent[i] >= 0 || (sp.flags[i] & SpanFlag.op) !== 0;
    add('kind', kind === 'idle' ? `idle (${IDLE_CAUSES[sp.cause[i]] ?? 'other'})` : isOp ? 'operator' : kind);
    if (sp.comm[i] !== 0) add('operation', COMM_OPS[sp.comm[i]] ?? '?');
    if (sp.phase[i] !== 0) add('phase', PHASES[sp.phase[i]] ?? '?');
    if (sp.opType[i] >= 0) add('op type', this.names.get(ref.run, sp.opType[i]));
    const lane = t.lanes[sp.lane[i]];
    add('device', displayText(lane?.label ?? String(sp.lane[i]), 200));
    if (runs.length > 1) add('run', `${runLetter(ref.run)} · ${displayText(run.title, 80)}`);
    add('start', formatUs(sp.start[i] - run.offsetUs, 6));
    add('duration', formatUs(sp.dur[i], 4));
    if (sp.step[i] >= 0) add('step', String(sp.step[i]));
    if (sp.micro[i] >= 0) add('micro-batch', String(sp.micro[i]));
    if (sp.stage[i] >= 0) add('stage', String(sp.stage[i]));
    if (sp.bytes[i] > 0) add('bytes', `${formatBytes(sp.bytes[i])} (${sp.bytes[i].toLocaleString('en-US')} B)`);
    if (sp.peer[i] >= 0) add('peer', displayText(t.lanes[sp.peer[i]]?.label ?? String(sp.peer[i]), 200));
    const flags: string[] = [];
    if (sp.flags[i] & SpanFlag.emulated) flags.push('emulated');
    if (sp.flags[i] & SpanFlag.predicted || run.predicted) flags.push('predicted');
    if (sp.flags[i] & SpanFlag.staging) flags.push('staging copy');
    if (sp.flags[i] & SpanFlag.synthetic) flags.push('synthetic data');
    if (sp.flags[i] & SpanFlag.gradient) flags.push('gradients');
    const merged = run.tiled?.merged[ref.span] ?? 0;
    if (beneath) add('merged', `drawn merged with the other spans here (${merged.toLocaleString('en-US')} start in this bucket); zoom in to see them apart`);
    else if (merged > 0) add('merged', `${merged.toLocaleString('en-US')} spans start here; zoom in to see them`);
    if (flags.length) add('note', flags.join(', '));
    this.el.replaceChildren(title, dl);
    this.el.hidden = false;
    this.owner.setAttribute('aria-describedby', TOOLTIP_ID);
    // Keep the tooltip inside the canvas area.
    const tw = this.el.offsetWidth;
    const th = this.el.offsetHeight;
    let left = xCss + OFFSET;
    let top = yCss + OFFSET;
    if (left + tw > width) left = Math.max(0, xCss - tw - OFFSET);
    if (top + th > height) top = Math.max(0, yCss - th - OFFSET);
    this.el.style.left = `${left}px`;
    this.el.style.top = `${top}px`;
  }
}

export { HELP_ID };
