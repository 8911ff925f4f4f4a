/**
 * The timeline panel: one webview panel (a singleton, as in vscode-extension-samples'
 * webview-sample) that shows a trace, or two traces compared, with the view in webview/.
 *
 *  - `parallax.showTimeline` takes `{ tracePath?, comparePath?, startUs?, endUs?, lanes? }`
 *    (or a file Uri); without a trace it opens the newest `*.parallax.json` in the output
 *    folder (setting `parallax.output.folder`), or asks for a file.
 *  - Traces are read and validated here, in the extension host (`readTrace`: JSON, no code
 *    runs), before the panel opens, so a corrupt file gives one error naming it and leaves
 *    the panel as it was. They are posted with typed-array span columns (webview/src/protocol.ts
 *    `TraceColumnsDocument`), which VS Code transfers as binary blocks.
 *  - The panel survives a window reload: the view keeps no state of its own (it never calls
 *    `vscode.setState`), so the shown paths are kept in `workspaceState` and the serializer
 *    registered for `parallax.timeline` reads the traces again from them.
 *  - Traces of at least `parallax.timeline.tileThreshold` spans are shown in tiles (protocol
 *    3): the `load` carries them without span columns, the panel keeps the trace and answers
 *    the view's `tile` requests from a tile server (src/profiler/span-tiles.ts): from the index
 *    stored in the trace's side file when it has a sound one (checked in tens of ms), else built
 *    as soon as the trace is read, in slices so that the extension host stays responsive while it
 *    indexes (2–4 s for 20M spans on a shared 2-core machine). Not in a worker thread: the worker
 *    would need the columns copied (1.6 GB at 20M spans) or read into shared memory, which
 *    readTrace does not do, and the host needs them for span queries anyway. Span queries
 *    are answered from the same copy.
 *  - Everything the view sends is checked against the protocol's schema
 *    ({@link checkFromWebview}) before use; what fails is logged and dropped.
 */
import { existsSync, promises as fs } from 'node:fs';
import { basename, dirname, isAbsolute, join, resolve } from 'node:path';
import * as vscode from 'vscode';
import { isUserError } from '../common/errors';
import { TRACE_FORMAT_TAG, TRACE_FORMAT_VERSION, type Trace } from '../profiler/trace-format';
import { readTrace, readTraceWithTileIndex } from '../profiler/trace-io';
import { answerSpanQuery } from '../profiler/span-query';
import { summarize } from '../profiler/summary';
import { allocSpans } from '../profiler/trace-format';
import { SpanTiles, buildSpanTiles, tileSummary, type SpanTilesIndex } from '../profiler/span-tiles';
import { PROTOCOL_VERSION, type FromWebview, type TiledInfo, type ToWebview, type TraceColumnsDocument } from '../../webview/src/protocol';
import type { Ctx } from './ctx';
import { Command, type ShowTimelineArgs } from './ids';
import { checkFromWebview } from './webview-messages';
import { errorHtml, TIMELINE_VIEW_TYPE, timelineHtml, timelineWebviewOptions } from './webview-html';

/**
 * What `parallax.showTimeline` accepts: {@link ShowTimelineArgs} (the contract in ids.ts)
 * with every field optional. Without a trace it shows the newest one in the output folder,
 * or asks for a file; a relative path is taken from the first workspace folder.
 */
export type TimelineCommandArgs = Partial<ShowTimelineArgs>;

/** What the panel shows, as kept in workspaceState for the serializer. */
interface Shown {
  tracePath: string;
  comparePath?: string;
  startUs?: number;
  endUs?: number;
  lanes?: number[];
}

/** workspaceState key of the shown paths. One key: the panel is a singleton. */
const STATE_KEY = 'parallax.timeline.shown';

/** Longest view-supplied text that goes into a notification. */
const MAX_TEXT = 160;

/**
 * Reads the command's argument: a trace file's Uri (an explorer or editor menu), or an
 * object of {@link TimelineCommandArgs}. Throws with what is wrong with it.
 */
