#!/usr/bin/env node
// Entry point: parses the command line, runs one command, maps typed errors to exit codes.
import { parseArgs, type ParseArgsConfig } from 'node:util';
import {
  BoxkeeperError,
  ExitCode,
  StorageError,
  storageErrorOf,
  UsageError,
} from '../adapters/errors.ts';
import { commands, type Command } from './commands/index.ts';

const GLOBAL_HELP = `boxkeeper — keeps an edge box alive and up to date

Usage: boxkeeper <command> [options]

Commands:
${Object.values(commands)
  .map((c) => `  ${c.name.padEnd(14)}${c.summary}`)
  .join('\n')}

Every command takes --settings PATH (else $BOXKEEPER_SETTINGS, else ./settings/settings.ini)
and --help. Exit codes: 0 ok, 1 internal error, 2 bad configuration or usage,
3 another boxkeeper runs for this box, 4 cloud request failed, 5 box service failure,
6 snapshot operation refused or problems found, 7 a file could not be read or written
(disk full, I/O error, permission, read-only, a directory where a file belongs).
`;

function commandHelp(c: Command): string {
  const opts = Object.entries(c.options)
    .map(([name, o]) => `  --${name}${o.type === 'string' ? ' VALUE' : ''}`.padEnd(24) + o.help)
    .join('\n');
  return `Usage: boxkeeper ${c.name} ${c.usage}\n\n${c.description}\n\nOptions:\n${opts}\n  --help                Show this help\n`;
}

export async function main(argv: string[]): Promise<number> {
  const [name, ...rest] = argv;
  if (name === undefined || name === '--help' || name === '-h' || name === 'help') {
    process.stdout.write(GLOBAL_HELP);
    return name === undefined ? ExitCode.config : ExitCode.ok;
  }
  if (name === '--version') {
    const { agentInstall } = await import('./context.ts');
    process.stdout.write(`boxkeeper ${agentInstall().version}\n`);
    return ExitCode.ok;
  }
  const command = commands[name];
  if (command === undefined) {
    throw new UsageError(`unknown command "${name}"; run "boxkeeper --help" for the list`);
  }
  const options: ParseArgsConfig['options'] = { help: { type: 'boolean', short: 'h' } };
  for (const [optName, o] of Object.entries(command.options)) {
    options[optName] = { type: o.type };
  }
  let parsed;
  try {
    parsed = parseArgs({ args: rest, options, allowPositionals: true, strict: true });
  } catch (err) {
    throw new UsageError(`${(err as Error).message}\nSee "boxkeeper ${command.name} --help".`);
  }
  if (command.positionals !== true && parsed.positionals.length > 0) {
    throw new UsageError(
      `unexpected argument "${parsed.positionals[0] ?? ''}"\nSee "boxkeeper ${command.name} --help".`,
    );
  }
  if (parsed.values.help === true) {
    process.stdout.write(commandHelp(command));
    return ExitCode.ok;
  }
  const run = await command.load();
  return run({ values: parsed.values, positionals: parsed.positionals });
}

// One top-level catch: typed errors carry their exit code; a disk that refused a read or write
// is the operator's to fix (one line, no stack); anything else is a bug.
async function entry(): Promise<void> {
  let code: number;
  try {
    code = await main(process.argv.slice(2));
  } catch (caught) {
    const untyped = !(caught instanceof BoxkeeperError) || caught.exitCode === ExitCode.internal;
    const err = untyped && storageErrorOf(caught) !== undefined ? new StorageError(caught) : caught;
    if (err instanceof BoxkeeperError) {
      process.stderr.write(`boxkeeper: ${err.message}\n`);
      code = err.exitCode;
    } else {
      process.stderr.write(`boxkeeper: internal error: ${(err as Error).stack ?? String(err)}\n`);
      code = ExitCode.internal;
    }
  }
  process.exitCode = code;
}

/**
 * A storage failure that escaped its caller (a write in a timer or a forgotten promise) must not
 * end a daemon whose heartbeats and supervision do not need that file: it is reported on stderr
 * and the process goes on. Anything else that escapes is a bug and ends the process as Node would.
 */
function survivingStorageFailures(): void {
  const onEscape = (err: unknown) => {
    const line = storageErrorOf(err) === undefined ? undefined : new StorageError(err).message;
    if (line !== undefined) {
      try {
        process.stderr.write(`boxkeeper: ${line} (escaped; the agent goes on)\n`);
      } catch {
        // stderr itself is gone: nothing left to tell
      }
      return;
    }
    process.stderr.write(`boxkeeper: internal error: ${(err as Error).stack ?? String(err)}\n`);
    process.exit(ExitCode.internal);
  };
  process.on('uncaughtException', onEscape);
  process.on('unhandledRejection', onEscape);
}

survivingStorageFailures();
await entry();
