/**
 * Errors caused by the user's model or inputs, recognised where they surface: ONNX Runtime
 * refusing a model (or a feed) it was handed, and V8 refusing an allocation a model's shapes
 * asked for. Both are one-line {@link UserError}s, not internal errors with a stack: the fix
 * is in the model or the flags, not in Parallax.
 */
import { UserError, isUserError } from '../common/errors';

/** Longest quote of an ONNX Runtime message kept in a one-line error. */
const MAX_QUOTE = 300;

function firstLine(e: unknown): string {
  const text = (e instanceof Error ? e.message : String(e)).trim();
  const line = text.split('\n')[0]!.trim();
  return line.length > MAX_QUOTE ? `${line.slice(0, MAX_QUOTE - 1)}…` : line;
}

/** True for V8's refusals to allocate what a size asked for. */
export function isAllocationError(e: unknown): boolean {
  return (
    e instanceof RangeError &&
    /invalid (typed )?array length|array buffer allocation failed|invalid string length|invalid (array buffer|typed array) (length|size)|maximum.*size/i.test(e.message)
  );
}

/**
 * `e` as the user's error when an allocation failed for the size a model or the flags asked
 * for; anything else comes back as it is.
 */
export function asInputError(e: unknown): unknown {
  if (isUserError(e) || !isAllocationError(e)) return e;
  return new UserError(
    `a tensor is too large to allocate (${firstLine(e)}): the model's shapes with these flags ask for more memory than one array can hold; give smaller --batch, --dim or --input-shape values`,
  );
}

/**
 * Runs a call into ONNX Runtime on the user's model: an error it raises is ONNX Runtime
 * refusing the model or its inputs, reported as one line that quotes its first line.
 * `what` says what was being done ("loading the model", "running the model").
 */
export async function ortCall<T>(what: string, f: () => Promise<T>): Promise<T> {
  try {
    return await f();
  } catch (e) {
    if (isUserError(e)) throw e;
    if (isAllocationError(e)) throw asInputError(e);
    throw new UserError(`ONNX Runtime failed ${what}: ${firstLine(e)}; check that the model is valid ONNX that ONNX Runtime supports, and its input shapes`);
  }
}
