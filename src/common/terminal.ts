/**
 * Escaping text from files (node, input, op, kernel and file names) before it reaches a
 * terminal or VS Code's output channel. A model or trace is attacker-controlled: raw ESC
 * bytes would retitle the terminal or clear the screen, a bare carriage return would let a
 * name overwrite the start of the line it is printed on ("… all good"), and bidirectional
 * overrides would make text read differently from what it is. Every such character is
 * shown as a visible escape (`\x1b`, `\r`, `\u202e`) instead.
 */

/** Characters that are escaped: C0 controls, DEL, C1 controls and the bidi formatting characters. */
const UNSAFE = /[\u0000-\u001f\u007f-\u009f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]/g;
/** The same, but newline and tab are kept (for multi-line text built by Parallax itself). */
const UNSAFE_KEEP_LINES = /[\u0000-\u0008\u000b-\u001f\u007f-\u009f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]/g;

const NAMED: Record<string, string> = { '\n': '\\n', '\r': '\\r', '\t': '\\t', '\u001b': '\\x1b' };

function visible(c: string): string {
  const named = NAMED[c];
  if (named) return named;
  const code = c.charCodeAt(0);
  return code <= 0xff ? `\\x${code.toString(16).padStart(2, '0')}` : `\\u${code.toString(16).padStart(4, '0')}`;
}

/**
 * `text` with every control character shown as a visible escape. With `keepLines`, newlines
 * and tabs pass through (text Parallax laid out itself, whose names are already escaped or
 * are escaped here along with everything else on the line).
 */
export function escapeTerminal(text: string, opts: { keepLines?: boolean } = {}): string {
  return text.replace(opts.keepLines ? UNSAFE_KEEP_LINES : UNSAFE, visible);
}
