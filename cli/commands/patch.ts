// `boxkeeper patch pack --switch-over …`: builds the patch zip that moves a box from the Python
// tool to boxkeeper through the tool's own self-update (docs/install.md, "Switching a fleet from the Python tool"). `patch` takes
// subcommands so that more can join it (`patch keygen`, issue 9).
import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { mkdir, mkdtemp, readdir, readFile, rename, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { basename, dirname, join, resolve } from 'node:path';
import { ExitCode, UsageError, BoxkeeperError, errorMessage } from '../../adapters/errors.ts';
import { nodePackageTree } from '../../adapters/package-tree.ts';
import { extractZipSafely } from '../../adapters/zip.ts';
import { writeZip, type ZipEntrySource } from '../../adapters/zip-write.ts';
import {
  bakedPackagePath,
  bakeEntrypoint,
  ENTRYPOINT,
  hasVersionSlot,
  linuxEntrypoint,
  PATCH_PACKAGE_DIR,
  verifyPackage,
} from '../../services/switch-over.ts';
import { assertSafeSegment } from '../../services/update-effects.ts';
import { realWorld } from '../context.ts';
import type { Command } from './index.ts';

const str = (v: unknown): string | undefined => (typeof v === 'string' ? v : undefined);

async function md5(file: string): Promise<string> {
  const hash = createHash('md5');
  for await (const chunk of createReadStream(file)) hash.update(chunk as Buffer);
  return hash.digest('hex');
}

/** The package folder: a directory with MANIFEST.json, or the one folder inside it/an archive. */
async function packageFolder(arg: string, scratch: string): Promise<string> {
  const tree = nodePackageTree;
  let dir = resolve(arg);
  if (!(await tree.exists(dir)))
    throw new UsageError(`--package ${arg}: no such file or directory`);
  if (/\.zip$/i.test(dir)) {
    const out = join(scratch, 'package');
    await extractZipSafely(dir, out, {
      maxEntries: 10_000,
      maxTotalBytes: 4 * 1024 ** 3,
      maxRatio: 1000,
    });
    dir = out;
  } else if (/\.(tar\.gz|tgz)$/i.test(dir)) {
    const out = join(scratch, 'package');
    await mkdir(out);
    const r = await realWorld.processes.exec('tar', ['-xzf', dir, '-C', out], {
      timeoutMs: 300_000,
    });
    if (r.code !== 0)
      throw new BoxkeeperError(`cannot unpack ${arg}: ${r.stderr.trim()}`, ExitCode.config);
    dir = out;
  }
  if (await tree.exists(join(dir, 'MANIFEST.json'))) return dir;
  const subdirs = (await readdir(dir, { withFileTypes: true })).filter((e) => e.isDirectory());
  const only = subdirs.length === 1 ? join(dir, subdirs[0]?.name ?? '') : undefined;
  if (only !== undefined && (await tree.exists(join(only, 'MANIFEST.json')))) return only;
  throw new UsageError(`--package ${arg}: no MANIFEST.json (not a boxkeeper release package)`);
}

async function packSwitchOver(values: Record<string, unknown>): Promise<ExitCode> {
  const pkgArg = str(values.package);
  const versionNum = str(values['version-num']);
  const versionCode = str(values['version-code']);
  const out = str(values.out);
  const missing = [
    pkgArg === undefined ? '--package' : '',
    versionNum === undefined ? '--version-num' : '',
    versionCode === undefined ? '--version-code' : '',
    out === undefined ? '--out' : '',
  ].filter((m) => m !== '');
  if (
    pkgArg === undefined ||
    versionNum === undefined ||
    versionCode === undefined ||
    out === undefined
  )
    throw new UsageError(`patch pack --switch-over needs ${missing.join(', ')}`);
  try {
    assertSafeSegment('--version-num', versionNum);
    assertSafeSegment('--version-code', versionCode);
  } catch (err) {
    throw new UsageError(errorMessage(err));
  }
  const scratch = await mkdtemp(join(tmpdir(), 'bk-pack-'));
  try {
    const dir = await packageFolder(pkgArg, scratch);
    const { manifest, problems } = await verifyPackage(dir, nodePackageTree);
    if (problems.length > 0)
      throw new BoxkeeperError(
        `${dir} does not match its MANIFEST.json: ${problems.slice(0, 5).join('; ')}`,
        ExitCode.config,
      );
    const entrypointArg = str(values.entrypoint);
    let entrypoint: ZipEntrySource;
    let entrypointNote: string;
    const shipped = join(dir, 'bin', ENTRYPOINT);
    const winLauncher =
      entrypointArg !== undefined
        ? resolve(entrypointArg)
        : manifest.target.startsWith('win') && (await nodePackageTree.exists(shipped))
          ? shipped
          : undefined;
    if (winLauncher !== undefined) {
      // The Windows launcher gets the version baked into its slot; another file goes as it is.
      const exe = await readFile(winLauncher).catch((err: unknown) => {
        throw new UsageError(`--entrypoint ${winLauncher}: ${errorMessage(err)}`);
      });
      let data: Buffer = exe;
      if (hasVersionSlot(exe)) {
        try {
          data = bakeEntrypoint(exe, versionNum);
        } catch (err) {
          throw new UsageError(`${winLauncher}: ${errorMessage(err)}`);
        }
      }
      entrypoint = { name: ENTRYPOINT, data, mode: 0o755 };
      entrypointNote =
        (entrypointArg ?? `${ENTRYPOINT} of the package`) +
        (data === exe ? ' (no version slot: as given)' : ` (${versionNum} baked in)`);
    } else if (manifest.target.startsWith('linux')) {
      entrypoint = {
        name: ENTRYPOINT,
        data: Buffer.from(linuxEntrypoint(versionNum)),
        mode: 0o755,
      };
      entrypointNote = 'generated Linux launcher';
    } else {
      throw new UsageError(
        `a ${manifest.target} package without bin/${ENTRYPOINT} needs --entrypoint FILE (the Windows launcher built from packaging/win)`,
      );
    }
    const entries: ZipEntrySource[] = [
      entrypoint,
      ...[...manifest.files.map((f) => f.path), 'MANIFEST.json'].map((path) => ({
        name: `${PATCH_PACKAGE_DIR}/${path}`,
        file: join(dir, path),
      })),
    ];
    const dest = resolve(out);
    const temp = join(dirname(dest), `.${basename(dest)}.partial`);
    const size = await writeZip(temp, entries);
    await rename(temp, dest);
    const sum = await md5(dest);
    process.stdout.write(
      [
        `wrote ${dest}`,
        `  versionNum   ${versionNum}`,
        `  versionCode  ${versionCode}`,
        `  fileMd5      ${sum}`,
        `  size         ${size} bytes`,
        `  package      boxkeeper ${manifest.version} (${manifest.target}), ${manifest.files.length} files under ${PATCH_PACKAGE_DIR}/`,
        `  entrypoint   ${entrypointNote}; runs ${bakedPackagePath(versionNum)} from <manager_dir>`,
        '',
      ].join('\n'),
    );
    if (values.json === true)
      await writeFile(
        `${dest}.json`,
        JSON.stringify({ versionNum, versionCode, fileMd5: sum, size }, null, 2) + '\n',
      );
    return ExitCode.ok;
  } finally {
    await rm(scratch, { recursive: true, force: true });
  }
}

export const patchCommand: Command = {
  name: 'patch',
  summary: 'Build patches for the cloud: patch pack --switch-over',
  usage:
    'pack --switch-over --package DIR|ARCHIVE --version-num V --version-code C --out FILE [--entrypoint FILE]',
  description:
    "pack --switch-over: a patch zip in the Python tool's layout that replaces the tool by\n" +
    'boxkeeper through its self-update: entrypoint.exe (the launcher: --entrypoint, else the\n' +
    "Windows package's bin/entrypoint.exe, else for a Linux package a generated sh launcher;\n" +
    'a Windows launcher gets V baked in) and the package under boxkeeper-package/. Prints\n' +
    "the MD5 (the cloud's fileMd5) and the size. See docs/install.md (switching a fleet).",
  positionals: true,
  options: {
    'switch-over': { type: 'boolean', help: 'the switch-over patch (the only kind so far)' },
    package: { type: 'string', help: 'a boxkeeper release package: folder, .zip or .tar.gz' },
    'version-num': { type: 'string', help: 'the versionNum the cloud announces (e.g. V2.0)' },
    'version-code': { type: 'string', help: 'the versionCode the cloud announces' },
    out: { type: 'string', help: 'the patch zip to write' },
    entrypoint: { type: 'string', help: 'the launcher to ship as entrypoint.exe' },
    json: {
      type: 'boolean',
      help: 'also write <out>.json with versionNum, versionCode, fileMd5, size',
    },
  },
  async run(args) {
    const [sub, ...rest] = args.positionals;
    if (sub !== 'pack')
      throw new UsageError(
        `patch: unknown subcommand "${sub ?? ''}"; usage: boxkeeper patch ${patchCommand.usage}`,
      );
    if (rest.length > 0) throw new UsageError(`patch pack: unexpected argument "${rest[0] ?? ''}"`);
    if (args.values['switch-over'] !== true)
      throw new UsageError('patch pack: only --switch-over patches can be packed so far');
    return packSwitchOver(args.values);
  },
};
