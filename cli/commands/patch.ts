// Patches for the cloud, built by release engineers:
// - `patch keygen`: an Ed25519 key pair for signed patches (docs/security.md);
// - `patch pack --from DIR`: a patch zip in the deployed layout (files at the zip root), signed
//   with `--key`;
// - `patch pack --switch-over`: the patch that moves a box from the Python tool to boxkeeper
//   through the tool's own self-update (docs/install.md, "Switching a fleet from the Python tool").
import { ExitCode } from '../exit-codes.ts';
import { createHash, generateKeyPairSync } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { lstat, mkdir, mkdtemp, readdir, readFile, rename, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { basename, dirname, join, resolve } from 'node:path';
import { UsageError, BoxkeeperError, errorMessage } from '../../adapters/errors.ts';
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
} from '../../services/install/switch-over.ts';
import {
  MANIFEST_FILE,
  manifestText,
  PatchTrustError,
  privateKeyFromPem,
  publicKeyToBase64,
  signManifest,
  SIGNATURE_FILE,
  type ManifestFile,
} from '../../services/update/patch-trust.ts';
import { assertSafeSegment, PATCH_ITEMS } from '../../services/update/update-effects.ts';
import { realWorld } from '../context.ts';
import { commands, DEFAULT_EXPIRY_DAYS, type CommandArgs } from './index.ts';

const str = (v: unknown): string | undefined => (typeof v === 'string' ? v : undefined);

async function md5(file: string): Promise<string> {
  const hash = createHash('md5');
  for await (const chunk of createReadStream(file)) hash.update(chunk as Buffer);
  return hash.digest('hex');
}

async function entryDigest(e: ZipEntrySource): Promise<ManifestFile> {
  const hash = createHash('sha256');
  let size = 0;
  if (e.data !== undefined) {
    hash.update(e.data);
    size = e.data.length;
  } else if (e.file !== undefined) {
    for await (const chunk of createReadStream(e.file)) {
      hash.update(chunk as Buffer);
      size += (chunk as Buffer).length;
    }
  }
  return { path: e.name, sha256: hash.digest('hex'), size };
}

const DAY_MS = 24 * 3600 * 1000;

interface Signing {
  keyFile: string;
  counter: number;
  expires: string;
}

/** --key, --counter, --expires; undefined without --key. Validated before any work. */
function signingOptions(values: Record<string, unknown>, now: Date): Signing | undefined {
  const keyFile = str(values.key);
  const counterArg = str(values.counter);
  const expiresArg = str(values.expires);
  if (keyFile === undefined) {
    if (counterArg !== undefined || expiresArg !== undefined)
      throw new UsageError('patch pack: --counter and --expires need --key FILE');
    return undefined;
  }
  // Seconds since 1970 by default: strictly increasing per release from any sane clock.
  const counter = counterArg === undefined ? Math.floor(now.getTime() / 1000) : Number(counterArg);
  if (!/^\d+$/.test(counterArg ?? '0') || !Number.isSafeInteger(counter))
    throw new UsageError(`--counter ${counterArg ?? ''}: expected a whole number ≥ 0`);
  let expires: string;
  if (expiresArg === undefined) {
    expires = new Date(now.getTime() + DEFAULT_EXPIRY_DAYS * DAY_MS).toISOString();
  } else {
    const t = /^\d{4}-\d{2}-\d{2}(T\d{2}:\d{2}(:\d{2}(\.\d+)?)?Z)?$/.test(expiresArg)
      ? Date.parse(expiresArg)
      : NaN;
    if (Number.isNaN(t))
      throw new UsageError(
        `--expires ${expiresArg}: expected a UTC date or time such as 2027-06-30 or 2027-06-30T00:00:00Z`,
      );
    if (t <= now.getTime()) throw new UsageError(`--expires ${expiresArg}: already past`);
    expires = new Date(t).toISOString();
  }
  return { keyFile, counter, expires };
}

