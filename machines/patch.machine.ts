// One version of an update (one element of the cloud's upgradeList), spawned by the update
// cycle as a child per version. It downloads its zip, and when told applies itself to the box
// step by step (SQL, files, settings.ini, configuration.ini); each completed step is a state
// change, so it is on disk before the next step starts and is never redone after a crash
// (the steps are idempotent anyway: at-least-once delivery).
//
// The states carry the Python tool's PatchStatus (see `patchStatusOf`). Results go to the
// parent as PATCH.* events.
import {
  assign,
  enqueueActions,
  fromPromise,
  sendParent,
  setup,
  type AnyActorLogic,
  type PromiseActorLogic,
} from 'xstate';
import type { PatchStatusName } from './phases.ts';

export { patchStatusOf } from './phases.ts';

export interface PatchInfo {
  versionCode: string;
  versionNum: string;
  fileMd5: string;
  remark: string;
  argumentConfigMap: Record<string, unknown>;
}

export interface PatchInput extends PatchInfo {
  /** Where a version imported from a Python-era patch.meta starts. */
  status?: PatchStatusName;
}

export interface PatchContext extends PatchInfo {
  lastError: string | null;
  /** Where the new agent build this version carries was found (self-update), else null. */
  agentBuild: string | null;
  /** The imported status the machine started from (null: a new version). */
  importedStatus: PatchStatusName | null;
}

export type PatchEvent =
  | { type: 'DOWNLOAD' }
  | { type: 'APPLY' }
  /** The install was rolled back: whatever this version changed is gone. */
  | { type: 'REVERT' };

/** What every effect of a version gets: a pure function of the context. */
export interface PatchEffectInput {
  versionCode: string;
  versionNum: string;
  fileMd5: string;
  argumentConfigMap: Record<string, unknown>;
}

/** Every effect reports when it finished (the service's clock; the machine has none). */
export interface Timed {
  at: number;
}

export interface ReplaceFilesOutput extends Timed {
  /** The new agent build found in the patch (self-update), else null. */
  agentBuild: string | null;
}

/** Events the parent receives. `at` is when the underlying effect finished. */
export type PatchReport =
  | { type: 'PATCH.DOWNLOADED'; versionCode: string; at: number }
  | { type: 'PATCH.DOWNLOAD_FAILED'; versionCode: string; error: string; at: number }
  | { type: 'PATCH.INSTALLED'; versionCode: string; agentBuild: string | null; at: number }
  | { type: 'PATCH.APPLY_FAILED'; versionCode: string; error: string; at: number };

export function errorText(error: unknown): string {
  if (error instanceof Error) return error.message;
  if (typeof error === 'object' && error !== null && 'message' in error)
    return String(error.message);
  return String(error);
}

/** The effect's time, from its output or (set by the service's wrapper) its error. */
export function eventTime(event: unknown): number {
  const e = event as { output?: { at?: unknown }; error?: { at?: unknown }; at?: unknown };
  const at = e.output?.at ?? e.error?.at ?? e.at;
  return typeof at === 'number' ? at : 0;
}

const stub = () =>
  fromPromise<Timed, PatchEffectInput>(() => Promise.reject(new Error('effect not provided')));

/**
 * What implementing an effect actor means, derived from its declaration: a function of its
 * input (and an abort signal) to its output without `at`, which the engine's gate stamps.
 */
export type EffectOf<L> =
  L extends PromiseActorLogic<infer O, infer I>
    ? (
        input: I,
        signal: AbortSignal,
        // An effect with nothing to report resolves with nothing (`void` is that promise's type).
        // eslint-disable-next-line @typescript-eslint/no-invalid-void-type
      ) => Promise<keyof Omit<O, 'at'> extends never ? void : Omit<O, 'at'>>
    : never;

/** The effects of one version, as declared (placeholders until a service provides them). */
const patchEffects = {
  downloadPatch: stub(),
  applySql: stub(),
  replaceFiles: fromPromise<ReplaceFilesOutput, PatchEffectInput>(() =>
    Promise.reject(new Error('effect not provided')),
  ),
  mergeSettings: stub(),
  applyConfig: stub(),
};

/** The contract of the version's effects, derived from their declarations. */
export type PatchEffectContract = {
  [K in keyof typeof patchEffects]: EffectOf<(typeof patchEffects)[K]>;
};

const effectInput = ({ context }: { context: PatchContext }): PatchEffectInput => ({
  versionCode: context.versionCode,
  versionNum: context.versionNum,
  fileMd5: context.fileMd5,
  argumentConfigMap: context.argumentConfigMap,
});

