// Safe extraction of a patch zip (§13 W-SEC-2): every entry must stay inside the target
// directory (no "..", no absolute or drive paths, no backslash tricks), links and devices are
// refused, and the entry count, total size and compression ratio are capped against zip bombs.
// The archive is extracted into a temp directory beside the target and renamed into place, so
// the target holds either a complete extraction or nothing.
import { randomBytes } from 'node:crypto';
import { createWriteStream } from 'node:fs';
import { mkdir, rename, rm } from 'node:fs/promises';
import { dirname, isAbsolute, join, relative, resolve, sep } from 'node:path';
import { pipeline } from 'node:stream/promises';
import yauzl, { type Entry, type ZipFile } from 'yauzl';

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

function openZip(path: string): Promise<ZipFile> {
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
  if (!isDir && e.compressedSize > 0 && e.uncompressedSize / e.compressedSize > limits.maxRatio) {
    return `entry "${name}" expands ${Math.round(e.uncompressedSize / e.compressedSize)}× (limit ${limits.maxRatio}×)`;
  }
  return undefined;
}

/** Extracts `zipPath` to `dest` (replacing it). Returns the relative paths of the files. */
export async function extractZipSafely(
  zipPath: string,
  dest: string,
  limits: ZipLimits = DEFAULT_ZIP_LIMITS,
): Promise<{ files: string[]; bytes: number }> {
  let zip: ZipFile;
  try {
    zip = await openZip(zipPath);
  } catch (err) {
    throw new UnsafeZipError(zipPath, `not a readable zip: ${(err as Error).message}`);
  }
  const temp = join(dirname(dest), `.${randomBytes(4).toString('hex')}.bk-extract`);
  await mkdir(temp, { recursive: true });
  const files: string[] = [];
  let bytes = 0;
  let entries = 0;
  try {
    await new Promise<void>((res, rej) => {
      const fail = (err: Error) => {
        zip.close();
        rej(err);
      };
      zip.on('error', (err: Error) => fail(new UnsafeZipError(zipPath, err.message)));
      zip.on('end', () => res());
      zip.on('entry', (e: Entry) => {
        entries++;
        bytes += e.uncompressedSize;
        const problem =
          entries > limits.maxEntries
            ? `more than ${limits.maxEntries} entries`
            : bytes > limits.maxTotalBytes
              ? `more than ${limits.maxTotalBytes} bytes uncompressed`
              : entryProblem(e, temp, limits);
        if (problem !== undefined) {
          fail(new UnsafeZipError(zipPath, problem));
          return;
        }
        const target = resolve(temp, e.fileName);
        if (e.fileName.endsWith('/')) {
          mkdir(target, { recursive: true }).then(() => zip.readEntry(), fail);
          return;
        }
        zip.openReadStream(e, (err, stream) => {
          if (err !== null) {
            fail(new UnsafeZipError(zipPath, err.message));
            return;
          }
          mkdir(dirname(target), { recursive: true })
            .then(() => pipeline(stream, createWriteStream(target, { flags: 'wx' })))
            .then(() => {
              files.push(relative(temp, target).split(sep).join('/'));
              zip.readEntry();
            }, fail);
        });
      });
      zip.readEntry();
    });
    await rm(dest, { recursive: true, force: true });
    await rename(temp, dest);
  } catch (err) {
    await rm(temp, { recursive: true, force: true });
    throw err;
  }
  return { files: files.sort(), bytes };
}
