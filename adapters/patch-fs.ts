// File operations the update lifecycle needs on the box: idempotent atomic copies, listings of
// an extracted patch, MD5 of a download, and removal of the patch cache.
import { createHash, randomBytes } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { copyFile, mkdir, open, readdir, readFile, rename, rm, stat } from 'node:fs/promises';
import { basename, dirname, join, relative } from 'node:path';
import { pipeline } from 'node:stream/promises';
import { fsyncDir, readFileNamed, writeFileAtomic } from './fs-atomic.ts';

export interface PatchFs {
  readFile(path: string): Promise<Uint8Array>;
  /**
   * `mode`: of the new file on POSIX (0600 for files only the agent may read); `sync`: with
   * blocking calls (a small file written often, adapters/fs-atomic.ts).
   */
  writeAtomic(
    path: string,
    data: string | Uint8Array,
    options?: { mode?: number; sync?: boolean },
  ): Promise<void>;
  exists(path: string): Promise<boolean>;
  isDir(path: string): Promise<boolean>;
  /**
   * Makes `dest` a copy of `src` (temp file beside dest, fsync, rename, fsync dir). Returns
   * false, touching nothing, when dest already has the same bytes.
   */
  copyFileAtomic(src: string, dest: string): Promise<boolean>;
  /** Files below `dir`, as paths relative to it ('/'-separated), sorted. */
  listFiles(dir: string): Promise<string[]>;
  /** Names of the regular files directly in `dir` (not recursive), sorted. */
  topLevelFiles(dir: string): Promise<string[]>;
  md5(path: string): Promise<string>;
  /** The file's sha256 (hex) and size in bytes, from one read. */
  sha256(path: string): Promise<{ sha256: string; size: number }>;
  rename(from: string, to: string): Promise<void>;
  remove(path: string): Promise<void>;
  /** Entries directly in `dir` ([] if it does not exist). */
  entries(dir: string): Promise<string[]>;
  mkdir(dir: string): Promise<void>;
}

async function sameBytes(a: string, b: string): Promise<boolean> {
  const [sa, sb] = await Promise.all([stat(a), stat(b).catch(() => undefined)]);
  if (sb === undefined || !sb.isFile() || sa.size !== sb.size) return false;
  const [ba, bb] = await Promise.all([readFile(a), readFile(b)]);
  return ba.equals(bb);
}

async function walk(dir: string, base: string, out: string[]): Promise<void> {
  for (const e of await readdir(dir, { withFileTypes: true })) {
    const p = join(dir, e.name);
    if (e.isDirectory()) await walk(p, base, out);
    else if (e.isFile()) out.push(relative(base, p).split('\\').join('/'));
  }
}

export const nodePatchFs: PatchFs = {
  readFile: (path) => readFileNamed(path),
  writeAtomic: (path, data, options) => writeFileAtomic(path, data, options),
  exists: (path) =>
    stat(path).then(
      () => true,
      () => false,
    ),
  isDir: (path) =>
    stat(path).then(
      (s) => s.isDirectory(),
      () => false,
    ),
  async copyFileAtomic(src, dest) {
    if (await sameBytes(src, dest)) return false;
    await mkdir(dirname(dest), { recursive: true });
    const tmp = join(
      dirname(dest),
      `.${basename(dest)}.bk-tmp-${process.pid}-${randomBytes(4).toString('hex')}`,
    );
    try {
      await copyFile(src, tmp);
      const fh = await open(tmp, 'r+');
      try {
        await fh.sync();
      } finally {
        await fh.close();
      }
      await rename(tmp, dest);
    } catch (err) {
      await rm(tmp, { force: true });
      throw err;
    }
    await fsyncDir(dirname(dest));
    return true;
  },
  async listFiles(dir) {
    const out: string[] = [];
    await walk(dir, dir, out);
    return out.sort();
  },
  async topLevelFiles(dir) {
    const entries = await readdir(dir, { withFileTypes: true }).catch(() => []);
    return entries
      .filter((e) => e.isFile())
      .map((e) => e.name)
      .sort();
  },
  async md5(path) {
    const hash = createHash('md5');
    await pipeline(createReadStream(path), hash);
    return hash.digest('hex');
  },
  async sha256(path) {
    const hash = createHash('sha256');
    let size = 0;
    for await (const chunk of createReadStream(path)) {
      size += (chunk as Buffer).length;
      hash.update(chunk as Buffer);
    }
    return { sha256: hash.digest('hex'), size };
  },
  async rename(from, to) {
    await rename(from, to);
    await fsyncDir(dirname(to));
  },
  remove: (path) => rm(path, { recursive: true, force: true }),
  entries: (dir) => readdir(dir).catch(() => []),
  mkdir: async (dir) => {
    await mkdir(dir, { recursive: true });
  },
};
