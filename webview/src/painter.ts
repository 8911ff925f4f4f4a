/**
 * Paints spans straight into an RGBA pixel buffer that is put on the canvas once per frame.
 *
 * Why not fillRect per span: after level-of-detail aggregation a frame is at most a few
 * thousand rectangles and columns, but on software rendering (VS Code with GPU acceleration
 * off, headless browsers, remote desktops) each canvas call has a fixed cost and state
 * changes add up; writing 32-bit pixels with `Uint32Array.fill` costs in proportion to the
 * pixels covered, which is bounded by the screen. Patterns (hatched idle, dotted emulated,
 * striped predicted) are per-pixel rules, so they cost nothing extra to set up and the
 * legend swatches are painted by the same code.
 */
import { CLASS_MASK, C_IDLE_FIRST, M_EMULATED, M_PREDICTED, N_CLASSES } from './model';
import { mix, type Palette, type Rgba } from './theme';

const LITTLE_ENDIAN = new Uint8Array(new Uint32Array([1]).buffer)[0] === 1;

export function pack(c: Rgba): number {
  const r = Math.round(c.r) & 255;
  const g = Math.round(c.g) & 255;
  const b = Math.round(c.b) & 255;
  const a = Math.round((c.a ?? 1) * 255) & 255;
  return LITTLE_ENDIAN ? ((a << 24) | (b << 16) | (g << 8) | r) >>> 0 : ((r << 24) | (g << 16) | (b << 8) | a) >>> 0;
}

/** Alpha levels a sparse pixel column can take (coverage is quantised to these). */
export const ALPHA_LEVELS = 8;

export class Painter {
  width = 0;
  height = 0;
  image: ImageData | null = null;
  buf = new Uint32Array(0);
  private bg = 0;
  private laneAlt = 0;
  private grid = 0;
  private marker = 0;
  /** [class][alpha level] → colour; the pattern tint is at index ALPHA_LEVELS. */
  private shades: Uint32Array = new Uint32Array(0);
  private edges: Uint32Array = new Uint32Array(0);

  setPalette(p: Palette): void {
    this.bg = pack(p.bg);
    this.laneAlt = pack(p.laneAlt);
    this.grid = pack(p.grid);
    this.marker = pack(p.marker);
    const stride = ALPHA_LEVELS + 1;
    this.shades = new Uint32Array(N_CLASSES * stride);
    this.edges = new Uint32Array(N_CLASSES);
    for (let c = 0; c < N_CLASSES; c++) {
      const col = p.classes[c];
      for (let a = 1; a <= ALPHA_LEVELS; a++) this.shades[c * stride + a - 1] = pack(mix(col, p.bg, 0.25 + (0.75 * a) / ALPHA_LEVELS));
      this.shades[c * stride + ALPHA_LEVELS] = pack(mix(col, p.bg, 0.3));
      this.edges[c] = pack(mix(col, p.bg, 0.45));
    }
  }

  /** Makes the buffer `w`×`h` device pixels (reused while the size stays). */
  resize(ctx: CanvasRenderingContext2D, w: number, h: number): void {
    if (w === this.width && h === this.height && this.image) return;
    this.width = Math.max(1, w);
    this.height = Math.max(1, h);
    this.image = ctx.createImageData(this.width, this.height);
    this.buf = new Uint32Array(this.image.data.buffer);
  }

  clear(): void {
    this.buf.fill(this.bg);
  }

  /** Fills rows y0..y1 (exclusive) of the whole width with the alternate lane shade. */
  laneBand(y0: number, y1: number): void {
    const w = this.width;
    const a = Math.max(0, y0) * w;
    const b = Math.min(this.height, y1) * w;
    if (b > a) this.buf.fill(this.laneAlt, a, b);
  }

  hline(y: number, x0 = 0, x1 = this.width): void {
    if (y < 0 || y >= this.height) return;
    const w = this.width;
    this.buf.fill(this.grid, y * w + Math.max(0, x0), y * w + Math.min(w, x1));
  }

