import assert from 'node:assert/strict';
import {
  appendFile,
  chmod,
  mkdir,
  readFile,
  rm,
  symlink,
  unlink,
  writeFile,
  readdir,
} from 'node:fs/promises';
import { join } from 'node:path';
import { test } from 'node:test';
import { createSnapshotFixture, treeState } from '../helpers/snapshots.ts';

const SKIP = ['boxkeeper', 'logs'];

test('commit, change everything, rollback: the tree is byte-identical (contents, modes, links)', async (t) => {
  const f = await createSnapshotFixture();
  t.after(() => f.cleanup());
  const before = await treeState(f.box, SKIP);
  const c1 = await f.service.commit({ version: 'V1', subject: 'before update' });
  assert.equal(c1.skipped, false);

  await writeFile(join(f.box, 'icb-box.jar'), 'jar v2, longer');
  await appendFile(join(f.box, 'data', 'ztdb'), 'more rows');
  await rm(join(f.box, 'data', 'nested'), { recursive: true });
  await writeFile(join(f.box, 'data', 'new.sql'), 'BEGIN TRANSACTION;');
  await chmod(join(f.box, 'DOS', 'start.bat'), 0o600);
  await unlink(join(f.box, 'conf', 'current.ini'));
  await symlink('elsewhere.ini', join(f.box, 'conf', 'current.ini'));
  await mkdir(join(f.box, 'conf', 'extra'));
  assert.notDeepEqual(await treeState(f.box, SKIP), before);

  const restored: Array<[number, number]> = [];
  const r = await f.service.rollback('V1', {
    discardChanges: true,
    onProgress: (done, total) => restored.push([done, total]),
  });
  assert.equal(r.saved, null);
  assert.deepEqual(await treeState(f.box, SKIP), before);
  // The files written back (jar, ztdb, nested/*, current.ini …), reported to the end.
  const last = restored.at(-1);
  assert.ok(last !== undefined && last[0] === last[1] && last[1] >= 3, JSON.stringify(restored));
  assert.equal(
    await readFile(join(f.box, 'logs', 'app.log'), 'utf8'),
    'log',
    'excluded paths are untouched',
  );
});

test('a second commit re-reads only files whose stat changed', async (t) => {
  const f = await createSnapshotFixture();
  t.after(() => f.cleanup());
  const first = await f.service.commit();
  assert.equal(first.hashed, 6);
  // Stamps written in the same second as the cache are treated as racy; age the cache.
  const cache = await f.repo.readStatCache();
  assert.ok(cache);
  await f.repo.writeStatCache({ ...cache, writtenAtMs: cache.writtenAtMs + 10_000 });
  await writeFile(join(f.box, 'application.yml'), 'server:\n  port: 9090\n');
  const second = await f.service.commit();
  assert.equal(second.hashed, 1);
  assert.equal(second.newObjects, 1);
  const diff = await f.service.diff(first.version, second.version);
  assert.deepEqual(diff, { added: [], removed: [], modified: [join(f.box, 'application.yml')] });
});

test('non-ASCII names (a Chinese Windows box) survive commit, a second commit and rollback', async (t) => {
  const f = await createSnapshotFixture();
  t.after(() => f.cleanup());
  // A manifest with such names is not ASCII and is read as UTF-8, not Latin-1.
  await mkdir(join(f.box, 'data', '录音'));
  await writeFile(join(f.box, 'data', '录音', '通话 1.wav'), 'RIFF one');
  await symlink('通话 1.wav', join(f.box, 'data', '录音', '最新.wav'));
  const before = await treeState(f.box, SKIP);
  const first = await f.service.commit({ version: 'V1' });
  const cache = await f.repo.readStatCache();
  assert.ok(cache);
  await f.repo.writeStatCache({ ...cache, writtenAtMs: cache.writtenAtMs + 10_000 });
  await writeFile(join(f.box, 'data', '录音', '通话 1.wav'), 'RIFF two, longer');
  const second = await f.service.commit({ version: 'V2' });
  assert.equal(second.hashed, 1, 'the unchanged files came from the stat cache by name');
  assert.deepEqual(await f.service.diff(first.version, second.version), {
    added: [],
    removed: [],
    modified: [join(f.box, 'data', '录音', '通话 1.wav')],
  });
  await f.service.rollback('V1', { discardChanges: true });
  assert.deepEqual(await treeState(f.box, SKIP), before);
});

