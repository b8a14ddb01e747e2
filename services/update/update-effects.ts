// The update lifecycle's effects against a real box. Every effect is an idempotent "ensure":
// after a crash it runs again with the same input and converges (docs/lifecycle.md).
//
// Patch layout (seed 000, unchanged): files at the zip root — `data/` (SQL scripts, DB files),
// `icb-box.jar`, `application.yml`, `start.exe`, `self_updater.exe`, a partial `settings.ini`,
// `entrypoint.exe` or `boxkeeper/` (a new agent build).
import { basename, extname, join } from 'node:path';
import type { CloudApi, DownloadProgress, TaskOp } from '../../adapters/cloud-client.ts';
import { errorMessage } from '../../adapters/errors.ts';
import type { FreeswitchCli } from '../../adapters/freeswitch.ts';
import { parseShowCalls } from '../../adapters/freeswitch.ts';
import { decodeConfigText } from '../../adapters/ini.ts';
import type { Logger } from '../../adapters/logger.ts';
import type { PatchFs } from '../../adapters/patch-fs.ts';
import type { SqliteAdapter } from '../../adapters/sqlite.ts';
import type { PatchEffectInput } from '../../machines/patch.machine.ts';
import type { TaskNo } from '../../machines/update.machine.ts';
import { loadBoxConfig } from '../agent/box-config.ts';
import {
  appYmlValues,
  applyRemoteConfig,
  gatewayParamsFromConfig,
  injectAppYmlKeys,
  mergeIniText,
  setGatewayParams,
} from './config-edit.ts';
import type { Settings } from '../agent/settings.ts';
import type { SnapshotService } from '../snapshot/snapshots.ts';
import {
  checkFiles,
  checkManifest,
  checkSignature,
  MANIFEST_FILE,
  parseManifest,
  PatchTrustError,
  SIGNATURE_FILE,
  type PatchManifest,
} from './patch-trust.ts';
import { applySqlScript } from './sql-ledger.ts';
import type { UpdateEffects } from './update-engine.ts';
import { installMarkerPath, patchCounterPath } from '../agent/agent-files.ts';

/** Start/stop of the box services as the installer needs them (the supervisors implement it). */
export interface ServiceControl {
  /** Stops Java and FreeSWITCH and keeps them stopped until released; waits until they exited. */
  stopAll(): Promise<void>;
  /**
   * Releases the services and waits until both are ready (rejects at the deadline), then until
   * both have stayed up for `settleMs` (rejects if one stops).
   */
  startAll(deadline: number, settleMs: number): Promise<void>;
  /**
   * Releases the services (after a rollback: no health gate) and waits until each has come to
   * rest — running, or given up on (crash loop, not startable) — so that the tasks resumed next
   * find Java serving. Never rejects: the box runs what it has either way.
   */
  releaseAll(): Promise<void>;
  isRunning(name: 'java' | 'freeswitch'): Promise<boolean>;
}

/** Hands the agent over to a new build of itself (implemented by the CLI, which knows how). */
export interface SelfUpdater {
  /** Checks the build, starts the detached `boxkeeper self-update`, then asks this agent to exit. */
  handOver(build: string, versionNum: string): Promise<void>;
  /** Rejects unless the running agent is the build's version. */
  confirm(build: string): Promise<void>;
}

export interface UpdateEffectsDeps {
  settings: Settings;
  cloud: CloudApi;
  fs: PatchFs;
  sqlite: SqliteAdapter;
  extractZip: (
    zip: string,
    dest: string,
    onProgress?: (bytes: number, totalBytes: number) => void,
  ) => Promise<{ files: string[]; bytes: number }>;
  snapshots: () => Promise<SnapshotService>;
  services: ServiceControl;
  /** Tasks running on the box (box app, else the database). */
  unfinishedTasks: () => Promise<TaskNo[]>;
  /** Tasks the box app reports paused (GET /task/listPauseTaskNos). */
  pausedTasks: () => Promise<TaskNo[]>;
  fsCli: FreeswitchCli;
  logger: Logger;
  onProgress?: (versionCode: string, progress: DownloadProgress) => void;
  /** Progress of a version's extraction, in bytes. */
  onExtractProgress?: (versionCode: string, bytes: number, totalBytes: number) => void;
  /** Progress of a snapshot the cycle takes: files hashed of those changed. */
  onSnapshotProgress?: (
    snapshot: string,
    done: number,
    total: number,
    verb?: 'hashed' | 'restored',
  ) => void;
  /** configuration.ini changed on disk (the agent reloads it). */
  configChanged?: () => void;
  /** The version of the agent that runs (self-update confirmation). */
  agentVersion: string;
  selfUpdater?: SelfUpdater;
}

