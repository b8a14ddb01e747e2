// The switch-over from the Python tool (docs/install.md, switching a fleet): the patch layout the deployed
// tool's self-update understands, the launcher that stands in for its entrypoint.exe, and the
// idempotent "ensure" steps `boxkeeper switch-over` runs (find the box's settings.ini, install
// the package under <manager_dir>/boxkeeper, verified against its MANIFEST.json).
import { dirname, join } from 'node:path';
import type { Logger } from '../../adapters/logger.ts';
import type { PackageTree } from '../../adapters/package-tree.ts';
import type { Registry } from '../../adapters/registry.ts';
import { resolveBoxPath } from '../agent/box-paths.ts';
import { REGISTRY_KEY, REGISTRY_VALUE } from '../agent/settings.ts';
import { fileStamp } from '../agent/agent-files.ts';

/** Where the package sits inside the switch-over patch (and so in <patch>/<V>/). */
export const PATCH_PACKAGE_DIR = 'boxkeeper-package';
/** The install home, inside the Python tool's manager dir (<box>/RemoteManagerDist). */
export const INSTALL_DIR = 'boxkeeper';
/** The launcher's name in the patch: the Python updater copies exactly this file. */
export const ENTRYPOINT = 'entrypoint.exe';

export interface PackageManifest {
  name: 'boxkeeper';
  version: string;
  target: string;
  node: string;
  files: Array<{ path: string; size: number; sha256: string }>;
}

/**
 * The package folder relative to the manager dir, for a patch extracted by the Python tool to
 * <box>/patch/<V>/ (its defaults: `[paths] patch = \patch`, `manager_dir = \RemoteManagerDist`).
 */
export function bakedPackagePath(versionNum: string): string {
  return `../patch/${versionNum}/${PATCH_PACKAGE_DIR}`;
}

/**
 * The Linux stand-in for the Windows entrypoint.exe (same contract, docs/install.md, switching a fleet): run
 * the installed package if there is one, else the package beside the launcher, else the one in
 * the patch folder; `switch-over --from-patch V`, the CWD and any arguments passed through.
 */
export function linuxEntrypoint(versionNum: string): string {
  return `#!/bin/sh
# boxkeeper switch-over launcher (stands in for the Python tool's entrypoint.exe).
V='${versionNum}'
self=$0
if command -v readlink >/dev/null 2>&1; then self=$(readlink -f -- "$0"); fi
case $self in */*) dir=\${self%/*} ;; *) dir=. ;; esac
dir=$(cd -- "$dir" && pwd -P) || exit 1
for pkg in "$dir/${INSTALL_DIR}" "$dir/${PATCH_PACKAGE_DIR}" "$dir/${bakedPackagePath(versionNum)}"; do
  if [ -f "$pkg/lib/boxkeeper.mjs" ] && [ -f "$pkg/runtime/node" ]; then
    # Python's zipfile drops the executable bits.
    [ -x "$pkg/runtime/node" ] || chmod +x "$pkg/runtime/node" || exit 1
    exec "$pkg/runtime/node" "$pkg/lib/boxkeeper.mjs" switch-over --from-patch "$V" "$@"
  fi
done
echo "boxkeeper switch-over: no boxkeeper package in $dir/${INSTALL_DIR}, $dir/${PATCH_PACKAGE_DIR} or $dir/${bakedPackagePath(versionNum)}" >&2
exit 1
`;
}

/**
 * The slot of packaging/win/launcher.c's entrypoint.exe (-DBOXKEEPER_ENTRYPOINT) that holds the
 * patch version: this marker, then ENTRYPOINT_VERSION_SLOT bytes, the version in ASCII and NULs.
 */
export const ENTRYPOINT_VERSION_MARKER = 'BOXKEEPER_SWITCH_OVER_VERSION=';
export const ENTRYPOINT_VERSION_SLOT = 64;

