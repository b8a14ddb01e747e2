// `boxkeeper service install | uninstall | status | stop-agent`: runs `boxkeeper run` as an OS
// service (systemd on Linux, WinSW on Windows). Rendering is in services/install/service-definitions.ts,
// the systemctl/sc/WinSW calls in adapters/service-manager.ts; docs/install.md, "Running as a
// service", is the operator's guide.
import { ExitCode } from '../exit-codes.ts';
import { existsSync } from 'node:fs';
import { isAbsolute, join, resolve } from 'node:path';
import { nodeFlagsFor } from '../../adapters/agent-install.ts';
import { controlRequest, readControlInfo } from '../../adapters/control.ts';
import { UsageError } from '../../adapters/errors.ts';
import { ownerAlive, readLockOwner } from '../../adapters/instance-lock.ts';
import { platformRegistry } from '../../adapters/registry.ts';
import {
  systemdManager,
  winswManager,
  type RunCommand,
  type ServiceManager,
} from '../../adapters/service-manager.ts';
import {
  DefinitionError,
  renderSystemdUnit,
  renderWinswXml,
  type Launcher,
  type ServiceKind,
} from '../../services/install/service-definitions.ts';
import { loadSettings, locateSettings, type Settings } from '../../services/agent/settings.ts';
import { agentInstall, realWorld } from '../context.ts';
import { controlFile } from '../updates.ts';
import type { CommandArgs } from './index.ts';
import { lockPath } from '../../services/agent/agent-files.ts';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** A loader named by package (`--import tsx`) as an absolute URL: the service's cwd differs. */
function absoluteLoader(spec: string): string {
  if (isAbsolute(spec) || /^[a-z]+:/i.test(spec)) return spec;
  try {
    return import.meta.resolve(spec);
  } catch {
    return spec;
  }
}

/** Node flags a child needs to run this entry (tsx's loader from a source checkout). */
function loaderFlags(execArgv: string[]): string[] {
  const out: string[] = [];
  for (let i = 0; i < execArgv.length; i++) {
    const a = execArgv[i] as string;
    const joined = /^(--import|--loader|--experimental-loader)=(.*)$/.exec(a);
    if (joined !== null) out.push(joined[1] as string, absoluteLoader(joined[2] as string));
    else if (/^(--import|--loader|--experimental-loader)$/.test(a)) {
      out.push(a, absoluteLoader(execArgv[i + 1] ?? ''));
      i++;
    }
  }
  return out;
}

/**
 * How the service starts this agent: the Node runtime running this process (`<package>/runtime/
 * node` in a package) and the CLI entry of this install (`<package>/lib/boxkeeper.mjs`, or
 * `cli/main.ts` with tsx's loader from a source checkout). The node binary is named directly,
 * not `bin/boxkeeper`: the service manager signals its main process only, which must be node.
 */
export function agentLauncher(): Launcher & { home: string } {
  const me = agentInstall();
  const flags = nodeFlagsFor(me.home, process.execPath, loaderFlags(process.execArgv));
  return {
    program: process.execPath,
    args: [...flags, join(me.home, me.entry)],
    home: me.home,
  };
}

export const runCommandFile: RunCommand = (file, args) =>
  realWorld.processes.exec(file, args, { timeoutMs: 120_000 });

export function platformKind(platform: NodeJS.Platform): ServiceKind {
  if (platform === 'linux') return 'systemd';
  if (platform === 'win32') return 'winsw';
  throw new UsageError(
    `boxkeeper service: ${platform} is not supported (Linux with systemd, Windows)`,
  );
}

export interface ManagerOverrides {
  unitDir?: string;
  serviceDir?: string;
  wrapper?: string;
}

/** The service directory (WinSW exe + XML): outside the install, which self-update swaps. */
export function defaultServiceDir(settings: Settings): string {
  return join(settings.paths.agentData, 'service');
}

/** The WinSW binary the package ships (docs/install.md: how packaging places it). */
export function packagedWrapper(home: string): string {
  return join(home, 'vendor', 'winsw', 'winsw.exe');
}

export function serviceManagerFor(
  kind: ServiceKind,
  settings: Settings,
  o: ManagerOverrides = {},
  run: RunCommand = runCommandFile,
): ServiceManager {
  if (kind === 'systemd') {
    return systemdManager({ run, ...(o.unitDir === undefined ? {} : { unitDir: o.unitDir }) });
  }
  // Under the service, WinSW tells its children where it is (WINSW_EXECUTABLE).
  const fromEnv = process.env.WINSW_EXECUTABLE;
  const serviceDir =
    o.serviceDir ??
    (fromEnv !== undefined && fromEnv !== ''
      ? resolve(fromEnv, '..')
      : defaultServiceDir(settings));
  return winswManager({
    serviceDir,
    wrapperSource: o.wrapper ?? packagedWrapper(agentInstall().home),
    run,
  });
}

function stringOpt(args: CommandArgs, name: string): string | undefined {
  const v = args.values[name];
  if (v === undefined) return undefined;
  if (typeof v !== 'string' || v === '') throw new UsageError(`--${name} needs a value`);
  if (!isAbsolute(v)) throw new UsageError(`--${name} must be an absolute path, got "${v}"`);
  return v;
}

async function settingsFor(args: CommandArgs): Promise<Settings> {
  const flag = typeof args.values.settings === 'string' ? args.values.settings : undefined;
  const file = resolve(locateSettings(flag, process.env, process.cwd(), process.platform));
  if (!existsSync(file)) {
    throw new UsageError(
      `settings file ${file} does not exist; pass --settings PATH (the service runs "boxkeeper run" with it)`,
    );
  }
  const { settings } = await loadSettings(file, {
    readFile: realWorld.files.readFile,
    registry: platformRegistry(process.platform),
    platform: process.platform,
  });
  return settings;
}

