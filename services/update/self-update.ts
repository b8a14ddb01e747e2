// Self-update: the running agent hands over to `boxkeeper self-update`, started from the NEW
// build (so nothing runs from the install being swapped), which waits for the agent to exit,
// swaps the install (keeping the previous one), records SELF_UPDATE.SWAPPED in patch.meta,
// starts the new agent (or restarts the service that runs it) and watches it come up; if it
// does not, it restores the old install, records SELF_UPDATE.FAILED (the update is rolled
// back) and starts the old agent. docs/lifecycle.md tells the whole story.
import { join } from 'node:path';
import type { AgentInstalls } from '../../adapters/agent-install.ts';
import { BoxkeeperError, errorMessage } from '../../adapters/errors.ts';
import type { InstanceLock } from '../../adapters/instance-lock.ts';
import type { Logger } from '../../adapters/logger.ts';
import type { PatchFs } from '../../adapters/patch-fs.ts';
import type { ProcessControl } from '../../adapters/processes.ts';
import type { ServiceManager } from '../../adapters/service-manager.ts';
import type { UpdatePolicy } from '../../machines/update.machine.ts';
import type { AgentStatus } from '../agent/agent.ts';
import { fileStamp, lockPath, selfUpdatePath, statusPath } from '../agent/agent-files.ts';
import type { Settings } from '../agent/settings.ts';
import type { SelfUpdater } from './update-effects.ts';
import { recordEvent } from './update-engine.ts';

/** The world self-update touches: installs, processes, files and the agent's lock. */
export interface SelfUpdateWorld {
  installs: AgentInstalls;
  processes: Pick<ProcessControl, 'isAlive' | 'killTree'>;
  fs: PatchFs;
  lock: (path: string, holder: string) => Promise<InstanceLock>;
  /** Waits between polls (tests may shorten it). */
  sleep?: (ms: number) => Promise<void>;
}

/** What `self-update.json` (beside status.json) records while an updater is at work. */
interface HandOverRecord {
  pid?: number;
  build?: string;
  from?: string;
  to?: string;
  versionNum?: string;
}

const defaultSleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/** The running agent's side: hand over to a new build, and later confirm it runs. */
export function createSelfUpdater(
  settings: Settings,
  logger: Logger,
  world: SelfUpdateWorld,
  requestExit: (why: string) => void,
): SelfUpdater {
  const marker = selfUpdatePath(settings);
  const { installs, fs } = world;
  return {
    async handOver(build, versionNum) {
      const pkg = installs.readPackage(build);
      if (pkg === undefined)
        throw new Error(`${build}: not a boxkeeper build (no package.json named "boxkeeper")`);
      const me = installs.current();
      if (!(await fs.exists(join(build, me.entry))))
        throw new Error(`${build}: the build has no ${me.entry}`);
      // A build that cannot even start must not be handed the box.
      const smoke = await installs.runVersion(build, me.entry);
      if (smoke.code !== 0 || !smoke.stdout.includes(pkg.version)) {
        throw new Error(
          `${build}: "boxkeeper --version" of the new build failed (exit ${String(smoke.code)}): ${(smoke.stderr || smoke.stdout).trim().slice(0, 300)}`,
        );
      }
      // Re-run after a restart: an updater that is already at work is left to it.
      const running = await fs.readFile(marker).then(
        (bytes) => JSON.parse(Buffer.from(bytes).toString('utf8')) as HandOverRecord,
        () => undefined,
      );
      if (running?.pid !== undefined && world.processes.isAlive(running.pid)) {
        logger.warn({ updaterPid: running.pid }, 'a self-update is already in progress');
      } else {
        const pid = installs.startAgent(
          build,
          me.entry,
          [
            'self-update',
            '--settings',
            settings.file,
            '--build',
            build,
            '--home',
            me.home,
            '--agent-pid',
            String(process.pid),
          ],
          join(settings.paths.logs, `self-update-${fileStamp()}.log`),
        );
        const record: HandOverRecord = {
          pid,
          build,
          from: me.version,
          to: pkg.version,
          versionNum,
        };
        await fs.writeAtomic(marker, JSON.stringify(record));
        logger.warn(
          { updaterPid: pid, from: me.version, to: pkg.version, build },
          'handing over to the self-updater; this agent exits',
        );
      }
      requestExit('self-update');
    },
    async confirm(build) {
      const pkg = installs.readPackage(build);
      const running = installs.current().version;
      if (pkg === undefined) throw new Error(`${build}: the update's build is gone`);
      if (pkg.version !== running)
        throw new Error(`the running agent is ${running}; the update carried ${pkg.version}`);
      await fs.remove(marker).catch((err: unknown) => {
        logger.warn({ err: errorMessage(err) }, 'cannot remove the self-update marker');
      });
      logger.info({ version: running }, 'self-update confirmed: the new agent runs');
    },
  };
}

