// Files only the agent's user may read: patch.meta (it holds the cloud's config map with its
// passwords), traces, status.json, the control token. POSIX: mode 0600 (directories 0700).
// Windows ignores modes, so there an ACL does it: inheritance removed, full control for this
// user, SYSTEM and Administrators only (icacls); on a directory the grants are inherited by
// every file created in it later, so atomic writes (temp file + rename) are born private.
import { execFile } from 'node:child_process';
import type { Stats } from 'node:fs';
import { chmod, readdir, stat } from 'node:fs/promises';
import { userInfo } from 'node:os';
import { join, win32 } from 'node:path';
import { isErrnoCode } from './errors.ts';

export interface FileAccess {
  /**
   * Makes `path` readable and writable only by the agent's user (and, on Windows, SYSTEM and
   * Administrators). A missing path is skipped. `recursive`: also what is inside a directory.
   */
  makePrivate(path: string, options?: { recursive?: boolean }): Promise<void>;
}

/** Well-known SIDs, so the command works on every Windows language. */
const SYSTEM_SID = '*S-1-5-18';
const ADMINISTRATORS_SID = '*S-1-5-32-544';

/** The icacls arguments that make `path` private to `user` (DOMAIN\name). */
export function icaclsArgs(
  path: string,
  user: string,
  kind: 'file' | 'dir',
  recursive = false,
): string[] {
  // (OI)(CI): files and subdirectories created later inherit the grant.
  const perm = kind === 'dir' ? '(OI)(CI)F' : 'F';
  return [
    path,
    '/inheritance:r',
    '/grant:r',
    `${user}:${perm}`,
    `${SYSTEM_SID}:${perm}`,
    `${ADMINISTRATORS_SID}:${perm}`,
    ...(recursive ? ['/T'] : []),
    '/C',
    '/Q',
  ];
}

/** This process's account as icacls names it. */
export function windowsUser(env: NodeJS.ProcessEnv = process.env): string {
  const name = env.USERNAME ?? userInfo().username;
  const domain = env.USERDOMAIN;
  return domain === undefined || domain === '' ? name : `${domain}\\${name}`;
}

async function statOrNone(path: string): Promise<Stats | undefined> {
  try {
    return await stat(path);
  } catch (err) {
    if (isErrnoCode(err, 'ENOENT')) return undefined;
    throw err;
  }
}

export const posixFileAccess: FileAccess = {
  async makePrivate(path, options = {}) {
    const s = await statOrNone(path);
    if (s === undefined) return;
    const wanted = s.isDirectory() ? 0o700 : 0o600;
    if ((s.mode & 0o777) !== wanted) await chmod(path, wanted);
    if (options.recursive === true && s.isDirectory()) {
      for (const name of await readdir(path))
        await posixFileAccess.makePrivate(join(path, name), options);
    }
  },
};

export type RunCommand = (
  file: string,
  args: string[],
) => Promise<{ code: number; stdout: string; stderr: string }>;

const runCommand: RunCommand = (file, args) =>
  new Promise((resolve) => {
    execFile(file, args, { windowsHide: true, timeout: 60_000 }, (err, stdout, stderr) => {
      const code = err === null ? 0 : typeof err.code === 'number' ? err.code : 1;
      resolve({ code, stdout, stderr: stderr || (err?.message ?? '') });
    });
  });

// A service's PATH may be bare: System32's own copy, by its full path.
function icaclsExe(env: NodeJS.ProcessEnv = process.env): string {
  const root = env.SystemRoot ?? env.SYSTEMROOT;
  return root === undefined ? 'icacls' : win32.join(root, 'System32', 'icacls.exe');
}

export function windowsFileAccess(run: RunCommand = runCommand, user = windowsUser()): FileAccess {
  return {
    async makePrivate(path, options = {}) {
      const s = await statOrNone(path);
      if (s === undefined) return;
      const kind = s.isDirectory() ? 'dir' : 'file';
      const args = icaclsArgs(path, user, kind, options.recursive === true && kind === 'dir');
      const r = await run(icaclsExe(), args);
      if (r.code !== 0)
        throw new Error(
          `icacls ${args.join(' ')} exited ${r.code}: ${(r.stderr || r.stdout).trim()}`,
        );
    },
  };
}

export function fileAccessFor(platform: NodeJS.Platform): FileAccess {
  return platform === 'win32' ? windowsFileAccess() : posixFileAccess;
}
