// The update cycle: check → download → (wait for the operator if optional) → install → done,
// and rollback to the pre-update snapshot on any failure before COMPLETE. Each state carries
// the Python tool's PatchCyclePhase number (`phaseOf`), so status output and patch.meta readers
// can show it. One version of the update is one spawned `patch` child (see patch.machine.ts);
// the `versions` list mirrors their statuses for guards and status output.
//
// Rules that make it resumable (docs/lifecycle.md):
// - every effect is an invoke with an explicit id and a string src, input derived from context;
// - no IO and no clock in actions: effects report when they finished (`at`), and every wait is
//   a deadline in context that a `waitUntil` effect sleeps towards (no `after`: not restored);
// - no dead ends: every state either runs an effect, waits for a deadline, or is final-free
//   and reachable by the timer.
import {
  assign,
  enqueueActions,
  fromPromise,
  setup,
  type ActorRefFrom,
  type AnyActorLogic,
} from 'xstate';
import {
  errorText,
  eventTime,
  patchMachine,
  withPatchEffects,
  type EffectOf,
  type PatchEffectContract,
  type PatchEffectInput,
  type PatchInfo,
  type PatchReport,
  type Timed,
} from './patch.machine.ts';
import { ready, type PatchStatusName, type PhaseName, type UpdateTag } from './phases.ts';

// Status helpers live in phases.ts (no XState); re-exported for the machine's users.
export { phaseOf, statePath, type UpdateTag } from './phases.ts';

export type TaskNo = string | number;

export interface UpdatePolicy {
  checkIntervalMs: number;
  /** The check is delayed by up to this much, spread by the check time (no thundering herd). */
  checkJitterMs: number;
  /** How long the services may take to be ready after an update before it is rolled back. */
  healthTimeoutMs: number;
  /** How long both services must then stay up. */
  healthSettleMs: number;
  /** Wait after finding active calls before trying the install again. */
  callsRetryMs: number;
  /** Wait before retrying a step that must not be given up (resume tasks, rollback). */
  retryDelayMs: number;
  /** A mandatory update that failed this many times waits for an operator. */
  maxFailedInstalls: number;
}

export interface VersionEntry extends PatchInfo {
  /** The spawned child's id. */
  id: string;
  status: PatchStatusName;
  /** The agent build this version carries (self-update), once applied. */
  agentBuild: string | null;
}

export type Job = 'install' | 'revert';

export interface UpdateContext {
  policy: UpdatePolicy;
  /** Last upgradeMark (-1: never checked). */
  mark: number;
  versions: VersionEntry[];
  /** Failed cycles left before the list is dropped and asked for again (the original's 5). */
  retries: number;
  nextCheckAt: number;
  /** Deadline of the current retry wait (active calls, resume, rollback). */
  waitUntil: number;
  /** The operator asked to install: install as soon as the download completes. */
  installRequested: boolean;
  job: Job | null;
  /** Exactly the tasks boxkeeper paused (and only those are resumed); null: none. */
  pausedTasks: TaskNo[] | null;
  /**
   * The install was taken over from the Python tool mid-way (imported BACKUP_CREATED …
   * SELF_UPDATE_COMPLETE): the tasks it paused are not in `pausedTasks`, so once the services
   * are up, the box app's paused tasks are adopted as tasks to resume (once; then false).
   */
  adoptPaused: boolean;
  /** Snapshot version taken before this install (rollback target). */
  backup: string | null;
  /** The pre-update snapshot of the last completed update (`boxkeeper rollback`). */
  lastBackup: string | null;
  /**
   * The box version the last restore brought back (configuration.ini after it), so results
   * name the version (V1.7), not only the snapshot (pre-V1.8.1); null before any restore.
   */
  restored: string | null;
  /** versionCodes of the last completed update. */
  lastInstalled: string[];
  /**
   * versionCodes an operator rolled back: that list is not installed again on its own (only by
   * `boxkeeper install`, or when the cloud offers a different list).
   */
  heldBack: string[];
  /** Counts install attempts; names the backup so a re-run after a crash is idempotent. */
  installId: number;
  healthDeadline: number;
  failedInstalls: number;
  rollbackAttempts: number;
  lastError: string | null;
  lastResult: string | null;
  /** How this run of the machine began: imported from the Python tool, or a recovery. */
  startup: { imported: PhaseName | null; recover: string | null };
}

export interface UpdateInput {
  policy: UpdatePolicy;
  /** Imported from a Python-era patch.meta: where to start. */
  imported?: {
    phase: PhaseName;
    versions: Array<PatchInfo & { status: PatchStatusName }>;
    retries: number;
    mark: number;
  };
  /** patch.meta was unusable: reconcile from the box before anything else. */
  recover?: string;
}

export type UpdateEvent =
  | { type: 'CHECK' }
  | { type: 'INSTALL' }
  | { type: 'ROLLBACK' }
  | { type: 'CLEAR_CACHE' }
  | { type: 'RELOAD_CONFIG'; policy: UpdatePolicy }
  /** `boxkeeper install --file`: a patch staged from a file replaces the list and installs. */
  | { type: 'INSTALL_FILE'; patch: PatchInfo }
  /** Sent by the self-updater once the new agent build is in place (or it gave up). */
  | { type: 'SELF_UPDATE.SWAPPED' }
  | { type: 'SELF_UPDATE.FAILED'; error: string }
  | PatchReport;

// ---- effect contracts (implemented in services/update/update-effects.ts) ---------------------------

