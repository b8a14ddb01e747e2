// Degrade, don't stop (issue 9, item 5): bad input on the box or from the cloud leaves the
// agent running and says what is wrong, instead of stopping it or reporting a false success.
// Real CLI, fixture box, cloud simulator.
import assert from 'node:assert/strict';
import { mkdir, readdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { test } from 'node:test';
import { buildStandinJar } from '../../fixtures/box/generate.ts';
import { buildPatchZip } from '../../fixtures/cloud-sim/patch-zip.ts';
import type { SimVersion } from '../../fixtures/cloud-sim/server.ts';
import { servicesRunning, setupE2E } from '../helpers/cli.ts';
import { appVersion } from '../helpers/update.ts';

const UPDATE_SETTINGS = {
  timer: { versionCheck: '2' },
  update: {
    enabled: 'on',
    check_jitter: '0',
    health_timeout: '8',
    health_settle: '1',
    calls_retry: '1',
    retry_delay: '0.5',
  },
};

for (const [what, version] of [
  [
    'a zip whose files sit in a V1.8/ folder',
    async (): Promise<SimVersion> => ({
      versionNum: 'V1.8',
      files: { 'V1.8/icb-box.jar': await buildStandinJar({ version: 'V1.8' }) },
      argumentConfigMap: { citynum: '099' },
    }),
  ],
  [
    'an empty zip',
    async (): Promise<SimVersion> => ({ versionNum: 'V1.8', zip: await buildPatchZip({}) }),
  ],
] as const) {
  test(`a patch that changes nothing (${what}) is refused before any change, not "installed"`, async (t) => {
    const e = await setupE2E({
      extraSettings: UPDATE_SETTINGS,
      sim: { scenario: { upgradeMark: 2, versions: [{ versionNum: 'V1.7' }, await version()] } },
    });
    t.after(() => e.close());
    const jar = await readFile(e.box.jarPath);
    const config = await readFile(e.box.configIniPath);
    // In-process: check, download and (mandatory) install, waited for.
    const r = await e.cli(['check', '--timeout', '60'], { timeoutMs: 90_000 });
    assert.equal(r.code, 8, `an update not installed: ${r.stderr}${r.stdout}`);
    assert.match(r.stdout, /changes nothing: its zip root holds/, r.stdout);
    assert.doesNotMatch(r.stdout, /last result: installed/, r.stdout);
    assert.deepEqual(await readFile(e.box.jarPath), jar);
    assert.deepEqual(await readFile(e.box.configIniPath), config);
    assert.deepEqual(e.sim.records.taskOps, [], 'no task was paused');
  });
}

test('a malformed application.yml keeps the agent running: heartbeats, FreeSWITCH supervised, Java not startable until the file is fixed', async (t) => {
  const e = await setupE2E();
  t.after(() => e.close());
  const good = await readFile(e.box.appYmlPath, 'utf8');
  await writeFile(e.box.appYmlPath, 'server:\n  port: [8080\n');
  const d = e.startDaemon();
  const s = await d.waitUntil(
    async () => {
      const st = await e.readStatus();
      return st?.pid === d.pid &&
        st.services.freeswitch?.status === 'running' &&
        st.services.java?.status === 'not-startable'
        ? st
        : undefined;
    },
    30_000,
    'FreeSWITCH running and Java not startable in status.json',
  );
  assert.match(s.services.java?.lastError ?? '', /application\.yml.*not valid YAML/);
  await d.waitForLine(
    (l) => l.service === 'java' && /cannot be started/.test(l.msg),
    10_000,
    'the log to say why Java cannot start',
  );
  const beats = e.sim.records.heartbeats.length;
  await d.waitUntil(
    () => e.sim.records.heartbeats.length >= beats + 2,
    15_000,
    'two more heartbeats',
  );
  // Fixed: Java is started without an agent restart.
  await writeFile(e.box.appYmlPath, good);
  await servicesRunning(e, d, 30_000);
  assert.equal(d.running, true);
});

test('an in-process install that the health gate rolls back leaves the services running when the command returns', async (t) => {
  const broken: SimVersion = {
    versionNum: 'V1.8',
    files: { 'icb-box.jar': await buildStandinJar({ version: 'V1.8', exitAfterMs: 100 }) },
  };
  const e = await setupE2E({
    extraSettings: {
      ...UPDATE_SETTINGS,
      update: { ...UPDATE_SETTINGS.update, health_timeout: '4' },
    },
    sim: { scenario: { upgradeMark: 2, versions: [{ versionNum: 'V1.7' }, broken] } },
  });
  t.after(() => e.close());
  const jar = await readFile(e.box.jarPath);
  // No daemon: `check` finds the mandatory V1.8 and installs it in this process.
  const r = await e.cli(['check', '--timeout', '120'], { timeoutMs: 150_000 });
  assert.equal(r.code, 8, `an update not installed: ${r.stderr}${r.stdout}`);
  assert.match(r.stdout, /install failed; rolled back to V1\.7 \(snapshot pre-V1\.8/, r.stdout);
  assert.deepEqual(await readFile(e.box.jarPath), jar);
  // Checked as the command returns, not waited for: the command itself waits.
  assert.equal(await appVersion(e), 'V1.7', `the V1.7 app answers\n${r.stdout}`);
  const fs = await e.box.standinProcesses();
  assert.ok(
    fs.some((p) => /FreeSwitchConsole/.test(p.cmd)),
    `FreeSWITCH runs: ${JSON.stringify(fs)}`,
  );
});

const POLICY = {
  checkIntervalMs: 3_600_000,
  checkJitterMs: 0,
  healthTimeoutMs: 8000,
  healthSettleMs: 1000,
  callsRetryMs: 1000,
  retryDelayMs: 500,
  maxFailedInstalls: 3,
};

/** A patch.meta written by hand: boxkeeper's envelope in the middle of an install, no backup. */
function handMadeMidInstall(): string {
  return JSON.stringify({
    format: 1,
    machineId: 'update',
    machineVersion: '2+patch1',
    seq: 7,
    savedAt: new Date().toISOString(),
    snapshot: {
      status: 'active',
      value: { installing: 'applying' },
      historyValue: {},
      context: {
        policy: POLICY,
        mark: 2,
        versions: [],
        retries: 5,
        nextCheckAt: 0,
        waitUntil: 0,
        installRequested: false,
        job: 'install',
        pausedTasks: null,
        adoptPaused: false,
        backup: null,
        lastBackup: null,
        lastInstalled: [],
        heldBack: [],
        installId: 1,
        healthDeadline: 0,
        failedInstalls: 0,
        rollbackAttempts: 0,
        lastError: null,
        lastResult: null,
        startup: { imported: null, recover: null },
      },
      children: {},
    },
  });
}

/** The Python tool's format, in FILES_UPDATED with no version listed. */
const PYTHON_MID_INSTALL = JSON.stringify({
  state: 5,
  list: [],
  retries: 5,
  mark: 2,
  self_update_version: null,
});

for (const [what, text, aside] of [
  ["boxkeeper's envelope in installing.applying", handMadeMidInstall(), 'rejected'],
  ["the Python tool's FILES_UPDATED", PYTHON_MID_INSTALL, 'python'],
] as const) {
  test(`a hand-made mid-install patch.meta without backup or version (${what}) needs attention, it is not "installed"`, async (t) => {
    const e = await setupE2E({
      extraSettings: UPDATE_SETTINGS,
      sim: { scenario: { upgradeMark: 0, versions: [] } },
    });
    t.after(() => e.close());
    const patchDir = join(e.box.boxRoot, 'patch');
    await mkdir(patchDir, { recursive: true });
    await writeFile(join(patchDir, 'patch.meta'), text);
    const jar = await readFile(e.box.jarPath);
    const d = e.startDaemon();
    const s = await d.waitUntil(
      async () => {
        const st = await e.readStatus();
        return st?.pid === d.pid && st.update?.state === 'idle' ? st : undefined;
      },
      30_000,
      'the update cycle to rest',
    );
    assert.match(s.update?.lastResult ?? '', /^NOT FINISHED: .*the box needs attention/);
    // Nothing holds the services down.
    await servicesRunning(e, d, 30_000);
    // Still visible after a version check (which clears lastError).
    const checks = e.sim.records.checks.length;
    await d.waitUntil(() => e.sim.records.checks.length > checks + 1, 20_000, 'two version checks');
    await d.waitUntil(
      async () => (await e.readStatus())?.update?.state === 'idle',
      15_000,
      'the check to finish',
    );
    assert.match((await e.readStatus())?.update?.lastResult ?? '', /needs attention/);
    assert.deepEqual(await readFile(e.box.jarPath), jar);
    assert.ok(
      (await readdir(patchDir)).some((n) => n.startsWith(`patch.meta.${aside}-`)),
      `the original is kept as patch.meta.${aside}-*`,
    );
  });
}
