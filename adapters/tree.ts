// The live file tree as the snapshot store sees it: a fast synchronous stat walk, content
// hashing, and file placement by temp file + rename. Synchronous stat calls are several times
// faster than promise-based ones for tens of thousands of small files (measured in
// docs/benchmarks.md), and a walk is short.
import { createHash } from 'node:crypto';
import {
  chmodSync,
  closeSync,
  constants,
  copyFileSync,
  fsyncSync,
  lstatSync,
  statSync,
  mkdirSync,
  openSync,
  readdirSync,
  readlinkSync,
  renameSync,
  rmSync,
  symlinkSync,
  type Stats,
} from 'node:fs';
import { chmod, open, stat } from 'node:fs/promises';
import { dirname, join, sep } from 'node:path';
import { isErrnoCode } from './errors.ts';
import { tempPathFor } from './fs-atomic.ts';

export type EntryType = 'file' | 'dir' | 'symlink';

export interface StatInfo {
  type: EntryType | 'other';
  /** Permission bits (0o7777). */
  mode: number;
  size: number;
  // Identity and change stamps: a file whose dev, ino, size, mtime and ctime are unchanged has
  // unchanged content (ctime changes on any write and user space cannot set it back). Plain
  // numbers (times in ms with sub-microsecond fractions): a walk compares them without
  // building a string per file.
  dev: number;
  ino: number;
  mtimeMs: number;
  /** Last status change (epoch ms); also spots changes in the same clock tick as a cache write. */
  ctimeMs: number;
}

/**
 * A walk, as columns: a few flat arrays rather than objects per entry, so that walking tens of
 * thousands of entries allocates (and collects) little. Entry k is paths[k], types[k],
 * modes[k] and stamps[k * STAMP_FIELDS ...]; the order is depth first with the names of each
 * directory sorted, so the same tree gives the same order.
 */
export interface WalkResult {
  paths: string[];
  types: EntryType[];
  /** Permission bits (0o7777). */
  modes: number[];
  /** STAMP_FIELDS numbers per entry (see StatInfo); the size is stamps[k * STAMP_FIELDS + 2]. */
  stamps: number[];
  /** Subscribed paths that do not exist. */
  missingRoots: string[];
  /** Sockets, FIFOs, devices: listed, never silently dropped. */
  skipped: Array<{ path: string; reason: string }>;
  /** Temp files a crashed writer left (removed by the caller that owns them). */
  debris: string[];
}

const TEMP_MARK = '.bk-tmp-';

export function statInfo(st: Stats): StatInfo {
  return {
    type: st.isFile()
      ? 'file'
      : st.isDirectory()
        ? 'dir'
        : st.isSymbolicLink()
          ? 'symlink'
          : 'other',
    mode: st.mode & 0o7777,
    size: st.size,
    dev: st.dev,
    ino: st.ino,
    mtimeMs: st.mtimeMs,
    ctimeMs: st.ctimeMs,
  };
}

function lstatOrUndefined(path: string): Stats | undefined {
  try {
    return lstatSync(path, { throwIfNoEntry: false });
  } catch (err) {
    if (isErrnoCode(err, 'ENOTDIR')) return undefined;
    throw err;
  }
}

export function lstatInfo(path: string): StatInfo | undefined {
  const st = lstatOrUndefined(path);
  return st === undefined ? undefined : statInfo(st);
}

/** What a child's path starts with: join(dir, name) without join's cost per entry. */
function childPrefix(dir: string): string {
  return join(dir, 'x').slice(0, -1);
}

const NOT_MANAGED = 'not a regular file, directory or symlink';

/**
 * Walks subscribed roots (files or directories). `excluded` holds exact paths: a walk that
 * starts at the roots reaches anything under an excluded directory only through it, so an
 * exact match per child is enough (and costs one hash lookup).
 */
export function walkTree(roots: readonly string[], excluded: ReadonlySet<string>): WalkResult {
  const result: WalkResult = {
    paths: [],
    types: [],
    modes: [],
    stamps: [],
    missingRoots: [],
    skipped: [],
    debris: [],
  };
  const { paths, types, modes, stamps, skipped, debris } = result;
  const add = (path: string, type: EntryType, st: Stats) => {
    paths.push(path);
    types.push(type);
    modes.push(st.mode & 0o7777);
    stamps.push(st.dev, st.ino, st.size, st.mtimeMs, st.ctimeMs);
  };
  const visitDir = (dir: string, prefix: string) => {
    // Sorted, so that the order (and with it a manifest's text) depends on the tree only.
    const names = readdirSync(dir).sort();
    for (const name of names) {
      const child = prefix + name;
      if (name.includes(TEMP_MARK)) {
        debris.push(child);
        continue;
      }
      if (excluded.has(child)) continue;
      const st = lstatOrUndefined(child);
      if (st === undefined) continue;
      if (st.isFile()) add(child, 'file', st);
      else if (st.isDirectory()) {
        add(child, 'dir', st);
        visitDir(child, child + sep);
      } else if (st.isSymbolicLink()) add(child, 'symlink', st);
      else skipped.push({ path: child, reason: NOT_MANAGED });
    }
  };
  for (const root of roots) {
    if (excluded.has(root)) continue;
    const st = lstatOrUndefined(root);
    if (st === undefined) result.missingRoots.push(root);
    else if (st.isFile()) add(root, 'file', st);
    else if (st.isDirectory()) {
      add(root, 'dir', st);
      visitDir(root, childPrefix(root));
    } else if (st.isSymbolicLink()) add(root, 'symlink', st);
    else skipped.push({ path: root, reason: NOT_MANAGED });
  }
  return result;
}

