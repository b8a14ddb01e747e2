// Safe extraction of a patch zip (§13 W-SEC-2): every entry must stay inside the target
// directory (no "..", no absolute or drive paths, no backslash tricks), links and devices are
// refused, and the entry count, total size and compression ratio are capped against zip bombs.
// Names must mean the same file on every OS (Windows is the main field OS: no NTFS streams,
// devices, trailing dots, or two names that differ only in case), and every file must match
// its CRC-32.
// The archive is extracted into a temp directory beside the target and renamed into place, so
// the target holds either a complete extraction or nothing.
// Speed (issue 10): every entry is checked from the central directory before anything is written,
// the directories are made once, small entries are read many at a time and inflated in one call
// each with their writes overlapping, big entries stream in 1 MiB pieces.
import { randomBytes } from 'node:crypto';
import { createWriteStream } from 'node:fs';
import { mkdir, open, rename, rm, writeFile, type FileHandle } from 'node:fs/promises';
import { dirname, isAbsolute, join, relative, resolve, sep } from 'node:path';
import { performance } from 'node:perf_hooks';
import { Readable, Transform } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { crc32, createInflateRaw, inflateRawSync } from 'node:zlib';
import type { Entry, ZipFile } from 'yauzl';
import { quoted } from './ini.ts';

export interface ZipLimits {
  maxEntries: number;
  maxTotalBytes: number;
  /** Largest uncompressed/compressed ratio of one entry. */
  maxRatio: number;
}

export const DEFAULT_ZIP_LIMITS: ZipLimits = {
  maxEntries: 10_000,
  maxTotalBytes: 2 * 1024 ** 3,
  maxRatio: 200,
};

export class UnsafeZipError extends Error {
  readonly zip: string;
  constructor(zip: string, why: string) {
    super(`${zip}: refused: ${why}`);
    this.name = 'UnsafeZipError';
    this.zip = zip;
  }
}

const S_IFMT = 0o170000;
const S_IFREG = 0o100000;
const S_IFDIR = 0o040000;

async function openZip(path: string): Promise<ZipFile> {
  // Loaded on first use: the idle daemon extracts nothing.
  const { default: yauzl } = await import('yauzl');
  return new Promise((res, rej) => {
    // yauzl itself rejects absolute names, ".." and backslashes when it decodes names.
    yauzl.open(
      path,
      { lazyEntries: true, decodeStrings: true, validateEntrySizes: true },
      (err, zip) => {
        if (err !== null) rej(err);
        else res(zip);
      },
    );
  });
}

/** An entry's name for a message: control characters visible, cut after 65 characters. */
function shown(name: string): string {
  return quoted(name.length > 65 ? `${name.slice(0, 65)}…` : name);
}

const RESERVED = /^(con|prn|aux|nul|com[1-9]|lpt[1-9])(\..*)?$/i;

