// A small tmpfs that really fills up, for the ENOSPC tests. Mounting needs root on Linux (CI
// runs as root); elsewhere the tests skip with NO_MOUNT as the reason. Test-only code.
import { execFileSync } from 'node:child_process';
import { mkdtemp, open, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export const canMountTmpfs = process.platform === 'linux' && process.getuid?.() === 0;
export const NO_MOUNT = 'needs root on Linux to mount a tmpfs (a real full disk)';

interface Cleanup {
  after(fn: () => Promise<void> | void): void;
}

/** Mounts a tmpfs of `sizeMiB` on a new temp dir, unmounted and removed after the test. */
export async function mountTmpfs(t: Cleanup, sizeMiB: number): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'bk-tmpfs-'));
  execFileSync('mount', ['-t', 'tmpfs', '-o', `size=${sizeMiB}m`, 'tmpfs', dir]);
  t.after(async () => {
    try {
      execFileSync('umount', ['-l', dir]);
    } catch {
      // already unmounted by the test
    }
    await rm(dir, { recursive: true, force: true });
  });
  return dir;
}

/** Writes a file into `dir` until the disk refuses (ENOSPC); returns its path (rm it to free). */
export async function fillDisk(dir: string, name = 'filler'): Promise<string> {
  const path = join(dir, name);
  const handle = await open(path, 'w');
  const block = Buffer.alloc(64 * 1024, 0x66);
  try {
    for (;;) {
      try {
        await handle.write(block);
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code === 'ENOSPC') break;
        throw err;
      }
    }
    // Smaller writes take the last partial block.
    for (;;) {
      try {
        await handle.write(Buffer.alloc(512, 0x66));
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code === 'ENOSPC') break;
        throw err;
      }
    }
  } finally {
    await handle.close();
  }
  return path;
}
