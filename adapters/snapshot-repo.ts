// The on-disk snapshot repository: content-addressed objects, commit manifests, refs per
// version, HEAD (the commit the live tree is at), a stat cache and journals. Every metadata
// file is replaced atomically; objects are staged, fsynced and renamed in, so a commit is
// visible only once its ref is written (see docs/snapshots.md for the layout).
import {
  chmodSync,
  existsSync,
  mkdirSync,
  readdirSync,
  renameSync,
  rmdirSync,
  rmSync,
} from 'node:fs';
import type * as ChildProcess from 'node:child_process';
import { isAscii } from 'node:buffer';
import { createHash } from 'node:crypto';
import { createRequire } from 'node:module';
import { mkdir, readFile, rm, stat } from 'node:fs/promises';
import { join, sep } from 'node:path';
import { isErrnoCode } from './errors.ts';
import { writeFileAtomic } from './fs-atomic.ts';
import { STAMP_FIELDS } from './stamps.ts';
import { cloneFile, fsyncDirSync, fsyncFile, fsyncFileAsync, type EntryType } from './tree.ts';

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
  /** On disk: 1 = JSON entries with absolute paths (read only), 2 = compact (written). */
  format: 1 | 2;
  version: string;
  parent: string | null;
  time: string;
  subject: string;
  /** The subscribed paths this commit covers (files or directories). */
  roots: string[];
  /** In walk order: each root, then depth first with the names of a directory sorted. */
  entries: ManifestEntry[];
}

// Manifest format 2: the header fields, then the entries as arrays: [path, mode] a directory,
// [path, mode, target] a symlink, [path, mode, size, hash] a file. About 75 % of format 1's
// size (no keys) and parsed several times faster; format 1 (entries as objects) is still read.
// Paths stay absolute: parsed, they are flat strings, and comparing them with a walk's paths
// needs no joining (prefix + relative path) or flattening per entry, which costs more than
// the bytes it saves.
type PackedEntry = [string, number] | [string, number, string] | [string, number, number, string];

interface PackedManifest extends Omit<Manifest, 'entries' | 'format'> {
  format: 2;
  entries: PackedEntry[];
}

// An entry read from a format-2 manifest remembers its packed form: a commit mostly re-lists
// HEAD's entries (the same objects), and encoding those again is then a lookup instead of
// building an array per entry. Entries are never modified once made, so it stays true. A class
// with a private field rather than object literals with a symbol key: decoding 20,000 entries
// took 28-33 ms as literals and 8-9 ms as instances (one shape, no keyed define per entry);
// the field stays out of JSON, spreads and key listings.
class DecodedEntry implements ManifestEntry {
  readonly path: string;
  readonly type: EntryType;
  readonly mode: number;
  readonly size?: number;
  readonly hash?: string;
  readonly target?: string;
  readonly #packed: PackedEntry;

  constructor(p: PackedEntry) {
    this.path = p[0];
    this.mode = p[1];
    this.#packed = p;
    if (p.length === 2) this.type = 'dir';
    else if (p.length === 3) {
      this.type = 'symlink';
      this.target = p[2];
    } else {
      this.type = 'file';
      this.size = p[2];
      this.hash = p[3];
    }
  }

  static packedOf(e: ManifestEntry): PackedEntry | undefined {
    return e instanceof DecodedEntry ? e.#packed : undefined;
  }
}

function pack(e: ManifestEntry): PackedEntry {
  return (
    DecodedEntry.packedOf(e) ??
    (e.type === 'dir'
      ? [e.path, e.mode]
      : e.type === 'symlink'
        ? [e.path, e.mode, e.target ?? '']
        : [e.path, e.mode, e.size ?? 0, e.hash ?? ''])
  );
}

function encodeManifest(m: Manifest): string {
  const packed: PackedManifest = {
    format: 2,
    version: m.version,
    parent: m.parent,
    time: m.time,
    subject: m.subject,
    roots: m.roots,
    entries: m.entries.map(pack),
  };
  return JSON.stringify(packed);
}

/**
 * A manifest file's text. Most are ASCII (paths, hex, numbers), and then decoding as Latin-1
 * gives the same string for the cost of a copy, skipping the UTF-8 decoder (a 3 MB manifest,
 * cold process: 17-32 ms read as text, 5-19 ms read as bytes and copied).
 */
