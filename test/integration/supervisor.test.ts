// ServiceSupervisor with real processes: start, adopt, stop gracefully, kill a process that
// ignores SIGTERM after the stop timeout, and hold a stopped service until resumed.
import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test, type TestContext } from 'node:test';
import { createLogger } from '../../adapters/logger.ts';
import { createProcessControl } from '../../adapters/processes.ts';
import { ServiceSupervisor, type ServiceSpec } from '../../services/supervision/supervisor.ts';

const nodeProcesses = createProcessControl();

const logger = createLogger({ level: 'fatal', console: 'none' }).logger;

const policy = {
  backoffInitialMs: 100,
  backoffMaxMs: 400,
  crashLoopStarts: 5,
  crashLoopWindowMs: 60_000,
  crashLoopRetryMs: 0,
  stableAfterMs: 60_000,
  notStartableRetryMs: 1000,
};

/**
 * A tiny service: a node process tagged with a unique marker in its command line. `stubborn`
 * ignores SIGTERM, as a hung Java would. It writes its pid file once it is "ready".
 */
async function tinyService(
  t: TestContext,
  stubborn: boolean,
): Promise<{ spec: ServiceSpec; dir: string }> {
  const dir = await mkdtemp(join(tmpdir(), 'bk-sup-'));
  const marker = join(dir, 'service-marker');
  const script = join(dir, 'service.mjs');
  await writeFile(
    script,
    `${stubborn ? "process.on('SIGTERM', () => {});" : ''}
     import { writeFileSync } from 'node:fs';
     writeFileSync(${JSON.stringify(join(dir, 'ready'))}, String(process.pid));
     setInterval(() => {}, 1000);`,
  );
  let starts = 0;
  const spec: ServiceSpec = {
    name: 'java',
    matches: (p) => p.cmd.includes(marker),
    async start() {
      starts++;
      await rm(join(dir, 'ready'), { force: true });
      return nodeProcesses.spawnDetached(process.execPath, [script, marker], {
        cwd: dir,
        logFile: join(dir, 'out.log'),
      });
    },
    isReady: () =>
      readFile(join(dir, 'ready'), 'utf8').then(
        () => true,
        () => false,
      ),
  };
  Object.defineProperty(spec, 'starts', { get: () => starts });
  t.after(async () => {
    for (const p of (await nodeProcesses.list()).filter((x) => x.cmd.includes(marker))) {
      await nodeProcesses.killTree(p.pid, 'SIGKILL');
    }
    await rm(dir, { recursive: true, force: true });
  });
  return { spec, dir };
}

function supervise(t: TestContext, spec: ServiceSpec, stopTimeoutMs = 3000): ServiceSupervisor {
  const sup = new ServiceSupervisor(spec, {
    processes: nodeProcesses,
    logger,
    policy,
    intervalMs: 100,
    readyTimeoutMs: 5000,
    stopTimeoutMs,
  });
  t.after(() => sup.detach());
  sup.start();
  return sup;
}

test('a service is started, restarted after it is killed, and stopped gracefully on request', async (t) => {
  const { spec } = await tinyService(t, false);
  const sup = supervise(t, spec);
  const first = await sup.waitFor(['running'], 10_000);
  assert.ok(first.pid !== null && nodeProcesses.isAlive(first.pid));

  await nodeProcesses.killTree(first.pid, 'SIGKILL');
  await sup.waitFor(['backoff'], 5000);
  const second = await sup.waitFor(['running'], 10_000);
  assert.notEqual(second.pid, first.pid);
  assert.ok(second.pid !== null && nodeProcesses.isAlive(second.pid));

  const t0 = Date.now();
  await sup.stopAndHold(10_000);
  assert.ok(
    Date.now() - t0 < 2500,
    'a process that honours SIGTERM stops without waiting for the timeout',
  );
  assert.equal(nodeProcesses.isAlive(second.pid), false);

  // Intentionally stopped: nothing brings it back until resumed.
  await new Promise((r) => setTimeout(r, 800));
  assert.equal(sup.state().status, 'stopped');
  assert.equal((await nodeProcesses.list()).some(spec.matches), false);
  sup.resume();
  const third = await sup.waitFor(['running'], 10_000);
  assert.ok(third.pid !== null && nodeProcesses.isAlive(third.pid));
});

test('a process that ignores SIGTERM is killed with its tree after the stop timeout', async (t) => {
  const { spec } = await tinyService(t, true);
  const sup = supervise(t, spec, 1000);
  const { pid } = await sup.waitFor(['running'], 10_000);
  assert.ok(pid !== null);
  const t0 = Date.now();
  await sup.stopAndHold(10_000);
  const took = Date.now() - t0;
  assert.ok(took >= 900, `waited the stop timeout first (${took} ms)`);
  assert.equal(nodeProcesses.isAlive(pid), false);
});

test('a service already running is adopted, not started twice', async (t) => {
  const { spec } = await tinyService(t, false);
  const pid = await spec.start();
  const sup = supervise(t, spec);
  const state = await sup.waitFor(['running'], 10_000);
  assert.equal(state.pid, pid);
  assert.equal((spec as unknown as { starts: number }).starts, 1);
});

test('a STOP while the spawn is in flight stops what it started (nothing runs on unsupervised)', async (t) => {
  const { spec } = await tinyService(t, false);
  // The start effect is held before its spawn (as a slow application.yml check or a loaded
  // machine holds it): STOP arrives first.
  let openGate: () => void = () => undefined;
  const gate = new Promise<void>((r) => (openGate = r));
  const start = spec.start.bind(spec);
  let spawned: Promise<number> | undefined;
  spec.startProblem = async () => {
    await gate;
    return null;
  };
  spec.start = () => (spawned = start());
  const sup = supervise(t, spec);
  await sup.waitFor(['starting'], 10_000);
  await new Promise((r) => setTimeout(r, 300)); // detect done, the start effect at its gate
  const held = sup.stopAndHold(20_000);
  await sup.waitFor(['stopping'], 10_000);
  openGate();
  await held;
  assert.ok(spawned !== undefined, 'the spawn happened');
  const pid = await spawned;
  assert.equal(nodeProcesses.isAlive(pid), false, `pid ${pid} was stopped`);
  assert.equal((await nodeProcesses.list()).some(spec.matches), false);
  assert.equal(sup.state().status, 'stopped');
});
