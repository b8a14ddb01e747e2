// Persist, gate, act: every snapshot of a persisted actor system is written durably, in order,
// and an effect (an invoked actor) may start its work only once a snapshot that already
// contains it is on disk. After a crash the restored machine re-invokes exactly the effects
// that were in flight, and never one whose state was not yet recorded.
//
// Snapshots are taken on every `@xstate.snapshot` inspection event of the system, not only on
// the root's own changes: a spawned child's progress does not notify the root's observers.
//
// A write the disk refuses (full, I/O error, permission) can park the store instead of stopping
// it: the same write is tried again after a bounded backoff, later snapshots queue behind it,
// and gates stay closed until it lands. The file on disk keeps its last complete contents
// (atomic replace), so nothing is lost and no effect runs ahead of its record.
import type { AnyActorRef, InspectionEvent } from 'xstate';

export interface Envelope<S = unknown> {
  format: 1;
  machineId: string;
  machineVersion: string;
  /** Increases with every write; a restored system continues from the stored value. */
  seq: number;
  savedAt: string;
  snapshot: S;
}

export interface DurableStoreOptions {
  machineId: string;
  machineVersion: string;
  /** Writes the envelope text atomically and durably (temp, fsync, rename, fsync dir). */
  write: (text: string) => Promise<void>;
  /** A write failed for good: nothing more is persisted and every gate fails (fail-stop). */
  onFatal: (err: unknown) => void;
  /**
   * Which failed writes to wait out (park, retry) rather than fail-stop; default none. The
   * daemon waits for disk space; a command run in-process fails at once.
   */
  retryable?: (err: unknown) => boolean;
  /** Backoff between retries of a parked write: doubles from `initialMs` up to `maxMs`. */
  retryDelay?: { initialMs: number; maxMs: number };
  /** The store parked (a write is being retried) or went on (null). */
  onParked?: (parked: ParkedWrite | null) => void;
  initialSeq?: number;
  now?: () => Date;
}

/** A snapshot write the disk refused, retried until it lands. */
export interface ParkedWrite {
  /** When the first attempt of this write failed. */
  since: string;
  attempts: number;
  /** The last failure. */
  error: unknown;
  nextRetryAt: string;
}

/**
 * JSON.stringify(envelope), byte for byte, from the snapshot already serialised (to compare with
 * the last write): the snapshot, nearly all of the file, is serialised once, not twice.
 * Key order is the Envelope's: format, machineId, machineVersion, seq, savedAt, snapshot.
 */
export function envelopeText(
  fields: Pick<Envelope, 'machineId' | 'machineVersion' | 'seq' | 'savedAt'>,
  snapshotText: string,
): string {
  return (
    `{"format":1,"machineId":${JSON.stringify(fields.machineId)}` +
    `,"machineVersion":${JSON.stringify(fields.machineVersion)}` +
    `,"seq":${JSON.stringify(fields.seq)},"savedAt":${JSON.stringify(fields.savedAt)}` +
    `,"snapshot":${snapshotText}}`
  );
}

interface Waiter {
  ref: AnyActorRef;
  resolve: () => void;
  reject: (err: unknown) => void;
}

function collectRefs(ref: AnyActorRef, into: Set<AnyActorRef>): void {
  const children = (ref.getSnapshot() as { children?: Record<string, AnyActorRef | undefined> })
    .children;
  if (children === undefined) return;
  for (const child of Object.values(children)) {
    if (child === undefined || into.has(child)) continue;
    into.add(child);
    collectRefs(child, into);
  }
}

export class DurableStore {
  private readonly o: DurableStoreOptions;
  private root: AnyActorRef | undefined;
  private seq: number;
  private durableSeq: number;
  private chain: Promise<void> = Promise.resolve();
  private failed: Error | undefined;
  private closed = false;
  private lastText = '';
  /** The first write that contained each actor. */
  private readonly firstSeq = new WeakMap<AnyActorRef, number>();
  private waiters: Waiter[] = [];
  private scheduled = false;
  private parkedWrite: ParkedWrite | undefined;
  /** Wakes a parked retry early (close). */
  private wake: (() => void) | undefined;

  constructor(options: DurableStoreOptions) {
    this.o = options;
    this.seq = options.initialSeq ?? 0;
    this.durableSeq = this.seq;
  }

  get lastSeq(): number {
    return this.seq;
  }

  /** The write being retried, if the store is parked. */
  get parked(): ParkedWrite | undefined {
    return this.parkedWrite;
  }

