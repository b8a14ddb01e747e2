// Versioned snapshots of the box (the ideas of deepin's atomic upgrade manager, on our own
// content-addressed store): commit, list, diff, rollback, delete, prune with retention,
// verify and repair. Work is proportional to what changed: a stat cache tells which files
// must be re-read, and a rollback touches only files that differ from the target.
import { BoxkeeperError } from '../../adapters/errors.ts';
import type { Logger } from '../../adapters/logger.ts';
import {
  type Manifest,
  type ManifestEntry,
  type RefInfo,
  type SnapshotRepo,
  type StatCache,
} from '../../adapters/snapshot-repo.ts';
import type { HashPool } from '../../adapters/hash-pool.ts';
import { putStamp, STAMP_FIELDS, stampMatches } from '../../adapters/stamps.ts';
import type { TreeOps, WalkResult } from '../../adapters/tree.ts';

export class SnapshotError extends BoxkeeperError {
  constructor(message: string) {
    super(message, 'snapshot');
  }
}

export interface SnapshotConfig {
  /** Files or directories under management. */
  subscribe: string[];
  /** Paths (and everything under them) never managed. */
  exclude: string[];
  /** Keep this many newest versions (plus the initial one). */
  retain: number;
}

export interface SnapshotDeps {
  repo: SnapshotRepo;
  tree: TreeOps;
  /** Hashes and stores files on worker threads (all cores). */
  hashPool: HashPool;
  config: SnapshotConfig;
  logger: Logger;
  /** Free bytes on the file system holding `path`. */
  freeBytes: (path: string) => Promise<number>;
  /** Problems with mounts the subscribed paths need (Linux fstab); [] when all is well. */
  checkMounts: (paths: string[]) => Promise<string[]>;
  bootId: () => Promise<string>;
  /** Version name for a commit without --version. */
  defaultVersionName: () => string;
  now?: () => Date;
  pathSep: string;
}

export interface CommitResult {
  version: string;
  commit: string;
  files: number;
  /** Files whose content was read because their stat changed. */
  hashed: number;
  newObjects: number;
  skipped: boolean;
  /** Why nothing was committed. */
  reason?: string;
  pruned: string[];
}

/** A kept version as listed: its ref plus whether it is the initial or current one. */
export type VersionInfo = RefInfo & { initial: boolean; current: boolean };

export interface DiffResult {
  added: string[];
  removed: string[];
  modified: string[];
}

export interface VerifyReport {
  head: string | null;
  version: string | null;
  objectsChecked: number;
  damagedObjects: string[];
  missingObjects: string[];
  tampered: string[];
  missing: string[];
  unexpected: string[];
  ok: boolean;
}

export interface RepairReport {
  repairedObjects: string[];
  restored: string[];
  unrecoverable: string[];
}

/** Keeps a margin so a snapshot never fills the disk to the last byte. */
const SPACE_MARGIN = 64 * 1024 * 1024;
/** Files changed this close to the stat cache's write time are re-hashed (racy stamps). */
const RACY_MS = 2000;

function byPath(entries: ManifestEntry[]): Map<string, ManifestEntry> {
  return new Map(entries.map((e) => [e.path, e]));
}

function sameEntry(a: ManifestEntry | undefined, b: ManifestEntry | undefined): boolean {
  if (a === undefined || b === undefined) return a === b;
  return a.type === b.type && a.mode === b.mode && a.hash === b.hash && a.target === b.target;
}

/**
 * Finds a path in a list by position first — a manifest and a walk of the same tree list paths
 * in the same order — and through a map (built on the first miss) otherwise. After a miss the
 * shift between the two lists is kept, so one inserted or removed path costs a few lookups.
 */
function pathFinder<T>(
  list: readonly T[],
  pathOf: (item: T) => string,
): (path: string, hint: number) => number {
  let map: Map<string, number> | undefined;
  let shift = 0;
  return (path, hint) => {
    const guess = hint + shift;
    const item = list[guess];
    if (item !== undefined && pathOf(item) === path) return guess;
    map ??= new Map(list.map((e, i) => [pathOf(e), i]));
    const i = map.get(path);
    if (i === undefined) return -1;
    shift = i - hint;
    return i;
  };
}

const entryPath = (e: ManifestEntry) => e.path;
const itself = (path: string) => path;

