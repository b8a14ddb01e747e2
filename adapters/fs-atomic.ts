// Durable file replacement: temp file in the same directory, fsync, rename, fsync the directory.
// A reader therefore sees either the old or the new contents, never a torn file, and after the
// call returns the new contents survive a power cut.
import { closeSync, fsyncSync, mkdirSync, openSync, renameSync, rmSync, writeSync } from 'node:fs';
import { mkdir, open, readdir, readFile, rename, rm } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import { isErrnoCode, withPath } from './errors.ts';

const TEMP_MARK = '.bk-tmp-';

// crypto loads at the first write, not with this module: `status` and `health` only read, and
// crypto is ~30 ms of a start (docs/benchmarks.md).
const randomHex = () => process.getBuiltinModule('node:crypto').randomBytes(4).toString('hex');

export function tempPathFor(path: string): string {
  return join(dirname(path), `.${basename(path)}${TEMP_MARK}${process.pid}-${randomHex()}`);
}

/**
 * Removes the temp files that writers killed between write and rename left in `dir` (those of
 * live processes are another writer's work in progress and stay). Returns what was removed.
 */
export async function removeStaleTemps(
  dir: string,
  isAlive: (pid: number) => boolean,
): Promise<string[]> {
  const removed: string[] = [];
  for (const name of await readdir(dir).catch(() => [])) {
    const m = /^\..+\.bk-tmp-(\d+)-[0-9a-f]+$/.exec(name);
    if (m === null) continue;
    const pid = Number(m[1]);
    if (pid === process.pid || isAlive(pid)) continue;
    await rm(join(dir, name), { force: true, recursive: true });
    removed.push(join(dir, name));
  }
  return removed;
}

/** fsync a directory so a rename inside it is durable. Windows cannot open directories. */
export async function fsyncDir(dir: string): Promise<void> {
  if (process.platform === 'win32') return;
  const handle = await open(dir, 'r');
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
}

// Windows reports EPERM/EBUSY/EACCES while a virus scanner or indexer holds the file briefly.
function renameMayRetry(err: unknown, attempt: number): boolean {
  const transient = ['EPERM', 'EBUSY', 'EACCES'].some((c) => isErrnoCode(err, c));
  return transient && process.platform === 'win32' && attempt < 10;
}

const renameBackoff = (attempt: number) => new Promise((r) => setTimeout(r, 50 * (attempt + 1)));

async function renameWithRetry(from: string, to: string, firstAttempt = 0): Promise<void> {
  for (let attempt = firstAttempt; ; attempt++) {
    try {
      await rename(from, to);
      return;
    } catch (err) {
      if (!renameMayRetry(err, attempt)) throw err;
      await renameBackoff(attempt);
    }
  }
}

/**
 * readFile whose error names the file: Node's own does not when the read itself fails (a
 * directory where the file belongs gives a bare "EISDIR: illegal operation on a directory, read").
 */
export async function readFileNamed(path: string): Promise<Buffer> {
  try {
    return await readFile(path);
  } catch (err) {
    throw withPath(err, path);
  }
}

export interface AtomicWriteOptions {
  mode?: number;
  /**
   * Do every step with the synchronous fs calls, blocking the event loop for the write: cheaper
   * than six thread-pool round trips for a small file written often (patch.meta). Only a
   * rename a Windows scanner holds up is waited out without blocking.
   */
  sync?: boolean;
  /**
   * Called after the temp file is fsynced and before the rename (crash tests use it). With
   * `sync` it must not return a promise: nothing would wait for it.
   */
  beforeRename?: (tempPath: string) => void | Promise<void>;
}

export async function writeFileAtomic(
  path: string,
  data: string | Uint8Array,
  options: AtomicWriteOptions = {},
): Promise<void> {
  try {
    if (options.sync === true) {
      const retried = writeThroughTempSync(path, data, options);
      if (retried !== undefined) await retried;
    } else await writeThroughTemp(path, data, options);
  } catch (err) {
    throw namingTarget(err, path);
  }
}

