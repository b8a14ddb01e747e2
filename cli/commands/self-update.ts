// `boxkeeper self-update`: started (detached) by an agent that installs a new build of itself.
// Not for operators; see cli/self-update.ts and docs/lifecycle.md.
import { ExitCode } from '../exit-codes.ts';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import {
  readAgentPackage,
  restoreAgentInstall,
  swapAgentInstall,
} from '../../adapters/agent-install.ts';
import { BoxkeeperError, errorMessage, UsageError } from '../../adapters/errors.ts';
import { acquireInstanceLock } from '../../adapters/instance-lock.ts';
import { nodePatchFs } from '../../adapters/patch-fs.ts';
import { statusPath, type AgentStatus } from '../../services/agent.ts';
import { recordEvent } from '../../services/update-engine.ts';
import { agentInstall, loadContext, realWorld } from '../context.ts';
import { spawnAgentProcess } from '../self-update.ts';
import { updatePolicy } from '../updates.ts';
import { serviceManagerFor } from './service.ts';
import { serviceKindOf } from '../../services/service-definitions.ts';
import type { CommandArgs } from './index.ts';
import { lockPath, fileStamp } from '../../services/agent-files.ts';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

export async function run(args: CommandArgs): Promise<ExitCode> {
  const build = args.values.build;
  const home = args.values.home;
  const agentPid = Number(args.values['agent-pid']);
  if (typeof build !== 'string' || typeof home !== 'string' || !Number.isInteger(agentPid))
    throw new UsageError('self-update needs --build DIR, --home DIR and --agent-pid PID');
  const ctx = await loadContext(args, 'none');
  const { settings } = ctx;
  const log = ctx.log.logger.child({ component: 'self-update' });
  const meta = { fs: nodePatchFs, now: () => new Date() };
  const policy = updatePolicy(settings);
  const entry = agentInstall().entry;
  const to = readAgentPackage(build)?.version;
  // BOXKEEPER_SERVICE (inherited from the agent the service manager runs): who starts agents.
  const kind = serviceKindOf(process.env);
  const service = kind === undefined ? undefined : serviceManagerFor(kind, settings);
  if (service !== undefined) log.info({ service: kind }, 'running under a service manager');
  try {
    // 1. The old agent exits on its own; after a minute it is made to.
    const waitUntil = Date.now() + 60_000;
    while (realWorld.processes.isAlive(agentPid) && Date.now() < waitUntil) await sleep(200);
    if (realWorld.processes.isAlive(agentPid)) {
      log.warn({ agentPid }, 'the agent did not exit within 60 s; killing it');
      await realWorld.processes.killTree(agentPid, 'SIGKILL');
    }
    // 2. Swap under the agent's lock: no agent may start from a half-swapped install.
    const lock = await acquireInstanceLock(
      lockPath(settings),
      'boxkeeper self-update',
      realWorld.processes,
    );
    try {
      await swapAgentInstall(home, build);
      log.info({ home, build, to }, 'agent install swapped; previous kept');
      const state = await recordEvent(settings.paths.patchMeta, meta, policy, {
        type: 'SELF_UPDATE.SWAPPED',
      });
      log.info({ state }, 'recorded in patch.meta');
    } finally {
      await lock.release();
    }
    // 3. The new agent must come up and confirm (it moves the update past selfUpdated).
    //    Under a service manager the service is restarted (it runs the swapped install);
    //    otherwise the updater starts the agent itself.
    const logFile = join(settings.paths.logs, `agent-${fileStamp()}.log`);
    let pid: number | undefined;
    if (service === undefined) {
      pid = spawnAgentProcess(home, entry, ['run', '--settings', settings.file], logFile);
      log.info({ pid, logFile }, 'new agent started');
    } else {
      await service.restart();
      log.info({ service: service.kind }, 'service restarted on the new install');
    }
    const waitMs = policy.healthTimeoutMs + 30_000;
    const deadline = Date.now() + waitMs;
    for (;;) {
      await sleep(250);
      const status = await readFile(statusPath(settings), 'utf8').then(
        (t) => JSON.parse(t) as AgentStatus,
        () => null,
      );
      const isNew =
        status !== null &&
        (pid === undefined
          ? status.pid !== agentPid && realWorld.processes.isAlive(status.pid)
          : status.pid === pid);
      const confirmed =
        status !== null &&
        isNew &&
        status.agentVersion === to &&
        status.update !== null &&
        !status.update.tags.includes('selfUpdate');
      if (confirmed) {
        log.info(
          { pid: status.pid, version: to, update: status.update?.state },
          'the new agent runs',
        );
        return ExitCode.ok;
      }
      // Under a service manager a crashed agent is restarted by it: only the deadline counts.
      if (pid !== undefined && !realWorld.processes.isAlive(pid))
        throw new Error(`the new agent (pid ${pid}) exited; see ${logFile}`);
      if (Date.now() > deadline) {
        // Under a service manager, a stop signals the agent only (KillMode=process, WinSW's
        // stop command).
        if (pid !== undefined)
          await realWorld.processes.killTree(pid, 'SIGKILL').catch(() => undefined);
        else await service?.stop().catch(() => undefined);
        throw new Error(`the new agent did not confirm the update within ${waitMs / 1000} s`);
      }
    }
  } catch (err) {
    log.error({ err: errorMessage(err) }, 'self-update failed; restoring the previous agent');
    // A new agent the service manager keeps restarting would hold the lock.
    if (service !== undefined) {
      await service
        .stop()
        .catch((e: unknown) => log.warn({ err: errorMessage(e) }, 'cannot stop the service'));
    }
    const lock = await acquireInstanceLock(
      lockPath(settings),
      'boxkeeper self-update (restore)',
      realWorld.processes,
    );
    try {
      const failed = await restoreAgentInstall(home, fileStamp()).catch((e: unknown) => {
        log.error({ err: errorMessage(e) }, 'cannot restore the previous install');
        return null;
      });
      if (failed !== null)
        log.warn({ failed }, 'previous agent restored; the new build kept aside');
      await recordEvent(settings.paths.patchMeta, meta, policy, {
        type: 'SELF_UPDATE.FAILED',
        error: errorMessage(err),
      }).catch((e: unknown) => log.error({ err: errorMessage(e) }, 'cannot record the failure'));
    } finally {
      await lock.release();
    }
    if (service === undefined) {
      const pid = spawnAgentProcess(
        home,
        entry,
        ['run', '--settings', settings.file],
        join(settings.paths.logs, `agent-${fileStamp()}.log`),
      );
      log.warn({ pid }, 'previous agent started; it rolls the update back');
    } else {
      await service
        .restart()
        .then(() => log.warn('service restarted on the previous agent; it rolls the update back'))
        .catch((e: unknown) => log.error({ err: errorMessage(e) }, 'cannot restart the service'));
    }
    throw new BoxkeeperError(`self-update failed: ${errorMessage(err)}`, 'service');
  } finally {
    ctx.log.close();
  }
}