/** A manifest with its commit id. */
interface Commit {
  id: string;
  manifest: Manifest;
}

/** The live tree, as far as a commit or a rollback plan needs it. */
interface Scan {
  walk: WalkResult;
  /** Per walk entry: the content hash of a file, where the stat cache vouches for it. */
  hashes: Array<string | undefined>;
  /** Walk indexes of the files the cache cannot vouch for: their content must be read. */
  toHash: number[];
  /**
   * With `entries`: per walk entry its manifest entry — HEAD's own object where nothing
   * changed — and undefined for the files in toHash.
   */
  entries: Array<ManifestEntry | undefined>;
}

/** A file's manifest entry: `was` (HEAD's) when it says the same. */
function fileEntry(
  path: string,
  mode: number,
  size: number,
  hash: string,
  was: ManifestEntry | undefined,
): ManifestEntry {
  if (was?.type === 'file' && was.mode === mode && was.size === size && was.hash === hash)
    return was;
  return { path, type: 'file', mode, size, hash };
}

function mib(bytes: number): string {
  return `${(bytes / 1024 / 1024).toFixed(1)} MiB`;
}

export class SnapshotService {
  private readonly d: SnapshotDeps;
  private readonly log: Logger;

  constructor(deps: SnapshotDeps) {
    this.d = deps;
    this.log = deps.logger.child({ component: 'snapshot' });
  }

  private now(): Date {
    return (this.d.now ?? (() => new Date()))();
  }

  /** Excluded paths (and the repository itself), normalized, for exact-match lookups. */
  private get excluded(): Set<string> {
    this.excludedCache ??= new Set(
      [...this.d.config.exclude, this.d.repo.dir].map((x) => x.replace(/[\\/]+$/, '')),
    );
    return this.excludedCache;
  }

  private excludedCache: Set<string> | undefined;

  /** A root under an excluded directory is not managed (the walk checks children exactly). */
  private managedRoots(roots: string[]): string[] {
    const sep = this.d.pathSep;
    const ex = [...this.excluded];
    return roots.filter((r) => !ex.some((x) => r === x || r.startsWith(x + sep)));
  }

  /**
   * Finishes what an interrupted run left: staging debris, temp files in the live tree, and a
   * rollback in progress (resumed to completion). Every writing command calls this first.
   */
  async recover(): Promise<void> {
    await this.d.repo.cleanTemps();
    const staged = await this.d.repo.cleanStaging();
    if (staged > 0)
      this.log.warn({ files: staged }, 'removed objects an interrupted commit left in staging');
    const journal = await this.d.repo.readRollbackJournal();
    if (journal !== undefined) {
      this.log.warn(
        { version: journal.version, since: journal.startedAt },
        'resuming an interrupted rollback',
      );
      await this.applyRollback(journal.target, journal.version);
    }
    // A commit interrupted after HEAD moved but before its ref was written: finish it.
    const head = await this.d.repo.readHead();
    if (head !== undefined && !(await this.d.repo.refs()).some((r) => r.commit === head)) {
      const manifest = await this.d.repo.readCommit(head);
      this.log.warn(
        { version: manifest.version },
        'completing a commit that was interrupted before its ref was written',
      );
      await this.d.repo.writeRef(manifest, head);
    }
    // An interrupted commit leaves a commit file no ref names; an interrupted prune or delete
    // leaves its marker. Either may have left unreachable objects.
    const named = new Set((await this.d.repo.refs()).map((r) => r.commit));
    const orphans = this.d.repo.commitIds().some((id) => !named.has(id) && id !== head);
    if (orphans || this.d.repo.sweepNeeded()) await this.sweep();
  }

  // ---- reading the live tree ---------------------------------------------------------------

