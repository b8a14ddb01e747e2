// The Linux process table read from /proc in one pass, with no child process. ps-list runs
// `ps` twice and merges by pid, so a process that exits between the runs came back with a name
// and no command line; here every row is read from one process's own files, and a process
// that vanishes while it is read is left out rather than returned half-read.
import { existsSync, readdirSync, readFileSync, readlinkSync } from 'node:fs';
import { basename } from 'node:path';
import type { RawProc } from './processes.ts';

/**
 * Clock ticks per second in /proc/<pid>/stat (USER_HZ). Fixed at 100 by the kernel ABI on every
 * architecture Node runs on; reading it would take `getconf CLK_TCK`, a process per listing.
 */
const USER_HZ = 100;

/** The fields of /proc/<pid>/stat the listing uses. */
export interface ProcStat {
  /** Name as the kernel keeps it (at most 15 bytes); may hold spaces and ')'. */
  comm: string;
  /** One letter: R, S, D, Z (zombie), X, … */
  state: string;
  ppid: number;
  /** Start time in clock ticks after boot. */
  startTicks: number;
}

/**
 * Parses /proc/<pid>/stat. The name sits in parentheses and may itself contain spaces and
 * ')', so the fields after it are found from the last ')'.
 */
export function parseProcStat(text: string): ProcStat | undefined {
  const open = text.indexOf('(');
  const close = text.lastIndexOf(')');
  if (open < 0 || close < open) return undefined;
  // After ") ": state (field 3), ppid (4), … starttime (22).
  const fields = text.slice(close + 2).split(' ');
  const ppid = Number(fields[1]);
  const startTicks = Number(fields[19]);
  if (fields[0] === undefined || !Number.isInteger(ppid) || !Number.isFinite(startTicks))
    return undefined;
  return { comm: text.slice(open + 1, close), state: fields[0], ppid, startTicks };
}

/**
 * The command line as `ps` shows it: arguments joined by spaces (the trailing NULs dropped); a
 * process without one (kernel thread, zombie, exiting) as `[comm]`, a zombie with `<defunct>`.
 * So a dying process never looks like a live one with an unknown command line.
 */
export function commandLine(cmdline: string, stat: ProcStat): string {
  const args = cmdline.replace(/\0+$/, '');
  if (args !== '') return args.replaceAll('\0', ' ');
  return stat.state === 'Z' ? `[${stat.comm}] <defunct>` : `[${stat.comm}]`;
}

/** Boot time in epoch seconds, from the `btime` line of /proc/stat. */
export function parseBootTime(procStat: string): number | undefined {
  const m = /^btime\s+(\d+)$/m.exec(procStat);
  return m === null ? undefined : Number(m[1]);
}

/** A process that is gone (or hidden from us) while its files are read. */
const vanished = (err: unknown): boolean => {
  const code = (err as { code?: string }).code;
  // ESRCH: an exiting process's cmdline; EACCES/EPERM: hidepid, as `ps` cannot see it either.
  return code === 'ENOENT' || code === 'ESRCH' || code === 'EACCES' || code === 'EPERM';
};

/** Whether this machine has a /proc to list (Linux; not macOS or the BSDs). */
export function procfsAvailable(root = '/proc'): boolean {
  return existsSync(`${root}/self/stat`);
}

/**
 * Reads one process; undefined when it vanished mid-read. The name is what ps-list gives on
 * Linux: the basename of the executable (/proc/<pid>/exe), else of an absolute argv[0] (the
 * executable of another user's process is not readable), else the kernel's `comm`.
 */
function readProc(root: string, pid: number, bootSec: number): RawProc | undefined {
  const dir = `${root}/${pid}`;
  let stat: ProcStat | undefined;
  let cmdline: string;
  try {
    stat = parseProcStat(readFileSync(`${dir}/stat`, 'utf8'));
    cmdline = readFileSync(`${dir}/cmdline`, 'utf8');
  } catch (err) {
    if (vanished(err)) return undefined;
    throw err;
  }
  if (stat === undefined) return undefined;
  let name = stat.comm;
  try {
    name = basename(readlinkSync(`${dir}/exe`).replace(/ \(deleted\)$/, ''));
  } catch {
    // Not readable (another user's process), a kernel thread, or gone since: keep the rest.
    const argv0 = cmdline.slice(0, Math.max(0, cmdline.indexOf('\0')));
    if (argv0.startsWith('/')) name = basename(argv0);
  }
  return {
    pid,
    ppid: stat.ppid,
    name,
    cmd: commandLine(cmdline, stat),
    // Whole seconds, as `ps -o lstart` (and so ps-list) gives them.
    startTime: new Date(Math.floor(bootSec + stat.startTicks / USER_HZ) * 1000),
  };
}

/**
 * Every process in /proc. Synchronous on purpose: a few hundred small reads cost far less CPU
 * one after another than as promises through the thread pool, and take a few milliseconds.
 */
export function listProcfs(root = '/proc'): RawProc[] {
  const bootSec = parseBootTime(readFileSync(`${root}/stat`, 'utf8'));
  if (bootSec === undefined) throw new Error(`${root}/stat has no btime line`);
  const rows: RawProc[] = [];
  for (const entry of readdirSync(root)) {
    const pid = Number(entry);
    if (!Number.isInteger(pid) || pid <= 0) continue;
    const row = readProc(root, pid, bootSec);
    if (row !== undefined) rows.push(row);
  }
  return rows;
}
