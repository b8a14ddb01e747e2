// End-to-end tests of the command line: the real CLI (current source) as a child process, with
// a fixture box and the cloud simulator. Checks help and usage errors, where settings.ini is
// found and how its problems are reported, and the token, heartbeat and status commands.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { createServer, type AddressInfo } from 'node:net';
import { mkdir, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { API_PREFIX } from '../../fixtures/cloud-sim/server.ts';
import type { AgentStatus } from '../../services/agent/agent.ts';
import { HEARTBEAT_KEYS, runCli, setupE2E, type CliResult, type E2E } from '../helpers/cli.ts';

const COMMANDS = ['run', 'status', 'heartbeat', 'token'];

const show = (r: CliResult): string =>
  `exit ${String(r.code)}${r.timedOut ? ' (timed out)' : ''}\n--- stdout ---\n${r.stdout}\n--- stderr ---\n${r.stderr}`;

interface StatusJson {
  running: boolean;
  pid: number | null;
  box: string;
  status: AgentStatus | null;
}

function parseStatus(r: CliResult): StatusJson {
  assert.equal(r.code, 0, show(r));
  return JSON.parse(r.stdout) as StatusJson;
}

/** The stderr line that reports a problem and contains every one of `parts`. */
function problemLine(stderr: string, ...parts: string[]): string {
  const line = stderr.split('\n').find((l) => parts.every((p) => l.includes(p)));
  assert.ok(line !== undefined, `no stderr line names ${parts.join(' + ')}:\n${stderr}`);
  return line;
}

// ---- 1. usage -------------------------------------------------------------------------------

describe('usage', () => {
  test('--help works for the top level and every command', async () => {
    const top = await Promise.all([runCli(['--help']), runCli(['help'])]);
    for (const r of top) {
      assert.equal(r.code, 0, show(r));
      assert.match(r.stdout, /--settings/);
      for (const c of COMMANDS) assert.match(r.stdout, new RegExp(`^\\s+${c}\\s`, 'm'));
    }
    const perCommand = await Promise.all(COMMANDS.map((c) => runCli([c, '--help'])));
    for (const [i, r] of perCommand.entries()) {
      const c = COMMANDS[i] as string;
      assert.equal(r.code, 0, `${c} --help: ${show(r)}`);
      assert.match(r.stdout, new RegExp(`^Usage: boxkeeper ${c}\\b`, 'm'));
      assert.match(r.stdout, /--settings/, `${c} --help mentions --settings`);
      assert.match(r.stdout, /--help/);
      assert.equal(r.stderr, '');
    }
    assert.match(perCommand[1]?.stdout ?? '', /--json/, 'status --help mentions --json');
  });

  test('an unknown command exits 2', async () => {
    const r = await runCli(['frobnicate']);
    assert.equal(r.code, 2, show(r));
    assert.match(r.stderr, /unknown command "frobnicate"/);
    const none = await runCli([]);
    assert.equal(none.code, 2, `no command at all: ${show(none)}`);
  });

  test('an unknown option exits 2 for every command', async () => {
    const results = await Promise.all(COMMANDS.map((c) => runCli([c, '--bogus'])));
    for (const [i, r] of results.entries()) {
      assert.equal(r.code, 2, `${COMMANDS[i] ?? ''} --bogus: ${show(r)}`);
      assert.match(
        r.stderr,
        new RegExp(`unknown option --bogus for "boxkeeper ${COMMANDS[i] ?? ''}"`),
      );
    }
    const missingValue = await runCli(['status', '--settings']);
    assert.equal(missingValue.code, 2, show(missingValue));
    assert.match(missingValue.stderr, /--settings/);
  });
});

// ---- 2. settings.ini ------------------------------------------------------------------------

describe('settings.ini', () => {
  let h: E2E;
  let original: string;
  before(async () => {
    h = await setupE2E();
    original = await readFile(h.box.settingsPath, 'utf8');
  });
  after(() => h.close());

  /** A copy of the box's settings.ini, edited, at `<root>/<name>`. */
  async function variant(name: string, edit: (text: string) => string): Promise<string> {
    const path = join(h.box.root, name);
    await mkdir(join(path, '..'), { recursive: true });
    await writeFile(path, edit(original));
    return path;
  }

  test('every problem is reported at once, each naming file, section and key', async () => {
    const file = await variant('broken/settings.ini', (text) => {
      const edited = text
        .replace(/^host_addr=.*\n/m, '')
        .replace(/^heartbeat=.*$/m, 'heartbeat=abc');
      assert.notEqual(edited, text);
      return `${edited}\n[timr]\nversionCheck=10\n`;
    });
    // Every command loads settings first; `run` must not start.
    const results = await Promise.all(
      ['status', 'heartbeat', 'token', 'run'].map((c) =>
        runCli([c, '--settings', file], { timeoutMs: 20_000 }),
      ),
    );
    for (const r of results) {
      assert.equal(r.code, 2, show(r));
      assert.match(r.stderr, /3 problems/);
      problemLine(r.stderr, file, '[general]', 'host_addr', 'missing');
      problemLine(r.stderr, file, '[timer]', 'heartbeat', '"abc"');
      problemLine(r.stderr, file, '[timr]', '[timer]');
    }
  });

  test('a misspelled section is reported with the keys it leaves missing', async () => {
    const file = await variant('typo/settings.ini', (text) => text.replace('[timer]', '[timr]'));
    const r = await runCli(['status', '--settings', file]);
    assert.equal(r.code, 2, show(r));
    problemLine(r.stderr, file, '[timr]', 'did you mean [timer]');
    problemLine(r.stderr, file, '[timer]', 'heartbeat', 'missing');
    problemLine(r.stderr, file, '[timer]', 'versionCheck', 'missing');
  });

  test('found by --settings, else $BOXKEEPER_SETTINGS, else ./settings/settings.ini', async () => {
    // Three valid settings files that name three different box roots.
    const rootOf = (name: string) => join(h.box.root, `${name}-box`);
    const withRoot = (name: string) => (text: string) =>
      text.replace(/^box_root=.*$/m, `box_root=${rootOf(name)}`);
    const fromEnv = await variant('env/settings.ini', withRoot('env'));
    const cwd = join(h.box.root, 'cwd');
    await variant('cwd/settings/settings.ini', withRoot('cwd'));

    const [flag, env, local, relativeFlag] = await Promise.all([
      runCli(['status', '--json', '--settings', h.box.settingsPath], {
        cwd,
        env: { BOXKEEPER_SETTINGS: fromEnv },
      }),
      runCli(['status', '--json'], { cwd, env: { BOXKEEPER_SETTINGS: fromEnv } }),
      runCli(['status', '--json'], { cwd }),
      runCli(['status', '--json', '--settings', 'env/settings.ini'], { cwd: h.box.root }),
    ]);
    assert.equal(parseStatus(flag).box, h.box.boxRoot, '--settings wins');
    assert.equal(parseStatus(env).box, rootOf('env'), 'then $BOXKEEPER_SETTINGS');
    assert.equal(parseStatus(local).box, rootOf('cwd'), 'then ./settings/settings.ini');
    assert.equal(parseStatus(relativeFlag).box, rootOf('env'), 'a relative --settings is from cwd');
  });

  test('a missing settings file exits 2 naming the path', async () => {
    const empty = join(h.box.root, 'empty');
    await mkdir(empty, { recursive: true });
    const byFlag = join(h.box.root, 'nowhere', 'settings.ini');
    const byEnv = join(h.box.root, 'elsewhere', 'settings.ini');
    const [flag, env, local] = await Promise.all([
      runCli(['status', '--settings', byFlag]),
      runCli(['heartbeat'], { env: { BOXKEEPER_SETTINGS: byEnv } }),
      runCli(['token'], { cwd: empty }),
    ]);
    for (const [r, path] of [
      [flag, byFlag],
      [env, byEnv],
      [local, join(empty, 'settings', 'settings.ini')],
    ] as const) {
      assert.equal(r.code, 2, show(r));
      problemLine(r.stderr, path, 'not found');
    }
  });
});

// ---- 3. token -------------------------------------------------------------------------------

test('token prints the expiry and never the token', async (t) => {
  const h = await setupE2E();
  t.after(() => h.close());
  const r = await h.cli(['token']);
  assert.equal(r.code, 0, show(r));
  assert.equal(h.sim.records.tokens.length, 1);
  const issued = h.sim.records.tokens[0];
  assert.ok(issued?.ok === true && issued.token !== undefined && issued.expireTime !== undefined);
  assert.ok(
    r.stdout.includes(new Date(issued.expireTime * 1000).toISOString()),
    `prints the expiry ${new Date(issued.expireTime * 1000).toISOString()}:\n${r.stdout}`,
  );
  assert.ok(!r.stdout.includes(issued.token), 'the token is not printed');
  assert.ok(!r.stderr.includes(issued.token), 'the token is not printed on stderr');
  for (const name of await readdir(h.logsDir).catch(() => [])) {
    const text = await readFile(join(h.logsDir, name), 'utf8');
    assert.ok(!text.includes(issued.token), `the token is not logged in ${name}`);
  }
});

test('token with the cloud down exits 4 naming getUserToken', async (t) => {
  const h = await setupE2E();
  t.after(() => h.close());
  // A cloud that drops every connection, on a port this test holds. Not the closed simulator:
  // under load another test's simulator can be given the freed port at once and answer.
  const dead = createServer((socket) => socket.destroy());
  await new Promise<void>((ok) => dead.listen(0, '127.0.0.1', ok));
  t.after(() => new Promise<void>((ok) => dead.close(() => ok())));
  const port = (dead.address() as AddressInfo).port;
  const settings = await readFile(h.box.settingsPath, 'utf8');
  await writeFile(
    h.box.settingsPath,
    settings.replace(/^host_addr\s*=\s*[^ ;\n]+/m, `host_addr=http://127.0.0.1:${port}`),
  );
  assert.match(await readFile(h.box.settingsPath, 'utf8'), new RegExp(`:${port}\\b`));
  const r = await h.cli(['token']);
  assert.equal(r.code, 4, show(r));
  assert.match(r.stderr, /getUserToken/);
});

// ---- 4. heartbeat ---------------------------------------------------------------------------

test('heartbeat sends exactly one heartbeat and prints the items', async (t) => {
  const h = await setupE2E();
  t.after(() => h.close());
  const r = await h.cli(['heartbeat']);
  assert.equal(r.code, 0, show(r));
  const { heartbeats, requests } = h.sim.records;
  assert.equal(heartbeats.length, 1);
  assert.equal(requests.filter((q) => q.path === `${API_PREFIX}/heartBeat`).length, 1);
  const body = heartbeats[0]?.body;
  assert.ok(body !== undefined);
  assert.deepEqual(
    body.items.map((i) => i.key),
    HEARTBEAT_KEYS,
  );
  assert.ok(r.stdout.includes(body.versionCode), 'prints the versionCode');
  for (const { key, value } of body.items) {
    const line = r.stdout.split('\n').find((l) => l.trim().split(/\s+/)[0] === key);
    assert.ok(line !== undefined, `prints ${key}:\n${r.stdout}`);
    assert.ok(line.includes(JSON.stringify(value)), `${key} printed as sent (${String(value)})`);
  }
  // No daemon, so nothing runs on this box.
  const items = Object.fromEntries(body.items.map((i) => [i.key, i.value]));
  assert.equal(items.Java, 0);
  assert.equal(items.Freeswitch, 0);
});

test('heartbeat exits 4 when the cloud answers a business error', async (t) => {
  const h = await setupE2E();
  t.after(() => h.close());
  h.sim.inject('heartBeat', { kind: 'business-error', msg: 'box unknown', times: 1 });
  const r = await h.cli(['heartbeat']);
  assert.equal(r.code, 4, show(r));
  assert.match(r.stderr, /heartBeat/);
  assert.match(r.stderr, /box unknown/);
  assert.equal(h.sim.records.heartbeats.length, 0);
});

// ---- 5. status ------------------------------------------------------------------------------

describe('status', () => {
  let h: E2E;
  before(async () => {
    h = await setupE2E();
  });
  after(() => h.close());

  test('without a daemon it says not running', async () => {
    const [text, json] = await Promise.all([h.cli(['status']), h.cli(['status', '--json'])]);
    assert.equal(text.code, 0, show(text));
    assert.match(text.stdout, /not running/);
    const s = parseStatus(json);
    assert.equal(s.running, false);
    assert.equal(s.pid, null);
    assert.equal(s.box, h.box.boxRoot);
  });

  test('a lock held by a dead pid or a non-boxkeeper process is not a running daemon', async (t) => {
    await mkdir(h.agentData, { recursive: true });
    const other = spawn('sleep', ['60'], { stdio: 'ignore' });
    t.after(() => other.kill('SIGKILL'));
    t.after(() => rm(h.lockFile, { force: true }));
    for (const pid of [999_999, other.pid as number]) {
      await writeFile(
        h.lockFile,
        JSON.stringify({ pid, startedAt: new Date().toISOString(), command: 'boxkeeper run' }),
      );
      const s = parseStatus(await h.cli(['status', '--json']));
      assert.equal(s.running, false, `lock held by pid ${pid}`);
    }
  });

  test('a lock held by an unrelated process whose command line happens to match is not a running daemon', async (t) => {
    await mkdir(h.agentData, { recursive: true });
    // Another program's CLI (a common layout), alive with the lock's pid after a pid reuse.
    const other = spawn(
      process.execPath,
      ['-e', 'setTimeout(() => {}, 60000)', join(h.box.root, 'other-tool', 'cli', 'main.js')],
      { stdio: 'ignore' },
    );
    t.after(() => other.kill('SIGKILL'));
    t.after(() => rm(h.lockFile, { force: true }));
    t.after(() => rm(h.lockFile, { force: true }));
    await writeFile(
      h.lockFile,
      JSON.stringify({
        pid: other.pid,
        startedAt: new Date(Date.now() - 3600_000).toISOString(),
        command: 'boxkeeper run',
      }),
    );
    const s = parseStatus(await h.cli(['status', '--json']));
    assert.equal(s.running, false, `lock held by pid ${String(other.pid)} (not a boxkeeper)`);
  });

  test('a stray positional argument is a usage error', async () => {
    const r = await h.cli(['status', 'json']);
    assert.equal(r.code, 2, show(r));
    assert.match(r.stderr, /json/);
  });

  test('--json while a daemon runs reports it running, with its pid and services', async () => {
    const d = h.startDaemon();
    await d.waitUntil(
      async () => {
        const s = await h.readStatus();
        return (
          s?.pid === d.pid &&
          s.services.java?.status === 'running' &&
          s.services.freeswitch?.status === 'running' &&
          s.heartbeat.sent > 0
        );
      },
      20_000,
      'the daemon running both services',
    );
    const [json, text] = await Promise.all([h.cli(['status', '--json']), h.cli(['status'])]);
    const s = parseStatus(json);
    assert.equal(s.running, true);
    assert.equal(s.pid, d.pid);
    assert.equal(s.status?.pid, d.pid);
    assert.equal(s.status.services.java?.status, 'running');
    assert.equal(typeof s.status.services.java.pid, 'number');
    assert.equal(s.status.services.freeswitch?.status, 'running');
    assert.equal(typeof s.status.services.freeswitch.pid, 'number');
    assert.ok(s.status.heartbeat.sent > 0);
    assert.equal(text.code, 0, show(text));
    assert.match(text.stdout, new RegExp(`running \\(pid ${d.pid}\\)`));
    assert.match(text.stdout, /^java\s+running/m);
    assert.match(text.stdout, /^freeswitch\s+running/m);

    const exit = await d.stop();
    assert.equal(exit.code, 0);
    const afterStop = parseStatus(await h.cli(['status', '--json']));
    assert.equal(afterStop.running, false);
    assert.equal(afterStop.pid, null);
  });
});

// ---- 6. configuration.ini -------------------------------------------------------------------

test('a configuration.ini without [appkey] key: heartbeat and token exit 2 naming it', async (t) => {
  const h = await setupE2E();
  t.after(() => h.close());
  const text = await readFile(h.box.configIniPath, 'utf8');
  const broken = text.replace(/^\[appkey\]\r?\nkey\s*=.*\r?\n/m, '[appkey]\n');
  assert.notEqual(broken, text);
  await writeFile(h.box.configIniPath, broken);
  const [hb, token] = await Promise.all([h.cli(['heartbeat']), h.cli(['token'])]);
  for (const r of [hb, token]) {
    assert.equal(r.code, 2, show(r));
    problemLine(r.stderr, h.box.configIniPath, '[appkey]', 'key');
  }
  assert.equal(h.sim.records.heartbeats.length, 0);
});

test('status previews a Python-era patch.meta (phase, pending versions) without importing it', async (t) => {
  const h = await setupE2E();
  t.after(() => h.close());
  const file = join(h.box.boxRoot, 'patch', 'patch.meta');
  await mkdir(join(h.box.boxRoot, 'patch'), { recursive: true });
  const text = JSON.stringify({
    state: 3,
    list: [
      {
        version_code: 'c18',
        version_num: 'V1.8',
        file_MD5: '0'.repeat(32),
        remark: 'new call flow',
        status: 2,
        argument_config_map: null,
      },
    ],
    retries: 5,
    mark: 2,
    self_update_version: null,
  });
  await writeFile(file, text);
  const r = await h.cli(['status']);
  assert.equal(r.code, 0, show(r));
  assert.match(
    r.stdout,
    /^update: +the Python tool's \(imported at the agent's next start\) \(phase 3 \w+\)$/m,
  );
  assert.match(r.stdout, /^ +V1\.8 +DOWNLOADED$/m);
  const json = await h.cli(['status', '--json']);
  const update = (
    JSON.parse(json.stdout) as {
      update: { phaseNumber: number; versions: Array<{ versionNum: string; status: string }> };
    }
  ).update;
  assert.equal(update.phaseNumber, 3);
  assert.deepEqual(
    update.versions.map((v) => [v.versionNum, v.status]),
    [['V1.8', 'DOWNLOADED']],
  );
  assert.equal(await readFile(file, 'utf8'), text, 'the file is left as it was');
});
