// `boxkeeper check | install | rollback | clear-cache | reload-config`: sent to the running
// daemon over its control channel, or, when no daemon runs, carried out in this process (under
// the same single-instance lock) and waited for.
import { ExitCode } from '../exit-codes.ts';
import { resolve } from 'node:path';
import { controlRequest, readControlInfo, type ControlInfo } from '../../adapters/control.ts';
import {
  BoxkeeperError,
  errorMessage,
  StorageError,
  storageErrorOf,
  isErrnoCode,
  UsageError,
} from '../../adapters/errors.ts';
import { nodePatchFs } from '../../adapters/patch-fs.ts';
import { readZipEntry, UnsafeZipError } from '../../adapters/zip.ts';
import type { PatchInfo } from '../../machines/patch.machine.ts';
import { LocalPatchError, stageLocalPatch } from '../../services/update/local-patch.ts';
import type { UpdateEvent } from '../../machines/update.machine.ts';
import type { Agent } from '../../services/agent/agent.ts';
import type { UpdateEngine, UpdateStatus } from '../../services/update/update-engine.ts';
import { loadContext, realWorld } from '../context.ts';
import { openSession } from '../session.ts';
import { progressView } from '../progress.ts';
import { controlFile, type UpdateRuntime } from '../updates.ts';
import type { CommandRun } from './index.ts';

/** Nothing runs for the update: the cycle rests (the machine's `settled` tag). */
const settled = (s: UpdateStatus): boolean => s.tags.includes('settled');

const out = (s: string) => process.stdout.write(`${s}\n`);

class BusyError extends BoxkeeperError {
  constructor(state: string) {
    super(`the update cycle is busy (${state}); try again when it is idle`, 'locked');
  }
}

function notApplicable(name: string, state: string): BoxkeeperError {
  if (name === 'rollback')
    return new BoxkeeperError(
      "nothing to roll back: no update was installed by this box's boxkeeper",
      'nothingToDo',
    );
  if (name === 'install')
    return new BoxkeeperError(
      'no downloaded update waits to be installed; run "boxkeeper check" first',
      'nothingToDo',
    );
  return new BusyError(state);
}

function summary(u: UpdateStatus): string {
  const versions = u.versions.map((v) => `${v.versionNum} ${v.status}`).join(', ');
  return [
    `update: ${u.state} (phase ${u.phaseNumber} ${u.phase})${versions === '' ? '' : `; ${versions}`}`,
    ...(u.lastResult === null ? [] : [`last result: ${u.lastResult}`]),
    ...(u.lastError === null ? [] : [`last error: ${u.lastError}`]),
  ].join('\n');
}

async function viaDaemon(
  info: ControlInfo,
  name: string,
  wait: boolean,
  timeoutMs: number,
  patch?: PatchInfo,
): Promise<{ before: UpdateStatus; status: UpdateStatus }> {
  const view = progressView(process.stdout);
  const request = patch === undefined ? { command: name } : { command: 'install-file', patch };
  const r = await controlRequest(info, 'POST', '/command', request);
  const body = r.body as { accepted?: boolean; status?: UpdateStatus; error?: string };
  if (r.status === 409) {
    const state = body.status?.state ?? '?';
    if (body.status !== undefined && settled(body.status)) throw notApplicable(name, state);
    throw new BusyError(state);
  }
  if (r.status !== 200 || body.status === undefined)
    throw new BoxkeeperError(
      `the daemon refused "${name}": ${body.error ?? `HTTP ${r.status}`}`,
      'internal',
    );
  const before = body.status;
  let status = before;
  if (!wait) return { before, status };
  view.update(status);
  const started = Date.now();
  // The event moved the machine on at once; wait until it rests again.
  while (!settled(status) || Date.now() - started < 200) {
    if (Date.now() - started > timeoutMs)
      throw new BoxkeeperError(
        `still ${status.state} after ${timeoutMs / 1000} s (it goes on in the daemon)`,
        'internal',
      );
    await new Promise((res) => setTimeout(res, 200));
    status = (await controlRequest(info, 'GET', '/status')).body as UpdateStatus;
    view.update(status);
  }
  view.stop();
  return { before, status };
}

