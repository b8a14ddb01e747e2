// The real world self-update runs in (services/update/self-update.ts): this install, its processes,
// files and the agent's lock.
import { nodeAgentInstalls } from '../adapters/agent-install.ts';
import { acquireInstanceLock } from '../adapters/instance-lock.ts';
import { nodePatchFs } from '../adapters/patch-fs.ts';
import type { SelfUpdateWorld } from '../services/update/self-update.ts';
import { agentInstall, realWorld } from './context.ts';

export function selfUpdateWorld(): SelfUpdateWorld {
  const processes = realWorld.processes;
  return {
    installs: nodeAgentInstalls(agentInstall, processes),
    processes,
    fs: nodePatchFs,
    lock: (path, holder) => acquireInstanceLock(path, holder, processes),
  };
}
