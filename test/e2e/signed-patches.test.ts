// Signed patches (docs/security.md) through `boxkeeper check` (in-process) on a fixture box with
// `[security] patch_keys` set, against a simulator that signs as a release tool would. TUF's
// attacks — arbitrary software, rollback (an older release replayed), freeze (an expired one),
// mix-and-match — are each refused before anything on the box changes, with the reason as the
// cycle's last error; a good signed patch installs, and a rolled-back install does not advance
// the counter.
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { mkdir, mkdtemp, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test, type TestContext } from 'node:test';
import { buildStandinJar } from '../../fixtures/box/generate.ts';
import { simKeyPair, type SimVersion } from '../../fixtures/cloud-sim/server.ts';
import { runCli, setupE2E, type E2E } from '../helpers/cli.ts';

const KEY = simKeyPair();
const OTHER = simKeyPair();

// Stand-in jars (the stand-in app reports the version baked into its jar).
const JARS = {
  'V1.8': await buildStandinJar({ version: 'V1.8' }),
  'V1.9': await buildStandinJar({ version: 'V1.9' }),
};
const files = (v: 'V1.8' | 'V1.9') => ({
  'icb-box.jar': JARS[v],
  'data/notes.txt': `notes of ${v}\n`,
});

const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');

/** The files an install would change, by content. */
async function boxState(e: E2E): Promise<Record<string, string>> {
  const out: Record<string, string> = {};
  for (const f of [e.box.jarPath, e.box.appYmlPath, e.box.configIniPath, e.box.dbPath])
    out[f] = sha(await readFile(f));
  return out;
}

async function box(t: TestContext, versions: SimVersion[], keys = KEY.publicKey): Promise<E2E> {
  const e = await setupE2E({
    extraSettings: {
      update: { enabled: 'on', check_jitter: '0', health_timeout: '60', health_settle: '0.3' },
      security: { patch_keys: keys },
    },
    sim: { scenario: { upgradeMark: 2, versions: [{ versionNum: 'V1.7' }, ...versions] } },
  });
  t.after(() => e.close());
  return e;
}

interface Checked {
  stdout: string;
  lastError: string | undefined;
  lastResult: string | undefined;
}

/** `check`, which exits 0 when what it started installed, 8 when the update was not installed. */
async function check(e: E2E, exitCode = 0): Promise<Checked> {
  const r = await e.cli(['check', '--timeout', '120'], { timeoutMs: 180_000 });
  assert.equal(r.code, exitCode, r.stderr + r.stdout);
  return {
    stdout: r.stdout,
    lastError: /^last error: (.*)$/m.exec(r.stdout)?.[1],
    lastResult: /^last result: (.*)$/m.exec(r.stdout)?.[1],
  };
}

const counterFile = (e: E2E) => join(e.agentData, 'patch-counter.json');
const counters = async (e: E2E) =>
  JSON.parse(await readFile(counterFile(e), 'utf8').catch(() => 'null')) as {
    installed: { counter: number; versionNum: string } | null;
    applying: unknown;
  } | null;

