// patch.meta: where the update statecharts live between runs. boxkeeper writes an envelope
// { format, machineId, machineVersion, seq, savedAt, snapshot } (services/update/durable.ts). On start
// the file is loaded, migrated, validated, and only then restored; a file that fails is set
// aside under a new name and the machine starts in `reconciling`. A patch.meta the Python tool
// wrote is imported (phase and per-version statuses); the older fork's format is set aside.
import { basename, dirname, join } from 'node:path';
import { createActor, type AnyStateMachine } from 'xstate';
import { z } from 'zod';
import type { PatchFs } from '../../adapters/patch-fs.ts';
import { patchMachine, PATCH_MACHINE_VERSION } from '../../machines/patch.machine.ts';
import {
  updateMachine,
  UPDATE_MACHINE_VERSION,
  type UpdateInput,
  type UpdatePolicy,
} from '../../machines/update.machine.ts';
import type { Envelope } from './durable.ts';
import { installProblems } from './install-consistency.ts';
import { parseLegacyPatchMeta } from './legacy-meta.ts';
import { fileStamp } from '../agent/agent-files.ts';

export const META_FORMAT = 1;
const MAX_META_BYTES = 16 * 1024 ** 2;
export const MACHINE_ID = 'update';
/** Recorded in the envelope: both machines' versions, so a change of either is noticed. */
export const MACHINE_VERSION = `${UPDATE_MACHINE_VERSION}+patch${PATCH_MACHINE_VERSION}`;

export type LoadedMeta =
  | { kind: 'fresh'; input: UpdateInput; seq: 0; notes: string[] }
  | { kind: 'imported'; input: UpdateInput; seq: 0; notes: string[] }
  | { kind: 'recover'; input: UpdateInput; seq: number; notes: string[] }
  | { kind: 'restored'; snapshot: PersistedSnapshot; seq: number; notes: string[] };

export interface PersistedChild {
  snapshot: PersistedSnapshot;
  src: unknown;
  systemId?: string;
}

export interface PersistedSnapshot {
  status: string;
  value: unknown;
  context: Record<string, unknown>;
  children: Record<string, PersistedChild | undefined>;
  [key: string]: unknown;
}

const envelopeSchema = z.object({
  format: z.literal(META_FORMAT),
  machineId: z.literal(MACHINE_ID),
  machineVersion: z.string(),
  seq: z.number().int().nonnegative(),
  savedAt: z.string(),
  snapshot: z.looseObject({
    status: z.string(),
    value: z.unknown(),
    context: z.record(z.string(), z.unknown()),
    children: z.record(z.string(), z.unknown()),
  }),
});

const taskNo = z.union([z.string(), z.number()]);
const version = z.object({
  id: z.string(),
  versionCode: z.string(),
  versionNum: z.string(),
  fileMd5: z.string(),
  remark: z.string(),
  argumentConfigMap: z.record(z.string(), z.unknown()),
  status: z.enum(['PENDING', 'DOWNLOADING', 'DOWNLOADED', 'INSTALLED', 'REVERTED']),
  agentBuild: z.string().nullable(),
});
const contextSchema = z.object({
  policy: z.object({
    checkIntervalMs: z.number(),
    checkJitterMs: z.number(),
    healthTimeoutMs: z.number(),
    healthSettleMs: z.number(),
    callsRetryMs: z.number(),
    retryDelayMs: z.number(),
    maxFailedInstalls: z.number(),
  }),
  mark: z.number().int(),
  versions: z.array(version),
  retries: z.number().int(),
  nextCheckAt: z.number(),
  waitUntil: z.number(),
  installRequested: z.boolean(),
  job: z.enum(['install', 'revert']).nullable(),
  pausedTasks: z.array(taskNo).nullable(),
  adoptPaused: z.boolean(),
  backup: z.string().nullable(),
  lastBackup: z.string().nullable(),
  restored: z.string().nullable(),
  lastInstalled: z.array(z.string()),
  heldBack: z.array(z.string()),
  installId: z.number().int(),
  healthDeadline: z.number(),
  failedInstalls: z.number().int(),
  rollbackAttempts: z.number().int(),
  lastError: z.string().nullable(),
  lastResult: z.string().nullable(),
  startup: z.object({ imported: z.string().nullable(), recover: z.string().nullable() }),
});

/** Envelope migrations by machine version: pure JSON → JSON, chained to the current one. */
const MIGRATIONS: Record<string, (e: Envelope<PersistedSnapshot>) => Envelope<PersistedSnapshot>> =
  {
    // Update machine 2 adds `adoptPaused` (the take-over of a Python-era install) and the
    // state `adoptingTasks`, which no version-1 snapshot can be in.
    '1+patch1': (e) => ({
      ...e,
      machineVersion: '2+patch1',
      snapshot: { ...e.snapshot, context: { ...e.snapshot.context, adoptPaused: false } },
    }),
    // Update machine 3 adds the states `installing.starting` and `installing.admitting` (the
    // signed-patch admission), which no version-2 snapshot can be in; the context is the same.
    '2+patch1': (e) => ({ ...e, machineVersion: '3+patch1' }),
    // Update machine 4 adds `restored` (the box version a restore brought back, for results).
    '3+patch1': (e) => ({
      ...e,
      machineVersion: '4+patch1',
      snapshot: { ...e.snapshot, context: { ...e.snapshot.context, restored: null } },
    }),
  };

