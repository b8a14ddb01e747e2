// The one line an operator reads for a refused file operation names the file it failed on,
// from real Node errors (some of which name no file themselves).
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import {
  chmod,
  copyFile,
  mkdir,
  mkdtemp,
  readdir,
  readFile,
  rm,
  writeFile,
} from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { describeStorageError, StorageError } from '../../adapters/errors.ts';
import { readFileNamed, writeFileAtomic } from '../../adapters/fs-atomic.ts';
import { canMountTmpfs, fillDisk, mountTmpfs, NO_MOUNT } from '../helpers/tmpfs.ts';

async function tempDir(t: { after: (fn: () => Promise<void>) => void }): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'bk-storage-errors-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  return dir;
}

async function caught(p: Promise<unknown>): Promise<unknown> {
  try {
    await p;
  } catch (err) {
    return err;
  }
  assert.fail('expected a rejection');
}

test('a read of a directory names it (Node says only "EISDIR: …, read")', async (t) => {
  const dir = join(await tempDir(t), 'patch.meta');
  await mkdir(dir);
  const err = await caught(readFileNamed(dir));
  assert.equal(
    describeStorageError(err),
    `cannot read ${dir}: is a directory, expected a file (EISDIR); move the directory aside`,
  );
  const storage = new StorageError(err);
  assert.equal(storage.kind, 'storage');
  assert.equal(storage.file, dir);
});

test('an atomic write over a directory names the target, not its temp file', async (t) => {
  const dir = join(await tempDir(t), 'status.json');
  await mkdir(join(dir, 'inside'), { recursive: true });
  const err = await caught(writeFileAtomic(dir, '{}'));
  assert.match(describeStorageError(err) ?? '', new RegExp(`^cannot write ${dir}: `));
});

// patch.meta is written with the synchronous calls (sync: true): its errors read the same.
for (const sync of [false, true]) {
  const how = sync ? 'sync' : 'async';

  test(`${how} atomic write where a directory holds the name: names the file, leaves no temp`, async (t) => {
    const base = await tempDir(t);
    const target = join(base, 'patch.meta');
    await mkdir(join(target, 'inside'), { recursive: true });
    const err = await caught(writeFileAtomic(target, '{"seq":2}', { sync }));
    assert.match(
      describeStorageError(err) ?? '',
      new RegExp(`^cannot write ${target}: is a directory, expected a file \\(EISDIR\\); `),
    );
    assert.equal(new StorageError(err).file, target);
    assert.deepEqual(await readdir(base), ['patch.meta']);
    assert.deepEqual(await readdir(target), ['inside']);
  });

  test(
    `${how} atomic write into a directory the agent may not write: names the file (EACCES)`,
    {
      skip:
        process.getuid?.() === 0 || process.platform === 'win32'
          ? 'root (or Windows) may write anyway'
          : false,
    },
    async (t) => {
      const base = await tempDir(t);
      const target = join(base, 'patch.meta');
      await writeFile(target, 'old');
      await chmod(base, 0o555);
      let err: unknown;
      try {
        err = await caught(writeFileAtomic(target, 'new', { sync }));
      } finally {
        // Before the temp dir's removal (after-hooks run in the order they were added).
        await chmod(base, 0o755);
      }
      assert.equal(
        describeStorageError(err),
        `cannot write ${target}: permission denied (EACCES); give boxkeeper's user access to it`,
      );
      assert.deepEqual(await readdir(base), ['patch.meta']);
      assert.equal(await readFile(target, 'utf8'), 'old');
    },
  );

  test(
    `${how} atomic write on a read-only file system: names the file (EROFS), keeps the old one`,
    { skip: canMountTmpfs ? false : NO_MOUNT },
    async (t) => {
      const base = await mountTmpfs(t, 1);
      const target = join(base, 'patch.meta');
      await writeFile(target, 'old');
      execFileSync('mount', ['-o', 'remount,ro', base]);
      const err = await caught(writeFileAtomic(target, 'new', { sync }));
      assert.equal(
        describeStorageError(err),
        `cannot write ${target}: read-only file system (EROFS); make that file system writable`,
      );
      assert.deepEqual(await readdir(base), ['patch.meta']);
      assert.equal(await readFile(target, 'utf8'), 'old');
    },
  );

  test(
    `${how} atomic write on a full disk: names the file (ENOSPC), removes its temp, keeps the old one`,
    { skip: canMountTmpfs ? false : NO_MOUNT },
    async (t) => {
      const base = await mountTmpfs(t, 1);
      const target = join(base, 'patch.meta');
      await writeFile(target, 'old');
      await fillDisk(base);
      // The temp file is created (tmpfs has inodes left); its write is what the disk refuses.
      const err = await caught(writeFileAtomic(target, 'x'.repeat(64 * 1024), { sync }));
      assert.equal(
        describeStorageError(err),
        `cannot write ${target}: no space left on the disk (ENOSPC); free space on that disk`,
      );
      assert.deepEqual((await readdir(base)).sort(), ['filler', 'patch.meta']);
      assert.equal(await readFile(target, 'utf8'), 'old');
    },
  );
}

test('a copy names both sides unless the disk refused the target', async (t) => {
  const base = await tempDir(t);
  const src = join(base, 'src');
  await mkdir(src);
  const err = await caught(copyFile(src, join(base, 'dest')));
  assert.match(
    describeStorageError(err) ?? '',
    new RegExp(`^cannot copy ${src} to ${join(base, 'dest')}: .*\\(EISDIR\\)`),
  );
  const full = Object.assign(new Error('ENOSPC: no space left on device, copyfile'), {
    code: 'ENOSPC',
    syscall: 'copyfile',
    path: join(base, 'a'),
    dest: join(base, 'b'),
  });
  assert.match(describeStorageError(full) ?? '', new RegExp(`^cannot write ${join(base, 'b')}: `));
  assert.equal(new StorageError(full).file, join(base, 'b'));
});

test('an error the agent composed (not from a system call) keeps its own words', async (t) => {
  const base = await tempDir(t);
  await writeFile(join(base, 'x'), '');
  const refused = Object.assign(new Error(`not enough free space in ${base}: needs 8 MiB`), {
    code: 'ENOSPC',
  });
  assert.equal(describeStorageError(refused), refused.message);
  assert.equal(describeStorageError(new Error('plain')), undefined);
});
