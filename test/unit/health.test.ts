// assessHealth: the one rule behind `boxkeeper health` and GET /healthz.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { AgentStatus } from '../../services/agent/agent.ts';
import { assessHealth } from '../../services/agent/health.ts';

const now = Date.parse('2026-12-06T12:00:00Z');
const ago = (s: number) => new Date(now - s * 1000).toISOString();

function status(patch: Partial<AgentStatus> = {}): AgentStatus {
  const service = (name: 'java' | 'freeswitch') => ({
    name,
    status: 'running' as const,
    pid: 42,
    failures: 0,
    lastError: null,
    restarts: 0,
    since: ago(300),
  });
  return {
    pid: 7,
    agentVersion: '0.1.0',
    startedAt: ago(600),
    updatedAt: ago(1),
    settingsFile: '/box/settings/settings.ini',
    box: { version: 'V1.7', code: 'c' },
    debugMode: false,
    services: { java: service('java'), freeswitch: service('freeswitch') },
    heartbeat: { sent: 20, failed: 0, last: { at: ago(10), ok: true } },
    update: null,
    control: null,
    ...patch,
  };
}

const judge = (s: AgentStatus | null, running = true) =>
  assessHealth({ running, status: s, heartbeatMs: 30_000, now });

test('healthy: daemon, both services running, a heartbeat that succeeded 10 s ago', () => {
  const h = judge(status());
  assert.equal(h.healthy, true);
  assert.equal(h.reason, 'healthy: java and freeswitch running, heartbeat ok 10 s ago');
});

test('each reason to be unhealthy is named', () => {
  const base = status();
  const java = base.services.java;
  assert.ok(java !== undefined);
  const cases: Array<[AgentStatus | null, boolean, RegExp]> = [
    [base, false, /^the agent is not running$/],
    [null, true, /^the agent has not published its status yet$/],
    [
      {
        ...base,
        services: {
          ...base.services,
          java: { ...java, status: 'crash-loop', lastError: 'exited 1' },
        },
      },
      true,
      /^java is crash-loop since .* \(exited 1\)$/,
    ],
    [{ ...base, services: { java: java } }, true, /^freeswitch is not supervised/],
    [{ ...base, debugMode: true }, true, /^debug_mode is on/],
    [
      {
        ...base,
        heartbeat: {
          sent: 3,
          failed: 1,
          last: { at: ago(5), ok: false, error: 'cloud heartBeat failed (network)' },
        },
      },
      true,
      /^the last heartbeat failed: cloud heartBeat failed \(network\)$/,
    ],
    [
      { ...base, heartbeat: { sent: 3, failed: 0, last: { at: ago(91), ok: true } } },
      true,
      /^the last heartbeat was 91 s ago \(more than 90 s\)$/,
    ],
    [
      { ...base, startedAt: ago(120), heartbeat: { sent: 0, failed: 0, last: null } },
      true,
      /^no heartbeat since the agent started 120 s ago$/,
    ],
  ];
  for (const [s, running, reason] of cases) {
    const h = judge(s, running);
    assert.equal(h.healthy, false, reason.source);
    assert.match(h.reason, reason);
  }
});

test('a daemon that just started is healthy until its first heartbeat is due', () => {
  const h = judge(status({ startedAt: ago(5), heartbeat: { sent: 0, failed: 0, last: null } }));
  assert.equal(h.healthy, true);
  assert.match(h.reason, /starting/);
});

test('a short heartbeat interval still allows 15 s before beats count as stopped', () => {
  const s = status({ heartbeat: { sent: 9, failed: 0, last: { at: ago(12), ok: true } } });
  assert.equal(assessHealth({ running: true, status: s, heartbeatMs: 500, now }).healthy, true);
  const late = status({ heartbeat: { sent: 9, failed: 0, last: { at: ago(16), ok: true } } });
  assert.equal(assessHealth({ running: true, status: late, heartbeatMs: 500, now }).healthy, false);
});