function manifestText(bytes: Buffer): string {
  return isAscii(bytes) ? bytes.toString('latin1') : bytes.toString('utf8');
}

function decodeManifest(text: string): Manifest {
  const raw = JSON.parse(text) as (Manifest & { format: 1 }) | PackedManifest;
  if (raw.format !== 2) return raw;
  const entries = raw.entries.map((p) => new DecodedEntry(p));
  const { version, parent, time, subject, roots } = raw;
  return { format: 2, version, parent, time, subject, roots, entries };
}

/**
 * What the live tree looked like when the stat cache was written, per entry of the commit's
 * manifest (same order): a file whose stamps still match has the manifest's content hash.
 */
export interface StatCache {
  commit: string;
  /** When the cache was written: files modified in the same clock tick are re-hashed. */
  writtenAtMs: number;
  /** Per manifest entry: dev, ino, size, mtimeMs, ctimeMs (STAMP_FIELDS numbers); NaN = none. */
  stamps: Float64Array;
}

// The stat cache is read and written by every commit and rollback: binary, no paths (the
// manifest has them), so it is read without parsing. Layout: magic, header length (u32 LE),
// JSON header {commit, writtenAtMs, count}, padding to 8 bytes, count × STAMP_FIELDS float64
// LE. Older caches (text keyed by path) are ignored: the next commit re-reads every file once.
const CACHE_MAGIC = Buffer.from('bk-statcache-2\n');
const LITTLE_ENDIAN = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;

function encodeStatCache(c: StatCache): Uint8Array {
  const header = Buffer.from(
    JSON.stringify({ commit: c.commit, writtenAtMs: c.writtenAtMs, count: c.stamps.length }),
  );
  const start = Math.ceil((CACHE_MAGIC.length + 4 + header.length) / 8) * 8;
  const out = Buffer.from(new ArrayBuffer(start + c.stamps.byteLength));
  CACHE_MAGIC.copy(out, 0);
  out.writeUInt32LE(header.length, CACHE_MAGIC.length);
  header.copy(out, CACHE_MAGIC.length + 4);
  if (LITTLE_ENDIAN) new Float64Array(out.buffer, start, c.stamps.length).set(c.stamps);
  else c.stamps.forEach((x, i) => out.writeDoubleLE(x, start + i * 8));
  return out;
}

