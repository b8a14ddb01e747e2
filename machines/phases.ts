// The Python tool's update phases and per-version statuses, by number, as patch.meta and the
// cloud's operators know them (§3.1 of the reference). The update statecharts carry these
// numbers so status output and the legacy format can show them.

export const PHASE = {
  READY: 0,
  INCEPTION: 1,
  DOWNLOAD: 2,
  PENDING: 3,
  BACKUP_CREATED: 4,
  FILES_UPDATED: 5,
  SELF_UPDATE_PENDING: 6,
  SELF_UPDATE_COMPLETE: 7,
  COMPLETE: 8,
  ROLLEDBACK: 9,
} as const;
export type PhaseName = keyof typeof PHASE;
export type PhaseNumber = (typeof PHASE)[PhaseName];

export const PATCH_STATUS = {
  PENDING: 0,
  DOWNLOADING: 1,
  DOWNLOADED: 2,
  INSTALLED: 3,
  REVERTED: 4,
} as const;
export type PatchStatusName = keyof typeof PATCH_STATUS;
export type PatchStatusNumber = (typeof PATCH_STATUS)[PatchStatusName];

export const UPGRADE_MARK = { INITIAL: -1, NOTAVAILABLE: 0, OPTIONAL: 1, MANDATORY: 2 } as const;

export function phaseName(n: number): PhaseName | undefined {
  return (Object.keys(PHASE) as PhaseName[]).find((k) => PHASE[k] === n);
}

export function patchStatusName(n: number): PatchStatusName | undefined {
  return (Object.keys(PATCH_STATUS) as PatchStatusName[]).find((k) => PATCH_STATUS[k] === n);
}

// What the status of a persisted state needs, kept free of XState so that `boxkeeper status`
// can show it without loading the statecharts (given the state's tags).

/** Whether a version's file is at hand (downloaded, or installed/reverted before). */
export const ready = (s: PatchStatusName): boolean =>
  s === 'DOWNLOADED' || s === 'REVERTED' || s === 'INSTALLED';

/** The dotted path of a state value, e.g. 'installing.applying'. */
export function statePath(value: unknown): string {
  if (typeof value === 'string') return value;
  const [key, sub] = Object.entries(value as Record<string, unknown>)[0] ?? ['?', undefined];
  return sub === undefined ? key : `${key}.${statePath(sub)}`;
}

/**
 * The update machine's tags (machines/update.machine.ts): a state's group memberships, named
 * once on the state itself, so no layer keeps its own list of state paths.
 * - `phase:<NAME>`: the Python tool's PatchCyclePhase of the state;
 * - `servicesDown`: the install has the box services down (the agent must not start them);
 * - `settled`: nothing runs for the update (idle, or waiting for an operator's install);
 * - `brief`: ends on its own within seconds (a command may wait for it rather than be refused);
 * - `selfUpdate`: the agent is replacing itself;
 * - `installStep`: any step of an install (or of the revert that reuses its steps);
 * - `afterBackup`: an install step after its backup (a persisted one must name that backup).
 */
export type UpdateTag =
  | `phase:${PhaseName}`
  | 'servicesDown'
  | 'settled'
  | 'brief'
  | 'selfUpdate'
  | 'installStep'
  | 'afterBackup';

/**
 * The Python tool's PatchCyclePhase of a state, from its tags (a settled READY state with a
 * half-downloaded list: INCEPTION).
 */
export function phaseOf(
  tags: Iterable<string>,
  context?: { versions: ReadonlyArray<{ status: PatchStatusName }> },
): PhaseName {
  const list = [...tags];
  const tagged = list.find((t) => t.startsWith('phase:'))?.slice('phase:'.length);
  const phase = tagged !== undefined && tagged in PHASE ? (tagged as PhaseName) : 'READY';
  if (
    phase === 'READY' &&
    list.includes('settled') &&
    context !== undefined &&
    context.versions.some((v) => !ready(v.status))
  )
    return 'INCEPTION';
  return phase;
}

/** The PatchStatus a version in state `value` has (as the Python tool's patch.meta showed it). */
export function patchStatusOf(value: unknown): PatchStatusName {
  const top = typeof value === 'string' ? value : Object.keys(value as object)[0];
  switch (top) {
    case 'downloading':
      return 'DOWNLOADING';
    case 'downloaded':
    case 'applying':
      return 'DOWNLOADED';
    case 'installed':
      return 'INSTALLED';
    case 'reverted':
      return 'REVERTED';
    default:
      return 'PENDING';
  }
}
