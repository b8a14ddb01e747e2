// [limits] through the update cycle: `boxkeeper check` (in-process, no daemon) on a fixture box
// against a misbehaving cloud. Each refusal fails the cycle with the reason as the last error,
// keeps the cloud's oversized text out of patch.meta, and changes nothing on the box.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { mkdtemp, readdir, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test, type TestContext } from 'node:test';
import type { SimVersion } from '../../fixtures/cloud-sim/server.ts';
import { setupE2E, type E2E } from '../helpers/cli.ts';

const LIMIT_SETTINGS = {
  update: { enabled: 'on', check_jitter: '0', retry_delay: '0.5' },
  // A loaded CI machine: the refusals must not be mistaken for timeouts.
  cloud: { timeout: '20', retries: '1' },
};

const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');

/** The files an update would change, by content. */
async function boxState(e: E2E): Promise<Record<string, string>> {
  const out: Record<string, string> = {};
  for (const f of [
    e.box.jarPath,
    e.box.appYmlPath,
    e.box.configIniPath,
    e.box.settingsPath,
    e.box.dbPath,
  ]) {
    out[f] = sha(await readFile(f));
  }
  return out;
}

async function box(
  t: TestContext,
  versions: SimVersion[],
  extra: Record<string, Record<string, string>> = {},
): Promise<E2E> {
  const e = await setupE2E({
    extraSettings: { ...LIMIT_SETTINGS, ...extra },
    sim: { scenario: { upgradeMark: 2, versions: [{ versionNum: 'V1.7' }, ...versions] } },
  });
  t.after(() => e.close());
  return e;
}

/**
 * `boxkeeper check`, with the cycle's failure as its last error and the exit code of the table:
 * 4 what the cloud sent was over a limit, 7 the disk cannot hold it, 8 the patch was refused.
 */
async function checkFails(e: E2E, exitCode: number): Promise<string> {
  const r = await e.cli(['check', '--timeout', '120'], { timeoutMs: 180_000 });
  assert.equal(r.code, exitCode, r.stderr + r.stdout);
  const last = /^last error: (.*)$/m.exec(r.stdout)?.[1];
  assert.ok(last !== undefined, `no last error in:\n${r.stdout}`);
  return last;
}

const patchDir = (e: E2E) => join(e.box.boxRoot, 'patch');
const patchMeta = (e: E2E) => readFile(join(patchDir(e), 'patch.meta'), 'utf8');

test('a 20 MB remark fails the check and is not stored in patch.meta', async (t) => {
  const e = await box(t, [{ versionNum: 'V1.8', remark: 'x'.repeat(20_000_000) }]);
  const before = await boxState(e);
  const last = await checkFails(e, 4);
  assert.match(
    last,
    /cloud version\/check failed \(limit\): the answer .* over \[limits\] answer_size/,
  );
  const meta = await patchMeta(e);
  assert.ok(meta.length < 64 * 1024, `patch.meta is ${meta.length} bytes`);
  assert.doesNotMatch(meta, /xxxxxxxxxx/);
  assert.doesNotMatch(meta, /V1\.8/, 'no version was taken from the refused answer');
  assert.deepEqual(await boxState(e), before);
});

test('a 100,000-entry upgradeList fails the check without taking a version', async (t) => {
  const e = await box(t, [{ versionNum: 'V1.8' }], { limits: { answer_size: '64M' } });
  e.sim.inject('check', { kind: 'long-list', entries: 100_000 });
  const before = await boxState(e);
  const last = await checkFails(e, 4);
  assert.match(last, /upgradeList has 100000 entries, over \[limits\] upgrade_list = 100/);
  const meta = await patchMeta(e);
  assert.ok(meta.length < 64 * 1024, `patch.meta is ${meta.length} bytes`);
  assert.doesNotMatch(meta, /"V1\.8"|"V0"/);
  assert.deepEqual(await boxState(e), before);
});

test('a totalIndex of 10^9 fails the download at its first chunk and leaves no file', async (t) => {
  const e = await box(t, [{ versionNum: 'V1.8', files: { 'icb-box.jar': 'new jar' } }]);
  e.sim.inject('file', { kind: 'total-index', totalIndex: 1e9 });
  const before = await boxState(e);
  const last = await checkFails(e, 4);
  assert.match(last, /totalIndex is 1000000000, over \[limits\] chunk_count = 100000/);
  assert.equal(
    e.sim.records.downloads.filter((d) => d.fileIndex > 0).length,
    0,
    'no chunk after the first was asked for',
  );
  const left = await readdir(join(patchDir(e), 'V1.8')).catch(() => []);
  assert.deepEqual(left, []);
  assert.deepEqual(await boxState(e), before);
});

test('free space: a patch the disk cannot hold with its extraction fails before it is written', async (t) => {
  if (process.platform !== 'linux') return t.skip('tmpfs needs Linux');
  const disk = await mkdtemp(join(tmpdir(), 'bk-e2e-tmpfs-'));
  try {
    execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=1m', 'tmpfs', disk], { stdio: 'pipe' });
  } catch (err) {
    await rm(disk, { recursive: true, force: true });
    const why = (err as { stderr?: Buffer }).stderr?.toString().trim() ?? String(err);
    return t.skip(`cannot mount a tmpfs (needs root; CI runs as root): ${why}`);
  }
  t.after(async () => {
    execFileSync('umount', [disk]);
    await rm(disk, { recursive: true, force: true });
  });
  // Random bytes do not compress: the zip is about 600 KiB, which fits once but not twice.
  const e = await box(
    t,
    [{ versionNum: 'V1.8', files: { 'icb-box.jar': randomBytes(600 * 1024) } }],
    {
      paths: { patch: disk },
      limits: { disk_reserve: '0' },
    },
  );
  const before = await boxState(e);
  const last = await checkFails(e, 7);
  assert.match(
    last,
    new RegExp(`not enough free space in ${join(disk, 'V1.8')}: the download needs`),
  );
  assert.equal(e.sim.records.downloads.length, 1, 'refused at the first chunk');
  assert.deepEqual(await readdir(join(disk, 'V1.8')), []);
  assert.deepEqual(await boxState(e), before);
});

test('the zip caps come from [limits]: a patch with more files than patch_files is not extracted', async (t) => {
  const files = { 'icb-box.jar': 'new jar', 'data/a.txt': 'a', 'data/b.txt': 'b' };
  const e = await box(t, [{ versionNum: 'V1.8', files }], { limits: { patch_files: '2' } });
  const before = await boxState(e);
  const last = await checkFails(e, 8);
  assert.match(last, /\.zip: refused: more than 2 entries/);
  const left = await readdir(join(patchDir(e), 'V1.8'));
  assert.deepEqual(
    left.filter((n) => !n.endsWith('.zip')),
    [],
    'nothing extracted',
  );
  assert.deepEqual(await boxState(e), before);
});