export function readShowTimelineArgs(arg: unknown): TimelineCommandArgs {
  if (arg === undefined || arg === null) return {};
  if (arg instanceof vscode.Uri) {
    if (arg.scheme !== 'file') throw new Error(`${arg.toString(true)} is not a file on this machine's disk`);
    return { tracePath: arg.fsPath };
  }
  if (typeof arg !== 'object' || Array.isArray(arg)) throw new Error('the argument must be { tracePath?, comparePath?, startUs?, endUs?, lanes? }');
  const o = arg as Record<string, unknown>;
  const out: TimelineCommandArgs = {};
  for (const k of ['tracePath', 'comparePath'] as const) {
    const v = o[k];
    if (v === undefined) continue;
    if (typeof v !== 'string' || v.trim() === '') throw new Error(`"${k}" must be a file path`);
    out[k] = v;
  }
  if (out.comparePath !== undefined && out.tracePath === undefined) throw new Error('"comparePath" needs a "tracePath" to compare with');
  const s = o['startUs'];
  const e = o['endUs'];
  if (s !== undefined || e !== undefined) {
    if (typeof s !== 'number' || typeof e !== 'number' || !Number.isFinite(s) || !Number.isFinite(e) || e < s) {
      throw new Error('"startUs" and "endUs" must be given together, as numbers with startUs ≤ endUs');
    }
    out.startUs = s;
    out.endUs = e;
  }
  const lanes = o['lanes'];
  if (lanes !== undefined) {
    if (!Array.isArray(lanes) || !lanes.every((l) => Number.isInteger(l) && (l as number) >= 0)) throw new Error('"lanes" must be lane indices');
    out.lanes = lanes as number[];
  }
  return out;
}

/**
 * A trace as the view accepts it, with the span columns as typed arrays. They are posted
 * this way at every size: VS Code moves typed arrays as binary blocks, where JSON arrays
 * (`traceToJson`) would first be copied element by element and then serialised as text.
 */
export function columnsDocument(t: Trace, withSpans = true): TraceColumnsDocument {
  return {
    format: TRACE_FORMAT_TAG,
    version: TRACE_FORMAT_VERSION,
    meta: t.meta,
    strings: t.strings,
    lanes: t.lanes,
    steps: t.steps,
    spans: withSpans ? t.spans : allocSpans(0),
    ...(t.summary !== undefined ? { summary: t.summary } : {}),
    ...(t.findings !== undefined ? { findings: t.findings } : {}),
  };
}

/** Text from a trace or the view, made fit for a notification: one line, short, no Markdown links. */
function plain(s: string): string {
  // Notifications render [text](target) as a link, command: links included; a name from a
  // model must not become one.
  const t = s.replace(/[\u0000-\u001f\u007f]+/g, ' ').replace(/[[\]()]/g, (c) => ({ '[': '⟦', ']': '⟧', '(': '❨', ')': '❩' })[c]!);
  return t.length > MAX_TEXT ? `${t.slice(0, MAX_TEXT - 1)}…` : t;
}

/** An absolute path: relative ones are taken from the first workspace folder. */
function absolute(p: string): string {
  if (isAbsolute(p)) return p;
  const root = vscode.workspace.workspaceFolders?.find((f) => f.uri.scheme === 'file')?.uri.fsPath;
  return root ? resolve(root, p) : resolve(p);
}

/** The newest `*.parallax.json` in any workspace folder's output folder, or undefined. */
async function latestTrace(ctx: Ctx): Promise<string | undefined> {
  let best: { path: string; mtime: number } | undefined;
  for (const f of vscode.workspace.workspaceFolders ?? []) {
    if (f.uri.scheme !== 'file') continue;
    const out = ctx.profileSettings(f.uri).outputFolder;
    const dir = isAbsolute(out) ? out : join(f.uri.fsPath, out);
    let names: string[];
    try {
      names = await fs.readdir(dir);
    } catch {
      continue;
    }
    for (const name of names) {
      // Dot files are the atomic writer's temporaries (src/profiler/trace-io.ts).
      if (!name.endsWith('.parallax.json') || name.startsWith('.')) continue;
      const path = join(dir, name);
      const st = await fs.stat(path).catch(() => null);
      if (st?.isFile() && (!best || st.mtimeMs > best.mtime)) best = { path, mtime: st.mtimeMs };
    }
  }
  return best?.path;
}

