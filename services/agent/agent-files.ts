// The agent's own files, derived from settings in one place: what the daemon publishes (status,
// control channel, console), its lock, markers and traces under [paths] agent_data, and the
// compact UTC stamp put in the names of files set aside or logged. Free of anything heavy, so
// `boxkeeper status` and `health` find them without loading the agent.
import { join } from 'node:path';
import type { Settings } from './settings.ts';

type WithAgentData = Pick<Settings, 'paths'>;

const at = (s: WithAgentData, name: string) => join(s.paths.agentData, name);

/** The daemon's status (AgentStatus in agent.ts), for `status`, `health` and the console. */
export const statusPath = (s: WithAgentData): string => at(s, 'status.json');
/** The running daemon's control channel address and token (0600). */
export const controlPath = (s: WithAgentData): string => at(s, 'control.json');
/** The running console's address and token (0600), for `boxkeeper console`. */
export const consolePath = (s: WithAgentData): string => at(s, 'console.json');
/** One agent per box: the instance lock. */
export const lockPath = (s: WithAgentData): string => at(s, 'agent.lock');
/** The NDJSON traces of the update cycle. */
export const tracesDir = (s: WithAgentData): string => at(s, 'traces');
/** An install under way names its backup here (to reconcile a lost patch.meta). */
export const installMarkerPath = (agentData: string): string =>
  join(agentData, 'install-in-progress.json');
/** The counter of the last installed signed patch (rollback protection). */
export const patchCounterPath = (agentData: string): string =>
  join(agentData, 'patch-counter.json');
/** A self-update under way. */
export const selfUpdatePath = (s: WithAgentData): string => at(s, 'self-update.json');

/** A compact UTC time for file names: 20261206T061700Z. */
export function fileStamp(d: Date = new Date()): string {
  return d
    .toISOString()
    .replace(/[-:]/g, '')
    .replace(/\.\d+Z$/, 'Z');
}
