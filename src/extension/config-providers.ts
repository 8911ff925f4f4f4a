/**
 * The hints in `parallax.json`: a CodeLens over each plan (run it; its last run's step time,
 * efficiency and bubble), diagnostics for what would stop a run and for each finding of the
 * plan's last run at the key it is about, a quick fix that writes the finding's suggestion,
 * and a hover with the evidence and a link into the timeline. What goes where is computed by
 * config-model.ts and hints.ts; this module places it.
 */
import { existsSync, promises as fs } from 'node:fs';
import { join } from 'node:path';
import * as vscode from 'vscode';
import {
  findPlan,
  isConfigTraceOf,
  configTraceOrder,
  keyAt,
  parseConfig,
  planAt,
  planModelPath,
  type ConfigDoc,
  type ConfigPlan,
  type TextSpan,
} from './config-model';
import type { Ctx } from './ctx';
import { CONFIG_FILE, Command } from './ids';
import { changedSinceRun, hoverMarkdown, lensSummary, planEdit, planHints, commandLink, escapeMarkdown, type KeyHint } from './hints';
import type { RunEntry, RunStore } from './runs';
import type { TraceDigest } from './runs-model';

/** Documents the providers serve. */
export const CONFIG_SELECTOR: vscode.DocumentSelector = [{ scheme: 'file', pattern: `**/${CONFIG_FILE}` }];

const SOURCE = 'Parallax';

/** The last run of a plan, with its digest. */
export interface PlanRun {
  entry: RunEntry;
  digest: TraceDigest;
}

/** Key used for a plan while it runs (see Ctx.runningPlanKey). */
export function planKey(configUri: vscode.Uri, plan: string): string {
  return `${configUri.toString()}#${plan}`;
}

export class ConfigHints implements vscode.Disposable, vscode.CodeLensProvider, vscode.CodeActionProvider, vscode.HoverProvider {
  static readonly providedCodeActionKinds = [vscode.CodeActionKind.QuickFix];
  private readonly parsed = new Map<string, { version: number; doc: ConfigDoc }>();
  private readonly diagnostics = vscode.languages.createDiagnosticCollection('parallax');
  private readonly lensesChanged = new vscode.EventEmitter<void>();
  private readonly disposables: vscode.Disposable[] = [this.diagnostics, this.lensesChanged];
  private readonly timers = new Map<string, NodeJS.Timeout>();
  readonly onDidChangeCodeLenses = this.lensesChanged.event;

  constructor(
    private readonly ctx: Ctx,
    private readonly runs: RunStore,
  ) {
    this.disposables.push(
      vscode.languages.registerCodeLensProvider(CONFIG_SELECTOR, this),
      vscode.languages.registerCodeActionsProvider(CONFIG_SELECTOR, this, { providedCodeActionKinds: ConfigHints.providedCodeActionKinds }),
      vscode.languages.registerHoverProvider(CONFIG_SELECTOR, this),
      vscode.workspace.onDidOpenTextDocument((d) => this.schedule(d.uri, 0)),
      vscode.workspace.onDidChangeTextDocument((e) => this.schedule(e.document.uri)),
      vscode.workspace.onDidCloseTextDocument((d) => this.schedule(d.uri, 0)),
      vscode.workspace.onDidChangeWorkspaceFolders(() => void this.refreshAll()),
      vscode.workspace.onDidChangeConfiguration((e) => {
        if (e.affectsConfiguration('parallax')) void this.refreshAll();
      }),
      runs.onDidChange(() => void this.refreshAll()),
      ctx.onDidChangeProfiling(() => this.lensesChanged.fire()),
      vscode.workspace.onDidGrantWorkspaceTrust(() => this.lensesChanged.fire()),
    );
    const watcher = vscode.workspace.createFileSystemWatcher(`**/${CONFIG_FILE}`);
    this.disposables.push(watcher, watcher.onDidChange((u) => this.schedule(u)), watcher.onDidCreate((u) => this.schedule(u)), watcher.onDidDelete((u) => this.diagnostics.delete(u)));
    void this.refreshAll();
  }

  private isConfig(uri: vscode.Uri): boolean {
    return uri.scheme === 'file' && uri.path.endsWith(`/${CONFIG_FILE}`);
  }

