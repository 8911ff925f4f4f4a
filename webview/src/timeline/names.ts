/** Span names as shown (made safe by `displayText`), cached per run and string index. */
import type { Run } from '../data';
import { displayText } from '../format';

export class NameCache {
  private caches: Map<number, string>[] = [];
  private runs: readonly Run[] = [];

  reset(runs: readonly Run[]): void {
    this.runs = runs;
    this.caches = runs.map(() => new Map());
  }

  /** String `idx` of run `run`'s string table, as it may be shown. */
  get(run: number, idx: number): string {
    const cache = this.caches[run];
    let s = cache.get(idx);
    if (s === undefined) {
      s = displayText(this.runs[run].trace.strings[idx] ?? '');
      cache.set(idx, s);
    }
    return s;
  }
}