/** An error of the temp file or of a write through its handle names the file being replaced. */
function namingTarget(err: unknown, path: string): unknown {
  const e = err as { code?: unknown; path?: unknown; dest?: unknown };
  if (typeof e.code === 'string' && (typeof e.path !== 'string' || e.path.includes(TEMP_MARK))) {
    Object.assign(err as object, { path });
    // The rename of the temp onto the file is this one write, not a move to report.
    delete e.dest;
  }
  return err;
}

// The directory is there on all but the first write: make it only when the open says it is not.
async function openTemp(dir: string, temp: string, mode: number) {
  try {
    return await open(temp, 'wx', mode);
  } catch (err) {
    if (!isErrnoCode(err, 'ENOENT')) throw err;
    await mkdir(dir, { recursive: true });
    return await open(temp, 'wx', mode);
  }
}

async function writeThroughTemp(
  path: string,
  data: string | Uint8Array,
  options: AtomicWriteOptions,
): Promise<void> {
  const dir = dirname(path);
  const temp = tempPathFor(path);
  const handle = await openTemp(dir, temp, options.mode ?? 0o644);
  try {
    try {
      await handle.writeFile(data);
      await handle.sync();
    } finally {
      await handle.close();
    }
    await options.beforeRename?.(temp);
    await renameWithRetry(temp, path);
  } catch (err) {
    // The old file stays as it was; the half-written temp goes (best effort on a failing disk).
    await rm(temp, { force: true }).catch(() => undefined);
    throw err;
  }
  await fsyncDir(dir);
}

/** fsyncDir with the synchronous calls (the same Windows rule). */
function fsyncDirSync(dir: string): void {
  if (process.platform === 'win32') return;
  const fd = openSync(dir, 'r');
  try {
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
}

function openTempSync(dir: string, temp: string, mode: number): number {
  try {
    return openSync(temp, 'wx', mode);
  } catch (err) {
    if (!isErrnoCode(err, 'ENOENT')) throw err;
    mkdirSync(dir, { recursive: true });
    return openSync(temp, 'wx', mode);
  }
}

function removeTempSync(temp: string): void {
  try {
    rmSync(temp, { force: true });
  } catch {
    // Best effort on a failing disk, as in the async path.
  }
}

/**
 * The steps of writeThroughTemp with synchronous calls. Returns undefined when the file is in
 * place; a promise only when a Windows rename is held up and is retried with the async backoff.
 */
function writeThroughTempSync(
  path: string,
  data: string | Uint8Array,
  options: AtomicWriteOptions,
): Promise<void> | undefined {
  const dir = dirname(path);
  const temp = tempPathFor(path);
  const bytes = typeof data === 'string' ? Buffer.from(data, 'utf8') : data;
  // Opened for writing, so fsync works on Windows too (it needs a writable handle).
  const fd = openTempSync(dir, temp, options.mode ?? 0o644);
  try {
    try {
      for (let done = 0; done < bytes.byteLength;)
        done += writeSync(fd, bytes, done, bytes.byteLength - done);
      fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
    const hook = options.beforeRename?.(temp);
    if (hook instanceof Promise) {
      void hook.catch(() => undefined);
      throw new TypeError('writeFileAtomic with sync: beforeRename must not return a promise');
    }
  } catch (err) {
    removeTempSync(temp);
    throw err;
  }
  try {
    renameSync(temp, path);
  } catch (err) {
    if (!renameMayRetry(err, 0)) {
      removeTempSync(temp);
      throw err;
    }
    return renameBackoff(0).then(async () => {
      try {
        await renameWithRetry(temp, path, 1);
      } catch (retryErr) {
        removeTempSync(temp);
        throw retryErr;
      }
      fsyncDirSync(dir);
    });
  }
  fsyncDirSync(dir);
  return undefined;
}
