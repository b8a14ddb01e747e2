// Runs the update statecharts: loads patch.meta (services/update/update-store.ts), provides the
// effects, and persists every change through the DurableStore before any effect may act
// (persist, gate, act). Also writes the NDJSON transition trace and answers status queries and
// operator events (which the machine serialises: one job at a time).
import {
  createActor,
  fromPromise,
  type Actor,
  type AnyActorLogic,
  type AnyActorRef,
  type InspectionEvent,
} from 'xstate';
import {
  BoxkeeperError,
  describeStorageError,
  errorMessage,
  isDiskFull,
  storageErrorOf,
} from '../../adapters/errors.ts';
import type { DownloadProgress } from '../../adapters/cloud-client.ts';
import type { Logger } from '../../adapters/logger.ts';
import { maskSecrets } from '../../adapters/secrets.ts';
import type { Timed } from '../../machines/patch.machine.ts';
import {
  statePath,
  tagsOfValue,
  withEffects,
  type UpdateEffectContract,
  type UpdateEvent,
  type UpdatePolicy,
} from '../../machines/update.machine.ts';
import { DurableStore, type ParkedWrite } from './durable.ts';
import {
  loadPatchMeta,
  MACHINE_ID,
  MACHINE_VERSION,
  type LoadedMeta,
  type MetaFiles,
  writePatchMeta,
} from './update-store.ts';
import { describe, type ParkedStatus, type UpdateStatus } from './update-status.ts';

// The status shape and describe() live in update-status.ts (no XState, for `boxkeeper status`).

/** Download progress reaches status.json and waiting commands at most this often. */
const PROGRESS_NOTICE_MS = 1000;

/** The cycle did not come to rest in time; what is on disk resumes at the next start. */
export class UpdateTimeoutError extends BoxkeeperError {
  readonly state: string;
  constructor(state: string, timeoutMs: number) {
    super(
      `the update is still in "${state}" after ${Math.round(timeoutMs / 1000)} s; it is saved ` +
        'and goes on at the next start of boxkeeper (or give --timeout more seconds)',
      'internal',
    );
    this.state = state;
  }
}
export type { UpdateVersionStatus } from './update-status.ts';
export { describe, type UpdateStatus };

/**
 * What each effect does, as the machines declare it (machines/update.machine.ts derives the
 * contract from their actors); services/update/update-effects.ts implements them against the box.
 */
export type UpdateEffects = UpdateEffectContract;

export interface TraceSink {
  write(line: string): void;
}

export interface UpdateEngineDeps {
  metaPath: string;
  metaFiles: MetaFiles;
  policy: UpdatePolicy;
  effects: UpdateEffects;
  logger: Logger;
  now?: () => number;
  trace?: TraceSink;
  /** Extra inspection (e.g. the Stately inspector); never required. */
  inspect?: (event: InspectionEvent) => void;
  /**
   * false: no version check on the timer (an operator command running in-process does its one
   * job and stops); default true.
   */
  periodicChecks?: boolean;
  /** A patch.meta write failed: the agent must stop (fail-stop) and resume from the file. */
  onFatal: (err: unknown) => void;
  /**
   * A patch.meta write the disk refuses parks the update and is retried (the daemon); without
   * it such a write is fatal too (a command run in-process reports it and exits).
   */
  waitForDisk?: boolean;
  /** Backoff of those retries (default 1 s doubling to 15 s). */
  diskRetryDelay?: { initialMs: number; maxMs: number };
}

function abortable(signal: AbortSignal): Promise<never> {
  return new Promise((_, reject) => {
    if (signal.aborted) reject(new Error('cancelled'));
    signal.addEventListener('abort', () => reject(new Error('cancelled')), { once: true });
  });
}

function stampError(err: unknown, at: number): Error {
  const e = err instanceof Error ? err : new Error(String(err));
  return Object.assign(e, { at });
}

type Machine = ReturnType<typeof buildMachine>;
type EffectFn = (input: unknown, signal: AbortSignal) => Promise<unknown>;

