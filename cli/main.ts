#!/usr/bin/env node
// Entry point: parses the command line, runs one command, maps typed errors to exit codes.
import { EXIT_CODE_MEANINGS, ExitCode, exitCodeOf } from './exit-codes.ts';
import { parseArgs, type ParseArgsConfig } from 'node:util';
import { BoxkeeperError, StorageError, storageErrorOf, UsageError } from '../adapters/errors.ts';
import { commands, type Command } from './commands/index.ts';

const GLOBAL_HELP = `boxkeeper — keeps an edge box alive and up to date

Usage: boxkeeper <command> [options]

Commands:
${Object.values(commands)
  .map((c) => `  ${c.name.padEnd(14)}${c.summary}`)
  .join('\n')}

Every command takes --settings PATH (else $BOXKEEPER_SETTINGS, else ./settings/settings.ini)
and --help.

Exit codes:
${EXIT_CODE_MEANINGS.map(([code, meaning]) => `  ${String(code).padStart(2)}  ${meaning}`).join('\n')}
`;

function commandHelp(c: Command): string {
  const opts = Object.entries(c.options)
    .map(([name, o]) => `  --${name}${o.type === 'string' ? ' VALUE' : ''}`.padEnd(24) + o.help)
    .join('\n');
  return `Usage: boxkeeper ${c.name} ${c.usage}\n\n${c.description}\n\nOptions:\n${opts}\n  --help                Show this help\n`;
}

/** parseArgs' complaint in our words, with the nearest option when one was misspelt. */
function usageProblem(err: unknown, command: Command, known: string[]): string {
  const { code, message } = err as { code?: string; message: string };
  const named = /'(-{1,2}[^' ]+)[^']*'/.exec(message)?.[1];
  if (code === 'ERR_PARSE_ARGS_UNKNOWN_OPTION' && named !== undefined) {
    const near = nearest(named.replace(/^-+/, '').split('=')[0] ?? '', known);
    return `unknown option ${named} for "boxkeeper ${command.name}"${near === undefined ? '' : `; did you mean --${near}?`}`;
  }
  if (code === 'ERR_PARSE_ARGS_INVALID_OPTION_VALUE' && named !== undefined) {
    const takes = command.options[named.replace(/^-+/, '')]?.type === 'boolean';
    return takes
      ? `option ${named} takes no value`
      : `option ${named} needs a value: ${named} VALUE`;
  }
  return message;
}

/** The known name closest to `typed` (edit distance ≤ 2, or one contains the other). */
export function nearest(typed: string, known: string[]): string | undefined {
  let best: { name: string; d: number } | undefined;
  for (const name of known) {
    const d = name.includes(typed) || typed.includes(name) ? 1 : editDistance(typed, name);
    if (d <= 2 && (best === undefined || d < best.d)) best = { name, d };
  }
  return best?.name;
}

function editDistance(a: string, b: string): number {
  let prev = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    const row = [i];
    for (let j = 1; j <= b.length; j++)
      row[j] = Math.min(
        (prev[j] ?? 0) + 1,
        (row[j - 1] ?? 0) + 1,
        (prev[j - 1] ?? 0) + (a[i - 1] === b[j - 1] ? 0 : 1),
      );
    prev = row;
  }
  return prev[b.length] ?? 0;
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
    throw new UsageError(
      `${usageProblem(err, command, Object.keys(options))}\nSee "boxkeeper ${command.name} --help".`,
    );
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
    const untyped = !(caught instanceof BoxkeeperError) || caught.kind === 'internal';
    const err = untyped && storageErrorOf(caught) !== undefined ? new StorageError(caught) : caught;
    if (err instanceof BoxkeeperError) {
      process.stderr.write(`boxkeeper: ${err.message}\n`);
      code = exitCodeOf(err);
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
