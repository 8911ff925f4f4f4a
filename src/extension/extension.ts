/**
 * VS Code extension entry. The extension host never loads ONNX Runtime: profiling runs in
 * the runner process (see src/runtime/api.ts). The full command set, timeline panel and
 * inline hints build on this entry.
 */
import * as vscode from 'vscode';
import { profile, ProfileCancelled } from '../runtime/api';
import { isUserError } from '../common/errors';

export function activate(context: vscode.ExtensionContext): void {
  const out = vscode.window.createOutputChannel('Parallax');
  context.subscriptions.push(out);

  context.subscriptions.push(
    vscode.commands.registerCommand('parallax.profileModel', async (uri?: vscode.Uri) => {
      const target =
        uri ??
        (await vscode.window.showOpenDialog({ canSelectMany: false, filters: { 'ONNX model': ['onnx'] }, title: 'Model to profile' }))?.[0];
      if (!target) return;
      const folder = vscode.workspace.workspaceFolders?.[0]?.uri ?? vscode.Uri.joinPath(target, '..');
      const outPath = vscode.Uri.joinPath(folder, 'runs', `${target.path.split('/').pop()?.replace(/\.onnx$/, '')}-data.parallax.json`).fsPath;
      try {
        const result = await vscode.window.withProgress(
          { location: vscode.ProgressLocation.Notification, title: 'Parallax: profiling', cancellable: true },
          (progress, token) => {
            const abort = new AbortController();
            token.onCancellationRequested(() => abort.abort());
            return profile(
              {
                modelPath: target.fsPath,
                modelLabel: vscode.workspace.asRelativePath(target),
                mode: 'data',
                devices: 'cpu:2',
                batch: 64,
                steps: 20,
                warmup: 3,
                seed: 0,
                capture: true,
                opLevel: true,
                baseline: true,
                outPath,
              },
              { signal: abort.signal, onProgress: (p) => progress.report({ message: `${p.message} ${p.done}/${p.total}` }) },
            );
          },
        );
        out.appendLine(JSON.stringify(result.summary, null, 2));
        void vscode.window.showInformationMessage(
          `Parallax: median step ${(result.summary.stepTimeUs.median / 1000).toFixed(2)} ms; trace written to ${result.tracePath}`,
        );
      } catch (e) {
        if (e instanceof ProfileCancelled) return;
        void vscode.window.showErrorMessage(`Parallax: ${isUserError(e) ? (e as Error).message : String(e)}`);
      }
    }),
  );
}

export function deactivate(): void {}