  /**
   * Fills [x0, x1) × [y0, y1) with draw class `cls` (class | modifier bits) at alpha level
   * `alpha` (1..ALPHA_LEVELS). `edge` darkens the last column so that neighbours stay apart.
   */
  fill(x0: number, x1: number, y0: number, y1: number, cls: number, alpha = ALPHA_LEVELS, edge = false): void {
    const W = this.width;
    if (x0 < 0) x0 = 0;
    if (x1 > W) x1 = W;
    if (y0 < 0) y0 = 0;
    if (y1 > this.height) y1 = this.height;
    if (x1 <= x0 || y1 <= y0) return;
    const base = cls & CLASS_MASK;
    const stride = ALPHA_LEVELS + 1;
    const col = this.shades[base * stride + alpha - 1];
    const tint = this.shades[base * stride + ALPHA_LEVELS];
    const hatch = base >= C_IDLE_FIRST && base < N_CLASSES;
    const emu = (cls & M_EMULATED) !== 0;
    const pred = (cls & M_PREDICTED) !== 0;
    const buf = this.buf;
    if (!hatch && !emu && !pred) {
      if (x1 - x0 > 24) {
        for (let y = y0; y < y1; y++) buf.fill(col, y * W + x0, y * W + x1);
      } else {
        // TypedArray.fill costs a call per scanline; for the narrow runs that merged pixel
        // columns produce (often one pixel wide) a plain loop is several times faster.
        for (let y = y0; y < y1; y++) {
          const row = y * W;
          for (let x = x0; x < x1; x++) buf[row + x] = col;
        }
      }
    } else {
      for (let y = y0; y < y1; y++) {
        const row = y * W;
        for (let x = x0; x < x1; x++) {
          let ink = true;
          // Idle: diagonal hatching, so idle reads as "nothing running" even without colour.
          if (hatch && (x + y) % 6 >= 2) ink = false;
          // Emulated: a dotted texture (every fourth column light).
          if (emu && (x & 3) === 0) ink = false;
          // Predicted: stripes the other way.
          if (pred && (((x - y) % 8) + 8) % 8 < 2) ink = false;
          buf[row + x] = ink ? col : tint;
        }
      }
    }
    if (edge && x1 - x0 >= 4) {
      const e = this.edges[base];
      for (let y = y0; y < y1; y++) buf[y * W + x1 - 1] = e;
    }
  }

  /**
   * A vertical line in the grid colour (`ink` false) or the marker colour, dashed with
   * `dash` pixels on and `dash` off when dash > 0.
   */
  vline(x: number, y0: number, y1: number, ink: boolean, dash = 0): void {
    x = Math.round(x);
    if (x < 0 || x >= this.width) return;
    const c = ink ? this.marker : this.grid;
    const W = this.width;
    const a = Math.max(0, Math.round(y0));
    const b = Math.min(this.height, Math.round(y1));
    for (let y = a; y < b; y++) if (dash === 0 || Math.floor(y / dash) % 2 === 0) this.buf[y * W + x] = c;
  }

  /** A filled diamond of radius r in the marker colour. */
  diamond(cx: number, cy: number, r: number): void {
    cx = Math.round(cx);
    cy = Math.round(cy);
    const W = this.width;
    for (let dy = -r; dy <= r; dy++) {
      const y = cy + dy;
      if (y < 0 || y >= this.height) continue;
      const half = r - Math.abs(dy);
      const a = Math.max(0, cx - half);
      const b = Math.min(W - 1, cx + half);
      for (let x = a; x <= b; x++) this.buf[y * W + x] = this.marker;
    }
  }

  /** Puts the buffer on the canvas. */
  present(ctx: CanvasRenderingContext2D): void {
    if (this.image) ctx.putImageData(this.image, 0, 0);
  }
}

/** Paints a legend swatch for a draw class into a small canvas. */
export function paintSwatch(canvas: HTMLCanvasElement, palette: Palette, cls: number): void {
  const ctx = canvas.getContext('2d');
  if (!ctx) return;
  const p = new Painter();
  p.setPalette(palette);
  p.resize(ctx, canvas.width, canvas.height);
  p.clear();
  p.fill(0, canvas.width, 0, canvas.height, cls);
  p.present(ctx);
}