function render(kind: ServiceKind, settings: Settings): string {
  const launcher = agentLauncher();
  const opts = { launcher, settingsFile: resolve(settings.file), home: launcher.home };
  try {
    return kind === 'systemd'
      ? renderSystemdUnit(opts)
      : renderWinswXml({ ...opts, logDir: settings.paths.logs });
  } catch (err) {
    if (err instanceof DefinitionError) throw new UsageError(`boxkeeper service: ${err.message}`);
    throw err;
  }
}

/** Asks the running agent to stop (control channel, else SIGTERM); never touches its children. */
async function stopAgent(settings: Settings): Promise<string> {
  const owner = await readLockOwner(lockPath(settings));
  if (owner === undefined || !(await ownerAlive(owner, realWorld.processes)))
    return 'no agent runs for this box';
  const pid = owner.pid;
  const info = await readControlInfo(controlFile(settings));
  let how = 'SIGTERM';
  if (info?.pid === pid) {
    const asked = await controlRequest(info, 'POST', '/stop', {}).then(
      (r) => r.status === 200,
      () => false,
    );
    if (asked) how = 'control channel';
  }
  // On Windows a signal is TerminateProcess (of the agent alone): the fallback when the agent
  // has no control channel ([update] enabled = off). Its lock is then stale and taken over.
  if (how === 'SIGTERM') process.kill(pid, 'SIGTERM');
  for (let i = 0; i < 600 && realWorld.processes.isAlive(pid); i++) await sleep(100);
  if (realWorld.processes.isAlive(pid)) {
    process.kill(pid, 'SIGKILL');
    return `agent ${pid} did not stop within 60 s (asked by ${how}); killed it (only it)`;
  }
  return `agent ${pid} stopped (asked by ${how})`;
}

const SUBCOMMANDS = ['install', 'uninstall', 'status', 'stop-agent'];

export async function run(args: CommandArgs): Promise<ExitCode> {
  const [sub, ...extra] = args.positionals;
  if (sub === undefined || !SUBCOMMANDS.includes(sub)) {
    throw new UsageError(
      `service needs one of: install, uninstall, status${sub === undefined ? '' : ` (got "${sub}")`}\nSee "boxkeeper service --help".`,
    );
  }
  if (extra.length > 0) throw new UsageError(`unexpected argument "${extra[0] ?? ''}"`);
  const dryRun = args.values['dry-run'] === true;
  const managerOpt = args.values.manager;
  let kind: ServiceKind;
  if (managerOpt === undefined) kind = platformKind(process.platform);
  else if (managerOpt === 'systemd' || managerOpt === 'winsw') kind = managerOpt;
  else throw new UsageError(`--manager must be systemd or winsw, got "${String(managerOpt)}"`);
  if (managerOpt !== undefined && kind !== platformKind(process.platform) && !dryRun) {
    throw new UsageError(`--manager ${kind} on ${process.platform} works only with --dry-run`);
  }
  const overrides: ManagerOverrides = {};
  const unitDir = stringOpt(args, 'unit-dir');
  const serviceDir = stringOpt(args, 'service-dir');
  const wrapper = stringOpt(args, 'wrapper');
  if (unitDir !== undefined) overrides.unitDir = unitDir;
  if (serviceDir !== undefined) overrides.serviceDir = serviceDir;
  if (wrapper !== undefined) overrides.wrapper = wrapper;
  const settings = await settingsFor(args);
  const manager = serviceManagerFor(kind, settings, overrides);
  const out = (s: string) => process.stdout.write(s.endsWith('\n') ? s : `${s}\n`);

  if (sub === 'install') {
    const definition = render(kind, settings);
    if (dryRun) {
      out(`# ${manager.definitionPath} (dry run: nothing written)\n${definition}`);
      out(
        `# would run:\n${(await manager.install(definition, true)).map((s) => `#   ${s}`).join('\n')}`,
      );
      return ExitCode.ok;
    }
    const steps = await manager.install(definition, false);
    out(steps.map((s) => `done: ${s}`).join('\n'));
    const st = await manager.status();
    out(`boxkeeper service: ${st.active ? 'active' : 'NOT active'} (${st.detail})`);
    return ExitCode.ok;
  }
  if (sub === 'uninstall') {
    const steps = await manager.uninstall(dryRun);
    out(steps.map((s) => `${dryRun ? 'would run' : 'done'}: ${s}`).join('\n'));
    return ExitCode.ok;
  }
  if (sub === 'stop-agent') {
    out(await stopAgent(settings));
    return ExitCode.ok;
  }
  // status
  if (dryRun) {
    out(
      `would run: ${kind === 'systemd' ? 'systemctl show boxkeeper.service --property=LoadState,UnitFileState,ActiveState,SubState,MainPID' : 'sc.exe query boxkeeper; sc.exe qc boxkeeper'}`,
    );
    return ExitCode.ok;
  }
  const st = await manager.status();
  if (args.values.json === true) {
    out(JSON.stringify(st));
  } else {
    const yn = (b: boolean) => (b ? 'yes' : 'no');
    out(
      `service:   boxkeeper (${st.manager})\n` +
        `installed: ${yn(st.installed)}   (${st.definition})\n` +
        `enabled:   ${yn(st.enabled)}\n` +
        `active:    ${yn(st.active)}   (${st.detail}${st.mainPid === null ? '' : `, pid ${st.mainPid}`})`,
    );
  }
  return ExitCode.ok;
}
