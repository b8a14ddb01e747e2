// Smoke test of the Linux release package (`npm run package`), run by `npm run test:package`:
// the archive is unpacked into a fresh directory and its bin/boxkeeper is run with a PATH that
// leads to a failing `node`, so everything comes from the package's own runtime (Node 24) and bundle.
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { delimiter, join } from 'node:path';
import { after, before, test } from 'node:test';
import { promisify } from 'node:util';
import { PACKAGE_NODE_FLAGS } from '../../adapters/agent-install.ts';
import { noRegistry } from '../../adapters/registry.ts';
import { loadSettings } from '../../services/agent/settings.ts';
import {
  REPO,
  servicesRunning,
  setupE2E,
  type CliOptions,
  type CliResult,
  type E2E,
} from '../helpers/cli.ts';

const run = promisify(execFile);
const show = (r: CliResult): string => `exit ${String(r.code)}\n${r.stdout}\n${r.stderr}`;

let pkgDir: string;
let unpackDir: string;
let opts: CliOptions;

before(async () => {
  const { version } = JSON.parse(await readFile(join(REPO, 'package.json'), 'utf8')) as {
    version: string;
  };
  const archive = join(REPO, 'release', `boxkeeper-${version}-linux-x64.tar.gz`);
  assert.ok(existsSync(archive), `${archive} is missing: run "npm run package" first`);
  unpackDir = await mkdtemp(join(tmpdir(), 'bk-pkg-'));
  await run('tar', ['-xzf', archive, '-C', unpackDir]);
  pkgDir = join(unpackDir, `boxkeeper-${version}-linux-x64`);
  // PATH starts with a `node` that fails loudly, so any use of a Node other than the package's
  // own runtime (a shebang, a spawn by name) breaks the test.
  const poison = join(unpackDir, 'poison');
  await mkdir(poison);
  await writeFile(
    join(poison, 'node'),
    '#!/bin/sh\necho "node from PATH was used" >&2\nexit 99\n',
    {
      mode: 0o755,
    },
  );
  const path = [poison, process.env.PATH ?? ''].join(delimiter);
  opts = { launcher: join(pkgDir, 'bin', 'boxkeeper'), cwd: unpackDir, env: { PATH: path } };
});
after(() => rm(unpackDir, { recursive: true, force: true }));

test('the package runs with its own Node 24 and no Node on PATH', async () => {
  const h = await setupE2E({ cliOptions: opts });
  try {
    const r = await h.cli(['--version']);
    assert.equal(r.code, 0, show(r));
    const manifest = JSON.parse(await readFile(join(pkgDir, 'MANIFEST.json'), 'utf8')) as {
      version: string;
      node: string;
    };
    assert.equal(r.stdout.trim(), `boxkeeper ${manifest.version}`);
    const { stdout } = await run(join(pkgDir, 'runtime', 'node'), ['--version']);
    assert.equal(stdout.trim(), `v${manifest.node}`);
    assert.match(manifest.node, /^24\./, 'the shipped runtime is Node 24 LTS');
  } finally {
    await h.close();
  }
});

test('MANIFEST.json lists every file of the package with its size and sha256', async () => {
  const manifest = JSON.parse(await readFile(join(pkgDir, 'MANIFEST.json'), 'utf8')) as {
    files: { path: string; size: number; sha256: string }[];
  };
  const onDisk: string[] = [];
  const walk = async (dir: string, rel: string): Promise<void> => {
    for (const e of await readdir(dir, { withFileTypes: true })) {
      const r = rel === '' ? e.name : `${rel}/${e.name}`;
      if (e.isDirectory()) await walk(join(dir, e.name), r);
      else if (r !== 'MANIFEST.json') onDisk.push(r);
    }
  };
  await walk(pkgDir, '');
  assert.deepEqual(manifest.files.map((f) => f.path).sort(), onDisk.sort());
  for (const f of manifest.files) {
    const bytes = await readFile(join(pkgDir, f.path));
    assert.equal(bytes.length, f.size, f.path);
    assert.equal(createHash('sha256').update(bytes).digest('hex'), f.sha256, f.path);
  }
  for (const needed of [
    'bin/boxkeeper',
    'runtime/node',
    'lib/boxkeeper.mjs',
    'lib/node_sqlite3.node',
  ])
    assert.ok(onDisk.includes(needed), `the package has ${needed}`);
});

