// Plain file operations handed to services (which never import node:fs themselves).
import { access } from 'node:fs/promises';
import { readFileNamed, writeFileAtomic } from './fs-atomic.ts';

export interface Files {
  readFile: (path: string) => Promise<Uint8Array>;
  /** Temp file, fsync, rename, fsync dir: readers see the old or the new file, never half. */
  writeAtomic: (
    path: string,
    data: string | Uint8Array,
    /** `mode`: of the new file on POSIX (0600 for files only the agent may read). */
    options?: { mode?: number },
  ) => Promise<void>;
  exists: (path: string) => Promise<boolean>;
}

export const nodeFiles: Files = {
  readFile: (path) => readFileNamed(path),
  writeAtomic: (path, data, options) => writeFileAtomic(path, data, options),
  exists: (path) =>
    access(path).then(
      () => true,
      () => false,
    ),
};
