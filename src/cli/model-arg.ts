/** The model argument of the commands that take one. */
import { existsSync } from 'node:fs';
import { UserError } from '../common/errors';
import { defaultCacheDir, ensureDemoModel } from '../runtime/onnx/demo-model';

/** Resolves the model argument: a file, or `demo` for the generated demo model. */
export async function resolveModel(model: string): Promise<{ modelPath: string; label: string }> {
  if (model === 'demo' && !existsSync(model)) return { modelPath: await ensureDemoModel(defaultCacheDir()), label: 'demo' };
  if (!existsSync(model)) {
    throw new UserError(`${model}: no such file; give the path of an .onnx model (or "demo" for the bundled demo model)`);
  }
  return { modelPath: model, label: model };
}
