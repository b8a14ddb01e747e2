// Shared helpers of the end-to-end tests: run the real CLI (the current source, bundled once per
// test process) as a child process, drive a `boxkeeper run` daemon and read its JSON log lines, and set up a
// fixture box wired to a cloud simulator with short timers. Test-only code.
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtemp, readFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  createFixtureBox,
  type FixtureBox,
  type FixtureBoxOptions,
} from '../../fixtures/box/generate.ts';
import {
  startCloudSimulator,
  type CloudSim,
  type SimOptions,
} from '../../fixtures/cloud-sim/server.ts';
import type { AgentStatus } from '../../services/agent/agent.ts';
import { childCommand, REPO, TSX_LOADER } from './child-bundle.ts';

export { REPO, TSX_LOADER };
export const CLI_MAIN = join(REPO, 'cli', 'main.ts');

/** Short timers for the daemon: supervision in fractions of a second, a 1 s cloud timeout. */
export const FAST_SETTINGS: Record<string, Record<string, string>> = {
  supervise: {
    interval: '0.2',
    backoff_initial: '0.2',
    backoff_max: '1',
    ready_timeout: '10',
    stop_timeout: '5',
    crash_loop_starts: '3',
    crash_loop_window: '30',
    crash_loop_retry: '0',
  },
  cloud: { timeout: '1', retries: '1' },
  // Tests of the update cycle turn it on; others count cloud requests exactly.
  update: { enabled: 'off' },
};

export const sleep = (ms: number): Promise<void> => new Promise((ok) => setTimeout(ok, ms));

/** Thrown by a waitUntil probe to stop waiting at once (e.g. the daemon exited). */
export class GiveUp extends Error {}

/**
 * Polls `probe` every `intervalMs` until it returns something other than undefined/false/null
 * (errors count as "not yet", except GiveUp); rejects after `timeoutMs`, saying what was awaited.
 */
