// `boxkeeper health` and the daemon's GET /healthz: the real CLI and daemon, a fixture box with
// its stand-in Java and FreeSWITCH, and the cloud simulator.
import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { test } from 'node:test';
import { setupE2E, waitUntil, type CliResult } from '../helpers/cli.ts';

const show = (r: CliResult): string =>
  `exit ${String(r.code)}\n--- stdout ---\n${r.stdout}\n--- stderr ---\n${r.stderr}`;

test('health: 11 without a daemon, 0 when all is up, 11 with the reason when beats fail; /healthz agrees without a token', async (t) => {
  const h = await setupE2E({ extraSettings: { update: { enabled: 'on' } } });
  t.after(() => h.close());

  const none = await h.cli(['health']);
  assert.equal(none.code, 11, show(none));
  assert.equal(none.stdout, 'the agent is not running\n');

  const d = h.startDaemon();
  const healthy = await d.waitUntil(
    async () => {
      const r = await h.cli(['health']);
      // Healthy while starting, too; wait for the first heartbeat's word.
      return r.code === 0 && /heartbeat ok/.test(r.stdout) ? r : undefined;
    },
    60_000,
    'boxkeeper health to exit 0 after a heartbeat',
  );
  assert.match(healthy.stdout, /^healthy: java and freeswitch running, heartbeat ok \d+ s ago\n$/);
  const json = await h.cli(['health', '--json']);
  assert.equal(json.code, 0, show(json));
  assert.equal((JSON.parse(json.stdout) as { healthy: boolean }).healthy, true);

  const { url } = JSON.parse(await readFile(join(h.agentData, 'control.json'), 'utf8')) as {
    url: string;
  };
  const probe = await fetch(`${url}/healthz`);
  assert.equal(probe.status, 200);
  assert.equal(((await probe.json()) as { healthy: boolean }).healthy, true);
  // Only the probe is open: the status and commands still need the token.
  assert.equal((await fetch(`${url}/status`)).status, 401);
  assert.equal((await fetch(`${url}/healthz`, { method: 'POST' })).status, 401);

  // Every heartbeat fails from now on. Not by closing the simulator: under load another test's
  // simulator can be given the freed port at once and answer the beats in its place.
  h.sim.inject('heartBeat', { kind: 'status', status: 503 });
  const failing = await d.waitUntil(
    async () => {
      const r = await h.cli(['health']);
      return r.code === 11 ? r : undefined;
    },
    60_000,
    'boxkeeper health to report the failing heartbeat',
  );
  assert.match(failing.stdout, /^the last heartbeat failed: /);
  const down = await waitUntil(
    async () => {
      const r = await fetch(`${url}/healthz`);
      return r.status === 503 ? ((await r.json()) as { healthy: boolean; reason: string }) : null;
    },
    30_000,
    '/healthz to answer 503',
  );
  assert.equal(down.healthy, false);
  assert.match(down.reason, /^the last heartbeat failed: /);

  await d.stop();
  const stopped = await h.cli(['health']);
  assert.equal(stopped.code, 11, show(stopped));
  assert.equal(stopped.stdout, 'the agent is not running\n');
});
