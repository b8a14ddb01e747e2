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