// The cloud's taskOpFlag values (TaskOp in the cloud client).
const PAUSE: (typeof TaskOp)['pause'] = 1;
const RESUME: (typeof TaskOp)['resume'] = 2;

/** What the installer applies from a patch's zip root (see the layout above). */
export const PATCH_ITEMS = new Set([
  'data',
  'icb-box.jar',
  'application.yml',
  'start.exe',
  'self_updater.exe',
  'settings.ini',
  'boxkeeper',
  'entrypoint.exe',
]);
// A signed patch's boxkeeper.manifest.json/.sig are checked, never applied: not content.

/** settings.ini keys that redirect the agent: its cloud, every path, its trust. */
function redirectsAgent(section: string, key: string): boolean {
  const s = section.toLowerCase();
  return (
    s === 'paths' || s === 'security' || (s === 'general' && key.toLowerCase() === 'host_addr')
  );
}

const SAFE_SEGMENT = /^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$/;

/** versionNum and versionCode become directory names: no separators, no "..". */
export function assertSafeSegment(what: string, value: string): void {
  if (!SAFE_SEGMENT.test(value) || value.includes('..')) {
    throw new Error(
      `${what} "${value}" cannot be used as a directory name (letters, digits, ".", "_", "-"; no "..")`,
    );
  }
}

/** One installed (or being installed) signed release, as patch-counter.json keeps it. */
interface CounterEntry {
  counter: number;
  versionNum: string;
  versionCode: string;
}

/**
 * `<agent_data>/patch-counter.json`: the counter of the last installed signed patch (anti-rollback,
 * docs/security.md). `applying` is what an install admitted and promotes once it is committed; a
 * rolled-back install leaves `installed` as it was, an operator revert restores `previous`.
 */
interface CounterRecord {
  installed: (CounterEntry & { backup: string | null; previous: CounterEntry | null }) | null;
  applying: CounterEntry | null;
}

export class BoxUpdateEffects implements UpdateEffects {
  private readonly d: UpdateEffectsDeps;
  /** Content dirs whose files were found as their signed manifest lists (this run). */
  private readonly verified = new Map<string, PatchManifest>();

  constructor(deps: UpdateEffectsDeps) {
    this.d = deps;
  }

  private get paths() {
    return this.d.settings.paths;
  }

  /**
   * Where a version's zip is extracted: patch/<versionNum>/<versionCode>-<md5 prefix>/ (a
   * version re-published with other bytes gets a directory of its own).
   */
  contentDir(v: { versionNum: string; versionCode: string; fileMd5: string }): string {
    assertSafeSegment('versionNum', v.versionNum);
    assertSafeSegment('versionCode', v.versionCode);
    const md5 = v.fileMd5.toLowerCase();
    if (!/^[0-9a-f]*$/.test(md5)) throw new Error(`fileMd5 "${v.fileMd5}" is not hexadecimal`);
    return join(
      this.paths.patch,
      v.versionNum,
      md5 === '' ? v.versionCode : `${v.versionCode}-${md5.slice(0, 12)}`,
    );
  }

  /** Marks an install in progress (its backup), for reconciling a lost patch.meta. */
  private get installMarker(): string {
    return installMarkerPath(this.paths.agentData);
  }

  private async text(path: string): Promise<string> {
    return decodeConfigText(await this.d.fs.readFile(path));
  }

  // ---- check, download ---------------------------------------------------------------------

