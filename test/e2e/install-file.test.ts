// `boxkeeper install --file PATCH.zip`: a patch from a file, through the same statechart,
// backup, health gate, rollback and signature rules as a download. The real CLI and daemon, a
// fixture box, the cloud simulator (which offers nothing: the patch comes from the file).
import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test, type TestContext } from 'node:test';
import { buildStandinJar } from '../../fixtures/box/generate.ts';
import { buildPatchZip } from '../../fixtures/cloud-sim/patch-zip.ts';
import { signPatchFiles, simKeyPair } from '../../fixtures/cloud-sim/patch-sign.ts';
import { setupE2E, type CliResult, type E2E } from '../helpers/cli.ts';
import { appVersion } from '../helpers/update.ts';

const show = (r: CliResult): string =>
  `exit ${String(r.code)}\n--- stdout ---\n${r.stdout}\n--- stderr ---\n${r.stderr}`;

const UPDATE = {
  update: { enabled: 'on', check_jitter: '0', health_timeout: '20', health_settle: '0.5' },
};

async function v18Files(sql = "INSERT INTO call_flow (name) VALUES ('v18');") {
  return {
    'icb-box.jar': await buildStandinJar({ version: 'V1.8' }),
    'data/001.sql': `BEGIN TRANSACTION;\nCREATE TABLE call_flow (id INTEGER PRIMARY KEY, name TEXT);\n${sql}\nCOMMIT;\n`,
  };
}

async function box(t: TestContext, security?: Record<string, string>): Promise<E2E> {
  const e = await setupE2E({
    extraSettings: { ...UPDATE, ...(security === undefined ? {} : { security }) },
    sim: { scenario: { upgradeMark: 0, versions: [{ versionNum: 'V1.7' }] } },
  });
  t.after(() => e.close());
  return e;
}

async function zipFile(t: TestContext, files: Record<string, string | Buffer>): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'bk-patchfile-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  const path = join(dir, 'patch.zip');
  await writeFile(path, await buildPatchZip(files));
  return path;
}

test('an unsigned patch file installs in-process with --version-num; without it the command says what is missing', async (t) => {
  const e = await box(t);
  const file = await zipFile(t, await v18Files());
  const missing = await e.cli(['install', '--file', file]);
  assert.equal(missing.code, 2, show(missing));
  assert.match(
    missing.stderr,
    /an unsigned patch does not say its version; give it with --version-num/,
  );

  const r = await e.cli(['install', '--file', file, '--version-num', 'V1.8', '--timeout', '120'], {
    timeoutMs: 180_000,
  });
  assert.equal(r.code, 0, show(r));
  assert.match(r.stdout, /V1\.8 \(local-[0-9a-f]{12}\), MD5 [0-9a-f]{32}/);
  assert.match(r.stdout, /last result: installed V1\.8/);
  assert.equal(await appVersion(e), 'V1.8');
  assert.match(await readFile(e.box.configIniPath, 'utf8'), /V1\.8/);
  assert.equal(e.sim.records.downloads.length, 0, 'nothing was downloaded');
  // The same backup as a cloud update: `rollback` brings V1.7 back.
  const back = await e.cli(['rollback', '--timeout', '120'], { timeoutMs: 180_000 });
  assert.equal(back.code, 0, show(back));
  assert.match(back.stdout, /rolled back to V1\.7 \(snapshot pre-V1\.8/);
  assert.equal(await appVersion(e), 'V1.7');
});

test('a patch file whose SQL fails is rolled back and exits 8', async (t) => {
  const e = await box(t);
  const jar = await readFile(e.box.jarPath);
  const file = await zipFile(t, await v18Files('INSERT INTO missing_table VALUES (1);'));
  const r = await e.cli(['install', '--file', file, '--version-num', 'V1.8', '--timeout', '120'], {
    timeoutMs: 180_000,
  });
  assert.equal(r.code, 8, show(r));
  assert.match(r.stdout, /install failed; rolled back to V1\.7/);
  assert.deepEqual(await readFile(e.box.jarPath), jar);
});

test('with patch keys: a signed file installs through the running daemon, an unsigned one is refused', async (t) => {
  const key = simKeyPair();
  const e = await box(t, { patch_keys: key.publicKey });
  const d = e.startDaemon();
  await d.waitUntil(async () => (await e.readStatus())?.control ?? undefined, 30_000, 'control');

  const unsigned = await zipFile(t, await v18Files());
  const refused = await e.cli(['install', '--file', unsigned, '--version-num', 'V1.8'], {
    timeoutMs: 180_000,
  });
  assert.equal(refused.code, 8, show(refused));
  assert.match(refused.stdout, /sent to the running daemon/);
  assert.match(refused.stdout, /the patch is not signed/);
  assert.equal(await appVersion(e), 'V1.7');

  const signed = await zipFile(
    t,
    signPatchFiles(
      await v18Files(),
      { versionNum: 'V1.8', versionCode: 'rel-18' },
      {
        privateKey: key.privateKey,
        counter: 5,
      },
    ),
  );
  const wrong = await e.cli(['install', '--file', signed, '--version-num', 'V1.9']);
  assert.equal(wrong.code, 2, show(wrong));
  assert.match(wrong.stderr, /its manifest names versionNum V1\.8, not V1\.9 as given/);
  const r = await e.cli(['install', '--file', signed, '--timeout', '120'], { timeoutMs: 180_000 });
  assert.equal(r.code, 0, show(r));
  assert.match(r.stdout, /V1\.8 \(rel-18\)/);
  assert.match(r.stdout, /last result: installed V1\.8/);
  assert.equal(await appVersion(e), 'V1.8');
});

test('install --file with a file that is not a zip, or none, is a usage error before any change', async (t) => {
  const e = await box(t);
  const dir = await mkdtemp(join(tmpdir(), 'bk-patchfile-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  const notZip = join(dir, 'notes.txt');
  await writeFile(notZip, 'hello');
  const r = await e.cli(['install', '--file', notZip, '--version-num', 'V1.8']);
  assert.equal(r.code, 2, show(r));
  assert.match(r.stderr, /install --file: .*notes\.txt/);
  const none = await e.cli([
    'install',
    '--file',
    join(dir, 'nothing.zip'),
    '--version-num',
    'V1.8',
  ]);
  assert.equal(none.code, 2, show(none));
  assert.match(none.stderr, /no such file/);
  const alone = await e.cli(['install', '--version-num', 'V1.8']);
  assert.equal(alone.code, 2, show(alone));
  assert.match(alone.stderr, /--version-num and --version-code go with --file/);
});