function buildMachine(
  periodicChecks: boolean,
  gate: (name: string, fn: EffectFn) => AnyActorLogic,
  e: UpdateEffects,
  now: () => number,
  trace: TraceSink | undefined,
) {
  // A wait has no effect to gate: after a crash it simply sleeps towards the same deadline.
  const waitUntil = fromPromise<Timed, { until: number }>(async ({ input, signal, self }) => {
    // In the trace, so a reader sees what the agent waits for, and until when.
    trace?.write(
      JSON.stringify({
        t: new Date(now()).toISOString(),
        wait: self.id,
        until: Number.isFinite(input.until) ? new Date(input.until).toISOString() : input.until,
      }),
    );
    if (!periodicChecks && self.id === 'waitForCheck') {
      await new Promise<void>((resolve) => {
        signal.addEventListener('abort', () => resolve(), { once: true });
      });
      return { at: now() };
    }
    for (;;) {
      const left = input.until - now();
      if (left <= 0 || signal.aborted) return { at: now() };
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, Math.min(left, 60_000));
        signal.addEventListener(
          'abort',
          () => {
            clearTimeout(t);
            resolve();
          },
          { once: true },
        );
      });
    }
  });
  // Every src of the machines is a method of UpdateEffects (checked here, at start).
  const methods = e as unknown as Record<string, EffectFn | undefined>;
  return withEffects((src) => {
    if (src === 'waitUntil') return waitUntil;
    const method = methods[src];
    if (typeof method !== 'function') throw new Error(`no effect implements "${src}"`);
    return gate(src, (input, signal) => method.call(e, input, signal));
  });
}

export class UpdateEngine {
  private readonly d: UpdateEngineDeps;
  private readonly now: () => number;
  private loaded: LoadedMeta | undefined;
  private actor: Actor<Machine> | undefined;
  private store: DurableStore | undefined;
  private readonly listeners = new Set<(s: UpdateStatus) => void>();
  private readonly progress = new Map<string, DownloadProgress>();
  private readonly extraction = new Map<string, { bytes: number; totalBytes: number }>();
  /** The snapshot the current state takes, if any (cleared when the state changes). */
  private snapshotWork: NonNullable<UpdateStatus['snapshot']> | undefined;
  private progressNotice: { at: number; timer: NodeJS.Timeout | undefined } = {
    at: 0,
    timer: undefined,
  };
  private lastPath = '';
  private parkedStatus: ParkedStatus | null = null;

  constructor(deps: UpdateEngineDeps) {
    this.d = deps;
    this.now = deps.now ?? Date.now;
  }

  /** Reads patch.meta (import, migrate, validate, set aside); nothing runs yet. */
  async load(): Promise<LoadedMeta> {
    this.loaded = await loadPatchMeta(this.d.metaPath, this.d.policy, this.d.metaFiles);
    for (const note of this.loaded.notes) this.d.logger.warn({ file: this.d.metaPath }, note);
    return this.loaded;
  }

  /** Whether the loaded state has the box services down (the agent must not start them). */
  servicesMustStayDown(): boolean {
    const l = this.loaded;
    if (l?.kind === 'imported') {
      // Where an imported state boots to (e.g. the Python updater's SELF_UPDATE_COMPLETE goes
      // straight to finalizing, services down): the machine's routing, no effect run.
      const never = fromPromise<Timed, unknown>(() => new Promise<Timed>(() => undefined));
      const actor = createActor(
        withEffects(() => never),
        { input: l.input },
      );
      return actor.getSnapshot().hasTag('servicesDown');
    }
    if (l?.kind !== 'restored') return false;
    return tagsOfValue(l.snapshot.value).has('servicesDown');
  }

  /**
   * Reports download progress of a version (not persisted). Listeners (status.json, a waiting
   * command) hear of it at most once a second, and of the last report in any case.
   */
  reportProgress(versionCode: string, progress: DownloadProgress): void {
    this.progress.set(versionCode, progress);
    this.noticeProgress();
  }

  /** Reports extraction progress of a version (not persisted), as `reportProgress`. */
  reportExtraction(versionCode: string, extraction: { bytes: number; totalBytes: number }): void {
    this.extraction.set(versionCode, extraction);
    this.noticeProgress();
  }

  /** Reports the progress of a snapshot the cycle takes (not persisted), as `reportProgress`. */
  reportSnapshot(work: NonNullable<UpdateStatus['snapshot']>): void {
    this.snapshotWork = work;
    this.noticeProgress();
  }

