/**
 * Runner process entry. Started by {@link ../api} with `child_process.fork`; speaks the
 * {@link ToRunner}/{@link FromRunner} protocol over the IPC channel, serves one request
 * (`start` or `devices`) and exits when done.
 */
import { isToRunner, type FromRunner } from '../protocol';
import { runProfile } from './runner';
import { isCancelled, isUserError } from '../../common/errors';
import { discoverDevices } from '../device/discovery';
import { asInputError } from '../input-errors';
import { settleWorkers } from './workers';
import { watchParent } from './parent-watch';

const send = (m: FromRunner): Promise<void> =>
  new Promise((resolve) => {
    if (!process.send) return resolve();
    process.send(m, undefined, undefined, () => resolve());
  });

const abort = new AbortController();
let started = false;

process.on('message', (m: unknown) => {
  if (!isToRunner(m)) return;
  if (m.type === 'cancel') {
    abort.abort();
    return;
  }
  if (started) return;
  started = true;
  if (m.type === 'devices') {
    discoverDevices({ probeWebGpu: m.probeWebGpu })
      .then(async (devices) => {
        await send({ type: 'devices', devices });
        process.exit(0);
      })
      .catch(async (e: unknown) => {
        await send({ type: 'error', message: e instanceof Error ? (isUserError(e) ? e.message : e.stack ?? e.message) : String(e), user: isUserError(e) });
        process.exit(1);
      });
    return;
  }
  runProfile(m.request, { progress: (progress) => void send({ type: 'progress', progress }), signal: abort.signal })
    .then(async ({ summary, trace, planText, planInfo }) => {
      await send({
        type: 'result',
        tracePath: m.request.dryRun ? null : m.request.outPath,
        summary,
        findings: trace?.findings ?? [],
        planText,
        planInfo,
      });
      process.exit(0);
    })
    .catch(async (caught: unknown) => {
      const e = asInputError(caught);
      if (isCancelled(e)) {
        await send({ type: 'error', message: 'cancelled', user: true });
        process.exit(130);
      }
      const message = e instanceof Error ? (isUserError(e) ? e.message : e.stack ?? e.message) : String(e);
      await send({ type: 'error', message, user: isUserError(e) });
      // Exiting while a device worker is inside ONNX Runtime can abort from native code.
      await settleWorkers();
      process.exit(1);
    });
});

// The runner must not outlive its parent (e.g. VS Code reloading the window, or the CLI
// killed while a device is inside a long session.run).
watchParent();
