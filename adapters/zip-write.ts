// Writing a zip (the switch-over patch): deflate per entry, Unix modes in the external
// attributes, UTF-8 names, a fixed timestamp so the same inputs give the same bytes (and the same
// MD5, which the cloud records). No zip64: the patch must stay under 4 GiB, as the Python tool's
// zipfile reader of that era expects anyway.
import { open, readFile, stat } from 'node:fs/promises';
import { crc32, deflateRawSync } from 'node:zlib';

export interface ZipEntrySource {
  /** The name in the archive ('/'-separated, no leading '/'). */
  name: string;
  /** A file on disk, or the bytes themselves. */
  file?: string;
  data?: Uint8Array;
  /** Unix mode bits (default 0o644). */
  mode?: number;
}

// 2024-01-01 00:00:00 in DOS date/time.
const DOS_TIME = 0;
const DOS_DATE = ((2024 - 1980) << 9) | (1 << 5) | 1;
const LIMIT = 0xffffffff;

/** Writes `entries` in order to `dest` (created or truncated); returns its size in bytes. */
export async function writeZip(dest: string, entries: ZipEntrySource[]): Promise<number> {
  const out = await open(dest, 'w');
  const central: Buffer[] = [];
  let offset = 0;
  const write = async (b: Buffer) => {
    await out.write(b);
    offset += b.length;
  };
  try {
    for (const e of entries) {
      const data =
        e.data !== undefined
          ? Buffer.from(e.data)
          : e.file !== undefined
            ? await readFile(e.file)
            : Buffer.alloc(0);
      const mode = e.mode ?? (e.file !== undefined ? (await stat(e.file)).mode & 0o777 : 0o644);
      const name = Buffer.from(e.name, 'utf8');
      const deflated = deflateRawSync(data, { level: 6 });
      const stored = deflated.length >= data.length;
      const body = stored ? data : deflated;
      const crc = crc32(data) >>> 0;
      if (data.length > LIMIT || offset + body.length > LIMIT)
        throw new Error(`${dest}: larger than 4 GiB (no zip64)`);
      const local = Buffer.alloc(30);
      local.writeUInt32LE(0x04034b50, 0);
      local.writeUInt16LE(20, 4);
      local.writeUInt16LE(0x0800, 6);
      local.writeUInt16LE(stored ? 0 : 8, 8);
      local.writeUInt16LE(DOS_TIME, 10);
      local.writeUInt16LE(DOS_DATE, 12);
      local.writeUInt32LE(crc, 14);
      local.writeUInt32LE(body.length, 18);
      local.writeUInt32LE(data.length, 22);
      local.writeUInt16LE(name.length, 26);
      local.writeUInt16LE(0, 28);
      const at = offset;
      await write(Buffer.concat([local, name]));
      await write(body);
      const cd = Buffer.alloc(46);
      cd.writeUInt32LE(0x02014b50, 0);
      cd.writeUInt16LE((3 << 8) | 20, 4); // made by Unix, so the mode is honoured
      cd.writeUInt16LE(20, 6);
      cd.writeUInt16LE(0x0800, 8);
      cd.writeUInt16LE(stored ? 0 : 8, 10);
      cd.writeUInt16LE(DOS_TIME, 12);
      cd.writeUInt16LE(DOS_DATE, 14);
      cd.writeUInt32LE(crc, 16);
      cd.writeUInt32LE(body.length, 20);
      cd.writeUInt32LE(data.length, 24);
      cd.writeUInt16LE(name.length, 28);
      cd.writeUInt32LE(((0o100000 | mode) << 16) >>> 0, 38);
      cd.writeUInt32LE(at, 42);
      central.push(Buffer.concat([cd, name]));
    }
    const cdStart = offset;
    const cdBytes = Buffer.concat(central);
    await write(cdBytes);
    const end = Buffer.alloc(22);
    end.writeUInt32LE(0x06054b50, 0);
    end.writeUInt16LE(entries.length, 8);
    end.writeUInt16LE(entries.length, 10);
    end.writeUInt32LE(cdBytes.length, 12);
    end.writeUInt32LE(cdStart, 16);
    await write(end);
    await out.sync();
  } finally {
    await out.close();
  }
  return offset;
}
