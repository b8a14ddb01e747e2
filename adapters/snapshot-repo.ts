// The on-disk snapshot repository: content-addressed objects, commit manifests, refs per
// version, HEAD (the commit the live tree is at), a stat cache and journals. Every metadata
// file is replaced atomically; objects are staged, fsynced and renamed in, so a commit is
// visible only once its ref is written (see docs/snapshots.md for the layout).
import { chmodSync, existsSync, mkdirSync, readdirSync, renameSync, rmSync } from 'node:fs';
import { spawnSync } from 'node:child_process';
import { mkdir, readFile, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { isErrnoCode } from './errors.ts';
import { writeFileAtomic } from './fs-atomic.ts';
import { cloneFile, fsyncDirSync, fsyncFile, hashText, type EntryType } from './tree.ts';

export interface ManifestEntry {
  path: string;
  type: EntryType;
  mode: number;
  size?: number;
  /** SHA-256 of the content (files). */
  hash?: string;
  /** Link target (symlinks). */
  target?: string;
}

export interface Manifest {
  format: 1;
  version: string;
  parent: string | null;
  time: string;
  subject: string;
  /** The subscribed paths this commit covers (files or directories). */
  roots: string[];
  /** Sorted by path. */
  entries: ManifestEntry[];
}

export interface StatCache {
  commit: string;
  /** When the cache was written: files modified in the same clock tick are re-hashed. */
  writtenAtMs: number;
  entries: Map<string, { stamp: string; hash: string }>;
}

// The stat cache is read and written on every commit and rollback: a flat NUL-separated
// text (paths cannot contain NUL) parses several times faster than JSON keyed by path.
const CACHE_MAGIC = 'boxkeeper-statcache-1';

function encodeStatCache(c: StatCache): string {
  const parts: string[] = [CACHE_MAGIC, c.commit, String(c.writtenAtMs)];
  for (const [path, e] of c.entries) parts.push(path, e.stamp, e.hash);
  return parts.join('\0');
}

function decodeStatCache(text: string): StatCache | undefined {
  const parts = text.split('\0');
  if (parts[0] !== CACHE_MAGIC || parts.length < 3 || (parts.length - 3) % 3 !== 0)
    return undefined;
  const entries = new Map<string, { stamp: string; hash: string }>();
  for (let i = 3; i < parts.length; i += 3) {
    entries.set(parts[i] as string, {
      stamp: parts[i + 1] as string,
      hash: parts[i + 2] as string,
    });
  }
  return { commit: parts[1] as string, writtenAtMs: Number(parts[2]), entries };
}

/** What a ref records besides its commit, so listing needs no manifest. */
export interface RefInfo {
  version: string;
  commit: string;
  time: string;
  subject: string;
  files: number;
  bytes: number;
}

function refInfoOf(m: Manifest, commit: string): RefInfo {
  return {
    version: m.version,
    commit,
    time: m.time,
    subject: m.subject,
    files: m.entries.filter((e) => e.type === 'file').length,
    bytes: m.entries.reduce((n, e) => n + (e.size ?? 0), 0),
  };
}

export interface RollbackJournal {
  target: string;
  version: string;
  startedAt: string;
}

const VERSION = /^[A-Za-z0-9][A-Za-z0-9._-]{0,100}$/;

export function validVersionName(name: string): boolean {
  return VERSION.test(name);
}

/** Objects are keyed by content and mode, as ostree's are: the same bytes under two modes are
 * two objects, which gives repair a second copy to fall back on. */
export function objectKey(hash: string, mode: number): string {
  return `${hash}-${mode.toString(8)}`;
}

async function readJson<T>(path: string): Promise<T | undefined> {
  try {
    return JSON.parse(await readFile(path, 'utf8')) as T;
  } catch (err) {
    if (isErrnoCode(err, 'ENOENT')) return undefined;
    throw err;
  }
}

export class SnapshotRepo {
  readonly dir: string;

  private constructor(dir: string) {
    this.dir = dir;
  }

  static async init(dir: string): Promise<SnapshotRepo> {
    for (const sub of ['objects', 'commits', 'refs', 'staging'])
      await mkdir(join(dir, sub), { recursive: true });
    if (!existsSync(join(dir, 'repo.json'))) {
      await writeFileAtomic(
        join(dir, 'repo.json'),
        JSON.stringify({ format: 1, created: new Date().toISOString() }),
      );
    }
    return new SnapshotRepo(dir);
  }

  static exists(dir: string): boolean {
    return existsSync(join(dir, 'repo.json'));
  }

  static open(dir: string): SnapshotRepo {
    return new SnapshotRepo(dir);
  }

  /** Version names become file names under refs/: letters, digits, ".", "_", "-". */
  validVersionName(name: string): boolean {
    return validVersionName(name);
  }

  // ---- objects ---------------------------------------------------------------------------

  objectPath(hash: string, mode: number): string {
    return join(this.dir, 'objects', hash.slice(0, 2), objectKey(hash, mode));
  }

  hasObject(hash: string, mode: number): boolean {
    return existsSync(this.objectPath(hash, mode));
  }

  get objectsDir(): string {
    return join(this.dir, 'objects');
  }

  get stagingDir(): string {
    return join(this.dir, 'staging');
  }

  /**
   * Makes every staged object durable, renames it into objects/ and makes the renames durable.
   * Like ostree, all objects are written first and flushed together: on Linux one syncfs of the
   * repository's file system (`sync -f`), elsewhere an fsync per file.
   */
  publishStaged(): number {
    const staging = this.stagingDir;
    const names = readdirSync(staging);
    if (names.length === 0) return 0;
    // A few files: fsync each; many: one syncfs is far cheaper.
    const bulk = names.length > 32 && this.syncFileSystem();
    if (!bulk) for (const name of names) fsyncFile(join(staging, name));
    const dirs = new Set<string>();
    for (const name of names) {
      const dir = join(this.dir, 'objects', name.slice(0, 2));
      if (!dirs.has(dir)) {
        mkdirSync(dir, { recursive: true });
        dirs.add(dir);
      }
      renameSync(join(staging, name), join(dir, name));
    }
    if (!(bulk && this.syncFileSystem())) {
      for (const dir of dirs) fsyncDirSync(dir);
      fsyncDirSync(this.objectsDir);
    }
    return names.length;
  }

  /** syncfs(2) of the repository's file system through coreutils; false where unavailable. */
  private syncFileSystem(): boolean {
    if (process.platform !== 'linux') return false;
    return spawnSync('sync', ['-f', this.dir], { stdio: 'ignore' }).status === 0;
  }

  /** Removes temp files of interrupted metadata writes (HEAD, refs, commits, caches). */
  async cleanTemps(): Promise<number> {
    let removed = 0;
    for (const dir of [this.dir, join(this.dir, 'refs'), join(this.dir, 'commits')]) {
      for (const name of existsSync(dir) ? readdirSync(dir) : []) {
        if (!name.includes('.bk-tmp-')) continue;
        await rm(join(dir, name), { force: true });
        removed++;
      }
    }
    return removed;
  }

  /** Removes what an interrupted commit left in staging. */
  async cleanStaging(): Promise<number> {
    const staging = join(this.dir, 'staging');
    if (!existsSync(staging)) {
      await mkdir(staging, { recursive: true });
      return 0;
    }
    const names = readdirSync(staging);
    for (const name of names) await rm(join(staging, name), { recursive: true, force: true });
    return names.length;
  }

  /** Every stored object as (hash, mode, path). */
  *objects(): Generator<{ hash: string; mode: number; path: string; key: string }> {
    const root = join(this.dir, 'objects');
    for (const sub of readdirSync(root).sort()) {
      for (const name of readdirSync(join(root, sub)).sort()) {
        const m = /^([0-9a-f]{64})-([0-7]+)$/.exec(name);
        if (m === null) continue;
        yield {
          hash: m[1] as string,
          mode: parseInt(m[2] as string, 8),
          path: join(root, sub, name),
          key: name,
        };
      }
    }
  }

  removeObject(path: string): void {
    rmSync(path, { force: true });
  }

  /** Replaces a (damaged) object's bytes with a good copy, atomically. */
  restoreObject(hash: string, mode: number, goodCopy: string): void {
    const dest = this.objectPath(hash, mode);
    const temp = join(this.dir, 'staging', `repair-${objectKey(hash, mode)}`);
    cloneFile(goodCopy, temp);
    chmodSync(temp, 0o444);
    fsyncFile(temp);
    rmSync(dest, { force: true });
    renameSync(temp, dest);
    fsyncDirSync(join(this.dir, 'objects', hash.slice(0, 2)));
  }

  // ---- commits ---------------------------------------------------------------------------

  async writeCommit(manifest: Manifest): Promise<string> {
    const text = JSON.stringify(manifest);
    const id = hashText(text);
    await writeFileAtomic(join(this.dir, 'commits', `${id}.json`), text);
    return id;
  }

  async readCommit(id: string): Promise<Manifest> {
    const m = await readJson<Manifest>(join(this.dir, 'commits', `${id}.json`));
    if (m === undefined) throw new Error(`commit ${id} is missing from ${this.dir}`);
    return m;
  }

  commitIds(): string[] {
    return readdirSync(join(this.dir, 'commits'))
      .filter((n) => /^[0-9a-f]{64}\.json$/.test(n))
      .map((n) => n.slice(0, 64));
  }

  async deleteCommit(id: string): Promise<void> {
    await rm(join(this.dir, 'commits', `${id}.json`), { force: true });
  }

  // ---- refs, HEAD, markers ---------------------------------------------------------------

  private async readRefInfo(version: string): Promise<RefInfo | undefined> {
    let text: string;
    try {
      text = (await readFile(join(this.dir, 'refs', version), 'utf8')).trim();
    } catch (err) {
      if (isErrnoCode(err, 'ENOENT')) return undefined;
      throw err;
    }
    if (/^[0-9a-f]{64}$/.test(text)) {
      // A bare commit id: fill the listing fields from the manifest.
      return refInfoOf(await this.readCommit(text), text);
    }
    return { ...(JSON.parse(text) as Omit<RefInfo, 'version'>), version };
  }

  async refs(): Promise<RefInfo[]> {
    const names = readdirSync(join(this.dir, 'refs')).filter(validVersionName);
    const out: RefInfo[] = [];
    for (const version of names) {
      const info = await this.readRefInfo(version);
      if (info !== undefined) out.push(info);
    }
    return out;
  }

  async readRef(version: string): Promise<string | undefined> {
    if (!validVersionName(version)) return undefined;
    return (await this.readRefInfo(version))?.commit;
  }

  /** Names `commit` by its manifest's version, with what a listing shows. */
  async writeRef(manifest: Manifest, commit: string): Promise<void> {
    const { version, ...rest } = refInfoOf(manifest, commit);
    await writeFileAtomic(join(this.dir, 'refs', version), JSON.stringify(rest));
  }

  async deleteRef(version: string): Promise<void> {
    await rm(join(this.dir, 'refs', version), { force: true });
    fsyncDirSync(join(this.dir, 'refs'));
  }

  private async readText(name: string): Promise<string | undefined> {
    try {
      return (await readFile(join(this.dir, name), 'utf8')).trim();
    } catch (err) {
      if (isErrnoCode(err, 'ENOENT')) return undefined;
      throw err;
    }
  }

  readHead(): Promise<string | undefined> {
    return this.readText('HEAD');
  }

  writeHead(commit: string): Promise<void> {
    return writeFileAtomic(join(this.dir, 'HEAD'), commit);
  }

  readInitial(): Promise<string | undefined> {
    return this.readText('initial');
  }

  writeInitial(version: string): Promise<void> {
    return writeFileAtomic(join(this.dir, 'initial'), version);
  }

  /** Set while an operation may leave unreachable commits or objects behind (see sweep). */
  markSweepNeeded(): Promise<void> {
    return writeFileAtomic(join(this.dir, 'sweep-needed'), new Date().toISOString());
  }

  sweepNeeded(): boolean {
    return existsSync(join(this.dir, 'sweep-needed'));
  }

  async clearSweepNeeded(): Promise<void> {
    await rm(join(this.dir, 'sweep-needed'), { force: true });
  }

  readLastBoot(): Promise<{ bootId: string; version: string } | undefined> {
    return readJson(join(this.dir, 'last-boot.json'));
  }

  writeLastBoot(value: { bootId: string; version: string }): Promise<void> {
    return writeFileAtomic(join(this.dir, 'last-boot.json'), JSON.stringify(value));
  }

  // ---- stat cache and journals -----------------------------------------------------------

  /** The stat cache; undefined when absent or unreadable (everything is then re-hashed). */
  async readStatCache(): Promise<StatCache | undefined> {
    try {
      return decodeStatCache(await readFile(join(this.dir, 'statcache'), 'utf8'));
    } catch (err) {
      if (isErrnoCode(err, 'ENOENT')) return undefined;
      throw err;
    }
  }

  writeStatCache(cache: StatCache): Promise<void> {
    return writeFileAtomic(join(this.dir, 'statcache'), encodeStatCache(cache));
  }

  readRollbackJournal(): Promise<RollbackJournal | undefined> {
    return readJson(join(this.dir, 'rollback.journal'));
  }

  writeRollbackJournal(j: RollbackJournal): Promise<void> {
    return writeFileAtomic(join(this.dir, 'rollback.journal'), JSON.stringify(j));
  }

  async clearRollbackJournal(): Promise<void> {
    await rm(join(this.dir, 'rollback.journal'), { force: true });
    fsyncDirSync(this.dir);
  }
}