  async checkVersion() {
    const config = await loadBoxConfig(this.paths.config, (p) => this.d.fs.readFile(p));
    const answer = await this.d.cloud.checkVersion(config.version);
    const codes = new Set<string>();
    for (const v of answer.upgradeList) {
      assertSafeSegment('versionNum', v.versionNum);
      assertSafeSegment('versionCode', v.versionCode);
      if (codes.has(v.versionCode)) throw new Error(`versionCode ${v.versionCode} is listed twice`);
      codes.add(v.versionCode);
    }
    this.d.logger.info(
      {
        current: config.version,
        upgradeMark: answer.upgradeMark,
        versions: answer.upgradeList.map((v) => v.versionNum),
      },
      'version check',
    );
    return { upgradeMark: answer.upgradeMark, upgradeList: answer.upgradeList };
  }

  async downloadPatch(v: PatchEffectInput, signal: AbortSignal): Promise<void> {
    const content = this.contentDir(v);
    if (v.fileMd5 === '') {
      this.d.logger.info({ version: v.versionNum }, 'version has no file (configuration only)');
      return;
    }
    // Extraction is all-or-nothing (temp dir + rename), so an existing dir is complete.
    if (await this.d.fs.isDir(content)) {
      await this.admitContent(v, content);
      return this.assertChangesSomething(v, content);
    }
    const dir = join(this.paths.patch, v.versionNum);
    const zip = join(dir, `${v.versionCode}.zip`);
    await this.d.fs.mkdir(dir);
    const expected = v.fileMd5.toLowerCase();
    if (!(await this.d.fs.exists(zip)) || (await this.d.fs.md5(zip)) !== expected) {
      const r = await this.d.cloud.downloadFile(v.versionCode, zip, {
        signal,
        onProgress: (p) => this.d.onProgress?.(v.versionCode, p),
      });
      if (r.noFile) {
        throw new Error(
          `the cloud has no file for ${v.versionNum} (${v.versionCode}) but announced MD5 ${v.fileMd5}`,
        );
      }
      this.d.logger.info(
        { version: v.versionNum, bytes: r.bytes, chunks: r.chunks, resumedFrom: r.resumedFrom },
        'downloaded',
      );
    }
    const actual = await this.d.fs.md5(zip);
    if (actual !== expected) {
      await this.d.fs.remove(zip);
      throw new Error(
        `integrity check failed for ${v.versionNum} (${v.versionCode}): MD5 ${actual}, expected ${expected}; the file was deleted`,
      );
    }
    const r = await this.d.extractZip(zip, content, (bytes, total) =>
      this.d.onExtractProgress?.(v.versionCode, bytes, total),
    );
    this.d.logger.info(
      { version: v.versionNum, files: r.files.length, bytes: r.bytes },
      'extracted',
    );
    await this.admitContent(v, content);
    await this.assertChangesSomething(v, content);
  }

  // ---- signed patches (docs/security.md) ---------------------------------------------------

  private get counterFile(): string {
    return patchCounterPath(this.paths.agentData);
  }

  private async readCounters(): Promise<CounterRecord> {
    let bytes: Uint8Array;
    try {
      bytes = await this.d.fs.readFile(this.counterFile);
    } catch (err) {
      if ((err as { code?: string }).code === 'ENOENT') return { installed: null, applying: null };
      throw err;
    }
    try {
      const r = JSON.parse(Buffer.from(bytes).toString('utf8')) as unknown;
      const entry = (e: unknown) =>
        e === null ||
        (typeof e === 'object' && Number.isSafeInteger((e as { counter?: unknown }).counter));
      if (
        typeof r !== 'object' ||
        r === null ||
        !entry((r as { installed?: unknown }).installed) ||
        !entry((r as { applying?: unknown }).applying)
      )
        throw new Error('expected {"installed": {"counter": …} | null, "applying": … | null}');
      return r as CounterRecord;
    } catch (err) {
      // Fail closed: without the last counter a replayed older release could not be told apart.
      throw new PatchTrustError(
        `${this.counterFile} is unreadable (${errorMessage(err)}); signed patches are refused until it is repaired (docs/security.md)`,
      );
    }
  }

  private async writeCounters(r: CounterRecord): Promise<void> {
    await this.d.fs.writeAtomic(this.counterFile, JSON.stringify(r, null, 2) + '\n');
  }

