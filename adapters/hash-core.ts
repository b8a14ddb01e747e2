// The hashing and staging work of the hash pool (hash-pool.ts), one file at a time. It runs on
// the calling thread and in the pool's workers (hash-worker.ts), so it holds no state beyond one
// reused read buffer per thread. Files below 1 MiB are read whole into that buffer. Results go
// into shared memory: 32 bytes of digest per file and a "staged" byte, so neither side
// accumulates result objects (a thread's young heap grows with what survives in it).
import * as crypto from 'node:crypto';
import * as fs from 'node:fs';
import { join } from 'node:path';

/** One batch of files, shared by the threads that work on it. */
export interface HashJob {
  paths: readonly string[];
  /** Ingest jobs only: the files' modes, and where objects are and are staged. */
  modes?: readonly number[];
  objectsDir?: string;
  stagingDir?: string;
  /** [next item, stop]: every thread takes its next item here. */
  counter: Int32Array;
  digests: Buffer;
  staged: Uint8Array;
}

/** What a worker is sent: the job with its shared memory as buffers. */
export interface HashJobMessage {
  id: number;
  paths: readonly string[];
  modes?: readonly number[];
  objectsDir?: string;
  stagingDir?: string;
  counter: SharedArrayBuffer;
  digests: SharedArrayBuffer;
  staged: SharedArrayBuffer;
}

export interface HashJobReply {
  id: number;
  ok: boolean;
  error?: string;
}

const BIG = 1024 * 1024;
let reused: Buffer | undefined;
const buffer = (): Buffer => (reused ??= Buffer.allocUnsafe(BIG));

// One-shot hashing (Node >= 20.12) skips a Hash object per small file.
const oneShot: (data: Buffer) => Buffer =
  typeof crypto.hash === 'function'
    ? (data) => crypto.hash('sha256', data, 'buffer')
    : (data) => crypto.createHash('sha256').update(data).digest();

const stamp = (st: fs.BigIntStats): string =>
  `${st.dev}:${st.ino}:${st.size}:${st.mtimeNs}:${st.ctimeNs}`;

type Read = { data: Buffer } | { digest: Buffer; before: fs.BigIntStats | undefined };

// One open per file, no stat for the small ones: a file below BIG comes back as its bytes (in
// the reused buffer); a bigger one as its digest, streamed. `forClone`: the bigger file's stat
// is taken before it is hashed (from the start), to check later that a clone of it still holds
// the hashed bytes.
function readFile(path: string, forClone: boolean): Read {
  const fd = fs.openSync(path, 'r');
  try {
    const b = buffer();
    let n = 0;
    for (;;) {
      const r = fs.readSync(fd, b, n, b.length - n, null);
      if (r === 0) return { data: b.subarray(0, n) };
      n += r;
      if (n === b.length) break;
    }
    const h = crypto.createHash('sha256');
    const before = forClone ? fs.fstatSync(fd, { bigint: true }) : undefined;
    let pos = 0;
    if (before === undefined) {
      h.update(b);
      pos = n;
    }
    for (;;) {
      const r = fs.readSync(fd, b, 0, b.length, pos);
      if (r === 0) break;
      h.update(b.subarray(0, r));
      pos += r;
    }
    return { digest: h.digest(), before };
  } finally {
    fs.closeSync(fd);
  }
}

function writeNew(dest: string, data: Buffer): boolean {
  let fd: number;
  try {
    fd = fs.openSync(dest, 'wx', 0o444);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'EEXIST') return false;
    throw e;
  }
  try {
    fs.writeSync(fd, data);
  } finally {
    fs.closeSync(fd);
  }
  return true;
}

// Item i of a job: hash job.paths[i] into job.digests; an ingest job also stages the object
// (mode job.modes[i]) unless the repository has it, and says so in job.staged[i].
function work(job: HashJob, i: number): void {
  const path = job.paths[i] as string;
  const modes = job.modes;
  const read = readFile(path, modes !== undefined);
  const digest = 'data' in read ? oneShot(read.data) : read.digest;
  digest.copy(job.digests, i * 32);
  if (modes === undefined) return;
  const hash = digest.toString('hex');
  const key = `${hash}-${(modes[i] as number).toString(8)}`;
  if (fs.existsSync(join(job.objectsDir as string, hash.slice(0, 2), key))) return;
  const dest = join(job.stagingDir as string, key);
  if ('data' in read) {
    if (writeNew(dest, read.data)) job.staged[i] = 1;
    return;
  }
  if (fs.existsSync(dest)) return;
  fs.copyFileSync(path, dest, fs.constants.COPYFILE_FICLONE);
  fs.chmodSync(dest, 0o444);
  // The clone is only good if the file did not change since it was hashed.
  if (stamp(fs.lstatSync(path, { bigint: true })) !== stamp(read.before as fs.BigIntStats)) {
    fs.rmSync(dest, { force: true });
    throw new Error(`${path} changed while it was being committed; stop what writes it and retry`);
  }
  job.staged[i] = 1;
}

/**
 * Takes items from the shared counter until none is left, or until `until()` says to yield;
 * true when the job has no items left (or was stopped by a failure on any thread).
 */
export function take(job: HashJob, until?: () => boolean): boolean {
  const counter = job.counter;
  while (Atomics.load(counter, 1) === 0) {
    const i = Atomics.add(counter, 0, 1);
    if (i >= job.paths.length) return true;
    try {
      work(job, i);
    } catch (e) {
      Atomics.store(counter, 1, 1);
      throw e;
    }
    if (until?.() === true) return false;
  }
  return true;
}