async function pickTrace(ctx: Ctx): Promise<string | undefined> {
  const folder = vscode.workspace.workspaceFolders?.find((f) => f.uri.scheme === 'file');
  let defaultUri = folder?.uri;
  if (folder) {
    const out = ctx.profileSettings(folder.uri).outputFolder;
    const dir = isAbsolute(out) ? out : join(folder.uri.fsPath, out);
    if (existsSync(dir)) defaultUri = vscode.Uri.file(dir);
  }
  const picked = await vscode.window.showOpenDialog({
    title: 'Parallax: pick a trace to show (no trace in the output folder yet)',
    openLabel: 'Show Timeline',
    canSelectMany: false,
    filters: { 'Parallax traces': ['json'] },
    ...(defaultUri ? { defaultUri } : {}),
  });
  return picked?.[0]?.fsPath;
}

/** The traces read for a {@link Shown}, ready to post. */
interface Loaded {
  shown: Shown;
  traces: Trace[];
  /** Per trace, the tile index stored in its side file (read only for traces shown in tiles), or null. */
  tileIndexes: (SpanTilesIndex | null)[];
  /** Why stored tile indexes were left aside, one line each. */
  notes: string[];
  /** The files as they were just before reading: `size:mtime` each. */
  stamp: string;
}

function pathsOf(shown: Shown): string[] {
  return shown.comparePath !== undefined ? [shown.tracePath, shown.comparePath] : [shown.tracePath];
}

/** Size and modification time of the files, or null when one cannot be read. */
async function stampOf(paths: string[]): Promise<string | null> {
  try {
    const st = await Promise.all(paths.map((p) => fs.stat(p)));
    return st.map((s, i) => `${paths[i]}:${s.size}:${s.mtimeMs}`).join('|');
  } catch {
    return null;
  }
}

async function readShown(shown: Shown, tileThreshold: number): Promise<Loaded> {
  const paths = pathsOf(shown);
  // Taken before reading: a file rewritten meanwhile then looks changed next time, and is read again.
  const stamp = (await stampOf(paths)) ?? '';
  const read = await Promise.all(paths.map((p) => readTraceWithTileIndex(p, (spans) => isTiled(spans, tileThreshold))));
  return {
    shown,
    traces: read.map((r) => r.trace),
    tileIndexes: read.map((r) => r.tileIndex),
    notes: read.flatMap((r) => (r.note ? [r.note] : [])),
    stamp,
  };
}

/** Whether a trace of `spans` spans is shown in tiles. */
function isTiled(spans: number, tileThreshold: number): boolean {
  return spans >= tileThreshold && spans > 0;
}

function panelTitle(shown: Shown): string {
  const a = basename(shown.tracePath).replace(/\.parallax\.json$/i, '');
  return shown.comparePath === undefined ? `Parallax: ${a}` : `Parallax: ${a} vs ${basename(shown.comparePath).replace(/\.parallax\.json$/i, '')}`;
}

/** The message of an error, with unexpected ones logged in full. */
function errorText(ctx: Ctx, e: unknown): string {
  const text = e instanceof Error ? e.message : String(e);
  if (!isUserError(e)) ctx.output.error(`timeline: ${e instanceof Error ? (e.stack ?? text) : text}`);
  return text.split('\n')[0]!;
}

/** A run shown in tiles: its trace, its stored index until used, and its tile server once asked for. */
interface TiledRun {
  trace: Trace;
  index: SpanTilesIndex | null;
  tiles: Promise<SpanTiles> | null;
  /** The tile server read from the stored index, once it has passed its checks. */
  stored?: SpanTiles;
}

class TimelinePanel {
  static current: TimelinePanel | undefined;