test('the settings template names every key and is a valid settings.ini once box_root is set', async () => {
  const text = await readFile(join(pkgDir, 'settings', 'settings.ini.example'), 'utf8');
  const boxRoot = await mkdtemp(join(tmpdir(), 'bk-tpl-'));
  try {
    const file = join(boxRoot, 'settings.ini');
    const patched = text.replace(/^box_root = .*$/m, `box_root = ${boxRoot}`);
    const { settings, warnings } = await loadSettings(file, {
      readFile: () => Promise.resolve(Buffer.from(patched)),
      registry: noRegistry,
      platform: 'linux',
    });
    assert.deepEqual(warnings, []);
    assert.equal(settings.paths.boxRoot, boxRoot);
    assert.equal(settings.timer.heartbeatMs, 30_000);
  } finally {
    await rm(boxRoot, { recursive: true, force: true });
  }
});

test('status, heartbeat and run work from the package against the simulator', async (t) => {
  const h: E2E = await setupE2E({ cliOptions: opts });
  t.after(() => h.close());

  const status = await h.cli(['status']);
  assert.equal(status.code, 0, show(status));
  assert.match(status.stdout, /not running/);

  const beat = await h.cli(['heartbeat']);
  assert.equal(beat.code, 0, show(beat));
  assert.equal(h.sim.records.heartbeats.length, 1, 'one heartbeat reached the cloud');

  const d = h.startDaemon();
  const running = await servicesRunning(h, d, 60_000);
  const pkg = JSON.parse(await readFile(join(pkgDir, 'package.json'), 'utf8')) as {
    version: string;
  };
  assert.equal(running.agentVersion, pkg.version);
  // The launcher's V8 flags reach the daemon (they keep its memory flat; docs/benchmarks.md).
  const argv = (await readFile(`/proc/${running.pid}/cmdline`, 'utf8')).split('\0');
  for (const flag of PACKAGE_NODE_FLAGS)
    assert.ok(argv.includes(flag), `the daemon runs with ${flag}: ${argv.join(' ')}`);
  await d.waitUntil(
    () => h.sim.records.heartbeats.length >= 3,
    60_000,
    'heartbeats from the packaged daemon',
  );
  const stopped = await d.stop();
  assert.equal(stopped.code, 0, show(stopped));
});

test("the service a package installs starts its runtime with the launchers' flags", async (t) => {
  const h = await setupE2E({ cliOptions: opts });
  t.after(() => h.close());
  const units = await mkdtemp(join(tmpdir(), 'bk-pkg-units-'));
  t.after(() => rm(units, { recursive: true, force: true }));
  // systemd and WinSW start node itself (they signal their main process), not bin/boxkeeper.
  const dry = await h.cli(['service', 'install', '--dry-run', '--unit-dir', units]);
  assert.equal(dry.code, 0, show(dry));
  const exec = /^ExecStart=(.*)$/m.exec(dry.stdout)?.[1] ?? '';
  const node = join(pkgDir, 'runtime', 'node');
  const entry = join(pkgDir, 'lib', 'boxkeeper.mjs');
  assert.ok(
    exec.startsWith(`${node} ${PACKAGE_NODE_FLAGS.join(' ')} ${entry} run `),
    `ExecStart=${exec}`,
  );
});

test('a snapshot of a box with many files is committed and verified from the package (the hash pool runs its workers from the bundle)', async (t) => {
  const h: E2E = await setupE2E({ cliOptions: opts });
  t.after(() => h.close());
  // More files than the calling thread hashes alone (hash-pool.ts), so the workers start.
  const many = join(h.box.boxRoot, 'data', 'many');
  await mkdir(many, { recursive: true });
  for (let i = 0; i < 400; i++) await writeFile(join(many, `f${i}.txt`), `file ${i}\n`);
  const init = await h.cli(['snapshot', 'init']);
  assert.equal(init.code, 0, show(init));
  const entries = Number(/: (\d+) entries/.exec(init.stdout)?.[1]);
  assert.ok(entries > 400, `the snapshot holds the 400 files: ${init.stdout}`);
  await writeFile(join(many, 'f7.txt'), 'changed\n');
  const verify = await h.cli(['snapshot', 'verify']);
  assert.equal(verify.code, 6, show(verify));
  assert.match(verify.stdout, /tampered\s+.*f7\.txt/);
});