  private noticeProgress(): void {
    const notice = this.progressNotice;
    if (notice.timer !== undefined) return;
    const wait = Math.max(0, notice.at + PROGRESS_NOTICE_MS - Date.now());
    notice.timer = setTimeout(() => {
      notice.timer = undefined;
      notice.at = Date.now();
      this.notify();
    }, wait);
    notice.timer.unref();
  }

  start(): void {
    const loaded = this.loaded;
    if (loaded === undefined) throw new Error('UpdateEngine.load() must run before start()');
    const log = this.d.logger;
    const store = new DurableStore({
      machineId: MACHINE_ID,
      machineVersion: MACHINE_VERSION,
      initialSeq: loaded.seq,
      write: (text) => writePatchMeta(this.d.metaFiles.fs, this.d.metaPath, text),
      onFatal: (err) => {
        log.fatal(
          { err: errorMessage(err), file: this.d.metaPath },
          'cannot persist patch.meta; stopping',
        );
        this.d.onFatal(err);
      },
      now: () => new Date(this.now()),
      ...(this.d.waitForDisk === true
        ? {
            retryable: (err: unknown) => storageErrorOf(err) !== undefined,
            onParked: (p: ParkedWrite | null) => this.onParked(p),
            ...(this.d.diskRetryDelay === undefined ? {} : { retryDelay: this.d.diskRetryDelay }),
          }
        : {}),
    });
    this.store = store;
    const now = this.now;
    const trace = this.d.trace;
    const gate = <I, O extends object>(
      name: string,
      fn: (i: I, s: AbortSignal) => Promise<unknown>,
    ) =>
      fromPromise<O & Timed, I>(async ({ input, self, signal }) => {
        await Promise.race([store.whenDurable(self), abortable(signal)]);
        // Inputs carry the cloud's config map (callboxPassword …): a trace keeps no secret.
        trace?.write(
          JSON.stringify({
            t: new Date(now()).toISOString(),
            effect: name,
            input: maskSecrets(input),
          }),
        );
        log.debug({ effect: name }, 'effect starts');
        try {
          const out = ((await fn(input, signal)) ?? {}) as O;
          return { ...out, at: now() };
        } catch (err) {
          // A disk that refused a write is said plainly (file, cause, what to do), no errno text.
          const clear = describeStorageError(err);
          const failure = clear === undefined ? err : new Error(clear, { cause: err });
          log.warn({ effect: name, err: errorMessage(failure) }, 'effect failed');
          throw stampError(failure, now());
        }
      });
    const machine = buildMachine(this.d.periodicChecks ?? true, gate, this.d.effects, now, trace);
    const inspect = (ev: InspectionEvent) => {
      store.inspect(ev);
      this.traceEvent(ev);
      this.d.inspect?.(ev);
    };
    const actor =
      loaded.kind === 'restored'
        ? createActor(machine, { snapshot: loaded.snapshot, inspect } as never)
        : createActor(machine, { input: loaded.input, inspect });
    this.actor = actor;
    store.attach(actor);
    actor.subscribe({
      next: () => this.notify(),
      error: (err) => {
        log.error({ err: errorMessage(err) }, 'update machine failed');
      },
    });
    actor.start();
    // A restored machine writes its state once more (and so passes its gates).
    store.record();
    this.notify();
  }

  private onParked(p: ParkedWrite | null): void {
    const log = this.d.logger;
    if (p === null) {
      log.warn(
        { file: this.d.metaPath, since: this.parkedStatus?.since },
        'patch.meta written again; the update goes on',
      );
      this.parkedStatus = null;
    } else {
      const reason = isDiskFull(p.error)
        ? 'waiting for disk space'
        : `waiting for ${this.d.metaPath} to be writable`;
      const error = describeStorageError(p.error, this.d.metaPath) ?? errorMessage(p.error);
      if (this.parkedStatus === null)
        log.error(
          { file: this.d.metaPath, err: error },
          `cannot save patch.meta: the update is parked, ${reason} (retried until it works)`,
        );
      this.parkedStatus = {
        reason,
        error,
        since: p.since,
        attempts: p.attempts,
        nextRetryAt: p.nextRetryAt,
      };
    }
    this.notify();
  }

