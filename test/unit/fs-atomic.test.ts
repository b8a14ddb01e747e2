// Atomic durable replacement, both ways (async, and sync as patch.meta uses it): the file ends
// with the new bytes and the asked mode, a missing directory is made, and no temp file stays.
import assert from 'node:assert/strict';
import { mkdtemp, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { basename, join } from 'node:path';
import { test } from 'node:test';
import { writeFileAtomic } from '../../adapters/fs-atomic.ts';

async function tempDir(t: { after: (fn: () => Promise<void>) => void }): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'bk-fs-atomic-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  return dir;
}

for (const sync of [false, true]) {
  const how = sync ? 'sync' : 'async';

  test(`${how}: replaces the file with the new bytes and mode, leaving no temp`, async (t) => {
    const dir = await tempDir(t);
    const target = join(dir, 'patch.meta');
    await writeFile(target, 'old contents, longer than the new');
    const text = `{"snapshot":"é ✓ ${'x'.repeat(100_000)}"}`;
    await writeFileAtomic(target, text, { mode: 0o600, sync });
    assert.equal(await readFile(target, 'utf8'), text);
    if (process.platform !== 'win32') assert.equal((await stat(target)).mode & 0o777, 0o600);
    assert.deepEqual(await readdir(dir), ['patch.meta']);

    const bytes = new Uint8Array([0, 1, 2, 255]);
    await writeFileAtomic(target, bytes, { sync });
    assert.deepEqual(new Uint8Array(await readFile(target)), bytes);
  });

  test(`${how}: makes a missing directory on the first write`, async (t) => {
    const dir = await tempDir(t);
    const target = join(dir, 'patch', 'deeper', 'patch.meta');
    await writeFileAtomic(target, 'first', { sync });
    assert.equal(await readFile(target, 'utf8'), 'first');
    assert.deepEqual(await readdir(join(dir, 'patch', 'deeper')), ['patch.meta']);
  });

  test(`${how}: before the rename the temp holds the new bytes and the file the old`, async (t) => {
    const dir = await tempDir(t);
    const target = join(dir, 'patch.meta');
    await writeFile(target, 'old');
    const seen: string[] = [];
    await writeFileAtomic(target, 'new', {
      sync,
      beforeRename: (temp) => {
        seen.push(basename(temp).startsWith('.patch.meta.bk-tmp-') ? 'temp beside it' : temp);
      },
    });
    assert.deepEqual(seen, ['temp beside it']);
    assert.equal(await readFile(target, 'utf8'), 'new');
  });
}

test('sync: a beforeRename that returns a promise is refused (nothing would wait for it)', async (t) => {
  const dir = await tempDir(t);
  const target = join(dir, 'patch.meta');
  await writeFile(target, 'old');
  await assert.rejects(
    writeFileAtomic(target, 'new', { sync: true, beforeRename: () => Promise.resolve() }),
    /beforeRename must not return a promise/,
  );
  assert.equal(await readFile(target, 'utf8'), 'old');
  assert.deepEqual(await readdir(dir), ['patch.meta']);
});
