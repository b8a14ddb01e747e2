// Processes: list (image name and command line), spawn detached, kill a tree, run a command.
import { closeSync, mkdirSync, openSync } from 'node:fs';
import { dirname } from 'node:path';
import { errorMessage } from './errors.ts';
import { listProcfs, procfsAvailable } from './procfs.ts';

// Loaded at the first spawn: `status` and `health` start no process, and child_process brings
// net, dgram and the stream stack with it (~20 ms of their start; docs/benchmarks.md).
const childProcess = () => process.getBuiltinModule('node:child_process');

export interface ProcInfo {
  pid: number;
  /** Parent pid where the OS listing has it (Windows' fast list and ps both do). */
  ppid?: number;
  /** Image name, e.g. `java.exe`, `node`; empty when the listing had none. */
  name: string;
  /** Full command line; empty where the OS listing has none (Windows' fast list). */
  cmd: string;
  /** Start time (epoch ms, 1 s resolution) where the OS listing has it. */
  startedAt?: number;
}
export interface ExecResult {
  code: number | null;
  stdout: string;
  stderr: string;
  timedOut: boolean;
}

export interface SpawnOptions {
  cwd: string;
  /** stdout and stderr are appended here, so a service's own output is kept. */
  logFile?: string;
  env?: NodeJS.ProcessEnv;
}

export interface ListOptions {
  /**
   * A listing started at or after this time (epoch ms, Date.now) is good enough: the last one,
   * or one still running, is shared instead of reading the table again. Without it the listing
   * is fresh (started after the call), as a caller that must see a change needs.
   */
  since?: number;
}

export interface ProcessControl {
  /** The process table. The array may be shared with other callers: do not change it. */
  list(options?: ListOptions): Promise<ProcInfo[]>;
  isAlive(pid: number): boolean;
  /** Starts a process that outlives the agent; resolves with its pid once it has spawned. */
  spawnDetached(file: string, args: string[], options: SpawnOptions): Promise<number>;
  /**
   * Signals a process and all its descendants (on Windows: terminates them and waits until they
   * are gone). Rejects when a process could not be signalled or, on Windows, survived; a
   * process that had already exited counts as done.
   */
  killTree(pid: number, signal: 'SIGTERM' | 'SIGKILL'): Promise<void>;
  exec(
    file: string,
    args: string[],
    options: { timeoutMs: number; cwd?: string },
  ): Promise<ExecResult>;
}

/** One row as the OS listing (ps-list) gives it: on Windows fields may be missing or NaN. */
export interface RawProc {
  pid: number;
  ppid?: number;
  name?: string;
  cmd?: string;
  startTime?: Date;
}

/** The parts of the world the process adapter uses, replaceable in tests. */
export interface ProcessSeams {
  platform?: NodeJS.Platform;
  listRaw?: () => Promise<RawProc[]>;
  /** The environment the listing is chosen by (BOXKEEPER_PROCESS_LISTING, below). */
  env?: NodeJS.ProcessEnv;
  /** process.kill: on Windows every signal is TerminateProcess; 0 probes. */
  signal?: (pid: number, signal: NodeJS.Signals | 0) => void;
  /** How long a win32 tree kill waits for the processes to be gone. */
  killWaitMs?: number;
}

const isPid = (n: unknown): n is number => typeof n === 'number' && Number.isInteger(n) && n > 0;

/**
 * Drops rows without a usable pid and gives every row a string name. fastlist's output can
 * end in a line that parses as `{ pid: NaN, name: undefined }`, which once crashed detection.
 */
export function normalizeProcs(raw: readonly RawProc[]): ProcInfo[] {
  const out: ProcInfo[] = [];
  for (const p of raw) {
    if (!isPid(p.pid)) continue;
    const cmd = typeof p.cmd === 'string' ? p.cmd : '';
    const name = typeof p.name === 'string' ? p.name : '';
    const startedAt = p.startTime?.getTime();
    out.push({
      pid: p.pid,
      ...(isPid(p.ppid) ? { ppid: p.ppid } : {}),
      name,
      cmd,
      ...(startedAt === undefined || Number.isNaN(startedAt) ? {} : { startedAt }),
    });
  }
  return out;
}