  /** The view has posted `ready` since the page was last set. */
  private ready = false;
  /** Messages for the view, held until it is ready (the `load` holds the whole trace). */
  private pending: ToWebview[] = [];
  /** Sent once the view reports the `load` drawn (a `reveal` needs the trace loaded). */
  private afterLoaded: ToWebview | null = null;
  /** Span counts of the runs of the last `load`, to tell its `loaded` from an earlier one's. */
  private expected: number[] = [];
  /** The view has drawn the last `load`. */
  private drawn = false;
  /** What the panel shows (or is loading), the files' stamp when read, and each run's model. */
  private shown: Shown | null = null;
  private stamp = '';
  private models: (string | null)[] = [];
  private errorPage = false;
  private readonly listeners: vscode.Disposable[] = [];
  /**
   * The traces read again to answer the view's span queries, by path. The panel keeps no
   * copy of what it posts; a trace is read for queries only when the view asks (a view
   * showing a big trace in tiles), and dropped when the panel shows another or closes.
   */
  private queryTraces = new Map<string, Promise<Trace>>();
  /** Per run shown in tiles: its trace and its tile server (built on the first request). */
  private tiled: (TiledRun | null)[] = [];

  private constructor(
    private readonly ctx: Ctx,
    readonly panel: vscode.WebviewPanel,
  ) {
    panel.webview.options = timelineWebviewOptions(ctx.extension.extensionUri);
    this.setTimelinePage();
    this.listeners.push(
      panel.webview.onDidReceiveMessage((m: unknown) => this.onMessage(m)),
      panel.onDidDispose(() => this.disposed()),
      // The view also follows VS Code's theme classes on <body>; the message makes sure.
      vscode.window.onDidChangeActiveColorTheme(() => this.post({ type: 'theme' })),
    );
  }

  /** The panel, revealed; created when there is none. */
  static createOrReveal(ctx: Ctx): TimelinePanel {
    const cur = TimelinePanel.current;
    if (cur) {
      cur.panel.reveal(undefined, false);
      return cur;
    }
    const panel = vscode.window.createWebviewPanel(
      TIMELINE_VIEW_TYPE,
      'Parallax timeline',
      { viewColumn: vscode.ViewColumn.Active, preserveFocus: false },
      {
        ...timelineWebviewOptions(ctx.extension.extensionUri),
        // Kept alive while hidden: the view holds prepared span indices, bucket pyramids and
        // the zoom, which would otherwise be rebuilt from a re-read trace (seconds for large
        // traces) every time the user switches tabs. Memory stays bounded: one panel.
        retainContextWhenHidden: true,
        enableFindWidget: true,
      },
    );
    return (TimelinePanel.current = new TimelinePanel(ctx, panel));
  }

  /** A panel VS Code restored after a reload: shows again what it showed. */
  static async revive(ctx: Ctx, panel: vscode.WebviewPanel): Promise<void> {
    if (TimelinePanel.current) {
      // A timeline was opened before the restore got here; keep one panel.
      panel.dispose();
      return;
    }
    const p = (TimelinePanel.current = new TimelinePanel(ctx, panel));
    const shown = readSaved(ctx.extension.workspaceState.get<unknown>(STATE_KEY));
    if (!shown) {
      p.showErrorPage('Parallax timeline', 'Parallax cannot restore this timeline: no trace is recorded for it. Run "Parallax: Show Timeline" to open one.');
      return;
    }
    panel.title = panelTitle(shown);
    try {
      p.present(await readShown(shown, ctx.tileThreshold()));
    } catch (e) {
      p.showErrorPage(panelTitle(shown), `Parallax cannot restore this timeline: ${errorText(ctx, e)}`);
    }
  }

  /**
   * When the panel already shows these files, unchanged since they were read: takes the new
   * range (if any) without loading them again, so that revealing one range after another
   * (hints, findings) keeps the view's preparation. False when a load is needed.
   */
  async showAgain(shown: Shown): Promise<boolean> {
    const cur = this.shown;
    if (this.errorPage || !cur || cur.tracePath !== shown.tracePath || cur.comparePath !== shown.comparePath) return false;
    if ((await stampOf(pathsOf(shown))) !== this.stamp || this.shown !== cur) return false;
    this.shown = shown;
    void this.ctx.extension.workspaceState.update(STATE_KEY, shown);
    const reveal = revealOf(shown);
    if (reveal) {
      if (this.drawn) this.post(reveal);
      else this.afterLoaded = reveal;
    }
    this.panel.reveal(undefined, false);
    return true;
  }