const applyFailed = {
  target: '#patch.downloaded',
  actions: {
    type: 'reportApplyFailed' as const,
    params: ({ event }: { event: { error: unknown } }) => ({
      error: errorText(event.error),
      at: eventTime(event),
    }),
  },
};

export const PATCH_MACHINE_VERSION = '1';

export const patchMachine = setup({
  types: {
    context: {} as PatchContext,
    events: {} as PatchEvent,
    input: {} as PatchInput,
  },
  actors: patchEffects,
  actions: {
    reportApplyFailed: enqueueActions(
      ({ context, enqueue }, params: { error: string; at: number }) => {
        enqueue.assign({ lastError: params.error });
        enqueue.sendParent({
          type: 'PATCH.APPLY_FAILED',
          versionCode: context.versionCode,
          error: params.error,
          at: params.at,
        });
      },
    ),
  },
}).createMachine({
  id: 'patch',
  version: PATCH_MACHINE_VERSION,
  context: ({ input }) => ({
    versionCode: input.versionCode,
    versionNum: input.versionNum,
    fileMd5: input.fileMd5,
    remark: input.remark,
    argumentConfigMap: input.argumentConfigMap,
    lastError: null,
    importedStatus: input.status ?? null,
    agentBuild: null,
  }),
  initial: 'boot',
  states: {
    boot: {
      always: [
        { guard: ({ context }) => context.importedStatus === 'INSTALLED', target: 'installed' },
        { guard: ({ context }) => context.importedStatus === 'REVERTED', target: 'reverted' },
        { guard: ({ context }) => context.importedStatus === 'DOWNLOADED', target: 'downloaded' },
        { target: 'pending' },
      ],
    },
    pending: { on: { DOWNLOAD: 'downloading' } },
    downloading: {
      invoke: {
        id: 'download',
        src: 'downloadPatch',
        input: effectInput,
        onDone: {
          target: 'downloaded',
          actions: [
            assign({ lastError: null }),
            sendParent(({ context, event }) => ({
              type: 'PATCH.DOWNLOADED' as const,
              versionCode: context.versionCode,
              at: eventTime(event),
            })),
          ],
        },
        onError: {
          target: 'pending',
          actions: [
            assign({ lastError: ({ event }) => errorText(event.error) }),
            sendParent(({ context, event }) => ({
              type: 'PATCH.DOWNLOAD_FAILED' as const,
              versionCode: context.versionCode,
              error: errorText(event.error),
              at: eventTime(event),
            })),
          ],
        },
      },
    },
    downloaded: { on: { APPLY: 'applying', REVERT: 'reverted' } },
    applying: {
      initial: 'sql',
      on: { REVERT: 'reverted' },
      states: {
        sql: {
          invoke: {
            id: 'applySql',
            src: 'applySql',
            input: effectInput,
            onDone: 'files',
            onError: applyFailed,
          },
        },
        files: {
          invoke: {
            id: 'replaceFiles',
            src: 'replaceFiles',
            input: effectInput,
            onDone: {
              target: 'settings',
              actions: assign({ agentBuild: ({ event }) => event.output.agentBuild }),
            },
            onError: applyFailed,
          },
        },
        settings: {
          invoke: {
            id: 'mergeSettings',
            src: 'mergeSettings',
            input: effectInput,
            onDone: 'config',
            onError: applyFailed,
          },
        },
        config: {
          invoke: {
            id: 'applyConfig',
            src: 'applyConfig',
            input: effectInput,
            onDone: {
              target: '#patch.installed',
              actions: sendParent(({ context, event }) => ({
                type: 'PATCH.INSTALLED' as const,
                versionCode: context.versionCode,
                agentBuild: context.agentBuild,
                at: eventTime(event),
              })),
            },
            onError: applyFailed,
          },
        },
      },
    },
    installed: { on: { REVERT: 'reverted' } },
    // Rolled back; the downloaded files are still there, so it can be applied again.
    reverted: { on: { APPLY: 'applying' } },
  },
});

/** The effects (actor srcs) of a version's machine. */
export const PATCH_EFFECTS = Object.keys(patchMachine.implementations.actors);

/** The machine with every effect made by `make` from its src (real, inert or fake). */
export function withPatchEffects(make: (src: string) => AnyActorLogic): typeof patchMachine {
  return patchMachine.provide({
    actors: Object.fromEntries(PATCH_EFFECTS.map((src) => [src, make(src)])),
  });
}
