// Preflight checks on real file systems: a small tmpfs that really is full, and fstab entries
// that really are (not) mounted. Mounting needs root on Linux; elsewhere these tests skip.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdir, mkdtemp, readdir, rm, writeFile, readFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, sep } from 'node:path';
import { test, type TestContext } from 'node:test';
import { createLogger } from '../../adapters/logger.ts';
import { checkMounts, parseFstab, parseMounts, unmountedFor } from '../../adapters/mounts.ts';
import { SnapshotRepo } from '../../adapters/snapshot-repo.ts';
import { createHashPool } from '../../adapters/hash-pool.ts';
import { freeBytes } from '../../adapters/system.ts';
import { nodeTree } from '../../adapters/tree.ts';
import { SnapshotService } from '../../services/snapshot/snapshots.ts';

const canMount = process.platform === 'linux' && process.getuid?.() === 0;

async function mountTmpfs(t: TestContext, sizeMiB: number): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'bk-tmpfs-'));
  execFileSync('mount', ['-t', 'tmpfs', '-o', `size=${sizeMiB}m`, 'tmpfs', dir]);
  t.after(async () => {
    try {
      execFileSync('umount', [dir]);
    } catch {
      // already unmounted by the test
    }
    await rm(dir, { recursive: true, force: true });
  });
  return dir;
}

function service(
  box: string,
  repo: SnapshotRepo,
  checkMountsFn = () => Promise.resolve([] as string[]),
) {
  return new SnapshotService({
    repo,
    tree: nodeTree,
    hashPool: createHashPool(),
    config: { subscribe: [join(box, 'data')], exclude: [], retain: 3 },
    logger: createLogger({ level: 'fatal', console: 'none' }).logger,
    freeBytes,
    checkMounts: checkMountsFn,
    bootId: () => Promise.resolve('b'),
    defaultVersionName: () => `v${Date.now()}`,
    pathSep: sep,
  });
}

test(
  'a really full disk refuses the commit up front, with the numbers, and changes nothing',
  { skip: !canMount && 'needs root on Linux to mount a tmpfs' },
  async (t) => {
    const fsDir = await mountTmpfs(t, 80);
    const box = join(fsDir, 'box');
    await mkdir(join(box, 'data'), { recursive: true });
    await writeFile(join(box, 'data', 'small.db'), Buffer.alloc(1024, 1));
    const repo = await SnapshotRepo.init(join(box, 'repo'));
    const s = service(box, repo);
    await s.commit({ version: 'V1' });
    // 30 MiB of new data cannot be committed with a 64 MiB margin on an 80 MiB disk.
    await writeFile(join(box, 'data', 'big.db'), Buffer.alloc(30 * 1024 * 1024, 2));
    const objectsBefore = [...repo.objects()].map((o) => o.key).sort();
    await assert.rejects(
      s.commit({ version: 'V2' }),
      /commit refused, nothing was changed: needs 30\.0 MiB plus a 64\.0 MiB margin, but only \d+\.\d MiB is free/,
    );
    assert.deepEqual([...repo.objects()].map((o) => o.key).sort(), objectsBefore);
    assert.deepEqual(await readdir(join(box, 'repo', 'staging')), []);
    assert.deepEqual(
      (await s.list()).map((v) => v.version),
      ['V1'],
    );
  },
);

test('fstab entries are parsed and unmounted file systems are named', () => {
  const fstab = parseFstab(
    [
      '# /etc/fstab',
      'UUID=abc / ext4 defaults 0 1',
      'UUID=def /data ext4 defaults 0 2',
      'UUID=ghi /data/box\\040files xfs defaults 0 2',
      '/swapfile none swap sw 0 0',
      'UUID=jkl /mnt/usb vfat noauto 0 0',
    ].join('\n'),
  );
  assert.deepEqual(
    fstab.map((e) => e.mountPoint),
    ['/', '/data', '/data/box files'],
  );
  const mounted = parseMounts('/dev/vda / ext4 rw 0 0\n/dev/vdb /data ext4 rw 0 0\n');
  assert.deepEqual(unmountedFor(['/data/box files/app', '/data/other', '/opt/x'], fstab, mounted), [
    '/data/box files/app lives on /data/box files (UUID=ghi, /etc/fstab) which is not mounted',
  ]);
});

test(
  'a subscribed path on an fstab file system that is not mounted refuses commit and rollback',
  { skip: !canMount && 'needs root on Linux to mount a tmpfs' },
  async (t) => {
    const mountPoint = await mountTmpfs(t, 16);
    const root = await mkdtemp(join(tmpdir(), 'bk-mnt-'));
    t.after(() => rm(root, { recursive: true, force: true }));
    const fstabFile = join(root, 'fstab');
    await writeFile(fstabFile, `tmpfs ${mountPoint} tmpfs size=16m 0 0\n`);
    const files = { fstab: fstabFile, mounts: '/proc/self/mounts' };
    const box = mountPoint;
    await mkdir(join(box, 'data'), { recursive: true });
    await writeFile(join(box, 'data', 'a.db'), 'v1');
    const repo = await SnapshotRepo.init(join(root, 'repo'));
    const s = service(box, repo, () => checkMounts([join(box, 'data')], 'linux', files));
    await s.commit({ version: 'V1' }); // mounted: allowed
    await writeFile(join(box, 'data', 'a.db'), 'v2');
    await s.commit({ version: 'V2' });
    execFileSync('umount', [mountPoint]);
    const problems = await checkMounts([join(box, 'data')], 'linux', files);
    assert.equal(problems.length, 1);
    assert.match(
      problems[0] ?? '',
      new RegExp(`lives on ${mountPoint} \\(tmpfs, /etc/fstab\\) which is not mounted`),
    );
    await assert.rejects(
      s.rollback('V1', { discardChanges: true }),
      /refused, nothing was changed: .* not mounted/,
    );
    await assert.rejects(
      s.commit({ version: 'V3' }),
      /commit refused, nothing was changed: .* not mounted/,
    );
    await assert.rejects(
      readFile(join(box, 'data', 'a.db')),
      { code: 'ENOENT' },
      'nothing was written into the bare mount point',
    );
  },
);