/** The two signature entries for `entries` (each file's size and sha256 in the manifest). */
async function signatureEntries(
  entries: ZipEntrySource[],
  s: Signing,
  version: { versionNum: string; versionCode: string },
): Promise<{ entries: ZipEntrySource[]; publicKey: string }> {
  const pem = await readFile(s.keyFile).catch((err: unknown) => {
    throw new UsageError(`--key ${s.keyFile}: ${errorMessage(err)}`);
  });
  let key;
  try {
    key = privateKeyFromPem(pem, s.keyFile);
  } catch (err) {
    if (err instanceof PatchTrustError) throw new UsageError(err.message);
    throw err;
  }
  const files: ManifestFile[] = [];
  for (const e of entries) files.push(await entryDigest(e));
  const text = Buffer.from(
    manifestText({ ...version, counter: s.counter, expires: s.expires, files }),
  );
  return {
    entries: [
      { name: MANIFEST_FILE, data: text },
      { name: SIGNATURE_FILE, data: Buffer.from(signManifest(text, key) + '\n') },
    ],
    publicKey: publicKeyToBase64(key),
  };
}

/** Writes the zip (temp + rename) and prints what the cloud needs to announce it. */
async function writePatch(
  out: string,
  entries: ZipEntrySource[],
  version: { versionNum: string; versionCode: string },
  signing: Signing | undefined,
  notes: string[],
  json: boolean,
): Promise<void> {
  let all = entries;
  const lines: string[] = [];
  if (signing !== undefined) {
    const sig = await signatureEntries(entries, signing, version);
    all = [...entries, ...sig.entries];
    lines.push(
      `  signed       counter ${signing.counter}, expires ${signing.expires}, key ${sig.publicKey}`,
    );
  } else {
    lines.push('  signed       no (boxes with [security] patch_keys refuse it)');
  }
  const dest = resolve(out);
  await mkdir(dirname(dest), { recursive: true });
  const temp = join(dirname(dest), `.${basename(dest)}.partial`);
  try {
    const size = await writeZip(temp, all);
    await rename(temp, dest);
    const sum = await md5(dest);
    process.stdout.write(
      [
        `wrote ${dest}`,
        `  versionNum   ${version.versionNum}`,
        `  versionCode  ${version.versionCode}`,
        `  fileMd5      ${sum}`,
        `  size         ${size} bytes`,
        ...notes,
        ...lines,
        '',
      ].join('\n'),
    );
    if (json)
      await writeFile(
        `${dest}.json`,
        JSON.stringify({ ...version, fileMd5: sum, size }, null, 2) + '\n',
      );
  } finally {
    await rm(temp, { force: true });
  }
}

/** versionNum and versionCode, required and usable as directory names on the box. */
function versionOptions(
  values: Record<string, unknown>,
  what: string,
  more: Array<[string, unknown]>,
): { versionNum: string; versionCode: string } {
  const versionNum = str(values['version-num']);
  const versionCode = str(values['version-code']);
  const missing = [
    ['--version-num', versionNum] as const,
    ['--version-code', versionCode] as const,
    ...more,
  ]
    .filter(([, v]) => v === undefined)
    .map(([k]) => k);
  if (missing.length > 0 || versionNum === undefined || versionCode === undefined)
    throw new UsageError(`${what} needs ${missing.join(', ')}`);
  try {
    assertSafeSegment('--version-num', versionNum);
    assertSafeSegment('--version-code', versionCode);
  } catch (err) {
    throw new UsageError(errorMessage(err));
  }
  return { versionNum, versionCode };
}

/** Every regular file under `dir`, '/'-separated; a symlink or special file is refused. */
async function patchFiles(dir: string, rel = ''): Promise<ZipEntrySource[]> {
  const out: ZipEntrySource[] = [];
  for (const e of await readdir(join(dir, rel), { withFileTypes: true })) {
    const name = rel === '' ? e.name : `${rel}/${e.name}`;
    if (e.isDirectory()) out.push(...(await patchFiles(dir, name)));
    else if (e.isFile()) {
      const mode = (await lstat(join(dir, name))).mode & 0o777;
      out.push({ name, file: join(dir, name), mode });
    } else throw new UsageError(`--from: ${join(dir, name)} is not a regular file or directory`);
  }
  return out.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
}

