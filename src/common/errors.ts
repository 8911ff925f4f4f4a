/**
 * Errors a user can act on. The CLI prints `parallax: <message>` and exits non-zero with no
 * stack trace; the extension shows the message in a notification. A message is one line that
 * names the file or value at fault, what is wrong with it, and what to do.
 */
export class UserError extends Error {
  /** Exit status the CLI uses for this error. */
  readonly exitCode: number;

  constructor(message: string, exitCode = 2) {
    super(message.replace(/\s*\n\s*/g, ' '));
    this.name = 'UserError';
    this.exitCode = exitCode;
  }
}

/** True for errors whose message is fit to show a user as it is. */
export function isUserError(e: unknown): e is UserError {
  return e instanceof UserError || (typeof e === 'object' && e !== null && (e as { name?: unknown }).name === 'UserError');
}

/** Raised when the user cancelled a run; not an error to report. */
export class CancelledError extends Error {
  constructor() {
    super('profiling cancelled');
    this.name = 'CancelledError';
  }
}

/** True for a cancelled run's error (also one raised by an older copy of {@link CancelledError}). */
export function isCancelled(e: unknown): e is CancelledError {
  return e instanceof CancelledError || (typeof e === 'object' && e !== null && (e as { name?: unknown }).name === 'CancelledError');
}
