/**
 * Shapes shared by the timeline's parts: the lane layout, span references, the callbacks
 * the page gives the timeline, and the layout constants.
 */
import { CLASS_MASK, C_COMM, C_COMPUTE, C_OP, C_OP_ALT, C_STAGING } from '../model';
import type { KindCounts } from '../hook-api';

/** Narrowest view, µs across the whole width. */
export const MIN_VIEW_US = 1;
/** Height of the time axis above the canvas, CSS px. */
export const AXIS_H = 28;
export const RUN_HEADER_H = 22;
export const GROUP_HEADER_H = 18;
/** Natural height of each row kind (state, ops, comm), CSS px, before lanes grow to fill the view. */
export const ROW_H = [22, 14, 16];
export const LANE_MIN_H = 32;
export const LANE_GAP = 6;

export interface RowLayout {
  run: number;
  lane: number;
  kind: number;
  /** Row index in the run's prepared model (lane * 3 + kind). */
  r: number;
  y: number;
  h: number;
  label: string;
}

export interface LaneLayout {
  run: number;
  lane: number;
  y: number;
  h: number;
  rows: RowLayout[];
  el: HTMLElement;
}

/** A run header (compare view) or a physical-unit group header, drawn as a band. */
export interface Header {
  kind: 'run' | 'group';
  run: number;
  text: string;
  y: number;
  h: number;
}

export interface SpanRef {
  run: number;
  span: number;
}

/** A view-time range, µs. */
export interface ViewRange {
  v0: number;
  v1: number;
}

/** Lanes (`"run:lane"` keys) outlined and their evidence range tinted. */
export interface Highlight {
  lanes: Set<string>;
  v0: number;
  v1: number;
}

export interface TimelineCallbacks {
  onSelectRange(range: ViewRange | null): void;
  onOpenSource(ref: SpanRef): void;
  onView(): void;
  /**
   * The pointer is over a merged bucket of a tiled run (`ref`), at trace time `timeUs` with
   * the hit tolerance `toleranceUs`: the host can name the span beneath.
   */
  onHoverMerged(ref: SpanRef, timeUs: number, toleranceUs: number): void;
}

export function zeroCounts(): KindCounts {
  return { compute: 0, comm: 0, idle: 0, op: 0 };
}

/** The kind a draw class counts as in the frame statistics. */
export function kindOfClass(c: number): keyof KindCounts {
  const b = c & CLASS_MASK;
  if (b === C_COMPUTE) return 'compute';
  if (b === C_OP || b === C_OP_ALT) return 'op';
  if (b === C_COMM || b === C_STAGING) return 'comm';
  return 'idle';
}

export { el } from '../dom';

/** The letter that names run `i` in the compare view. */
export function runLetter(i: number): string {
  return String.fromCharCode(65 + i);
}