async function packFrom(values: Record<string, unknown>): Promise<ExitCode> {
  const from = str(values.from);
  const out = str(values.out);
  const version = versionOptions(values, 'patch pack --from', [
    ['--from', from],
    ['--out', out],
  ]);
  const signing = signingOptions(values, new Date());
  if (from === undefined || out === undefined) throw new UsageError('patch pack needs --from');
  const dir = resolve(from);
  const top = await readdir(dir).catch((err: unknown) => {
    throw new UsageError(`--from ${from}: ${errorMessage(err)}`);
  });
  for (const name of [MANIFEST_FILE, SIGNATURE_FILE])
    if (top.includes(name))
      throw new UsageError(`--from ${from}: holds ${name} already (it is written by --key)`);
  if (!top.some((n) => PATCH_ITEMS.has(n)))
    throw new UsageError(
      `--from ${from}: nothing a box applies at its top (expected one of ${[...PATCH_ITEMS].join(', ')}); the folder's content goes at the zip root`,
    );
  const entries = await patchFiles(dir);
  await writePatch(
    out,
    entries,
    version,
    signing,
    [`  files        ${entries.length} from ${dir}`],
    values.json === true,
  );
  return ExitCode.ok;
}

async function keygen(values: Record<string, unknown>): Promise<ExitCode> {
  const out = str(values.out);
  if (out === undefined) throw new UsageError('patch keygen needs --out FILE (the private key)');
  const dest = resolve(out);
  const pub = `${dest}.pub`;
  const { privateKey, publicKey } = generateKeyPairSync('ed25519');
  const pem = privateKey.export({ type: 'pkcs8', format: 'pem' });
  const b64 = publicKeyToBase64(publicKey);
  // 'wx': never overwrite a key (a lost release key strands every box that trusts it).
  await writeFile(dest, pem, { mode: 0o600, flag: 'wx' }).catch((err: unknown) => {
    throw new UsageError(
      (err as { code?: string }).code === 'EEXIST'
        ? `--out ${out}: exists already; a key is never overwritten`
        : `--out ${out}: ${errorMessage(err)}`,
    );
  });
  await writeFile(pub, b64 + '\n', { flag: 'w' });
  process.stdout.write(
    [
      `wrote ${dest} (private key: keep it off the boxes and the cloud)`,
      `wrote ${pub}`,
      `public key   ${b64}`,
      'on each box, settings.ini:',
      '  [security]',
      `  patch_keys = ${b64}`,
      '',
    ].join('\n'),
  );
  return ExitCode.ok;
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
      throw new BoxkeeperError(`cannot unpack ${arg}: ${r.stderr.trim()}`, 'config');
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
  const out = str(values.out);
  const { versionNum, versionCode } = versionOptions(values, 'patch pack --switch-over', [
    ['--package', pkgArg],
    ['--out', out],
  ]);
  const signing = signingOptions(values, new Date());
  if (pkgArg === undefined || out === undefined)
    throw new UsageError('patch pack --switch-over needs --package and --out');
  const scratch = await mkdtemp(join(tmpdir(), 'bk-pack-'));
  try {
    const dir = await packageFolder(pkgArg, scratch);
    const { manifest, problems } = await verifyPackage(dir, nodePackageTree);
    if (problems.length > 0)
      throw new BoxkeeperError(
        `${dir} does not match its MANIFEST.json: ${problems.slice(0, 5).join('; ')}`,
        'config',
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
    await writePatch(
      out,
      entries,
      { versionNum, versionCode },
      signing,
      [
        `  package      boxkeeper ${manifest.version} (${manifest.target}), ${manifest.files.length} files under ${PATCH_PACKAGE_DIR}/`,
        `  entrypoint   ${entrypointNote}; runs ${bakedPackagePath(versionNum)} from <manager_dir>`,
      ],
      values.json === true,
    );
    return ExitCode.ok;
  } finally {
    await rm(scratch, { recursive: true, force: true });
  }
}

export async function run(args: CommandArgs): Promise<ExitCode> {
  const [sub, ...rest] = args.positionals;
  if (sub !== 'pack' && sub !== 'keygen')
    throw new UsageError(
      `patch: unknown subcommand "${sub ?? ''}"; usage: boxkeeper patch ${commands.patch?.usage ?? ''}`,
    );
  if (rest.length > 0) throw new UsageError(`patch ${sub}: unexpected argument "${rest[0] ?? ''}"`);
  if (sub === 'keygen') return keygen(args.values);
  if (args.values['switch-over'] === true) {
    if (args.values.from !== undefined)
      throw new UsageError('patch pack: --from and --switch-over do not go together');
    return packSwitchOver(args.values);
  }
  return packFrom(args.values);
}