  /** Shows read traces: posts them now, or when the view is ready. */
  present(loaded: Loaded): void {
    const { shown, traces } = loaded;
    if (this.errorPage) this.setTimelinePage();
    this.shown = shown;
    this.stamp = loaded.stamp;
    this.queryTraces.clear();
    const threshold = this.ctx.tileThreshold();
    for (const note of loaded.notes) this.ctx.output.warn(`timeline: ${note}`);
    this.tiled = traces.map((t, i) => (isTiled(t.spans.count, threshold) ? { trace: t, tiles: null, index: loaded.tileIndexes[i] ?? null } : null));
    // Indexing starts now, while the view starts up, rather than on its first request.
    for (const t of this.tiled) if (t) void this.tilesOf(t).catch(() => undefined);
    // Tiled runs keep their trace here; span queries read the same copy.
    const paths = pathsOf(shown);
    this.tiled.forEach((t, i) => {
      if (t) this.queryTraces.set(paths[i]!, Promise.resolve(t.trace));
    });
    const tiledInfo: (TiledInfo | null)[] = this.tiled.map((t) => {
      if (!t) return null;
      // The view cannot compute the summary without the spans: it comes with the load.
      if (t.trace.summary === undefined) {
        try {
          t.trace.summary = summarize(t.trace);
        } catch (e) {
          this.ctx.output.warn(`timeline: no summary for ${basename(shown.tracePath)}: ${e instanceof Error ? e.message : String(e)}`);
        }
      }
      // From the stored index when it was read: its row table saves a pass over the spans.
      return t.stored ? t.stored.summary() : tileSummary(t.trace.spans, t.trace.lanes.length);
    });
    this.models = traces.map((t) => t.meta.model?.path ?? null);
    this.expected = traces.map((t) => t.spans.count);
    this.drawn = false;
    this.panel.title = panelTitle(shown);
    const names = [shown.tracePath, shown.comparePath].filter((p): p is string => p !== undefined).map((p) => vscode.workspace.asRelativePath(p, false));
    const load: ToWebview = {
      type: 'load',
      trace: columnsDocument(traces[0]!, !this.tiled[0]),
      // Titles only for a comparison, where the two runs need telling apart; one run keeps
      // the view's own title (model · mode).
      ...(traces[1] ? { compare: columnsDocument(traces[1], !this.tiled[1]), title: names[0]!, compareTitle: names[1]! } : {}),
      ...(this.tiled.some((t) => t) ? { tiled: tiledInfo } : {}),
    };
    this.pending = [load];
    this.afterLoaded = revealOf(shown);
    void this.ctx.extension.workspaceState.update(STATE_KEY, shown);
    if (this.ready) this.flush();
  }

  private setTimelinePage(): void {
    this.ready = false;
    this.errorPage = false;
    this.panel.webview.html = timelineHtml(this.panel.webview, this.ctx.extension.extensionUri);
  }

  private showErrorPage(title: string, message: string): void {
    this.ready = false;
    this.errorPage = true;
    this.pending = [];
    this.afterLoaded = null;
    this.ctx.output.error(message);
    this.panel.webview.html = errorHtml(this.panel.webview, this.ctx.extension.extensionUri, title, message);
  }

  private post(m: ToWebview): void {
    if (this.ready) void this.panel.webview.postMessage(m);
  }

  private flush(): void {
    const msgs = this.pending;
    // Dropped here, so the host holds no copy of a posted trace (a trace shown in tiles is
    // kept in `tiled` instead, to answer the view).
    this.pending = [];
    for (const m of msgs) void this.panel.webview.postMessage(m);
  }

