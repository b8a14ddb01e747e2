// Patch zips as the deployed tool's patches come (files at the root, data/*.sql, a jar) extract
// correctly; crafted ones (zip-slip, absolute paths, links, bombs) are refused with nothing
// written outside the target and the previous extraction left as it was.
import assert from 'node:assert/strict';
import { mkdir, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test, type TestContext } from 'node:test';
import { ZipFile } from 'yazl';
import { extractZipSafely, UnsafeZipError } from '../../adapters/zip.ts';

interface Item {
  name: string;
  data: Buffer | string;
  mode?: number;
}

function zipOf(items: Item[]): Promise<Buffer> {
  const z = new ZipFile();
  for (const it of items) {
    z.addBuffer(Buffer.from(it.data), it.name, it.mode === undefined ? {} : { mode: it.mode });
  }
  z.end();
  return new Promise((resolve) => {
    const chunks: Buffer[] = [];
    z.outputStream.on('data', (c: Buffer) => chunks.push(c));
    z.outputStream.on('end', () => resolve(Buffer.concat(chunks)));
  });
}

/** yazl refuses bad names; rename an entry in place afterwards (same length, both headers). */
function renameEntry(zip: Buffer, from: string, to: string): Buffer {
  assert.equal(from.length, to.length);
  return Buffer.from(zip.toString('latin1').split(from).join(to), 'latin1');
}

async function dirs(t: TestContext) {
  const root = await mkdtemp(join(tmpdir(), 'bk-zip-'));
  t.after(() => rm(root, { recursive: true, force: true }));
  const dest = join(root, 'patch', 'V1.8');
  await mkdir(join(root, 'patch'), { recursive: true });
  return { root, dest, zip: join(root, 'patch', 'v.zip') };
}

test('a patch laid out like the deployed tool’s extracts completely', async (t) => {
  const d = await dirs(t);
  await writeFile(
    d.zip,
    await zipOf([
      { name: 'icb-box.jar', data: 'jar bytes' },
      { name: 'application.yml', data: 'server:\n  port: 8080\n' },
      { name: 'data/db_update.sql', data: 'BEGIN TRANSACTION;\nCOMMIT;\n' },
      { name: 'data/ztdb-version2', data: Buffer.alloc(2048, 1) },
      { name: 'settings.ini', data: '[paths]\njar=\\\\icb-box.jar\n' },
    ]),
  );
  const r = await extractZipSafely(d.zip, d.dest);
  assert.deepEqual(r.files, [
    'application.yml',
    'data/db_update.sql',
    'data/ztdb-version2',
    'icb-box.jar',
    'settings.ini',
  ]);
  assert.equal(
    await readFile(join(d.dest, 'data', 'db_update.sql'), 'utf8'),
    'BEGIN TRANSACTION;\nCOMMIT;\n',
  );
  // Extracting again replaces the previous result (an effect re-run after a crash).
  await extractZipSafely(d.zip, d.dest);
  assert.deepEqual((await readdir(d.dest)).sort(), [
    'application.yml',
    'data',
    'icb-box.jar',
    'settings.ini',
  ]);
});

const crafted: Array<{ what: string; make: () => Promise<Buffer>; reason: RegExp }> = [
  {
    what: 'zip-slip ("../")',
    make: async () =>
      renameEntry(await zipOf([{ name: 'aa/evil.txt', data: 'x' }]), 'aa/evil.txt', '../evil.txt'),
    reason: /invalid relative path|outside the target/,
  },
  {
    what: 'an absolute path',
    make: async () =>
      renameEntry(
        await zipOf([{ name: 'Xtmp/evil.txt', data: 'x' }]),
        'Xtmp/evil.txt',
        '/tmp/evil.txt',
      ),
    reason: /absolute path/,
  },
  {
    what: 'a symlink entry',
    make: () => zipOf([{ name: 'link', data: '/etc/passwd', mode: 0o120777 }]),
    reason: /link or special file/,
  },
  {
    what: 'a zip bomb (huge expansion ratio)',
    make: () => zipOf([{ name: 'zeros.bin', data: Buffer.alloc(8 * 1024 * 1024) }]),
    reason: /expands \d+× \(limit 200×\)/,
  },
  {
    what: 'a file that is not a zip',
    make: () => Promise.resolve(Buffer.from('<html>502 Bad Gateway</html>')),
    reason: /not a readable zip/,
  },
];

for (const c of crafted) {
  test(`refused: ${c.what}; nothing written outside, the previous extraction kept`, async (t) => {
    const d = await dirs(t);
    await mkdir(d.dest, { recursive: true });
    await writeFile(join(d.dest, 'previous.txt'), 'from an earlier extraction');
    await writeFile(d.zip, await c.make());
    await assert.rejects(extractZipSafely(d.zip, d.dest), (err: Error) => {
      assert.ok(err instanceof UnsafeZipError, String(err));
      assert.match(err.message, c.reason);
      assert.ok(err.message.startsWith(d.zip), 'the error names the zip');
      return true;
    });
    assert.deepEqual(await readdir(d.dest), ['previous.txt']);
    assert.deepEqual(
      (await readdir(join(d.root, 'patch'))).sort(),
      ['V1.8', 'v.zip'],
      'no temp dir left',
    );
    assert.deepEqual((await readdir(d.root)).sort(), ['patch'], 'nothing escaped to the parent');
  });
}

test('too many entries and too many bytes are refused', async (t) => {
  const d = await dirs(t);
  await writeFile(
    d.zip,
    await zipOf(Array.from({ length: 20 }, (_, i) => ({ name: `f${i}`, data: 'x' }))),
  );
  await assert.rejects(
    extractZipSafely(d.zip, d.dest, { maxEntries: 10, maxTotalBytes: 1e9, maxRatio: 200 }),
    /more than 10 entries/,
  );
  await assert.rejects(
    extractZipSafely(d.zip, d.dest, { maxEntries: 100, maxTotalBytes: 5, maxRatio: 200 }),
    /more than 5 bytes/,
  );
});
