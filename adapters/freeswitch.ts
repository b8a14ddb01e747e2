// FreeSWITCH as controlled through fs_cli: run a command, parse `sofia status` and `show calls`.
import { ServiceError } from './errors.ts';
import type { ProcessControl } from './processes.ts';

export interface FreeswitchCli {
  /** Runs `fs_cli -x "<command>"`; throws a ServiceError when FreeSWITCH does not answer. */
  run(command: string): Promise<string>;
}

/** `cli` is the fs_cli executable; it runs with the FreeSWITCH dir as working directory. */
export function createFreeswitchCli(
  cli: string,
  fsDir: string,
  processes: ProcessControl,
  timeoutMs = 15_000,
): FreeswitchCli {
  return {
    async run(command) {
      const result = await processes.exec(cli, ['-x', command], { timeoutMs, cwd: fsDir });
      if (result.timedOut)
        throw new ServiceError(
          'freeswitch',
          `fs_cli -x "${command}" timed out after ${timeoutMs} ms`,
        );
      // fs_cli prints "Error Connecting" with exit 1 when the console is not running.
      if (result.code !== 0 || /Error Connecting/i.test(result.stdout)) {
        const why = (result.stdout + result.stderr).trim().split(/\r?\n/)[0] ?? '';
        throw new ServiceError(
          'freeswitch',
          `fs_cli -x "${command}" failed (exit ${String(result.code)}): ${why}`,
        );
      }
      return result.stdout;
    },
  };
}

/**
 * Gateway states from `sofia status`, keyed by `profile::gateway`. Parsed line by line and
 * column by column, so alignment, tabs and CRLF do not matter (the Python parser split the
 * whole output on single spaces and cut two characters off, W-PROC-4).
 */
export function parseSofiaStatus(output: string): Map<string, string> {
  const gateways = new Map<string, string>();
  for (const line of output.split(/\r?\n/)) {
    const cols = line.trim().split(/\s+/);
    const typeAt = cols.indexOf('gateway');
    if (typeAt < 1 || cols.length < typeAt + 2) continue;
    const name = cols[typeAt - 1] as string;
    if (!name.includes('::')) continue;
    gateways.set(name, cols[cols.length - 1] as string);
  }
  return gateways;
}

/** Number of active calls from `show calls` ("N total."). */
export function parseShowCalls(output: string): number {
  const m = /(\d+)\s+total\./.exec(output);
  if (m === null)
    throw new ServiceError(
      'freeswitch',
      `cannot read the call count from "show calls": ${output.trim().slice(0, 80)}`,
    );
  return Number(m[1]);
}

/**
 * Heartbeat code of a gateway state. The cloud knows 1 registered, 0 failing, 2 not
 * registered, -1 unknown/FreeSWITCH down. FreeSWITCH prints NOREG (the Python tool looked for
 * NO_REG and so sent -1 for it).
 */
export function registrationCode(state: string | undefined): number {
  switch (state?.toUpperCase()) {
    case 'REGED':
      return 1;
    case 'FAIL_WAIT':
    case 'FAILED':
      return 0;
    case 'NOREG':
    case 'NO_REG':
    case 'UNREGED':
      return 2;
    default:
      return -1;
  }
}