  private schedule(uri: vscode.Uri, ms = 250): void {
    if (!this.isConfig(uri)) return;
    const k = uri.toString();
    const t = this.timers.get(k);
    if (t) clearTimeout(t);
    this.timers.set(
      k,
      setTimeout(() => {
        this.timers.delete(k);
        void this.refresh(uri);
      }, ms),
    );
  }

  /** Recomputes the diagnostics of every config file: open ones and those at workspace folder roots. */
  async refreshAll(): Promise<void> {
    const uris = new Map<string, vscode.Uri>();
    for (const d of vscode.workspace.textDocuments) if (this.isConfig(d.uri)) uris.set(d.uri.toString(), d.uri);
    for (const f of vscode.workspace.workspaceFolders ?? []) {
      const p = join(f.uri.fsPath, CONFIG_FILE);
      if (existsSync(p)) uris.set(vscode.Uri.file(p).toString(), vscode.Uri.file(p));
    }
    await Promise.all([...uris.values()].map((u) => this.refresh(u)));
    this.lensesChanged.fire();
  }

  /** The config as it stands: the open document's text (saved or not), else the file. */
  async configText(uri: vscode.Uri): Promise<{ text: string; version: number } | null> {
    const open = vscode.workspace.textDocuments.find((d) => d.uri.toString() === uri.toString());
    if (open) return { text: open.getText(), version: open.version };
    try {
      return { text: await fs.readFile(uri.fsPath, 'utf8'), version: -1 };
    } catch {
      return null;
    }
  }

  /** Parsed config of an open document (cached per version). */
  parse(document: vscode.TextDocument): ConfigDoc {
    const k = document.uri.toString();
    const hit = this.parsed.get(k);
    if (hit && hit.version === document.version) return hit.doc;
    const doc = parseConfig(document.getText());
    this.parsed.set(k, { version: document.version, doc });
    return doc;
  }

  /** The newest trace of a plan in its workspace folder's output folder. */
  async lastRun(configUri: vscode.Uri, plan: ConfigPlan): Promise<PlanRun | null> {
    const folder = vscode.workspace.getWorkspaceFolder(configUri);
    const model = planModelPath(plan, configUri.fsPath);
    if (!folder || model === null) return null;
    const dir = this.runs.outputDir(folder);
    const mine = this.runs
      .list()
      .filter((e) => e.path === join(dir, e.name) && isConfigTraceOf(e.name, model, plan.name))
      .sort((a, b) => configTraceOrder(b.name).localeCompare(configTraceOrder(a.name)));
    for (const entry of mine) {
      const digest = await this.runs.digest(entry.path);
      if (digest) return { entry, digest };
    }
    return null;
  }

  /** The hints of a plan's last run. */
  async planHints(configUri: vscode.Uri, plan: ConfigPlan): Promise<{ run: PlanRun | null; hints: KeyHint[] }> {
    const run = await this.lastRun(configUri, plan);
    if (!run) return { run: null, hints: [] };
    const hints = planHints(run.digest.findings, plan, run.digest.meta?.plan ?? null, this.ctx.profileSettings(configUri));
    return { run, hints };
  }

  private async refresh(uri: vscode.Uri): Promise<void> {
    const src = await this.configText(uri);
    if (!src) {
      this.diagnostics.delete(uri);
      return;
    }
    const doc = parseConfig(src.text);
    const lines = lineStarts(src.text);
    const range = (s: TextSpan): vscode.Range => new vscode.Range(positionAt(lines, s.offset), positionAt(lines, s.offset + s.length));
    const out: vscode.Diagnostic[] = [];
    for (const plan of doc.plans) {
      for (const p of plan.problems) {
        if (p.bySchema) continue; // VS Code's JSON validation reports it from the schema.
        const d = new vscode.Diagnostic(range(p.span), p.message, p.severity === 'error' ? vscode.DiagnosticSeverity.Error : vscode.DiagnosticSeverity.Warning);
        d.source = SOURCE;
        out.push(d);
      }
      const model = planModelPath(plan, uri.fsPath);
      const modelKey = plan.keys.get('model');
      if (model !== null && modelKey && !existsSync(model)) {
        const d = new vscode.Diagnostic(range(modelKey.valueSpan), `no model file at ${model}; the path is relative to this file's folder`, vscode.DiagnosticSeverity.Warning);
        d.source = SOURCE;
        out.push(d);
      }
      const { hints } = await this.planHints(uri, plan);
      for (const h of hints) {
        const at = h.keyWritten ? plan.keys.get(h.key)!.keySpan : plan.nameSpan;
        const text = h.keyWritten ? h.message : `"${h.key}" (not written, so the default): ${h.message}`;
        const d = new vscode.Diagnostic(range(at), text, h.severity === 'info' ? vscode.DiagnosticSeverity.Information : vscode.DiagnosticSeverity.Warning);
        d.source = SOURCE;
        d.code = h.finding.id;
        out.push(d);
      }
    }
    // The file may have changed while the run digests were read.
    const now = await this.configText(uri);
    if (now && now.text !== src.text) return this.schedule(uri, 0);
    this.diagnostics.set(uri, out);
  }