interface StateNodeLike {
  key: string;
  states: Record<string, StateNodeLike>;
  invoke: Array<{ id: string; src: unknown }>;
}

/** The state nodes a state value makes active (root included). */
function activeNodes(machine: AnyStateMachine, value: unknown): StateNodeLike[] | string {
  const nodes: StateNodeLike[] = [];
  const visit = (node: StateNodeLike, v: unknown, path: string): string | undefined => {
    nodes.push(node);
    if (v === undefined || v === null) return undefined;
    const pairs: Array<[string, unknown]> =
      typeof v === 'string' ? [[v, undefined]] : Object.entries(v as Record<string, unknown>);
    for (const [key, sub] of pairs) {
      const child = node.states[key];
      if (child === undefined) return `state "${path}${key}" does not exist in this machine`;
      const problem = visit(child, sub, `${path}${key}.`);
      if (problem !== undefined) return problem;
    }
    return undefined;
  };
  const problem = visit(machine.root, value, '');
  return problem ?? nodes;
}

/**
 * Why a persisted snapshot cannot resume as it is: unknown states, active invokes without
 * their restored child (it would wait forever), children nobody owns, versions without their
 * child, and the same checks for every version's own machine.
 */
export function resumeProblems(snapshot: PersistedSnapshot): string[] {
  const problems: string[] = [];
  const check = (machine: AnyStateMachine, snap: PersistedSnapshot, where: string) => {
    if (snap.status !== 'active') {
      problems.push(`${where}: status is "${snap.status}", expected "active"`);
      return;
    }
    const nodes = activeNodes(machine, snap.value);
    if (typeof nodes === 'string') {
      problems.push(`${where}: ${nodes}`);
      return;
    }
    const invokes = nodes.flatMap((n) => n.invoke);
    for (const inv of invokes) {
      const child = snap.children[inv.id];
      if (child === undefined)
        problems.push(`${where}: active invoke "${inv.id}" has no restored child`);
      else if (child.src !== inv.src)
        problems.push(
          `${where}: child "${inv.id}" runs "${String(child.src)}", the machine invokes "${String(inv.src)}"`,
        );
    }
    return invokes.map((i) => i.id);
  };
  const invoked = check(updateMachine, snapshot, 'update') ?? [];
  const parsed = contextSchema.safeParse(snapshot.context);
  if (!parsed.success) {
    for (const i of parsed.error.issues)
      problems.push(`update context ${i.path.join('.') || '(root)'}: ${i.message}`);
    return problems;
  }
  const versionIds = new Set(parsed.data.versions.map((v) => v.id));
  for (const v of parsed.data.versions) {
    const child = snapshot.children[v.id];
    if (child === undefined) {
      problems.push(`version ${v.versionNum} (${v.id}) has no child machine`);
      continue;
    }
    if (child.src !== 'patch') {
      problems.push(`version ${v.versionNum}: child runs "${String(child.src)}", expected "patch"`);
      continue;
    }
    check(patchMachine, child.snapshot, `version ${v.versionNum}`);
  }
  for (const id of Object.keys(snapshot.children)) {
    if (!invoked.includes(id) && !versionIds.has(id))
      problems.push(`child "${id}" belongs to no active invoke and no version (orphan)`);
  }
  problems.push(...installProblems(snapshot.value, parsed.data));
  if (problems.length === 0) {
    // Let XState itself try: an unknown state or broken child shows as status 'error'.
    const actor = createActor(updateMachine, { snapshot } as never);
    const s = actor.getSnapshot();
    if (s.status === 'error') problems.push(`XState cannot restore it: ${String(s.error)}`);
  }
  return problems;
}

export interface MetaFiles {
  fs: PatchFs;
  now: () => Date;
}

/** Moves a file aside as `<name>.<what>-<time>`; returns the new path. */
async function setAside(path: string, what: string, io: MetaFiles): Promise<string> {
  const to = join(dirname(path), `${basename(path)}.${what}-${fileStamp(io.now())}`);
  await io.fs.rename(path, to);
  return to;
}

/**
 * Writes patch.meta's text durably: the DurableStore's `write`, so every state change of the
 * update machines goes through here. It holds the cloud's config map (passwords): 0600 on
 * POSIX (on Windows its directory's ACL does it: cli/private-files.ts). Synchronous: the file
 * is a few KB, and blocking the event loop ~1 ms for it costs less than the six thread-pool
 * round trips (open, write, fsync, close, rename, fsync dir) of the async path.
 */
