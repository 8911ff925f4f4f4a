/**
 * Inlay hints in the model's Python source: on each `self.<attr> = …` definition (and each
 * line a dynamo stack trace names) the share of step time its operators took in the latest
 * trace of the model, with a marker on the bottleneck pipeline stage; a click opens the
 * timeline at those operators. The mapping is scope-map.ts and source-model.ts; this module
 * gathers the inputs (traces, the model's node metadata, the workspace's Python files) and
 * places the hints.
 *
 * The model is read with `loadModel` (protobuf parsing only; ONNX Runtime never loads in the
 * extension host), and only when it is small enough to read whole without hurting the host.
 */
import { promises as fs } from 'node:fs';
import { isAbsolute, join, resolve } from 'node:path';
import * as vscode from 'vscode';
import { loadModel } from '../runtime/onnx/model';
import type { Ctx } from './ctx';
import { Command, type ShowTimelineArgs } from './ids';
import { formatDuration } from './hints';
import type { RunEntry, RunStore } from './runs';
import { PythonIndex, indexPython, userFrame, parseStackTrace, matchTrailingPath, META_STACK_TRACE, type PyFileIndex } from './scope-map';
import { hintLabel, indexRanges, nodeScope, opTimes, shareText, sourceHints, type OpTimes, type SourceHint } from './source-model';

/** Python files the index leaves out: environments, dependencies, caches, build output. */
const PY_EXCLUDE = '{**/node_modules/**,**/.git/**,**/.venv/**,**/venv/**,**/env/**,**/site-packages/**,**/__pycache__/**,**/.tox/**,**/build/**,**/dist/**}';
const MAX_PY_FILES = 3000;
const MAX_PY_BYTES = 1024 * 1024;
/** Models larger than this are not read in the extension host (node names still map by scope). */
const MAX_MODEL_BYTES = 256 * 1024 * 1024;
/** Models whose latest traces are mapped. */
const MAX_MODELS = 3;

interface ModelHints {
  tracePath: string;
  model: string;
  times: OpTimes;
  hints: SourceHint[];
  metadata: Map<string, Record<string, string>>;
}

interface State {
  models: ModelHints[];
  python: PythonIndex;
  pythonFiles: string[];
}

export class SourceHints implements vscode.InlayHintsProvider, vscode.Disposable {
  private readonly changed = new vscode.EventEmitter<void>();
  readonly onDidChangeInlayHints = this.changed.event;
  private readonly disposables: vscode.Disposable[] = [this.changed];
  private readonly files = new Map<string, { stamp: string; index: PyFileIndex }>();
  private fileList: string[] | null = null;
  private readonly times = new Map<string, OpTimes>();
  private state: Promise<State> | null = null;
  private timer: NodeJS.Timeout | undefined;
  private readonly models = new Map<string, { mtimeMs: number; meta: Promise<{ known: Set<string>; metadata: Map<string, Record<string, string>> } | null> }>();

  constructor(
    private readonly ctx: Ctx,
    private readonly runs: RunStore,
  ) {
    const py = vscode.workspace.createFileSystemWatcher('**/*.py');
    this.disposables.push(
      vscode.languages.registerInlayHintsProvider({ language: 'python' }, this),
      py,
      py.onDidCreate(() => this.invalidate(true)),
      py.onDidDelete(() => this.invalidate(true)),
      py.onDidChange(() => this.invalidate(false)),
      vscode.workspace.onDidChangeTextDocument((e) => {
        if (e.document.languageId === 'python' && e.contentChanges.length > 0) this.invalidate(false, 800);
      }),
      vscode.workspace.onDidChangeConfiguration((e) => {
        if (e.affectsConfiguration('parallax')) this.invalidate(false, 0);
      }),
      runs.onDidChange(() => this.invalidate(false, 0)),
    );
  }

  private invalidate(fileListChanged: boolean, ms = 300): void {
    if (fileListChanged) this.fileList = null;
    if (this.timer) clearTimeout(this.timer);
    this.timer = setTimeout(() => {
      this.state = null;
      this.changed.fire();
    }, ms);
  }

  private compute(): Promise<State> {
    this.state ??= this.build().catch((e: unknown) => {
      this.ctx.output.warn(`source hints: ${e instanceof Error ? e.message : String(e)}`);
      return { models: [], python: new PythonIndex([]), pythonFiles: [] };
    });
    return this.state;
  }