  async provideCodeLenses(document: vscode.TextDocument): Promise<vscode.CodeLens[]> {
    const doc = this.parse(document);
    const lenses: vscode.CodeLens[] = [];
    for (const plan of doc.plans) {
      const r = spanRange(document, plan.nameSpan);
      const running = this.ctx.runningPlanKey === planKey(document.uri, plan.name);
      let command: vscode.Command;
      if (running) command = { title: '$(pulse) Profiling… (stop)', command: Command.cancelProfile, tooltip: 'Stop this profile' };
      else if (!vscode.workspace.isTrusted) {
        // Profiling runs native code on the model; the last run's numbers still show.
        command = { title: '$(shield) Profile: trust the workspace first', command: 'workbench.trust.manage', tooltip: 'Parallax profiles only in a trusted workspace' };
      } else command = { title: '▶ Profile', command: Command.profileConfig, arguments: [document.uri, plan.name], tooltip: `Profile plan "${plan.name}"` };
      lenses.push(new vscode.CodeLens(r, command));
      const run = await this.lastRun(document.uri, plan);
      if (run?.digest.summary) {
        const changed = changedSinceRun(plan, run.digest.meta?.plan ?? null, this.ctx.profileSettings(document.uri));
        lenses.push(
          new vscode.CodeLens(r, {
            title: `${lensSummary(run.digest.summary)}${changed.length > 0 ? ` (before the change to ${changed.join(', ')})` : ''}`,
            command: Command.revealInTimeline,
            arguments: [{ tracePath: run.entry.path }],
            tooltip: `Last run: ${vscode.workspace.asRelativePath(run.entry.uri, false)} — open it in the timeline`,
          }),
        );
      }
    }
    return lenses;
  }

  async provideCodeActions(document: vscode.TextDocument, range: vscode.Range | vscode.Selection, context: vscode.CodeActionContext): Promise<vscode.CodeAction[]> {
    const doc = this.parse(document);
    const plan = planAt(doc, document.offsetAt(range.start));
    if (!plan) return [];
    const { run, hints } = await this.planHints(document.uri, plan);
    if (!run) return [];
    const editor = vscode.window.visibleTextEditors.find((e) => e.document === document);
    const formatting = {
      insertSpaces: editor ? editor.options.insertSpaces !== false : true,
      tabSize: editor && typeof editor.options.tabSize === 'number' ? editor.options.tabSize : 2,
      eol: document.eol === vscode.EndOfLine.CRLF ? '\r\n' : '\n',
    };
    const actions: vscode.CodeAction[] = [];
    for (const h of hints) {
      const at = spanRange(document, h.keyWritten ? plan.keys.get(h.key)!.keySpan : plan.nameSpan);
      if (!at.intersection(range) && !(range.isEmpty && at.contains(range.start))) continue;
      const diags = context.diagnostics.filter((d) => d.source === SOURCE && d.code === h.finding.id);
      if (h.fixTitle) {
        const edit = planEdit(document.getText(), plan.name, h.changes, formatting);
        if (edit) {
          const a = new vscode.CodeAction(h.fixTitle, vscode.CodeActionKind.QuickFix);
          a.edit = new vscode.WorkspaceEdit();
          a.edit.replace(document.uri, new vscode.Range(document.positionAt(edit.offset), document.positionAt(edit.offset + edit.length)), edit.content);
          a.diagnostics = diags;
          a.isPreferred = true;
          actions.push(a);
        }
      }
      const show = new vscode.CodeAction(`Show the ${h.finding.id} evidence in the timeline`, vscode.CodeActionKind.QuickFix);
      show.command = {
        title: show.title,
        command: Command.revealInTimeline,
        arguments: [{ tracePath: run.entry.path, startUs: h.finding.evidence.startUs, endUs: h.finding.evidence.endUs, lanes: h.finding.evidence.lanes }],
      };
      show.diagnostics = diags;
      actions.push(show);
    }
    return actions;
  }

