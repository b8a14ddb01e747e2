// Where this boxkeeper is installed: the directory holding its package.json (name "boxkeeper"),
// its version, and the path of the CLI entry inside it (dist/cli/main.js when built,
// cli/main.ts when run from source). Self-update swaps that directory.
import { spawn } from 'node:child_process';
import { closeSync, existsSync, openSync, readFileSync } from 'node:fs';
import { cp, rename, rm } from 'node:fs/promises';
import { dirname, join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import { fsyncDir } from './fs-atomic.ts';
import type { ExecResult, ProcessControl } from './processes.ts';

export interface AgentInstall {
  home: string;
  version: string;
  /** The CLI entry, relative to home. */
  entry: string;
}

export function readAgentPackage(dir: string): { name: string; version: string } | undefined {
  try {
    const pkg = JSON.parse(readFileSync(join(dir, 'package.json'), 'utf8')) as {
      name?: unknown;
      version?: unknown;
    };
    if (pkg.name !== 'boxkeeper' || typeof pkg.version !== 'string') return undefined;
    return { name: pkg.name, version: pkg.version };
  } catch {
    return undefined;
  }
}

/** The install containing `entryFile` (the CLI main module's path or file URL). */
export function findAgentInstall(entryFile: string): AgentInstall {
  const file = entryFile.startsWith('file:') ? fileURLToPath(entryFile) : entryFile;
  for (let dir = dirname(file); ; dir = dirname(dir)) {
    const pkg = readAgentPackage(dir);
    if (pkg !== undefined) return { home: dir, version: pkg.version, entry: relative(dir, file) };
    if (dirname(dir) === dir) {
      throw new Error(`no boxkeeper package.json above ${file}: cannot tell the agent's install`);
    }
  }
}

const ownRuntime = (home: string, platform: NodeJS.Platform) =>
  join(home, 'runtime', platform === 'win32' ? 'node.exe' : 'node');

/**
 * The Node runtime to run an install with: the package's own (`<home>/runtime/node[.exe]`), else
 * the one running now (a source checkout). Starting an install with its own runtime matters on
 * Windows: a directory holding a running .exe cannot be renamed, so the updater must not run
 * from the install it swaps.
 */
export function runtimeOf(home: string, platform: NodeJS.Platform = process.platform): string {
  const own = ownRuntime(home, platform);
  return existsSync(own) ? own : process.execPath;
}

/** `<home>.incoming`, `<home>.previous`: siblings used while swapping the install. */
export function swapPaths(home: string): { incoming: string; previous: string } {
  return { incoming: `${home}.incoming`, previous: `${home}.previous` };
}

/**
 * Makes `home` a copy of `build`, keeping the old install as `<home>.previous`. Each step is a
 * rename, so an interrupted swap is finished by running it again.
 */
export async function swapAgentInstall(home: string, build: string): Promise<void> {
  const { incoming, previous } = swapPaths(home);
  if (!existsSync(home) && existsSync(incoming)) {
    // Interrupted between the two renames: finish.
    await rename(incoming, home);
    await fsyncDir(dirname(home));
    return;
  }
  await rm(incoming, { recursive: true, force: true });
  await cp(build, incoming, { recursive: true, verbatimSymlinks: true });
  await rm(previous, { recursive: true, force: true });
  await rename(home, previous);
  await rename(incoming, home);
  await fsyncDir(dirname(home));
}

/** Puts `<home>.previous` back (the new build failed); the failed one is kept aside. */
export async function restoreAgentInstall(home: string, stamp: string): Promise<string> {
  const { previous } = swapPaths(home);
  if (!existsSync(previous)) throw new Error(`no previous install at ${previous} to restore`);
  const failed = `${home}.failed-${stamp}`;
  if (existsSync(home)) await rename(home, failed);
  await rename(previous, home);
  await fsyncDir(dirname(home));
  return failed;
}

/**
 * Starts `<runtime> [flags] <home>/<entry> <args>` detached (it outlives this process), its
 * output appended to `logFile`; returns its pid.
 */
export function startAgentProcess(
  home: string,
  entry: string,
  args: string[],
  logFile: string,
): number {
  const fd = openSync(logFile, 'a');
  try {
    const node = runtimeOf(home);
    const child = spawn(node, [...runtimeFlags(home, node), join(home, entry), ...args], {
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

/**
 * The flags a package's launchers (bin/boxkeeper, bin\\boxkeeper.exe), its service and a
 * self-update give its Node runtime. A 1 MiB young generation (instead of up to 2 × 16 MiB)
 * holds the idle daemon's RSS flat: within ±10 % over a 2,500-beat soak where without it it
 * climbed 82 → 104 MiB, and a download's peak drops by ~16 MiB. `--optimize-for-size` held it
 * ~4 MiB lower but changes V8's code-generation flags, so Node's built-in code cache no longer
 * matches and every start compiles Node's own modules: +20 ms for `status`, +15 % for a resume
 * after a crash (docs/benchmarks.md).
 */
export const PACKAGE_NODE_FLAGS: readonly string[] = ['--max-semi-space-size=1'];

/**
 * The Node flags to start `home`'s entry with `node`: the install's own runtime gets the
 * launchers' flags (whoever starts it: a launcher, the service manager, a self-update); any other
 * Node (a source checkout's) gets `otherwise`, e.g. this process's tsx loader.
 */
export function nodeFlagsFor(
  home: string,
  node: string,
  otherwise: readonly string[],
  platform: NodeJS.Platform = process.platform,
): string[] {
  const own = ownRuntime(home, platform);
  return node === own && existsSync(own) ? [...PACKAGE_NODE_FLAGS] : [...otherwise];
}

const runtimeFlags = (home: string, node: string) => nodeFlagsFor(home, node, process.execArgv);

/** What self-update does to installs, behind one interface (the service receives it). */
export interface AgentInstalls {
  /** The install this process runs from. */
  current(): AgentInstall;
  /** The package.json of a build, if it is a boxkeeper build. */
  readPackage(dir: string): { name: string; version: string } | undefined;
  /** Runs `boxkeeper --version` of the build at `home` with its own runtime. */
  runVersion(home: string, entry: string): Promise<ExecResult>;
  swap(home: string, build: string): Promise<void>;
  restore(home: string, stamp: string): Promise<string>;
  startAgent(home: string, entry: string, args: string[], logFile: string): number;
}

export function nodeAgentInstalls(
  current: () => AgentInstall,
  processes: Pick<ProcessControl, 'exec'>,
): AgentInstalls {
  return {
    current,
    readPackage: readAgentPackage,
    runVersion: (home, entry) => {
      const node = runtimeOf(home);
      return processes.exec(node, [...runtimeFlags(home, node), join(home, entry), '--version'], {
        timeoutMs: 60_000,
        cwd: home,
      });
    },
    swap: swapAgentInstall,
    restore: restoreAgentInstall,
    startAgent: startAgentProcess,
  };
}