  private onMessage(data: unknown): void {
    const checked = checkFromWebview(data);
    if (!checked.ok) {
      this.ctx.output.warn(`timeline: rejected a message from the view: ${plain(checked.error)}`);
      return;
    }
    const m = checked.message;
    switch (m.type) {
      case 'ready':
        if (m.protocol !== PROTOCOL_VERSION) this.ctx.output.warn(`timeline: the view speaks protocol ${m.protocol}, the extension ${PROTOCOL_VERSION}`);
        this.ready = true;
        if (this.pending.length > 0) this.flush();
        // The page was reloaded (e.g. "Developer: Reload Webviews") after its trace was
        // posted: read it again.
        else if (this.shown) void this.reload(this.shown);
        break;
      case 'loaded': {
        const runs = m.runs.map((r) => `${r.spans} spans, ${r.lanes} lanes (${plain(r.source)})`).join(' vs ');
        // An earlier load can report after a newer one was posted; the reveal waits for the newer.
        if (m.runs.length !== this.expected.length || m.runs.some((r, i) => r.spans !== this.expected[i])) {
          this.ctx.output.debug(`timeline: an earlier load finished (${runs})`);
          break;
        }
        this.drawn = true;
        this.ctx.output.info(`timeline: showing ${this.shown ? this.shown.tracePath : '?'}: ${runs}; first frame in ${m.firstFrameMs.toFixed(0)} ms`);
        if (this.afterLoaded) {
          this.post(this.afterLoaded);
          this.afterLoaded = null;
        }
        break;
      }
      case 'error':
        // The view shows the error itself; the log keeps it for a bug report.
        this.ctx.output.error(`timeline view: ${plain(m.message)}`);
        break;
      case 'openSource':
        void this.openSource(m);
        break;
      case 'selectFinding':
        this.ctx.output.debug(`timeline: finding ${m.index} (${plain(m.id)}) of run ${m.run} selected`);
        break;
      case 'selectRange':
        this.ctx.output.debug(m.startUs === null ? 'timeline: range cleared' : `timeline: range ${m.startUs.toFixed(1)}–${m.endUs!.toFixed(1)} µs selected`);
        break;
      case 'query':
        void this.answerQuery(m);
        break;
      case 'tile':
        void this.answerTile(m);
        break;
      case 'spanAt':
        void this.answerSpanAt(m);
        break;
    }
  }

  /** The tile server of a tiled run: from its stored index, or built (in slices) on first use. */
  private tilesOf(t: TiledRun): Promise<SpanTiles> {
    if (!t.tiles && t.index) {
      try {
        const tiles = SpanTiles.fromIndex(t.trace, t.index);
        t.stored = tiles;
        this.ctx.output.info(`timeline: read the stored tile index of ${t.trace.spans.count} spans (checked in ${tiles.buildMs} ms)`);
        t.tiles = Promise.resolve(tiles);
      } catch (e) {
        this.ctx.output.warn(`timeline: ${e instanceof Error ? e.message : String(e)}; the index is built instead`);
      }
      t.index = null;
    }
    if (!t.tiles) {
      t.tiles = buildSpanTiles(t.trace);
      void t.tiles.then(
        (built) => this.ctx.output.info(`timeline: indexed ${t.trace.spans.count} spans for tiles in ${built.buildMs} ms`),
        () => undefined,
      );
    }
    return t.tiles;
  }

  /** Answers a tile request of a run shown in tiles. */
  private async answerTile(m: Extract<FromWebview, { type: 'tile' }>): Promise<void> {
    const t = this.tiled[m.run];
    if (!t) {
      this.post({ type: 'tileResult', id: m.id, run: m.run, error: `run ${m.run} is not shown in tiles` });
      return;
    }
    try {
      const tile = (await this.tilesOf(t)).tile(m.request);
      if (this.tiled[m.run] === t) this.post({ type: 'tileResult', id: m.id, run: m.run, tile });
    } catch (e) {
      this.post({ type: 'tileResult', id: m.id, run: m.run, error: e instanceof Error ? e.message : String(e) });
    }
  }