  /**
   * Walks the live tree; hashes come from the stat cache (of HEAD) where stamps are unchanged.
   * With `entries`, also builds the walk's manifest entries in the same pass.
   */
  private async scan(
    roots: string[],
    mode: 'write' | 'read',
    options: { entries?: boolean; known?: Commit } = {},
  ): Promise<Scan> {
    const headId = await this.d.repo.readHead();
    let head: Manifest | undefined;
    let cache: StatCache | undefined;
    if (headId !== undefined) {
      const { known } = options;
      [head, cache] = await Promise.all([
        known?.id === headId ? known.manifest : this.d.repo.readCommit(headId),
        this.d.repo.readStatCache(),
      ]);
    }
    const walk = this.d.tree.walk(this.managedRoots(roots), this.excluded);
    // Temp files of an interrupted placement are ours to remove, but only under the lock.
    if (mode === 'write') for (const debris of walk.debris) this.d.tree.removePath(debris);
    for (const s of walk.skipped) this.log.warn(s, 'not managed');
    const old = head?.entries ?? [];
    const cached =
      cache !== undefined &&
      cache.commit === headId &&
      cache.stamps.length === old.length * STAMP_FIELDS
        ? cache.stamps
        : undefined;
    const trustedBefore = (cache?.writtenAtMs ?? 0) - RACY_MS;
    const { paths, types, modes, stamps } = walk;
    const n = paths.length;
    const build = options.entries === true;
    const hashes = new Array<string | undefined>(n);
    const entries = new Array<ManifestEntry | undefined>(build ? n : 0);
    const toHash: number[] = [];
    const find = pathFinder(old, entryPath);
    // One pass over the entries: this runs once per process, mostly before the JIT has
    // optimized it, so every step saved per entry counts.
    for (let k = 0; k < n; k++) {
      const path = paths[k] as string;
      const type = types[k] as ManifestEntry['type'];
      const i = old.length === 0 ? -1 : find(path, k);
      const was = i < 0 ? undefined : old[i];
      if (type === 'file') {
        const o = k * STAMP_FIELDS;
        if (
          cached !== undefined &&
          was?.type === 'file' &&
          stampMatches(cached, i, stamps, k) &&
          (stamps[o + 4] as number) < trustedBefore
        ) {
          const hash = was.hash as string;
          hashes[k] = hash;
          if (build)
            entries[k] = fileEntry(path, modes[k] as number, stamps[o + 2] as number, hash, was);
        } else {
          toHash.push(k);
        }
      } else if (build) {
        const m = modes[k] as number;
        if (type === 'dir') {
          entries[k] = was?.type === 'dir' && was.mode === m ? was : { path, type, mode: m };
        } else {
          const target = this.d.tree.readLink(path);
          entries[k] =
            was?.type === 'symlink' && was.mode === m && was.target === target
              ? was
              : { path, type, mode: m, target };
        }
      }
    }
    return { walk, hashes, toHash, entries };
  }

  private async preflight(bytesNeeded: number, paths: string[], what: string): Promise<void> {
    const mountProblems = await this.d.checkMounts(paths);
    if (mountProblems.length > 0) {
      throw new SnapshotError(`${what} refused, nothing was changed: ${mountProblems.join('; ')}`);
    }
    const free = await this.d.freeBytes(this.d.repo.dir);
    if (bytesNeeded + SPACE_MARGIN > free) {
      throw new SnapshotError(
        `${what} refused, nothing was changed: needs ${mib(bytesNeeded)} plus a ${mib(SPACE_MARGIN)} margin, ` +
          `but only ${mib(free)} is free on the file system of ${this.d.repo.dir}`,
      );
    }
  }

  // ---- commit -----------------------------------------------------------------------------