function decodeStatCache(buf: Buffer): StatCache | undefined {
  const at = CACHE_MAGIC.length;
  if (buf.length < at + 4 || !buf.subarray(0, at).equals(CACHE_MAGIC)) return undefined;
  const headerEnd = at + 4 + buf.readUInt32LE(at);
  let header: { commit?: unknown; writtenAtMs?: unknown; count?: unknown };
  try {
    header = JSON.parse(buf.toString('utf8', at + 4, headerEnd)) as typeof header;
  } catch {
    return undefined;
  }
  const { commit, writtenAtMs, count } = header;
  const start = Math.ceil(headerEnd / 8) * 8;
  if (
    typeof commit !== 'string' ||
    typeof writtenAtMs !== 'number' ||
    typeof count !== 'number' ||
    !Number.isInteger(count) ||
    count % STAMP_FIELDS !== 0 ||
    buf.length !== start + count * 8
  )
    return undefined;
  const stamps = new Float64Array(count);
  if (LITTLE_ENDIAN)
    stamps.set(
      new Float64Array(buf.buffer.slice(buf.byteOffset + start, buf.byteOffset + buf.length)),
    );
  else for (let i = 0; i < count; i++) stamps[i] = buf.readDoubleLE(start + i * 8);
  return { commit, writtenAtMs, stamps };
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

const OBJECT_NAME = /^[0-9a-f]{64}-[0-7]+$/;
const VERSION = /^[A-Za-z0-9][A-Za-z0-9._-]{0,100}$/;

export function validVersionName(name: string): boolean {
  return VERSION.test(name);
}

/** Objects are keyed by content and mode, as ostree's are: the same bytes under two modes are
 * two objects, which gives repair a second copy to fall back on. */
export function objectKey(hash: string, mode: number): string {
  return `${hash}-${mode.toString(8)}`;
}

const loadBuiltin = createRequire(import.meta.url);

/** Above this many new objects, one syncfs instead of an fsync per object. */
const BULK_OBJECTS = 256;

/** fsync of a file or (except on Windows) a directory, on the thread pool. */
async function fsyncPath(path: string): Promise<void> {
  if (process.platform === 'win32' && (await stat(path)).isDirectory()) return;
  await fsyncFileAsync(path); // a directory, on Linux, opens read-only the same way
}

/** Runs `fn` over `items`, a few at a time (the thread pool has four threads by default). */
async function inParallel<T>(items: readonly T[], fn: (item: T) => Promise<void>): Promise<void> {
  let next = 0;
  const lane = async () => {
    while (next < items.length) await fn(items[next++] as T);
  };
  await Promise.all(Array.from({ length: Math.min(8, items.length) }, lane));
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
   * Like ostree, many objects are written first and flushed together: on Linux one syncfs of
   * the repository's file system (`sync -f`). A few (an update's) are fsynced one by one, many
   * at a time: cheaper than starting `sync` twice, and they do not wait for whatever else is
   * being written on that file system.
   */
  async publishStaged(): Promise<number> {
    const staging = this.stagingDir;
    const names = readdirSync(staging);
    if (names.length === 0) return 0;
    const bulk = names.length > BULK_OBJECTS && this.syncFileSystem();
    if (!bulk) await inParallel(names, (name) => fsyncPath(join(staging, name)));
    const dirs = new Set<string>();
    for (const name of names) {
      const dir = join(this.dir, 'objects', name.slice(0, 2));
      if (!dirs.has(dir)) {
        mkdirSync(dir, { recursive: true });
        dirs.add(dir);
      }
      renameSync(join(staging, name), join(dir, name));
    }
    if (!(bulk && this.syncFileSystem()))
      await inParallel([...dirs, this.objectsDir], (dir) => fsyncPath(dir));
    // A directory that held many entries stays large (and slow to list) when emptied: replace it.
    if (names.length > BULK_OBJECTS) {
      rmdirSync(staging);
      mkdirSync(staging);
    }
    return names.length;
  }

  /** syncfs(2) of the repository's file system through coreutils; false where unavailable. */
  private syncFileSystem(): boolean {
    if (process.platform !== 'linux') return false;
    // Loaded on first use: a commit of a few files and a rollback never start a process.
    const { spawnSync } = loadBuiltin('node:child_process') as typeof ChildProcess;
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
    const { keys, paths } = this.objectFiles();
    for (let i = 0; i < keys.length; i++) {
      const key = keys[i] as string;
      yield {
        hash: key.slice(0, 64),
        mode: parseInt(key.slice(65), 8),
        path: paths[i] as string,
        key,
      };
    }
  }

  /** Every stored object's key (<hash>-<mode>) and path, sorted: two flat lists, no objects. */
  objectFiles(): { keys: string[]; paths: string[] } {
    const root = this.objectsDir;
    const keys: string[] = [];
    const paths: string[] = [];
    for (const sub of readdirSync(root).sort()) {
      const dir = join(root, sub) + sep;
      for (const name of readdirSync(dir).sort()) {
        if (!OBJECT_NAME.test(name)) continue;
        keys.push(name);
        paths.push(dir + name);
      }
    }
    return { keys, paths };
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
    // Encoded once: hashing and writing a string would each convert it to UTF-8 again.
    const bytes = Buffer.from(encodeManifest(manifest));
    const id = createHash('sha256').update(bytes).digest('hex');
    await writeFileAtomic(join(this.dir, 'commits', `${id}.json`), bytes);
    return id;
  }

  async readCommit(id: string): Promise<Manifest> {
    let text: string;
    try {
      text = manifestText(await readFile(join(this.dir, 'commits', `${id}.json`)));
    } catch (err) {
      if (isErrnoCode(err, 'ENOENT'))
        throw new Error(`commit ${id} is missing from ${this.dir}`, { cause: err });
      throw err;
    }
    return decodeManifest(text);
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
      return decodeStatCache(await readFile(join(this.dir, 'statcache')));
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