export interface CheckOutput extends Timed {
  upgradeMark: number;
  upgradeList: PatchInfo[];
}
export interface TasksOutput extends Timed {
  tasks: TaskNo[];
}
export interface CallsOutput extends Timed {
  active: number;
}
export interface RollbackOutput extends Timed {
  /** The box version after the restore (configuration.ini), when it could be read. */
  restored?: string | null;
}
export interface BackupOutput extends Timed {
  version: string;
}
export interface PausedTasksOutput extends Timed {
  tasks: TaskNo[];
}
export interface ReconcileOutput extends Timed {
  /** A pre-update snapshot that must be restored (an install was interrupted), or null. */
  backup: string | null;
  note: string;
}

const effect = <O extends Timed, I>() =>
  fromPromise<O, I>(() => Promise.reject(new Error('effect not provided')));

export const UPDATE_MACHINE_VERSION = '4';
const RETRIES = 5;
/** Imported Python phases of an install under way (its backup taken, files maybe changed). */
const MID_INSTALL_PHASES = [
  'BACKUP_CREATED',
  'FILES_UPDATED',
  'SELF_UPDATE_PENDING',
  'SELF_UPDATE_COMPLETE',
];
/** Marks a state an operator must look at (install-consistency.ts writes it too). */
export const ATTENTION = 'the box needs attention';

/** "V1.7 (snapshot pre-V1.8.1)": the version a restore brought back, and from which snapshot. */
function restoredName(context: UpdateContext): string {
  const snapshot = context.backup ?? '?';
  return context.restored === null ? snapshot : `${context.restored} (snapshot ${snapshot})`;
}
const RESUME_NOTE = '; resuming the paused tasks failed (retrying): ';

function jitter(at: number, policy: UpdatePolicy): number {
  if (policy.checkJitterMs <= 0) return 0;
  // Spread by the check time: pure, and different on every box and every hour.
  return Math.abs(Math.imul(Math.floor(at / 1000), 2654435761) | 0) % policy.checkJitterMs;
}

function nextCheck(at: number, policy: UpdatePolicy): number {
  return at + policy.checkIntervalMs + jitter(at, policy);
}

function sameList(versions: VersionEntry[], list: PatchInfo[]): boolean {
  return (
    versions.length === list.length &&
    versions.every(
      (v, i) => v.versionCode === list[i]?.versionCode && v.fileMd5 === list[i].fileMd5,
    )
  );
}

function sameCodes(versions: VersionEntry[], codes: string[]): boolean {
  return versions.length === codes.length && versions.every((v, i) => v.versionCode === codes[i]);
}

/** The version carrying the new agent build (self-update). */
function selfUpdateInput(context: UpdateContext): { versionNum: string; agentBuild: string } {
  const v = context.versions.find((x) => x.agentBuild !== null);
  return { versionNum: v?.versionNum ?? '', agentBuild: v?.agentBuild ?? '' };
}

/** A step failed: roll back (or abandon), recording which step and why. */
function rollBackOnError(step: string) {
  return {
    target: '#update.rollingBack',
    actions: {
      type: 'noteError' as const,
      params: ({ event }: { event: { error: unknown } }) => ({
        text: `${step}: ${errorText(event.error)}`,
      }),
    },
  };
}

function rollbackFailed(context: UpdateContext): boolean {
  return context.lastError?.startsWith('ROLLBACK FAILED') === true;
}

export function childId(versionCode: string): string {
  return `patch:${versionCode}`;
}

function entries(list: Array<PatchInfo & { status?: PatchStatusName }>): VersionEntry[] {
  return list.map((p) => ({
    versionCode: p.versionCode,
    versionNum: p.versionNum,
    fileMd5: p.fileMd5,
    remark: p.remark,
    argumentConfigMap: p.argumentConfigMap,
    id: childId(p.versionCode),
    status: p.status ?? 'PENDING',
    agentBuild: null,
  }));
}

function withStatus(
  versions: VersionEntry[],
  versionCode: string,
  status: PatchStatusName,
): VersionEntry[] {
  return versions.map((v) => (v.versionCode === versionCode ? { ...v, status } : v));
}

function backupName(context: UpdateContext): string {
  const target = context.versions[context.versions.length - 1]?.versionNum ?? 'update';
  return `pre-${target}.${context.installId}`.replace(/[^A-Za-z0-9._-]/g, '_');
}

/** The update cycle's effects, as declared (placeholders until a service provides them). */
const updateEffects = {
  waitUntil: effect<Timed, { until: number }>(),
  checkVersion: effect<CheckOutput, Record<string, never>>(),
  admitVersions: effect<Timed, { versions: PatchEffectInput[] }>(),
  listTasks: effect<TasksOutput, Record<string, never>>(),
  listPausedTasks: effect<PausedTasksOutput, { until: number }>(),
  pauseTasks: effect<Timed, { tasks: TaskNo[] }>(),
  resumeTasks: effect<Timed, { tasks: TaskNo[] }>(),
  checkCalls: effect<CallsOutput, Record<string, never>>(),
  stopServices: effect<Timed, Record<string, never>>(),
  backup: effect<BackupOutput, { name: string; subject: string }>(),
  finalizeConfig: effect<Timed, Record<string, never>>(),
  startServices: effect<Timed, { deadline: number; settleMs: number }>(),
  releaseServices: effect<Timed, Record<string, never>>(),
  handOver: effect<Timed, { versionNum: string; agentBuild: string }>(),
  confirmSelfUpdate: effect<Timed, { versionNum: string; agentBuild: string }>(),
  commitSnapshot: effect<BackupOutput, { version: string; subject: string }>(),
  rollbackSnapshot: effect<RollbackOutput, { version: string }>(),
  clearCache: effect<Timed, Record<string, never>>(),
  reconcile: effect<ReconcileOutput, { reason: string }>(),
};

