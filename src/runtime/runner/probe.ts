/**
 * Measures what a model's declared shapes leave open: the batch axis of outputs whose
 * dimensions have no usable names. The model runs in the runner process (never in the
 * extension host) on one row and on two rows of the run's own inputs, on one thread, once
 * per run, before any device starts. A model that does not run on those rows is one
 * UserError naming the inputs' batch axes, instead of an ONNX Runtime error from a worker.
 */
import { asInputError, isAllocationError } from '../input-errors';
import type { InferenceSession, Tensor } from 'onnxruntime-node';
import { UserError } from '../../common/errors';
import { concatBatch, sliceBatch, type ModelInput } from '../inputs';
import { axisFromProbe } from '../batch-axes';

type OrtModule = typeof import('onnxruntime-node');

function loadOrt(): OrtModule {
  // Loaded on first use, like discovery does, so that importing the runner loads no addon.
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  return require('onnxruntime-node') as OrtModule;
}

/** The first `rows` rows of every input: row 0, repeated. */
function feedsOf(ort: OrtModule, inputs: readonly ModelInput[], rows: number): Record<string, Tensor> {
  const feeds: Record<string, Tensor> = {};
  for (const input of inputs) {
    const row = sliceBatch(input, 0, 1);
    const t = rows === 1 ? row : concatBatch(Array.from({ length: rows }, () => row));
    feeds[input.name] = new ort.Tensor(t.dtype as 'float32', t.data as Float32Array, t.dims);
  }
  return feeds;
}

function describeAxes(inputs: readonly ModelInput[]): string {
  return inputs.map((i) => `"${i.name}" ${i.batchAxis === null ? 'shared' : `on axis ${i.batchAxis}`}`).join(', ');
}

/** The batch axis of each named output, measured on one row and on two rows. */
export async function probeOutputAxes(modelPath: string, inputs: readonly ModelInput[], names: readonly string[], label: string): Promise<Map<string, number | null>> {
  const ort = loadOrt();
  let session: InferenceSession | null = null;
  const shapes: Record<number, Record<string, readonly number[]>> = {};
  try {
    session = await ort.InferenceSession.create(modelPath, { intraOpNumThreads: 1, interOpNumThreads: 1, executionMode: 'sequential' });
    for (const rows of [1, 2]) {
      const out = await session.run(feedsOf(ort, inputs, rows), [...names]);
      shapes[rows] = Object.fromEntries(names.map((n) => [n, out[n].dims]));
    }
  } catch (e) {
    if (e instanceof UserError) throw e;
    if (isAllocationError(e)) throw asInputError(e);
    const why = (e instanceof Error ? e.message : String(e)).split('\n')[0];
    throw new UserError(
      `${label}: the model does not run on single rows of its inputs with these batch axes (${describeAxes(inputs)}): ${why}; name the batch dimension with --batch-dim or give the inputs' shapes with --input-shape`,
    );
  } finally {
    await session?.release();
  }
  return new Map(names.map((n) => [n, axisFromProbe(n, shapes[1][n], shapes[2][n], label)]));
}
