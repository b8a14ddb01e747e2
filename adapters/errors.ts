// Typed errors shared by every layer. Deep code throws these; only cli/main.ts maps them to
// exit codes (see docs/architecture.md, "Exit codes").

export const ExitCode = {
  ok: 0,
  internal: 1,
  /** Bad settings.ini, configuration.ini, application.yml or command-line usage. */
  config: 2,
  /** Another boxkeeper already runs for this box. */
  locked: 3,
  /** A cloud-platform request failed (token, heartbeat, …). */
  cloud: 4,
  /** A box service (Java, FreeSWITCH) could not be controlled. */
  service: 5,
  /** A snapshot operation was refused or failed (space, mounts, unknown version, damage). */
  snapshot: 6,
  /**
   * `boxkeeper run` under systemd handed over to `boxkeeper self-update`, which restarts the
   * service (listed in the unit's RestartPreventExitStatus= and SuccessExitStatus=).
   */
  handover: 10,
} as const;
export type ExitCode = (typeof ExitCode)[keyof typeof ExitCode];

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
  'network' | 'timeout' | 'http' | 'not-json' | 'invalid-response' | 'business' | 'auth';

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