/** Why a part of a path cannot be a file name on Windows (or is too long anywhere). */
function namePartProblem(part: string): string | undefined {
  if (Buffer.byteLength(part) > 255)
    return `has a name part of ${Buffer.byteLength(part)} bytes (at most 255)`;
  let why: string | undefined;
  // eslint-disable-next-line no-control-regex -- control characters are what it refuses
  if (/[\u0000-\u001f\u007f]/.test(part)) why = 'a control character';
  else if (/[<>:"|?*]/.test(part)) why = `"${/[<>:"|?*]/.exec(part)?.[0] ?? ''}"`;
  else if (RESERVED.test(part)) why = `${(part.split('.')[0] ?? '').toUpperCase()} is a device`;
  else if (/[. ]$/.test(part)) why = `it ends in "${part.slice(-1)}"`;
  return why === undefined ? undefined : `cannot be a file name on Windows (${why})`;
}

function entryProblem(e: Entry, dest: string, limits: ZipLimits): string | undefined {
  const name = e.fileName;
  if (name.includes('\\') || /^[A-Za-z]:/.test(name) || isAbsolute(name))
    return `entry "${name}" has an absolute or Windows path`;
  const target = resolve(dest, name);
  const rel = relative(dest, target);
  if (rel.startsWith('..') || isAbsolute(rel))
    return `entry "${name}" points outside the target directory`;
  const type = (e.externalFileAttributes >>> 16) & S_IFMT;
  const isDir = name.endsWith('/');
  if (type !== 0 && type !== S_IFREG && type !== S_IFDIR)
    return `entry "${name}" is a link or special file`;
  for (const part of name.split('/').filter((p) => p !== '' && p !== '.')) {
    const why = namePartProblem(part);
    if (why !== undefined) return `entry ${shown(name)} ${why}`;
  }
  if (e.isEncrypted()) return `entry ${shown(name)} is encrypted`;
  if (!isDir && e.compressedSize > 0 && e.uncompressedSize / e.compressedSize > limits.maxRatio) {
    return `entry "${name}" expands ${Math.round(e.uncompressedSize / e.compressedSize)}× (limit ${limits.maxRatio}×)`;
  }
  return undefined;
}

/**
 * Tracks the names seen, case-insensitively as Windows compares them: a second entry of the
 * same file, or a file where a directory is needed, is refused (it failed with EEXIST, naming a
 * temp path, or was extracted over the first).
 */
function nameTracker() {
  const seen = new Map<string, { name: string; dir: boolean }>();
  return (fileName: string): string | undefined => {
    const dir = fileName.endsWith('/');
    const parts = fileName.split('/').filter((p) => p !== '' && p !== '.');
    for (let i = 1; i < parts.length; i++) {
      const prefix = parts.slice(0, i).join('/');
      const known = seen.get(prefix.toLowerCase());
      if (known?.dir === false)
        return `entry ${shown(fileName)} needs "${known.name}" as a directory, but it is a file`;
      if (known === undefined) seen.set(prefix.toLowerCase(), { name: prefix, dir: true });
    }
    const path = parts.join('/');
    const known = seen.get(path.toLowerCase());
    if (known === undefined) {
      seen.set(path.toLowerCase(), { name: path, dir });
      return undefined;
    }
    if (known.dir && dir) return undefined;
    if (known.dir !== dir)
      return `entry ${shown(fileName)} is a ${dir ? 'directory' : 'file'}, but "${known.name}" is a ${known.dir ? 'directory' : 'file'}`;
    return `entry ${shown(fileName)} appears twice${known.name === path ? '' : ' (names differ only in case)'}`;
  };
}

const crcFailed = (zipPath: string, e: Entry) =>
  new UnsafeZipError(zipPath, `entry ${shown(e.fileName)} fails its CRC-32 check (damaged)`);
// The messages yauzl's size check gave, so that a lying entry reads the same as before.
const tooMany = (expected: number, got: number) =>
  new Error(`too many bytes in the stream. expected ${expected}. got at least ${got}`);
const notEnough = (expected: number, got: number) =>
  new Error(`not enough bytes in the stream. expected ${expected}. got only ${got}`);

/**
 * Passes the bytes through; fails as soon as there are more than the entry declares (a bomb that
 * lies about its size never reaches the disk), and at the end unless the count and CRC-32 match.
 */
function sizeAndCrcCheck(zipPath: string, e: Entry): Transform {
  let crc = 0;
  let count = 0;
  return new Transform({
    transform(chunk: Buffer, _enc, done) {
      count += chunk.length;
      if (count > e.uncompressedSize) {
        done(tooMany(e.uncompressedSize, count));
        return;
      }
      crc = crc32(chunk, crc);
      done(null, chunk);
    },
    flush(done) {
      if (count < e.uncompressedSize) done(notEnough(e.uncompressedSize, count));
      else done(crc === e.crc32 ? null : crcFailed(zipPath, e));
    },
  });
}

/** Inflates a small entry in one call, never to more bytes than it declares. */
function inflateSmall(raw: Buffer, size: number): Buffer {
  try {
    return inflateRawSync(raw, {
      maxOutputLength: Math.max(1, size),
      chunkSize: Math.max(64, size + 1),
    });
  } catch (err) {
    if ((err as { code?: unknown }).code === 'ERR_BUFFER_TOO_LARGE') throw tooMany(size, size + 1);
    throw err;
  }
}

// Sizes chosen so that the process stays small (target: peak RSS ≤ 64 MiB) while each system
// call moves a lot: one read of the zip serves many small entries, a big entry moves in 1 MiB.
const WINDOW = 2 * 1024 ** 2;
const SMALL_COMPRESSED = 1024 ** 2;
/** Inflating this much in one synchronous call takes a few ms: the event loop stays responsive. */
const SMALL_UNCOMPRESSED = 4 * 1024 ** 2;
const STREAM_CHUNK = 1024 ** 2;
const WRITES_IN_FLIGHT = 8;
const BYTES_IN_FLIGHT = 8 * 1024 ** 2;
/** Longest stretch of synchronous work (inflate, CRC) before letting other callbacks run. */
const SLICE_MS = 10;

/** Reads the central directory and checks every entry; nothing is written yet. */
function checkedEntries(
  zip: ZipFile,
  zipPath: string,
  temp: string,
  limits: ZipLimits,
): Promise<Entry[]> {
  const collision = nameTracker();
  const list: Entry[] = [];
  let bytes = 0;
  return new Promise<Entry[]>((res, rej) => {
    const fail = (err: Error) => {
      zip.close();
      rej(err);
    };
    zip.on('error', (err: Error) => fail(new UnsafeZipError(zipPath, err.message)));
    zip.on('end', () => res(list));
    zip.on('entry', (e: Entry) => {
      list.push(e);
      bytes += e.uncompressedSize;
      const isDir = e.fileName.endsWith('/');
      const problem =
        list.length > limits.maxEntries
          ? `more than ${limits.maxEntries} entries`
          : bytes > limits.maxTotalBytes
            ? `more than ${limits.maxTotalBytes} bytes uncompressed`
            : (entryProblem(e, temp, limits) ??
              collision(e.fileName) ??
              (isDir || e.compressionMethod === 0 || e.compressionMethod === 8
                ? undefined
                : `unsupported compression method: ${e.compressionMethod}`));
      if (problem !== undefined) fail(new UnsafeZipError(zipPath, problem));
      else zip.readEntry();
    });
    zip.readEntry();
  });
}

/** Writes the file entries (sorted by their place in the zip) under `temp`. */
async function writeEntries(
  zipPath: string,
  zipFile: FileHandle,
  fileSize: number,
  temp: string,
  entries: Entry[],
  onEntry?: (uncompressedBytes: number) => void,
): Promise<void> {
  // The zip's bytes [winStart, winStart + win.length), in one buffer read into again and again:
  // fresh buffers are garbage that only a full GC frees, and that garbage was the peak RSS.
  let buf = Buffer.allocUnsafe(WINDOW);
  let win = buf.subarray(0, 0);
  let winStart = 0;
  const have = async (pos: number, need: number) => {
    if (pos >= winStart && pos + need <= winStart + win.length) return;
    if (need > buf.length) buf = Buffer.allocUnsafe(need);
    const len = Math.max(0, Math.min(buf.length, fileSize - pos));
    let got = 0;
    while (got < len) {
      const { bytesRead } = await zipFile.read(buf, got, len - got, pos + got);
      if (bytesRead === 0) break;
      got += bytesRead;
    }
    if (got < need) throw new UnsafeZipError(zipPath, 'unexpected EOF');
    win = buf.subarray(0, got);
    winStart = pos;
  };

  const inFlight: Array<Promise<void>> = [];
  let bytesInFlight = 0;
  let writeError: Error | undefined;
  let sliceStart = performance.now();
  try {
    for (const e of entries) {
      const at = e.relativeOffsetOfLocalHeader;
      await have(at, 30);
      const header = win.subarray(at - winStart);
      const signature = header.readUInt32LE(0);
      if (signature !== 0x04034b50)
        throw new UnsafeZipError(
          zipPath,
          `invalid local file header signature: 0x${signature.toString(16)}`,
        );
      const dataStart = at + 30 + header.readUInt16LE(26) + header.readUInt16LE(28);
      if (dataStart + e.compressedSize > fileSize)
        throw new UnsafeZipError(
          zipPath,
          `file data overflows file bounds: ${dataStart} + ${e.compressedSize} > ${fileSize}`,
        );
      const target = resolve(temp, e.fileName);
      try {
        if (e.compressedSize <= SMALL_COMPRESSED && e.uncompressedSize <= SMALL_UNCOMPRESSED) {
          await have(at, dataStart - at + e.compressedSize);
          const raw = win.subarray(dataStart - winStart, dataStart - winStart + e.compressedSize);
          // A copy of stored bytes: the window is read into again while the write goes on.
          const data =
            e.compressionMethod === 8 ? inflateSmall(raw, e.uncompressedSize) : Buffer.from(raw);
          if (data.length > e.uncompressedSize) throw tooMany(e.uncompressedSize, data.length);
          if (data.length < e.uncompressedSize) throw notEnough(e.uncompressedSize, data.length);
          if (crc32(data) !== e.crc32) throw crcFailed(zipPath, e);
          // The write goes on while the next entries are inflated; a failure is kept for below.
          bytesInFlight += data.length;
          inFlight.push(
            writeFile(target, data, { flag: 'wx' }).then(
              () => void (bytesInFlight -= data.length),
              (err: unknown) => void (writeError ??= err as Error),
            ),
          );
        } else {
          const source =
            e.compressedSize === 0
              ? Readable.from([])
              : zipFile.createReadStream({
                  start: dataStart,
                  end: dataStart + e.compressedSize - 1,
                  highWaterMark: STREAM_CHUNK,
                  autoClose: false,
                });
          const sink = createWriteStream(target, { flags: 'wx', highWaterMark: STREAM_CHUNK });
          const check = sizeAndCrcCheck(zipPath, e);
          if (e.compressionMethod === 8)
            await pipeline(source, createInflateRaw({ chunkSize: STREAM_CHUNK }), check, sink);
          else await pipeline(source, check, sink);
        }
      } catch (err) {
        // A system call that fails (a full disk) stays itself; anything else from the entry's
        // bytes (inflate errors, more bytes than declared) is a damaged zip.
        const io = typeof (err as { syscall?: unknown }).syscall === 'string';
        throw io || err instanceof UnsafeZipError
          ? (err as Error)
          : new UnsafeZipError(zipPath, `entry ${shown(e.fileName)}: ${(err as Error).message}`);
      }
      onEntry?.(e.uncompressedSize);
      while (inFlight.length >= WRITES_IN_FLIGHT || bytesInFlight > BYTES_IN_FLIGHT)
        await inFlight.shift();
      if (writeError !== undefined) throw writeError;
      if (performance.now() - sliceStart > SLICE_MS) {
        await new Promise((r) => setImmediate(r));
        sliceStart = performance.now();
      }
    }
  } finally {
    // Nothing may still be writing into temp when it is renamed or removed.
    await Promise.all(inFlight);
  }
  if (writeError !== undefined) throw writeError;
}

/** Extracts `zipPath` to `dest` (replacing it). Returns the relative paths of the files. */
export async function extractZipSafely(
  zipPath: string,
  dest: string,
  limits: ZipLimits = DEFAULT_ZIP_LIMITS,
  /** Bytes extracted so far of the total, after each entry (called often: throttle it). */
  onProgress?: (bytes: number, totalBytes: number) => void,
): Promise<{ files: string[]; bytes: number }> {
  let zip: ZipFile;
  try {
    zip = await openZip(zipPath);
  } catch (err) {
    throw new UnsafeZipError(zipPath, `not a readable zip: ${(err as Error).message}`);
  }
  const temp = join(dirname(dest), `.${randomBytes(4).toString('hex')}.bk-extract`);
  const entries = await checkedEntries(zip, zipPath, temp, limits);
  const files = entries.filter((e) => !e.fileName.endsWith('/'));
  // Each directory once, parents before children (mkdir per file was most of the system calls).
  const dirs = new Set<string>([temp]);
  for (const e of entries) {
    const target = resolve(temp, e.fileName);
    dirs.add(e.fileName.endsWith('/') ? target : dirname(target));
  }
  const zipFile = await open(zipPath, 'r');
  try {
    for (const dir of [...dirs].sort((a, b) => a.length - b.length))
      await mkdir(dir, { recursive: true });
    const fileSize = (await zipFile.stat()).size;
    const byOffset = [...files].sort(
      (a, b) => a.relativeOffsetOfLocalHeader - b.relativeOffsetOfLocalHeader,
    );
    const totalBytes = files.reduce((n, e) => n + e.uncompressedSize, 0);
    let done = 0;
    await writeEntries(
      zipPath,
      zipFile,
      fileSize,
      temp,
      byOffset,
      onProgress === undefined
        ? undefined
        : (n) => {
            done += n;
            onProgress(done, totalBytes);
          },
    );
    await zipFile.close();
    await rm(dest, { recursive: true, force: true });
    await rename(temp, dest);
  } catch (err) {
    await zipFile.close().catch(() => undefined);
    await rm(temp, { recursive: true, force: true });
    throw err;
  }
  return {
    files: files.map((e) => relative(temp, resolve(temp, e.fileName)).split(sep).join('/')).sort(),
    bytes: entries.reduce((n, e) => n + e.uncompressedSize, 0),
  };
}

/**
 * One small entry of a zip (e.g. a patch's manifest), or null when the zip has no entry of that
 * name. Refuses an entry larger than `maxBytes` and a file that is not a zip.
 */
export async function readZipEntry(
  zipPath: string,
  name: string,
  maxBytes: number,
): Promise<Buffer | null> {
  let zip: ZipFile;
  try {
    zip = await openZip(zipPath);
  } catch (err) {
    throw new UnsafeZipError(zipPath, (err as Error).message);
  }
  return new Promise<Buffer | null>((res, rej) => {
    const fail = (err: Error) => {
      zip.close();
      rej(err instanceof UnsafeZipError ? err : new UnsafeZipError(zipPath, err.message));
    };
    zip.on('error', fail);
    zip.on('end', () => res(null));
    zip.on('entry', (e: Entry) => {
      if (e.fileName !== name) {
        zip.readEntry();
        return;
      }
      if (e.uncompressedSize > maxBytes) {
        fail(new UnsafeZipError(zipPath, `${shown(name)} is over ${maxBytes} bytes`));
        return;
      }
      zip.openReadStream(e, (err, stream) => {
        if (err !== null) {
          fail(err);
          return;
        }
        const parts: Buffer[] = [];
        stream.on('data', (b: Buffer) => parts.push(b));
        stream.on('error', fail);
        stream.on('end', () => {
          zip.close();
          res(Buffer.concat(parts));
        });
      });
    });
    zip.readEntry();
  });
}