test('rollback saves uncommitted changes as a snapshot first unless told to discard them', async (t) => {
  const f = await createSnapshotFixture();
  t.after(() => f.cleanup());
  await f.service.commit({ version: 'V1' });
  await writeFile(join(f.box, 'icb-box.jar'), 'local hotfix');
  const r = await f.service.rollback('V1');
  assert.ok(r.saved !== null);
  assert.equal(await readFile(join(f.box, 'icb-box.jar'), 'utf8'), 'jar v1');
  await f.service.rollback(r.saved);
  assert.equal(await readFile(join(f.box, 'icb-box.jar'), 'utf8'), 'local hotfix');
});

test('retention keeps the newest N plus the initial snapshot, and unreachable objects go', async (t) => {
  const f = await createSnapshotFixture({ retain: 2 });
  t.after(() => f.cleanup());
  for (let i = 1; i <= 5; i++) {
    await writeFile(join(f.box, 'icb-box.jar'), `jar build ${i}`);
    await f.service.commit({ version: `V${i}` });
  }
  const versions = (await f.service.list()).map((v) => v.version);
  assert.deepEqual(versions, ['V5', 'V4', 'V1']);
  const objects = [...f.repo.objects()];
  const jars = [];
  for (const o of objects) jars.push(await readFile(o.path, 'utf8').catch(() => ''));
  assert.ok(
    !jars.includes('jar build 2') && !jars.includes('jar build 3'),
    'objects of pruned versions are deleted',
  );
  assert.ok(jars.includes('jar build 1') && jars.includes('jar build 5'));
  await assert.rejects(f.service.delete('V1'), /initial snapshot/);
  await assert.rejects(f.service.delete('V5'), /the version the box is at/);
  await f.service.delete('V4');
  assert.deepEqual(
    (await f.service.list()).map((v) => v.version),
    ['V5', 'V1'],
  );
});

test('verify finds tampered, missing and unexpected files; repair restores them', async (t) => {
  const f = await createSnapshotFixture();
  t.after(() => f.cleanup());
  await f.service.commit({ version: 'V1' });
  assert.equal((await f.service.verify()).ok, true);
  await writeFile(join(f.box, 'application.yml'), 'tampered');
  await rm(join(f.box, 'conf', 'configuration.ini'));
  await writeFile(join(f.box, 'data', 'stray.bin'), 'x');
  const v = await f.service.verify();
  assert.equal(v.ok, false);
  assert.deepEqual(v.tampered, [join(f.box, 'application.yml')]);
  assert.deepEqual(v.missing, [join(f.box, 'conf', 'configuration.ini')]);
  assert.deepEqual(v.unexpected, [join(f.box, 'data', 'stray.bin')]);
  const r = await f.service.repair();
  assert.deepEqual(r.unrecoverable, []);
  assert.equal(await readFile(join(f.box, 'application.yml'), 'utf8'), 'server:\n  port: 8080\n');
  assert.equal(
    await readFile(join(f.box, 'conf', 'configuration.ini'), 'utf8'),
    '[QTHZ]\nversion = V1.7\n',
  );
  const after = await f.service.verify();
  assert.deepEqual([after.tampered, after.missing], [[], []]);
});

test('a damaged object is rebuilt from an identical copy in another commit', async (t) => {
  const f = await createSnapshotFixture();
  t.after(() => f.cleanup());
  await f.service.commit({ version: 'V1' });
  // The same bytes under another mode are a second object (as in ostree).
  await chmod(join(f.box, 'icb-box.jar'), 0o600);
  await f.service.commit({ version: 'V2' });
  await writeFile(join(f.box, 'icb-box.jar'), 'changed since');
  await f.service.commit({ version: 'V3' });
  const victim = [...f.repo.objects()].find(
    (o) => o.mode === 0o644 && o.hash === objHash('jar v1'),
  );
  assert.ok(victim);
  await chmod(victim.path, 0o644);
  await writeFile(victim.path, 'bit rot');
  const v = await f.service.verify();
  assert.deepEqual(v.damagedObjects, [victim.key]);
  const r = await f.service.repair();
  assert.deepEqual(r.repairedObjects, [victim.key]);
  assert.equal(await readFile(victim.path, 'utf8'), 'jar v1');
  await f.service.rollback('V1', { discardChanges: true });
  assert.equal(await readFile(join(f.box, 'icb-box.jar'), 'utf8'), 'jar v1');
});

