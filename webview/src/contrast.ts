/**
 * WCAG 2 contrast: relative luminance, contrast ratio, and a colour moved just far enough
 * towards the foreground (or black / white) to reach a ratio. Pure functions, no DOM, so the
 * view uses them to make themed text readable and tests use them to check it.
 */
export interface Rgb {
  r: number;
  g: number;
  b: number;
}

/** WCAG AA for normal text. */
export const AA_TEXT = 4.5;

function channel(v: number): number {
  const c = v / 255;
  return c <= 0.04045 ? c / 12.92 : ((c + 0.055) / 1.055) ** 2.4;
}

/** WCAG relative luminance, 0 (black) – 1 (white). */
export function relativeLuminance(c: Rgb): number {
  return 0.2126 * channel(c.r) + 0.7152 * channel(c.g) + 0.0722 * channel(c.b);
}

/** WCAG contrast ratio of two opaque colours, 1 – 21. */
export function contrastRatio(a: Rgb, b: Rgb): number {
  const la = relativeLuminance(a);
  const lb = relativeLuminance(b);
  return (Math.max(la, lb) + 0.05) / (Math.min(la, lb) + 0.05);
}

/** `a` over `b` at opacity `t` (0–1). */
export function blend(a: Rgb, b: Rgb, t: number): Rgb {
  return { r: a.r * t + b.r * (1 - t), g: a.g * t + b.g * (1 - t), b: a.b * t + b.b * (1 - t) };
}

const BLACK: Rgb = { r: 0, g: 0, b: 0 };
const WHITE: Rgb = { r: 255, g: 255, b: 255 };

/** Black or white, whichever contrasts more with `bg`. */
export function bestInk(bg: Rgb): Rgb {
  return contrastRatio(BLACK, bg) >= contrastRatio(WHITE, bg) ? BLACK : WHITE;
}

/**
 * `c` unchanged when it reaches `ratio` against `bg`; else `c` mixed towards black or white
 * (whichever contrasts more with `bg`) by the least amount that reaches it, so the hue the
 * theme chose stays recognisable.
 */
export function ensureContrast(c: Rgb, bg: Rgb, ratio = AA_TEXT): Rgb {
  if (contrastRatio(c, bg) >= ratio) return c;
  const ink = bestInk(bg);
  let lo = 0;
  let hi = 1;
  for (let i = 0; i < 20; i++) {
    const mid = (lo + hi) / 2;
    if (contrastRatio(blend(ink, c, mid), bg) >= ratio) hi = mid;
    else lo = mid;
  }
  // Rounding to whole channels can land just under the ratio: step on until it holds.
  for (let t = hi; ; t = Math.min(1, t + 0.01)) {
    const m = blend(ink, c, t);
    const out = { r: Math.round(m.r), g: Math.round(m.g), b: Math.round(m.b) };
    if (t >= 1 || contrastRatio(out, bg) >= ratio) return out;
  }
}