  async commit(
    options: {
      version?: string;
      subject?: string;
      oncePerBoot?: boolean;
      /** Files hashed so far of those to hash (the changed ones), now and then. */
      onProgress?: (done: number, total: number) => void;
    } = {},
  ): Promise<CommitResult> {
    await this.recover();
    const bootId = await this.d.bootId();
    if (options.oncePerBoot === true) {
      const last = await this.d.repo.readLastBoot();
      if (last?.bootId === bootId) {
        this.log.info({ version: last.version }, 'already committed during this boot; skipped');
        return {
          version: last.version,
          commit: '',
          files: 0,
          hashed: 0,
          newObjects: 0,
          skipped: true,
          reason: 'already committed during this boot',
          pruned: [],
        };
      }
    }
    if (options.version !== undefined) {
      // Re-running a commit that already completed (e.g. after a crash) is a no-op.
      const existing = await this.d.repo.readRef(options.version);
      if (
        existing !== undefined &&
        existing === (await this.d.repo.readHead()) &&
        (await this.drift()) === 0
      ) {
        const m = await this.d.repo.readCommit(existing);
        return {
          version: options.version,
          commit: existing,
          files: m.entries.length,
          hashed: 0,
          newObjects: 0,
          skipped: true,
          reason: 'this version is already committed and the box has not changed since',
          pruned: [],
        };
      }
    }
    const version = await this.uniqueVersion(options.version);
    const head = await this.d.repo.readHead();
    const roots = [...this.d.config.subscribe];
    const {
      walk,
      toHash,
      hashes,
      entries: scanned,
    } = await this.scan(roots, 'write', {
      entries: true,
    });
    if (walk.missingRoots.length > 0)
      this.log.warn({ paths: walk.missingRoots }, 'subscribed paths do not exist');
    // Upper bound of new object bytes: every file whose stat changed may be new content.
    const size = (k: number) => walk.stamps[k * STAMP_FIELDS + 2] as number;
    const bytes = toHash.reduce((n, k) => n + size(k), 0);
    await this.preflight(bytes, roots, 'commit');
    // Read each changed file once: hash it and, when its object is new, stage it from the
    // same bytes (on every core).
    const objectsDir = this.d.repo.objectsDir;
    const stagingDir = this.d.repo.stagingDir;
    const ingested = await this.d.hashPool.ingest(
      toHash.map((k) => ({
        path: walk.paths[k] as string,
        mode: walk.modes[k] as number,
        objectsDir,
        stagingDir,
      })),
      options.onProgress,
    );
    let newObjects = 0;
    ingested.forEach((r, j) => {
      const k = toHash[j] as number;
      hashes[k] = r.hash;
      scanned[k] = fileEntry(r.path, walk.modes[k] as number, size(k), r.hash, undefined);
      if (r.staged) newObjects++;
    });

    // In walk order, which depends on the tree only (names sorted per directory).
    const entries = scanned as ManifestEntry[];
    const manifest: Manifest = {
      format: 2,
      version,
      parent: head ?? null,
      time: this.now().toISOString(),
      subject: options.subject ?? '',
      roots,
      entries,
    };
    // The manifest is written before its objects are published: a crash in between leaves a
    // commit file no ref names, which recover() notices and sweeps with its objects.
    const commit = await this.d.repo.writeCommit(manifest);
    await this.d.repo.publishStaged();
    // The initial marker goes first (a dangling one, from a first commit that never finished,
    // is replaced), then HEAD; the ref is written last and makes the version visible. A crash
    // after HEAD is completed by recover(), which adds the missing ref.
    const initial = await this.d.repo.readInitial();
    if (initial === undefined || (await this.d.repo.readRef(initial)) === undefined) {
      await this.d.repo.writeInitial(version);
    }
    await this.d.repo.writeHead(commit);
    // The walk's stamps, entry for entry (only files' are ever looked at).
    await this.d.repo.writeStatCache({
      commit,
      writtenAtMs: Date.now(),
      stamps: Float64Array.from(walk.stamps),
    });
    await this.d.repo.writeLastBoot({ bootId, version });
    await this.d.repo.writeRef(manifest, commit);
    const pruned = await this.prune();
    this.log.info(
      { version, commit, files: entries.length, hashed: toHash.length, newObjects },
      'snapshot committed',
    );
    return {
      version,
      commit,
      files: entries.length,
      hashed: toHash.length,
      newObjects,
      skipped: false,
      pruned,
    };
  }

  private async uniqueVersion(requested: string | undefined): Promise<string> {
    if (requested !== undefined) {
      if (!this.d.repo.validVersionName(requested)) {
        throw new SnapshotError(
          `version name "${requested}" must be letters, digits, ".", "_" or "-"`,
        );
      }
      const existing = await this.d.repo.readRef(requested);
      if (existing !== undefined) {
        throw new SnapshotError(`version ${requested} already exists`);
      }
      return requested;
    }
    const base = this.d.defaultVersionName();
    let name = base;
    for (let i = 2; (await this.d.repo.readRef(name)) !== undefined; i++) name = `${base}-${i}`;
    return name;
  }

  /** Writes the stat cache of `commit`; `fill` puts the stamps of its file entries. */
  private async writeCache(
    commit: string,
    entries: ManifestEntry[],
    fill: (out: Float64Array, i: number, e: ManifestEntry) => void,
  ): Promise<void> {
    const stamps = new Float64Array(entries.length * STAMP_FIELDS).fill(NaN);
    entries.forEach((e, i) => {
      if (e.type === 'file') fill(stamps, i, e);
    });
    await this.d.repo.writeStatCache({ commit, writtenAtMs: Date.now(), stamps });
  }

