// `boxkeeper health`: the answer of GET /healthz, from the lock and status.json, for a script or
// a monitoring agent. As light as status: no cloud client, agent or statecharts.
import { ExitCode } from '../exit-codes.ts';
import { readFile } from 'node:fs/promises';

import { ownerAlive, readLockOwner } from '../../adapters/instance-lock.ts';
import type { AgentStatus } from '../../services/agent/agent.ts';
import { statusPath, lockPath } from '../../services/agent/agent-files.ts';
import { assessHealth } from '../../services/agent/health.ts';
import { nodeProcesses } from '../process-control.ts';
import { readSettings } from '../settings-load.ts';
import type { CommandArgs } from './index.ts';

export async function run(args: CommandArgs): Promise<ExitCode> {
  const { settings } = await readSettings(args);
  const owner = await readLockOwner(lockPath(settings));
  const running = await ownerAlive(owner, nodeProcesses);
  const status = await readFile(statusPath(settings), 'utf8').then(
    (text) => JSON.parse(text) as AgentStatus,
    () => null,
  );
  // status.json of a daemon that ran before is not this daemon's word.
  const own = status !== null && running && status.pid === owner?.pid ? status : null;
  const health = assessHealth({
    running,
    status: own,
    heartbeatMs: settings.timer.heartbeatMs,
    now: Date.now(),
  });
  process.stdout.write(
    args.values.json === true ? `${JSON.stringify(health)}\n` : `${health.reason}\n`,
  );
  return health.healthy ? ExitCode.ok : ExitCode.checkFailed;
}
