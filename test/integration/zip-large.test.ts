// Bigger patch zips than the deployed tool's examples: thousands of files in nested directories
// and entries large enough to be streamed extract byte-identical; a streamed entry that lies
// about its size or fails its CRC-32 is refused like a small one, with nothing left behind.
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test, type TestContext } from 'node:test';
import { ZipFile } from 'yazl';
import { extractZipSafely, UnsafeZipError } from '../../adapters/zip.ts';

interface Item {
  name: string;
  data: Buffer;
  compress?: boolean;
}

function zipOf(items: Item[]): Promise<Buffer> {
  const z = new ZipFile();
  for (const it of items) z.addBuffer(it.data, it.name, { compress: it.compress ?? true });
  z.end();
  return new Promise((resolve) => {
    const chunks: Buffer[] = [];
    z.outputStream.on('data', (c: Buffer) => chunks.push(c));
    z.outputStream.on('end', () => resolve(Buffer.concat(chunks)));
  });
}

/** Overwrites a 32-bit field of `name`'s central directory record (what the reader trusts). */
function patchCentral(zip: Buffer, name: string, field: number, value: number): Buffer {
  const out = Buffer.from(zip);
  for (let at = out.lastIndexOf(Buffer.from('PK\x01\x02', 'latin1')); at > 0; at--) {
    if (out.readUInt32LE(at) !== 0x02014b50) continue;
    const n = out.readUInt16LE(at + 28);
    if (out.toString('utf8', at + 46, at + 46 + n) === name) {
      out.writeUInt32LE(value >>> 0, at + field);
      return out;
    }
  }
  throw new Error(`no central record for ${name}`);
}

/** Text that deflates about 3× (like configs and SQL), different for every seed. */
function text(seed: number, size: number): Buffer {
  const words = Array.from({ length: 50 }, (_, i) => `w${(seed * 31 + i * 7) % 997}`);
  let s = '';
  for (let i = 0; s.length < size; i++) s += `${words[(i * 13 + seed) % words.length]} `;
  return Buffer.from(s.slice(0, size));
}

async function dir(t: TestContext) {
  const root = await mkdtemp(join(tmpdir(), 'bk-zip-large-'));
  t.after(() => rm(root, { recursive: true, force: true }));
  return root;
}

const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');

test('3,000 files in nested directories and two streamed entries extract byte-identical', async (t) => {
  const root = await dir(t);
  const items: Item[] = [
    // Past the one-call sizes: streamed, deflated and stored.
    { name: 'icb-box.jar', data: Buffer.concat([randomBytes(6 << 20), text(1, 3 << 20)]) },
    { name: 'lib/native.bin', data: randomBytes(5 << 20), compress: false },
    { name: 'empty.txt', data: Buffer.alloc(0) },
  ];
  for (let i = 0; i < 3000; i++) {
    const name = `app/m${i % 17}/d${(i >> 4) % 9}/${i % 3 === 0 ? 'deep/er/' : ''}f${i}.xml`;
    items.push({ name, data: text(i, 1 + ((i * 7919) % 20000)), compress: i % 5 !== 0 });
  }
  const zip = join(root, 'v.zip');
  await writeFile(zip, await zipOf(items));
  const dest = join(root, 'out');
  const r = await extractZipSafely(zip, dest);
  assert.equal(r.files.length, items.length);
  assert.equal(
    r.bytes,
    items.reduce((n, it) => n + it.data.length, 0),
  );
  const onDisk = (await readdir(dest, { recursive: true, withFileTypes: true })).filter((e) =>
    e.isFile(),
  );
  assert.equal(onDisk.length, items.length, 'no file more or less than the zip has');
  for (const it of items) {
    const got = await readFile(join(dest, ...it.name.split('/')));
    assert.equal(sha(got), sha(it.data), `${it.name} is byte-identical`);
  }
});

const lying: Array<{ what: string; items: Item[]; field: number; value: number; reason: RegExp }> =
  [
    {
      what: 'a streamed entry that inflates past its declared size',
      items: [
        { name: 'icb-box.jar', data: Buffer.concat([randomBytes(5 << 20), text(2, 4 << 20)]) },
      ],
      field: 24, // uncompressed size
      value: 6 << 20,
      reason: /entry "icb-box\.jar": too many bytes in the stream/,
    },
    {
      what: 'a streamed entry that inflates to less than its declared size',
      items: [
        { name: 'icb-box.jar', data: Buffer.concat([randomBytes(5 << 20), text(3, 1 << 20)]) },
      ],
      field: 24,
      value: 7 << 20,
      reason: /entry "icb-box\.jar": not enough bytes in the stream/,
    },
    {
      what: 'a streamed stored entry whose bytes do not match its CRC-32',
      items: [{ name: 'lib/native.bin', data: randomBytes(5 << 20), compress: false }],
      field: 16, // CRC-32
      value: 0x12345678,
      reason: /entry "lib\/native\.bin" fails its CRC-32 check \(damaged\)/,
    },
  ];

for (const c of lying) {
  test(`refused: ${c.what}; no temp dir left`, async (t) => {
    const root = await dir(t);
    const name = c.items[0]?.name ?? '';
    const zip = join(root, 'v.zip');
    await writeFile(zip, patchCentral(await zipOf(c.items), name, c.field, c.value));
    await assert.rejects(extractZipSafely(zip, join(root, 'out')), (err: Error) => {
      assert.ok(err instanceof UnsafeZipError, String(err));
      assert.match(err.message, c.reason);
      assert.ok(err.message.startsWith(zip), 'the error names the zip');
      return true;
    });
    assert.deepEqual(await readdir(root), ['v.zip'], 'no temp dir, no output');
  });
}
