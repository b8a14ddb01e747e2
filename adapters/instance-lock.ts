// One agent per box: a lock file holding the owner's pid. A lock whose owner is dead (or is
// no longer a boxkeeper, after pid reuse) is stale and taken over.
import { open, readFile, rename, rm } from 'node:fs/promises';
import { mkdir } from 'node:fs/promises';
import { dirname } from 'node:path';
import { LockedError, isErrnoCode, withPath } from './errors.ts';
import { tempPathFor } from './fs-atomic.ts';
import type { ProcessControl } from './processes.ts';

export interface LockOwner {
  pid: number;
  startedAt: string;
  command: string;
}

export interface InstanceLock {
  path: string;
  release(): Promise<void>;
}

export async function readLockOwner(path: string): Promise<LockOwner | undefined> {
  try {
    return JSON.parse(await readFile(path, 'utf8')) as LockOwner;
  } catch {
    return undefined;
  }
}

/** Whether the lock's owner still runs as a boxkeeper (where the OS shows command lines). */
export async function ownerAlive(
  owner: LockOwner | undefined,
  processes: ProcessControl,
): Promise<boolean> {
  if (owner === undefined || !Number.isInteger(owner.pid) || !processes.isAlive(owner.pid))
    return false;
  if (owner.pid === process.pid) return true;
  const proc = (await processes.list()).find((p) => p.pid === owner.pid);
  if (proc === undefined) return false;
  // The owner started before it wrote the lock; a process started later reuses the pid.
  const lockedAt = Date.parse(owner.startedAt);
  if (proc.startedAt !== undefined && Number.isFinite(lockedAt) && proc.startedAt > lockedAt + 1500)
    return false;
  return proc.cmd === '' || /boxkeeper|cli[\\/]main\.[jt]s/i.test(proc.cmd);
}

export async function acquireInstanceLock(
  path: string,
  command: string,
  processes: ProcessControl,
): Promise<InstanceLock> {
  await mkdir(dirname(path), { recursive: true });
  const me: LockOwner = { pid: process.pid, startedAt: new Date().toISOString(), command };
  for (let attempt = 0; attempt < 5; attempt++) {
    try {
      const handle = await open(path, 'wx');
      try {
        try {
          await handle.writeFile(JSON.stringify(me));
          await handle.sync();
        } finally {
          await handle.close();
        }
      } catch (err) {
        // A full disk creates the file but not its contents: leave no empty lock behind.
        await rm(path, { force: true }).catch(() => undefined);
        throw withPath(err, path);
      }
      return {
        path,
        async release() {
          const owner = await readLockOwner(path);
          if (owner?.pid === process.pid) await rm(path, { force: true });
        },
      };
    } catch (err) {
      if (!isErrnoCode(err, 'EEXIST')) throw err;
    }
    const owner = await readLockOwner(path);
    if (await ownerAlive(owner, processes)) throw new LockedError(path, owner?.pid ?? -1);
    // Stale: move it aside under a unique name (only one contender's rename can win for this
    // file), then retry the exclusive create.
    const aside = tempPathFor(path);
    try {
      await rename(path, aside);
      await rm(aside, { force: true });
    } catch (err) {
      if (!isErrnoCode(err, 'ENOENT')) throw err;
    }
  }
  throw new LockedError(path, (await readLockOwner(path))?.pid ?? -1);
}
