/**
 * A bound on the nesting of JSON documents, checked on the text before parsing: code that
 * walks a parsed document (schema checks, copies, serialisation) recurses per level, and a
 * few thousand levels of brackets overflow its stack.
 */
import { UserError } from './errors';
import { MAX_JSON_DEPTH } from './limits';

/**
 * Deepest nesting of objects and arrays in JSON text, stopping early past `limit`. Linear in
 * the text, no allocation: strings are skipped so brackets inside names do not count.
 */
export function jsonDepth(text: string, limit = Infinity): number {
  let depth = 0;
  let max = 0;
  let inString = false;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (inString) {
      if (c === 0x5c) i++; // backslash: skip the escaped character
      else if (c === 0x22) inString = false;
    } else if (c === 0x22) inString = true;
    else if (c === 0x7b || c === 0x5b) {
      if (++depth > max) {
        max = depth;
        if (max > limit) return max;
      }
    } else if (c === 0x7d || c === 0x5d) depth--;
  }
  return max;
}

/** Throws a one-line {@link UserError} naming `source` when `text` nests deeper than {@link MAX_JSON_DEPTH}. */
export function checkJsonDepth(text: string, source: string): void {
  if (jsonDepth(text, MAX_JSON_DEPTH) > MAX_JSON_DEPTH) {
    throw new UserError(`${source}: JSON nested more than ${MAX_JSON_DEPTH} levels deep, which no trace is; the file is not a trace`);
  }
}
