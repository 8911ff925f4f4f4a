/**
 * Search by name: a search box in the header. Typing dims every span whose name and
 * operator type do not contain the text and says how many match; Enter (or the arrows)
 * moves to the next match (Shift+Enter: previous), selecting and showing it. Answers come
 * from a {@link SpanQueries}, like the operator table's.
 */
import type { SearchHit } from '../../src/profiler/span-query';
import type { Run } from './data';
import { el } from './dom';
import type { SpanQueries } from './queries';
import type { SpanRef } from './timeline/types';

/** Matches kept per run for Enter to step through (the count covers them all). */
const HITS_KEPT = 1000;
const DEBOUNCE_MS = 120;

export interface SearchHost {
  runs(): readonly Run[];
  readonly queries: SpanQueries;
  /** The text changed (after the debounce); '' when cleared. */
  onText(text: string): void;
  /** Show match `ref`. */
  /** Go to a hit: `ref` names the trace's span (for a tiled run, not a position in its tile). */
  onGo(ref: SpanRef, hit: SearchHit): void;
}

export interface SearchState {
  text: string;
  count: number;
  /** Position of the match shown (0-based), -1 when none. */
  index: number;
}

export class SearchBox {
  readonly root = el('div', 'px-search');
  readonly input = el('input', 'px-search-input');
  private readonly count = el('span', 'px-search-count');
  private hits: { run: number; hit: SearchHit }[] = [];
  private total = 0;
  private index = -1;
  private current = '';
  private timer: ReturnType<typeof setTimeout> | null = null;
  private generation = 0;
  /** Resolves when the last search finished (for the test hook). */
  settled: Promise<void> = Promise.resolve();

  constructor(private readonly host: SearchHost) {
    this.input.type = 'search';
    this.input.placeholder = 'Search spans by name';
    this.input.setAttribute('aria-label', 'Search spans by name or operator type');
    this.input.spellcheck = false;
    this.count.setAttribute('role', 'status');
    const prev = this.button('‹', 'Previous match', () => this.step(-1));
    const next = this.button('›', 'Next match', () => this.step(1));
    this.root.append(this.input, this.count, prev, next);
    this.input.addEventListener('input', () => {
      if (this.timer) clearTimeout(this.timer);
      this.timer = setTimeout(() => void this.run(), DEBOUNCE_MS);
    });
    this.input.addEventListener('keydown', (e) => {
      if (e.key === 'Enter') {
        e.preventDefault();
        // Enter right after typing searches first, then moves.
        void this.run().then(() => this.step(e.shiftKey ? -1 : 1));
      } else if (e.key === 'Escape') {
        this.input.value = '';
        void this.run();
      }
    });
  }

  private button(text: string, label: string, on: () => void): HTMLButtonElement {
    const b = el('button', 'px-icon-button', text);
    b.type = 'button';
    b.setAttribute('aria-label', label);
    b.title = label;
    b.addEventListener('click', on);
    return b;
  }

  get text(): string {
    return this.current;
  }

  state(): SearchState {
    return { text: this.current, count: this.total, index: this.index };
  }

  /** Searches for what the box holds now (no-op when it was searched already). */
  run(): Promise<void> {
    if (this.timer) {
      clearTimeout(this.timer);
      this.timer = null;
    }
    const text = this.input.value.trim();
    if (text === this.current) return this.settled;
    this.current = text;
    const gen = ++this.generation;
    this.settled = (async () => {
      this.hits = [];
      this.total = 0;
      this.index = -1;
      if (text !== '') {
        const runs = this.host.runs();
        for (let r = 0; r < runs.length; r++) {
          const res = await this.host.queries.ask(r, { type: 'search', text, limit: HITS_KEPT });
          if (gen !== this.generation) return;
          if (res.type !== 'search') continue;
          this.total += res.count;
          for (const hit of res.hits) this.hits.push({ run: r, hit });
        }
        this.hits.sort((a, b) => a.hit.startUs - runs[a.run].offsetUs - (b.hit.startUs - runs[b.run].offsetUs));
      }
      this.showCount();
      this.host.onText(text);
    })();
    return this.settled;
  }

  /** Clears the box (new traces loaded). */
  reset(): void {
    this.input.value = '';
    this.current = '';
    this.hits = [];
    this.total = 0;
    this.index = -1;
    this.showCount();
  }

  private showCount(): void {
    if (this.current === '') this.count.textContent = '';
    else if (this.total === 0) this.count.textContent = 'no matches';
    else if (this.index < 0) this.count.textContent = `${this.total.toLocaleString('en-US')} ${this.total === 1 ? 'match' : 'matches'}`;
    else this.count.textContent = `${(this.index + 1).toLocaleString('en-US')} of ${this.total.toLocaleString('en-US')}`;
  }

  /** Moves to the next (+1) or previous (−1) match. */
  step(dir: 1 | -1): void {
    if (this.hits.length === 0) return;
    this.index = this.index < 0 ? (dir > 0 ? 0 : this.hits.length - 1) : (this.index + dir + this.hits.length) % this.hits.length;
    const h = this.hits[this.index];
    this.showCount();
    this.host.onGo({ run: h.run, span: h.hit.span }, h.hit);
  }
}
