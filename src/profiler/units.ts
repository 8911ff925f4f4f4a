/**
 * Durations and shares as text, for every surface: the terminal, notifications and hovers, findings,
 * the pipeline plan printout and the timeline view. Durations are given in µs; the unit is
 * chosen by size (s from 1 000 000 µs, ms from 1000 µs). Pure functions, no DOM and no Node,
 * so the view can import them.
 */

/** Divisor and name of the unit for a duration of magnitude `absUs`; `seconds: false` stops at ms. */
function durationUnit(absUs: number, seconds = true): { div: number; unit: string } {
  if (seconds && absUs >= 1e6) return { div: 1e6, unit: 's' };
  if (absUs >= 1e3) return { div: 1e3, unit: 'ms' };
  return { div: 1, unit: 'µs' };
}

/** How {@link formatDuration} writes a duration. */
export interface DurationStyle {
  /** Decimals of a value in ms (default 1). */
  msDigits?: number;
  /** Decimals of a value in s (default 2), or false to stay in ms however long. */
  sDigits?: number | false;
}

/**
 * A duration with fixed decimals per unit: whole µs, then ms and s with the style's decimals
 * (`830 µs`, `12.4 ms`, `1.25 s` by default); `–` when not finite.
 */
export function formatDuration(us: number, style: DurationStyle = {}): string {
  if (!Number.isFinite(us)) return '–';
  const { sDigits = 2, msDigits = 1 } = style;
  const { div, unit } = durationUnit(Math.abs(us), sDigits !== false);
  const digits = div === 1 ? 0 : div === 1e3 ? msDigits : (sDigits as number);
  return `${(us / div).toFixed(digits)} ${unit}`;
}

/** About three significant digits with zeros kept, for columns that line up: `4.00`, `12.3`, `150`. */
export function sig3(v: number): string {
  if (v >= 100) return v.toFixed(0);
  if (v >= 10) return v.toFixed(1);
  return v.toFixed(2);
}

/** A duration with {@link sig3} digits in its unit: `4.00 µs`, `12.3 ms`, `150 s`. */
export function formatDurationSig3(us: number): string {
  const { div, unit } = durationUnit(us);
  return `${sig3(us / div)} ${unit}`;
}

/**
 * A duration with `digits` significant digits and no trailing zeros: `830 µs`, `12.4 ms`,
 * `1.25 s`, and ns below 1 µs; `–` when not finite.
 */
export function formatUs(us: number, digits = 3): string {
  if (!Number.isFinite(us)) return '–';
  const a = Math.abs(us);
  if (a === 0) return '0 µs';
  if (a < 1) return `${trimNumber((us * 1e3).toPrecision(digits))} ns`;
  const { div, unit } = durationUnit(a);
  return `${trimNumber((us / div).toPrecision(digits))} ${unit}`;
}

/** Drops trailing zeros (`4.00` → `4`) and any exponent form toPrecision may answer with. */
export function trimNumber(s: string): string {
  return String(Number(s));
}

/** A share (1 = 100%) as a percentage with `digits` decimals: `12.5%`; `–` when not finite. */
export function formatPercent(x: number, digits = 1): string {
  return Number.isFinite(x) ? `${(x * 100).toFixed(digits)}%` : '–';
}

/** Bytes with a binary unit chosen by size and {@link sig3} digits: `512 B`, `1.50 KiB`, `200 MiB`, `16.0 GiB`. */
export function formatBytes(b: number): string {
  if (!Number.isFinite(b)) return '–';
  if (Math.abs(b) < 1024) return `${Math.round(b)} B`;
  if (Math.abs(b) < 1024 ** 2) return `${sig3(b / 1024)} KiB`;
  if (Math.abs(b) < 1024 ** 3) return `${sig3(b / 1024 ** 2)} MiB`;
  if (Math.abs(b) < 1024 ** 4) return `${sig3(b / 1024 ** 3)} GiB`;
  return `${sig3(b / 1024 ** 4)} TiB`;
}

/** Multipliers of the size suffixes {@link parseByteSize} accepts (case-insensitive). */
const BYTE_UNITS: Readonly<Record<string, number>> = {
  '': 1,
  b: 1,
  k: 1024,
  kb: 1000,
  kib: 1024,
  m: 1024 ** 2,
  mb: 1000 ** 2,
  mib: 1024 ** 2,
  g: 1024 ** 3,
  gb: 1000 ** 3,
  gib: 1024 ** 3,
  t: 1024 ** 4,
  tb: 1000 ** 4,
  tib: 1024 ** 4,
};

/**
 * A memory size as a user writes it: `16GiB`, `16 GiB`, `1.5g`, `800MB`, `4096`. Binary units
 * (KiB, MiB, GiB, TiB) and their one-letter forms (k, m, g, t, as `free -g` and `docker -m`
 * read them) are powers of 1024; KB, MB, GB and TB are powers of 1000, as the SI defines them.
 * A bare number is bytes. Returns whole bytes, or null for anything else (a negative or zero
 * size, an unknown unit, junk), so the caller can say what it expected.
 */
export function parseByteSize(text: string): number | null {
  const m = /^\s*(\d+(?:\.\d+)?|\.\d+)\s*([a-z]*)\s*$/i.exec(text);
  if (!m) return null;
  const unit = BYTE_UNITS[m[2].toLowerCase()];
  if (unit === undefined) return null;
  const bytes = Math.round(Number(m[1]) * unit);
  return bytes > 0 && Number.isSafeInteger(bytes) ? bytes : null;
}
