import type { ExitCode } from '../../adapters/errors.ts';
import { diagramCommand } from './diagram.ts';
import { heartbeatCommand } from './heartbeat.ts';
import { replayCommand } from './replay.ts';
import { runCommand } from './run.ts';
import { patchCommand } from './patch.ts';
import { selfUpdateCommand } from './self-update.ts';
import { serviceCommand } from './service.ts';
import { snapshotCommand } from './snapshot.ts';
import { statusCommand } from './status.ts';
import { switchOverCommand } from './switch-over.ts';
import { tokenCommand } from './token.ts';
import { updateCommands } from './update-ops.ts';

export interface CommandOption {
  type: 'string' | 'boolean';
  help: string;
}

export interface CommandArgs {
  values: Record<string, string | boolean | (string | boolean)[] | undefined>;
  positionals: string[];
}

export interface Command {
  name: string;
  summary: string;
  usage: string;
  description: string;
  options: Record<string, CommandOption>;
  /** Whether the command takes positional arguments (subcommands, versions). */
  positionals?: boolean;
  run(args: CommandArgs): Promise<ExitCode>;
}

export const commands: Record<string, Command> = Object.fromEntries(
  [
    runCommand,
    statusCommand,
    heartbeatCommand,
    tokenCommand,
    snapshotCommand,
    ...updateCommands,
    serviceCommand,
    diagramCommand,
    selfUpdateCommand,
    replayCommand,
    patchCommand,
    switchOverCommand,
  ].map((c) => [c.name, c]),
);