  /**
   * With [security] patch_keys set: the extracted patch must carry a manifest signed by one of the
   * keys that names this version, has not expired, counts above the last installed patch, and
   * lists exactly the files found. A refused patch is deleted (zip and extraction) before anything
   * on the box changes. Without keys: nothing to check (a warning at start says so).
   */
  private async verifyContent(
    v: PatchEffectInput,
    dir: string,
    counterAbove: number | null,
    release = true,
  ): Promise<PatchManifest | null> {
    const keys = this.d.settings.security.patchKeys;
    if (keys.length === 0) return null;
    let m = this.verified.get(dir);
    if (m === undefined) {
      const manifestPath = join(dir, MANIFEST_FILE);
      const sigPath = join(dir, SIGNATURE_FILE);
      if (!(await this.d.fs.exists(manifestPath)) || !(await this.d.fs.exists(sigPath)))
        throw new PatchTrustError(
          `the patch is not signed: ${MANIFEST_FILE} and ${SIGNATURE_FILE} expected at its zip root ([security] patch_keys is set)`,
        );
      const bytes = await this.d.fs.readFile(manifestPath);
      const sig = Buffer.from(await this.d.fs.readFile(sigPath)).toString('utf8');
      const key = checkSignature(bytes, sig, keys);
      m = parseManifest(bytes);
      if (release) checkManifest(m, { ...v, counterAbove, now: new Date() });
      const found = new Map<string, { size: number; sha256: string }>();
      for (const rel of await this.d.fs.listFiles(dir))
        found.set(rel, await this.d.fs.sha256(join(dir, rel)));
      checkFiles(m, found);
      this.verified.set(dir, m);
      this.d.logger.info(
        { version: v.versionNum, counter: m.counter, expires: m.expires, key: key + 1 },
        'patch signature verified',
      );
    } else if (release) {
      checkManifest(m, { ...v, counterAbove, now: new Date() });
    }
    return m;
  }

  /**
   * Whether an admitted version's patch is signed (its agent build may run, its settings.ini may
   * redirect the agent). After a restart mid-install the files are checked again, but not the
   * expiry or the counter: the install was admitted and must be able to finish.
   */
  private async signed(v: PatchEffectInput, dir: string): Promise<boolean> {
    if (this.d.settings.security.patchKeys.length === 0) return false;
    return (await this.verifyContent(v, dir, null, false)) !== null;
  }

  /** verifyContent at download time; a refusal deletes the patch and names the version. */
  private async admitContent(v: PatchEffectInput, dir: string): Promise<PatchManifest | null> {
    try {
      const { installed } = await this.readCounters();
      return await this.verifyContent(v, dir, installed?.counter ?? null);
    } catch (err) {
      if (!(err instanceof PatchTrustError)) throw err;
      this.verified.delete(dir);
      await this.d.fs.remove(dir);
      await this.d.fs.remove(join(this.paths.patch, v.versionNum, `${v.versionCode}.zip`));
      this.d.logger.error(
        { version: v.versionNum, versionCode: v.versionCode, reason: err.message },
        'patch refused; deleted',
      );
      throw new PatchTrustError(
        `refused ${v.versionNum} (${v.versionCode}): ${err.message}; the patch was deleted`,
        { cause: err },
      );
    }
  }

  /**
   * Before an install changes anything: every version's patch verified again (expiry is now),
   * their counters strictly increasing in the order they install and above the last installed
   * patch's (no mix-and-match of releases). The highest becomes `applying` in patch-counter.json.
   */
  async admitVersions({ versions }: { versions: PatchEffectInput[] }): Promise<void> {
    if (this.d.settings.security.patchKeys.length === 0) return;
    const record = await this.readCounters();
    let above = record.installed?.counter ?? null;
    let last: CounterEntry | null = null;
    for (const v of versions) {
      // A configuration-only version has no file to sign (docs/security.md says what that trusts).
      if (v.fileMd5 === '') continue;
      const dir = await this.content(v);
      if (dir === null) continue;
      const m = await this.admitContent(v, dir).catch((err: unknown) => {
        if (!(err instanceof PatchTrustError) || last === null) throw err;
        throw new PatchTrustError(`${err.message} (after ${last.versionNum} in this install)`);
      });
      if (m === null) continue;
      if (above !== null && m.counter <= above)
        throw new PatchTrustError(
          `refused ${v.versionNum} (${v.versionCode}): counter ${m.counter} is not above ${above}` +
            (last === null
              ? ", the last installed patch's"
              : ` (${last.versionNum}, installed before it)`),
        );
      above = m.counter;
      last = { counter: m.counter, versionNum: v.versionNum, versionCode: v.versionCode };
    }
    if (last !== null) await this.writeCounters({ ...record, applying: last });
  }