test('an object with no intact copy anywhere is reported, not guessed', async (t) => {
  const f = await createSnapshotFixture();
  t.after(() => f.cleanup());
  await f.service.commit({ version: 'V1' });
  await writeFile(join(f.box, 'icb-box.jar'), 'jar v2');
  await f.service.commit({ version: 'V2' });
  const victim = [...f.repo.objects()].find((o) => o.hash === objHash('jar v1'));
  assert.ok(victim);
  await rm(victim.path);
  const r = await f.service.repair();
  assert.equal(r.unrecoverable.length, 1);
  assert.match(r.unrecoverable[0] ?? '', /no intact copy/);
  await assert.rejects(
    f.service.rollback('V1', { discardChanges: true }),
    /missing from the repository/,
  );
  assert.equal(
    await readFile(join(f.box, 'icb-box.jar'), 'utf8'),
    'jar v2',
    'the refused rollback changed nothing',
  );
});

test('not enough free space: refused up front with the numbers, nothing changes', async (t) => {
  const f = await createSnapshotFixture();
  t.after(() => f.cleanup());
  await f.service.commit({ version: 'V1' });
  await writeFile(join(f.box, 'data', 'ztdb'), Buffer.alloc(1 << 20, 1));
  const full = f.make({ freeBytes: () => Promise.resolve(10 * 1024 * 1024) });
  const objectsBefore = [...f.repo.objects()].length;
  await assert.rejects(
    full.commit({ version: 'V2' }),
    /commit refused, nothing was changed: needs 1\.0 MiB plus a 64\.0 MiB margin, but only 10\.0 MiB is free/,
  );
  assert.equal([...f.repo.objects()].length, objectsBefore);
  assert.deepEqual(
    (await f.service.list()).map((v) => v.version),
    ['V1'],
  );
  await assert.rejects(
    full.rollback('V1', { discardChanges: true }),
    /rollback to V1 refused, nothing was changed/,
  );
  assert.equal((await readFile(join(f.box, 'data', 'ztdb'))).length, 1 << 20);
});

test('an unmounted file system under a subscribed path refuses commit and rollback', async (t) => {
  const f = await createSnapshotFixture();
  t.after(() => f.cleanup());
  await f.service.commit({ version: 'V1' });
  const s = f.make({
    checkMounts: (paths) =>
      Promise.resolve([`${paths[0] ?? ''} lives on /data which is not mounted`]),
  });
  await assert.rejects(s.commit(), /commit refused, nothing was changed: .* not mounted/);
  await assert.rejects(s.rollback('V1'), /refused, nothing was changed: .* not mounted/);
});

test('commit --once-per-boot commits at most once per boot', async (t) => {
  const f = await createSnapshotFixture();
  t.after(() => f.cleanup());
  let boot = 'boot-A';
  const s = f.make({ bootId: () => Promise.resolve(boot) });
  assert.equal((await s.commit({ oncePerBoot: true })).skipped, false);
  assert.equal((await s.commit({ oncePerBoot: true })).skipped, true);
  boot = 'boot-B';
  assert.equal((await s.commit({ oncePerBoot: true })).skipped, false);
  assert.equal((await s.list()).length, 2);
});

test('leftover staging and temp files from a crash are cleaned by the next run', async (t) => {
  const f = await createSnapshotFixture();
  t.after(() => f.cleanup());
  await f.service.commit({ version: 'V1' });
  await writeFile(join(f.repoDir, 'staging', 'half-written'), 'x');
  await writeFile(join(f.box, 'conf', '.configuration.ini.bk-tmp-1-abcd'), 'partial');
  await f.service.commit({ version: 'V2' });
  assert.deepEqual(await readdir(join(f.repoDir, 'staging')), []);
  assert.deepEqual((await readdir(join(f.box, 'conf'))).sort(), [
    'configuration.ini',
    'current.ini',
  ]);
});

