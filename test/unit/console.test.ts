// The console's view of the daemon: log lines masked and readable, actions limited to the four
// operator commands, status pushes coalesced.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { AgentStatus } from '../../services/agent/agent.ts';
import {
  consoleLogLine,
  consoleRoutes,
  type ConsoleAction,
} from '../../services/console/console.ts';

test('a log line shows time, level, tags and message, with secret-looking values masked', () => {
  const line = consoleLogLine(
    JSON.stringify({
      level: 40,
      time: '2026-12-06T05:00:00.000Z',
      pid: 1,
      component: 'update',
      msg: 'config applied',
      config: { callboxPassword: 'cb-v18', citynum: '010' },
      accessKeySecret: 'sk-123',
    }),
  );
  assert.equal(line.level, 'warn');
  assert.equal(line.time, '2026-12-06T05:00:00.000Z');
  assert.equal(
    line.text,
    '[update] config applied {"config":{"callboxPassword":"***","citynum":"010"},"accessKeySecret":"***"}',
  );
  assert.doesNotMatch(line.text, /cb-v18|sk-123/);
  assert.equal(consoleLogLine('not json').text, 'not json');
});

test('only the four operator actions reach the update cycle; status pushes are coalesced', async () => {
  const ran: ConsoleAction[] = [];
  const listeners = new Set<(s: AgentStatus) => void>();
  const status = { pid: 1, update: null } as unknown as AgentStatus;
  const console_ = consoleRoutes({
    status: () => status,
    onStatus: (l) => {
      listeners.add(l);
      return () => listeners.delete(l);
    },
    chart: () => Promise.resolve('<svg/>'),
    command: (name) => {
      ran.push(name);
      return Promise.resolve({ status: 200, body: { accepted: true } });
    },
    pushEveryMs: 50,
  });
  assert.equal((await console_.routes.post('/api/action', { action: 'install' })).status, 200);
  const bad = await console_.routes.post('/api/action', { action: 'reload-config' });
  assert.equal(bad.status, 400);
  assert.match(JSON.stringify(bad.body), /one of check, install, rollback, clear-cache/);
  assert.equal((await console_.routes.post('/api/other', {})).status, 404);
  assert.deepEqual(ran, ['install']);
  assert.equal(await console_.routes.get('/nothing'), undefined);
  assert.equal((await console_.routes.get('/chart.svg'))?.type, 'image/svg+xml');

  const pushed: string[] = [];
  const detach = console_.attach((event) => pushed.push(event));
  for (let i = 0; i < 20; i++) for (const l of listeners) l(status);
  await new Promise((r) => setTimeout(r, 300));
  assert.deepEqual(pushed, ['status'], 'a burst of 20 changes is one push');
  detach();
  for (const l of listeners) l(status);
  assert.equal(listeners.size, 0);
});