  /** A committed install: what it admitted becomes the last installed patch. */
  private async promoteCounter(backup: string | null): Promise<void> {
    const record = await this.readCounters().catch(() => null);
    if (record?.applying == null) return;
    const prior = record.installed;
    await this.writeCounters({
      installed: {
        ...record.applying,
        backup,
        previous:
          prior === null
            ? null
            : {
                counter: prior.counter,
                versionNum: prior.versionNum,
                versionCode: prior.versionCode,
              },
      },
      applying: null,
    });
  }

  /** A rolled-back install does not advance the counter; reverting an install restores the one before. */
  private async unwindCounter(restored: string): Promise<void> {
    const record = await this.readCounters().catch(() => null);
    if (record === null) return;
    const installed = record.installed;
    const reverted = installed !== null && installed.backup === restored;
    if (record.applying === null && !reverted) return;
    await this.writeCounters({
      installed: reverted
        ? installed.previous === null
          ? null
          : { ...installed.previous, backup: null, previous: null }
        : installed,
      applying: null,
    });
  }

  /**
   * A patch whose zip holds nothing the installer applies would be reported "installed" with
   * nothing changed: refused here, before any change to the box.
   */
  private async assertChangesSomething(v: PatchEffectInput, content: string): Promise<void> {
    const entries = await this.d.fs.entries(content);
    if (entries.some((n) => PATCH_ITEMS.has(n))) return;
    await this.d.fs.remove(content);
    const shown = entries.slice(0, 10).map((n) => `"${n}"`);
    if (entries.length > 10) shown.push(`… (${entries.length} entries)`);
    throw new Error(
      `the patch of ${v.versionNum} (${v.versionCode}) changes nothing: its zip root holds ` +
        `${shown.length === 0 ? 'nothing' : shown.join(', ')}; ` +
        `expected at least one of ${[...PATCH_ITEMS].join(', ')} at the zip root`,
    );
  }

  // ---- per-version install steps -----------------------------------------------------------

  private async content(v: PatchEffectInput): Promise<string | null> {
    if (v.fileMd5 === '') return null;
    const dir = this.contentDir(v);
    // Gone (cache cleared by hand, or a version imported from the Python tool, which extracted
    // elsewhere): fetch it again — the zip if still valid, else from the cloud.
    if (!(await this.d.fs.isDir(dir))) await this.downloadPatch(v, new AbortController().signal);
    return dir;
  }

  private async dbPath(): Promise<string> {
    const config = await loadBoxConfig(this.paths.config, (p) => this.d.fs.readFile(p));
    if (config.dbFileName === '')
      throw new Error(`${this.paths.config}: [dbfile] name is empty; cannot run SQL patches`);
    return join(this.paths.data, config.dbFileName);
  }

  async applySql(v: PatchEffectInput): Promise<void> {
    const content = await this.content(v);
    if (content === null) return;
    const data = join(content, 'data');
    if (!(await this.d.fs.isDir(data))) return;
    const top = await this.d.fs.topLevelFiles(data);
    const scripts = top.filter((n) => extname(n).toLowerCase() === '.sql');
    if (scripts.length > 0) {
      // Read the configured DB now: a DB switch by an earlier version counts (W-RACE-5).
      const db = await this.dbPath();
      for (const name of scripts) {
        const text = await this.text(join(data, name));
        const r = await applySqlScript(this.d.sqlite, db, { name, text, version: v.versionNum });
        this.d.logger.info(
          { version: v.versionNum, script: name, db, applied: r.applied },
          r.applied ? 'SQL script applied' : 'SQL script already applied; skipped',
        );
      }
    }
    // The rest of data/ (DB files and whatever else) goes over the live data dir.
    for (const rel of await this.d.fs.listFiles(data)) {
      if (!rel.includes('/') && extname(rel).toLowerCase() === '.sql') continue;
      const changed = await this.d.fs.copyFileAtomic(join(data, rel), join(this.paths.data, rel));
      if (changed)
        this.d.logger.info({ version: v.versionNum, file: `data/${rel}` }, 'data file replaced');
    }
  }