  // ---- list, diff ---------------------------------------------------------------------------

  async list(): Promise<VersionInfo[]> {
    const [refs, initial, head] = await Promise.all([
      this.d.repo.refs(),
      this.d.repo.readInitial(),
      this.d.repo.readHead(),
    ]);
    return refs
      .map((r) => ({ ...r, initial: r.version === initial, current: r.commit === head }))
      .sort((a, b) => (a.time < b.time ? 1 : a.time > b.time ? -1 : 0));
  }

  private async commitOf(version: string): Promise<string> {
    const id = await this.d.repo.readRef(version);
    if (id === undefined) {
      const known = (await this.list()).map((v) => v.version);
      throw new SnapshotError(`no version "${version}"; known: ${known.join(', ') || '(none)'}`);
    }
    return id;
  }

  async diff(a: string, b: string): Promise<DiffResult> {
    const [ma, mb] = await Promise.all([
      this.d.repo.readCommit(await this.commitOf(a)),
      this.d.repo.readCommit(await this.commitOf(b)),
    ]);
    const ea = byPath(ma.entries);
    const eb = byPath(mb.entries);
    return {
      // Sorted by path (manifests list entries in walk order).
      added: [...eb.keys()].filter((p) => !ea.has(p)).sort(),
      removed: [...ea.keys()].filter((p) => !eb.has(p)).sort(),
      modified: [...eb.keys()].filter((p) => ea.has(p) && !sameEntry(ea.get(p), eb.get(p))).sort(),
    };
  }

  // ---- rollback -----------------------------------------------------------------------------

  /**
   * Makes the live tree equal to `version`. Uncommitted changes are saved first as a snapshot
   * of their own unless `discardChanges` (the installer discards a failed update).
   */
  async rollback(
    version: string,
    options: {
      discardChanges?: boolean;
      /** Files restored so far of those to restore, now and then. */
      onProgress?: (done: number, total: number) => void;
    } = {},
  ): Promise<{ saved: string | null; changed: number }> {
    await this.recover();
    const target = await this.commitOf(version);
    let saved: string | null = null;
    if (options.discardChanges !== true) {
      const drift = await this.drift();
      if (drift > 0) {
        const r = await this.commit({
          subject: `automatic: ${drift} change(s) before rollback to ${version}`,
        });
        saved = r.version;
        this.log.info({ saved, changes: drift }, 'saved uncommitted changes before rolling back');
      }
    }
    const changed = await this.applyRollback(target, version, options.onProgress);
    return { saved, changed };
  }

  /** Number of live paths that differ from HEAD (0 when there is no HEAD). */
  private async drift(): Promise<number> {
    const head = await this.d.repo.readHead();
    if (head === undefined) return 0;
    const plan = await this.plan({ id: head, manifest: await this.d.repo.readCommit(head) });
    return plan.write.length + plan.remove.length + plan.dirs.length + plan.chmods.length;
  }