  /** Answers the view's question of which span lies under its pointer in a run shown in tiles. */
  private async answerSpanAt(m: Extract<FromWebview, { type: 'spanAt' }>): Promise<void> {
    const t = this.tiled[m.run];
    if (!t) {
      this.post({ type: 'spanAtResult', id: m.id, run: m.run, error: `run ${m.run} is not shown in tiles` });
      return;
    }
    try {
      const span = (await this.tilesOf(t)).spanAt(m.request);
      if (this.tiled[m.run] === t) this.post({ type: 'spanAtResult', id: m.id, run: m.run, span });
    } catch (e) {
      this.post({ type: 'spanAtResult', id: m.id, run: m.run, error: e instanceof Error ? e.message : String(e) });
    }
  }

  /** Answers a span query on the host's copy of the trace of run `m.run` (read once per shown trace). */
  private async answerQuery(m: Extract<FromWebview, { type: 'query' }>): Promise<void> {
    const path = m.run === 0 ? this.shown?.tracePath : this.shown?.comparePath;
    if (!path) {
      this.post({ type: 'queryResult', id: m.id, error: `no run ${m.run} is shown` });
      return;
    }
    try {
      let t = this.queryTraces.get(path);
      if (!t) this.queryTraces.set(path, (t = readTrace(path)));
      this.post({ type: 'queryResult', id: m.id, result: answerSpanQuery(await t, m.query) });
    } catch (e) {
      this.queryTraces.delete(path);
      this.post({ type: 'queryResult', id: m.id, error: `${basename(path)}: ${e instanceof Error ? e.message : String(e)}` });
    }
  }

  private async reload(shown: Shown): Promise<void> {
    try {
      const loaded = await readShown(shown, this.ctx.tileThreshold());
      if (this.shown === shown) this.present(loaded);
    } catch (e) {
      this.showErrorPage(panelTitle(shown), `Parallax cannot show ${shown.tracePath} again: ${errorText(this.ctx, e)}`);
    }
  }

  /**
   * A span's source, asked for by a double-click. Operators do not map to a place in a
   * model's source yet, so this names the operator and offers to reveal the model file.
   */
  private async openSource(m: Extract<FromWebview, { type: 'openSource' }>): Promise<void> {
    const tracePath = m.run === 0 ? this.shown?.tracePath : this.shown?.comparePath;
    const model = tracePath ? resolveModel(this.models[m.run] ?? null, dirname(tracePath)) : null;
    const what = m.opType ? `${plain(m.opType)} operator "${plain(m.name)}"` : `"${plain(m.name)}"`;
    const text = `Parallax: ${what} on ${plain(m.device) || `lane ${m.lane}`}. ${model ? `Model: ${vscode.workspace.asRelativePath(model, false)}.` : 'The model file of this trace was not found.'}`;
    const reveal = 'Reveal Model';
    const a = await vscode.window.showInformationMessage(text, ...(model ? [reveal] : []));
    if (a === reveal && model) {
      const inWorkspace = vscode.workspace.getWorkspaceFolder(model) !== undefined;
      await vscode.commands.executeCommand(inWorkspace ? 'revealInExplorer' : 'revealFileInOS', model);
    }
  }

  private disposed(): void {
    if (TimelinePanel.current === this) TimelinePanel.current = undefined;
    this.pending = [];
    this.queryTraces.clear();
    this.tiled = [];
    // The state key stays: a closed panel is not restored anyway, and while the window
    // shuts down for a reload, clearing it could race the serializer's restore.
    for (const d of this.listeners.splice(0)) d.dispose();
  }
}

/** The `reveal` message for a shown range, or null when none is given. */
function revealOf(shown: Shown): ToWebview | null {
  return shown.startUs !== undefined && shown.endUs !== undefined
    ? { type: 'reveal', startUs: shown.startUs, endUs: shown.endUs, ...(shown.lanes ? { lanes: shown.lanes } : {}) }
    : null;
}