export interface SelfUpdateRun {
  settings: Settings;
  logger: Logger;
  policy: UpdatePolicy;
  world: SelfUpdateWorld;
  /** The service manager that runs the agent, if one does: it, not the updater, starts agents. */
  service: ServiceManager | undefined;
  /** The new build, the install it replaces, and the agent that handed over. */
  build: string;
  home: string;
  agentPid: number;
}

/**
 * The updater's side (`boxkeeper self-update`): resolves once the new agent runs and has
 * confirmed the update; otherwise restores the previous install, records the failure, starts
 * the previous agent and throws.
 */
export async function runSelfUpdate(run: SelfUpdateRun): Promise<void> {
  const { settings, logger: log, policy, world, service, build, home, agentPid } = run;
  const { installs, processes } = world;
  const sleep = world.sleep ?? defaultSleep;
  const meta = { fs: world.fs, now: () => new Date() };
  const entry = installs.current().entry;
  const to = installs.readPackage(build)?.version;
  const agentLog = () => join(settings.paths.logs, `agent-${fileStamp()}.log`);
  const runArgs = ['run', '--settings', settings.file];
  try {
    // 1. The old agent exits on its own; after a minute it is made to.
    const waitUntil = Date.now() + 60_000;
    while (processes.isAlive(agentPid) && Date.now() < waitUntil) await sleep(200);
    if (processes.isAlive(agentPid)) {
      log.warn({ agentPid }, 'the agent did not exit within 60 s; killing it');
      await processes.killTree(agentPid, 'SIGKILL');
    }
    // 2. Swap under the agent's lock: no agent may start from a half-swapped install.
    const lock = await world.lock(lockPath(settings), 'boxkeeper self-update');
    try {
      await installs.swap(home, build);
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
    const logFile = agentLog();
    let pid: number | undefined;
    if (service === undefined) {
      pid = installs.startAgent(home, entry, runArgs, logFile);
      log.info({ pid, logFile }, 'new agent started');
    } else {
      await service.restart();
      log.info({ service: service.kind }, 'service restarted on the new install');
    }
    const waitMs = policy.healthTimeoutMs + 30_000;
    const deadline = Date.now() + waitMs;
    for (;;) {
      await sleep(250);
      const status = await world.fs.readFile(statusPath(settings)).then(
        (bytes) => JSON.parse(Buffer.from(bytes).toString('utf8')) as AgentStatus,
        () => null,
      );
      const isNew =
        status !== null &&
        (pid === undefined
          ? status.pid !== agentPid && processes.isAlive(status.pid)
          : status.pid === pid);
      if (
        status !== null &&
        isNew &&
        status.agentVersion === to &&
        status.update !== null &&
        !status.update.tags.includes('selfUpdate')
      ) {
        log.info(
          { pid: status.pid, version: to, update: status.update.state },
          'the new agent runs',
        );
        return;
      }
      // Under a service manager a crashed agent is restarted by it: only the deadline counts.
      if (pid !== undefined && !processes.isAlive(pid))
        throw new Error(`the new agent (pid ${pid}) exited; see ${logFile}`);
      if (Date.now() > deadline) {
        // Under a service manager, a stop signals the agent only (KillMode=process, WinSW's
        // stop command).
        if (pid !== undefined) await processes.killTree(pid, 'SIGKILL').catch(() => undefined);
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
    const lock = await world.lock(lockPath(settings), 'boxkeeper self-update (restore)');
    try {
      const failed = await installs.restore(home, fileStamp()).catch((e: unknown) => {
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
      const pid = installs.startAgent(home, entry, runArgs, agentLog());
      log.warn({ pid }, 'previous agent started; it rolls the update back');
    } else {
      await service
        .restart()
        .then(() => log.warn('service restarted on the previous agent; it rolls the update back'))
        .catch((e: unknown) => log.error({ err: errorMessage(e) }, 'cannot restart the service'));
    }
    throw new BoxkeeperError(`self-update failed: ${errorMessage(err)}`, 'service');
  }
}