test('a repository of the previous format (JSON manifests, text stat cache) still works', async (t) => {
  const f = await createSnapshotFixture();
  t.after(() => f.cleanup());
  await f.service.commit({ version: 'V1' });
  const before = await treeState(f.box, SKIP);
  // Rewrite V1 as the previous store wrote it: manifest entries as objects, a ref holding a
  // bare commit id, a stat cache of NUL-separated text keyed by path.
  const newId = (await f.repo.readHead()) as string;
  const m = await f.repo.readCommit(newId);
  const entries = m.entries.map((e) => JSON.parse(JSON.stringify(e)) as typeof e);
  const text = JSON.stringify({ ...m, format: 1, entries });
  const oldId = objHash(text);
  await writeFile(join(f.repoDir, 'commits', `${oldId}.json`), text);
  await rm(join(f.repoDir, 'commits', `${newId}.json`));
  await writeFile(join(f.repoDir, 'HEAD'), oldId);
  await writeFile(join(f.repoDir, 'refs', 'V1'), oldId);
  const files = entries.filter((e) => e.type === 'file');
  await writeFile(
    join(f.repoDir, 'statcache'),
    ['boxkeeper-statcache-1', oldId, String(Date.now() - 60_000)]
      .concat(files.flatMap((e) => [e.path, '1:2:3:4:5', e.hash as string]))
      .join('\0'),
  );

  assert.equal((await f.service.verify()).ok, true);
  assert.deepEqual(
    (await f.service.list()).map((v) => [v.version, v.files, v.current]),
    [['V1', files.length, true]],
  );
  await writeFile(join(f.box, 'application.yml'), 'server:\n  port: 9090\n');
  const v2 = await f.service.commit({ version: 'V2' });
  // The old stat cache is not used: every file is read once, and only one object is new.
  assert.equal(v2.hashed, files.length);
  assert.equal(v2.newObjects, 1);
  assert.deepEqual(await f.service.diff('V1', 'V2'), {
    added: [],
    removed: [],
    modified: [join(f.box, 'application.yml')],
  });
  await f.service.rollback('V1', { discardChanges: true });
  assert.deepEqual(await treeState(f.box, SKIP), before);
  assert.equal((await f.service.verify()).ok, true);
});

test('the stat cache vouches only for unchanged files of the commit it was written for', async (t) => {
  const f = await createSnapshotFixture();
  t.after(() => f.cleanup());
  await f.service.commit({ version: 'V1' });
  // Stamps written in the same second as the cache are treated as racy; age the cache.
  const cache = await f.repo.readStatCache();
  assert.ok(cache);
  await f.repo.writeStatCache({ ...cache, writtenAtMs: cache.writtenAtMs + 10_000 });
  // Same size, new content: the changed stamps (mtime, ctime) give it away.
  const jar = join(f.box, 'icb-box.jar');
  await writeFile(jar, 'jar v9');
  const v2 = await f.service.commit({ version: 'V2' });
  assert.equal(v2.hashed, 1);
  assert.deepEqual((await f.service.diff('V1', 'V2')).modified, [jar]);
  // V1's cache, written back after V2 moved HEAD, is ignored as a whole.
  await f.repo.writeStatCache({ ...cache, writtenAtMs: Date.now() + 10_000 });
  const v3 = await f.service.commit({ version: 'V3' });
  assert.equal(v3.hashed, 6);
  assert.equal(v3.newObjects, 0);
});

test('a large commit stages on every thread and publishes every object', async (t) => {
  const f = await createSnapshotFixture();
  t.after(() => f.cleanup());
  await mkdir(join(f.box, 'data', 'many'));
  for (let i = 0; i < 300; i++) await writeFile(join(f.box, 'data', 'many', `r${i}`), `row ${i}`);
  const c = await f.service.commit({ version: 'V1' });
  assert.equal(c.newObjects, 306);
  assert.deepEqual(await readdir(join(f.repoDir, 'staging')), []);
  const report = await f.service.verify();
  assert.equal(report.ok, true);
  assert.equal(report.objectsChecked, 306);
});

function objHash(text: string): string {
  return createHash('sha256').update(text).digest('hex');
}
import { createHash } from 'node:crypto';