/** Whether an executable has the version slot of the Windows switch-over launcher. */
export function hasVersionSlot(exe: Buffer): boolean {
  return exe.includes(ENTRYPOINT_VERSION_MARKER, 0, 'latin1');
}

/**
 * A copy of the Windows entrypoint.exe with `versionNum` baked into its version slot: the
 * launcher then looks for <dir>\..\patch\<versionNum>\boxkeeper-package and runs
 * `switch-over --from-patch <versionNum>`. The slot must occur exactly once.
 */
export function bakeEntrypoint(exe: Buffer, versionNum: string): Buffer {
  const marker = Buffer.from(ENTRYPOINT_VERSION_MARKER, 'latin1');
  const at = exe.indexOf(marker);
  if (at < 0)
    throw new Error(`no version slot (${ENTRYPOINT_VERSION_MARKER}) in the entrypoint executable`);
  if (exe.indexOf(marker, at + 1) >= 0)
    throw new Error(`the entrypoint executable has more than one ${ENTRYPOINT_VERSION_MARKER}`);
  const value = Buffer.from(versionNum, 'latin1');
  if (!/^[\x21-\x7e]+$/.test(versionNum) || value.length > ENTRYPOINT_VERSION_SLOT - 1)
    throw new Error(
      `version ${JSON.stringify(versionNum)} does not fit the entrypoint's slot (printable ASCII, at most ${ENTRYPOINT_VERSION_SLOT - 1} bytes)`,
    );
  const start = at + marker.length;
  if (start + ENTRYPOINT_VERSION_SLOT > exe.length)
    throw new Error('the entrypoint version slot is cut off');
  const out = Buffer.from(exe);
  out.fill(0, start, start + ENTRYPOINT_VERSION_SLOT);
  value.copy(out, start);
  return out;
}

/** Reads a package's MANIFEST.json, or explains why it is not a boxkeeper package. */
export async function readManifest(dir: string, tree: PackageTree): Promise<PackageManifest> {
  const file = join(dir, 'MANIFEST.json');
  let m: Partial<Record<keyof PackageManifest, unknown>>;
  try {
    m = JSON.parse(await tree.readText(file)) as typeof m;
  } catch (err) {
    throw new Error(`${dir} is not a boxkeeper package: ${file}: ${(err as Error).message}`, {
      cause: err,
    });
  }
  if (m.name !== 'boxkeeper' || typeof m.version !== 'string' || !Array.isArray(m.files))
    throw new Error(`${file} is not the manifest of a boxkeeper package`);
  return m as PackageManifest;
}

/** Differences between a package folder and its MANIFEST.json (sizes, then sha256s). */
export async function verifyPackage(
  dir: string,
  tree: PackageTree,
): Promise<{ manifest: PackageManifest; problems: string[] }> {
  const manifest = await readManifest(dir, tree);
  const problems: string[] = [];
  for (const f of manifest.files) {
    const path = join(dir, f.path);
    if (!(await tree.exists(path))) {
      problems.push(`${f.path}: missing`);
      continue;
    }
    if ((await tree.size(path)) !== f.size) problems.push(`${f.path}: size differs`);
    else if ((await tree.sha256(path)) !== f.sha256) problems.push(`${f.path}: sha256 differs`);
  }
  return { manifest, problems };
}

/** The files a package's launcher needs executable (Linux; a zip extraction may drop the bits). */
export const EXECUTABLES = ['bin/boxkeeper', 'runtime/node'];

export interface InstallResult {
  action: 'installed' | 'kept' | 'replaced' | 'running-from-home';
  home: string;
  version: string;
  /** A broken install that was set aside. */
  setAside?: string;
}

/**
 * Ensures `home` holds a verified boxkeeper package. An install that verifies is kept as it is
 * (a same or newer build after a boxkeeper self-update must never be replaced by the switch-over
 * package again); a missing one is copied from `source` to `<home>.incoming` (every file
 * fsynced), verified, and renamed into place; one that fails verification is set aside as
 * `<home>.broken-<time>` first. Safe to run again at any point.
 */
