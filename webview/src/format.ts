/**
 * Number and text formatting for the view. Pure functions, no DOM.
 *
 * Names in a trace come from models and hosts nobody here controls, so every name shown goes
 * through {@link displayText}: bidirectional and other invisible control characters are made
 * visible (`⟨U+202E⟩`) so a name cannot reorder what is drawn around it (the "Trojan Source"
 * trick), and very long names are cut to a length a tooltip or a label can hold.
 */
import { formatPercent, formatUs, trimNumber } from '../../src/profiler/units';

/** Time in µs as a short string with a unit chosen for its size: `830 µs`, `12.4 ms`, `1.25 s`. */
export { formatUs };

/**
 * The unit an axis over `spanUs` should use, and a tick formatter in it. One unit for the whole
 * axis reads better than `formatUs` per tick (no `999 µs, 1 ms` jumps).
 */
export function axisUnit(spanUs: number): { unit: string; div: number } {
  if (spanUs >= 2e6) return { unit: 's', div: 1e6 };
  if (spanUs >= 2e3) return { unit: 'ms', div: 1e3 };
  return { unit: 'µs', div: 1 };
}

export function formatAxisTick(us: number, unit: { unit: string; div: number }, stepUs: number): string {
  const v = us / unit.div;
  const step = stepUs / unit.div;
  const decimals = step >= 1 ? 0 : Math.min(6, Math.ceil(-Math.log10(step) - 1e-9));
  return `${v.toFixed(decimals)} ${unit.unit}`;
}

/** Bytes with a binary unit: `16 KiB`. */
export function formatBytes(b: number): string {
  if (!Number.isFinite(b)) return '–';
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let v = b;
  let i = 0;
  while (Math.abs(v) >= 1024 && i < units.length - 1) {
    v /= 1024;
    i++;
  }
  return `${i === 0 ? v.toFixed(0) : trimNumber(v.toPrecision(3))} ${units[i]}`;
}

export { formatPercent };

export function formatSigned(us: number): string {
  return `${us > 0 ? '+' : us < 0 ? '−' : '±'}${formatUs(Math.abs(us))}`;
}

// Bidi embeddings/overrides/isolates and marks, zero-width characters, line/paragraph
// separators and C0/C1 controls: none belongs in a name, all can hide or reorder text.
const INVISIBLE = /[\u0000-\u0008\u000b-\u001f\u007f-\u009f\u061c\u200b-\u200f\u2028-\u202e\u2060-\u2069\ufeff]/g;

/** Longest text shown for one name; the rest is summarised as a count. */
export const MAX_DISPLAY_CHARS = 300;

/**
 * A name as it may be shown: invisible and bidi control characters spelled out as `⟨U+XXXX⟩`,
 * cut to `max` characters with the number of characters left off.
 */
export function displayText(s: string, max = MAX_DISPLAY_CHARS): string {
  let head = s.length > max ? s.slice(0, max) : s;
  head = head.replace(INVISIBLE, (c) => `⟨U+${c.charCodeAt(0).toString(16).toUpperCase().padStart(4, '0')}⟩`);
  if (s.length > max) head += `… (${(s.length - max).toLocaleString('en-US')} more characters)`;
  return head;
}

/** A number from untrusted data, or null. */
export function num(x: unknown): number | null {
  return typeof x === 'number' && Number.isFinite(x) ? x : null;
}

/** A string from untrusted data, or null. */
export function str(x: unknown): string | null {
  return typeof x === 'string' ? x : null;
}

/** A plain object from untrusted data, or null. */
export function obj(x: unknown): Record<string, unknown> | null {
  return typeof x === 'object' && x !== null && !Array.isArray(x) ? (x as Record<string, unknown>) : null;
}
