// The update cycle's status as `boxkeeper status`, the control channel and status.json show
// it, computed from a persisted snapshot. Free of XState so that `status` loads fast.
import { PHASE, patchStatusOf, phaseOf, statePath } from '../../machines/phases.ts';
import type { PatchStatusName, PhaseName } from '../../machines/phases.ts';
import type { TaskNo, UpdatePolicy } from '../../machines/update.machine.ts';

export interface UpdateVersionStatus {
  versionNum: string;
  versionCode: string;
  status: PatchStatusName;
  /** The version's machine state, e.g. 'applying.sql'. */
  state: string;
  remark: string;
  lastError: string | null;
  /** Download progress: chunks, and payload bytes (live; not persisted). */
  progress?: { done: number; total: number; bytes?: number; totalBytes?: number };
  /** Extraction progress of the downloaded zip, in bytes (live; not persisted). */
  extraction?: { bytes: number; totalBytes: number };
}

export interface UpdateStatus {
  state: string;
  /** The state's tags (UpdateTag in machines/phases.ts): ask these, not state names. */
  tags: string[];
  phase: PhaseName;
  phaseNumber: number;
  mark: number;
  versions: UpdateVersionStatus[];
  pausedTasks: TaskNo[] | null;
  backup: string | null;
  lastBackup: string | null;
  nextCheckAt: string | null;
  lastError: string | null;
  lastResult: string | null;
  /** A snapshot the cycle is taking (backup or commit): files hashed of those changed (live). */
  snapshot?: { snapshot: string; done: number; total: number; verb: 'hashed' | 'restored' };
  /** The timers and limits the cycle runs with: settings.ini's at this start (or reload). */
  policy: UpdatePolicy | null;
  seq: number;
  /**
   * Set while patch.meta cannot be written (disk full, I/O error, permission): the update
   * waits where it is, no effect starts, and the write is retried until it lands.
   */
  parked: ParkedStatus | null;
}

export interface ParkedStatus {
  /** "waiting for disk space", or "waiting for <patch.meta> to be writable". */
  reason: string;
  error: string;
  since: string;
  attempts: number;
  nextRetryAt: string;
}

export interface SnapLike {
  value: unknown;
  context: {
    mark: number;
    versions: Array<{
      id: string;
      versionNum: string;
      versionCode: string;
      status: PatchStatusName;
      remark: string;
    }>;
    pausedTasks: TaskNo[] | null;
    backup: string | null;
    lastBackup: string | null;
    nextCheckAt: number;
    lastError: string | null;
    lastResult: string | null;
    policy?: UpdatePolicy;
  };
  children: Record<
    string,
    { snapshot?: { value?: unknown; context?: { lastError?: string | null } } } | undefined
  >;
}

/** Status from a persisted snapshot (also used by `boxkeeper status` without a daemon). */
export function describe(
  snap: SnapLike,
  seq: number,
  /** The tags of the snapshot's state (the live snapshot's, or `tagsOfValue` of a stored one). */
  tags: ReadonlySet<string>,
  progress: Map<string, NonNullable<UpdateVersionStatus['progress']>> = new Map(),
  extraction: Map<string, NonNullable<UpdateVersionStatus['extraction']>> = new Map(),
): UpdateStatus {
  const c = snap.context;
  const phase = phaseOf(tags, c);
  const state = statePath(snap.value);
  const settled = tags.has('settled');
  return {
    state,
    tags: [...tags].sort(),
    phase,
    phaseNumber: PHASE[phase],
    mark: c.mark,
    versions: c.versions.map((v) => {
      const child = snap.children[v.id]?.snapshot;
      const p = progress.get(v.versionCode);
      const x = extraction.get(v.versionCode);
      return {
        versionNum: v.versionNum,
        versionCode: v.versionCode,
        status: child?.value === undefined ? v.status : patchStatusOf(child.value),
        state: child?.value === undefined ? '?' : statePath(child.value),
        remark: v.remark,
        lastError: child?.context?.lastError ?? null,
        ...(p !== undefined ? { progress: p } : {}),
        ...(x !== undefined ? { extraction: x } : {}),
      };
    }),
    pausedTasks: c.pausedTasks,
    backup: c.backup,
    lastBackup: c.lastBackup,
    nextCheckAt: settled && c.nextCheckAt > 0 ? new Date(c.nextCheckAt).toISOString() : null,
    lastError: c.lastError,
    lastResult: c.lastResult,
    policy: c.policy ?? null,
    seq,
    parked: null,
  };
}