export async function waitUntil<T>(
  probe: () => T | undefined | false | null | Promise<T | undefined | false | null>,
  timeoutMs: number,
  what: string,
  diagnostics?: () => string,
  intervalMs = 50,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let lastError: unknown;
  for (;;) {
    try {
      const value = await probe();
      if (value !== undefined && value !== false && value !== null) return value;
    } catch (err) {
      if (err instanceof GiveUp) {
        const diag = diagnostics === undefined ? '' : `\n${diagnostics()}`;
        throw new Error(`gave up waiting for ${what}: ${err.message}${diag}`, { cause: err });
      }
      lastError = err;
    }
    if (Date.now() >= deadline) {
      const why =
        lastError === undefined
          ? ''
          : ` (last error: ${lastError instanceof Error ? lastError.message : JSON.stringify(lastError)})`;
      const diag = diagnostics === undefined ? '' : `\n${diagnostics()}`;
      throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}${why}${diag}`);
    }
    await sleep(intervalMs);
  }
}

/** The environment for children: ours, without a BOXKEEPER_SETTINGS the test did not ask for. */
export function childEnv(extra: Record<string, string> = {}): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = { ...process.env };
  delete env.BOXKEEPER_SETTINGS;
  delete env.NODE_TEST_CONTEXT;
  return { ...env, ...extra };
}

export interface CliResult {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
  timedOut: boolean;
}

export interface CliOptions {
  cwd?: string;
  /** Added to the (BOXKEEPER_SETTINGS-free) environment. */
  env?: Record<string, string>;
  /** Killed (SIGKILL) after this long; default 30 s. */
  timeoutMs?: number;
  /** A CLI entry to run through tsx (default: this checkout's CLI, bundled). */
  main?: string;
  /** An executable to run instead of Node + `main`: a release package's bin/boxkeeper. */
  launcher?: string;
}

function spawnCli(args: string[], opts: CliOptions): ChildProcess {
  const [file, argv] =
    opts.launcher !== undefined
      ? [opts.launcher, args]
      : opts.main !== undefined
        ? [process.execPath, ['--import', TSX_LOADER, opts.main, ...args]]
        : // Named boxkeeper.mjs, as in a package, so that the agent finds its install.
          [process.execPath, [...childCommand(CLI_MAIN, 'boxkeeper'), ...args]];
  return spawn(file, argv, {
    cwd: opts.cwd ?? REPO,
    env: childEnv(opts.env),
    stdio: ['ignore', 'pipe', 'pipe'],
  });
}

/** Runs `boxkeeper <args>` to completion. */
export function runCli(args: string[], opts: CliOptions = {}): Promise<CliResult> {
  const child = spawnCli(args, opts);
  let stdout = '';
  let stderr = '';
  let timedOut = false;
  child.stdout?.setEncoding('utf8').on('data', (d: string) => (stdout += d));
  child.stderr?.setEncoding('utf8').on('data', (d: string) => (stderr += d));
  const timer = setTimeout(() => {
    timedOut = true;
    child.kill('SIGKILL');
  }, opts.timeoutMs ?? 30_000);
  return new Promise((ok, fail) => {
    child.once('error', (err) => {
      clearTimeout(timer);
      fail(err);
    });
    child.once('close', (code, signal) => {
      clearTimeout(timer);
      ok({ code, signal, stdout, stderr, timedOut });
    });
  });
}

/** A pino line the daemon wrote to stdout. */
export interface LogLine {
  level: number;
  msg: string;
  [field: string]: unknown;
}

/** Level ≥ 50 is error or fatal. */
export const isError = (l: LogLine): boolean => l.level >= 50;

/** A running `boxkeeper run`; its stdout JSON lines are parsed as they arrive. */
export class Daemon {
  readonly child: ChildProcess;
  readonly pid: number;
  readonly lines: LogLine[] = [];
  stdout = '';
  stderr = '';
  readonly exited: Promise<CliResult>;
  private partial = '';

  constructor(args: string[], opts: CliOptions = {}) {
    this.child = spawnCli(args, opts);
    if (this.child.pid === undefined) throw new Error('boxkeeper run did not spawn');
    this.pid = this.child.pid;
    this.child.stdout?.setEncoding('utf8').on('data', (d: string) => {
      this.stdout += d;
      this.partial += d;
      const parts = this.partial.split('\n');
      this.partial = parts.pop() ?? '';
      for (const text of parts) {
        try {
          const parsed: unknown = JSON.parse(text);
          if (typeof parsed === 'object' && parsed !== null && 'level' in parsed) {
            this.lines.push(parsed as LogLine);
          }
        } catch {
          // not a log line
        }
      }
    });
    this.child.stderr?.setEncoding('utf8').on('data', (d: string) => (this.stderr += d));
    this.exited = new Promise((ok) => {
      this.child.once('close', (code, signal) => {
        ok({ code, signal, stdout: this.stdout, stderr: this.stderr, timedOut: false });
      });
    });
  }

  get running(): boolean {
    return this.child.exitCode === null && this.child.signalCode === null;
  }

  /** For waitUntil probes: stop waiting when the daemon has exited. */
  assertRunning(): void {
    if (!this.running) {
      throw new GiveUp(
        `the daemon exited (code ${String(this.child.exitCode)}, signal ${String(this.child.signalCode)})`,
      );
    }
  }

  /** waitUntil that gives up at once if the daemon exits, and shows its log on failure. */
  waitUntil<T>(
    probe: () => T | undefined | false | null | Promise<T | undefined | false | null>,
    timeoutMs: number,
    what: string,
  ): Promise<T> {
    return waitUntil(
      () => {
        this.assertRunning();
        return probe();
      },
      timeoutMs,
      what,
      () => this.tail(),
    );
  }

  /** The last log lines and stderr, for failure messages. */
  tail(n = 15): string {
    const lines = this.stdout.trimEnd().split('\n').slice(-n).join('\n');
    return `--- daemon pid ${this.pid} stdout (last ${n} lines) ---\n${lines}\n--- stderr ---\n${this.stderr}`;
  }

  /** Resolves with the first line at index ≥ `from` matching `pred`, and its index. */
  waitForLine(
    pred: (l: LogLine) => boolean,
    timeoutMs: number,
    what: string,
    from = 0,
  ): Promise<{ line: LogLine; index: number }> {
    return this.waitUntil(
      () => {
        const index = this.lines.findIndex((l, i) => i >= from && pred(l));
        return index >= 0 ? { line: this.lines[index] as LogLine, index } : undefined;
      },
      timeoutMs,
      what,
    );
  }

  /** SIGTERM, then SIGKILL if it has not exited within `graceMs`. */
  async stop(graceMs = 10_000): Promise<CliResult> {
    if (!this.running) return this.exited;
    this.child.kill('SIGTERM');
    const timer = setTimeout(() => this.child.kill('SIGKILL'), graceMs);
    try {
      return await this.exited;
    } finally {
      clearTimeout(timer);
    }
  }
}

export interface E2E {
  sim: CloudSim;
  box: FixtureBox;
  /** [paths] agent_data (default \boxkeeper under the box root). */
  agentData: string;
  statusFile: string;
  lockFile: string;
  logsDir: string;
  daemons: Daemon[];
  /** `boxkeeper run --settings <box settings>`. */
  startDaemon(): Daemon;
  /** `boxkeeper <args> --settings <box settings>`. */
  cli(args: string[], opts?: CliOptions): Promise<CliResult>;
  /** status.json as the daemon last wrote it, or null. */
  readStatus(): Promise<AgentStatus | null>;
  /** Stops every daemon, kills the box's stand-ins, removes the box, closes the simulator. */
  close(): Promise<void>;
}

export interface E2EOptions {
  sim?: SimOptions;
  /** Merged over FAST_SETTINGS (section by section). */
  extraSettings?: Record<string, Record<string, string>>;
  box?: Partial<Omit<FixtureBoxOptions, 'root' | 'hostAddr' | 'extraSettings'>>;
  /** How every daemon and command is run (default: this checkout's source through tsx). */
  cliOptions?: CliOptions;
}

/** A cloud simulator and a fixture box pointed at it, with FAST_SETTINGS and 0.5 s heartbeats. */
export async function setupE2E(opts: E2EOptions = {}): Promise<E2E> {
  const sim = await startCloudSimulator(opts.sim);
  const root = await mkdtemp(join(tmpdir(), 'bk-e2e-'));
  const extra: Record<string, Record<string, string>> = {};
  for (const [section, entries] of Object.entries(FAST_SETTINGS)) extra[section] = { ...entries };
  for (const [section, entries] of Object.entries(opts.extraSettings ?? {})) {
    extra[section] = { ...extra[section], ...entries };
  }
  let box: FixtureBox;
  try {
    box = await createFixtureBox({
      heartbeatSec: 0.5,
      ...opts.box,
      root,
      hostAddr: sim.url,
      extraSettings: extra,
    });
  } catch (err) {
    await sim.close();
    throw err;
  }
  const agentData = join(box.boxRoot, 'boxkeeper');
  const daemons: Daemon[] = [];
  return {
    sim,
    box,
    agentData,
    statusFile: join(agentData, 'status.json'),
    lockFile: join(agentData, 'agent.lock'),
    logsDir: join(agentData, 'logs'),
    daemons,
    startDaemon() {
      const d = new Daemon(['run', '--settings', box.settingsPath], opts.cliOptions);
      daemons.push(d);
      return d;
    },
    cli(args, cliOpts) {
      return runCli([...args, '--settings', box.settingsPath], {
        ...opts.cliOptions,
        ...cliOpts,
        env: { ...opts.cliOptions?.env, ...cliOpts?.env },
      });
    },
    async readStatus() {
      try {
        return JSON.parse(await readFile(join(agentData, 'status.json'), 'utf8')) as AgentStatus;
      } catch {
        return null;
      }
    },
    async close() {
      // The daemon first: it would restart the stand-ins that cleanup() kills.
      await Promise.all(daemons.map((d) => d.stop()));
      await box.cleanup();
      await sim.close();
    },
  };
}

/** Item values of a heartbeat body, by key. */
export function itemsOf(body: {
  items: Array<{ key: string; value: unknown }>;
}): Record<string, unknown> {
  return Object.fromEntries(body.items.map((i) => [i.key, i.value]));
}

/** Whether a process exists (signal 0). */
export function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** The heartbeat items in order, as §2 of the reference lists them (the spec, not the code). */
export const HEARTBEAT_KEYS = [
  'version',
  'host_ip',
  'callbox_ip',
  'app_key',
  'access_id',
  'access_secret',
  'Freeswitch',
  'Reg_callbox',
  'Reg_numconvert',
  'Java',
  'cpu',
  'mem',
  'media_storage',
];

/** status.json once this daemon has written it with both services running. */
export function servicesRunning(h: E2E, d: Daemon, timeoutMs = 20_000): Promise<AgentStatus> {
  return d.waitUntil(
    async () => {
      const s = await h.readStatus();
      return s?.pid === d.pid &&
        s.services.java?.status === 'running' &&
        s.services.freeswitch?.status === 'running'
        ? s
        : undefined;
    },
    timeoutMs,
    'java and freeswitch running in status.json',
  );
}
