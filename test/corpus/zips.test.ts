// Corpus: patch zips, extracted by extractZipSafely from a real file into a real patch dir that
// holds an earlier extraction. Crafted and damaged zips are refused with an UnsafeZipError that
// names the zip and the entry and says what is wrong; the earlier extraction stays, nothing is
// written beside or above it and no temp dir is left. test/integration/zip.test.ts has the
// basic zip-slip, absolute path, symlink, ratio bomb and counts; these are the rest.
import assert from 'node:assert/strict';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { deflateRawSync } from 'node:zlib';
import { extractZipSafely, UnsafeZipError } from '../../adapters/zip.ts';
import { runCorpus, type CorpusCase } from './runner.ts';

interface Entry {
  name: string;
  data?: string | Buffer;
  /** Unix mode (type and permissions) in the external attributes. */
  mode?: number;
  /** 8 = deflate (default), 0 = stored, or any other method number. */
  method?: number;
  /** The stored bytes as they are (not compressed here). */
  raw?: Buffer;
  /** Overrides of the headers, to make damaged or lying zips. */
  crc?: number;
  uncompressedSize?: number;
  flags?: number;
}

/** A zip written by hand, so that it can say what no zip library would write. */
function zip(entries: Entry[]): Buffer {
  const locals: Buffer[] = [];
  const centrals: Buffer[] = [];
  let offset = 0;
  for (const e of entries) {
    const data = Buffer.from(e.data ?? '');
    const method = e.method ?? 8;
    const stored = e.raw ?? (method === 8 ? deflateRawSync(data) : data);
    const name = Buffer.from(e.name, 'utf8');
    const crc = e.crc ?? crc32(data);
    const size = e.uncompressedSize ?? data.length;
    const flags = (e.flags ?? 0) | 0x800; // names in UTF-8
    const local = Buffer.alloc(30);
    local.writeUInt32LE(0x04034b50, 0);
    local.writeUInt16LE(20, 4);
    local.writeUInt16LE(flags, 6);
    local.writeUInt16LE(method, 8);
    local.writeUInt32LE(crc, 14);
    local.writeUInt32LE(stored.length, 18);
    local.writeUInt32LE(size, 22);
    local.writeUInt16LE(name.length, 26);
    const central = Buffer.alloc(46);
    central.writeUInt32LE(0x02014b50, 0);
    central.writeUInt16LE((3 << 8) | 20, 4); // made by Unix: the mode is meaningful
    central.writeUInt16LE(20, 6);
    central.writeUInt16LE(flags, 8);
    central.writeUInt16LE(method, 10);
    central.writeUInt32LE(crc, 16);
    central.writeUInt32LE(stored.length, 20);
    central.writeUInt32LE(size, 24);
    central.writeUInt16LE(name.length, 28);
    central.writeUInt32LE(((e.mode ?? 0o100644) << 16) >>> 0, 38);
    central.writeUInt32LE(offset, 42);
    locals.push(local, name, stored);
    centrals.push(central, name);
    offset += local.length + name.length + stored.length;
  }
  const cd = Buffer.concat(centrals);
  const end = Buffer.alloc(22);
  end.writeUInt32LE(0x06054b50, 0);
  end.writeUInt16LE(entries.length, 8);
  end.writeUInt16LE(entries.length, 10);
  end.writeUInt32LE(cd.length, 12);
  end.writeUInt32LE(offset, 16);
  return Buffer.concat([...locals, cd, end]);
}

function crc32(data: Buffer): number {
  let c = ~0;
  for (const byte of data) {
    c ^= byte;
    for (let k = 0; k < 8; k++) c = (c >>> 1) ^ (0xedb88320 & -(c & 1));
  }
  return ~c >>> 0;
}

interface ZipCase extends CorpusCase {
  /** The zip's bytes. */
  bytes: Buffer;
}

const JAR = { name: 'icb-box.jar', data: 'PK jar bytes of the new version' };
const GOOD = zip([JAR, { name: 'data/db_update.sql', data: 'BEGIN; COMMIT;' }]);
const refused = (why: string) => new RegExp(`v\\.zip: refused: ${why}`);