export async function ensureInstalled(
  source: string,
  home: string,
  deps: { tree: PackageTree; logger: Logger; now: () => Date },
): Promise<InstallResult> {
  const { tree, logger } = deps;
  const sameDir =
    (await tree.exists(home)) && (await tree.realpath(source)) === (await tree.realpath(home));
  if (sameDir) {
    const { manifest, problems } = await verifyPackage(home, tree);
    if (problems.length > 0)
      throw new Error(
        `the installed package ${home} does not match its MANIFEST.json: ${problems.slice(0, 5).join('; ')}`,
      );
    return { action: 'running-from-home', home, version: manifest.version };
  }
  let setAside: string | undefined;
  if (await tree.exists(home)) {
    let problems: string[];
    let version = '?';
    try {
      const v = await verifyPackage(home, tree);
      problems = v.problems;
      version = v.manifest.version;
    } catch (err) {
      problems = [(err as Error).message];
    }
    if (problems.length === 0) {
      logger.info({ home, version }, 'boxkeeper is installed already (verified); kept');
      return { action: 'kept', home, version };
    }
    setAside = `${home}.broken-${fileStamp(deps.now())}`;
    logger.warn(
      { home, setAside, problems: problems.slice(0, 10) },
      'the installed package does not match its MANIFEST.json; set aside and installed again',
    );
    await tree.rename(home, setAside);
  }
  const { manifest, problems } = await verifyPackage(source, tree);
  if (problems.length > 0)
    throw new Error(
      `the package ${source} does not match its MANIFEST.json: ${problems.slice(0, 5).join('; ')}`,
    );
  const incoming = `${home}.incoming`;
  await tree.remove(incoming);
  await tree.copyTreeDurable(source, incoming);
  const copy = await verifyPackage(incoming, tree);
  if (copy.problems.length > 0)
    throw new Error(
      `the copy ${incoming} does not verify: ${copy.problems.slice(0, 5).join('; ')}`,
    );
  for (const rel of EXECUTABLES) {
    const p = join(incoming, rel);
    if (await tree.exists(p)) await tree.makeExecutable(p);
  }
  await tree.rename(incoming, home);
  await tree.fsyncDir(dirname(home));
  logger.info(
    { home, version: manifest.version, files: manifest.files.length },
    'boxkeeper package installed and verified',
  );
  return {
    action: setAside === undefined ? 'installed' : 'replaced',
    home,
    version: manifest.version,
    ...(setAside === undefined ? {} : { setAside }),
  };
}

/**
 * The Python tool's settings.ini for the switch-over: `--settings`, else ./settings/settings.ini
 * (the Python updater starts the entrypoint in the manager dir), else
 * <box>\<manager_dir>\settings\settings.ini with the box dir from the registry (Windows).
 */
export async function locateSwitchOverSettings(opts: {
  flag: string | undefined;
  cwd: string;
  platform: NodeJS.Platform;
  exists: (path: string) => Promise<boolean>;
  registry: Registry;
}): Promise<{ file: string; tried: string[] }> {
  const tried: string[] = [];
  const resolved = (base: string, raw: string) => {
    const r = resolveBoxPath(opts.platform, base, raw);
    return r.ok ? r.path : raw;
  };
  if (opts.flag !== undefined) return { file: resolved(opts.cwd, opts.flag), tried };
  const local = resolved(opts.cwd, 'settings/settings.ini');
  tried.push(local);
  if (await opts.exists(local)) return { file: local, tried };
  const box = await opts.registry.readString(REGISTRY_KEY, REGISTRY_VALUE);
  if (box !== undefined && box.trim() !== '') {
    const file = resolved(box.trim(), '\\RemoteManagerDist\\settings\\settings.ini');
    tried.push(file);
    if (await opts.exists(file)) return { file, tried };
  }
  throw new Error(
    `cannot find the Python tool's settings.ini (tried ${tried.join(', ')}${box === undefined ? '; no box dir in the registry' : ''}); pass --settings`,
  );
}
