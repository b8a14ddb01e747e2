// The OS service manager: systemd (systemctl) on Linux, WinSW + sc.exe on Windows. Installs the
// definition that services/install/service-definitions.ts renders, and starts, stops, restarts and
// queries the `boxkeeper` service. Every operation returns the steps it took (or, dry, would
// take) so the CLI can print them. Commands go through `run`, so tests can record them.
import { copyFile, mkdir, rm, rmdir } from 'node:fs/promises';
import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { errorMessage, ServiceError } from './errors.ts';
import { writeFileAtomic } from './fs-atomic.ts';
import type { ExecResult } from './processes.ts';

export type RunCommand = (file: string, args: string[]) => Promise<ExecResult>;

export interface ServiceStatus {
  manager: 'systemd' | 'winsw';
  /** The definition file this manager writes. */
  definition: string;
  installed: boolean;
  enabled: boolean;
  active: boolean;
  /** The agent's pid as the manager sees it (systemd's MainPID), when known. */
  mainPid: number | null;
  /** The manager's own words, e.g. "active (running)", "RUNNING, AUTO_START". */
  detail: string;
}

export interface ServiceManager {
  readonly kind: 'systemd' | 'winsw';
  /** Where the definition is written. */
  readonly definitionPath: string;
  /** Writes the definition, registers the service, enables and starts it. */
  install(definition: string, dryRun: boolean): Promise<string[]>;
  /** Stops (the agent only) and unregisters the service and removes its files. */
  uninstall(dryRun: boolean): Promise<string[]>;
  status(): Promise<ServiceStatus>;
  /** (Re)starts the service, also from a failed or stopped state. */
  restart(): Promise<void>;
  stop(): Promise<void>;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function must(run: RunCommand, file: string, args: string[]): Promise<ExecResult> {
  const r = await run(file, args);
  if (r.code !== 0) {
    const out = (r.stderr.trim() || r.stdout.trim()).slice(0, 500);
    throw new ServiceError(
      'boxkeeper service',
      `"${[file, ...args].join(' ')}" failed (exit ${String(r.code)}${r.timedOut ? ', timed out' : ''})${out === '' ? '' : `: ${out}`}`,
    );
  }
  return r;
}

// ---- systemd --------------------------------------------------------------------------------

/** `systemctl show` output (KEY=value lines) as a record. */
export function parseSystemctlShow(text: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const line of text.split(/\r?\n/)) {
    const i = line.indexOf('=');
    if (i > 0) out[line.slice(0, i)] = line.slice(i + 1);
  }
  return out;
}

export interface SystemdOptions {
  /** Default /etc/systemd/system. */
  unitDir?: string;
  run: RunCommand;
  /** Default `systemctl` from PATH. */
  systemctl?: string;
}

export function systemdManager(opts: SystemdOptions): ServiceManager {
  const unit = 'boxkeeper.service';
  const unitPath = join(opts.unitDir ?? '/etc/systemd/system', unit);
  const ctl = opts.systemctl ?? 'systemctl';
  const run = opts.run;
  const cmd = (...args: string[]) => `${ctl} ${args.join(' ')}`;

  async function status(): Promise<ServiceStatus> {
    const r = await must(run, ctl, [
      'show',
      unit,
      '--property=LoadState,UnitFileState,ActiveState,SubState,MainPID',
    ]);
    const p = parseSystemctlShow(r.stdout);
    const pid = Number(p.MainPID ?? '0');
    return {
      manager: 'systemd',
      definition: unitPath,
      installed: p.LoadState === 'loaded',
      enabled: p.UnitFileState === 'enabled',
      active: p.ActiveState === 'active',
      mainPid: Number.isInteger(pid) && pid > 0 ? pid : null,
      detail: `${p.ActiveState ?? '?'} (${p.SubState ?? '?'}), ${p.UnitFileState || 'no unit file'}`,
    };
  }

  return {
    kind: 'systemd',
    definitionPath: unitPath,
    async install(definition, dryRun) {
      const wasActive = dryRun ? false : (await status()).active;
      const steps = [
        `write ${unitPath}`,
        cmd('daemon-reload'),
        cmd('enable', '--now', unit),
        ...(wasActive ? [cmd('restart', unit)] : []),
      ];
      if (dryRun) return steps;
      await writeFileAtomic(unitPath, definition);
      await must(run, ctl, ['daemon-reload']);
      await must(run, ctl, ['enable', '--now', unit]);
      // An agent already running under the old unit picks the new one up.
      if (wasActive) await must(run, ctl, ['restart', unit]);
      return steps;
    },
    async uninstall(dryRun) {
      const present = existsSync(unitPath);
      const steps = [
        `${cmd('disable', '--now', unit)}   (KillMode=process: the agent stops, Java and FreeSWITCH keep running)`,
        ...(present ? [`remove ${unitPath}`] : []),
        cmd('daemon-reload'),
      ];
      if (dryRun) return steps;
      const s = await status();
      if (s.installed || s.active) await must(run, ctl, ['disable', '--now', unit]);
      await rm(unitPath, { force: true });
      await must(run, ctl, ['daemon-reload']);
      await run(ctl, ['reset-failed', unit]);
      return steps;
    },
    status,
    async restart() {
      // After StartLimitBurst failures the unit is "failed" and refuses to start until reset.
      await run(ctl, ['reset-failed', unit]);
      await must(run, ctl, ['restart', unit]);
    },
    async stop() {
      await must(run, ctl, ['stop', unit]);
    },
  };
}