/** `install --file`: the zip staged where a download would put it; a bad file is usage (2). */
async function stage(
  file: string,
  given: { versionNum?: string; versionCode?: string },
  patchDir: string,
): Promise<PatchInfo> {
  try {
    return await stageLocalPatch(file, given, { fs: nodePatchFs, readZipEntry, patchDir });
  } catch (err) {
    if (err instanceof LocalPatchError || err instanceof UnsafeZipError)
      throw new UsageError(`install --file: ${err.message}`);
    if (isErrnoCode(err, 'ENOENT')) throw new UsageError(`install --file: ${file}: no such file`);
    throw err;
  }
}

/** The run of one of these commands; their texts are in the command table (index.ts). */
export function opRunner(name: string, event: UpdateEvent['type'] | null): CommandRun {
  return async (args) => {
    const timeoutRaw = typeof args.values.timeout === 'string' ? Number(args.values.timeout) : 3600;
    if (!Number.isFinite(timeoutRaw) || timeoutRaw <= 0)
      throw new UsageError(`--timeout ${String(args.values.timeout)}: expected seconds > 0`);
    const timeoutMs = timeoutRaw * 1000;
    const file = typeof args.values.file === 'string' ? resolve(args.values.file) : undefined;
    const given = {
      ...(typeof args.values['version-num'] === 'string'
        ? { versionNum: args.values['version-num'] }
        : {}),
      ...(typeof args.values['version-code'] === 'string'
        ? { versionCode: args.values['version-code'] }
        : {}),
    };
    if (file === undefined && Object.keys(given).length > 0)
      throw new UsageError('--version-num and --version-code go with --file PATCH.zip');
    const ctx = await loadContext(args, 'none');
    const { settings, log } = ctx;
    try {
      const patch = file === undefined ? undefined : await stage(file, given, settings.paths.patch);
      if (patch !== undefined)
        out(`${file ?? ''}: ${patch.versionNum} (${patch.versionCode}), MD5 ${patch.fileMd5}`);
      const info = await readControlInfo(controlFile(settings));
      if (info !== undefined && realWorld.processes.isAlive(info.pid)) {
        const wait = args.values['no-wait'] !== true && name !== 'reload-config';
        let status: UpdateStatus, before: UpdateStatus;
        try {
          ({ before, status } = await viaDaemon(info, name, wait, timeoutMs, patch));
        } catch (err) {
          if (err instanceof BoxkeeperError) throw err;
          throw new BoxkeeperError(
            `cannot reach the daemon at ${info.url}: ${errorMessage(err)}`,
            'internal',
          );
        }
        out(`${name}: sent to the running daemon (pid ${info.pid}) over its control channel`);
        out(summary(status));
        return wait ? exitFor(name, status, before) : ExitCode.ok;
      }
      if (event === null) {
        out('no daemon runs; settings are read at its next start');
        return ExitCode.ok;
      }
      const sent: UpdateEvent =
        patch === undefined ? ({ type: event } as UpdateEvent) : { type: 'INSTALL_FILE', patch };
      return await inProcess(ctx, name, sent, timeoutMs);
    } finally {
      log.close();
    }
  };
}

