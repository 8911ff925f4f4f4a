/**
 * WCAG contrast helpers of the view (webview/src/contrast.ts), pure functions.
 *
 *   node --import tsx --test test/unit/contrast.test.ts
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { AA_TEXT, bestInk, contrastRatio, ensureContrast, relativeLuminance } from '../../webview/src/contrast';

const WHITE = { r: 255, g: 255, b: 255 };
const BLACK = { r: 0, g: 0, b: 0 };

test('contrast ratio follows WCAG: 21:1 black on white, 1:1 for equal colours, symmetric', () => {
  assert.equal(relativeLuminance(WHITE), 1);
  assert.equal(relativeLuminance(BLACK), 0);
  assert.equal(contrastRatio(BLACK, WHITE), 21);
  assert.equal(contrastRatio(WHITE, WHITE), 1);
  const grey = { r: 118, g: 118, b: 118 };
  // #767676 on white is the well-known lightest grey that passes AA (4.54:1).
  assert.ok(Math.abs(contrastRatio(grey, WHITE) - 4.54) < 0.01);
  assert.equal(contrastRatio(grey, WHITE), contrastRatio(WHITE, grey));
});

test('ensureContrast leaves readable colours alone and moves pale ones just past 4.5:1, keeping their hue', () => {
  const ok = { r: 26, g: 127, b: 55 };
  assert.deepEqual(ensureContrast(ok, WHITE), ok);
  // VS Code's testing.iconPassed, a pale green, as text on white.
  const pale = { r: 0x73, g: 0xc9, b: 0x91 };
  assert.ok(contrastRatio(pale, WHITE) < 2.5);
  const fixed = ensureContrast(pale, WHITE);
  const ratio = contrastRatio(fixed, WHITE);
  assert.ok(ratio >= AA_TEXT && ratio < AA_TEXT + 0.3, `ratio ${ratio}`);
  assert.ok(fixed.g > fixed.r && fixed.g > fixed.b, `still green: ${JSON.stringify(fixed)}`);
  // On a dark background it lightens instead.
  const dark = { r: 0x1f, g: 0x1f, b: 0x1f };
  const navy = { r: 0, g: 0, b: 128 };
  const light = ensureContrast(navy, dark);
  assert.ok(contrastRatio(light, dark) >= AA_TEXT);
  assert.ok(relativeLuminance(light) > relativeLuminance(navy));
});

test('black or white ink on any span colour reaches 4.5:1', () => {
  for (let r = 0; r <= 255; r += 51) {
    for (let g = 0; g <= 255; g += 51) {
      for (let b = 0; b <= 255; b += 51) {
        const c = { r, g, b };
        assert.ok(contrastRatio(bestInk(c), c) >= AA_TEXT, JSON.stringify(c));
      }
    }
  }
});
