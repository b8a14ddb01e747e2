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
import { availableParallelism } from 'node:os';
import { extname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Worker } from 'node:worker_threads';
import { take, type HashJob, type HashJobMessage, type HashJobReply } from './hash-core.ts';

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

/**
 * The worker's entry next to this module: hash-worker.ts under tsx, .js in dist/, .mjs in the
 * package's bundle (packaging/bundle.ts builds it as a second entry).
 */
function startWorker(): Worker {
  const here = fileURLToPath(import.meta.url);
  const ext = extname(here);
  const entry = new URL(`./hash-worker${ext}`, import.meta.url);
  // Everything a worker allocates is short-lived (a file's stat, its digest): a small young
  // generation is enough, and keeps the worker ~6 MiB smaller than the default.
  const resourceLimits = { maxYoungGenerationSizeMb: 4 };
  if (ext !== '.ts') return new Worker(entry, { resourceLimits });
  // From source (tests, benchmarks): a worker does not inherit tsx's loader; it registers it.
  const tsx = import.meta.resolve('tsx/esm/api');
  const boot = `import(${JSON.stringify(tsx)}).then((t) => { t.register(); return import(${JSON.stringify(entry.href)}); })`;
  return new Worker(boot, { eval: true, resourceLimits });
}

/** Up to this many files the calling thread does the work alone. */
const INLINE_MAX = 256;
/** The calling thread yields to its event loop after this much hashing (ms). */
const SLICE_MS = 4;

type Job = HashJob;
type WorkerReply = HashJobReply;

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
      const w = startWorker();
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
      take(full);
      return full;
    }
    const replies = start().map((w) =>
      new Promise<WorkerReply>((resolve) => {
        const id = nextId++;
        pending.set(id, { worker: w, resolve });
        hold(w);
        const message: HashJobMessage = {
          id,
          ...job,
          counter: counter.buffer as SharedArrayBuffer,
          digests: digests.buffer as SharedArrayBuffer,
          staged: staged.buffer as SharedArrayBuffer,
        };
        w.postMessage(message);
      }).finally(() => release(w)),
    );
    // This thread takes items from the same counter, yielding now and then so that other work
    // of the caller (and the workers' replies) can proceed.
    try {
      for (;;) {
        const until = performance.now() + SLICE_MS;
        if (take(full, () => performance.now() >= until)) break;
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