  /** What differs between the live tree and `target` (read-only). */
  private async plan(commit: Commit, mode: 'write' | 'read' = 'write') {
    const target = commit.manifest;
    const { walk, hashes } = await this.scan(target.roots, mode, { known: commit });
    const { paths, types, modes, stamps } = walk;
    const wanted = target.entries;
    // Per target entry, the live entry at its path (-1: none).
    const liveIndex = new Int32Array(wanted.length);
    const seen = new Uint8Array(paths.length);
    const find = pathFinder(paths, itself);
    const toHash: number[] = [];
    for (let i = 0; i < wanted.length; i++) {
      const t = wanted[i] as ManifestEntry;
      const j = find(t.path, i);
      liveIndex[i] = j;
      if (j < 0) continue;
      seen[j] = 1;
      // Content matters only for a file that could still be the target's: same size.
      if (
        t.type === 'file' &&
        types[j] === 'file' &&
        stamps[j * STAMP_FIELDS + 2] === t.size &&
        hashes[j] === undefined
      )
        toHash.push(j);
    }
    if (toHash.length > 0) {
      const computed = await this.d.hashPool.hash(toHash.map((j) => paths[j] as string));
      toHash.forEach((j, x) => (hashes[j] = computed[x]));
    }
    const remove: string[] = [];
    for (let j = 0; j < seen.length; j++) if (seen[j] === 0) remove.push(paths[j] as string);
    const dirs: ManifestEntry[] = [];
    const write: ManifestEntry[] = [];
    const chmods: ManifestEntry[] = [];
    /** Target paths with nothing at them in the live tree. */
    const absent = new Set<string>();
    for (let i = 0; i < wanted.length; i++) {
      const t = wanted[i] as ManifestEntry;
      const j = liveIndex[i] as number;
      const type = j < 0 ? undefined : types[j];
      if (type === undefined) absent.add(t.path);
      if (t.type === 'dir') {
        if (type !== 'dir') dirs.push(t);
        else if (modes[j] !== t.mode) chmods.push(t);
      } else if (t.type === 'symlink') {
        if (type !== 'symlink' || this.d.tree.readLink(t.path) !== t.target) write.push(t);
      } else if (type !== 'file' || hashes[j] !== t.hash) {
        write.push(t);
      } else if (modes[j] !== t.mode) {
        chmods.push(t);
      }
    }
    /** Copies the walk's stamps of target entry i's live path into a cache's `out`. */
    const copyStamps = (out: Float64Array, i: number): void => {
      const j = liveIndex[i] as number;
      if (j < 0 || types[j] !== 'file') return;
      for (let f = 0; f < STAMP_FIELDS; f++)
        out[i * STAMP_FIELDS + f] = stamps[j * STAMP_FIELDS + f] as number;
    };
    return { remove, dirs, write, chmods, absent, copyStamps };
  }

  private async applyRollback(
    target: string,
    version: string,
    onProgress?: (done: number, total: number) => void,
  ): Promise<number> {
    const manifest = await this.d.repo.readCommit(target);
    const p = await this.plan({ id: target, manifest });
    const missing = p.write.filter(
      (e) => e.type === 'file' && !this.d.repo.hasObject(e.hash as string, e.mode),
    );
    if (missing.length > 0) {
      throw new SnapshotError(
        `rollback to ${version} refused, nothing was changed: ${missing.length} object(s) are missing from the repository ` +
          `(first: ${missing[0]?.path ?? ''}); run "boxkeeper snapshot repair"`,
      );
    }
    const bytes = p.write.reduce((n, e) => n + (e.size ?? 0), 0);
    await this.preflight(bytes, manifest.roots, `rollback to ${version}`);
    // Intent first: an interrupted rollback is finished by the next run (recover()).
    await this.d.repo.writeRollbackJournal({
      target,
      version,
      startedAt: this.now().toISOString(),
    });
    // Remove what the target lacks, deepest first, so directories empty before they go.
    for (const path of [...p.remove].sort((a, b) => b.length - a.length))
      this.d.tree.removePath(path);
    for (const d of p.dirs.sort((a, b) => a.path.length - b.path.length))
      this.d.tree.ensureDir(d.path, d.mode);
    // With a listener, the loop yields now and then so that its progress reaches it (the
    // journal above finishes an interrupted run either way).
    let slice = performance.now();
    for (const [i, e] of p.write.entries()) {
      if (e.type === 'symlink') this.d.tree.placeSymlink(e.target as string, e.path);
      else this.d.tree.placeFile(this.d.repo.objectPath(e.hash as string, e.mode), e.path, e.mode);
      if (onProgress !== undefined && performance.now() - slice > 50) {
        onProgress(i + 1, p.write.length);
        await new Promise((r) => setImmediate(r));
        slice = performance.now();
      }
    }
    onProgress?.(p.write.length, p.write.length);
    for (const e of p.chmods) this.d.tree.chmod(e.path, e.mode);
    const changed = p.remove.length + p.dirs.length + p.write.length + p.chmods.length;

    // The stat cache now describes the target: fresh stamps for what was touched, the
    // planning walk's stamps for the rest (whose content the plan found equal).
    const touched = new Set([...p.write, ...p.chmods].map((e) => e.path));
    await this.d.repo.writeHead(target);
    await this.writeCache(target, manifest.entries, (out, i, e) => {
      if (!touched.has(e.path)) p.copyStamps(out, i);
      else {
        const stat = this.d.tree.lstat(e.path);
        if (stat?.type === 'file') putStamp(out, i, stat);
      }
    });
    await this.d.repo.clearRollbackJournal();
    this.log.info({ version, changed }, 'rolled back');
    return changed;
  }

