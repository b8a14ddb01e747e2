// The one line an operator reads for a refused file operation names the file it failed on,
// from real Node errors (some of which name no file themselves).
import assert from 'node:assert/strict';
import { copyFile, mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { describeStorageError, StorageError } from '../../adapters/errors.ts';
import { readFileNamed, writeFileAtomic } from '../../adapters/fs-atomic.ts';

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
  assert.equal(storage.exitCode, 7);
  assert.equal(storage.file, dir);
});

test('an atomic write over a directory names the target, not its temp file', async (t) => {
  const dir = join(await tempDir(t), 'status.json');
  await mkdir(join(dir, 'inside'), { recursive: true });
  const err = await caught(writeFileAtomic(dir, '{}'));
  assert.match(describeStorageError(err) ?? '', new RegExp(`^cannot write ${dir}: `));
});

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
