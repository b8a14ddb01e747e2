// The update lifecycle end to end: the daemon (`boxkeeper run`) on a fixture box against the
// cloud simulator installs real patch zips (jar, application.yml, SQL, config map), rolls back
// on failure, defers while calls are active, and takes operator commands.
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { cp, mkdir, readFile, readdir, symlink, writeFile } from 'node:fs/promises';
import { join, relative, sep } from 'node:path';
import { test } from 'node:test';
import sqlite3 from 'sqlite3';
import { buildStandinJar } from '../../fixtures/box/generate.ts';
import { simKeyPair, type SimVersion } from '../../fixtures/cloud-sim/server.ts';
import type { UpdateStatus } from '../../services/update/update-engine.ts';
import { chmod, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { delimiter } from 'node:path';
import { alive, Daemon, REPO, setupE2E, TSX_LOADER, waitUntil, type E2E } from '../helpers/cli.ts';
import { appVersion, dbQuery, tempFiles } from '../helpers/update.ts';

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

async function dbDump(path: string): Promise<string> {
  const tables = await dbQuery<{ name: string }>(
    path,
    "SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name",
  );
  const parts: string[] = [];
  for (const t of tables) {
    parts.push(t.name, JSON.stringify(await dbQuery(path, `SELECT * FROM "${t.name}" ORDER BY 1`)));
  }
  return parts.join('\n');
}

const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');

/** What a user would compare before and after: the files an update touches and the DB rows. */
async function boxState(e: E2E): Promise<Record<string, string>> {
  const files = [e.box.jarPath, e.box.appYmlPath, e.box.configIniPath, e.box.settingsPath];
  const out: Record<string, string> = {};
  for (const f of files) out[f] = sha(await readFile(f));
  out.db = await dbDump(e.box.dbPath);
  return out;
}

async function updateStatus(e: E2E): Promise<UpdateStatus | null> {
  return (await e.readStatus())?.update ?? null;
}

/** Waits (on the daemon's status.json) for an update status that satisfies `ok`; returns it. */
function untilUpdate(
  d: Daemon,
  e: E2E,
  ok: (u: UpdateStatus) => boolean,
  what: string,
  timeoutMs = 60_000,
): Promise<UpdateStatus> {
  return d.waitUntil(
    async () => {
      const u = await updateStatus(e);
      return u !== null && ok(u) ? u : undefined;
    },
    timeoutMs,
    what,
  );
}

async function v18(): Promise<SimVersion> {
  return {
    versionNum: 'V1.8',
    remark: 'new call flow',
    files: {
      'icb-box.jar': await buildStandinJar({ version: 'V1.8' }),
      'data/001-add-table.sql':
        "BEGIN TRANSACTION;\nCREATE TABLE call_flow (id INTEGER PRIMARY KEY, name TEXT);\nINSERT INTO call_flow (name) VALUES ('v18');\nCOMMIT;\n",
    },
    argumentConfigMap: { citynum: '010', callboxPassword: 'cb-v18' },
  };
}

async function v19(sql = "INSERT INTO call_flow (name) VALUES ('v19');"): Promise<SimVersion> {
  return {
    versionNum: 'V1.9',
    remark: 'fixes',
    files: {
      'icb-box.jar': await buildStandinJar({ version: 'V1.9' }),
      'data/002.sql': `BEGIN TRANSACTION;\n${sql}\nCOMMIT;\n`,
    },
    argumentConfigMap: { outnum: 7, unknownKey: 'x' },
  };
}

test('a mandatory chain V1.7 → V1.8 → V1.9 installs jar, SQL and config map, with tasks paused and resumed', async (t) => {
  const e = await setupE2E({
    extraSettings: UPDATE_SETTINGS,
    sim: {
      scenario: { upgradeMark: 2, versions: [{ versionNum: 'V1.7' }, await v18(), await v19()] },
    },
  });
  t.after(() => e.close());
  const d = e.startDaemon();
  const done = await untilUpdate(
    d,
    e,
    (u) => u.lastResult?.startsWith('installed') === true,
    'the update to be installed',
    60_000,
  );
  assert.equal(done.lastResult, 'installed V1.8, V1.9');
  assert.equal(done.lastError, null);

  const config = await readFile(e.box.configIniPath, 'utf8');
  const v19code = e.sim.versions().find((v) => v.versionNum === 'V1.9')?.versionCode ?? '';
  assert.match(config, /^version = V1\.9$/m);
  assert.match(config, new RegExp(`^code = ${v19code}$`, 'm'));
  assert.match(config, /^num = 010$/m, '[city] num from V1.8');
  assert.match(config, /^out = 7$/m, '[city] out from V1.9 (a number)');
  assert.match(config, /^callboxPassword = cb-v18$/m);
  assert.match(config, /^# |^\[QTHZ\]/m);
  // The gateway XML follows configuration.ini.
  const callbox = await readFile(
    join(e.box.fsDir, 'conf', 'sip_profiles', 'external', 'callbox.xml'),
    'utf8',
  ).catch(() => '');
  if (callbox !== '') assert.match(callbox, /name="password" value="cb-v18"/);

  assert.deepEqual(
    (await dbQuery<{ name: string }>(e.box.dbPath, 'SELECT name FROM call_flow ORDER BY id')).map(
      (r) => r.name,
    ),
    ['v18', 'v19'],
  );
  const ledger = await dbQuery<{ version: string }>(
    e.box.dbPath,
    'SELECT version FROM boxkeeper_sql_ledger ORDER BY version',
  );
  assert.deepEqual(
    ledger.map((r) => r.version),
    ['V1.8', 'V1.9'],
  );

  await d.waitUntil(async () => (await appVersion(e)) === 'V1.9', 20_000, 'the V1.9 app to run');
  const ops = e.sim.records.taskOps;
  const pause = ops.find((o) => o.op === 'pause');
  const resume = ops.find((o) => o.op === 'resume');
  assert.ok(pause !== undefined && resume !== undefined, JSON.stringify(ops));
  assert.deepEqual(
    [...resume.taskNos].sort(),
    [...pause.taskNos].sort(),
    'exactly the paused tasks resumed',
  );
  assert.ok(resume.at > pause.at);
  // Heartbeats went on during the install.
  const during = e.sim.records.heartbeats.filter((h) => h.at > pause.at && h.at < resume.at);
  assert.ok(during.length >= 1, `heartbeats during the install: ${during.length}`);

  const list = await e.cli(['snapshot', 'list', '--json']);
  if (list.code !== 0) assert.fail(`snapshot list: ${list.stderr}${list.stdout}`);
  const versions = (JSON.parse(list.stdout) as Array<{ version: string; subject: string }>).map(
    (v) => v.version,
  );
  assert.ok(
    versions.some((v) => v.startsWith('pre-V1.9')),
    versions.join(', '),
  );
  assert.ok(versions.includes('V1.9'), versions.join(', '));
  assert.deepEqual(await tempFiles(e.box.root), []);

  const status = await e.cli(['status', '--json']);
  const parsed = JSON.parse(status.stdout) as { update: UpdateStatus };
  assert.equal(parsed.update.phase, 'READY');
});

test('an SQL failure in the second version rolls the box back byte for byte and resumes the tasks', async (t) => {
  const e = await setupE2E({
    extraSettings: UPDATE_SETTINGS,
    sim: {
      scenario: {
        upgradeMark: 2,
        versions: [
          { versionNum: 'V1.7' },
          await v18(),
          await v19('INSERT INTO no_such_table VALUES (1);'),
        ],
      },
    },
  });
  t.after(() => e.close());
  const before = await boxState(e);
  const d = e.startDaemon();
  const failed = await untilUpdate(
    d,
    e,
    (u) => u.lastResult?.startsWith('install failed') === true && u.state === 'awaitingInstall',
    'the failed install to be rolled back',
    60_000,
  );
  assert.match(failed.lastError ?? '', /no_such_table/);
  assert.deepEqual(
    failed.versions.map((v) => v.status),
    ['REVERTED', 'REVERTED'],
  );
  await d.waitUntil(
    async () => (await appVersion(e)) === 'V1.7',
    20_000,
    'the V1.7 app to run again',
  );
  const after = await boxState(e);
  assert.deepEqual(after, before, 'jar, yml, configuration.ini, settings.ini and the DB as before');
  const ops = e.sim.records.taskOps;
  const pause = ops.find((o) => o.op === 'pause');
  const resume = ops.find((o) => o.op === 'resume');
  assert.ok(pause !== undefined && resume !== undefined, JSON.stringify(ops));
  assert.deepEqual([...resume.taskNos].sort(), [...pause.taskNos].sort());
  assert.deepEqual(await tempFiles(e.box.root), []);
});

test('an optional update waits for "boxkeeper install"; active calls defer it', async (t) => {
  const e = await setupE2E({
    extraSettings: UPDATE_SETTINGS,
    sim: { scenario: { upgradeMark: 1, versions: [{ versionNum: 'V1.7' }, await v18()] } },
  });
  t.after(() => e.close());
  const d = e.startDaemon();
  await untilUpdate(
    d,
    e,
    (u) => u.state === 'awaitingInstall',
    'the optional update to be downloaded',
    30_000,
  );
  // Later checks keep running while it waits (no dead end).
  const checks = e.sim.records.checks.length;
  await d.waitUntil(() => e.sim.records.checks.length > checks, 10_000, 'another version check');
  assert.equal(
    e.sim.records.taskOps.length,
    0,
    `nothing paused: ${JSON.stringify(e.sim.records.taskOps)}\n${d.tail(40)}`,
  );
  assert.equal(await appVersion(e), 'V1.7');

  await e.box.setFsBehaviour({ activeCalls: 2 });
  const r = await e.cli(['install', '--no-wait']);
  assert.equal(r.code, 0, r.stderr);
  const deferred = await untilUpdate(
    d,
    e,
    (u) => /active call/.test(u.lastError ?? ''),
    'the install to be deferred',
    20_000,
  );
  assert.match(
    deferred.state,
    /^installing\.(deferring|waitingForCalls|admitting|listingTasks|pausingTasks|checkingCalls)$/,
  );
  assert.equal(await appVersion(e), 'V1.7', 'services untouched while calls are active');
  await e.box.setFsBehaviour({ activeCalls: 0 });
  await untilUpdate(
    d,
    e,
    (u) => u.lastResult === 'installed V1.8',
    'the deferred install to go through',
    60_000,
  );
  await d.waitUntil(async () => (await appVersion(e)) === 'V1.8', 20_000, 'the V1.8 app to run');
});

test('services not ready within the health timeout: the update is rolled back', async (t) => {
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
  const jarBefore = await readFile(e.box.jarPath);
  const d = e.startDaemon();
  const u = await untilUpdate(
    d,
    e,
    (s) => s.lastResult?.startsWith('install failed') === true,
    'the health gate to roll the update back',
    60_000,
  );
  assert.match(u.lastError ?? '', /health gate/);
  assert.deepEqual(await readFile(e.box.jarPath), jarBefore);
  await d.waitUntil(
    async () => (await appVersion(e)) === 'V1.7',
    20_000,
    'the V1.7 app to run again',
  );
});

test('a configuration-only version updates configuration.ini, the gateways and application.yml', async (t) => {
  const e = await setupE2E({
    extraSettings: UPDATE_SETTINGS,
    sim: {
      scenario: {
        upgradeMark: 2,
        versions: [
          { versionNum: 'V1.7' },
          {
            versionNum: 'V1.7.1',
            configOnly: true,
            argumentConfigMap: {
              callboxPassword: 'new-secret',
              citynum: '0755',
              hostAdr: 'https://icb.example:8443',
            },
          },
        ],
      },
    },
  });
  t.after(() => e.close());
  const jarBefore = await readFile(e.box.jarPath);
  const d = e.startDaemon();
  await untilUpdate(
    d,
    e,
    (u) => u.lastResult === 'installed V1.7.1',
    'the configuration-only version to be installed',
    40_000,
  );
  const config = await readFile(e.box.configIniPath, 'utf8');
  assert.match(config, /^version = V1\.7\.1$/m);
  assert.match(config, /^callboxPassword = new-secret$/m);
  assert.match(config, /^num = 0755$/m);
  const gateway = await readFile(
    join(e.box.fsDir, 'conf', 'sip_profiles', 'external', 'callbox.xml'),
    'utf8',
  );
  assert.match(gateway, /<param name="password" value="new-secret"\/>/);
  assert.match(gateway, /<param name="register" value="true"\/>/, 'other params kept');
  const yml = await readFile(e.box.appYmlPath, 'utf8');
  assert.match(yml, /^city-code: .*0755/m);
  assert.match(yml, /^url-port: .*https:\/\/icb\.example:8443/m);
  assert.match(yml, /^# icb-box application configuration/m, 'comments kept');
  assert.deepEqual(await readFile(e.box.jarPath), jarBefore, 'no file: the jar is untouched');
  await d.waitUntil(async () => (await appVersion(e)) === 'V1.7', 20_000, 'the app to run again');
});

test('"boxkeeper rollback" undoes the last update; "clear-cache" empties the patch cache', async (t) => {
  const e = await setupE2E({
    extraSettings: UPDATE_SETTINGS,
    sim: { scenario: { upgradeMark: 2, versions: [{ versionNum: 'V1.7' }, await v18()] } },
  });
  t.after(() => e.close());
  const before = await boxState(e);
  const d = e.startDaemon();
  await untilUpdate(d, e, (u) => u.lastResult === 'installed V1.8', 'V1.8 to be installed', 40_000);
  await d.waitUntil(async () => (await appVersion(e)) === 'V1.8', 20_000, 'the V1.8 app to run');
  // The restored app takes 2 s from its start to serve, as a real Spring boot does.
  await writeFile(join(e.box.boxRoot, 'standin-app.json'), JSON.stringify({ startDelayMs: 2000 }));
  const r = await e.cli(['rollback', '--timeout', '60']);
  assert.equal(r.code, 0, r.stderr + r.stdout);
  assert.match(r.stdout, /rolled back to V1\.7 \(snapshot pre-V1\.8\.\d+\)/);
  // The tasks were resumed once the restored V1.7 served, not while Java was still starting.
  const ops = e.sim.records.taskOps;
  const paused = ops.filter((o) => o.op === 'pause').at(-1);
  const resumed = ops.filter((o) => o.op === 'resume').at(-1);
  assert.ok(
    paused !== undefined && resumed !== undefined && resumed.at > paused.at,
    'paused, resumed',
  );
  const appLog = await readFile(join(e.box.boxRoot, 'standin-app.log'), 'utf8');
  const restart = appLog
    .split('\n')
    .filter((l) => / start pid=\d+ version=V1\.7\b/.test(l))
    .map((l) => Date.parse(l.split(' ')[0] ?? ''))
    .find((at) => at >= paused.at);
  assert.ok(restart !== undefined, `V1.7 started after the rollback began:\n${appLog}`);
  assert.ok(
    resumed.at >= restart + 2000,
    `tasks resumed at ${new Date(resumed.at).toISOString()}, before V1.7 served (started ${new Date(restart).toISOString()}, 2 s to serve)`,
  );
  await d.waitUntil(
    async () => (await appVersion(e)) === 'V1.7',
    20_000,
    'the V1.7 app to run again',
  );
  // The app's own DB writes during the update are gone too: the box is as it was.
  assert.deepEqual(await boxState(e), before);
  // The cloud still offers V1.8 as mandatory; the operator's rollback holds.
  const checks = e.sim.records.checks.length;
  await d.waitUntil(() => e.sim.records.checks.length > checks + 1, 15_000, 'two more checks');
  // The simulator records a check before the agent has its answer: the cycle is settled again
  // once it is back in awaitingInstall, and the app must still be V1.7 then.
  await untilUpdate(d, e, (u) => u.state === 'awaitingInstall', 'the held update to wait', 30_000);
  assert.equal(await appVersion(e), 'V1.7');
  const again = await e.cli(['rollback']);
  assert.equal(again.code, 9, 'nothing left to roll back');
  assert.match(again.stderr, /nothing to roll back/);

  const patchDir = join(e.box.boxRoot, 'patch');
  assert.ok((await readdir(patchDir)).includes('V1.8'));
  // Without a daemon the command runs in-process (the daemon would download V1.8 again at once).
  await d.stop();
  const c = await e.cli(['clear-cache']);
  assert.equal(c.code, 0, c.stderr);
  assert.deepEqual(
    (await readdir(patchDir)).filter((n) => !n.startsWith('patch.meta')),
    [],
  );
});

interface SelfUpdateBox {
  e: E2E;
  home: string;
  version: string;
  daemon: Daemon;
  /** The agent the updater started, once known (stopped at the end of the test). */
  track: (pid: number) => void;
}

/**
 * A box whose agent runs from its own install (a copy of this source tree), so it can be
 * swapped, and a cloud offering V1.8 with a new agent build (`edit` may break it). Packages
 * resolve from a node_modules beside the install (a real build ships its own).
 */
async function selfUpdateBox(
  t: { after: (fn: () => Promise<void>) => void },
  edit: (files: Record<string, Buffer>) => void = () => undefined,
  update: Record<string, string> = {},
  env: Record<string, string> = {},
): Promise<SelfUpdateBox> {
  // An agent build runs only from a signed patch (docs/security.md).
  const key = simKeyPair();
  const e = await setupE2E({
    extraSettings: {
      ...UPDATE_SETTINGS,
      update: { ...UPDATE_SETTINGS.update, ...update },
      security: { patch_keys: key.publicKey },
    },
  });
  const home = join(e.box.root, 'agent');
  await symlink(join(REPO, 'node_modules'), join(e.box.root, 'node_modules'), 'dir');
  const files: Record<string, Buffer> = {};
  for (const dir of ['adapters', 'cli', 'machines', 'services']) {
    await cp(join(REPO, dir), join(home, dir), { recursive: true });
    for (const f of await readdir(join(home, dir), { recursive: true, withFileTypes: true })) {
      if (!f.isFile()) continue;
      const abs = join(f.parentPath, f.name);
      files[`boxkeeper/${relative(home, abs).split(sep).join('/')}`] = await readFile(abs);
    }
  }
  const pkg = JSON.parse(await readFile(join(REPO, 'package.json'), 'utf8')) as { version: string };
  await writeFile(join(home, 'package.json'), JSON.stringify({ ...pkg, name: 'boxkeeper' }));
  files['boxkeeper/package.json'] = Buffer.from(
    JSON.stringify({ ...pkg, name: 'boxkeeper', version: `${pkg.version}-next` }),
  );
  edit(files);
  await e.sim.setScenario({
    upgradeMark: 2,
    versions: [
      { versionNum: 'V1.7' },
      {
        versionNum: 'V1.8',
        files: { 'icb-box.jar': await buildStandinJar({ version: 'V1.8' }), ...files },
        sign: { ...key, counter: 1 },
      },
    ],
  });
  const others = new Set<number>();
  t.after(async () => {
    for (const pid of others) if (alive(pid)) process.kill(pid, 'SIGTERM');
    await waitUntil(() => [...others].every((p) => !alive(p)), 15_000, 'agents to stop').catch(
      () => undefined,
    );
    await e.close();
  });
  const daemon = new Daemon(['run', '--settings', e.box.settingsPath], {
    main: join(home, 'cli', 'main.ts'),
    env,
  });
  e.daemons.push(daemon);
  return { e, home, version: pkg.version, daemon, track: (pid) => others.add(pid) };
}

async function handedOver(d: Daemon): Promise<void> {
  let timer: NodeJS.Timeout | undefined;
  const exited = await Promise.race([
    d.exited,
    new Promise<null>((r) => (timer = setTimeout(() => r(null), 60_000))),
  ]);
  clearTimeout(timer);
  assert.ok(exited !== null, `the old agent did not exit for the hand-over\n${d.tail(40)}`);
  assert.equal(exited.code, 0, d.tail(40));
}

test('self-update: the agent hands over to the new build, which comes up and finishes the update', async (t) => {
  const { e, home, version, daemon: d, track } = await selfUpdateBox(t);
  await handedOver(d);
  const status = await waitUntil(
    async () => {
      const s = await e.readStatus();
      if (s !== null && s.pid !== d.pid) track(s.pid);
      return s?.agentVersion === `${version}-next` && s.update?.lastResult === 'installed V1.8'
        ? s
        : undefined;
    },
    60_000,
    'the new agent to finish the update',
  );
  assert.ok(alive(status.pid));
  const installed = JSON.parse(await readFile(join(home, 'package.json'), 'utf8')) as {
    version: string;
  };
  assert.equal(installed.version, `${version}-next`);
  const previous = JSON.parse(await readFile(`${home}.previous/package.json`, 'utf8')) as {
    version: string;
  };
  assert.equal(previous.version, version, 'the previous install is kept');
  assert.equal(
    await readFile(join(e.agentData, 'self-update.json'), 'utf8').catch(() => null),
    null,
    'the self-update flag is cleared',
  );
  const meta = JSON.parse(await readFile(join(e.box.boxRoot, 'patch', 'patch.meta'), 'utf8')) as {
    snapshot: { value: unknown; context: { versions: unknown[] } };
  };
  assert.ok(
    ['idle', 'checking'].includes(String(meta.snapshot.value)),
    String(meta.snapshot.value),
  );
  assert.deepEqual(meta.snapshot.context.versions, [], 'no version (and no agent build) pending');
  await waitUntil(async () => (await appVersion(e)) === 'V1.8', 20_000, 'the V1.8 app to run');
  assert.deepEqual(
    e.sim.records.taskOps.map((o) => o.op),
    ['pause', 'resume'],
  );
});

test('self-update: a new build that does not come up is replaced by the old one and the update rolled back', async (t) => {
  const {
    e,
    home,
    version,
    daemon: d,
    track,
  } = await selfUpdateBox(
    t,
    (files) => {
      // Starts and answers --version, but its daemon dies at once.
      const key = 'boxkeeper/services/agent/agent.ts';
      files[key] = Buffer.from(
        String(files[key]).replace(
          'start(options: AgentStartOptions = {}): void {',
          "start(options: AgentStartOptions = {}): void {\n    throw new Error('broken build');",
        ),
      );
    },
    { max_failed_installs: '1' },
  );
  const jarBefore = await readFile(e.box.jarPath);
  await handedOver(d);
  const status = await waitUntil(
    async () => {
      const s = await e.readStatus();
      if (s !== null && s.pid !== d.pid) track(s.pid);
      return s?.agentVersion === version &&
        s.pid !== d.pid &&
        s.update?.lastResult?.startsWith('install failed') === true
        ? s
        : undefined;
    },
    90_000,
    'the old agent to be back and the update rolled back',
  );
  assert.match(status.update?.lastError ?? '', /self-update/);
  const installed = JSON.parse(await readFile(join(home, 'package.json'), 'utf8')) as {
    version: string;
  };
  assert.equal(installed.version, version, 'the old install is back');
  assert.deepEqual(await readFile(e.box.jarPath), jarBefore, 'the box is rolled back');
  await waitUntil(async () => (await appVersion(e)) === 'V1.7', 20_000, 'the V1.7 app to run');
  const ops = e.sim.records.taskOps.map((o) => o.op);
  assert.deepEqual(ops, ['pause', 'resume']);
});

/**
 * A `systemctl` standing in for systemd on this machine: records its calls; `restart` stops the
 * recorded main process (SIGTERM to it alone, KillMode=process) and starts `execstart` in a new
 * session with the unit's environment, as systemd does for the unit; `stop` signals the main
 * process only.
 */
async function systemdStandIn(dir: string, execStart: string): Promise<Record<string, string>> {
  const bin = join(dir, 'bin');
  await mkdir(bin, { recursive: true });
  await writeFile(join(dir, 'execstart'), execStart);
  const script = `#!/bin/sh
D="${dir}"
echo "$*" >> "$D/calls.log"
case "$1" in
  restart|stop)
    if [ -f "$D/main.pid" ]; then kill -TERM "$(cat "$D/main.pid")" 2>/dev/null; rm -f "$D/main.pid"; fi
    if [ "$1" = restart ]; then
      ( BOXKEEPER_SERVICE=systemd setsid sh -c 'echo $$ > "$0/main.pid"; exec $(cat "$0/execstart")' "$D" >> "$D/agent.log" 2>&1 < /dev/null & )
    fi ;;
esac
exit 0
`;
  await writeFile(join(bin, 'systemctl'), script);
  await chmod(join(bin, 'systemctl'), 0o755);
  return { PATH: `${bin}${delimiter}${process.env.PATH ?? ''}`, BOXKEEPER_SERVICE: 'systemd' };
}

test('self-update under systemd: the agent exits 10, the updater restarts the service on the new build', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'bk-systemd-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  const env = await systemdStandIn(dir, '');
  const { e, home, version, daemon: d, track } = await selfUpdateBox(t, undefined, {}, env);
  // The unit's ExecStart for the agent installed in <home>, as "service install" renders it.
  const execStart = `${process.execPath} --import ${TSX_LOADER} ${join(home, 'cli', 'main.ts')} run --settings ${e.box.settingsPath}`;
  await writeFile(join(dir, 'execstart'), execStart);

  let timer: NodeJS.Timeout | undefined;
  const exited = await Promise.race([
    d.exited,
    new Promise<null>((r) => (timer = setTimeout(() => r(null), 60_000))),
  ]);
  clearTimeout(timer);
  assert.ok(exited !== null, `the old agent did not exit for the hand-over\n${d.tail(40)}`);
  assert.equal(
    exited.code,
    10,
    `hand-over exit under systemd (RestartPreventExitStatus)\n${d.tail(40)}`,
  );

  const status = await waitUntil(
    async () => {
      const s = await e.readStatus();
      if (s !== null && s.pid !== d.pid) track(s.pid);
      return s?.agentVersion === `${version}-next` && s.update?.lastResult === 'installed V1.8'
        ? s
        : undefined;
    },
    90_000,
    'the agent the service manager restarted to finish the update',
    () => `systemctl calls: ${readFileSyncSafe(join(dir, 'calls.log'))}`,
  );
  const mainPid = Number(await readFile(join(dir, 'main.pid'), 'utf8'));
  assert.equal(status.pid, mainPid, 'the new agent is the one the service manager started');
  const calls = (await readFile(join(dir, 'calls.log'), 'utf8')).split('\n').filter(Boolean);
  assert.deepEqual(calls, ['reset-failed boxkeeper.service', 'restart boxkeeper.service']);
  const installed = JSON.parse(await readFile(join(home, 'package.json'), 'utf8')) as {
    version: string;
  };
  assert.equal(installed.version, `${version}-next`);
});

function readFileSyncSafe(path: string): string {
  try {
    return readFileSync(path, 'utf8');
  } catch {
    return '(none)';
  }
}

async function sqliteFile(path: string, sql: string): Promise<Buffer> {
  await new Promise<void>((resolve, reject) => {
    const d = new sqlite3.Database(path, (err) => {
      if (err !== null) return reject(err);
      d.exec(sql, (e) => d.close(() => (e === null ? resolve() : reject(e))));
    });
  });
  return readFile(path);
}

test("a patch in the deployed tool's layout installs unchanged: DB switch, partial settings.ini, start.exe, application.yml", async (t) => {
  const e = await setupE2E({ extraSettings: UPDATE_SETTINGS });
  t.after(() => e.close());
  const newDb = await sqliteFile(
    join(e.box.root, 'new.db'),
    'CREATE TABLE task (id INTEGER PRIMARY KEY, status INTEGER);' +
      'INSERT INTO task VALUES (201, 1), (202, 4);' +
      "CREATE TABLE release (name TEXT); INSERT INTO release VALUES ('V1.8');",
  );
  const yml = (await readFile(e.box.appYmlPath, 'utf8')) + 'feature-x: enabled\n';
  await e.sim.setScenario({
    upgradeMark: 2,
    versions: [
      { versionNum: 'V1.7' },
      {
        versionNum: 'V1.8',
        files: {
          'data/ztdb-version2': newDb,
          'data/001.sql':
            'BEGIN TRANSACTION;\r\nUPDATE task SET status = 4 WHERE id = 101;\r\nCOMMIT;\r\n',
          'settings.ini': '[general]\nlog_expiration = 15\n',
          'application.yml': yml,
          'start.exe': 'MZ new launcher',
        },
      },
    ],
  });
  const settingsBefore = await readFile(e.box.settingsPath, 'utf8');
  const oldDb = e.box.dbPath;
  const d = e.startDaemon();
  await untilUpdate(d, e, (u) => u.lastResult === 'installed V1.8', 'V1.8 to be installed', 40_000);
  // The script ran against the database configured before the switch.
  const [row] = await dbQuery<{ status: number }>(oldDb, 'SELECT status FROM task WHERE id = 101');
  assert.equal(row?.status, 4);
  const config = await readFile(e.box.configIniPath, 'utf8');
  assert.match(config, /^name = ztdb-version2$/m, 'configuration.ini names the new database');
  const newDbPath = join(e.box.boxRoot, 'data', 'ztdb-version2');
  assert.deepEqual(await dbQuery(newDbPath, 'SELECT name FROM release'), [{ name: 'V1.8' }]);
  const ymlAfter = await readFile(e.box.appYmlPath, 'utf8');
  assert.match(ymlAfter, /^feature-x: enabled$/m, "the patch's application.yml");
  assert.ok(ymlAfter.includes(`jdbc:sqlite:${newDbPath}`), 'the datasource follows the switch');
  const settingsAfter = await readFile(e.box.settingsPath, 'utf8');
  assert.match(settingsAfter, /^log_expiration\s*=\s*15\b/m);
  const untouched = (s: string) => s.split('\n').filter((l) => !l.startsWith('log_expiration'));
  assert.deepEqual(
    untouched(settingsAfter),
    untouched(settingsBefore),
    'comments and other keys kept',
  );
  assert.equal(
    await readFile(join(e.box.boxRoot, 'RemoteManagerDist', 'start.exe'), 'utf8'),
    'MZ new launcher',
  );
  // The app runs on the new database: its unfinished tasks are the new DB's.
  await d.waitUntil(
    async () => {
      const r = await fetch(`http://127.0.0.1:${e.box.appPort}/task/listUnFinishTaskNos`).catch(
        () => undefined,
      );
      const body = (await r?.json().catch(() => undefined)) as { content?: unknown } | undefined;
      return JSON.stringify(body?.content) === '[201]' ? true : undefined;
    },
    20_000,
    'the app to read the new database',
  );
});

test('a Python-era patch.meta is imported: its downloaded mandatory update is installed from the zip it left', async (t) => {
  const e = await setupE2E({
    extraSettings: UPDATE_SETTINGS,
    sim: { scenario: { upgradeMark: 2, versions: [{ versionNum: 'V1.7' }, await v18()] } },
  });
  t.after(() => e.close());
  const v = e.sim.versions().find((x) => x.versionNum === 'V1.8');
  assert.ok(v?.zip != null);
  const patchDir = join(e.box.boxRoot, 'patch');
  await mkdir(join(patchDir, 'V1.8'), { recursive: true });
  await writeFile(join(patchDir, 'V1.8', `${v.versionCode}.zip`), v.zip);
  await writeFile(
    join(patchDir, 'patch.meta'),
    JSON.stringify({
      state: 3,
      list: [
        {
          version_code: v.versionCode,
          version_num: 'V1.8',
          file_MD5: v.fileMd5,
          remark: 'new call flow',
          status: 2,
          argument_config_map: { citynum: '010' },
        },
      ],
      retries: 5,
      mark: 2,
      self_update_version: null,
    }),
  );
  const d = e.startDaemon();
  await untilUpdate(
    d,
    e,
    (u) => u.lastResult === 'installed V1.8',
    'the imported update to be installed',
    40_000,
  );
  assert.equal(e.sim.records.downloads.length, 0, 'the zip the Python tool left was used');
  assert.ok((await readdir(patchDir)).some((n) => n.startsWith('patch.meta.python-')));
  assert.match(await readFile(e.box.configIniPath, 'utf8'), /^num = 010$/m);
  await d.waitUntil(async () => (await appVersion(e)) === 'V1.8', 20_000, 'the V1.8 app to run');
});
