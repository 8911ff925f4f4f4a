/**
 * The output channel with every message's control characters escaped: messages quote names
 * from models and traces, which may carry escape sequences or carriage returns. Kept apart
 * from the `vscode` import so that it is plain logic.
 */
import { escapeTerminal } from '../common/terminal';

/** The channel's methods that take text to show (LogOutputChannel and OutputChannel). */
const TEXT_METHODS = new Set(['info', 'warn', 'error', 'debug', 'trace', 'append', 'appendLine', 'replace']);

/** `channel` with the string arguments of its text methods escaped; everything else as it is. */
export function escapingChannel<T extends object>(channel: T): T {
  return new Proxy(channel, {
    get(target, prop) {
      // Everything runs on the channel itself, never with the proxy as `this`.
      const value: unknown = Reflect.get(target, prop, target);
      if (typeof value !== 'function') return value;
      if (typeof prop !== 'string' || !TEXT_METHODS.has(prop)) return (value as (...a: unknown[]) => unknown).bind(target);
      return (...args: unknown[]) =>
        (value as (...a: unknown[]) => unknown).apply(
          target,
          args.map((a) => (typeof a === 'string' ? escapeTerminal(a, { keepLines: true }) : a)),
        );
    },
  });
}
