// Stat stamps of the snapshot store: the numbers that tell whether a file may have changed since
// it was last hashed (like ostree's devino cache). Pure: shared by the tree walk, the repository
// and services/snapshot/snapshots.ts.
import type { StatInfo } from './tree.ts';

/** Numbers per entry in a walk's (and a stat cache's) stamps: dev, ino, size, mtimeMs, ctimeMs. */
export const STAMP_FIELDS = 5;

/** Stamps of `stat` at `index` of a stat cache's array. */
export function putStamp(stamps: Float64Array, index: number, stat: StatInfo): void {
  const o = index * STAMP_FIELDS;
  stamps[o] = stat.dev;
  stamps[o + 1] = stat.ino;
  stamps[o + 2] = stat.size;
  stamps[o + 3] = stat.mtimeMs;
  stamps[o + 4] = stat.ctimeMs;
}

/** Whether walk entry k has the stamps recorded at index i of a cache (NaN never matches). */
export function stampMatches(
  cached: Float64Array,
  i: number,
  live: readonly number[],
  k: number,
): boolean {
  const o = i * STAMP_FIELDS;
  const l = k * STAMP_FIELDS;
  return (
    cached[o + 1] === live[l + 1] &&
    cached[o + 3] === live[l + 3] &&
    cached[o + 4] === live[l + 4] &&
    cached[o + 2] === live[l + 2] &&
    cached[o] === live[l]
  );
}