  // ---- retention ----------------------------------------------------------------------------

  /** Deletes versions beyond the newest `retain` (never the initial one or the current one). */
  async prune(options: { sweep?: boolean } = {}): Promise<string[]> {
    const versions = await this.list();
    const keep = new Set(versions.slice(0, this.d.config.retain).map((v) => v.version));
    const drop = versions
      .filter((v) => !keep.has(v.version) && !v.initial && !v.current)
      .map((v) => v.version);
    // Refs go first; the sweep then removes only what no remaining ref reaches, so a crash at
    // any point loses nothing reachable and the next prune finishes the sweep.
    if (drop.length > 0) await this.d.repo.markSweepNeeded();
    for (const v of drop) await this.d.repo.deleteRef(v);
    // The sweep reads every kept manifest and lists every object: only when something may be
    // unreachable (or when asked), not after every commit.
    if (this.d.repo.sweepNeeded() || options.sweep === true) await this.sweep();
    if (drop.length > 0) this.log.info({ versions: drop }, 'pruned old snapshots');
    return drop;
  }

  async delete(version: string): Promise<void> {
    await this.recover();
    const info = (await this.list()).find((v) => v.version === version);
    if (info === undefined) await this.commitOf(version);
    if (info?.initial === true)
      throw new SnapshotError(`${version} is the initial snapshot and is always kept`);
    if (info?.current === true)
      throw new SnapshotError(`${version} is the version the box is at; roll back elsewhere first`);
    await this.d.repo.markSweepNeeded();
    await this.d.repo.deleteRef(version);
    await this.sweep();
  }

  private async sweep(): Promise<{ commits: number; objects: number }> {
    const reachable = new Set((await this.d.repo.refs()).map((r) => r.commit));
    const head = await this.d.repo.readHead();
    if (head !== undefined) reachable.add(head);
    const journal = await this.d.repo.readRollbackJournal();
    if (journal !== undefined) reachable.add(journal.target);
    const live = new Set<string>();
    for (const id of reachable) {
      for (const e of (await this.d.repo.readCommit(id)).entries) {
        if (e.type === 'file') live.add(`${e.hash as string}-${e.mode.toString(8)}`);
      }
    }
    let commits = 0;
    for (const id of this.d.repo.commitIds()) {
      if (!reachable.has(id)) {
        await this.d.repo.deleteCommit(id);
        commits++;
      }
    }
    let objects = 0;
    const stored = this.d.repo.objectFiles();
    stored.keys.forEach((key, i) => {
      if (live.has(key)) return;
      this.d.repo.removeObject(stored.paths[i] as string);
      objects++;
    });
    await this.d.repo.clearSweepNeeded();
    return { commits, objects };
  }

  // ---- verify and repair ----------------------------------------------------------------------

  async verify(): Promise<VerifyReport> {
    const head = (await this.d.repo.readHead()) ?? null;
    const manifest = head === null ? undefined : await this.d.repo.readCommit(head);
    const objects = this.d.repo.objectFiles();
    // Objects are re-hashed on the workers while this thread checks the live tree.
    const hashing = this.d.hashPool.hash(objects.paths);
    const livePlan =
      head === null || manifest === undefined
        ? undefined
        : this.plan({ id: head, manifest }, 'read');
    const [hashes, p] = await Promise.all([hashing, livePlan]);
    // A key is <hash>-<mode>: intact when it starts with the hash of its content.
    const damaged = objects.keys.filter((key, i) => !key.startsWith(hashes[i] as string));
    const present = new Set(objects.keys);
    const missingObjects = new Set<string>();
    for (const id of new Set((await this.d.repo.refs()).map((r) => r.commit))) {
      const m = id === head && manifest !== undefined ? manifest : await this.d.repo.readCommit(id);
      for (const e of m.entries) {
        if (e.type !== 'file') continue;
        const key = `${e.hash as string}-${e.mode.toString(8)}`;
        if (!present.has(key)) missingObjects.add(key);
      }
    }
    const report: VerifyReport = {
      head,
      version: manifest?.version ?? null,
      objectsChecked: objects.keys.length,
      damagedObjects: damaged.sort(),
      missingObjects: [...missingObjects].sort(),
      tampered: [],
      missing: [],
      unexpected: [],
      ok: false,
    };
    if (p !== undefined) {
      report.unexpected = p.remove.sort();
      for (const e of [...p.write, ...p.dirs, ...p.chmods]) {
        (p.absent.has(e.path) ? report.missing : report.tampered).push(e.path);
      }
      report.tampered.sort();
      report.missing.sort();
    }
    report.ok =
      report.damagedObjects.length === 0 &&
      report.missingObjects.length === 0 &&
      report.tampered.length === 0 &&
      report.missing.length === 0 &&
      report.unexpected.length === 0;
    return report;
  }