  async replaceFiles(v: PatchEffectInput): Promise<{ agentBuild: string | null }> {
    const content = await this.content(v);
    if (content === null) return { agentBuild: null };
    const targets: Array<[string, string]> = [
      ['icb-box.jar', this.paths.jar],
      ['application.yml', this.paths.appYml],
      ['start.exe', this.paths.starter],
      ['self_updater.exe', this.paths.updater],
    ];
    for (const [name, dest] of targets) {
      const src = join(content, name);
      if (!(await this.d.fs.exists(src))) continue;
      const changed = await this.d.fs.copyFileAtomic(src, dest);
      this.d.logger.info({ version: v.versionNum, file: name, dest, changed }, 'file replaced');
    }
    // A build of the Python tool is not installed: boxkeeper replaces it.
    if (await this.d.fs.exists(join(content, 'entrypoint.exe'))) {
      this.d.logger.warn(
        { version: v.versionNum },
        'the patch carries entrypoint.exe (a build of the Python tool); boxkeeper does not install it',
      );
    }
    const build = join(content, 'boxkeeper');
    if (!(await this.d.fs.isDir(build))) return { agentBuild: null };
    // Running a build is running its code: only a signed patch may bring one.
    if (!(await this.signed(v, content))) {
      this.d.logger.warn(
        { version: v.versionNum },
        'the patch carries an agent build (boxkeeper/) but is not signed; the build is not run (docs/security.md)',
      );
      return { agentBuild: null };
    }
    return { agentBuild: build };
  }

  async mergeSettings(v: PatchEffectInput): Promise<void> {
    const content = await this.content(v);
    if (content === null) return;
    const partial = join(content, 'settings.ini');
    if (!(await this.d.fs.exists(partial))) return;
    const file = this.d.settings.file;
    const current = await this.text(file);
    // Keys that point the agent elsewhere (its cloud, its paths, its trust) only from a signed patch.
    const signed = await this.signed(v, content);
    const r = mergeIniText(
      current,
      await this.text(partial),
      file,
      (section, key) => signed || !redirectsAgent(section, key),
    );
    if (r.refused.length > 0)
      this.d.logger.warn(
        { version: v.versionNum, keys: r.refused.map((k) => `[${k.section}] ${k.key}`) },
        'settings.ini of an unsigned patch may not change these keys; not merged (docs/security.md)',
      );
    if (r.changes.length === 0) return;
    await this.d.fs.writeAtomic(file, r.text);
    this.d.logger.info(
      {
        version: v.versionNum,
        file,
        changes: r.changes.map((c) => `[${c.section}] ${c.key}`),
      },
      'settings.ini merged (takes effect at the next agent start)',
    );
  }

  async applyConfig(v: PatchEffectInput): Promise<void> {
    const map: Record<string, unknown> = { ...v.argumentConfigMap };
    const content = await this.content(v);
    if (content !== null) {
      // An extension-less file in data/ is a new database: switch to it (§3.11).
      const dbFile = (await this.d.fs.topLevelFiles(join(content, 'data'))).find(
        (n) => extname(n) === '',
      );
      if (dbFile !== undefined) map.dbfileName = dbFile;
    }
    const file = this.paths.config;
    const r = applyRemoteConfig(
      await this.text(file),
      { versionNum: v.versionNum, versionCode: v.versionCode, map },
      file,
    );
    if (r.unknown.length > 0)
      this.d.logger.warn(
        { version: v.versionNum, keys: r.unknown },
        'remote config keys with no mapping; ignored',
      );
    await this.d.fs.writeAtomic(file, r.text);
    this.d.logger.info({ version: v.versionNum, applied: r.applied }, 'configuration.ini updated');
    this.d.configChanged?.();
  }