  private async build(): Promise<State> {
    const pythonFiles = await this.pythonFiles();
    const indexed: [string, PyFileIndex][] = [];
    for (const f of pythonFiles) {
      const ix = await this.indexFile(f);
      if (ix) indexed.push([f, ix]);
    }
    const python = new PythonIndex(indexed);
    const models: ModelHints[] = [];
    const seen = new Set<string>();
    for (const entry of this.runs.list()) {
      if (models.length >= MAX_MODELS) break;
      const digest = await this.runs.digest(entry.path);
      const modelPath = digest?.meta?.modelPath;
      if (!modelPath) continue;
      const abs = resolveModelPath(modelPath, entry);
      if (seen.has(abs)) continue;
      seen.add(abs);
      let trace;
      try {
        trace = await this.runs.trace(entry.path);
      } catch (e) {
        this.ctx.output.warn(`source hints: cannot read ${entry.path}: ${e instanceof Error ? e.message : String(e)}`);
        continue;
      }
      const meta = await this.modelMeta(abs);
      // Operator times change only with the trace (and the model's names): cached, so that
      // typing in a Python file re-resolves definitions without re-reading the spans.
      const timesKey = `${entry.path}@${entry.mtimeMs}@${meta ? meta.known.size : 0}`;
      let times = this.times.get(timesKey);
      if (!times) {
        times = opTimes(trace, meta?.known);
        this.times.set(timesKey, times);
        // Keep as many as there are models mapped (Map iterates oldest first).
        for (const k of this.times.keys()) if (this.times.size > MAX_MODELS) this.times.delete(k);
      }
      if (times.nodes.size === 0) continue; // No operator spans (opLevel off).
      const metadata = meta?.metadata ?? new Map<string, Record<string, string>>();
      const hints = sourceHints(times, { python, pythonFiles, metadata });
      models.push({ tracePath: entry.path, model: modelPath, times, hints, metadata });
    }
    return { models, python, pythonFiles };
  }

  private async pythonFiles(): Promise<string[]> {
    if (!this.fileList) {
      const uris = await vscode.workspace.findFiles('**/*.py', PY_EXCLUDE, MAX_PY_FILES);
      this.fileList = uris.filter((u) => u.scheme === 'file').map((u) => u.fsPath).sort();
    }
    return this.fileList;
  }

  /** The index of a Python file: the open document's text where it is open, else the file. */
  private async indexFile(path: string): Promise<PyFileIndex | null> {
    const open = vscode.workspace.textDocuments.find((d) => d.uri.scheme === 'file' && d.uri.fsPath === path);
    let stamp: string;
    let text: string | null = null;
    if (open) {
      stamp = `v${open.version}`;
      const hit = this.files.get(path);
      if (hit?.stamp === stamp) return hit.index;
      text = open.getText();
    } else {
      try {
        const st = await fs.stat(path);
        if (st.size > MAX_PY_BYTES) return null;
        stamp = `m${st.mtimeMs}`;
        const hit = this.files.get(path);
        if (hit?.stamp === stamp) return hit.index;
        text = await fs.readFile(path, 'utf8');
      } catch {
        return null;
      }
    }
    const index = indexPython(text);
    this.files.set(path, { stamp, index });
    return index;
  }

  /** The model's node names and node metadata, read once per model file version. */
  private async modelMeta(path: string): Promise<{ known: Set<string>; metadata: Map<string, Record<string, string>> } | null> {
    let st;
    try {
      st = await fs.stat(path);
    } catch {
      return null;
    }
    const hit = this.models.get(path);
    if (hit && hit.mtimeMs === st.mtimeMs) return hit.meta;
    const meta =
      st.size > MAX_MODEL_BYTES
        ? Promise.resolve(null)
        : loadModel(path, { checkExternalData: false }).then(
            (ir) => {
              const metadata = new Map<string, Record<string, string>>();
              for (const n of ir.nodes) if (Object.keys(n.metadata).length > 0) metadata.set(n.name, n.metadata);
              return { known: new Set(ir.nodes.map((n) => n.name)), metadata };
            },
            (e: unknown) => {
              this.ctx.output.warn(`source hints: cannot read the model ${path}: ${e instanceof Error ? e.message : String(e)}`);
              return null;
            },
          );
    this.models.set(path, { mtimeMs: st.mtimeMs, meta });
    return meta;
  }