export async function hashFile(path: string): Promise<string> {
  const hash = createHash('sha256');
  const handle = await open(path, 'r');
  try {
    const buf = Buffer.allocUnsafe(1 << 20);
    for (;;) {
      const { bytesRead } = await handle.read(buf, 0, buf.length, null);
      if (bytesRead === 0) break;
      hash.update(buf.subarray(0, bytesRead));
    }
  } finally {
    await handle.close();
  }
  return hash.digest('hex');
}

export function hashText(text: string): string {
  return createHash('sha256').update(text).digest('hex');
}

/** Copies a file, as a copy-on-write clone where the file system can (btrfs, XFS, ReFS). */
export function cloneFile(src: string, dest: string): void {
  copyFileSync(src, dest, constants.COPYFILE_FICLONE);
}

/**
 * Opens a file for fsync. Windows: FlushFileBuffers needs a handle with write access (a
 * read-only one fails with EPERM), so 'r+'; a read-only file (mode 0o444, the read-only
 * attribute) is made writable for the open and read-only again at once (the handle keeps its
 * access).
 */
function openForSync(path: string): number {
  if (process.platform !== 'win32') return openSync(path, 'r');
  try {
    return openSync(path, 'r+');
  } catch (err) {
    if (!isErrnoCode(err, 'EPERM') && !isErrnoCode(err, 'EACCES')) throw err;
    const mode = statSync(path).mode & 0o777;
    chmodSync(path, mode | 0o200);
    try {
      return openSync(path, 'r+');
    } finally {
      chmodSync(path, mode);
    }
  }
}

export function fsyncFile(path: string): void {
  const fd = openForSync(path);
  try {
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
}

/** fsyncFile on the thread pool. */
export async function fsyncFileAsync(path: string): Promise<void> {
  let handle;
  if (process.platform !== 'win32') handle = await open(path, 'r');
  else
    try {
      handle = await open(path, 'r+');
    } catch (err) {
      if (!isErrnoCode(err, 'EPERM') && !isErrnoCode(err, 'EACCES')) throw err;
      const mode = (await stat(path)).mode & 0o777;
      await chmod(path, mode | 0o200);
      try {
        handle = await open(path, 'r+');
      } finally {
        await chmod(path, mode);
      }
    }
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
}

export function fsyncDirSync(dir: string): void {
  if (process.platform === 'win32') return;
  const fd = openSync(dir, 'r');
  try {
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
}

/**
 * Puts `source`'s bytes at `dest` with `mode`: clone to a temp file beside `dest`, chmod,
 * fsync, rename over. A reader sees the old or the new file, never a mix.
 */
export function placeFile(source: string, dest: string, mode: number): void {
  mkdirSync(dirname(dest), { recursive: true });
  const temp = tempPathFor(dest);
  try {
    cloneFile(source, temp);
    chmodSync(temp, mode);
    fsyncFile(temp);
    replace(temp, dest);
  } catch (err) {
    rmSync(temp, { force: true });
    throw err;
  }
}

export function placeSymlink(target: string, dest: string): void {
  mkdirSync(dirname(dest), { recursive: true });
  const temp = tempPathFor(dest);
  symlinkSync(target, temp);
  replace(temp, dest);
}

/** rename over `dest`; a directory in the way (type change) is removed first. */
function replace(temp: string, dest: string): void {
  const existing = lstatInfo(dest);
  if (existing?.type === 'dir') rmSync(dest, { recursive: true, force: true });
  renameSync(temp, dest);
}

export function readLink(path: string): string {
  return readlinkSync(path);
}

export function removePath(path: string): void {
  rmSync(path, { recursive: true, force: true });
}

export function ensureDir(path: string, mode: number): void {
  const existing = lstatInfo(path);
  if (existing !== undefined && existing.type !== 'dir') rmSync(path, { force: true });
  mkdirSync(path, { recursive: true, mode });
  chmodSync(path, mode);
}

export function chmodPath(path: string, mode: number): void {
  chmodSync(path, mode);
}

/** The tree operations the snapshot service uses, as one injectable object. */
export interface TreeOps {
  walk: typeof walkTree;
  lstat: typeof lstatInfo;
  hashFile: typeof hashFile;
  placeFile: typeof placeFile;
  placeSymlink: typeof placeSymlink;
  readLink: typeof readLink;
  removePath: typeof removePath;
  ensureDir: typeof ensureDir;
  chmod: typeof chmodPath;
}

export const nodeTree: TreeOps = {
  walk: walkTree,
  lstat: lstatInfo,
  hashFile,
  placeFile,
  placeSymlink,
  readLink,
  removePath,
  ensureDir,
  chmod: chmodPath,
};
