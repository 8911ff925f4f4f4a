/**
 * A long run keeps bounded memory: over a few thousand steps of a small model with
 * operator-level capture on, the runner's RSS grows no faster than the spans it records
 * (their bytes in the device workers' span buffers, times a generous factor for the
 * buffers' doubling and the allocator's slack). Operator detail comes from a bounded set of
 * profiled steps, so ONNX Runtime's operator profile must not add growth per step.
 *
 * The figures themselves (RSS start, end, slope, operator profile on and off) are in
 * bench/memory.bench.ts.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { ensureDemoModel } from '../../src/runtime/onnx/demo-model';
import { makePlan } from '../../src/profiler/plan';
import { readTrace } from '../../src/profiler/trace-io';
import { REPO } from '../helpers/cli';
import { rssSlope, sampleRunnerRss, SPAN_BYTES } from '../helpers/runner-rss';
import { tempDir } from '../helpers/temp';

const STEPS = 16_000;
/**
 * Allowed RSS growth per step, as a multiple of the span-buffer bytes per step: 2 for the
 * buffers' doubling, the rest for the allocator and V8 heaps settling, which shows up as
 * slope over a run of seconds (bench/memory.bench.ts measures about 2×). The growth this
 * guards against, operator profiles kept for every step, was 2.8 GB over 10,000 steps
 * (about 270 KB per step), far above it.
 */
const FACTOR = 8;

test(`the runner's memory grows with its spans only: ${STEPS} steps with operator-level capture`, { timeout: 10 * 60_000 }, async (t) => {
  if (!existsSync(join(REPO, 'dist', 'runner.js'))) throw new Error('dist/runner.js is missing: run `npm run build` first');
  const dir = tempDir('memory');
  const modelPath = await ensureDemoModel(join(dir, 'models'), { layers: 2, hidden: 32, ffn: 64 });
  const outPath = join(dir, 'long.parallax.json');
  const { samples } = await sampleRunnerRss({
    modelPath,
    modelLabel: 'demo (small)',
    plan: makePlan({ mode: 'data', devices: 'cpu:2', batch: 8, steps: STEPS, warmup: 2, seed: 0 }),
    capture: true,
    opLevel: true,
    baseline: false,
    outPath,
  }, 10);
  const trace = await readTrace(outPath);
  assert.equal(trace.steps.length, STEPS, 'every step was measured');
  assert.ok(trace.spans.opType.some((t) => t >= 0), 'operator spans were captured');
  const spanBytesPerStep = (trace.spans.count / STEPS) * SPAN_BYTES;
  const slope = rssSlope(samples, STEPS / 4);
  assert.ok(slope.samples >= 10, `enough RSS samples while measuring (${slope.samples})`);
  const bound = FACTOR * spanBytesPerStep;
  t.diagnostic(`RSS slope ${slope.bytesPerStep.toFixed(0)} B/step over ${slope.samples} samples; spans ${spanBytesPerStep.toFixed(0)} B/step; bound ${bound.toFixed(0)} B/step`);
  assert.ok(
    slope.bytesPerStep <= bound,
    `RSS grows ${slope.bytesPerStep.toFixed(0)} B/step; the spans take ${spanBytesPerStep.toFixed(0)} B/step, bound ${bound.toFixed(0)} B/step`,
  );
});
