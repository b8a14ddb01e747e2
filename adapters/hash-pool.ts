// Hashing (and storing) many files on every core. A file is read once: hashed, and — when the
// repository lacks that object — the staged object is written from the same bytes, so a stored
// object always matches its name. Large files are hashed streaming and then copied with a
// copy-on-write clone where the file system supports one.
//
// The calling thread is one of the hashers: a pool of size n runs n - 1 worker threads (each
// costs ~30 MiB while it hashes), and all of them take the next file from one shared counter
// (a SharedArrayBuffer), so nobody waits for a batch handed to someone else, and the workers
// keep going while the calling thread does other work (verify walks the live tree meanwhile).
// A small job (an update's few changed files) runs on the calling thread alone: starting a
// worker would cost more than it saves.
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
  /** `onProgress`: files taken so far of the total, now and then while the pool works. */
  ingest(
    requests: IngestRequest[],
    onProgress?: (done: number, total: number) => void,
  ): Promise<IngestResult[]>;
  close(): Promise<void>;
}

// Plain JavaScript, so the very same code runs in workers (started from source text, under tsx
// and from dist/ alike) and inline. Files below 1 MiB are read whole into one reused buffer.
// Results go into shared memory: 32 bytes of digest per file and a "staged" byte, so neither
// side accumulates result objects (a thread's young heap grows with what survives in it).
const CORE = `
const fs = require('node:fs');
const crypto = require('node:crypto');
const { createHash } = crypto;
// One-shot hashing (Node >= 20.12) skips a Hash object per small file.
const oneShot = crypto.hash === undefined
  ? (data) => createHash('sha256').update(data).digest()
  : (data) => crypto.hash('sha256', data, 'buffer');
const { join } = require('node:path');
const BIG = 1024 * 1024;
let buf;
function buffer() { return (buf ??= Buffer.allocUnsafe(BIG)); }

function stamp(st) { return st.dev + ':' + st.ino + ':' + st.size + ':' + st.mtimeNs + ':' + st.ctimeNs; }

// One open per file, no stat for the small ones: a file below BIG comes back as its bytes (in
// the reused buffer); a bigger one as its digest, streamed. \`forClone\`: the bigger file's stat
// is taken before it is hashed (from the start), to check later that a clone of it still holds
// the hashed bytes.
function readFile(path, forClone) {
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
    const h = createHash('sha256');
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
  } finally { fs.closeSync(fd); }
}

function writeNew(dest, data) {
  let fd;
  try { fd = fs.openSync(dest, 'wx', 0o444); }
  catch (e) { if (e.code === 'EEXIST') return false; throw e; }
  try { fs.writeSync(fd, data); } finally { fs.closeSync(fd); }
  return true;
}

// Item i of a job: hash job.paths[i] into job.digests; an ingest job also stages the object
// (mode job.modes[i]) unless the repository has it, and says so in job.staged[i].
function work(job, i) {
  const path = job.paths[i];
  const ingest = job.modes !== undefined;
  const { data, digest: streamed, before } = readFile(path, ingest);
  const digest = streamed ?? oneShot(data);
  digest.copy(job.digests, i * 32);
  if (!ingest) return;
  const hash = digest.toString('hex');
  const key = hash + '-' + job.modes[i].toString(8);
  if (fs.existsSync(join(job.objectsDir, hash.slice(0, 2), key))) return;
  const dest = join(job.stagingDir, key);
  if (data !== undefined) {
    if (writeNew(dest, data)) job.staged[i] = 1;
    return;
  }
  if (fs.existsSync(dest)) return;
  fs.copyFileSync(path, dest, fs.constants.COPYFILE_FICLONE);
  fs.chmodSync(dest, 0o444);
  // The clone is only good if the file did not change since it was hashed.
  if (stamp(fs.lstatSync(path, { bigint: true })) !== stamp(before)) {
    fs.rmSync(dest, { force: true });
    throw new Error(path + ' changed while it was being committed; stop what writes it and retry');
  }
  job.staged[i] = 1;
}

// Takes items from the shared counter (Int32Array [next item, stop]) until none is left, or
// until \`until()\` says to yield; true when the job has no items left (or was stopped).
function take(job, until) {
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
    if (until !== undefined && until()) return false;
  }
  return true;
}
`;

const WORKER = `${CORE}
const { parentPort } = require('node:worker_threads');
parentPort.on('message', (msg) => {
  const job = {
    ...msg,
    counter: new Int32Array(msg.counter),
    digests: Buffer.from(msg.digests),
    staged: new Uint8Array(msg.staged),
  };
  try {
    take(job);
    parentPort.postMessage({ id: msg.id, ok: true });
  } catch (e) {
    parentPort.postMessage({ id: msg.id, ok: false, error: e && e.message ? e.message : String(e) });
  }
});
`;

interface Job {
  paths: readonly string[];
  /** Ingest jobs only. */
  modes?: readonly number[];
  objectsDir?: string;
  stagingDir?: string;
  counter: Int32Array;
  digests: Buffer;
  staged: Uint8Array;
}

interface Core {
  take(job: Job, until?: () => boolean): boolean;
}

// The same source the workers run, evaluated once on this thread.
// eslint-disable-next-line @typescript-eslint/no-implied-eval
const makeCore = new Function('require', `${CORE}\nreturn { take };`) as (
  req: NodeJS.Require,
) => Core;
const inline = makeCore(createRequire(import.meta.url));

