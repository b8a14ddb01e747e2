// Plain file operations handed to services (which never import node:fs themselves).
import { access, readFile } from 'node:fs/promises';
import { writeFileAtomic } from './fs-atomic.ts';

export interface Files {
  readFile: (path: string) => Promise<Uint8Array>;
  /** Temp file, fsync, rename, fsync dir: readers see the old or the new file, never half. */
  writeAtomic: (path: string, data: string | Uint8Array) => Promise<void>;
  exists: (path: string) => Promise<boolean>;
}

export const nodeFiles: Files = {
  readFile: (path) => readFile(path),
  writeAtomic: (path, data) => writeFileAtomic(path, data),
  exists: (path) =>
    access(path).then(
      () => true,
      () => false,
    ),
};
