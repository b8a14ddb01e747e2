// Where the daemon publishes its status (AgentStatus in agent.ts). Apart from agent.ts so that
// `boxkeeper status` finds the file without loading the agent and what it runs.
import { join } from 'node:path';
import type { Settings } from './settings.ts';

export function statusPath(settings: Settings): string {
  return join(settings.paths.agentData, 'status.json');
}

/** Where the running console's address and token are (0600), for `boxkeeper console`. */
export function consolePath(settings: Settings): string {
  return join(settings.paths.agentData, 'console.json');
}