export const ZIP_CASES: readonly ZipCase[] = [
  // ---- names that leave the target, or that Windows reads otherwise
  {
    name: 'a traversal in the middle (a/../../evil.txt)',
    bytes: zip([JAR, { name: 'a/../../evil.txt', data: 'x' }]),
    expect: refused('invalid relative path: a/\\.\\./\\.\\./evil\\.txt'),
  },
  {
    name: 'a backslash traversal (..\\evil.txt)',
    bytes: zip([{ name: '..\\evil.txt', data: 'x' }]),
    expect: refused('invalid relative path: \\.\\./evil\\.txt'),
  },
  {
    name: 'a drive path (C:/evil.txt)',
    bytes: zip([{ name: 'C:/evil.txt', data: 'x' }]),
    expect: refused('absolute path: C:/evil\\.txt'),
  },
  {
    name: 'a drive-relative path (C:evil.txt)',
    bytes: zip([{ name: 'C:evil.txt', data: 'x' }]),
    expect: refused('absolute path: C:evil\\.txt'),
  },
  {
    name: 'a UNC path (//server/share/evil.txt)',
    bytes: zip([{ name: '//server/share/evil.txt', data: 'x' }]),
    expect: refused('absolute path: //server/share/evil\\.txt'),
  },
  {
    name: 'a directory entry ../',
    bytes: zip([{ name: '../', mode: 0o040755 }]),
    expect: refused('invalid relative path: \\.\\./'),
  },
  {
    // On NTFS "icb-box.jar:payload" writes an alternate data stream of icb-box.jar.
    name: 'a colon in a name (an NTFS stream)',
    bytes: zip([JAR, { name: 'icb-box.jar:payload', data: 'x' }]),
    expect: refused('entry "icb-box\\.jar:payload" cannot be a file name on Windows \\(":"\\)'),
  },
  {
    name: 'a reserved device name (data/CON.sql)',
    bytes: zip([{ name: 'data/CON.sql', data: 'x' }]),
    expect: refused(
      'entry "data/CON\\.sql" cannot be a file name on Windows \\(CON is a device\\)',
    ),
  },
  {
    // Windows drops the dot: it would overwrite icb-box.jar after the manifest checked another name.
    name: 'a trailing dot (icb-box.jar.)',
    bytes: zip([{ name: 'icb-box.jar.', data: 'x' }]),
    expect: refused(
      'entry "icb-box\\.jar\\." cannot be a file name on Windows \\(it ends in "\\."\\)',
    ),
  },
  {
    name: 'a control character in a name',
    bytes: zip([{ name: 'data/a\u0001.sql', data: 'x' }]),
    expect: refused(
      'entry "data/a\\\\u0001\\.sql" cannot be a file name on Windows \\(a control character\\)',
    ),
  },
  {
    name: 'a name segment of 300 characters',
    bytes: zip([{ name: `data/${'a'.repeat(300)}.sql`, data: 'x' }]),
    expect: refused('entry "data/a{60}…" has a name part of 304 bytes \\(at most 255\\)'),
  },
  // ---- names that collide
  {
    name: 'the same name twice',
    bytes: zip([JAR, { ...JAR, data: 'a second jar' }]),
    expect: refused('entry "icb-box\\.jar" appears twice'),
  },
  {
    name: 'names that differ only in case (one file on Windows)',
    bytes: zip([
      { name: 'application.yml', data: 'server:\n  port: 1\n' },
      { name: 'Application.yml', data: 'server:\n  port: 2\n' },
    ]),
    expect: refused('entry "Application\\.yml" appears twice \\(names differ only in case\\)'),
  },
  {
    name: 'the same file as ./icb-box.jar and icb-box.jar',
    bytes: zip([JAR, { ...JAR, name: './icb-box.jar' }]),
    expect: refused('entry "\\./icb-box\\.jar" appears twice'),
  },
  {
    name: 'a file and a directory of the same name',
    bytes: zip([
      { name: 'data', data: 'a file' },
      { name: 'data/db_update.sql', data: 'x' },
    ]),
    expect: refused('entry "data/db_update\\.sql" needs "data" as a directory, but it is a file'),
  },
  // ---- links and special files (a symlink is in test/integration/zip.test.ts)
  {
    name: 'a FIFO',
    bytes: zip([{ name: 'pipe', mode: 0o010644 }]),
    expect: refused('entry "pipe" is a link or special file'),
  },
  {
    name: 'a block device',
    bytes: zip([{ name: 'disk', mode: 0o060644 }]),
    expect: refused('entry "disk" is a link or special file'),
  },
  // ---- damaged
  {
    // Extracted as if intact: nothing checked the CRC-32.
    name: 'a stored file whose bytes do not match its CRC-32',
    bytes: zip([{ ...JAR, method: 0, crc: 0x12345678 }]),
    expect: refused('entry "icb-box\\.jar" fails its CRC-32 check \\(damaged\\)'),
  },
  {
    name: 'a deflated file whose bytes do not match its CRC-32',
    bytes: zip([{ name: 'data/db_update.sql', data: 'BEGIN; COMMIT;', crc: 1 }]),
    expect: refused('entry "data/db_update\\.sql" fails its CRC-32 check \\(damaged\\)'),
  },
  {
    name: 'deflated bytes that do not inflate',
    bytes: zip([{ ...JAR, method: 8, raw: Buffer.from([0xff, 0xff, 0xff, 0xff, 0x00]) }]),
    expect: refused('entry "icb-box\\.jar": invalid (block type|distance|stored block)'),
  },
  {
    name: 'cut in half',
    bytes: GOOD.subarray(0, Math.floor(GOOD.length / 2)),
    expect: refused('not a readable zip: End of central directory record signature not found'),
  },
  {
    name: 'the last 10 bytes cut',
    bytes: GOOD.subarray(0, GOOD.length - 10),
    expect: refused('not a readable zip: End of central directory record signature not found'),
  },
  {
    name: 'an empty file',
    bytes: Buffer.alloc(0),
    expect: refused('not a readable zip: End of central directory record signature not found'),
  },
  {
    name: 'an encrypted entry',
    bytes: zip([{ ...JAR, flags: 0x1 }]),
    expect: refused('entry "icb-box\\.jar" is encrypted'),
  },
  {
    name: 'an unsupported compression method (LZMA)',
    bytes: zip([{ ...JAR, method: 14 }]),
    expect: refused('unsupported compression method: 14'),
  },
  {
    // A bomb that lies: small in its headers, 8 MiB when inflated.
    name: 'an entry that inflates past its declared size',
    bytes: zip([{ name: 'zeros.bin', data: Buffer.alloc(8 * 1024 * 1024), uncompressedSize: 10 }]),
    expect: refused('entry "zeros\\.bin": too many bytes in the stream'),
  },
];