/** `root` and its descendants by parent pid, deepest first (children before their parents). */
export function treeChildrenFirst(table: readonly ProcInfo[], root: number): number[] {
  const children = new Map<number, number[]>();
  for (const p of table) {
    if (p.ppid === undefined || p.ppid === p.pid) continue;
    const list = children.get(p.ppid) ?? [];
    list.push(p.pid);
    children.set(p.ppid, list);
  }
  const order: number[] = [];
  const seen = new Set<number>();
  const visit = (pid: number) => {
    if (seen.has(pid)) return; // a ppid cycle from pid reuse
    seen.add(pid);
    for (const c of children.get(pid) ?? []) visit(c);
    order.push(pid);
  };
  visit(root);
  return order;
}

const sleep = (ms: number) => new Promise((ok) => setTimeout(ok, ms));

/**
 * How the table is read. Linux: /proc in one pass, no child process (ps-list ran `ps` twice per
 * listing and merged them). macOS and the BSDs have no /proc: ps-list (`ps`). Windows: ps-list
 * (its bundled fastlist.exe). `BOXKEEPER_PROCESS_LISTING=ps-list` forces ps-list anywhere: the
 * "before" arm of bench/heartbeat.ts, and a way out should /proc ever mislead on a box.
 */
export function defaultListRaw(
  platform: NodeJS.Platform,
  env: NodeJS.ProcessEnv,
): () => Promise<RawProc[]> {
  const psList = async () => {
    // Loaded on first use: `boxkeeper status` and --help never list.
    const { default: list } = await import('ps-list');
    return list({ all: true });
  };
  if (platform !== 'linux' || env.BOXKEEPER_PROCESS_LISTING === 'ps-list') return psList;
  let procfs: boolean | undefined;
  return async () => {
    procfs ??= procfsAvailable();
    return procfs ? listProcfs() : psList();
  };
}

