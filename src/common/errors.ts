/**
 * Errors a user can act on. The CLI prints `parallax: <message>` and exits non-zero with no
 * stack trace; the extension shows the message in a notification. A message is one line that
 * names the file or value at fault, what is wrong with it, and what to do.
 */
export class UserError extends Error {
  /** Exit status the CLI uses for this error. */
  readonly exitCode: number;

  constructor(message: string, exitCode = 2) {
    super(clipWords(message.replace(/\s*\n\s*/g, ' ')));
    this.name = 'UserError';
    this.exitCode = exitCode;
  }
}

/** Longest run of non-space characters a message keeps whole. */
const MAX_WORD = 240;
/** Longest message kept whole. */
const MAX_MESSAGE = 1500;

/**
 * Messages quote names from the user's files, and a file can hold a name of megabytes: each
 * overlong word keeps its start and end around an ellipsis, so the line stays readable and
 * still says which name it is.
 */
function clipWords(message: string): string {
  const m = message.replace(new RegExp(`\\S{${MAX_WORD + 1},}`, 'g'), (w) => `${w.slice(0, MAX_WORD - 60)}…${w.slice(-40)}`);
  // The same for a message made long by many quoted names: its start names the file and the
  // fault, its end says what to do.
  return m.length > MAX_MESSAGE ? `${m.slice(0, MAX_MESSAGE - 400)} … ${m.slice(-390)}` : m;
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