export function writePatchMeta(fs: PatchFs, path: string, text: string): Promise<void> {
  return fs.writeAtomic(path, text, { mode: 0o600, sync: true });
}

/** Temp files of an interrupted write (killed between fsync and rename). */
export async function removeStaleTemps(path: string, fs: PatchFs): Promise<string[]> {
  const prefix = `.${basename(path)}.bk-tmp-`;
  const stale = (await fs.entries(dirname(path))).filter((n) => n.startsWith(prefix));
  for (const n of stale) await fs.remove(join(dirname(path), n));
  return stale;
}

export async function loadPatchMeta(
  path: string,
  policy: UpdatePolicy,
  io: MetaFiles,
): Promise<LoadedMeta> {
  const notes: string[] = [];
  const stale = await removeStaleTemps(path, io.fs);
  if (stale.length > 0) notes.push(`removed ${stale.length} temp file(s) of an interrupted write`);
  if (!(await io.fs.exists(path))) return { kind: 'fresh', input: { policy }, seq: 0, notes };
  const bytes = await io.fs.readFile(path);
  const recover = async (why: string, seq = 0): Promise<LoadedMeta> => {
    const aside = await setAside(path, 'rejected', io);
    const reason = `patch.meta was unusable (${why}); kept as ${basename(aside)}`;
    notes.push(reason);
    return { kind: 'recover', input: { policy, recover: reason }, seq, notes };
  };
  // What the [limits] defaults let in fits many times over; more is not a file this agent (or
  // the Python tool with the cloud's caps) wrote, and would carry text past [limits] text_length.
  if (bytes.length > MAX_META_BYTES)
    return recover(`${bytes.length} bytes, over the 16 MiB a patch.meta may have`);
  const text = Buffer.from(bytes).toString('utf8');

  const legacy = parseLegacyPatchMeta(text);
  if (legacy.kind === 'python') {
    const m = legacy.meta;
    notes.push(
      `imported the Python tool's patch.meta: phase ${m.phase}, ${m.list.length} version(s)` +
        (m.list.length > 0
          ? ` (${m.list.map((p) => `${p.versionNum} ${p.status}`).join(', ')})`
          : ''),
    );
    if (m.selfUpdateVersion !== null)
      notes.push(`its self_update_version ${m.selfUpdateVersion} is not carried over (W-RACE-6)`);
    const aside = await setAside(path, 'python', io);
    notes.push(`the original file is kept as ${basename(aside)}`);
    return {
      kind: 'imported',
      input: {
        policy,
        imported: {
          phase: m.phase,
          versions: m.list.map((p) => ({
            versionCode: p.versionCode,
            versionNum: p.versionNum,
            fileMd5: p.fileMd5,
            remark: p.remark,
            argumentConfigMap: p.argumentConfigMap,
            // A download the Python tool left half-way restarts.
            status: p.status === 'DOWNLOADING' ? 'PENDING' : p.status,
          })),
          retries: m.retries,
          mark: m.mark,
        },
      },
      seq: 0,
      notes,
    };
  }
  if (legacy.kind === 'fork') {
    const aside = await setAside(path, 'fork', io);
    notes.push(
      `patch.meta is ${legacy.reason}; kept as ${basename(aside)}, starting from a clean state`,
    );
    return { kind: 'fresh', input: { policy }, seq: 0, notes };
  }
  if (legacy.kind === 'invalid') return recover(legacy.problems.join('; '));

  const parsed = envelopeSchema.safeParse(JSON.parse(text));
  if (!parsed.success) {
    return recover(
      parsed.error.issues.map((i) => `${i.path.join('.') || '(root)'}: ${i.message}`).join('; '),
    );
  }
  let envelope = parsed.data as unknown as Envelope<PersistedSnapshot>;
  for (let guard = 0; envelope.machineVersion !== MACHINE_VERSION; guard++) {
    const migrate = MIGRATIONS[envelope.machineVersion];
    if (migrate === undefined || guard > 20) {
      return recover(
        `written by machine version ${envelope.machineVersion}, this agent runs ${MACHINE_VERSION} and has no migration`,
        envelope.seq,
      );
    }
    envelope = migrate(envelope);
  }
  const problems = resumeProblems(envelope.snapshot);
  if (problems.length > 0) return recover(problems.join('; '), envelope.seq);
  // Policy is configuration, not state: the settings of this start replace the saved ones (a
  // wait already under way keeps its deadline, as after reload-config).
  const snapshot = {
    ...envelope.snapshot,
    context: { ...envelope.snapshot.context, policy },
  };
  return { kind: 'restored', snapshot, seq: envelope.seq, notes };
}

/** The machines this store persists (for tools that read patch.meta without running them). */
export const persistedMachines = { update: updateMachine, patch: patchMachine };
