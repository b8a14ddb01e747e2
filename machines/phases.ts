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
// can show it without loading the statecharts.

/** Whether a version's file is at hand (downloaded, or installed/reverted before). */
export const ready = (s: PatchStatusName): boolean =>
  s === 'DOWNLOADED' || s === 'REVERTED' || s === 'INSTALLED';

const PHASE_OF_STATE: Record<string, PhaseName> = {
  boot: 'READY',
  reconciling: 'READY',
  idle: 'READY',
  checking: 'READY',
  routing: 'READY',
  routingAfterFailure: 'READY',
  downloading: 'DOWNLOAD',
  awaitingInstall: 'PENDING',
  clearingCache: 'READY',
  'installing.starting': 'PENDING',
  'installing.admitting': 'PENDING',
  'installing.listingTasks': 'PENDING',
  'installing.pausingTasks': 'PENDING',
  'installing.checkingCalls': 'PENDING',
  'installing.deferring': 'PENDING',
  'installing.waitingForCalls': 'PENDING',
  'installing.stoppingServices': 'PENDING',
  'installing.backingUp': 'PENDING',
  'installing.applying': 'BACKUP_CREATED',
  'installing.finalizing': 'FILES_UPDATED',
  'installing.selfUpdating': 'SELF_UPDATE_PENDING',
  'installing.selfUpdated': 'SELF_UPDATE_COMPLETE',
  'installing.startingServices': 'FILES_UPDATED',
  'installing.adoptingTasks': 'COMPLETE',
  'installing.resumingTasks': 'COMPLETE',
  'installing.resumeWaiting': 'COMPLETE',
  'installing.committing': 'COMPLETE',
};

/** The dotted path of a state value, e.g. 'installing.applying'. */
export function statePath(value: unknown): string {
  if (typeof value === 'string') return value;
  const [key, sub] = Object.entries(value as Record<string, unknown>)[0] ?? ['?', undefined];
  return sub === undefined ? key : `${key}.${statePath(sub)}`;
}

/** The Python tool's PatchCyclePhase of a state (idle with a half-downloaded list: INCEPTION). */
export function phaseOf(
  value: unknown,
  context?: { versions: ReadonlyArray<{ status: PatchStatusName }> },
): PhaseName {
  const path = statePath(value);
  if (path.startsWith('rollingBack')) return 'ROLLEDBACK';
  if (path === 'idle' && context !== undefined && context.versions.some((v) => !ready(v.status)))
    return 'INCEPTION';
  return PHASE_OF_STATE[path] ?? 'READY';
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