  async provideHover(document: vscode.TextDocument, position: vscode.Position): Promise<vscode.Hover | null> {
    const doc = this.parse(document);
    const offset = document.offsetAt(position);
    const plan = planAt(doc, offset);
    if (!plan) return null;
    const onName = offset >= plan.nameSpan.offset && offset <= plan.nameSpan.offset + plan.nameSpan.length;
    const key = onName ? undefined : keyAt(plan, offset);
    if (!onName && !key) return null;
    const { run, hints } = await this.planHints(document.uri, plan);
    if (!run) return null;
    const labels = run.digest.summary?.devices.map((d) => d.label) ?? run.digest.meta?.devices.map((d) => d.label) ?? [];
    let md: string;
    let range: vscode.Range;
    if (onName) {
      const s = run.digest.summary;
      md = [
        `**Parallax · plan "${escapeMarkdown(plan.name)}"** — last run ${escapeMarkdown(vscode.workspace.asRelativePath(run.entry.uri, false))}`,
        '',
        s ? escapeMarkdown(lensSummary(s)) : 'no summary in the trace',
        '',
        ...hints.map((h) => `- ${escapeMarkdown(h.finding.id)} at "${escapeMarkdown(h.key)}": ${escapeMarkdown(h.message)}`),
        '',
        commandLink('$(graph) Open the last run in the timeline', Command.revealInTimeline, { tracePath: run.entry.path }),
      ].join('\n');
      range = spanRange(document, plan.nameSpan);
    } else {
      const mine = hints.filter((h) => h.key === key!.key && h.keyWritten);
      if (mine.length === 0) return null;
      md = hoverMarkdown(mine, run.entry.path, labels, Command.revealInTimeline);
      range = spanRange(document, key!.keySpan);
    }
    const ms = new vscode.MarkdownString(md, true);
    ms.isTrusted = { enabledCommands: [Command.revealInTimeline] };
    return new vscode.Hover(ms, range);
  }

  /** Reveals a plan's key in its config file (for the Findings view). */
  async revealKey(configUri: vscode.Uri, planName: string, key: string | null): Promise<boolean> {
    const document = await vscode.workspace.openTextDocument(configUri);
    const plan = findPlan(this.parse(document), planName);
    if (!plan) return false;
    const span = (key !== null ? plan.keys.get(key)?.keySpan : undefined) ?? plan.nameSpan;
    const r = spanRange(document, span);
    await vscode.window.showTextDocument(document, { selection: r, preserveFocus: false, preview: true });
    return true;
  }

  dispose(): void {
    for (const t of this.timers.values()) clearTimeout(t);
    for (const d of this.disposables) d.dispose();
  }
}

function spanRange(document: vscode.TextDocument, s: TextSpan): vscode.Range {
  return new vscode.Range(document.positionAt(s.offset), document.positionAt(s.offset + s.length));
}

/** Offsets of line starts, for positions in text that is not an open document. */
function lineStarts(text: string): number[] {
  const out = [0];
  for (let i = 0; i < text.length; i++) if (text.charCodeAt(i) === 10) out.push(i + 1);
  return out;
}

function positionAt(starts: number[], offset: number): vscode.Position {
  let lo = 0;
  let hi = starts.length - 1;
  while (lo < hi) {
    const mid = (lo + hi + 1) >> 1;
    if (starts[mid] <= offset) lo = mid;
    else hi = mid - 1;
  }
  return new vscode.Position(lo, offset - starts[lo]);
}

/** The config file at a workspace folder's root, if there is one. */
export function rootConfig(folder: vscode.WorkspaceFolder): vscode.Uri | null {
  const p = join(folder.uri.fsPath, CONFIG_FILE);
  return existsSync(p) ? vscode.Uri.file(p) : null;
}
