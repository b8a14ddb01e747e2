// Hashing (and storing) many files on every core: a pool of worker threads. A file is read
// once: hashed, and — when the repository lacks that object — the staged object is written
// from the same bytes, so a stored object always matches its name. Large files are hashed
// streaming and then copied with a copy-on-write clone where the file system supports one.
// A small batch (an update's few changed files) runs on the calling thread: starting workers
// would cost more than it saves.
import { createRequire } from 'node:module';
import { availableParallelism } from 'node:os';
import { Worker } from 'node:worker_threads';

export interface IngestRequest {
  path: string;
  mode: number;
  /** objects/ of the repository (objects are objects/ab/<hash>-<mode>). */
  objectsDir: string;
  stagingDir: string;
}

export interface IngestResult {
  path: string;
  hash: string;
  /** A new object was staged for this file. */
  staged: boolean;
}

export interface HashPool {
  hash(paths: string[]): Promise<string[]>;
  ingest(requests: IngestRequest[]): Promise<IngestResult[]>;
  close(): Promise<void>;
}

// Plain JavaScript, so the very same code runs in workers (started from source text, under tsx
// and from dist/ alike) and inline. Files up to 8 MiB are read into one reused buffer.
const CORE = `
const fs = require('node:fs');
const { createHash } = require('node:crypto');
const { join } = require('node:path');
const BIG = 1024 * 1024;
let buf;
function buffer() { return (buf ??= Buffer.allocUnsafe(BIG)); }

function stamp(st) { return st.dev + ':' + st.ino + ':' + st.size + ':' + st.mtimeNs + ':' + st.ctimeNs; }

function readSmall(path) {
  const fd = fs.openSync(path, 'r');
  try {
    const b = buffer();
    let n = 0;
    for (;;) {
      const r = fs.readSync(fd, b, n, b.length - n, null);
      if (r === 0) return b.subarray(0, n);
      n += r;
      if (n === b.length) return null; // grew past the limit while we read: stream it
    }
  } finally { fs.closeSync(fd); }
}

function hashBig(path) {
  const h = createHash('sha256');
  const b = buffer();
  const fd = fs.openSync(path, 'r');
  try {
    for (;;) {
      const n = fs.readSync(fd, b, 0, b.length, null);
      if (n === 0) break;
      h.update(b.subarray(0, n));
    }
  } finally { fs.closeSync(fd); }
  return h.digest('hex');
}

function hashFile(path) {
  const data = fs.statSync(path).size < BIG ? readSmall(path) : null;
  return data === null ? hashBig(path) : createHash('sha256').update(data).digest('hex');
}

function writeNew(dest, data) {
  let fd;
  try { fd = fs.openSync(dest, 'wx', 0o444); }
  catch (e) { if (e.code === 'EEXIST') return false; throw e; }
  try { fs.writeSync(fd, data); } finally { fs.closeSync(fd); }
  return true;
}

function ingest(r) {
  const before = fs.lstatSync(r.path, { bigint: true });
  const data = Number(before.size) < BIG ? readSmall(r.path) : null;
  const hash = data === null ? hashBig(r.path) : createHash('sha256').update(data).digest('hex');
  const key = hash + '-' + r.mode.toString(8);
  if (fs.existsSync(join(r.objectsDir, hash.slice(0, 2), key))) return { path: r.path, hash, staged: false };
  const dest = join(r.stagingDir, key);
  if (data !== null) return { path: r.path, hash, staged: writeNew(dest, data) };
  if (fs.existsSync(dest)) return { path: r.path, hash, staged: false };
  fs.copyFileSync(r.path, dest, fs.constants.COPYFILE_FICLONE);
  fs.chmodSync(dest, 0o444);
  // The clone is only good if the file did not change since it was hashed.
  if (stamp(fs.lstatSync(r.path, { bigint: true })) !== stamp(before)) {
    fs.rmSync(dest, { force: true });
    throw new Error(r.path + ' changed while it was being committed; stop what writes it and retry');
  }
  return { path: r.path, hash, staged: true };
}
`;

const WORKER = `${CORE}
const { parentPort } = require('node:worker_threads');
parentPort.on('message', (msg) => {
  try {
    const out = msg.kind === 'hash' ? msg.items.map(hashFile) : msg.items.map(ingest);
    parentPort.postMessage({ id: msg.id, ok: true, out });
  } catch (e) {
    parentPort.postMessage({ id: msg.id, ok: false, error: e && e.message ? e.message : String(e) });
  }
});
`;

interface Core {
  hashFile(path: string): string;
  ingest(r: IngestRequest): IngestResult;
}

// The same source the workers run, evaluated once on this thread.
// eslint-disable-next-line @typescript-eslint/no-implied-eval
const makeCore = new Function('require', `${CORE}\nreturn { hashFile, ingest };`) as (
  req: NodeJS.Require,
) => Core;
const inline = makeCore(createRequire(import.meta.url));

const BATCH = 128;
/** Below this many files the calling thread does the work. */
const INLINE_MAX = 256;

export function createHashPool(size = Math.max(1, Math.min(4, availableParallelism()))): HashPool {
  let workers: Worker[] | undefined;
  let nextId = 0;
  const pending = new Map<
    number,
    { resolve: (v: unknown[]) => void; reject: (e: Error) => void }
  >();

  function start(): Worker[] {
    workers ??= Array.from({ length: size }, () => {
      const w = new Worker(WORKER, { eval: true });
      w.on('message', (m: { id: number; ok: boolean; out?: unknown[]; error?: string }) => {
        const p = pending.get(m.id);
        pending.delete(m.id);
        if (m.ok) p?.resolve(m.out ?? []);
        else p?.reject(new Error(m.error));
      });
      w.unref();
      return w;
    });
    return workers;
  }

  async function run<R>(kind: 'hash' | 'ingest', items: unknown[]): Promise<R[]> {
    if (items.length <= INLINE_MAX) {
      return kind === 'hash'
        ? (items.map((p) => inline.hashFile(p as string)) as R[])
        : (items.map((r) => inline.ingest(r as IngestRequest)) as R[]);
    }
    const pool = start();
    // Whole batches, handed to whichever worker is free next: big files do not stall others.
    const batches: unknown[][] = [];
    for (let i = 0; i < items.length; i += BATCH) batches.push(items.slice(i, i + BATCH));
    const results: R[][] = new Array<R[]>(batches.length);
    let next = 0;
    await Promise.all(
      pool.map(async (w) => {
        while (next < batches.length) {
          const b = next++;
          const id = nextId++;
          // A busy worker keeps the process alive; an idle one must not.
          w.ref();
          try {
            results[b] = (await new Promise<unknown[]>((resolve, reject) => {
              pending.set(id, { resolve, reject });
              w.postMessage({ id, kind, items: batches[b] });
            })) as R[];
          } finally {
            w.unref();
          }
        }
      }),
    );
    return results.flat();
  }

  return {
    hash: (paths) => run<string>('hash', paths),
    ingest: (requests) => run<IngestResult>('ingest', requests),
    close: async () => {
      await Promise.all((workers ?? []).map((w) => w.terminate()));
      workers = undefined;
    },
  };
}