  private traceEvent(ev: InspectionEvent): void {
    const trace = this.d.trace;
    if (trace === undefined) return;
    const t = new Date(this.now()).toISOString();
    if (ev.type === '@xstate.event' && !ev.event.type.startsWith('xstate.init')) {
      trace.write(
        JSON.stringify({ t, actor: (ev.actorRef as AnyActorRef).id, event: ev.event.type }),
      );
    } else if (ev.type === '@xstate.microstep') {
      const transitions =
        (
          ev as unknown as {
            _transitions?: Array<{ source: { id: string }; target?: Array<{ id: string }> }>;
          }
        )._transitions ?? [];
      const snap = ev.snapshot as { value?: unknown };
      trace.write(
        JSON.stringify({
          t,
          actor: (ev.actorRef as AnyActorRef).id,
          event: ev.event.type,
          state: statePath(snap.value),
          transitions: transitions.map(
            (tr) => `${tr.source.id}->${(tr.target ?? []).map((x) => x.id).join(',')}`,
          ),
        }),
      );
    }
  }

  private notify(): void {
    let s = this.status();
    if (s.state !== this.lastPath) {
      this.lastPath = s.state;
      if (this.snapshotWork !== undefined) {
        this.snapshotWork = undefined;
        s = this.status();
      }
      this.d.logger.info(
        {
          update: s.state,
          phase: s.phase,
          versions: s.versions.map((v) => `${v.versionNum}:${v.status}`),
        },
        'update state',
      );
    }
    for (const l of this.listeners) l(s);
  }

  onChange(listener: (s: UpdateStatus) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  /** Sends an operator event; false when the current state does not take it (busy). */
  send(event: UpdateEvent): boolean {
    const actor = this.actor;
    if (actor === undefined) return false;
    if (!actor.getSnapshot().can(event)) return false;
    actor.send(event);
    return true;
  }

  status(): UpdateStatus {
    const actor = this.actor;
    if (actor === undefined) throw new Error('update engine not started');
    return {
      ...describe(
        actor.getPersistedSnapshot() as never,
        this.store?.lastSeq ?? 0,
        actor.getSnapshot().tags,
        this.progress,
        this.extraction,
      ),
      parked: this.parkedStatus,
      ...(this.snapshotWork === undefined ? {} : { snapshot: this.snapshotWork }),
    };
  }

  /** Resolves once the machine rests (idle or waiting for an install) and has written it. */
  async settled(timeoutMs: number): Promise<UpdateStatus> {
    const deadline = this.now() + timeoutMs;
    for (;;) {
      const s = this.status();
      if (s.tags.includes('settled')) {
        await this.store?.flush();
        return s;
      }
      if (this.now() > deadline) throw new UpdateTimeoutError(s.state, timeoutMs);
      await new Promise((r) => setTimeout(r, 50));
    }
  }

  /** Stops the machines; whatever is on disk resumes on the next start. */
  async stop(): Promise<void> {
    const store = this.store;
    store?.close();
    this.actor?.stop();
    await store?.flush().catch(() => undefined);
  }
}

/**
 * Applies one event to the persisted state without running any effect, and writes the result
 * (the self-updater records SELF_UPDATE.* this way while no agent runs). Returns the new state.
 */
export async function recordEvent(
  metaPath: string,
  metaFiles: MetaFiles,
  policy: UpdatePolicy,
  event: UpdateEvent,
): Promise<string> {
  const loaded = await loadPatchMeta(metaPath, policy, metaFiles);
  if (loaded.kind !== 'restored')
    throw new Error(`${metaPath}: no update state to record ${event.type} in (${loaded.kind})`);
  const never = fromPromise<Timed, unknown>(() => new Promise<Timed>(() => undefined));
  const machine = withEffects(() => never);
  const actor = createActor(machine, { snapshot: loaded.snapshot } as never);
  actor.start();
  try {
    if (!actor.getSnapshot().can(event)) {
      throw new Error(
        `${event.type} does not apply in state ${statePath(actor.getSnapshot().value)}`,
      );
    }
    actor.send(event);
    const envelope = {
      format: 1,
      machineId: MACHINE_ID,
      machineVersion: MACHINE_VERSION,
      seq: loaded.seq + 1,
      savedAt: metaFiles.now().toISOString(),
      snapshot: actor.getPersistedSnapshot(),
    };
    await writePatchMeta(metaFiles.fs, metaPath, JSON.stringify(envelope));
    return statePath(actor.getSnapshot().value);
  } finally {
    actor.stop();
  }
}