  /**
   * Restores tampered and missing files from the current snapshot. A damaged or lost object is
   * first rebuilt from an identical copy elsewhere: the same content under another mode in any
   * commit, or a live file that still has that content. What cannot be found is reported.
   */
  async repair(): Promise<RepairReport> {
    await this.recover();
    const report: RepairReport = { repairedObjects: [], restored: [], unrecoverable: [] };
    const v = await this.verify();
    const broken = [...v.damagedObjects, ...v.missingObjects];
    if (broken.length > 0) {
      const copies = await this.knownCopies();
      for (const key of broken) {
        const [hash, modeText] = key.split('-') as [string, string];
        const source = await this.findGoodCopy(hash, key, copies);
        if (source === undefined) {
          report.unrecoverable.push(
            `object ${key} (no intact copy in the repository or the live tree)`,
          );
          continue;
        }
        this.d.repo.restoreObject(hash, parseInt(modeText, 8), source);
        report.repairedObjects.push(key);
      }
    }
    if (v.head !== null) {
      const manifest = await this.d.repo.readCommit(v.head);
      const p = await this.plan({ id: v.head, manifest });
      for (const d of p.dirs) this.d.tree.ensureDir(d.path, d.mode);
      for (const e of p.write) {
        if (e.type === 'symlink') {
          this.d.tree.placeSymlink(e.target as string, e.path);
        } else {
          const object = this.d.repo.objectPath(e.hash as string, e.mode);
          if (
            !this.d.repo.hasObject(e.hash as string, e.mode) ||
            (await this.d.tree.hashFile(object)) !== e.hash
          ) {
            report.unrecoverable.push(
              `${e.path} (its object is damaged and no intact copy exists)`,
            );
            continue;
          }
          this.d.tree.placeFile(object, e.path, e.mode);
        }
        report.restored.push(e.path);
      }
      for (const e of p.chmods) {
        this.d.tree.chmod(e.path, e.mode);
        report.restored.push(e.path);
      }
      const lost = new Set(report.unrecoverable.map((u) => u.slice(0, u.lastIndexOf(' ('))));
      await this.writeCache(v.head, manifest.entries, (out, i, e) => {
        const stat = lost.has(e.path) ? undefined : this.d.tree.lstat(e.path);
        if (stat?.type === 'file') putStamp(out, i, stat);
      });
    }
    this.log.info(
      {
        objects: report.repairedObjects.length,
        files: report.restored.length,
        unrecoverable: report.unrecoverable.length,
      },
      'repair finished',
    );
    return report;
  }

  /** Every place an identical copy of some content might live: objects and live paths. */
  private async knownCopies(): Promise<Map<string, string[]>> {
    const copies = new Map<string, string[]>();
    const add = (hash: string, path: string) =>
      copies.set(hash, [...(copies.get(hash) ?? []), path]);
    for (const o of this.d.repo.objects()) add(o.hash, o.path);
    for (const id of this.d.repo.commitIds()) {
      for (const e of (await this.d.repo.readCommit(id)).entries) {
        if (e.type === 'file') add(e.hash as string, e.path);
      }
    }
    return copies;
  }

  private async findGoodCopy(
    hash: string,
    brokenKey: string,
    copies: Map<string, string[]>,
  ): Promise<string | undefined> {
    for (const path of new Set(copies.get(hash) ?? [])) {
      if (path.endsWith(brokenKey)) continue;
      const stat = this.d.tree.lstat(path);
      if (stat?.type !== 'file') continue;
      if ((await this.d.tree.hashFile(path)) === hash) return path;
    }
    return undefined;
  }
}
