// `boxkeeper console [--open]`: the link to the running daemon's local console, with its token.
// As light as status: reads console.json and the lock, loads no agent.
import { ExitCode } from '../exit-codes.ts';
import { spawn } from 'node:child_process';
import { readFile } from 'node:fs/promises';
import { ConfigError } from '../../adapters/errors.ts';
import { ownerAlive, readLockOwner } from '../../adapters/instance-lock.ts';
import { consolePath, lockPath } from '../../services/agent/agent-files.ts';
import { nodeProcesses } from '../process-control.ts';
import { readSettings } from '../settings-load.ts';
import type { CommandArgs } from './index.ts';

/** The system's way to open a URL in the default browser. */
function opener(url: string): [string, string[]] {
  if (process.platform === 'win32') return ['cmd.exe', ['/d', '/c', 'start', '""', url]];
  if (process.platform === 'darwin') return ['open', [url]];
  return ['xdg-open', [url]];
}

export async function run(args: CommandArgs): Promise<ExitCode> {
  const { settings } = await readSettings(args);
  if (!settings.console.enabled)
    throw new ConfigError([
      {
        file: settings.file,
        section: 'console',
        key: 'enabled',
        message: 'the console is off: set it to on and restart the agent',
      },
    ]);
  const owner = await readLockOwner(lockPath(settings));
  const info = await readFile(consolePath(settings), 'utf8').then(
    (t) => JSON.parse(t) as { url?: unknown; token?: unknown; pid?: unknown },
    () => null,
  );
  // A console.json left by a daemon that was killed is not a console.
  if (!(await ownerAlive(owner, nodeProcesses)) || info === null || info.pid !== owner?.pid) {
    process.stderr.write(
      owner === undefined || !(await ownerAlive(owner, nodeProcesses))
        ? 'the agent is not running: start it (boxkeeper run, or the service)\n'
        : `the agent runs but serves no console: its log says why (port ${settings.console.port})\n`,
    );
    return ExitCode.internal;
  }
  const link = `${String(info.url)}/?token=${String(info.token)}`;
  process.stdout.write(`${link}\n`);
  if (args.values.open === true) {
    const [cmd, argv] = opener(link);
    const child = spawn(cmd, argv, { detached: true, stdio: 'ignore', windowsHide: true });
    child.on('error', (err) =>
      process.stderr.write(`cannot open a browser (${err.message}): open the link above\n`),
    );
    child.unref();
  }
  return ExitCode.ok;
}
