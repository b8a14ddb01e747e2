// `boxkeeper check | install | rollback | clear-cache | reload-config`: sent to the running
// daemon over its control channel, or, when no daemon runs, carried out in this process (under
// the same single-instance lock) and waited for.
import { join } from 'node:path';
import { controlRequest, readControlInfo, type ControlInfo } from '../../adapters/control.ts';
import { BoxkeeperError, errorMessage, ExitCode } from '../../adapters/errors.ts';
import { acquireInstanceLock } from '../../adapters/instance-lock.ts';
import type { UpdateEvent } from '../../machines/update.machine.ts';
import type { UpdateStatus } from '../../services/update-engine.ts';
import { loadContext, realWorld, settingsOption, createBoxAgent } from '../context.ts';
import { controlFile, createUpdateRuntime, updatePolicy } from '../updates.ts';
import type { Command } from './index.ts';

const SETTLED = new Set(['idle', 'awaitingInstall']);

const out = (s: string) => process.stdout.write(`${s}\n`);

class BusyError extends BoxkeeperError {
  constructor(state: string) {
    super(`the update cycle is busy (${state}); try again when it is idle`, ExitCode.locked);
  }
}

function notApplicable(name: string, state: string): BoxkeeperError {
  if (name === 'rollback')
    return new BoxkeeperError(
      "nothing to roll back: no update was installed by this box's boxkeeper",
      ExitCode.snapshot,
    );
  if (name === 'install')
    return new BoxkeeperError(
      'no downloaded update waits to be installed; run "boxkeeper check" first',
      ExitCode.service,
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
): Promise<UpdateStatus> {
  const r = await controlRequest(info, 'POST', '/command', { command: name });
  const body = r.body as { accepted?: boolean; status?: UpdateStatus; error?: string };
  if (r.status === 409) {
    const state = body.status?.state ?? '?';
    if (SETTLED.has(state)) throw notApplicable(name, state);
    throw new BusyError(state);
  }
  if (r.status !== 200 || body.status === undefined)
    throw new BoxkeeperError(
      `the daemon refused "${name}": ${body.error ?? `HTTP ${r.status}`}`,
      ExitCode.internal,
    );
  let status = body.status;
  if (!wait) return status;
  const started = Date.now();
  // The event moved the machine on at once; wait until it rests again.
  while (!SETTLED.has(status.state) || Date.now() - started < 200) {
    if (Date.now() - started > timeoutMs)
      throw new BoxkeeperError(
        `still ${status.state} after ${timeoutMs / 1000} s (it goes on in the daemon)`,
        ExitCode.internal,
      );
    await new Promise((res) => setTimeout(res, 200));
    status = (await controlRequest(info, 'GET', '/status')).body as UpdateStatus;
  }
  return status;
}

function opCommand(
  name: string,
  event: UpdateEvent['type'] | null,
  summaryText: string,
  description: string,
): Command {
  return {
    name,
    summary: summaryText,
    usage: '[--no-wait] [--timeout SECONDS] [--settings PATH]',
    description:
      `${description}\n` +
      'Goes to the running daemon over its local control channel; without a daemon it runs in\n' +
      'this process (services are stopped and started as needed) and waits until done.',
    options: {
      ...settingsOption,
      'no-wait': {
        type: 'boolean',
        help: 'With a daemon: return once the daemon took the command',
      },
      timeout: { type: 'string', help: 'Seconds to wait for the result (default 3600)' },
    },
    async run(args) {
      const ctx = await loadContext(args, 'none');
      const { settings, log } = ctx;
      const timeoutRaw =
        typeof args.values.timeout === 'string' ? Number(args.values.timeout) : 3600;
      if (!Number.isFinite(timeoutRaw) || timeoutRaw <= 0)
        throw new BoxkeeperError(`--timeout must be a number of seconds > 0`, ExitCode.config);
      const timeoutMs = timeoutRaw * 1000;
      try {
        const info = await readControlInfo(controlFile(settings));
        if (info !== undefined && realWorld.processes.isAlive(info.pid)) {
          const wait = args.values['no-wait'] !== true && name !== 'reload-config';
          let status: UpdateStatus;
          try {
            status = await viaDaemon(info, name, wait, timeoutMs);
          } catch (err) {
            if (err instanceof BoxkeeperError) throw err;
            throw new BoxkeeperError(
              `cannot reach the daemon at ${info.url}: ${errorMessage(err)}`,
              ExitCode.internal,
            );
          }
          out(`${name}: sent to the running daemon (pid ${info.pid}) over its control channel`);
          out(summary(status));
          return wait ? exitFor(name, status) : ExitCode.ok;
        }
        if (event === null) {
          out('no daemon runs; settings are read at its next start');
          return ExitCode.ok;
        }
        return await inProcess(ctx, name, event, timeoutMs);
      } finally {
        log.close();
      }
    },
  };
}

function exitFor(name: string, s: UpdateStatus): ExitCode {
  // Handed over to the self-updater, which finishes the install with the new agent.
  if (s.state.startsWith('installing.selfUpdat')) return ExitCode.ok;
  if (name === 'install' && s.lastResult?.startsWith('installed') !== true) return ExitCode.service;
  if (name === 'rollback' && s.lastResult?.startsWith('rolled back') !== true)
    return ExitCode.snapshot;
  return ExitCode.ok;
}

async function inProcess(
  ctx: Awaited<ReturnType<typeof loadContext>>,
  name: string,
  event: UpdateEvent['type'],
  timeoutMs: number,
): Promise<ExitCode> {
  const { settings } = ctx;
  const lock = await acquireInstanceLock(
    join(settings.paths.agentData, 'agent.lock'),
    `boxkeeper ${name}`,
    realWorld.processes,
  );
  let failure: unknown;
  try {
    const { agent, cloud, boxApp } = await createBoxAgent(ctx);
    const runtime = await createUpdateRuntime(
      ctx,
      agent,
      cloud,
      boxApp,
      (err) => {
        failure = err;
      },
      { periodicChecks: false },
    );
    const engine = runtime.engine;
    try {
      agent.start({ holdServices: engine.servicesMustStayDown(), heartbeat: false });
      engine.start();
      engine.send({ type: 'RELOAD_CONFIG', policy: updatePolicy(settings) });
      if (!engine.send({ type: event } as UpdateEvent)) {
        // A job resumed from patch.meta runs first; then the operator's command.
        await engine.settled(timeoutMs);
        if (!engine.send({ type: event } as UpdateEvent)) {
          const s = engine.status();
          throw SETTLED.has(s.state) ? notApplicable(name, s.state) : new BusyError(s.state);
        }
      }
      // Leave the state the event entered before waiting for rest.
      await new Promise((r) => setTimeout(r, 50));
      const status = await Promise.race([
        engine.settled(timeoutMs),
        runtime.exitRequested.then(() => engine.status()),
      ]);
      if (failure !== undefined)
        throw new BoxkeeperError(
          `update state cannot be saved: ${errorMessage(failure)}`,
          ExitCode.internal,
        );
      out(summary(status));
      return exitFor(name, status);
    } finally {
      await runtime.close();
      await agent.stop();
    }
  } finally {
    await lock.release();
  }
}

export const updateCommands: Command[] = [
  opCommand(
    'check',
    'CHECK',
    'Ask the cloud for updates now (and download them)',
    'Runs a version check now; a mandatory update is downloaded and installed at once.',
  ),
  opCommand(
    'install',
    'INSTALL',
    'Install the downloaded (optional) update now',
    'Installs the update that was downloaded and waits for the operator.',
  ),
  opCommand(
    'rollback',
    'ROLLBACK',
    'Undo the last installed update',
    'Restores the snapshot taken before the last installed update (services are\nstopped, the box rolled back, services started, paused tasks resumed).',
  ),
  opCommand(
    'clear-cache',
    'CLEAR_CACHE',
    'Delete downloaded updates and forget the update list',
    'Deletes the patch cache (downloads and extracted files; patch.meta stays) and\nforgets the current update list; the next check asks the cloud again.',
  ),
  opCommand(
    'reload-config',
    null,
    'Make the daemon read configuration.ini and settings.ini again',
    'The daemon reads configuration.ini and the [update]/[timer] settings again.',
  ),
];
