// The hash pool on real files: worker threads with the calling thread (large jobs) and the
// calling thread alone (small ones) give the same hashes, staged objects hold exactly the bytes
// they are named after, and a file that cannot be read fails the job, not the pool.
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { mkdir, mkdtemp, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { createHashPool } from '../../adapters/hash-pool.ts';

const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');

test('worker and inline hashing agree with crypto, small and large files alike', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'bk-pool-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  const contents = new Map<string, Buffer>();
  for (let i = 0; i < 300; i++) contents.set(join(dir, `f${i}`), randomBytes(i * 7));
  contents.set(join(dir, 'big'), randomBytes(3 * 1024 * 1024)); // streamed, not read whole
  for (const [p, b] of contents) await writeFile(p, b);
  const pool = createHashPool(2);
  t.after(() => pool.close());
  const paths = [...contents.keys()];
  const viaWorkers = await pool.hash(paths);
  const viaInline = await pool.hash(paths.slice(0, 10).concat(join(dir, 'big')));
  assert.deepEqual(
    viaWorkers,
    paths.map((p) => sha(contents.get(p) as Buffer)),
  );
  assert.deepEqual(
    viaInline,
    [...paths.slice(0, 10), join(dir, 'big')].map((p) => sha(contents.get(p) as Buffer)),
  );
});

test('ingest stages each new content once, read-only, named by hash and mode', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'bk-pool-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  const objectsDir = join(dir, 'objects');
  const stagingDir = join(dir, 'staging');
  await mkdir(join(dir, 'live'), { recursive: true });
  await mkdir(stagingDir, { recursive: true });
  const same = randomBytes(1000);
  const requests = [];
  for (let i = 0; i < 400; i++) {
    const p = join(dir, 'live', `f${i}`);
    await writeFile(p, i % 2 === 0 ? same : randomBytes(100 + i)); // 200 copies of one content
    requests.push({ path: p, mode: 0o644, objectsDir, stagingDir });
  }
  const pool = createHashPool(2);
  t.after(() => pool.close());
  // Progress is reported while the pool works, in order, ending at every file.
  const progress: Array<[number, number]> = [];
  const results = await pool.ingest(requests, (done, total) => progress.push([done, total]));
  assert.deepEqual(progress.at(-1), [400, 400]);
  assert.ok(progress.every(([, total]) => total === 400));
  assert.ok(progress.every(([d], i) => i === 0 || d >= (progress[i - 1] as [number, number])[0]));
  assert.equal(results.filter((r) => r.staged).length, 201, 'one object for the shared content');
  const staged = await readdir(stagingDir);
  assert.equal(staged.length, 201);
  for (const name of staged.slice(0, 50)) {
    const [hash, mode] = name.split('-');
    const bytes = await readFile(join(stagingDir, name));
    assert.equal(sha(bytes), hash);
    assert.equal(mode, '644');
    assert.equal((await stat(join(stagingDir, name))).mode & 0o777, 0o444);
  }
});

test('a large file is staged by a clone of the bytes it was hashed from', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'bk-pool-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  const stagingDir = join(dir, 'staging');
  await mkdir(stagingDir);
  const big = randomBytes(3 * 1024 * 1024 + 17); // past the 1 MiB read buffer: streamed
  await writeFile(join(dir, 'big'), big);
  for (const size of [1, 2]) {
    const pool = createHashPool(size);
    t.after(() => pool.close());
    const [r] = await pool.ingest([
      { path: join(dir, 'big'), mode: 0o755, objectsDir: join(dir, 'objects'), stagingDir },
    ]);
    assert.equal(r?.hash, sha(big));
    assert.deepEqual(await readFile(join(stagingDir, `${sha(big)}-755`)), big);
  }
});

test('a file that cannot be read fails the whole job, small or large, and the pool goes on', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'bk-pool-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  const paths: string[] = [];
  for (let i = 0; i < 400; i++) {
    const p = join(dir, `f${i}`);
    await writeFile(p, `content ${i}`);
    paths.push(p);
  }
  const gone = join(dir, 'gone');
  await mkdir(join(dir, 'staging'));
  const pool = createHashPool(2);
  t.after(() => pool.close());
  await assert.rejects(pool.hash([...paths.slice(0, 5), gone]), /ENOENT.*gone/);
  await assert.rejects(pool.hash([...paths.slice(0, 200), gone, ...paths.slice(200)]), /gone/);
  await assert.rejects(
    pool.ingest(
      [...paths, gone].map((path) => ({
        path,
        mode: 0o644,
        objectsDir: join(dir, 'objects'),
        stagingDir: join(dir, 'staging'),
      })),
    ),
    /gone/,
  );
  // Still usable, with every result in its place.
  assert.deepEqual(
    await pool.hash(paths),
    paths.map((_, i) => sha(Buffer.from(`content ${i}`))),
  );
});
