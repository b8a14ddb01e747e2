// Typed errors shared by every layer. Deep code throws these with their kind; only cli/ maps
// kinds to exit codes (cli/exit-codes.ts; docs/architecture.md, "Exit codes").

/**
 * What kind of failure an error is. Only cli/ turns kinds into exit codes (cli/exit-codes.ts,
 * one code per kind of the same name), so deep code never speaks in process exit codes.
 */
export type ErrorKind =
  | 'internal'
  | 'config'
  | 'locked'
  | 'cloud'
  | 'service'
  | 'snapshot'
  | 'storage'
  | 'updateFailed'
  | 'nothingToDo'
  | 'checkFailed';

export class BoxkeeperError extends Error {
  readonly kind: ErrorKind;
  constructor(message: string, kind: ErrorKind, options?: { cause?: unknown }) {
    super(message, options);
    this.name = new.target.name;
    this.kind = kind;
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
      'config',
    );
    this.problems = problems;
  }
}

export class UsageError extends BoxkeeperError {
  constructor(message: string) {
    super(message, 'config');
  }
}

export class LockedError extends BoxkeeperError {
  readonly holderPid: number;
  constructor(lockFile: string, holderPid: number) {
    super(
      `another boxkeeper (pid ${holderPid}) already runs for this box (lock ${lockFile})`,
      'locked',
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
    super(`cloud ${endpoint} failed (${failure}): ${detail}`, 'cloud', options);
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
    super(`box app ${endpoint} failed: ${detail}`, 'service', options);
    this.endpoint = endpoint;
    this.status = options?.status;
  }
}

export class ServiceError extends BoxkeeperError {
  readonly service: string;
  constructor(service: string, message: string, options?: { cause?: unknown }) {
    super(`${service}: ${message}`, 'service', options);
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
    super(describeStorageError(err, file) ?? errorMessage(err), 'storage', { cause: err });
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
