// Before a snapshot commit or rollback on Linux, every file system that /etc/fstab says a
// subscribed path lives on must be mounted (deepin checks the same): otherwise a rollback
// would write into the empty mount point and "restore" onto the wrong disk.
import { readFile } from 'node:fs/promises';
import { posix } from 'node:path';

export interface FstabEntry {
  spec: string;
  mountPoint: string;
  type: string;
  options: string[];
}

/** fstab mount points; `\040` escapes decoded, swap/none/noauto entries left out. */
export function parseFstab(text: string): FstabEntry[] {
  const decode = (s: string) =>
    s.replace(/\\([0-7]{3})/g, (_, o: string) => String.fromCharCode(parseInt(o, 8)));
  const out: FstabEntry[] = [];
  for (const line of text.split('\n')) {
    const t = line.trim();
    if (t === '' || t.startsWith('#')) continue;
    const [spec, mountPoint, type, options] = t.split(/\s+/);
    if (spec === undefined || mountPoint === undefined || type === undefined) continue;
    const opts = (options ?? 'defaults').split(',');
    if (
      type === 'swap' ||
      mountPoint === 'none' ||
      !mountPoint.startsWith('/') ||
      opts.includes('noauto')
    )
      continue;
    out.push({ spec, mountPoint: posix.normalize(decode(mountPoint)), type, options: opts });
  }
  return out;
}

/** Mount points currently mounted, from /proc/self/mounts. */
export function parseMounts(text: string): Set<string> {
  const decode = (s: string) =>
    s.replace(/\\([0-7]{3})/g, (_, o: string) => String.fromCharCode(parseInt(o, 8)));
  const out = new Set<string>();
  for (const line of text.split('\n')) {
    const mp = line.split(' ')[1];
    if (mp !== undefined) out.add(posix.normalize(decode(mp)));
  }
  return out;
}

const under = (path: string, dir: string) =>
  dir === '/' || path === dir || path.startsWith(`${dir}/`);

/** For each path, the fstab entry it lives on (longest mount point) that is not mounted. */
export function unmountedFor(paths: string[], fstab: FstabEntry[], mounted: Set<string>): string[] {
  const problems: string[] = [];
  for (const path of paths) {
    const entry = fstab
      .filter((e) => under(path, e.mountPoint))
      .sort((a, b) => b.mountPoint.length - a.mountPoint.length)[0];
    if (entry !== undefined && !mounted.has(entry.mountPoint)) {
      problems.push(
        `${path} lives on ${entry.mountPoint} (${entry.spec}, /etc/fstab) which is not mounted`,
      );
    }
  }
  return problems;
}

export interface MountFiles {
  fstab: string;
  mounts: string;
}

export async function checkMounts(
  paths: string[],
  platform: NodeJS.Platform,
  files: MountFiles = { fstab: '/etc/fstab', mounts: '/proc/self/mounts' },
): Promise<string[]> {
  // Windows has drive letters, not an fstab: nothing to check there.
  if (platform !== 'linux') return [];
  const fstab = await readFile(files.fstab, 'utf8').catch(() => '');
  const mounts = await readFile(files.mounts, 'utf8').catch(() => '');
  return unmountedFor(paths, parseFstab(fstab), parseMounts(mounts));
}
