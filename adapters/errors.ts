// Typed errors shared by every layer. Deep code throws these; only cli/main.ts maps them to
// exit codes (see docs/architecture.md, "Exit codes").

export const ExitCode = {
  ok: 0,
  internal: 1,
  /** Bad settings.ini, configuration.ini, application.yml or command-line usage. */
  config: 2,
  /** Another boxkeeper already runs for this box, or the update cycle is busy. */
  locked: 3,
  /** A cloud-platform request failed (token, heartbeat, version check, download). */
  cloud: 4,
  /** A box service (Java, FreeSWITCH) could not be controlled. */
  service: 5,
  /** A snapshot operation was refused or failed (space, mounts, unknown version, damage). */
  snapshot: 6,
  /**
   * A file the command needs could not be read or written: disk full, I/O error, no
   * permission, read-only file system, or a directory where a file belongs (or the reverse).
   * Not a bug (1) and not a setting (2): the operator frees space or fixes the file.
   */
  storage: 7,
  /** An update was not installed: refused (signature, limits) or failed and rolled back. */
  updateFailed: 8,
  /** Nothing to do: no downloaded update waits to be installed, nothing to roll back. */
  nothingToDo: 9,
  /**
   * `boxkeeper run` under systemd handed over to `boxkeeper self-update`, which restarts the
   * service (listed in the unit's RestartPreventExitStatus= and SuccessExitStatus=).
   */
  handover: 10,
  /** A check answered no: `health` (not healthy), `diagram --check` (pictures stale). */
  checkFailed: 11,
} as const;
export type ExitCode = (typeof ExitCode)[keyof typeof ExitCode];

/**
 * The one table of exit codes: `--help`, README.md and docs/architecture.md show these lines
 * (a test compares them), so a script can rely on what any of them says.
 */
export const EXIT_CODE_MEANINGS: ReadonlyArray<readonly [ExitCode, string]> = [
  [ExitCode.ok, 'success (for `health`: healthy)'],
  [
    ExitCode.internal,
    'internal error (a bug: stack printed), daemon unreachable, or --timeout ran out',
  ],
  [
    ExitCode.config,
    'bad configuration (settings.ini, configuration.ini, application.yml) or usage',
  ],
  [ExitCode.locked, 'another boxkeeper runs for this box, or the update cycle is busy'],
  [ExitCode.cloud, 'a cloud request failed (token, heartbeat, version check, download)'],
  [ExitCode.service, 'a box service (Java, FreeSWITCH) could not be controlled'],
  [
    ExitCode.snapshot,
    'a snapshot operation was refused or failed, or verify/repair found problems',
  ],
  [ExitCode.storage, 'a file could not be read or written (disk full, I/O, permission, read-only)'],
  [ExitCode.updateFailed, 'an update was not installed: refused, or failed and rolled back'],
  [ExitCode.nothingToDo, 'nothing to do: no downloaded update waits, nothing to roll back'],
  [ExitCode.handover, '`run` under systemd handed over to a self-update (not an error)'],
  [ExitCode.checkFailed, 'a check answered no: `health` not healthy, `diagram --check` stale'],
];

/** The table as Markdown, exactly as README.md and docs/architecture.md carry it. */
export function exitCodeMarkdown(): string {
  const rows = EXIT_CODE_MEANINGS.map(([code, meaning]) => `| ${code} | ${meaning} |`);
  return ['| code | meaning |', '| --- | --- |', ...rows].join('\n');
}

export class BoxkeeperError extends Error {
  readonly exitCode: ExitCode;
  constructor(message: string, exitCode: ExitCode, options?: { cause?: unknown }) {
    super(message, options);
    this.name = new.target.name;
    this.exitCode = exitCode;
  }
}

/** One problem found in a configuration file. */
export interface ConfigProblem {
  file: string;
  section?: string;
  key?: string;
  line?: number;
  message: string;
}

export function formatProblem(p: ConfigProblem): string {
  const where = [
    p.line === undefined ? p.file : `${p.file}:${p.line}`,
    p.section === undefined ? undefined : `[${p.section}]`,
    p.key,
  ]
    .filter((s) => s !== undefined)
    .join(' ');
  return `${where}: ${p.message}`;
}

/** Every problem of a configuration file at once, so an operator fixes them in one pass. */
export class ConfigError extends BoxkeeperError {
  readonly problems: ConfigProblem[];
  constructor(problems: ConfigProblem[]) {
    const n = problems.length;
    super(
      `${n} problem${n === 1 ? '' : 's'} in configuration:\n` +
        problems.map((p) => `  - ${formatProblem(p)}`).join('\n'),
      ExitCode.config,
    );
    this.problems = problems;
  }
}

export class UsageError extends BoxkeeperError {
  constructor(message: string) {
    super(message, ExitCode.config);
  }
}

export class LockedError extends BoxkeeperError {
  readonly holderPid: number;
  constructor(lockFile: string, holderPid: number) {
    super(
      `another boxkeeper (pid ${holderPid}) already runs for this box (lock ${lockFile})`,
      ExitCode.locked,
    );
    this.holderPid = holderPid;
  }
}

export type CloudFailure =
  | 'network'
  | 'timeout'
  | 'http'
  | 'not-json'
  | 'invalid-response'
  | 'business'
  | 'auth'
  /** The answer passed a [limits] cap; refused, not retried. */
  | 'limit';