/** The model file a trace names, on disk: absolute, or relative to the trace's folder, its parent, or a workspace folder. */
function resolveModel(modelPath: string | null, traceDir: string): vscode.Uri | null {
  if (!modelPath) return null;
  const candidates = isAbsolute(modelPath)
    ? [modelPath]
    : [resolve(traceDir, modelPath), resolve(dirname(traceDir), modelPath), ...(vscode.workspace.workspaceFolders ?? []).map((f) => resolve(f.uri.fsPath, modelPath))];
  const hit = candidates.find((p) => existsSync(p));
  return hit ? vscode.Uri.file(hit) : null;
}

function readSaved(v: unknown): Shown | null {
  try {
    const a = readShowTimelineArgs(v);
    return a.tracePath ? { ...a, tracePath: a.tracePath } : null;
  } catch {
    return null;
  }
}

/** Orders concurrent calls: only the latest call's traces are shown. */
let latestCall = 0;

/**
 * Shows the timeline of a trace (or two compared), opening the panel if needed. Resolves to
 * the trace path shown, or undefined when nothing was (cancelled, or an error, shown to
 * the user as one message naming the file).
 */
export async function showTimeline(ctx: Ctx, args: TimelineCommandArgs = {}): Promise<string | undefined> {
  const call = ++latestCall;
  const tracePath = args.tracePath !== undefined ? absolute(args.tracePath) : ((await latestTrace(ctx)) ?? (await pickTrace(ctx)));
  if (!tracePath) return undefined;
  const shown: Shown = {
    tracePath,
    ...(args.comparePath !== undefined ? { comparePath: absolute(args.comparePath) } : {}),
    ...(args.startUs !== undefined && args.endUs !== undefined ? { startUs: args.startUs, endUs: args.endUs } : {}),
    ...(args.lanes ? { lanes: args.lanes } : {}),
  };
  const cur = TimelinePanel.current;
  if (cur && (await cur.showAgain(shown))) return tracePath;
  let loaded: Loaded;
  try {
    loaded = await vscode.window.withProgress(
      { location: vscode.ProgressLocation.Window, title: `Parallax: reading ${basename(tracePath)}` },
      () => readShown(shown, ctx.tileThreshold()),
    );
  } catch (e) {
    const text = errorText(ctx, e);
    if (isUserError(e)) ctx.output.error(`timeline: ${text}`);
    // The log keeps absolute paths; the notification names files as the explorer does.
    let shortText = text;
    for (const p of [shown.tracePath, shown.comparePath]) if (p) shortText = shortText.split(p).join(vscode.workspace.asRelativePath(p, false));
    void vscode.window.showErrorMessage(isUserError(e) ? `Parallax: ${shortText}` : `Parallax: cannot show ${vscode.workspace.asRelativePath(tracePath, false)}: ${shortText}`);
    return undefined;
  }
  if (call !== latestCall) return undefined;
  TimelinePanel.createOrReveal(ctx).present(loaded);
  return tracePath;
}

/** The `parallax.showTimeline` handler: validates its argument, then {@link showTimeline}. */
export const showTimelineCommand =
  (ctx: Ctx) =>
  async (arg?: unknown): Promise<string | undefined> => {
    let args: TimelineCommandArgs;
    try {
      args = readShowTimelineArgs(arg);
    } catch (e) {
      void vscode.window.showErrorMessage(`Parallax: Show Timeline: ${e instanceof Error ? e.message : String(e)}.`);
      return undefined;
    }
    return showTimeline(ctx, args);
  };

/**
 * Registers `parallax.showTimeline` and the serializer that restores the panel after a
 * window reload (the manifest's `onWebviewPanel:parallax.timeline` activation event brings
 * the extension up for it). Called once from `activate`.
 */
export function registerTimelinePanel(ctx: Ctx): void {
  // Not through ctx.registerCommand, which takes the ids of commands.ts's table only (ids.ts PANEL_COMMANDS).
  ctx.push(vscode.commands.registerCommand(Command.showTimeline, showTimelineCommand(ctx)));
  ctx.push(
    vscode.window.registerWebviewPanelSerializer(TIMELINE_VIEW_TYPE, {
      deserializeWebviewPanel: (panel) => TimelinePanel.revive(ctx, panel),
    }),
  );
}