/**
 * The contract of every effect of both machines, derived from their declarations: providing
 * one with another input or output is a type error. `waitUntil` is the engine's own.
 */
export type UpdateEffectContract = {
  [K in Exclude<keyof typeof updateEffects, 'waitUntil'>]: EffectOf<(typeof updateEffects)[K]>;
} & PatchEffectContract;

export const updateMachine = setup({
  types: {
    context: {} as UpdateContext,
    events: {} as UpdateEvent,
    input: {} as UpdateInput,
    tags: {} as UpdateTag,
  },
  actors: { patch: patchMachine, ...updateEffects },
  guards: {
    allReady: ({ context }) =>
      context.versions.length > 0 && context.versions.every((v) => ready(v.status)),
    incompleteDownloads: ({ context }) =>
      context.versions.length > 0 && !context.versions.every((v) => ready(v.status)),
    hasVersions: ({ context }) => context.versions.length > 0,
    installNow: ({ context }) =>
      context.installRequested ||
      (context.mark === 2 &&
        context.failedInstalls < context.policy.maxFailedInstalls &&
        !sameCodes(context.versions, context.heldBack)),
    hasLastBackup: ({ context }) => context.lastBackup !== null,
    hasBackup: ({ context }) => context.backup !== null,
    isRevert: ({ context }) => context.job === 'revert',
    hasPausedTasks: ({ context }) => (context.pausedTasks ?? []).length > 0,
    adoptPaused: ({ context }) => context.adoptPaused,
    canRetryRollback: ({ context }) => context.rollbackAttempts < 3,
    selfUpdate: ({ context }) => context.versions.some((v) => v.agentBuild !== null),
  },
  actions: {
    noteError: assign((_, params: { text: string }) => ({ lastError: params.text })),
    // Taken over from the Python tool mid-install: the box app's paused tasks (it paused them,
    // §3.8) join the tasks to resume. Once.
    adoptTasks: assign(({ context }, params: { tasks: TaskNo[] }) => ({
      pausedTasks: [...new Set([...(context.pausedTasks ?? []), ...params.tasks])],
      adoptPaused: false,
    })),
    adoptDeadline: assign({
      waitUntil: ({ context, event }) => eventTime(event) + context.policy.healthTimeoutMs,
    }),
    startInstall: assign({ job: 'install', installId: ({ context }) => context.installId + 1 }),
    // `boxkeeper rollback`: the same steps as an install up to the stopped services, then the
    // restore of the last update's backup.
    startRevert: assign({
      job: 'revert',
      backup: ({ context }) => context.lastBackup,
      installId: ({ context }) => context.installId + 1,
    }),
    downloadNext: enqueueActions(({ context, enqueue }) => {
      const next = context.versions.find((v) => v.status === 'PENDING');
      if (next !== undefined) {
        enqueue.assign({ versions: withStatus(context.versions, next.versionCode, 'DOWNLOADING') });
        enqueue.sendTo(next.id, { type: 'DOWNLOAD' });
      }
    }),
    applyNext: enqueueActions(({ context, enqueue }) => {
      const next = context.versions.find(
        (v) => v.status === 'DOWNLOADED' || v.status === 'REVERTED',
      );
      if (next === undefined) return;
      // The child goes to `applying` (status DOWNLOADED); the mirror says the same.
      enqueue.assign({ versions: withStatus(context.versions, next.versionCode, 'DOWNLOADED') });
      enqueue.sendTo(next.id, { type: 'APPLY' });
    }),
    revertAll: enqueueActions(({ context, enqueue }) => {
      for (const v of context.versions) {
        if (v.status === 'PENDING' || v.status === 'DOWNLOADING') continue;
        enqueue.sendTo(v.id, { type: 'REVERT' });
      }
      enqueue.assign({
        versions: context.versions.map((v) =>
          v.status === 'PENDING' || v.status === 'DOWNLOADING'
            ? v
            : { ...v, status: 'REVERTED' as const, agentBuild: null },
        ),
      });
    }),
    // A failed check or download. The 6th failed cycle in a row drops the list: the next
    // cycle asks the cloud again (as the original).
    failCycle: enqueueActions(({ context, enqueue }, params: { at: number; error: string }) => {
      const retries = context.retries - 1;
      const nextCheckAt = nextCheck(params.at, context.policy);
      if (retries >= 0) {
        enqueue.assign({ retries, lastError: params.error, nextCheckAt });
        return;
      }
      for (const v of context.versions) enqueue.stopChild(v.id);
      enqueue.assign({
        retries: RETRIES,
        versions: [],
        installRequested: false,
        lastError: `${params.error} (6th failed cycle: the update list is dropped)`,
        nextCheckAt,
      });
    }),
    completeInstall: enqueueActions(({ context, enqueue }, params: { warning: string | null }) => {
      for (const v of context.versions) enqueue.stopChild(v.id);
      enqueue.assign({
        lastResult: `installed ${context.versions.map((v) => v.versionNum).join(', ')}`,
        versions: [],
        lastBackup: context.backup,
        lastInstalled: context.versions.map((v) => v.versionCode),
        heldBack: [],
        backup: null,
        job: null,
        pausedTasks: null,
        adoptPaused: false,
        failedInstalls: 0,
        retries: RETRIES,
        installRequested: false,
        lastError: params.warning,
      });
    }),
    dropVersions: enqueueActions(({ context, enqueue }) => {
      for (const v of context.versions) enqueue.stopChild(v.id);
      enqueue.assign({ versions: [], installRequested: false });
    }),
    // The operator's file replaces whatever list waited, and installs once "downloaded".
    takeLocalPatch: assign(({ event }) =>
      event.type === 'INSTALL_FILE'
        ? {
            versions: entries([event.patch]),
            installRequested: true,
            failedInstalls: 0,
            heldBack: [],
            lastError: null,
          }
        : {},
    ),
    spawnVersions: enqueueActions(({ context, enqueue }) => {
      for (const v of context.versions) {
        enqueue.spawnChild('patch', {
          id: v.id,
          input: {
            versionCode: v.versionCode,
            versionNum: v.versionNum,
            fileMd5: v.fileMd5,
            remark: v.remark,
            argumentConfigMap: v.argumentConfigMap,
            status: v.status,
          },
        });
      }
    }),
  },
}).createMachine({
  id: 'update',
  version: UPDATE_MACHINE_VERSION,
  context: ({ input }) => ({
    policy: input.policy,
    mark: input.imported?.mark ?? -1,
    versions: entries(input.imported?.versions ?? []),
    retries: input.imported?.retries ?? RETRIES,
    nextCheckAt: 0,
    waitUntil: 0,
    installRequested: false,
    job: null,
    pausedTasks: null,
    adoptPaused: false,
    backup: null,
    lastBackup: null,
    restored: null,
    lastInstalled: [],
    heldBack: [],
    installId: 0,
    healthDeadline: 0,
    failedInstalls: 0,
    rollbackAttempts: 0,
    lastError: input.recover ?? null,
    lastResult: null,
    startup: { imported: input.imported?.phase ?? null, recover: input.recover ?? null },
  }),
  initial: 'boot',
  on: {
    RELOAD_CONFIG: { actions: assign({ policy: ({ event }) => event.policy }) },
  },
  states: {
    // Routes a fresh start, an import from the Python tool's patch.meta, or a recovery.
    boot: {
      tags: ['phase:READY', 'brief'],
      entry: 'spawnVersions',
      always: [
        { guard: ({ context }) => context.startup.recover !== null, target: 'reconciling' },
        { guard: ({ context }) => context.startup.imported === null, target: 'idle' },
        {
          guard: ({ context }) =>
            ['PENDING', 'ROLLEDBACK'].includes(context.startup.imported ?? ''),
          target: 'routing',
        },
        {
          // A mid-install phase without any version (a hand-made or damaged file): there is
          // nothing to install or finish, and what happened to the box is unknown. Say so.
          guard: ({ context }) =>
            MID_INSTALL_PHASES.includes(context.startup.imported ?? '') &&
            context.versions.length === 0,
          target: 'idle',
          actions: assign(({ context }) => {
            const why = `the imported patch.meta is in phase ${context.startup.imported ?? '?'} (an install in progress) but lists no version: nothing was installed or finished; ${ATTENTION}`;
            // lastResult too: the next version check clears lastError.
            return { lastError: why, lastResult: `NOT FINISHED: ${why}` };
          }),
        },
        {
          // The Python updater swapped its agent (for boxkeeper: the switch-over) after every
          // version was applied: finish as the Python tool would (post_installation_cleanup):
          // finalize, start the services under the health gate, resume, COMPLETE. Nothing is
          // applied again and no backup is taken: the box already carries the update, so a
          // snapshot now would be no rollback target (the Python tool's <QTHZ>\backup is).
          guard: ({ context }) =>
            context.startup.imported === 'SELF_UPDATE_COMPLETE' &&
            context.versions.length > 0 &&
            context.versions.every((v) => v.status === 'INSTALLED'),
          target: 'installing.finalizing',
          actions: assign({
            job: 'install',
            installId: ({ context }) => context.installId + 1,
            adoptPaused: true,
          }),
        },
        {
          // The Python tool was in the middle of an install: install again from the top
          // (a fresh backup first); versions it recorded as INSTALLED are not applied again.
          guard: ({ context }) => MID_INSTALL_PHASES.includes(context.startup.imported ?? ''),
          target: 'installing',
          actions: ['startInstall', assign({ adoptPaused: true })],
        },
        { guard: 'incompleteDownloads', target: 'downloading' },
        { target: 'idle' },
      ],
    },
    // patch.meta was unreadable or failed validation: work out from the box what to do.
    reconciling: {
      tags: ['phase:READY'],
      invoke: {
        id: 'reconcile',
        src: 'reconcile',
        input: ({ context }) => ({ reason: context.lastError ?? 'unknown' }),
        onDone: [
          {
            // An install was interrupted: restore its backup, services stopped first.
            guard: ({ event }) => event.output.backup !== null,
            target: 'installing',
            actions: assign({
              backup: ({ event }) => event.output.backup,
              job: 'revert',
              installId: ({ context }) => context.installId + 1,
              lastError: ({ context, event }) => `${context.lastError ?? ''}; ${event.output.note}`,
            }),
          },
          {
            target: 'idle',
            actions: assign({
              lastError: ({ context, event }) => `${context.lastError ?? ''}; ${event.output.note}`,
              // A mid-install state that could not be trusted (install-consistency.ts): kept
              // visible after the next check clears lastError.
              lastResult: ({ context }) =>
                context.lastError?.includes(ATTENTION) === true
                  ? `NOT FINISHED: ${context.lastError}`
                  : context.lastResult,
            }),
          },
        ],
        onError: {
          target: 'idle',
          actions: assign({
            lastError: ({ event }) => `reconcile failed: ${errorText(event.error)}`,
          }),
        },
      },
    },
    idle: {
      tags: ['phase:READY', 'settled'],
      invoke: {
        id: 'waitForCheck',
        src: 'waitUntil',
        input: ({ context }) => ({ until: context.nextCheckAt }),
        onDone: [{ guard: 'incompleteDownloads', target: 'downloading' }, { target: 'checking' }],
      },
      on: {
        CHECK: 'checking',
        // Versions still downloading: install as soon as they are complete.
        INSTALL: { guard: 'hasVersions', actions: assign({ installRequested: true }) },
        INSTALL_FILE: {
          target: 'routing',
          actions: ['dropVersions', 'takeLocalPatch', 'spawnVersions'],
        },
        CLEAR_CACHE: 'clearingCache',
        ROLLBACK: { guard: 'hasLastBackup', target: 'installing', actions: 'startRevert' },
      },
    },
    checking: {
      tags: ['phase:READY', 'brief'],
      invoke: {
        id: 'checkVersion',
        src: 'checkVersion',
        input: {},
        onDone: [
          {
            guard: ({ event }) =>
              event.output.upgradeMark === 0 || event.output.upgradeList.length === 0,
            target: 'idle',
            actions: [
              'dropVersions',
              assign({
                mark: ({ event }) => event.output.upgradeMark,
                lastError: null,
                failedInstalls: 0,
                nextCheckAt: ({ context, event }) => nextCheck(event.output.at, context.policy),
              }),
            ],
          },
          {
            guard: ({ context, event }) => sameList(context.versions, event.output.upgradeList),
            target: 'routing',
            actions: assign({
              mark: ({ event }) => event.output.upgradeMark,
              nextCheckAt: ({ context, event }) => nextCheck(event.output.at, context.policy),
            }),
          },
          {
            // A new list supersedes what was waiting (e.g. a newer mandatory update).
            target: 'routing',
            actions: [
              'dropVersions',
              assign({
                mark: ({ event }) => event.output.upgradeMark,
                versions: ({ event }) => entries(event.output.upgradeList),
                failedInstalls: 0,
                lastError: null,
                nextCheckAt: ({ context, event }) => nextCheck(event.output.at, context.policy),
              }),
              'spawnVersions',
            ],
          },
        ],
        onError: {
          target: 'routingAfterFailure',
          actions: {
            type: 'failCycle',
            params: ({ event }) => ({
              at: eventTime(event),
              error: `version check: ${errorText(event.error)}`,
            }),
          },
        },
      },
    },
    // After a failed check: keep waiting for an install if one is ready, else idle.
    routingAfterFailure: {
      tags: ['phase:READY', 'brief'],
      always: [{ guard: 'allReady', target: 'awaitingInstall' }, { target: 'idle' }],
    },
    routing: {
      tags: ['phase:READY', 'brief'],
      always: [
        { guard: 'incompleteDownloads', target: 'downloading' },
        {
          guard: 'installNow',
          target: 'installing',
          actions: 'startInstall',
        },
        { guard: 'allReady', target: 'awaitingInstall' },
        { target: 'idle' },
      ],
    },
    downloading: {
      tags: ['phase:DOWNLOAD'],
      entry: 'downloadNext',
      on: {
        'PATCH.DOWNLOADED': [
          {
            guard: ({ context, event }) =>
              withStatus(context.versions, event.versionCode, 'DOWNLOADED').every((v) =>
                ready(v.status),
              ),
            target: 'routing',
            actions: assign({
              versions: ({ context, event }) =>
                withStatus(context.versions, event.versionCode, 'DOWNLOADED'),
              retries: RETRIES,
              lastError: null,
            }),
          },
          {
            actions: [
              assign({
                versions: ({ context, event }) =>
                  withStatus(context.versions, event.versionCode, 'DOWNLOADED'),
              }),
              'downloadNext',
            ],
          },
        ],
        'PATCH.DOWNLOAD_FAILED': {
          target: 'idle',
          actions: [
            assign({
              versions: ({ context, event }) =>
                withStatus(context.versions, event.versionCode, 'PENDING'),
            }),
            {
              type: 'failCycle',
              params: ({ event }) => ({
                at: event.at,
                error: `download of ${event.versionCode}: ${event.error}`,
              }),
            },
          ],
        },
        CHECK: {},
        INSTALL: { actions: assign({ installRequested: true }) },
      },
    },
    // An optional update is downloaded; the timer keeps checking (a newer list supersedes it).
    awaitingInstall: {
      tags: ['phase:PENDING', 'settled'],
      invoke: {
        id: 'waitForCheck',
        src: 'waitUntil',
        input: ({ context }) => ({ until: context.nextCheckAt }),
        onDone: 'checking',
      },
      on: {
        CHECK: 'checking',
        INSTALL: {
          target: 'installing',
          actions: 'startInstall',
        },
        INSTALL_FILE: {
          target: 'routing',
          actions: ['dropVersions', 'takeLocalPatch', 'spawnVersions'],
        },
        CLEAR_CACHE: 'clearingCache',
        ROLLBACK: { guard: 'hasLastBackup', target: 'installing', actions: 'startRevert' },
      },
    },
    clearingCache: {
      tags: ['phase:READY', 'brief'],
      invoke: {
        id: 'clearCache',
        src: 'clearCache',
        input: {},
        onDone: {
          target: 'idle',
          actions: ['dropVersions', assign({ retries: RETRIES, lastError: null })],
        },
        onError: {
          target: 'idle',
          actions: assign({ lastError: ({ event }) => `clear cache: ${errorText(event.error)}` }),
        },
      },
    },
    installing: {
      tags: ['installStep'],
      initial: 'starting',
      states: {
        // An install is admitted first (signed patches: docs/security.md); a revert restores a
        // snapshot and needs no admission.
        starting: {
          tags: ['phase:PENDING'],
          always: [{ guard: 'isRevert', target: 'listingTasks' }, { target: 'admitting' }],
        },
        // The versions are checked as a list (signatures, counters in order, expiry) before
        // anything on the box changes: a refusal leaves the services running.
        admitting: {
          tags: ['phase:PENDING'],
          invoke: {
            id: 'admitVersions',
            src: 'admitVersions',
            input: ({ context }) => ({
              versions: context.versions.map((v) => ({
                versionCode: v.versionCode,
                versionNum: v.versionNum,
                fileMd5: v.fileMd5,
                argumentConfigMap: v.argumentConfigMap,
              })),
            }),
            onDone: 'listingTasks',
            onError: {
              target: '#update.routingAfterFailure',
              actions: [
                {
                  type: 'failCycle',
                  params: ({ event }) => ({
                    at: eventTime(event),
                    error: `install refused: ${errorText(event.error)}`,
                  }),
                },
                assign({
                  job: null,
                  installRequested: false,
                  failedInstalls: ({ context }) => context.failedInstalls + 1,
                  lastResult: ({ event }) => `install refused: ${errorText(event.error)}`,
                }),
              ],
            },
          },
        },
        // Which tasks run is recorded before any is paused: after a crash in between, the
        // same list is paused (idempotent) and later resumed — and only that list.
        listingTasks: {
          tags: ['phase:PENDING'],
          invoke: {
            id: 'listTasks',
            src: 'listTasks',
            input: {},
            onDone: {
              target: 'pausingTasks',
              actions: assign({
                pausedTasks: ({ context, event }) => [
                  ...new Set([...(context.pausedTasks ?? []), ...event.output.tasks]),
                ],
              }),
            },
            onError: rollBackOnError('list tasks'),
          },
        },
        pausingTasks: {
          tags: ['phase:PENDING'],
          invoke: {
            id: 'pauseTasks',
            src: 'pauseTasks',
            input: ({ context }) => ({ tasks: context.pausedTasks ?? [] }),
            onDone: 'checkingCalls',
            onError: rollBackOnError('pause tasks'),
          },
        },
        checkingCalls: {
          tags: ['phase:PENDING'],
          invoke: {
            id: 'checkCalls',
            src: 'checkCalls',
            input: {},
            onDone: [
              {
                guard: ({ event }) => event.output.active > 0,
                target: 'deferring',
                actions: assign({
                  lastError: ({ event }) =>
                    `${event.output.active} active call(s): install deferred`,
                  waitUntil: ({ context, event }) => event.output.at + context.policy.callsRetryMs,
                }),
              },
              { target: 'stoppingServices' },
            ],
            onError: {
              target: 'deferring',
              actions: assign({
                lastError: ({ event }) =>
                  `cannot tell whether calls are active: ${errorText(event.error)}`,
                waitUntil: ({ context, event }) => eventTime(event) + context.policy.callsRetryMs,
              }),
            },
          },
        },
        // Calls are active: give the tasks back and try again later.
        deferring: {
          tags: ['phase:PENDING'],
          invoke: {
            id: 'resumeTasks',
            src: 'resumeTasks',
            input: ({ context }) => ({ tasks: context.pausedTasks ?? [] }),
            onDone: { target: 'waitingForCalls', actions: assign({ pausedTasks: null }) },
            // Still paused: kept in pausedTasks, resumed by a later attempt or the rollback path.
            onError: 'waitingForCalls',
          },
        },
        waitingForCalls: {
          tags: ['phase:PENDING'],
          invoke: {
            id: 'waitForCalls',
            src: 'waitUntil',
            input: ({ context }) => ({ until: context.waitUntil }),
            onDone: 'listingTasks',
          },
        },
        stoppingServices: {
          tags: ['phase:PENDING'],
          invoke: {
            id: 'stopServices',
            src: 'stopServices',
            input: {},
            onDone: [{ guard: 'isRevert', target: '#update.rollingBack' }, { target: 'backingUp' }],
            onError: rollBackOnError('stop services'),
          },
        },
        backingUp: {
          tags: ['phase:PENDING', 'servicesDown'],
          invoke: {
            id: 'backup',
            src: 'backup',
            input: ({ context }) => ({
              name: backupName(context),
              subject: `before update to ${context.versions.map((v) => v.versionNum).join(', ')}`,
            }),
            onDone: {
              target: 'applying',
              actions: assign({ backup: ({ event }) => event.output.version }),
            },
            onError: rollBackOnError('backup'),
          },
        },
        applying: {
          tags: ['phase:BACKUP_CREATED', 'servicesDown', 'afterBackup'],
          entry: 'applyNext',
          always: {
            guard: ({ context }) => context.versions.every((v) => v.status === 'INSTALLED'),
            target: 'finalizing',
          },
          on: {
            'PATCH.INSTALLED': {
              actions: [
                assign({
                  versions: ({ context, event }) =>
                    withStatus(context.versions, event.versionCode, 'INSTALLED').map((v) =>
                      v.versionCode === event.versionCode
                        ? { ...v, agentBuild: event.agentBuild }
                        : v,
                    ),
                }),
                'applyNext',
              ],
            },
            'PATCH.APPLY_FAILED': {
              target: '#update.rollingBack',
              actions: assign({
                versions: ({ context, event }) =>
                  withStatus(context.versions, event.versionCode, 'DOWNLOADED'),
                lastError: ({ event }) => `install of ${event.versionCode}: ${event.error}`,
              }),
            },
          },
        },
        finalizing: {
          tags: ['phase:FILES_UPDATED', 'servicesDown', 'afterBackup'],
          invoke: {
            id: 'finalizeConfig',
            src: 'finalizeConfig',
            input: {},
            onDone: [
              { guard: 'selfUpdate', target: 'selfUpdating' },
              {
                target: 'startingServices',
                actions: assign({
                  healthDeadline: ({ context, event }) =>
                    event.output.at + context.policy.healthTimeoutMs,
                }),
              },
            ],
            onError: rollBackOnError('finalize'),
          },
        },
        // The agent hands over to `boxkeeper self-update`, which swaps the agent build and
        // sends SELF_UPDATE.SWAPPED through the same patch.meta, then starts the new agent.
        selfUpdating: {
          tags: ['phase:SELF_UPDATE_PENDING', 'servicesDown', 'selfUpdate', 'afterBackup'],
          invoke: {
            id: 'handOver',
            src: 'handOver',
            input: ({ context }) => selfUpdateInput(context),
            onError: rollBackOnError('self-update'),
          },
          on: {
            'SELF_UPDATE.SWAPPED': 'selfUpdated',
            'SELF_UPDATE.FAILED': {
              target: '#update.rollingBack',
              actions: assign({ lastError: ({ event }) => `self-update: ${event.error}` }),
            },
          },
        },
        selfUpdated: {
          tags: ['phase:SELF_UPDATE_COMPLETE', 'servicesDown', 'selfUpdate', 'afterBackup'],
          invoke: {
            id: 'confirmSelfUpdate',
            src: 'confirmSelfUpdate',
            input: ({ context }) => selfUpdateInput(context),
            onDone: {
              target: 'startingServices',
              actions: assign({
                versions: ({ context }) =>
                  context.versions.map((v) => ({ ...v, agentBuild: null })),
                healthDeadline: ({ context, event }) =>
                  event.output.at + context.policy.healthTimeoutMs,
              }),
            },
            onError: rollBackOnError('self-update'),
          },
          on: {
            // The updater gave up on the new agent and restored the old one.
            'SELF_UPDATE.FAILED': {
              target: '#update.rollingBack',
              actions: assign({ lastError: ({ event }) => `self-update: ${event.error}` }),
            },
          },
        },
        // Health gate: both services ready before the deadline, or the update is rolled back.
        startingServices: {
          tags: ['phase:FILES_UPDATED', 'afterBackup'],
          invoke: {
            id: 'startServices',
            src: 'startServices',
            input: ({ context }) => ({
              deadline: context.healthDeadline,
              settleMs: context.policy.healthSettleMs,
            }),
            onDone: [
              {
                guard: 'adoptPaused',
                target: 'adoptingTasks',
                actions: assign({
                  waitUntil: ({ context, event }) =>
                    event.output.at + context.policy.healthTimeoutMs,
                }),
              },
              { guard: 'hasPausedTasks', target: 'resumingTasks' },
              { target: 'committing' },
            ],
            onError: rollBackOnError('health gate'),
          },
        },
        // Taken over from the Python tool: it paused the tasks (§3.8), so they are adopted.
        adoptingTasks: {
          tags: ['phase:COMPLETE', 'afterBackup'],
          // The box app's paused tasks, asked until waitUntil (the app has just started).
          // Failing, the install goes on and only the tasks boxkeeper paused are resumed.
          invoke: {
            id: 'listPausedTasks',
            src: 'listPausedTasks',
            input: ({ context }) => ({ until: context.waitUntil }),
            onDone: {
              target: 'resumingTasks',
              actions: {
                type: 'adoptTasks',
                params: ({ event }) => ({ tasks: event.output.tasks }),
              },
            },
            onError: { target: 'resumingTasks', actions: assign({ adoptPaused: false }) },
          },
        },
        resumingTasks: {
          tags: ['phase:COMPLETE', 'afterBackup'],
          invoke: {
            id: 'resumeTasks',
            src: 'resumeTasks',
            input: ({ context }) => ({ tasks: context.pausedTasks ?? [] }),
            onDone: { target: 'committing', actions: assign({ pausedTasks: null }) },
            onError: {
              target: 'resumeWaiting',
              actions: assign({
                lastError: ({ event }) => `resume tasks (will retry): ${errorText(event.error)}`,
                waitUntil: ({ context, event }) => eventTime(event) + context.policy.retryDelayMs,
              }),
            },
          },
        },
        resumeWaiting: {
          tags: ['phase:COMPLETE', 'afterBackup'],
          invoke: {
            id: 'waitForResume',
            src: 'waitUntil',
            input: ({ context }) => ({ until: context.waitUntil }),
            onDone: 'resumingTasks',
          },
        },
        // COMPLETE: the updated box becomes a snapshot of its own.
        committing: {
          tags: ['phase:COMPLETE', 'afterBackup'],
          invoke: {
            id: 'commitSnapshot',
            src: 'commitSnapshot',
            input: ({ context }) => ({
              version: (
                context.versions[context.versions.length - 1]?.versionNum ?? 'update'
              ).replace(/[^A-Za-z0-9._-]/g, '_'),
              subject: `after update to ${context.versions.map((v) => v.versionNum).join(', ')}`,
            }),
            onDone: {
              target: '#update.idle',
              actions: { type: 'completeInstall', params: { warning: null } },
            },
            // Installed all the same; only the snapshot of the result is missing.
            onError: {
              target: '#update.idle',
              actions: {
                type: 'completeInstall',
                params: ({ event }) => ({
                  warning: `installed, but the snapshot after the update failed: ${errorText(event.error)}`,
                }),
              },
            },
          },
        },
      },
    },
    // Any failure before COMPLETE: restore the pre-update snapshot (if one was taken),
    // release the services and resume exactly the paused tasks. Every step resumes after a
    // crash; none is given up silently.
    rollingBack: {
      tags: ['phase:ROLLEDBACK'],
      initial: 'deciding',
      entry: assign({ rollbackAttempts: 0 }),
      states: {
        deciding: {
          always: [
            { guard: 'hasBackup', target: 'restoring', actions: 'revertAll' },
            { target: 'releasingServices' },
          ],
        },
        restoring: {
          tags: ['servicesDown'],
          invoke: {
            id: 'rollbackSnapshot',
            src: 'rollbackSnapshot',
            input: ({ context }) => ({ version: context.backup ?? '' }),
            onDone: {
              target: 'releasingServices',
              actions: assign({ restored: ({ event }) => event.output.restored ?? null }),
            },
            onError: [
              {
                guard: 'canRetryRollback',
                target: 'restoreWaiting',
                actions: assign({
                  rollbackAttempts: ({ context }) => context.rollbackAttempts + 1,
                  waitUntil: ({ context, event }) => eventTime(event) + context.policy.retryDelayMs,
                  lastError: ({ event }) =>
                    `rollback failed (will retry): ${errorText(event.error)}`,
                }),
              },
              {
                // Never leave the services stopped: start them on what is there and say so.
                target: 'releasingServices',
                actions: assign({
                  lastError: ({ event }) =>
                    `ROLLBACK FAILED, the box needs attention: ${errorText(event.error)}`,
                }),
              },
            ],
          },
        },
        restoreWaiting: {
          tags: ['servicesDown'],
          invoke: {
            id: 'waitForRestore',
            src: 'waitUntil',
            input: ({ context }) => ({ until: context.waitUntil }),
            onDone: 'restoring',
          },
        },
        releasingServices: {
          invoke: {
            id: 'releaseServices',
            src: 'releaseServices',
            input: {},
            onDone: [
              { guard: 'adoptPaused', target: 'adoptingTasks', actions: 'adoptDeadline' },
              { guard: 'hasPausedTasks', target: 'resumingTasks' },
              { target: 'done' },
            ],
            onError: [
              { guard: 'adoptPaused', target: 'adoptingTasks', actions: 'adoptDeadline' },
              { guard: 'hasPausedTasks', target: 'resumingTasks' },
              { target: 'done' },
            ],
          },
        },
        adoptingTasks: {
          // The box app's paused tasks, asked until waitUntil (the app has just started).
          // Failing, the install goes on and only the tasks boxkeeper paused are resumed.
          invoke: {
            id: 'listPausedTasks',
            src: 'listPausedTasks',
            input: ({ context }) => ({ until: context.waitUntil }),
            onDone: {
              target: 'resumingTasks',
              actions: {
                type: 'adoptTasks',
                params: ({ event }) => ({ tasks: event.output.tasks }),
              },
            },
            onError: { target: 'resumingTasks', actions: assign({ adoptPaused: false }) },
          },
        },
        resumingTasks: {
          invoke: {
            id: 'resumeTasks',
            src: 'resumeTasks',
            input: ({ context }) => ({ tasks: context.pausedTasks ?? [] }),
            onDone: { target: 'done', actions: assign({ pausedTasks: null }) },
            onError: {
              target: 'resumeWaiting',
              actions: assign({
                waitUntil: ({ context, event }) => eventTime(event) + context.policy.retryDelayMs,
                // Keep the cause of the rollback; say what is being retried after it.
                lastError: ({ context, event }) =>
                  `${(context.lastError ?? '').split(RESUME_NOTE)[0] ?? ''}${RESUME_NOTE}${errorText(event.error)}`,
              }),
            },
          },
        },
        resumeWaiting: {
          invoke: {
            id: 'waitForResume',
            src: 'waitUntil',
            input: ({ context }) => ({ until: context.waitUntil }),
            onDone: 'resumingTasks',
          },
        },
        done: {
          always: [
            {
              guard: 'isRevert',
              target: '#update.idle',
              actions: assign({
                lastResult: ({ context }) =>
                  rollbackFailed(context)
                    ? `ROLLBACK to ${context.backup ?? '?'} FAILED`
                    : `rolled back to ${restoredName(context)}`,
                heldBack: ({ context }) => context.lastInstalled,
                lastBackup: null,
                backup: null,
                job: null,
              }),
            },
            {
              guard: 'hasVersions',
              target: '#update.awaitingInstall',
              actions: assign({
                failedInstalls: ({ context }) => context.failedInstalls + 1,
                lastResult: ({ context }) =>
                  context.backup === null
                    ? 'install abandoned before any change'
                    : rollbackFailed(context)
                      ? `install failed; ROLLBACK to ${context.backup} FAILED`
                      : `install failed; rolled back to ${restoredName(context)}`,
                backup: null,
                job: null,
                installRequested: false,
              }),
            },
            {
              target: '#update.idle',
              actions: assign({ backup: null, job: null, lastResult: 'rolled back' }),
            },
          ],
        },
      },
    },
  },
});

export type UpdateActor = ActorRefFrom<typeof updateMachine>;

/** The effects (actor srcs) of the cycle: every actor but the per-version child. */
export const UPDATE_EFFECTS = Object.keys(updateMachine.implementations.actors).filter(
  (src) => src !== 'patch',
);

/**
 * Both machines with every effect made by `make` from its src: the engine's gated effects,
 * inert ones (recording an event without acting), or a test's fakes.
 */
export function withEffects(make: (src: string) => AnyActorLogic): typeof updateMachine {
  const effects = Object.fromEntries(UPDATE_EFFECTS.map((src) => [src, make(src)]));
  return updateMachine.provide({
    actors: { ...effects, patch: withPatchEffects(make) },
  });
}

/**
 * The tags of the state a (persisted) state value names, e.g. for a snapshot read from disk;
 * none for a value that names no state of this machine.
 */
export function tagsOfValue(value: unknown): Set<string> {
  try {
    return new Set(
      updateMachine.resolveState({ value: value as never, context: {} as UpdateContext }).tags,
    );
  } catch {
    return new Set();
  }
}
