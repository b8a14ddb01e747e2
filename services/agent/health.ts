// Is this box's agent healthy? One answer for `boxkeeper health` (from status.json and the lock)
// and the daemon's GET /healthz (from its live status): the daemon runs, Java and FreeSWITCH run,
// and the last heartbeat succeeded recently. Pure, and free of the agent's modules, so that the
// command loads as little as `status`.
import type { AgentStatus } from './agent.ts';

export interface Health {
  healthy: boolean;
  /** One line: "healthy: …" or the first reason it is not. */
  reason: string;
}

/** A heartbeat older than this many intervals means beats stopped (or keep failing). */
export const HEARTBEAT_STALE_INTERVALS = 3;
/** The floor of that age, so a short test interval does not make a busy moment unhealthy. */
export const HEARTBEAT_STALE_MIN_MS = 15_000;

export function assessHealth(input: {
  running: boolean;
  status: AgentStatus | null;
  heartbeatMs: number;
  now: number;
}): Health {
  const { running, status, now } = input;
  const no = (reason: string): Health => ({ healthy: false, reason });
  if (!running) return no('the agent is not running');
  if (status === null) return no('the agent has not published its status yet');
  for (const name of ['java', 'freeswitch'] as const) {
    const s = status.services[name];
    if (s === undefined) return no(`${name} is not supervised (no [paths] entry for it)`);
    if (s.status !== 'running') {
      const why = s.lastError === null ? '' : ` (${s.lastError})`;
      return no(`${name} is ${s.status} since ${s.since}${why}`);
    }
  }
  if (status.debugMode) return no('debug_mode is on: no heartbeats are sent');
  const last = status.heartbeat.last;
  const staleMs = Math.max(HEARTBEAT_STALE_INTERVALS * input.heartbeatMs, HEARTBEAT_STALE_MIN_MS);
  const startedAgo = now - Date.parse(status.startedAt);
  if (last === null)
    return startedAgo <= staleMs
      ? { healthy: true, reason: 'healthy: starting, no heartbeat sent yet' }
      : no(`no heartbeat since the agent started ${Math.round(startedAgo / 1000)} s ago`);
  const age = now - Date.parse(last.at);
  if (!last.ok) return no(`the last heartbeat failed: ${last.error ?? 'unknown error'}`);
  if (age > staleMs)
    return no(
      `the last heartbeat was ${Math.round(age / 1000)} s ago (more than ${Math.round(staleMs / 1000)} s)`,
    );
  return {
    healthy: true,
    reason: `healthy: java and freeswitch running, heartbeat ok ${Math.round(age / 1000)} s ago`,
  };
}
