/**
 * Colours. Every colour the canvas uses is a CSS custom property declared in timeline.css
 * (`--px-*`), which takes VS Code's theme variable where there is one
 * (`--vscode-charts-blue`, `--vscode-editor-background`, …) and falls back to light or dark
 * defaults for the standalone report (prefers-color-scheme, or an explicit
 * `<html data-theme="light|dark">`). The palette is read from computed style, so the canvas
 * follows a theme change as soon as `refresh()` runs (on a `theme` message, a class or style
 * change on <html>/<body> as VS Code makes when the theme changes, or a media change).
 */
import {
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
  N_CLASSES,
} from './model';
import { AA_TEXT, ensureContrast, type Rgb } from './contrast';

export interface Rgba {
  r: number;
  g: number;
  b: number;
  a: number;
}

/** CSS variable of each draw class, in class order. */
export const CLASS_VARS: readonly string[] = [
  '--px-compute',
  '--px-op',
  '--px-op-alt',
  '--px-comm',
  '--px-staging',
  '--px-bubble',
  '--px-collective',
  '--px-host',
  '--px-idle-other',
  '--px-backpressure',
];

/** Legend text of each draw class, in class order. */
export const CLASS_LABELS: readonly string[] = [
  'compute',
  'operator',
  'operator (alternate shade)',
  'communication',
  'staging copy',
  'idle: pipeline bubble',
  'idle: collective wait',
  'idle: host overhead',
  'idle: other',
  'idle: backpressure',
];

export interface Palette {
  /** Opaque colours as CSS strings, for the overlay canvas and the DOM. */
  css: {
    bg: string;
    fg: string;
    muted: string;
    grid: string;
    flow: string;
    highlight: string;
    selection: string;
    focus: string;
    collectiveMarker: string;
    classes: string[];
  };
  bg: Rgba;
  laneAlt: Rgba;
  grid: Rgba;
  /** Collective markers (drawn as pixels). */
  marker: Rgba;
  classes: Rgba[];
  /** True when the background is dark (labels on spans pick their ink by this). */
  dark: boolean;
  highContrast: boolean;
}

let probe: CanvasRenderingContext2D | null = null;

/** Parses any CSS colour through the canvas's own parser. */
export function parseColor(css: string, fallback: Rgba): Rgba {
  if (!probe) probe = document.createElement('canvas').getContext('2d');
  if (!probe || !css) return fallback;
  probe.fillStyle = '#010203';
  probe.fillStyle = css;
  const v = String(probe.fillStyle);
  if (v === '#010203' && css.replace(/\s/g, '').toLowerCase() !== '#010203') return fallback;
  const hex = /^#([0-9a-f]{6})$/i.exec(v);
  if (hex) {
    const n = parseInt(hex[1], 16);
    return { r: n >> 16, g: (n >> 8) & 255, b: n & 255, a: 1 };
  }
  const m = /^rgba?\(([^)]+)\)$/.exec(v);
  if (m) {
    const p = m[1].split(',').map((x) => Number(x.trim()));
    return { r: p[0], g: p[1], b: p[2], a: p.length > 3 ? p[3] : 1 };
  }
  return fallback;
}

export function cssOf(c: Rgba): string {
  return `rgba(${Math.round(c.r)}, ${Math.round(c.g)}, ${Math.round(c.b)}, ${c.a})`;
}

/** `a` over `b` at opacity `t` (0–1), opaque result. */
export function mix(a: Rgba, b: Rgba, t: number): Rgba {
  return { r: a.r * t + b.r * (1 - t), g: a.g * t + b.g * (1 - t), b: a.b * t + b.b * (1 - t), a: 1 };
}

function luminance(c: Rgba): number {
  return (0.2126 * c.r + 0.7152 * c.g + 0.0722 * c.b) / 255;
}

/**
 * The element whose computed style holds the theme's variables: <body>, where VS Code's
 * theme-kind classes select the fallbacks (timeline.css), or <html> before there is a body.
 */
export function themeRoot(): HTMLElement {
  return document.body ?? document.documentElement;
}