/** The exit code of a command that waited for the cycle to rest (the table in --help). */
export function exitFor(name: string, s: UpdateStatus, before: UpdateStatus): ExitCode {
  // Handed over to the self-updater, which finishes the install with the new agent.
  if (s.tags.includes('selfUpdate')) return ExitCode.ok;
  if (name === 'install' && s.lastResult?.startsWith('installed') !== true)
    return ExitCode.updateFailed;
  if (name === 'rollback' && s.lastResult?.startsWith('rolled back') !== true)
    return ExitCode.snapshot;
  if (name === 'check') {
    // A successful check clears lastError; what is left names the step of this cycle that failed.
    const e = s.lastError ?? '';
    if (e.startsWith('version check:')) return ExitCode.cloud;
    const download = /^download of [^:]*: (.*)$/s.exec(e)?.[1];
    if (download !== undefined) {
      // The transfer (a request, a corrupt or missing file) is the cloud's; a disk that refused
      // it is the box's; anything else refused the patch itself (signature, zip, contents).
      if (/^(cloud |integrity check failed|the cloud has no file)/.test(download))
        return ExitCode.cloud;
      if (
        /^(cannot (read|write|move|copy) |a file operation failed|not enough free space)/.test(
          download,
        )
      )
        return ExitCode.storage;
      return ExitCode.updateFailed;
    }
    if (e.startsWith('install refused:')) return ExitCode.updateFailed;
    // A mandatory install this check started, which failed.
    const result = s.lastResult;
    if (result !== null && result !== before.lastResult && !result.startsWith('installed'))
      return ExitCode.updateFailed;
  }
  return ExitCode.ok;
}

async function inProcess(
  ctx: Awaited<ReturnType<typeof loadContext>>,
  name: string,
  event: UpdateEvent,
  timeoutMs: number,
): Promise<ExitCode> {
  const { settings } = ctx;
  let failure: unknown;
  const session = await openSession(ctx, {
    holder: `boxkeeper ${name}`,
    updates: {
      onFatal: (err) => {
        failure = err;
      },
      hooks: { periodicChecks: false },
    },
  });
  try {
    const { agent } = session;
    const runtime = session.updates as UpdateRuntime;
    const engine = runtime.engine;
    agent.start({ holdServices: engine.servicesMustStayDown(), heartbeat: false });
    engine.start();
    let before = engine.status();
    if (!engine.send(event)) {
      // A job resumed from patch.meta runs first; then the operator's command.
      before = await engine.settled(timeoutMs);
      if (!engine.send(event)) {
        const s = engine.status();
        throw settled(s) ? notApplicable(name, s.state) : new BusyError(s.state);
      }
    }
    // Leave the state the event entered before waiting for rest.
    await new Promise((r) => setTimeout(r, 50));
    const view = progressView(process.stdout);
    view.update(engine.status());
    const unwatch = engine.onChange((s) => view.update(s));
    const status = await Promise.race([
      engine.settled(timeoutMs),
      runtime.exitRequested.then(() => engine.status()),
    ]).finally(() => {
      unwatch();
      view.stop();
    });
    if (failure !== undefined && storageErrorOf(failure) !== undefined)
      throw new StorageError(failure, settings.paths.patchMeta);
    if (failure !== undefined)
      throw new BoxkeeperError(
        `update state cannot be saved: ${errorMessage(failure)}`,
        'internal',
      );
    out(summary(status));
    await leaveServicesRunning(ctx, agent, engine);
    return exitFor(name, status, before);
  } finally {
    await session.close();
  }
}

/**
 * A rollback releases the services without waiting for them; this process then stops
 * supervising. So before returning, wait until they run (or cannot), else Java stays down
 * with no daemon to start it. Services an unfinished update holds down stay down.
 */
export async function leaveServicesRunning(
  ctx: Awaited<ReturnType<typeof loadContext>>,
  agent: Agent,
  engine: UpdateEngine,
): Promise<void> {
  if (engine.servicesMustStayDown()) return;
  const s = ctx.settings.supervise;
  const timeoutMs = s.readyTimeoutMs * 3 + s.backoffMaxMs + 15_000;
  const supervisors = (['freeswitch', 'java'] as const)
    .map((n) => agent.supervisor(n))
    .filter((x) => x !== undefined);
  const states = await Promise.all(
    supervisors.map((sup) =>
      sup
        .waitFor(['running', 'crash-loop', 'not-startable', 'stopped'], timeoutMs)
        .catch(() => sup.state()),
    ),
  );
  for (const st of states) {
    if (st.status === 'running') continue;
    const why = st.lastError === null ? '' : ` (${st.lastError})`;
    out(`warning: ${st.name} is not running: ${st.status}${why}; no daemon runs to start it`);
  }
}