export function createProcessControl(seams: ProcessSeams = {}): ProcessControl {
  const platform = seams.platform ?? process.platform;
  const env = seams.env ?? process.env;
  const listRaw = seams.listRaw ?? defaultListRaw(platform, env);
  const signal = seams.signal ?? ((pid, sig) => process.kill(pid, sig));
  const killWaitMs = seams.killWaitMs ?? 5000;
  // The bench's "before" arm: every caller lists for itself, as before listings were shared.
  const share = env.BOXKEEPER_LISTING_SHARE !== 'off';

  /** The newest listing, kept (and joined while it runs) for callers that accept its age. */
  let latest: { startedAt: number; procs: Promise<ProcInfo[]> } | undefined;

  const listFresh = (): Promise<ProcInfo[]> => {
    const startedAt = Date.now();
    const procs = (async () => {
      const rows = normalizeProcs(await listRaw());
      // At least this process runs: an empty table is a failed listing, not "nothing runs".
      if (rows.length === 0) throw new Error('process listing returned no processes');
      return rows;
    })();
    const entry = { startedAt, procs };
    latest = entry;
    // A failed listing is not handed to later callers.
    procs.catch(() => {
      if (latest === entry) latest = undefined;
    });
    return procs;
  };

  const list = (options: ListOptions = {}): Promise<ProcInfo[]> => {
    const { since } = options;
    if (share && since !== undefined && latest !== undefined && latest.startedAt >= since)
      return latest.procs;
    return listFresh();
  };

  const isAlive = (pid: number): boolean => {
    try {
      signal(pid, 0);
      return true;
    } catch (err) {
      // EPERM: it exists but belongs to someone else.
      return (err as { code?: string }).code === 'EPERM';
    }
  };

  /** Sends `sig` to each pid; an already-gone process is fine. Returns the failures. */
  const signalAll = (pids: readonly number[], sig: NodeJS.Signals): string[] => {
    const failures: string[] = [];
    for (const pid of pids) {
      try {
        signal(pid, sig);
      } catch (err) {
        const code = (err as { code?: string }).code;
        if (code !== 'ESRCH') failures.push(`pid ${pid}: ${code ?? errorMessage(err)}`);
      }
    }
    return failures;
  };

  // Windows: taskkill /T does not exist under Wine and hides failures, so the tree comes from
  // the listing's parent pids and each process is terminated, children first, then checked.
  const killTreeByTable = async (root: number, sig: NodeJS.Signals): Promise<void> => {
    const targeted = new Set<number>();
    const failures: string[] = [];
    // A second pass catches children started while the first pass ran.
    for (let pass = 0; pass < 3; pass++) {
      // Fresh every pass: a shared listing could miss a child just started.
      const next = treeChildrenFirst(await list(), root).filter((pid) => !targeted.has(pid));
      if (next.length === 0) break;
      for (const pid of next) targeted.add(pid);
      failures.push(...signalAll(next, sig));
    }
    const deadline = Date.now() + killWaitMs;
    let alive = [...targeted].filter(isAlive);
    while (alive.length > 0 && Date.now() < deadline) {
      await sleep(50);
      alive = alive.filter(isAlive);
    }
    if (failures.length > 0 || alive.length > 0) {
      const parts = [
        failures.length > 0 ? `refused: ${failures.join(', ')}` : '',
        alive.length > 0 ? `still running after ${killWaitMs} ms: ${alive.join(', ')}` : '',
      ].filter((s) => s !== '');
      throw new Error(`cannot kill process tree of pid ${root} (${sig}): ${parts.join('; ')}`);
    }
  };

  return {
    list,
    isAlive,

    spawnDetached(file, args, options) {
      return new Promise((resolve, reject) => {
        let out: number | 'ignore' = 'ignore';
        if (options.logFile !== undefined) {
          mkdirSync(dirname(options.logFile), { recursive: true });
          out = openSync(options.logFile, 'a');
        }
        const child = childProcess().spawn(file, args, {
          cwd: options.cwd,
          env: options.env ?? process.env,
          detached: true,
          stdio: ['ignore', out, out],
          windowsHide: true,
        });
        const closeOut = () => {
          if (typeof out === 'number') closeSync(out);
        };
        child.once('error', (err) => {
          closeOut();
          reject(new Error(`cannot start ${file}: ${errorMessage(err)}`, { cause: err }));
        });
        child.once('spawn', () => {
          closeOut();
          child.unref();
          resolve(child.pid as number);
        });
      });
    },

    async killTree(pid, sig) {
      if (platform === 'win32') return killTreeByTable(pid, sig);
      const { default: treeKill } = await import('tree-kill');
      return new Promise((resolve, reject) => {
        // tree-kill already treats a gone process (ESRCH) as done; anything else is real.
        treeKill(pid, sig, (err) => {
          if (!err) {
            resolve();
            return;
          }
          const why = (err as { code?: string }).code ?? errorMessage(err);
          reject(
            new Error(`cannot kill process tree of pid ${pid} (${sig}): ${why}`, { cause: err }),
          );
        });
      });
    },

    exec(file, args, options) {
      return new Promise((resolve) => {
        const child = childProcess().spawn(file, args, {
          cwd: options.cwd,
          stdio: ['ignore', 'pipe', 'pipe'],
          windowsHide: true,
        });
        let stdout = '';
        let stderr = '';
        let timedOut = false;
        child.stdout.setEncoding('utf8').on('data', (d: string) => (stdout += d));
        child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
        const timer = setTimeout(() => {
          timedOut = true;
          child.kill('SIGKILL');
        }, options.timeoutMs);
        child.once('error', (err) => {
          clearTimeout(timer);
          resolve({ code: null, stdout, stderr: stderr + errorMessage(err), timedOut });
        });
        child.once('close', (code) => {
          clearTimeout(timer);
          resolve({ code, stdout, stderr, timedOut });
        });
      });
    },
  };
}