  /** Pass to `createActor(machine, { inspect: store.inspect })`. */
  readonly inspect = (event: InspectionEvent): void => {
    if (event.type !== '@xstate.snapshot' || this.closed || this.root === undefined) return;
    // One write per synchronous burst: a child's change and the parent's reaction to it (an
    // event it sent) land in the same snapshot, never one without the other.
    if (this.scheduled) return;
    this.scheduled = true;
    queueMicrotask(() => this.recordScheduled());
  };

  private recordScheduled(): void {
    if (!this.scheduled) return;
    this.scheduled = false;
    this.record();
  }

  /** Binds the store to the system's root actor; call before `start()`. */
  attach(root: AnyActorRef): void {
    this.root = root;
  }

  /** Writes the current persisted snapshot of the whole system (serialised behind earlier writes). */
  record(): void {
    const root = this.root;
    if (root === undefined || this.failed !== undefined || this.closed) return;
    const persisted = root.getPersistedSnapshot();
    const text = JSON.stringify(persisted);
    // Identical state: nothing new to make durable (but refs may have appeared: tag them).
    const refs = new Set<AnyActorRef>([root]);
    collectRefs(root, refs);
    if (text === this.lastText) {
      for (const ref of refs) if (!this.firstSeq.has(ref)) this.firstSeq.set(ref, this.seq);
      this.settleWaiters();
      return;
    }
    this.lastText = text;
    const seq = ++this.seq;
    for (const ref of refs) if (!this.firstSeq.has(ref)) this.firstSeq.set(ref, seq);
    const savedAt = (this.o.now ?? (() => new Date()))().toISOString();
    const body = envelopeText(
      { machineId: this.o.machineId, machineVersion: this.o.machineVersion, seq, savedAt },
      text,
    );
    this.chain = this.chain.then(() => this.writeWithRetry(body, seq));
  }

  private async writeWithRetry(body: string, seq: number): Promise<void> {
    const delay = this.o.retryDelay ?? { initialMs: 1000, maxMs: 15_000 };
    const now = this.o.now ?? (() => new Date());
    for (let attempt = 1; this.failed === undefined; attempt++) {
      try {
        await this.o.write(body);
        this.durableSeq = Math.max(this.durableSeq, seq);
        if (this.parkedWrite !== undefined) {
          this.parkedWrite = undefined;
          this.o.onParked?.(null);
        }
        this.settleWaiters();
        return;
      } catch (err) {
        // Closed: the system is stopping; what is on disk is what the next start resumes.
        if (this.closed) return;
        if (this.o.retryable?.(err) !== true) {
          this.fail(err);
          return;
        }
        const wait = Math.min(delay.maxMs, delay.initialMs * 2 ** (attempt - 1));
        const at = now();
        this.parkedWrite = {
          since: this.parkedWrite?.since ?? at.toISOString(),
          attempts: (this.parkedWrite?.attempts ?? 0) + 1,
          error: err,
          nextRetryAt: new Date(at.getTime() + wait).toISOString(),
        };
        this.o.onParked?.(this.parkedWrite);
        await new Promise<void>((resolve) => {
          const timer = setTimeout(resolve, wait);
          this.wake = () => {
            clearTimeout(timer);
            resolve();
          };
        });
        this.wake = undefined;
        // Never write after close: a stopped system would restore as inert.
        if (this.isClosed()) return;
      }
    }
  }

  private isClosed(): boolean {
    return this.closed;
  }

  private fail(err: unknown): void {
    this.failed = err instanceof Error ? err : new Error(String(err));
    for (const w of this.waiters) w.reject(err);
    this.waiters = [];
    this.o.onFatal(err);
  }

  private settleWaiters(): void {
    this.waiters = this.waiters.filter((w) => {
      const first = this.firstSeq.get(w.ref);
      if (first === undefined || first > this.durableSeq) return true;
      w.resolve();
      return false;
    });
  }

  /**
   * Resolves once a snapshot containing `ref` is durable. Called at the start of every effect;
   * the effect may run before observers saw the state that invoked it, so the waiter also
   * triggers a snapshot of its own.
   */
  whenDurable(ref: AnyActorRef): Promise<void> {
    if (this.failed !== undefined) return Promise.reject(this.failed);
    return new Promise<void>((resolve, reject) => {
      this.waiters.push({ ref, resolve, reject });
      // The invoking state is recorded once the current macrostep ends.
      queueMicrotask(() => this.record());
      this.settleWaiters();
    });
  }

  /** Waits for every queued write. */
  async flush(): Promise<void> {
    this.recordScheduled();
    await this.chain;
    if (this.failed !== undefined) throw this.failed;
  }

  /** Stops recording (never persist a stopped system: it would restore as inert). */
  close(): void {
    this.closed = true;
    this.wake?.();
  }
}
