// `boxkeeper switch-over`: started by the switch-over patch's entrypoint (which the Python
// tool's self_updater put in place of its own agent, and which the tool's autostart keeps
// starting at every boot). Idempotent "ensure" steps, each logged (docs/install.md, switching a fleet):
// find the box and the tool's settings.ini (used unchanged), install the package under
// <manager_dir>/boxkeeper, register and start the service (or start the agent detached where
// there is no service manager), then wait until the agent runs. patch.meta is left to the
// agent: it imports the Python updater's SELF_UPDATE_COMPLETE and finishes the update.
import { ExitCode } from '../exit-codes.ts';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { BoxkeeperError, errorMessage, type ErrorKind } from '../../adapters/errors.ts';
import { ownerAlive, readLockOwner } from '../../adapters/instance-lock.ts';
import { nodePackageTree } from '../../adapters/package-tree.ts';
import { platformRegistry } from '../../adapters/registry.ts';
import { statusPath, type AgentStatus } from '../../services/agent/agent.ts';
import { executableName } from '../../services/agent/box-paths.ts';
import {
  ensureInstalled,
  INSTALL_DIR,
  locateSwitchOverSettings,
} from '../../services/install/switch-over.ts';
import { agentInstall, loadContext, realWorld } from '../context.ts';
import type { CommandArgs } from './index.ts';
import { lockPath, fileStamp } from '../../services/agent/agent-files.ts';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/**
 * Wine (CI runs the Windows package under Wine 8): its service control manager cannot run
 * WinSW (a .NET program; Wine has no .NET without wine-mono), so it counts as no service
 * manager. Every Wine prefix has winecfg.exe in system32; Windows never does.
 */
async function underWine(): Promise<boolean> {
  const root = process.env.SystemRoot ?? process.env.windir ?? 'C:\\windows';
  return nodePackageTree.exists(join(root, 'system32', 'winecfg.exe'));
}

/** Why there is no service manager here, or null where one exists: Windows (SCM), Linux with a running systemd. */
async function noServiceManager(platform: NodeJS.Platform): Promise<string | null> {
  if (platform === 'win32')
    return (await underWine())
      ? 'Wine: its service manager cannot run WinSW (winecfg.exe is in system32)'
      : null;
  if (platform !== 'linux') return `no service manager is supported on ${platform}`;
  return (await nodePackageTree.exists('/run/systemd/system'))
    ? null
    : 'no running systemd: /run/systemd/system is absent';
}

export async function run(args: CommandArgs): Promise<ExitCode> {
  const timeoutSec = args.values.timeout === undefined ? 120 : Number(args.values.timeout);
  if (!Number.isFinite(timeoutSec) || timeoutSec <= 0)
    throw new BoxkeeperError('--timeout: expected a positive number of seconds', 'config');
  const platform = process.platform;
  const fromPatch =
    typeof args.values['from-patch'] === 'string' ? args.values['from-patch'] : null;
  // a. The box and the tool's settings.ini.
  let located;
  try {
    located = await locateSwitchOverSettings({
      flag: typeof args.values.settings === 'string' ? args.values.settings : undefined,
      cwd: process.cwd(),
      platform,
      exists: (p) => nodePackageTree.exists(p),
      registry: platformRegistry(platform),
    });
  } catch (err) {
    throw new BoxkeeperError(`switch-over failed: ${errorMessage(err)}`, 'config');
  }
  const ctx = await loadContext({ values: { settings: located.file }, positionals: [] }, 'auto');
  const { settings } = ctx;
  const log = ctx.log.logger.child({ component: 'switch-over' });
  const fail = (step: string, err: unknown, kind: ErrorKind = 'service'): never => {
    log.error(
      { step, err: errorMessage(err) },
      "switch-over failed; the Python tool's files are untouched",
    );
    throw new BoxkeeperError(`switch-over failed: ${step}: ${errorMessage(err)}`, kind);
  };
  try {
    const me = agentInstall();
    log.info(
      {
        fromPatch,
        settings: settings.file,
        box: settings.paths.boxRoot,
        cwd: process.cwd(),
        runningFrom: me.home,
        version: me.version,
      },
      'switch-over: box located',
    );

    // b. The package, installed and verified.
    const home = join(settings.paths.managerDir, INSTALL_DIR);
    let installed;
    try {
      installed = await ensureInstalled(me.home, home, {
        tree: nodePackageTree,
        logger: log,
        now: () => new Date(),
      });
    } catch (err) {
      return fail('install', err);
    }
    log.info({ ...installed }, 'switch-over: package in place');
    const bin = join(home, 'bin', executableName('boxkeeper', platform));

    // c. The service (or, without a service manager, the agent started detached).
    const lockFile = lockPath(settings);
    const noManager = await noServiceManager(platform);
    if (noManager === null) {
      const r = await realWorld.processes.exec(
        bin,
        ['service', 'install', '--settings', settings.file],
        { timeoutMs: 180_000, cwd: home },
      );
      if (r.code !== 0) {
        const why = (r.stderr || r.stdout).trim().split(/\r?\n/).at(-1) ?? '';
        return fail('service install', new Error(`exit ${String(r.code)}: ${why}`));
      }
      log.info({ output: r.stdout.trim() }, 'switch-over: service registered and started');
    } else {
      const owner = await readLockOwner(lockFile);
      if (await ownerAlive(owner, realWorld.processes)) {
        log.info({ pid: owner?.pid }, 'switch-over: an agent runs already; none started');
      } else {
        const logFile = join(settings.paths.logs, `agent-${fileStamp()}.log`);
        const pid = await realWorld.processes
          .spawnDetached(bin, ['run', '--settings', settings.file], { cwd: home, logFile })
          .catch((err: unknown) => fail('start the agent', err));
        log.warn(
          { pid, logFile, why: noManager },
          `switch-over: no service manager here (${noManager}); the agent was started detached and will NOT start at boot — register it with your init system (see docs/install.md)`,
        );
      }
    }

    // e. Wait until the agent runs (status.json of a live pid, the installed version).
    const deadline = Date.now() + timeoutSec * 1000;
    let last: AgentStatus | null = null;
    for (;;) {
      last = await readFile(statusPath(settings), 'utf8').then(
        (t) => JSON.parse(t) as AgentStatus,
        () => null,
      );
      if (
        last !== null &&
        last.agentVersion === installed.version &&
        realWorld.processes.isAlive(last.pid)
      ) {
        log.info(
          { pid: last.pid, version: last.agentVersion, update: last.update?.state ?? null },
          'switch-over: the agent runs',
        );
        process.stdout.write(
          `boxkeeper ${last.agentVersion} runs (pid ${last.pid}) from ${home}; update state ${last.update?.state ?? '-'}\n`,
        );
        return ExitCode.ok;
      }
      if (Date.now() > deadline)
        return fail(
          'wait for the agent',
          new Error(
            `no running agent ${installed.version} reported in ${statusPath(settings)} within ${timeoutSec} s` +
              (last === null
                ? ' (no status.json)'
                : ` (status.json: pid ${last.pid}, ${last.agentVersion})`),
          ),
        );
      await sleep(500);
    }
  } finally {
    ctx.log.close();
  }
}
