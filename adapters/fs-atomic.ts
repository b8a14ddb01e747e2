// Durable file replacement: temp file in the same directory, fsync, rename, fsync the directory.
// A reader therefore sees either the old or the new contents, never a torn file, and after the
// call returns the new contents survive a power cut.
import { randomBytes } from 'node:crypto';
import { mkdir, open, readdir, readFile, rename, rm } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import { isErrnoCode, withPath } from './errors.ts';

const TEMP_MARK = '.bk-tmp-';

export function tempPathFor(path: string): string {
  return join(
    dirname(path),
    `.${basename(path)}${TEMP_MARK}${process.pid}-${randomBytes(4).toString('hex')}`,
  );
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
async function renameWithRetry(from: string, to: string): Promise<void> {
  for (let attempt = 0; ; attempt++) {
    try {
      await rename(from, to);
      return;
    } catch (err) {
      const transient = ['EPERM', 'EBUSY', 'EACCES'].some((c) => isErrnoCode(err, c));
      if (!transient || process.platform !== 'win32' || attempt >= 10) throw err;
      await new Promise((r) => setTimeout(r, 50 * (attempt + 1)));
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
  /** Called after the temp file is fsynced and before the rename (crash tests use it). */
  beforeRename?: (tempPath: string) => void | Promise<void>;
}

export async function writeFileAtomic(
  path: string,
  data: string | Uint8Array,
  options: AtomicWriteOptions = {},
): Promise<void> {
  try {
    await writeThroughTemp(path, data, options);
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

async function writeThroughTemp(
  path: string,
  data: string | Uint8Array,
  options: AtomicWriteOptions,
): Promise<void> {
  const dir = dirname(path);
  await mkdir(dir, { recursive: true });
  const temp = tempPathFor(path);
  const handle = await open(temp, 'wx', options.mode ?? 0o644);
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
