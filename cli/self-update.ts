// Self-update wiring: the running agent hands over to `boxkeeper self-update`, started from the
// NEW build (so nothing runs from the install being swapped), which waits for the agent to
// exit, swaps the install (keeping the previous one), records SELF_UPDATE.SWAPPED in
// patch.meta, starts the new agent and watches it come up; if it does not, it restores the old
// install, records SELF_UPDATE.FAILED (the update is rolled back) and starts the old agent.
import { spawn } from 'node:child_process';
import { openSync, closeSync } from 'node:fs';
import { readFile, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { readAgentPackage, runtimeOf } from '../adapters/agent-install.ts';
import { errorMessage } from '../adapters/errors.ts';
import type { Logger } from '../adapters/logger.ts';
import type { Settings } from '../services/settings.ts';
import type { SelfUpdater } from '../services/update-effects.ts';
import { agentInstall, realWorld } from './context.ts';
import { selfUpdatePath, fileStamp } from '../services/agent-files.ts';

export function selfUpdateMarker(settings: Settings): string {
  return selfUpdatePath(settings);
}

/** Starts `node [flags] <home>/<entry> <args>` detached, output to a log file; returns its pid. */
export function spawnAgentProcess(
  home: string,
  entry: string,
  args: string[],
  logFile: string,
): number {
  const fd = openSync(logFile, 'a');
  try {
    const node = runtimeOf(home);
    // A package's runtime runs the bundle as it is; a checkout needs this process's flags (tsx).
    const flags = node === process.execPath ? process.execArgv : [];
    const child = spawn(node, [...flags, join(home, entry), ...args], {
      cwd: home,
      detached: true,
      stdio: ['ignore', fd, fd],
      windowsHide: true,
      env: { ...process.env, BOXKEEPER_SETTINGS: '' },
    });
    child.unref();
    if (child.pid === undefined) throw new Error(`could not start ${join(home, entry)}`);
    return child.pid;
  } finally {
    closeSync(fd);
  }
}

export function cliSelfUpdater(
  settings: Settings,
  logger: Logger,
  requestExit: (why: string) => void,
): SelfUpdater {
  const marker = selfUpdateMarker(settings);
  return {
    async handOver(build, versionNum) {
      const pkg = readAgentPackage(build);
      if (pkg === undefined)
        throw new Error(`${build}: not a boxkeeper build (no package.json named "boxkeeper")`);
      const me = agentInstall();
      if (!(await realWorld.files.exists(join(build, me.entry))))
        throw new Error(`${build}: the build has no ${me.entry}`);
      // A build that cannot even start must not be handed the box.
      const node = runtimeOf(build);
      const smoke = await realWorld.processes.exec(
        node,
        [
          ...(node === process.execPath ? process.execArgv : []),
          join(build, me.entry),
          '--version',
        ],
        { timeoutMs: 60_000, cwd: build },
      );
      if (smoke.code !== 0 || !smoke.stdout.includes(pkg.version)) {
        throw new Error(
          `${build}: "boxkeeper --version" of the new build failed (exit ${String(smoke.code)}): ${(smoke.stderr || smoke.stdout).trim().slice(0, 300)}`,
        );
      }
      // Re-run after a restart: an updater that is already at work is left to it.
      const running = await readFile(marker, 'utf8').then(
        (t) => JSON.parse(t) as { pid?: number },
        () => undefined,
      );
      if (running?.pid !== undefined && realWorld.processes.isAlive(running.pid)) {
        logger.warn({ updaterPid: running.pid }, 'a self-update is already in progress');
      } else {
        const pid = spawnAgentProcess(
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
        await realWorld.files.writeAtomic(
          marker,
          JSON.stringify({ pid, build, from: me.version, to: pkg.version, versionNum }),
        );
        logger.warn(
          { updaterPid: pid, from: me.version, to: pkg.version, build },
          'handing over to the self-updater; this agent exits',
        );
      }
      requestExit('self-update');
    },
    async confirm(build) {
      const pkg = readAgentPackage(build);
      const running = agentInstall().version;
      if (pkg === undefined) throw new Error(`${build}: the update's build is gone`);
      if (pkg.version !== running)
        throw new Error(`the running agent is ${running}; the update carried ${pkg.version}`);
      await rm(marker, { force: true }).catch((err: unknown) => {
        logger.warn({ err: errorMessage(err) }, 'cannot remove the self-update marker');
      });
      logger.info({ version: running }, 'self-update confirmed: the new agent runs');
    },
  };
}