  // ---- tasks, calls, services ------------------------------------------------------------

  async listTasks() {
    const tasks = await this.d.unfinishedTasks();
    return { tasks };
  }

  /**
   * The tasks the box app reports paused, asked until `until` (it has just been started): the
   * tasks the Python tool paused before handing an install over (the take-over of an import).
   * Operator-paused tasks cannot be told apart; the Python tool resumed them as well (§1.7).
   */
  async listPausedTasks({ until }: { until: number }, signal: AbortSignal) {
    for (;;) {
      try {
        const tasks = await this.d.pausedTasks();
        this.d.logger.info({ tasks }, 'paused tasks adopted (paused before the take-over)');
        return { tasks };
      } catch (err) {
        if (Date.now() >= until || signal.aborted) {
          this.d.logger.warn(
            { err: errorMessage(err) },
            'cannot list the paused tasks; the tasks paused before the take-over stay paused',
          );
          throw err;
        }
        await new Promise((r) => setTimeout(r, 1000));
      }
    }
  }

  async pauseTasks({ tasks }: { tasks: TaskNo[] }): Promise<void> {
    if (tasks.length === 0) return;
    await this.d.cloud.setTaskStatus(tasks, PAUSE);
    this.d.logger.info({ tasks }, 'tasks paused');
  }

  async resumeTasks({ tasks }: { tasks: TaskNo[] }): Promise<void> {
    if (tasks.length === 0) return;
    await this.d.cloud.setTaskStatus(tasks, RESUME);
    this.d.logger.info({ tasks }, 'tasks resumed');
  }

  async checkCalls() {
    try {
      return { active: parseShowCalls(await this.d.fsCli.run('show calls')) };
    } catch (err) {
      // FreeSWITCH down: no calls can be active.
      if (!(await this.d.services.isRunning('freeswitch'))) return { active: 0 };
      throw err;
    }
  }

  async stopServices(): Promise<void> {
    await this.d.services.stopAll();
  }

  async startServices({ deadline, settleMs }: { deadline: number; settleMs: number }) {
    await this.d.services.startAll(deadline, settleMs);
  }

  async releaseServices(): Promise<void> {
    await this.d.services.releaseAll();
  }

  async finalizeConfig(): Promise<void> {
    const configText = await this.text(this.paths.config);
    const gateways = gatewayParamsFromConfig(configText);
    if (gateways.unknown.length > 0)
      this.d.logger.warn(
        { keys: gateways.unknown },
        'configuration.ini [FreeSWITCH] keys with no gateway param; ignored',
      );
    for (const name of ['callbox', 'numconvert'] as const) {
      const file = join(this.paths.fsConf, `${name}.xml`);
      if (!(await this.d.fs.exists(file))) {
        this.d.logger.warn({ file }, 'gateway file missing; not updated');
        continue;
      }
      const r = setGatewayParams(await this.text(file), gateways[name], file);
      if (r.changed.length > 0) {
        await this.d.fs.writeAtomic(file, r.text);
        this.d.logger.info({ file, params: r.changed }, 'gateway updated');
      }
    }
    const yml = this.paths.appYml;
    const values = appYmlValues(configText, this.paths.data, this.d.settings.platform);
    const r = injectAppYmlKeys(await this.text(yml), values, yml);
    if (r.changed.length > 0) {
      await this.d.fs.writeAtomic(yml, r.text);
      this.d.logger.info({ file: yml, keys: r.changed }, 'application.yml updated');
    }
  }

  // ---- snapshots ---------------------------------------------------------------------------

  async backup({ name, subject }: { name: string; subject: string }) {
    const snapshots = await this.d.snapshots();
    // Re-run after a crash: the backup of this attempt exists already (nothing was applied
    // before it was recorded), so it is the one.
    if (!(await snapshots.list()).some((v) => v.version === name))
      await snapshots.commit({
        version: name,
        subject,
        onProgress: (done, total) => this.d.onSnapshotProgress?.(name, done, total),
      });
    await this.d.fs.writeAtomic(this.installMarker, JSON.stringify({ backup: name, subject }));
    return { version: name };
  }

