// debug_mode = on: as in the Python tool, the daemon runs no timed heartbeat and no timed version
// check, while the operator's commands still work. The real daemon, fixture box and simulator.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { setupE2E, sleep } from '../helpers/cli.ts';

test('debug_mode = on: no timed check or heartbeat; "boxkeeper check" and "heartbeat" still work', async (t) => {
  const h = await setupE2E({
    extraSettings: {
      general: { debug_mode: 'on' },
      timer: { versionCheck: '1' },
      update: { enabled: 'on', check_jitter: '0' },
    },
  });
  t.after(() => h.close());
  const d = h.startDaemon();
  await d.waitForLine((l) => /debug_mode is on/.test(l.msg), 30_000, 'the debug-mode notice');
  // The control channel is up once status.json names it.
  await d.waitUntil(async () => (await h.readStatus())?.control ?? undefined, 30_000, 'control');
  // Several check intervals (1 s) pass: nothing is asked on a timer.
  await sleep(3000);
  assert.equal(h.sim.records.checks.length, 0, 'no timed version check');
  assert.equal(h.sim.records.heartbeats.length, 0, 'no timed heartbeat');

  const check = await h.cli(['check', '--timeout', '60'], { timeoutMs: 90_000 });
  assert.equal(check.code, 0, check.stderr + check.stdout);
  assert.match(check.stdout, /sent to the running daemon/);
  assert.equal(h.sim.records.checks.length, 1, 'the operator check ran once');
  const beat = await h.cli(['heartbeat']);
  assert.equal(beat.code, 0, beat.stderr);
  assert.equal(h.sim.records.heartbeats.length, 1);
  await sleep(3000);
  assert.equal(h.sim.records.checks.length, 1, 'still no timed check after the manual one');
});
