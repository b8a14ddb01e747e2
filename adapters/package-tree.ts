// File operations on a boxkeeper release package folder (the switch-over installs one): sha256
// of a file, a durable copy of a tree (every file and directory fsynced before it counts), and
// the few renames and removals around it.
import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import {
  chmod,
  copyFile,
  mkdir,
  readdir,
  readFile,
  realpath,
  rename,
  rm,
  stat,
} from 'node:fs/promises';
import { dirname, join, relative, sep } from 'node:path';
import { fsyncDir } from './fs-atomic.ts';
import { fsyncFileAsync } from './tree.ts';

export interface PackageTree {
  exists(path: string): Promise<boolean>;
  readText(path: string): Promise<string>;
  sha256(path: string): Promise<string>;
  size(path: string): Promise<number>;
  /** Files below `dir`, '/'-separated and sorted. */
  listFiles(dir: string): Promise<string[]>;
  /** Copies the tree `src` to `dest` (which must not exist), fsyncing every file and dir. */
  copyTreeDurable(src: string, dest: string): Promise<void>;
  /** Sets the executable bits (zip extractors such as Python's drop them). */
  makeExecutable(path: string): Promise<void>;
  rename(from: string, to: string): Promise<void>;
  remove(path: string): Promise<void>;
  fsyncDir(dir: string): Promise<void>;
  realpath(path: string): Promise<string>;
}

async function walk(dir: string, base: string, out: string[]): Promise<void> {
  for (const e of await readdir(dir, { withFileTypes: true })) {
    const p = join(dir, e.name);
    if (e.isDirectory()) await walk(p, base, out);
    else if (e.isFile()) out.push(relative(base, p).split(sep).join('/'));
  }
}

// Windows needs a writable handle to flush (tree.ts).
const fsyncFile = fsyncFileAsync;

async function copyDurable(src: string, dest: string): Promise<void> {
  await mkdir(dest, { recursive: false });
  for (const e of await readdir(src, { withFileTypes: true })) {
    const from = join(src, e.name);
    const to = join(dest, e.name);
    if (e.isDirectory()) await copyDurable(from, to);
    else if (e.isFile()) {
      await copyFile(from, to);
      await chmod(to, (await stat(from)).mode & 0o777);
      await fsyncFile(to);
    }
    // Links and special files are not part of a package.
  }
  await fsyncDir(dest);
}

export const nodePackageTree: PackageTree = {
  async exists(path) {
    try {
      await stat(path);
      return true;
    } catch {
      return false;
    }
  },
  readText: (path) => readFile(path, 'utf8'),
  async sha256(path) {
    const hash = createHash('sha256');
    for await (const chunk of createReadStream(path)) hash.update(chunk as Buffer);
    return hash.digest('hex');
  },
  async size(path) {
    return (await stat(path)).size;
  },
  async listFiles(dir) {
    const out: string[] = [];
    await walk(dir, dir, out);
    return out.sort();
  },
  async copyTreeDurable(src, dest) {
    await mkdir(dirname(dest), { recursive: true });
    await copyDurable(src, dest);
    await fsyncDir(dirname(dest));
  },
  async makeExecutable(path) {
    if (process.platform === 'win32') return;
    const mode = (await stat(path)).mode & 0o777;
    if ((mode & 0o111) !== 0o111) await chmod(path, mode | 0o755);
  },
  rename: (from, to) => rename(from, to),
  remove: (path) => rm(path, { recursive: true, force: true }),
  fsyncDir,
  realpath: (path) => realpath(path),
};