  async provideInlayHints(document: vscode.TextDocument, range: vscode.Range): Promise<vscode.InlayHint[]> {
    if (document.uri.scheme !== 'file') return [];
    const settings = this.ctx.sourceHintSettings(document.uri);
    if (!settings.enabled) return [];
    const state = await this.compute();
    const path = document.uri.fsPath;
    const out: vscode.InlayHint[] = [];
    const several = state.models.length > 1;
    for (const m of state.models) {
      for (const h of m.hints) {
        if (h.file !== path || h.line < range.start.line || h.line > range.end.line || h.line >= document.lineCount) continue;
        if (h.share < settings.minShare) continue;
        const lineText = document.lineAt(h.line).text;
        const character = h.character >= 0 ? Math.min(h.character, lineText.length) : lineText.trimEnd().length;
        const label = `${several ? `${baseName(m.model)}: ` : ''}${hintLabel(h, m.times)}`;
        const part = new vscode.InlayHintLabelPart(label);
        part.tooltip = tooltip(h, m);
        const args: ShowTimelineArgs = { tracePath: m.tracePath, ...(h.range ? { startUs: h.range.startUs, endUs: h.range.endUs } : {}), lanes: h.lanes };
        part.command = { title: 'Show in the timeline', command: Command.revealInTimeline, arguments: [args] };
        const hint = new vscode.InlayHint(new vscode.Position(h.line, character), [part]);
        hint.paddingLeft = true;
        out.push(hint);
      }
    }
    return out;
  }

  /**
   * The source of a model node in a trace's model (for the Findings view): the innermost
   * definition its scope resolves to, or the user frame of its stack trace.
   */
  async locateNode(tracePath: string, node: string): Promise<vscode.Location | null> {
    const state = await this.compute();
    const m = state.models.find((x) => x.tracePath === tracePath) ?? state.models[0];
    const meta = m?.metadata.get(node);
    const stack = meta?.[META_STACK_TRACE];
    if (stack) {
      const frame = userFrame(parseStackTrace(stack));
      const files = frame ? matchTrailingPath(frame.file, state.pythonFiles) : [];
      if (frame && files.length === 1) return new vscode.Location(vscode.Uri.file(files[0]!), new vscode.Position(frame.line - 1, 0));
    }
    const steps = nodeScope(node, meta);
    if (!steps || steps.length === 0) return null;
    const resolved = state.python.resolve(steps);
    const last = resolved[resolved.length - 1];
    const d = last?.defs[0];
    return d ? new vscode.Location(vscode.Uri.file(d.file), new vscode.Position(d.def.line, d.def.character)) : null;
  }

  dispose(): void {
    if (this.timer) clearTimeout(this.timer);
    for (const d of this.disposables) d.dispose();
  }
}

/** A trace's model path as recorded (possibly relative to the workspace folder) made absolute. */
export function resolveModelPath(recorded: string, entry: RunEntry): string {
  if (isAbsolute(recorded)) return recorded;
  if (entry.folder) return join(entry.folder.uri.fsPath, recorded);
  const ws = vscode.workspace.workspaceFolders?.[0];
  return ws ? join(ws.uri.fsPath, recorded) : resolve(recorded);
}

function baseName(p: string): string {
  return p.split(/[\\/]/).pop() ?? p;
}

function tooltip(h: SourceHint, m: ModelHints): vscode.MarkdownString {
  const md = new vscode.MarkdownString();
  const what = h.kind === 'definition' ? `\`${h.className}.${h.attr}\`` : 'this line';
  md.appendMarkdown(`**Parallax** — ${what}: ${shareText(h.share)} of the devices' step time (${formatDuration(h.us)} over the measured steps) in `);
  md.appendText(vscode.workspace.asRelativePath(vscode.Uri.file(m.tracePath), false));
  md.appendMarkdown('\n\n');
  if (h.stages.length > 0) {
    md.appendText(`Pipeline stage${h.stages.length > 1 ? 's' : ''} ${indexRanges(h.stages)}`);
    if (m.times.bottleneckStage !== null) md.appendText(`; stage ${m.times.bottleneckStage} is the bottleneck (most compute)`);
    md.appendMarkdown('\n\n');
  }
  if (h.perIndex.length > 1) {
    md.appendMarkdown('| entry | time | stage |\n|---|---|---|\n');
    for (const p of h.perIndex) md.appendMarkdown(`| [${p.index}] | ${formatDuration(p.us)} | ${p.stages.join(', ') || '—'} |\n`);
    md.appendMarkdown('\n');
  }
  md.appendMarkdown('Heaviest operators:\n\n');
  for (const n of h.topNodes) {
    md.appendMarkdown('- ');
    md.appendText(`${n.node} — ${formatDuration(n.us)}`);
    md.appendMarkdown('\n');
  }
  md.appendMarkdown('\nClick the hint to show these operators in the timeline.');
  return md;
}
