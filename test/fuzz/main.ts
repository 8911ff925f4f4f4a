/**
 * `npm run fuzz`: the long fuzz run, 100,000 inputs per target by default.
 *   PARALLAX_FUZZ_COUNT=N   inputs per target
 *   PARALLAX_FUZZ_SEED=S    seed (runs are reproducible input by input)
 *   PARALLAX_FUZZ_TARGET=onnx|traces   one target only
 * Inputs behind findings are saved to test/fixtures/fuzz-regressions/, where
 * test/unit/fuzz-regressions.test.ts replays them; the exit status is 1 when there are any.
 */
import { join } from 'node:path';
import { fuzzSettings, runFuzz } from './harness';
import { FUZZ_MEMORY_MB, FUZZ_WATCHDOG_MS, describeReport } from './report';
import type { TargetName } from './targets';

async function main(): Promise<number> {
  const { seed, count } = fuzzSettings(100_000);
  const only = process.env['PARALLAX_FUZZ_TARGET'];
  const targets: TargetName[] = only === 'onnx' || only === 'traces' ? [only] : ['onnx', 'traces'];
  const saveDir = join(__dirname, '..', 'fixtures', 'fuzz-regressions');
  let findings = 0;
  for (const target of targets) {
    const r = await runFuzz({ target, count, seed, watchdogMs: FUZZ_WATCHDOG_MS, memoryMb: FUZZ_MEMORY_MB, saveDir });
    process.stdout.write(`${describeReport(target, seed, r)}\n`);
    findings += r.findings.length;
  }
  return findings > 0 ? 1 : 0;
}

void main().then((code) => process.exit(code));
