// The process exit codes of every command, owned by cli/: typed errors carry a kind
// (adapters/errors.ts ErrorKind), and the one top-level catch maps it to the code of that name.
import type { BoxkeeperError } from '../adapters/errors.ts';
import { HANDOVER_EXIT_CODE } from '../services/install/service-definitions.ts';

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
  handover: HANDOVER_EXIT_CODE,
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

/** The exit code of a typed error. */
export function exitCodeOf(err: BoxkeeperError): ExitCode {
  return ExitCode[err.kind];
}
