// Shared by the snapshot crash tests and their child process: what the child runs, where it
// kills itself, and how the parent starts it. Test-only code.
import { spawn } from 'node:child_process';
import { lstat, readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { HashPool } from '../../adapters/hash-pool.ts';
import type { SnapshotRepo } from '../../adapters/snapshot-repo.ts';
import type { TreeOps } from '../../adapters/tree.ts';
import type { SnapshotConfig } from '../../services/snapshot/snapshots.ts';
import { childCommand } from './child-bundle.ts';

export const CRASH_CHILD = fileURLToPath(new URL('./snapshot-crash-child.ts', import.meta.url));

type MethodOf<T> = {
  [K in keyof T]: T[K] extends (...args: never[]) => unknown ? K : never;
}[keyof T] &
  string;

/** An adapter method, as `repo.<method>` or `tree.<method>`. */
export type CrashCall =
  `repo.${MethodOf<SnapshotRepo>}` | `tree.${MethodOf<TreeOps>}` | `hashPool.${MethodOf<HashPool>}`;

/**
 * Where the child dies: on the `nth` call of `call` (1-based), before the real call, after it
 * returned (or its promise settled), or — `temp` — after leaving a partly written temp file
 * where the real call would put its temp file, as a crash between write and rename would.
 */
export interface CrashPoint {
  call: CrashCall;
  nth: number;
  when: 'before' | 'after' | 'temp';
}

export type CrashOp =
  | { kind: 'commit'; version?: string }
  | { kind: 'rollback'; version: string; discardChanges?: boolean }
  | { kind: 'prune' };

export interface CrashChildArgs {
  repoDir: string;
  config: SnapshotConfig;
  op: CrashOp;
  crash: CrashPoint;
}

export interface ChildOutcome {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

export function crashLabel(p: CrashPoint): string {
  return `${p.call} #${p.nth} ${p.when}`;
}

/** The marker the child writes to stderr right before it kills itself. */
export function crashMarker(p: CrashPoint): string {
  return `CRASH AT ${crashLabel(p)}\n`;
}

/** Runs the crash child (current source, bundled once per test process) and waits for it to end. */
export function runCrashChild(args: CrashChildArgs): Promise<ChildOutcome> {
  const env: NodeJS.ProcessEnv = { ...process.env };
  delete env.NODE_TEST_CONTEXT;
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [...childCommand(CRASH_CHILD), JSON.stringify(args)], {
      env,
      stdio: ['ignore', 'pipe', 'pipe'],
      timeout: 30_000,
    });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (d: string) => (stdout += d));
    child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
    child.on('error', reject);
    child.on('close', (code, signal) => {
      resolve({ code, signal, stdout, stderr });
    });
  });
}

/** Every path under `dir` named like a temp file of a crashed writer (`.bk-tmp-`). */
export async function tempFilesUnder(dir: string, skip: string[] = []): Promise<string[]> {
  const found: string[] = [];
  const walk = async (d: string) => {
    for (const name of (await readdir(d)).sort()) {
      const p = join(d, name);
      if (skip.includes(p)) continue;
      if (name.includes('.bk-tmp-')) found.push(p);
      if ((await lstat(p)).isDirectory()) await walk(p);
    }
  };
  await walk(dir);
  return found;
}