/** Reads the palette from computed style. */
export function readPalette(root: HTMLElement = themeRoot()): Palette {
  const cs = getComputedStyle(root);
  const get = (name: string, fb: Rgba): Rgba => parseColor(cs.getPropertyValue(name).trim(), fb);
  const white = { r: 255, g: 255, b: 255, a: 1 };
  const black = { r: 0, g: 0, b: 0, a: 1 };
  const bg0 = get('--px-bg', white);
  // Translucent theme backgrounds are drawn over white, as the webview itself would be.
  const bg = bg0.a < 1 ? mix({ ...bg0, a: 1 }, white, bg0.a) : bg0;
  const fg = get('--px-fg', black);
  const dark = luminance(bg) < 0.5;
  const classes: Rgba[] = [];
  for (let c = 0; c < N_CLASSES; c++) {
    const raw = get(CLASS_VARS[c], fg);
    classes.push(raw.a < 1 ? mix({ ...raw, a: 1 }, bg, raw.a) : raw);
  }
  // Derived shades, so a theme only has to define the base chart colours.
  if (!cs.getPropertyValue('--px-op-alt').trim()) classes[C_OP_ALT] = mix(classes[C_OP], bg, 0.7);
  if (!cs.getPropertyValue('--px-staging').trim()) classes[C_STAGING] = mix(classes[C_COMM], bg, 0.6);
  const grid = get('--px-grid', mix(fg, bg, 0.15));
  const laneAlt = get('--px-lane-alt', mix(fg, bg, 0.04));
  const css = (name: string, fb: string): string => cs.getPropertyValue(name).trim() || fb;
  const body = document.body;
  return {
    css: {
      bg: cssOf(bg),
      fg: cssOf(fg),
      muted: css('--px-muted', cssOf(mix(fg, bg, 0.6))),
      grid: cssOf(grid),
      flow: css('--px-flow', cssOf(fg)),
      highlight: css('--px-highlight', 'rgba(255, 200, 0, 0.25)'),
      selection: css('--px-selection', 'rgba(0, 120, 215, 0.18)'),
      focus: css('--px-focus', cssOf(classes[C_COMPUTE])),
      collectiveMarker: css('--px-collective-marker', cssOf(fg)),
      classes: classes.map(cssOf),
    },
    bg,
    marker: (() => {
      const m = get('--px-collective-marker', fg);
      return m.a < 1 ? mix({ ...m, a: 1 }, bg, m.a) : m;
    })(),
    laneAlt: laneAlt.a < 1 ? mix({ ...laneAlt, a: 1 }, bg, laneAlt.a) : laneAlt,
    grid: grid.a < 1 ? mix({ ...grid, a: 1 }, bg, grid.a) : grid,
    classes,
    dark,
    highContrast: !!body && (body.classList.contains('vscode-high-contrast') || body.classList.contains('vscode-high-contrast-light')),
  };
}

/**
 * Text colours that carry meaning (ok / warning / error, muted text, badges) as the theme
 * gives them, moved just far enough to reach WCAG AA (4.5:1) against both backgrounds text
 * sits on (editor and panel). Themes pick some of them as icon colours (VS Code's
 * `testing.iconPassed` is a pale green), which are not made for text on white.
 * Set as `--px-*-text` on `root` (not on <html>, whose style changes mean "theme changed").
 */
export function applyReadableText(root: HTMLElement, palette: Palette): void {
  const cs = getComputedStyle(themeRoot());
  const get = (name: string, fb: Rgba): Rgba => {
    const c = parseColor(cs.getPropertyValue(name).trim(), fb);
    return c.a < 1 ? mix({ ...c, a: 1 }, palette.bg, c.a) : c;
  };
  const panel = get('--px-panel', palette.bg);
  const fg = get('--px-fg', { r: 0, g: 0, b: 0, a: 1 });
  const readable = (c: Rgba, bgs: Rgba[]): string => {
    let out: Rgb = c;
    // Two passes: making it readable on one background can only help on the other when both are light or both dark.
    for (let pass = 0; pass < 2; pass++) for (const bg of bgs) out = ensureContrast(out, bg, AA_TEXT);
    return cssOf({ ...out, a: 1 });
  };
  const bgs = [palette.bg, panel];
  const vars: [string, Rgba][] = [
    ['--px-fg-text', fg],
    ['--px-muted-text', get('--px-muted', mix(fg, palette.bg, 0.6))],
    ['--px-ok-text', get('--px-ok', fg)],
    ['--px-error-text', get('--px-error', fg)],
    ['--px-warn-text', get('--px-warn', fg)],
    ['--px-op-text', get('--px-op', fg)],
    ['--px-comm-text', get('--px-comm', fg)],
  ];
  for (const [name, c] of vars) root.style.setProperty(name, readable(c, bgs));
  const badgeBg = get('--px-badge-bg', panel);
  root.style.setProperty('--px-badge-fg-text', readable(get('--px-badge-fg', fg), [badgeBg]));
}

/** Calls `onChange` whenever the theme may have changed. Returns a disposer. */
export function watchTheme(onChange: () => void): () => void {
  let pending = false;
  const fire = (): void => {
    if (pending) return;
    pending = true;
    requestAnimationFrame(() => {
      pending = false;
      onChange();
    });
  };
  const mo = new MutationObserver(fire);
  mo.observe(document.documentElement, { attributes: true, attributeFilter: ['class', 'style', 'data-theme'] });
  if (document.body) mo.observe(document.body, { attributes: true, attributeFilter: ['class', 'style', 'data-vscode-theme-kind'] });
  const mq = matchMedia('(prefers-color-scheme: dark)');
  const hc = matchMedia('(forced-colors: active)');
  mq.addEventListener('change', fire);
  hc.addEventListener('change', fire);
  return () => {
    mo.disconnect();
    mq.removeEventListener('change', fire);
    hc.removeEventListener('change', fire);
  };
}

export { C_BACKPRESSURE, C_BUBBLE, C_COLLECTIVE, C_COMM, C_COMPUTE, C_HOST, C_IDLE_OTHER, C_OP, C_OP_ALT, C_STAGING };