runCorpus<ZipCase, { zip: string; dest: string }>({
  kind: 'patch zips',
  cases: ZIP_CASES,
  async prepare(c, dir) {
    // patch/V1.8/<code>.zip and its earlier extraction beside it.
    const version = join(dir, 'patch', 'V1.8');
    const dest = join(version, 'code-cd9f1d57fd7b');
    await mkdir(join(dest, 'data'), { recursive: true });
    await writeFile(join(dest, 'icb-box.jar'), 'the earlier extraction');
    await writeFile(join(dest, 'data', 'db_update.sql'), 'SELECT 1;');
    const zipPath = join(version, 'v.zip');
    await writeFile(zipPath, c.bytes);
    return { zip: zipPath, dest };
  },
  async run(_c, _dir, p) {
    await extractZipSafely(p.zip, p.dest);
    return undefined;
  },
  errorTypes: [UnsafeZipError],
  subject: (_c, _dir, p) => p.zip,
});

test('names a release tool may write still extract: ./ prefixes, directory entries, CJK', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'bk-corpus-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  await writeFile(
    join(dir, 'v.zip'),
    zip([
      { name: 'data/', mode: 0o040755 },
      { name: './icb-box.jar', data: 'jar' },
      { name: 'data/说明.txt', data: 'notes' },
      { name: 'data/db_update.sql', data: 'BEGIN; COMMIT;' },
      { name: 'conf/a.b-c_d.yml', data: 'x: 1' },
    ]),
  );
  const r = await extractZipSafely(join(dir, 'v.zip'), join(dir, 'out'));
  assert.deepEqual(r.files, [
    'conf/a.b-c_d.yml',
    'data/db_update.sql',
    'data/说明.txt',
    'icb-box.jar',
  ]);
});