/** Refused at download: the reason is the last error, the box and its tasks are untouched. */
async function refused(t: TestContext, versions: SimVersion[], reason: RegExp, keys?: string) {
  const e = await box(t, versions, keys);
  const before = await boxState(e);
  const r = await check(e, 8);
  assert.match(r.lastError ?? '', reason, r.stdout);
  assert.match(r.lastError ?? '', /refused V1\.8 \(/, r.stdout);
  assert.deepEqual(await boxState(e), before, 'the box is unchanged');
  assert.deepEqual(e.sim.records.taskOps, [], 'no task was paused');
  // The refused patch is deleted (zip and extraction), not kept for a later install.
  const left = await readdir(join(e.box.boxRoot, 'patch', 'V1.8')).catch(() => []);
  assert.deepEqual(left, [], 'nothing of the refused patch is kept');
  assert.equal((await counters(e))?.installed ?? null, null, 'no counter recorded');
  const log = (await readdir(e.logsDir)).map((f) => join(e.logsDir, f));
  const lines = (await Promise.all(log.map((f) => readFile(f, 'utf8')))).join('');
  assert.match(lines, /patch refused; deleted/, 'the refusal is logged');
  return e;
}

test('a patch signed by a configured key installs; its counter is recorded', async (t) => {
  const e = await box(t, [
    { versionNum: 'V1.8', files: files('V1.8'), sign: { ...KEY, counter: 7 } },
  ]);
  const r = await check(e);
  assert.equal(r.lastResult, 'installed V1.8', r.stdout);
  assert.deepEqual(await readFile(e.box.jarPath), JARS['V1.8']);
  assert.equal((await counters(e))?.installed?.counter, 7);
  assert.equal((await counters(e))?.applying, null);
});

test('key rotation: a patch signed by the second of two keys installs', async (t) => {
  const e = await box(
    t,
    [{ versionNum: 'V1.8', files: files('V1.8'), sign: { ...OTHER, counter: 1 } }],
    `${KEY.publicKey}, ${OTHER.publicKey}`,
  );
  assert.equal((await check(e)).lastResult, 'installed V1.8');
});

test('arbitrary software: an unsigned patch is refused', async (t) => {
  await refused(t, [{ versionNum: 'V1.8', files: files('V1.8') }], /the patch is not signed/);
});

test('arbitrary software: a patch signed by another key is refused', async (t) => {
  await refused(
    t,
    [{ versionNum: 'V1.8', files: files('V1.8'), sign: { ...OTHER, counter: 1 } }],
    /not a signature by any of the 1 key\(s\) in \[security\] patch_keys/,
  );
});

test('arbitrary software: a file changed after signing is refused', async (t) => {
  await refused(
    t,
    [
      {
        versionNum: 'V1.8',
        files: files('V1.8'),
        sign: { ...KEY, counter: 1, tamper: { 'icb-box.jar': 'evil jar' } },
      },
    ],
    /icb-box\.jar (has \d+ bytes, listed \d+|does not match its sha256)/,
  );
});

test('arbitrary software: a file the manifest does not list is refused', async (t) => {
  await refused(
    t,
    [
      {
        versionNum: 'V1.8',
        files: files('V1.8'),
        sign: { ...KEY, counter: 1, tamper: { 'data/evil.sql': 'DROP TABLE task;' } },
      },
    ],
    /data\/evil\.sql is not listed in the manifest/,
  );
});

test('a file the manifest lists but the zip lacks is refused', async (t) => {
  await refused(
    t,
    [
      {
        versionNum: 'V1.8',
        files: files('V1.8'),
        sign: { ...KEY, counter: 1, omit: ['data/notes.txt'] },
      },
    ],
    /data\/notes\.txt is listed but missing/,
  );
});

test('freeze: an expired signature is refused', async (t) => {
  await refused(
    t,
    [
      {
        versionNum: 'V1.8',
        files: files('V1.8'),
        sign: { ...KEY, counter: 1, expires: '2020-01-01T00:00:00Z' },
      },
    ],
    /the manifest expired at 2020-01-01T00:00:00Z/,
  );
});

test('a manifest for another version (swapped versionCode) is refused', async (t) => {
  await refused(
    t,
    [
      {
        versionNum: 'V1.8',
        files: files('V1.8'),
        sign: { ...KEY, counter: 1, versionCode: 'a-different-release' },
      },
    ],
    /the manifest is for V1\.8 \(a-different-release\), the cloud announced V1\.8/,
  );
});

test('rollback: an older release replayed after a newer one is refused', async (t) => {
  const e = await box(t, [
    { versionNum: 'V1.8', files: files('V1.8'), sign: { ...KEY, counter: 10 } },
  ]);
  assert.equal((await check(e)).lastResult, 'installed V1.8');
  // The cloud (or whoever answers for it) now offers a V1.9 signed long ago, with counter 5.
  await e.sim.setScenario({
    upgradeMark: 2,
    versions: [
      { versionNum: 'V1.8' },
      { versionNum: 'V1.9', files: files('V1.9'), sign: { ...KEY, counter: 5 } },
    ],
  });
  const before = await boxState(e);
  const r = await check(e, 8);
  assert.match(r.lastError ?? '', /refused V1\.9 .*counter 5 is not above 10/, r.stdout);
  assert.deepEqual(await boxState(e), before);
  assert.equal((await counters(e))?.installed?.counter, 10);
});

test('mix-and-match: two releases whose counters run backwards are refused as a list', async (t) => {
  const e = await box(t, [
    { versionNum: 'V1.8', files: files('V1.8'), sign: { ...KEY, counter: 20 } },
    { versionNum: 'V1.9', files: files('V1.9'), sign: { ...KEY, counter: 15 } },
  ]);
  const before = await boxState(e);
  const r = await check(e, 8);
  assert.match(
    r.lastError ?? '',
    /install refused: refused V1\.9 .*counter 15 is not above 20 \(V1\.8, installed before it\)/,
    r.stdout,
  );
  assert.deepEqual(await boxState(e), before);
  assert.deepEqual(e.sim.records.taskOps, [], 'no task was paused');
  assert.equal((await counters(e))?.installed ?? null, null);
});

test('a rolled-back install does not advance the counter', async (t) => {
  const e = await box(t, [
    {
      versionNum: 'V1.8',
      files: {
        ...files('V1.8'),
        'data/001.sql': 'BEGIN TRANSACTION;\nINSERT INTO missing_table VALUES (1);\nCOMMIT;\n',
      },
      sign: { ...KEY, counter: 30 },
    },
  ]);
  const r = await check(e, 8);
  assert.match(r.lastResult ?? '', /^install failed; rolled back/, r.stdout);
  const c = await counters(e);
  assert.equal(c?.installed ?? null, null, JSON.stringify(c));
  assert.equal(c?.applying ?? null, null, JSON.stringify(c));
});

const REDIRECTING_SETTINGS =
  '[general]\nhost_addr = http://127.0.0.1:9\nlog_expiration = 15\n[paths]\njava = /tmp/elsewhere-java\n';

test('without keys an unsigned patch installs, but its agent build is not run and it cannot redirect the agent', async (t) => {
  const e = await setupE2E({
    extraSettings: { update: { enabled: 'on', check_jitter: '0', health_timeout: '60' } },
    sim: {
      scenario: {
        upgradeMark: 2,
        versions: [
          { versionNum: 'V1.7' },
          {
            versionNum: 'V1.8',
            files: {
              ...files('V1.8'),
              'boxkeeper/package.json': '{"name": "boxkeeper", "version": "9.9.9"}',
              'settings.ini': REDIRECTING_SETTINGS,
            },
          },
        ],
      },
    },
  });
  t.after(() => e.close());
  const settingsBefore = await readFile(e.box.settingsPath, 'utf8');
  const r = await check(e);
  assert.equal(r.lastResult, 'installed V1.8', r.stdout);
  const settings = await readFile(e.box.settingsPath, 'utf8');
  assert.match(settings, /^log_expiration\s*=\s*15\b/m, 'an ordinary key is merged');
  assert.equal(
    /^host_addr\s*=.*$/m.exec(settings)?.[0],
    /^host_addr\s*=.*$/m.exec(settingsBefore)?.[0],
    'host_addr unchanged',
  );
  assert.doesNotMatch(settings, /elsewhere-java/, '[paths] unchanged');
  const logs = await Promise.all(
    (await readdir(e.logsDir)).map((f) => readFile(join(e.logsDir, f), 'utf8')),
  );
  const text = logs.join('');
  assert.match(text, /agent build \(boxkeeper\/\) but is not signed; the build is not run/);
  assert.match(text, /\[general\] host_addr.*\[paths\] java|may not change these keys/);
});

test('a signed patch may redirect the agent (settings.ini host_addr and [paths])', async (t) => {
  const e = await box(t, [
    {
      versionNum: 'V1.8',
      files: { ...files('V1.8'), 'settings.ini': REDIRECTING_SETTINGS },
      sign: { ...KEY, counter: 3 },
    },
  ]);
  assert.equal((await check(e)).lastResult, 'installed V1.8');
  const settings = await readFile(e.box.settingsPath, 'utf8');
  assert.match(settings, /^host_addr\s*=\s*http:\/\/127\.0\.0\.1:9\b/m);
  assert.match(settings, /elsewhere-java/);
});

test('release round trip: patch keygen and patch pack --key make a patch a box with that key installs', async (t) => {
  const work = await mkdtemp(join(tmpdir(), 'bk-release-'));
  t.after(() => rm(work, { recursive: true, force: true }));
  const key = join(work, 'release.key');
  const gen = await runCli(['patch', 'keygen', '--out', key]);
  assert.equal(gen.code, 0, gen.stderr);
  const publicKey = /^public key\s+(\S+)$/m.exec(gen.stdout)?.[1] ?? '';
  assert.equal((await readFile(`${key}.pub`, 'utf8')).trim(), publicKey);
  if (process.platform !== 'win32') assert.equal((await stat(key)).mode & 0o777, 0o600);
  const again = await runCli(['patch', 'keygen', '--out', key]);
  assert.equal(again.code, 2, 'a key is never overwritten');

  const from = join(work, 'V1.8');
  await mkdir(join(from, 'data'), { recursive: true });
  await writeFile(join(from, 'icb-box.jar'), JARS['V1.8']);
  await writeFile(join(from, 'data', 'notes.txt'), 'notes of V1.8\n');
  const zip = join(work, 'V1.8.zip');
  const args = ['--version-num', 'V1.8', '--version-code', 'rel-18', '--out', zip];
  const packed = await runCli([
    'patch',
    'pack',
    '--from',
    from,
    ...args,
    '--key',
    key,
    '--counter',
    '42',
  ]);
  assert.equal(packed.code, 0, packed.stderr);
  assert.match(packed.stdout, /signed +counter 42, expires \S+, key /);
  const fileMd5 = /^ +fileMd5 +([0-9a-f]{32})$/m.exec(packed.stdout)?.[1];

  const e = await box(
    t,
    [{ versionNum: 'V1.8', versionCode: 'rel-18', zip: await readFile(zip) }],
    publicKey,
  );
  assert.equal(e.sim.versions().find((v) => v.versionNum === 'V1.8')?.fileMd5, fileMd5);
  const r = await check(e);
  assert.equal(r.lastResult, 'installed V1.8', r.stdout);
  assert.equal((await counters(e))?.installed?.counter, 42);
});
