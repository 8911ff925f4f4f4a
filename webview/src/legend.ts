/**
 * The legend of the timeline: the draw classes (compute, operators, communication, idle by
 * cause, emulated, predicted) and marks (flows, collectives, selection, highlight) of what is
 * shown — only those present in the loaded trace(s).
 */
import type { Run } from './data';
import {
  CLASS_MASK,
  C_BACKPRESSURE,
  C_BUBBLE,
  C_COLLECTIVE,
  C_COMM,
  C_COMPUTE,
  C_HOST,
  C_IDLE_OTHER,
  C_OP,
  C_OP_ALT,
  C_STAGING,
  M_EMULATED,
  M_PREDICTED,
} from './model';
import { paintSwatch } from './painter';
import { CLASS_LABELS, type Palette } from './theme';
import { el } from './dom';

/** Legend entries painted with the same painter as the canvas, so patterns match exactly. */
const LEGEND_CLASSES: { cls: number; label: string }[] = [
  { cls: C_COMPUTE, label: CLASS_LABELS[C_COMPUTE] },
  { cls: C_OP, label: 'operator' },
  { cls: C_OP_ALT, label: 'operator (next)' },
  { cls: C_COMM, label: CLASS_LABELS[C_COMM] },
  { cls: C_STAGING, label: CLASS_LABELS[C_STAGING] },
  { cls: C_BUBBLE, label: CLASS_LABELS[C_BUBBLE] },
  { cls: C_COLLECTIVE, label: CLASS_LABELS[C_COLLECTIVE] },
  { cls: C_HOST, label: CLASS_LABELS[C_HOST] },
  { cls: C_IDLE_OTHER, label: CLASS_LABELS[C_IDLE_OTHER] },
  { cls: C_BACKPRESSURE, label: CLASS_LABELS[C_BACKPRESSURE] },
  { cls: C_COMM | M_EMULATED, label: 'emulated (dotted)' },
  { cls: C_COMPUTE | M_PREDICTED, label: 'predicted (striped)' },
];

type MarkKind = 'flow' | 'collective' | 'selection' | 'highlight';

/** What the shown runs hold that the legend has an entry for. */
export interface Present {
  /** Draw classes with their modifier bits, as found in `prepared.cls`. */
  classes: Set<number>;
  flows: boolean;
  collectives: boolean;
}

/** Scans the runs' draw classes (one byte per span) and their flows and collective groups. */
export function presentIn(runs: readonly Run[]): Present {
  const seen = new Uint8Array(256);
  let flows = false;
  let collectives = false;
  for (const r of runs) {
    const cls = r.prepared.cls;
    for (let i = 0; i < cls.length; i++) seen[cls[i]] = 1;
    if (r.prepared.flows.send.length > 0) flows = true;
    if (r.prepared.collectives.offsets.length > 1) collectives = true;
  }
  const classes = new Set<number>();
  seen.forEach((v, c) => v && classes.add(c));
  return { classes, flows, collectives };
}

/** True when a legend entry for draw class `cls` (modifiers included) describes something present. */
function shows(cls: number, p: Present): boolean {
  const mods = cls & (M_EMULATED | M_PREDICTED);
  for (const c of p.classes) {
    if (mods !== 0) {
      if ((c & mods) !== 0) return true;
    } else if ((c & CLASS_MASK) === cls) return true;
  }
  return false;
}

/**
 * The legend: one entry per draw class and mark the shown trace(s) hold, painted with the
 * same painter as the canvas so that patterns match exactly. The selected range and the
 * lane highlight are always listed: any trace can have them.
 */
export class Legend {
  readonly root = el('div', 'px-legend');
  private swatches: { canvas: HTMLCanvasElement; cls: number }[] = [];
  private marks: { canvas: HTMLCanvasElement; kind: MarkKind }[] = [];
  private palette: Palette | null = null;

  constructor() {
    this.root.setAttribute('role', 'list');
    this.root.setAttribute('aria-label', 'Legend');
    this.show(null);
  }

  /** Lists the entries for what `present` holds (null: only the always-listed marks). */
  show(present: Present | null): void {
    this.root.replaceChildren();
    this.swatches = [];
    this.marks = [];
    if (present) for (const e of LEGEND_CLASSES) if (shows(e.cls, present)) this.add(e.label, (c) => this.swatches.push({ canvas: c, cls: e.cls }));
    if (present?.flows) this.add('flow: send → recv', (c) => this.marks.push({ canvas: c, kind: 'flow' }));
    if (present?.collectives) this.add('collective (all ranks released)', (c) => this.marks.push({ canvas: c, kind: 'collective' }));
    this.add('selected range', (c) => this.marks.push({ canvas: c, kind: 'selection' }));
    this.add('finding / highlighted lane', (c) => this.marks.push({ canvas: c, kind: 'highlight' }));
    if (this.palette) this.paint(this.palette);
  }

  /** The labels listed now. */
  labels(): string[] {
    return [...this.root.querySelectorAll('.px-legend-item > span')].map((s) => s.textContent ?? '');
  }

  private add(label: string, keep: (c: HTMLCanvasElement) => void): void {
    const item = el('span', 'px-legend-item');
    item.setAttribute('role', 'listitem');
    const c = el('canvas', 'px-swatch');
    c.width = 18;
    c.height = 12;
    c.setAttribute('aria-hidden', 'true');
    keep(c);
    item.append(c, el('span', 'px-legend-label', label));
    this.root.append(item);
  }

  paint(p: Palette): void {
    this.palette = p;
    for (const s of this.swatches) paintSwatch(s.canvas, p, s.cls);
    for (const m of this.marks) {
      const ctx = m.canvas.getContext('2d');
      if (!ctx) continue;
      const w = m.canvas.width;
      const h = m.canvas.height;
      ctx.clearRect(0, 0, w, h);
      if (m.kind === 'flow') {
        ctx.strokeStyle = p.css.flow;
        ctx.fillStyle = p.css.flow;
        ctx.lineWidth = 1.25;
        ctx.beginPath();
        ctx.moveTo(1, 3);
        ctx.bezierCurveTo(9, 3, 9, 9, 14, 9);
        ctx.stroke();
        ctx.beginPath();
        ctx.moveTo(17, 9);
        ctx.lineTo(12, 6.5);
        ctx.lineTo(12, 11.5);
        ctx.fill();
      } else if (m.kind === 'collective') {
        ctx.fillStyle = p.css.collectiveMarker;
        ctx.strokeStyle = p.css.collectiveMarker;
        ctx.beginPath();
        ctx.moveTo(6, 2);
        ctx.lineTo(10, 6);
        ctx.lineTo(6, 10);
        ctx.lineTo(2, 6);
        ctx.fill();
        ctx.setLineDash([2, 1]);
        ctx.beginPath();
        ctx.moveTo(14.5, 0);
        ctx.lineTo(14.5, h);
        ctx.stroke();
      } else {
        ctx.fillStyle = m.kind === 'selection' ? p.css.selection : p.css.highlight;
        ctx.fillRect(0, 0, w, h);
        ctx.strokeStyle = p.css.focus;
        ctx.strokeRect(0.5, 0.5, w - 1, h - 1);
      }
    }
  }
}

