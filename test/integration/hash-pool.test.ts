// The hash pool on real files: worker threads (large batches) and the calling thread (small
// ones) give the same hashes, and staged objects hold exactly the bytes they are named after.
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
  const results = await pool.ingest(requests);
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