  async commitSnapshot({ version, subject }: { version: string; subject: string }) {
    // The install is complete (services up, tasks resumed): nothing to reconcile any more. The
    // counter is promoted first: after a crash here the marker still names the backup.
    await this.promoteCounter(await this.markerBackup());
    await this.d.fs.remove(this.installMarker);
    const snapshots = await this.d.snapshots();
    const names = new Set((await snapshots.list()).map((v) => v.version));
    let name = version;
    for (let i = 2; names.has(name); i++) name = `${version}-${i}`;
    const r = await snapshots.commit({
      version: name,
      subject,
      onProgress: (done, total) => this.d.onSnapshotProgress?.(name, done, total),
    });
    return { version: r.version };
  }

  async rollbackSnapshot({ version }: { version: string }): Promise<{ restored: string | null }> {
    // The state has the services down, but a failed health gate left them supervised and
    // restarting: stop them before their files are put back (a running jar cannot be replaced
    // on Windows, and a restart mid-restore would start half a build). A no-op when stopped.
    await this.d.services.stopAll();
    const snapshots = await this.d.snapshots();
    const r = await snapshots.rollback(version, {
      discardChanges: true,
      onProgress: (done, total) => this.d.onSnapshotProgress?.(version, done, total, 'restored'),
    });
    await this.unwindCounter(version);
    await this.d.fs.remove(this.installMarker);
    this.d.logger.warn(
      { version, changed: r.changed },
      'box rolled back to the pre-update snapshot',
    );
    this.d.configChanged?.();
    // What the box runs now, as results should name it; unreadable is not a failed restore.
    const restored = await loadBoxConfig(this.paths.config, (p) => this.d.fs.readFile(p)).then(
      (c) => c.version,
      () => null,
    );
    return { restored };
  }

  /** The backup the install-in-progress marker names, or null. */
  private async markerBackup(): Promise<string | null> {
    try {
      const marker = JSON.parse(
        Buffer.from(await this.d.fs.readFile(this.installMarker)).toString('utf8'),
      ) as { backup?: unknown };
      return typeof marker.backup === 'string' ? marker.backup : null;
    } catch {
      return null;
    }
  }

  async reconcile({ reason }: { reason: string }) {
    this.d.logger.warn({ reason }, 'reconciling the update state from the box');
    let backup: string | null = null;
    let note = 'no install was in progress';
    try {
      const marker = JSON.parse(
        Buffer.from(await this.d.fs.readFile(this.installMarker)).toString('utf8'),
      ) as { backup?: unknown };
      const name = typeof marker.backup === 'string' ? marker.backup : '';
      const snapshots = await this.d.snapshots();
      if ((await snapshots.list()).some((v) => v.version === name)) {
        backup = name;
        note = `an install was in progress (backup ${name}): the box is rolled back to it`;
      } else {
        note = `an install was in progress but its backup "${name}" is not in the repository; nothing rolled back`;
      }
    } catch (err) {
      if (!/ENOENT/.test(errorMessage(err)))
        note = `cannot tell whether an install was in progress (${errorMessage(err)}); nothing rolled back`;
    }
    return { backup, note };
  }

  async clearCache(): Promise<void> {
    const keep = basename(this.paths.patchMeta);
    for (const name of await this.d.fs.entries(this.paths.patch)) {
      if (name === keep || name.startsWith(`${keep}.`) || name.startsWith(`.${keep}.`)) continue;
      await this.d.fs.remove(join(this.paths.patch, name));
    }
    this.d.logger.info({ dir: this.paths.patch }, 'patch cache cleared');
  }

  // ---- self-update -------------------------------------------------------------------------

  async handOver({ versionNum, agentBuild }: { versionNum: string; agentBuild: string }) {
    if (this.d.selfUpdater === undefined) throw new Error('this agent cannot update itself here');
    await this.d.selfUpdater.handOver(agentBuild, versionNum);
  }

  async confirmSelfUpdate({ agentBuild }: { versionNum: string; agentBuild: string }) {
    if (this.d.selfUpdater === undefined) throw new Error('this agent cannot update itself here');
    await this.d.selfUpdater.confirm(agentBuild);
  }
}
