// Processes: list (image name and command line), spawn detached, kill a tree, run a command.
import { spawn } from 'node:child_process';
import { closeSync, mkdirSync, openSync } from 'node:fs';
import { dirname } from 'node:path';
import psList from 'ps-list';
import treeKill from 'tree-kill';
import { errorMessage } from './errors.ts';

export interface ProcInfo {
  pid: number;
  /** Image name, e.g. `java.exe`, `node`. */
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

export interface ProcessControl {
  list(): Promise<ProcInfo[]>;
  isAlive(pid: number): boolean;
  /** Starts a process that outlives the agent; resolves with its pid once it has spawned. */
  spawnDetached(file: string, args: string[], options: SpawnOptions): Promise<number>;
  /** Signals a process and all its descendants. */
  killTree(pid: number, signal: 'SIGTERM' | 'SIGKILL'): Promise<void>;
  exec(
    file: string,
    args: string[],
    options: { timeoutMs: number; cwd?: string },
  ): Promise<ExecResult>;
}

export const nodeProcesses: ProcessControl = {
  async list() {
    const all = await psList({ all: true });
    return all.map((p) => ({
      pid: p.pid,
      name: p.name,
      cmd: p.cmd ?? '',
      ...(p.startTime === undefined ? {} : { startedAt: p.startTime.getTime() }),
    }));
  },

  isAlive(pid) {
    try {
      process.kill(pid, 0);
      return true;
    } catch (err) {
      // EPERM: it exists but belongs to someone else.
      return (err as { code?: string }).code === 'EPERM';
    }
  },

  spawnDetached(file, args, options) {
    return new Promise((resolve, reject) => {
      let out: number | 'ignore' = 'ignore';
      if (options.logFile !== undefined) {
        mkdirSync(dirname(options.logFile), { recursive: true });
        out = openSync(options.logFile, 'a');
      }
      const child = spawn(file, args, {
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

  killTree(pid, signal) {
    return new Promise((resolve) => {
      // An already-gone process is what we wanted; tree-kill reports it as an error.
      treeKill(pid, signal, () => resolve());
    });
  },

  exec(file, args, options) {
    return new Promise((resolve) => {
      const child = spawn(file, args, {
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
