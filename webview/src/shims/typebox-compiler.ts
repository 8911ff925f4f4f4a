/**
 * Stand-in for `@sinclair/typebox/compiler` inside the webview bundle.
 *
 * The real TypeCompiler generates its checker with `new Function`, which a strict Content
 * Security Policy (no 'unsafe-eval', as in VS Code webviews and the standalone report)
 * refuses. `src/profiler/trace-format.ts` compiles its header check when the module loads,
 * so the bundle aliases the compiler to this module (see scripts/build-webview.mjs): the same
 * `Compile(schema).Check/Errors` API, answered by TypeBox's interpreting `Value` checker.
 * Only the header is checked this way; span columns have their own typed loop.
 */
import type { TSchema, Static } from '@sinclair/typebox';
import { Value } from '@sinclair/typebox/value';
import { Errors, type ValueErrorIterator } from '@sinclair/typebox/errors';

export { ValueErrorType, ValueErrorIterator } from '@sinclair/typebox/errors';

export interface TypeCheck<T extends TSchema> {
  Check(value: unknown): value is Static<T>;
  Errors(value: unknown): ValueErrorIterator;
}

export const TypeCompiler = {
  Compile<T extends TSchema>(schema: T): TypeCheck<T> {
    return {
      Check: (value: unknown): value is Static<T> => Value.Check(schema, value),
      Errors: (value: unknown): ValueErrorIterator => Errors(schema, value),
    };
  },
};