/** Up to this many files the calling thread does the work alone. */
const INLINE_MAX = 256;
/** The calling thread yields to its event loop after this much hashing (ms). */
const SLICE_MS = 4;

interface WorkerReply {
  id: number;
  ok: boolean;
  error?: string;
}

/** `size`: hashing threads, the calling one included (default: cores, at most 4). */
export function createHashPool(size = Math.max(1, Math.min(4, availableParallelism()))): HashPool {
  let workers: Worker[] | undefined;
  let nextId = 0;
  const pending = new Map<number, { worker: Worker; resolve: (r: WorkerReply) => void }>();
  // Jobs in flight per worker. A busy worker keeps the process alive, an idle one must not;
  // counted, because two jobs can share a worker and the first to finish must not unref it
  // while the other still waits (the event loop would then empty with that job pending).
  const busy = new Map<Worker, number>();
  const hold = (w: Worker) => {
    const n = busy.get(w) ?? 0;
    busy.set(w, n + 1);
    if (n === 0) w.ref();
  };
  const release = (w: Worker) => {
    const n = (busy.get(w) ?? 1) - 1;
    busy.set(w, n);
    if (n === 0) w.unref();
  };

  function start(): Worker[] {
    workers ??= Array.from({ length: Math.max(0, size - 1) }, () => {
      // Everything a worker allocates is short-lived (a file's stat, its digest): a small young
      // generation is enough, and keeps the worker ~6 MiB smaller than the default.
      const w = new Worker(WORKER, { eval: true, resourceLimits: { maxYoungGenerationSizeMb: 4 } });
      w.on('message', (m: WorkerReply) => {
        const p = pending.get(m.id);
        pending.delete(m.id);
        p?.resolve(m);
      });
      // A worker that dies fails its job instead of leaving it pending forever.
      w.on('error', (err) => {
        for (const [id, p] of pending) {
          if (p.worker !== w) continue;
          pending.delete(id);
          p.resolve({ id, ok: false, error: err.message });
        }
        workers = workers?.filter((x) => x !== w);
      });
      w.unref();
      return w;
    });
    return workers;
  }

  /** Runs a job on this thread and the workers; fills job.digests and job.staged. */
  async function run(
    job: Omit<Job, 'counter' | 'digests' | 'staged'>,
    onProgress?: (done: number) => void,
  ): Promise<Job> {
    const n = job.paths.length;
    const small = n <= INLINE_MAX;
    const memory = (bytes: number) =>
      small ? new ArrayBuffer(bytes) : new SharedArrayBuffer(bytes);
    const counter = new Int32Array(memory(8));
    const digests = Buffer.from(memory(n * 32));
    const staged = new Uint8Array(memory(n));
    const full: Job = { ...job, counter, digests, staged };
    if (small) {
      inline.take(full);
      return full;
    }
    const replies = start().map((w) =>
      new Promise<WorkerReply>((resolve) => {
        const id = nextId++;
        pending.set(id, { worker: w, resolve });
        hold(w);
        w.postMessage({
          id,
          ...job,
          counter: counter.buffer,
          digests: digests.buffer,
          staged: staged.buffer,
        });
      }).finally(() => release(w)),
    );
    // This thread takes items from the same counter, yielding now and then so that other work
    // of the caller (and the workers' replies) can proceed.
    try {
      for (;;) {
        const until = performance.now() + SLICE_MS;
        if (inline.take(full, () => performance.now() >= until)) break;
        onProgress?.(Math.min(n, Atomics.load(counter, 0)));
        await new Promise((resolve) => setImmediate(resolve));
      }
    } catch (err) {
      // The workers write into this job's memory: let them stop first.
      Atomics.store(counter, 1, 1);
      await Promise.all(replies);
      throw err;
    }
    const failed = (await Promise.all(replies)).find((m) => !m.ok);
    if (failed !== undefined) throw new Error(failed.error);
    return full;
  }

  const hex = (job: Job, i: number) => job.digests.toString('hex', i * 32, i * 32 + 32);

  return {
    hash: async (paths) => {
      const job = await run({ paths });
      return paths.map((_, i) => hex(job, i));
    },
    ingest: async (requests, onProgress) => {
      const results = new Array<IngestResult>(requests.length);
      let before = 0;
      // One job per repository (in practice there is one): its directories are sent once.
      const groups = new Map<string, number[]>();
      requests.forEach((r, i) => {
        const key = `${r.objectsDir}\0${r.stagingDir}`;
        const group = groups.get(key);
        if (group === undefined) groups.set(key, [i]);
        else group.push(i);
      });
      for (const group of groups.values()) {
        const first = requests[group[0] as number] as IngestRequest;
        const mine = group.map((i) => requests[i] as IngestRequest);
        const job = await run(
          {
            paths: mine.map((r) => r.path),
            modes: mine.map((r) => r.mode),
            objectsDir: first.objectsDir,
            stagingDir: first.stagingDir,
          },
          onProgress === undefined
            ? undefined
            : (done) => onProgress(before + done, requests.length),
        );
        before += mine.length;
        onProgress?.(before, requests.length);
        group.forEach((i, j) => {
          results[i] = {
            path: (mine[j] as IngestRequest).path,
            hash: hex(job, j),
            staged: job.staged[j] === 1,
          };
        });
      }
      return results;
    },
    close: async () => {
      await Promise.all((workers ?? []).map((w) => w.terminate()));
      workers = undefined;
    },
  };
}