// ---- WinSW (Windows) ------------------------------------------------------------------------

/** `sc query` / `sc qc` output → state and start type ("RUNNING", "AUTO_START"), if present. */
export function parseScOutput(text: string): {
  exists: boolean;
  state?: string;
  startType?: string;
} {
  if (/\b1060\b/.test(text)) return { exists: false };
  const state = /STATE\s*:\s*\d+\s+(\w+)/.exec(text)?.[1];
  const startType = /START_TYPE\s*:\s*\d+\s+(\w+)/.exec(text)?.[1];
  return {
    exists: state !== undefined || startType !== undefined,
    ...(state === undefined ? {} : { state }),
    ...(startType === undefined ? {} : { startType }),
  };
}

export interface WinswOptions {
  /** Where the wrapper and its XML are installed (outside the agent's install: self-update swaps that). */
  serviceDir: string;
  /** The WinSW exe to copy (from the package); its `.config` beside it is copied too. */
  wrapperSource: string;
  run: RunCommand;
  /** Default `sc.exe` from PATH. */
  sc?: string;
  /** Poll interval while waiting for the SCM (tests shorten it). */
  pollMs?: number;
}

export const WINSW_BASENAME = 'boxkeeper-service';

export function winswManager(opts: WinswOptions): ServiceManager {
  const exe = join(opts.serviceDir, `${WINSW_BASENAME}.exe`);
  const xml = join(opts.serviceDir, `${WINSW_BASENAME}.xml`);
  const sc = opts.sc ?? 'sc.exe';
  const run = opts.run;
  const pollMs = opts.pollMs ?? 500;

  async function query(): Promise<{ exists: boolean; state?: string; startType?: string }> {
    const q = await run(sc, ['query', 'boxkeeper']);
    const parsed = parseScOutput(q.stdout + q.stderr);
    if (!parsed.exists) return parsed;
    const c = await run(sc, ['qc', 'boxkeeper']);
    return { ...parsed, ...parseScOutput(c.stdout + c.stderr), exists: true };
  }

  async function waitFor(what: string, ok: (q: { exists: boolean; state?: string }) => boolean) {
    for (let i = 0; i * pollMs < 60_000; i++) {
      if (ok(await query())) return;
      await sleep(pollMs);
    }
    throw new ServiceError('boxkeeper service', `the service did not become ${what} within 60 s`);
  }

  return {
    kind: 'winsw',
    definitionPath: xml,
    async install(definition, dryRun) {
      const steps = [
        `copy ${opts.wrapperSource} -> ${exe} (and its .config)`,
        `write ${xml}`,
        `${exe} install`,
        `${exe} start`,
      ];
      if (dryRun) return steps;
      if ((await query()).exists) {
        throw new ServiceError(
          'boxkeeper service',
          'the Windows service "boxkeeper" is already installed; run "boxkeeper service uninstall" first',
        );
      }
      if (!existsSync(opts.wrapperSource)) {
        throw new ServiceError(
          'boxkeeper service',
          `the service wrapper ${opts.wrapperSource} is missing (the package ships it; see docs/install.md)`,
        );
      }
      await mkdir(opts.serviceDir, { recursive: true });
      await copyFile(opts.wrapperSource, exe);
      const config = `${opts.wrapperSource}.config`;
      if (existsSync(config)) await copyFile(config, `${exe}.config`);
      await writeFileAtomic(xml, definition);
      await must(run, exe, ['install']);
      await must(run, exe, ['start']);
      return steps;
    },
    async uninstall(dryRun) {
      const steps = [
        `${exe} stop   (runs "boxkeeper service stop-agent": the agent stops, Java and FreeSWITCH keep running)`,
        `${exe} uninstall`,
        `remove ${exe}, ${xml}`,
      ];
      if (dryRun) return steps;
      const q = await query();
      if (q.exists) {
        if (q.state !== 'STOPPED') {
          await run(exe, ['stop']);
          await waitFor('stopped', (s) => !s.exists || s.state === 'STOPPED');
        }
        await must(run, exe, ['uninstall']);
        await waitFor('removed', (s) => !s.exists);
      }
      for (const f of [exe, `${exe}.config`, xml]) await rm(f, { force: true });
      // The dir goes too when nothing else is in it.
      await rmdir(dirname(xml)).catch(() => undefined);
      return steps;
    },
    async status() {
      const q = await query();
      return {
        manager: 'winsw',
        definition: xml,
        installed: q.exists,
        enabled: q.startType === 'AUTO_START',
        active: q.state === 'RUNNING',
        mainPid: null,
        detail: q.exists ? `${q.state ?? '?'}, ${q.startType ?? '?'}` : 'not installed',
      };
    },
    async restart() {
      // WinSW's "restart" stops the service if it runs, waits for STOPPED, then starts it.
      try {
        await must(run, exe, ['restart']);
      } catch (err) {
        throw new ServiceError('boxkeeper service', `restart failed: ${errorMessage(err)}`);
      }
    },
    async stop() {
      await must(run, exe, ['stop']);
      await waitFor('stopped', (s) => !s.exists || s.state === 'STOPPED');
    },
  };
}
