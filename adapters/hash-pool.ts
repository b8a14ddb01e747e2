// Hashing (and storing) many files on every core: a pool of worker threads. A worker reads a
// file once, hashes it and — when the repository lacks that object — writes the staged object
// from the same bytes, so the stored object always matches its name. Large files are hashed
// streaming and then copied with a copy-on-write clone where the file system supports one.
import { availableParallelism } from 'node:os';
import { Worker } from 'node:worker_threads';

export interface IngestRequest {
  path: string;
  mode: number;
  /** The object file this content would have (objects/ab/<hash>-<mode>), minus the hash. */
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

// Plain JavaScript: workers are started from source text so the same code runs under tsx and
// from dist/. Files up to 8 MiB are read whole; larger ones in 4 MiB pieces.
const WORKER = `
const { parentPort } = require('node:worker_threads');
const fs = require('node:fs');
const { createHash } = require('node:crypto');
const { join } = require('node:path');
const BIG = 8 * 1024 * 1024;
const buf = Buffer.allocUnsafe(4 * 1024 * 1024);

function stamp(st) { return st.dev + ':' + st.ino + ':' + st.size + ':' + st.mtimeNs + ':' + st.ctimeNs; }

function hashBig(path) {
  const h = createHash('sha256');
  const fd = fs.openSync(path, 'r');
  try {
    for (;;) {
      const n = fs.readSync(fd, buf, 0, buf.length, null);
      if (n === 0) break;
      h.update(n === buf.length ? buf : buf.subarray(0, n));
    }
  } finally { fs.closeSync(fd); }
  return h.digest('hex');
}

function hashFile(path) {
  const st = fs.statSync(path);
  if (st.size > BIG) return hashBig(path);
  return createHash('sha256').update(fs.readFileSync(path)).digest('hex');
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
  let hash;
  let data;
  if (Number(before.size) > BIG) hash = hashBig(r.path);
  else { data = fs.readFileSync(r.path); hash = createHash('sha256').update(data).digest('hex'); }
  const key = hash + '-' + r.mode.toString(8);
  if (fs.existsSync(join(r.objectsDir, hash.slice(0, 2), key))) return { path: r.path, hash, staged: false };
  const dest = join(r.stagingDir, key);
  if (data !== undefined) return { path: r.path, hash, staged: writeNew(dest, data) };
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

parentPort.on('message', (msg) => {
  try {
    const out = msg.kind === 'hash' ? msg.items.map(hashFile) : msg.items.map(ingest);
    parentPort.postMessage({ id: msg.id, ok: true, out });
  } catch (e) {
    parentPort.postMessage({ id: msg.id, ok: false, error: e && e.message ? e.message : String(e) });
  }
});
`;

const BATCH = 128;

export function createHashPool(size = Math.max(1, Math.min(4, availableParallelism()))): HashPool {
  const workers = Array.from({ length: size }, () => new Worker(WORKER, { eval: true }));
  let nextId = 0;
  const pending = new Map<
    number,
    { resolve: (v: unknown[]) => void; reject: (e: Error) => void }
  >();
  for (const w of workers) {
    w.on('message', (m: { id: number; ok: boolean; out?: unknown[]; error?: string }) => {
      const p = pending.get(m.id);
      pending.delete(m.id);
      if (m.ok) p?.resolve(m.out ?? []);
      else p?.reject(new Error(m.error));
    });
    w.unref();
  }

  async function run<R>(kind: 'hash' | 'ingest', items: unknown[]): Promise<R[]> {
    // Whole batches, handed to whichever worker is free next: big files do not stall others.
    const batches: unknown[][] = [];
    for (let i = 0; i < items.length; i += BATCH) batches.push(items.slice(i, i + BATCH));
    const results: R[][] = new Array<R[]>(batches.length);
    let next = 0;
    await Promise.all(
      workers.map(async (w) => {
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
      await Promise.all(workers.map((w) => w.terminate()));
    },
  };
}