/** A cloud-platform call failed; names the endpoint and why. */
export class CloudError extends BoxkeeperError {
  readonly endpoint: string;
  readonly failure: CloudFailure;
  readonly status: number | undefined;
  constructor(
    endpoint: string,
    failure: CloudFailure,
    detail: string,
    options?: { status?: number; cause?: unknown },
  ) {
    super(`cloud ${endpoint} failed (${failure}): ${detail}`, ExitCode.cloud, options);
    this.endpoint = endpoint;
    this.failure = failure;
    this.status = options?.status;
  }
  /** Whether repeating the same request may succeed. */
  get transient(): boolean {
    return (
      this.failure === 'network' ||
      this.failure === 'timeout' ||
      (this.failure === 'http' &&
        (this.status === undefined || this.status >= 500 || this.status === 429))
    );
  }
}

/** The box's own Java app answered badly (local task API). */
export class BoxAppError extends BoxkeeperError {
  readonly endpoint: string;
  readonly status: number | undefined;
  constructor(endpoint: string, detail: string, options?: { status?: number; cause?: unknown }) {
    super(`box app ${endpoint} failed: ${detail}`, ExitCode.service, options);
    this.endpoint = endpoint;
    this.status = options?.status;
  }
}

export class ServiceError extends BoxkeeperError {
  readonly service: string;
  constructor(service: string, message: string, options?: { cause?: unknown }) {
    super(`${service}: ${message}`, ExitCode.service, options);
    this.service = service;
  }
}

export function errorMessage(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

export function isErrnoCode(err: unknown, code: string): boolean {
  return typeof err === 'object' && err !== null && (err as { code?: unknown }).code === code;
}

/** The errno codes of a file system that refused a read or write (not a bug of the agent). */
const STORAGE_CODES: Record<string, { what: string; todo: string }> = {
  ENOSPC: { what: 'no space left on the disk', todo: 'free space on that disk' },
  EDQUOT: { what: 'disk quota exceeded', todo: 'free space or raise the quota' },
  EIO: { what: 'input/output error', todo: 'check the disk (it may be failing)' },
  EACCES: { what: 'permission denied', todo: "give boxkeeper's user access to it" },
  EPERM: { what: 'operation not permitted', todo: "give boxkeeper's user access to it" },
  EROFS: { what: 'read-only file system', todo: 'make that file system writable' },
  EISDIR: { what: 'is a directory, expected a file', todo: 'move the directory aside' },
  ENOTDIR: { what: 'a part of the path is a file, expected a directory', todo: 'fix the path' },
};

export interface IoError extends Error {
  code: string;
  path?: string;
  dest?: string;
  syscall?: string;
}

/** The first error in `err`'s cause chain that is a storage failure (STORAGE_CODES), if any. */
export function storageErrorOf(err: unknown): IoError | undefined {
  for (let e: unknown = err, depth = 0; e !== undefined && e !== null && depth < 10; depth++) {
    const code = (e as { code?: unknown }).code;
    if (e instanceof Error && typeof code === 'string' && code in STORAGE_CODES)
      return e as IoError;
    e = (e as { cause?: unknown }).cause;
  }
  return undefined;
}

/** Whether the disk is full (as opposed to refusing the write for another reason). */
export function isDiskFull(err: unknown): boolean {
  const code = storageErrorOf(err)?.code;
  return code === 'ENOSPC' || code === 'EDQUOT';
}

/**
 * One line for an operator: the file, what the disk said and what to do, e.g.
 * `cannot write /box/patch/patch.meta: no space left on the disk (ENOSPC); free space on that disk`.
 * `file` names the file when the error itself does not (a write through a handle).
 */
export function describeStorageError(err: unknown, file?: string): string | undefined {
  const e = storageErrorOf(err);
  if (e === undefined) return undefined;
  // Not from a system call (e.g. a download refused up front for space): already says it all.
  if (e.syscall === undefined) return e.message;
  const known = STORAGE_CODES[e.code] as { what: string; todo: string };
  return `${whereItFailed(e, file)}: ${known.what} (${e.code}); ${known.todo}`;
}

const READING_SYSCALLS = new Set(['read', 'scandir', 'opendir', 'stat', 'lstat', 'readlink']);
/** A full or read-only disk refuses the target of a copy or rename, not its source. */
const TARGET_CODES = new Set(['ENOSPC', 'EDQUOT', 'EROFS']);

function whereItFailed(e: IoError, file: string | undefined): string {
  if (file !== undefined)
    return `cannot ${READING_SYSCALLS.has(e.syscall ?? '') ? 'read' : 'write'} ${file}`;
  if (e.path === undefined) return 'a file operation failed';
  if (e.dest !== undefined)
    return TARGET_CODES.has(e.code)
      ? `cannot write ${e.dest}`
      : `cannot ${e.syscall === 'rename' ? 'move' : 'copy'} ${e.path} to ${e.dest}`;
  return `cannot ${READING_SYSCALLS.has(e.syscall ?? '') ? 'read' : 'write'} ${e.path}`;
}

/** A storage failure, with the file and what to do (exit 7). */
export class StorageError extends BoxkeeperError {
  readonly code: string;
  readonly file: string | undefined;
  constructor(err: unknown, file?: string) {
    const e = storageErrorOf(err);
    super(describeStorageError(err, file) ?? errorMessage(err), ExitCode.storage, { cause: err });
    this.code = e?.code ?? 'EIO';
    this.file = file ?? (e?.dest !== undefined && TARGET_CODES.has(e.code) ? e.dest : e?.path);
  }
}

/** Names `path` on an errno error that names no file (a write through a handle). */
export function withPath(err: unknown, path: string): unknown {
  const e = err as { code?: unknown; syscall?: unknown; path?: unknown } | null;
  if (
    e !== null &&
    typeof e === 'object' &&
    typeof e.code === 'string' &&
    typeof e.syscall === 'string' &&
    e.path === undefined
  )
    Object.assign(e, { path });
  return err;
}
