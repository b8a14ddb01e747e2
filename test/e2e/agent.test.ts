// End-to-end tests of the daemon: the real `boxkeeper run` (current source) as a child process
// against the real cloud simulator and a fixture box whose Java and FreeSWITCH are stand-ins.
// Timers are short (0.5 s heartbeats, 0.2 s supervision) so each scenario takes seconds.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { access, mkdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { STANDIN_ENV_VALUE, type FixtureBox } from '../../fixtures/box/generate.ts';
import { TOKEN_PATH, type FaultSpec } from '../../fixtures/cloud-sim/server.ts';
import type { AgentStatus } from '../../services/agent/agent.ts';
import {
  alive,
  isError,
  itemsOf,
  setupE2E,
  sleep,
  type Daemon,
  type E2E,
  type LogLine,
  HEARTBEAT_KEYS,
  servicesRunning,
} from '../helpers/cli.ts';

const STRING_KEYS = [
  'version',
  'host_ip',
  'callbox_ip',
  'app_key',
  'access_id',
  'access_secret',
  'cpu',
  'media_storage',
];
const NUMBER_KEYS = ['Freeswitch', 'Reg_callbox', 'Reg_numconvert', 'Java', 'mem'];

type Items = Record<string, unknown>;
const allUp = (i: Items): boolean =>
  i.Java === 1 && i.Freeswitch === 1 && i.Reg_callbox === 1 && i.Reg_numconvert === 1;

/** The first heartbeat received after `since` (epoch ms) whose items satisfy `pred`. */
function heartbeatWhere(
  h: E2E,
  d: Daemon,
  pred: (i: Items) => boolean,
  what: string,
  since = 0,
  timeoutMs = 20_000,
): Promise<Items> {
  return d.waitUntil(
    () => {
      const hb = h.sim.records.heartbeats.find((r) => r.at >= since && pred(itemsOf(r.body)));
      return hb === undefined ? undefined : itemsOf(hb.body);
    },
    timeoutMs,
    what,
  );
}

/** How many times the stand-in FreeSWITCH console started. */
async function fsStarts(box: FixtureBox): Promise<number> {
  try {
    const text = await readFile(join(box.fsDir, 'log', 'standin-console.log'), 'utf8');
    return text.split('\n').filter((l) => / start pid=/.test(l)).length;
  } catch {
    return 0;
  }
}

function callboxRealm(configIni: string): string {
  const m = /^\s*callboxRealm\s*=\s*(.*?)\s*$/m.exec(configIni);
  assert.ok(m?.[1] !== undefined, 'configuration.ini has [FreeSWITCH] callboxRealm');
  return m[1];
}

const lineText = (l: LogLine): string => `${l.msg} ${typeof l.err === 'string' ? l.err : ''}`;

async function statusJson(h: E2E): Promise<{
  running: boolean;
  pid: number | null;
  status: AgentStatus | null;
}> {
  const r = await h.cli(['status', '--json']);
  assert.equal(r.code, 0, `status --json failed: ${r.stderr}`);
  return JSON.parse(r.stdout) as { running: boolean; pid: number | null; status: AgentStatus };
}

// ---- 1. heartbeats --------------------------------------------------------------------------

describe('a daemon against the simulator', () => {
  // One daemon for these tests, in order: the NOREG test changes the box. Supervision polls
  // the process table every 1 s rather than 0.2 s so it does not compete with the beats timed.
  const code = randomBytes(16).toString('hex');
  let h: E2E;
  let d: Daemon;
  before(async () => {
    h = await setupE2E({
      box: { code, heartbeatSec: 1 },
      extraSettings: { supervise: { interval: '1' } },
    });
    d = h.startDaemon();
  });
  after(() => h.close());

  test('heartbeats: a signed token request first, then the 13 items at the configured interval', async () => {
    const { sim, box } = h;
    const realm = callboxRealm(await readFile(box.configIniPath, 'utf8'));

    const upItems = await heartbeatWhere(
      h,
      d,
      allUp,
      'a heartbeat with Java, FreeSWITCH and both gateways up',
    );
    await d.waitUntil(() => sim.records.heartbeats.length >= 8, 30_000, '8 heartbeats');

    // The first cloud request is a token request that passed the simulator's signature check.
    const first = sim.records.requests[0];
    assert.equal(first?.path, TOKEN_PATH, 'the first cloud request asks for a token');
    const token = sim.records.tokens[0];
    assert.ok(token !== undefined);
    assert.equal(token.ok, true, `token request rejected: ${token.reason ?? ''}`);
    assert.equal(token.query.AccessKeyId, sim.options.accessKeyId);
    const beats = [...sim.records.heartbeats];
    const firstBeat = beats[0];
    assert.ok(firstBeat !== undefined);
    assert.ok(token.at <= firstBeat.at, 'the token came before the first heartbeat');

    // Interval 1 s, fixed rate from the first beat: never faster than the interval. Beat k is
    // due k intervals after the first, so beats 0 and 7 are at least 6 s apart by the agent's
    // own clock (the body's `time`; 1 s of slack for a late first beat). How much later than
    // due a beat goes out depends on the machine's load, so only the 30 s bound above limits it.
    const sent = beats.map((b) => b.body.time);
    assert.deepEqual(
      sent,
      [...sent].sort((a, b) => a - b),
      'heartbeats are sent in order',
    );
    const span = (sent[7] as number) - (sent[0] as number);
    assert.ok(span >= 6000, `8 heartbeats within ${span} ms: faster than one per second`);

    // Every heartbeat: exactly the 13 keys, in order, with the right types and envelope.
    for (const b of beats) {
      assert.deepEqual(
        b.body.items.map((i) => i.key),
        HEARTBEAT_KEYS,
      );
      const items = itemsOf(b.body);
      for (const k of STRING_KEYS) assert.equal(typeof items[k], 'string', `${k} is a string`);
      for (const k of NUMBER_KEYS) assert.equal(typeof items[k], 'number', `${k} is a number`);
      assert.equal(b.body.appkey, sim.options.appKey);
      assert.equal(b.body.versionCode, code, 'versionCode is configuration.ini [QTHZ] code');
      assert.ok(
        Math.abs(b.body.time - b.at) < 5000,
        `time ${b.body.time} is epoch ms near receipt ${b.at}`,
      );
    }

    // Values once the services are up.
    assert.equal(upItems.version, 'V1.7');
    assert.equal(upItems.callbox_ip, realm);
    assert.equal(upItems.app_key, sim.options.appKey);
    assert.equal(upItems.access_id, sim.options.accessKeyId);
    assert.equal(upItems.access_secret, '', 'the secret is not sent by default');
    assert.equal(upItems.Java, 1);
    assert.equal(upItems.Freeswitch, 1);
    assert.equal(upItems.Reg_callbox, 1);
    assert.equal(upItems.Reg_numconvert, 1);
    const cpu = upItems.cpu as string;
    assert.ok(cpu.trim() !== '' && Number.isFinite(Number(cpu)), `cpu "${cpu}" is a number`);
    const mem = upItems.mem as number;
    assert.ok(mem >= 0 && mem <= 100, `mem ${mem} is a percentage`);
    assert.match(upItems.media_storage as string, /^\d+\.\dG$/);
    assert.ok(
      (await box.fsCommands()).includes('sofia profile external register numconvert'),
      'the agent registered numconvert while callbox was REGED',
    );
    assert.ok(d.running);
  });

  // ---- 2. gateway registration (same daemon) ----

  test('callbox NOREG: the agent unregisters numconvert and heartbeats show Reg_callbox 2', async () => {
    const { box } = h;
    await heartbeatWhere(h, d, allUp, 'all services and gateways up');
    const commandsBefore = (await box.fsCommands()).length;

    const changedAt = Date.now();
    await box.setFsBehaviour({ callbox: 'NOREG' });
    const items = await heartbeatWhere(
      h,
      d,
      (i) => i.Reg_callbox === 2 && i.Reg_numconvert === 2,
      'a heartbeat with callbox and numconvert NOREG',
      changedAt,
    );
    assert.equal(items.Freeswitch, 1);
    assert.equal(items.Java, 1);
    const later = (await box.fsCommands()).slice(commandsBefore);
    assert.ok(
      later.includes('sofia profile external unregister numconvert'),
      `numconvert unregistered; commands since: ${later.join(' | ')}`,
    );
    assert.ok(
      !later.includes('sofia profile external register numconvert'),
      'numconvert not re-registered while callbox is NOREG',
    );
    await d.waitForLine(
      (l) => l.msg === 'unregistering numconvert',
      2000,
      'the unregister log line',
    );
  });

  test('Java runs with the environment the box preparation script (DOS/start.sh) sets', async () => {
    await servicesRunning(h, d);
    const info = await d.waitUntil(
      async () => {
        const r = await fetch(`http://127.0.0.1:${h.box.appPort}/standin/info`);
        return r.ok ? ((await r.json()) as { env: Record<string, string | null> }) : undefined;
      },
      20_000,
      'the stand-in Java app to answer /standin/info',
    );
    assert.equal(info.env.ICB_BOX_ENV, STANDIN_ENV_VALUE);
    assert.equal(info.env.JAVA_OPTS, '-Xms256m -Xmx512m');
  });
});

describe('heartbeats with send_access_secret = on', () => {
  let h: E2E;
  let d: Daemon;
  let items: Items;
  before(async () => {
    h = await setupE2E({ extraSettings: { general: { send_access_secret: 'on' } } });
    d = h.startDaemon();
    items = await heartbeatWhere(h, d, () => true, 'a heartbeat');
    // Let status.json catch up with at least one outcome.
    await d.waitUntil(
      async () => ((await h.readStatus())?.heartbeat.sent ?? 0) > 0,
      10_000,
      'a heartbeat counted in status.json',
    );
  });
  after(() => h.close());

  test('the access secret is sent', () => {
    assert.equal(items.access_secret, h.sim.options.accessKeySecret);
  });

  test('the secret is not in the daemon log', () => {
    assert.ok(!d.stdout.includes(h.sim.options.accessKeySecret), 'secret found in the log');
  });

  test('the secret is not written to status.json (nor printed by status --json)', async () => {
    const text = await readFile(h.statusFile, 'utf8');
    assert.ok(!text.includes(h.sim.options.accessKeySecret), 'status.json holds the access secret');
    const r = await h.cli(['status', '--json']);
    assert.ok(!r.stdout.includes(h.sim.options.accessKeySecret), 'status --json prints the secret');
  });
});

// ---- 3. restarts ----------------------------------------------------------------------------

test('a killed Java or FreeSWITCH console is restarted within the backoff', async (t) => {
  const h = await setupE2E();
  t.after(() => h.close());
  const { box } = h;
  const d = h.startDaemon();
  const s0 = await servicesRunning(h, d);
  const javaPid = s0.services.java?.pid ?? null;
  const fsPid = s0.services.freeswitch?.pid ?? null;
  assert.ok(javaPid !== null && fsPid !== null);
  const procs = await box.standinProcesses();
  assert.ok(
    procs.some((p) => p.pid === javaPid && p.cmd.startsWith(box.javaExe)),
    `java pid ${javaPid} is the stand-in Java: ${JSON.stringify(procs)}`,
  );
  assert.ok(
    procs.some((p) => p.pid === fsPid && p.cmd.startsWith(box.fsConsoleExe)),
    `freeswitch pid ${fsPid} is the stand-in console`,
  );

  // Java
  const appStarts0 = await box.appStarts();
  process.kill(javaPid, 'SIGKILL');
  const s1 = await d.waitUntil(
    async () => {
      const j = (await h.readStatus())?.services.java;
      return j?.status === 'running' && j.pid !== null && j.pid !== javaPid ? j : undefined;
    },
    15_000,
    'java running again with a new pid',
  );
  assert.equal(await box.appStarts(), appStarts0 + 1, 'started exactly once more');
  const viaCli = await statusJson(h);
  assert.equal(viaCli.running, true);
  assert.equal(viaCli.status?.services.java?.status, 'running');
  assert.equal(viaCli.status.services.java.pid, s1.pid);
  assert.notEqual(viaCli.status.services.java.pid, javaPid);
  assert.ok(alive(s1.pid as number));

  // FreeSWITCH
  const fsStarts0 = await fsStarts(box);
  const fsKilledAt = Date.now();
  process.kill(fsPid, 'SIGKILL');
  const f1 = await d.waitUntil(
    async () => {
      const f = (await h.readStatus())?.services.freeswitch;
      return f?.status === 'running' && f.pid !== null && f.pid !== fsPid ? f : undefined;
    },
    15_000,
    'freeswitch running again with a new pid',
  );
  assert.equal(await fsStarts(box), fsStarts0 + 1, 'console started exactly once more');
  const viaCli2 = await statusJson(h);
  assert.equal(viaCli2.status?.services.freeswitch?.status, 'running');
  assert.equal(viaCli2.status.services.freeswitch.pid, f1.pid);
  // The new console's numconvert starts unregistered; the agent registers it again.
  await heartbeatWhere(h, d, allUp, 'all up again after the FreeSWITCH restart', fsKilledAt);
  assert.equal(await box.appStarts(), appStarts0 + 1, 'Java untouched by the FreeSWITCH restart');
  assert.ok(d.running);
});

// ---- 4. crash loop --------------------------------------------------------------------------

test('a crash-looping Java is started crash_loop_starts times, then reported and left alone', async (t) => {
  const h = await setupE2E();
  t.after(() => h.close());
  const { box, sim } = h;
  await box.setAppBehaviour({ exitAfterMs: 300 });
  const d = h.startDaemon();

  await d.waitUntil(
    async () => (await h.readStatus())?.services.java?.status === 'crash-loop',
    25_000,
    'java crash-loop in status.json',
  );
  assert.equal(await box.appStarts(), 3, 'started exactly crash_loop_starts (3) times');
  const line = await d.waitForLine(
    (l) => isError(l) && /crash loop/i.test(l.msg) && l.service === 'java',
    2000,
    'an error line about the crash loop',
  );
  assert.ok(line.line.level >= 50);

  const viaCli = await statusJson(h);
  assert.equal(viaCli.running, true);
  const java = viaCli.status?.services.java;
  assert.equal(java?.status, 'crash-loop');
  assert.equal(typeof java.lastError, 'string');
  assert.notEqual(java.lastError, '');

  // Not restarted any more, while heartbeats go on reporting Java down.
  const since = Date.now();
  while (Date.now() - since < 2000) {
    assert.equal(await box.appStarts(), 3, 'no further start');
    await sleep(200);
  }
  const later = await d.waitUntil(
    () => {
      const beats = sim.records.heartbeats.filter((b) => b.at >= since);
      return beats.length >= 2 ? beats.map((b) => itemsOf(b.body)) : undefined;
    },
    5000,
    'heartbeats to go on during the crash loop',
  );
  for (const i of later) {
    assert.equal(i.Java, 0);
    assert.equal(i.Freeswitch, 1);
  }
  assert.equal((await h.readStatus())?.services.java?.status, 'crash-loop');
  assert.ok(d.running);
});

// ---- 5. bad cloud answers -------------------------------------------------------------------

test('bad heartbeat answers are logged as errors and the daemon keeps beating', async (t) => {
  const h = await setupE2E();
  t.after(() => h.close());
  const { sim } = h;
  const d = h.startDaemon();
  await d.waitForLine((l) => l.msg === 'heartbeat sent', 15_000, 'a first heartbeat');

  const cases: Array<{ fault: FaultSpec; failure: RegExp }> = [
    { fault: { kind: 'non-json', times: 1 }, failure: /not-json|JSON/ },
    {
      fault: { kind: 'business-error', msg: 'injected business error', times: 1 },
      failure: /business.*injected business error/,
    },
    { fault: { kind: 'status', status: 500, times: 1 }, failure: /HTTP 500/ },
    { fault: { kind: 'missing-field', times: 1 }, failure: /invalid-response|code/ },
    { fault: { kind: 'delay', ms: 3000, times: 1 }, failure: /timeout|timed out/i },
  ];
  for (const { fault, failure } of cases) {
    const from = d.lines.length;
    const beatsBefore = sim.records.heartbeats.length;
    sim.inject('heartBeat', fault);
    const err = await d.waitForLine(
      (l) => isError(l) && lineText(l).includes('heartBeat'),
      10_000,
      `an error line for fault ${fault.kind}`,
      from,
    );
    assert.match(lineText(err.line), failure, `fault ${fault.kind}: ${JSON.stringify(err.line)}`);
    await d.waitForLine(
      (l) => l.msg === 'heartbeat sent',
      10_000,
      `a successful heartbeat after fault ${fault.kind}`,
      err.index + 1,
    );
    assert.ok(sim.records.heartbeats.length > beatsBefore);
    assert.ok(d.running, `still running after fault ${fault.kind}`);
  }
  const status = await h.readStatus();
  assert.ok((status?.heartbeat.failed ?? 0) >= cases.length, 'failures counted in status.json');
});

test('a token endpoint answering 500 at startup does not stop the daemon', async (t) => {
  const h = await setupE2E();
  t.after(() => h.close());
  const { sim } = h;
  sim.inject('token', { kind: 'status', status: 500, times: 2 });
  const d = h.startDaemon();
  const err = await d.waitForLine(
    (l) => isError(l) && lineText(l).includes('getUserToken'),
    15_000,
    'an error line naming getUserToken',
  );
  assert.match(lineText(err.line), /HTTP 500|http/);
  await d.waitUntil(() => sim.records.heartbeats.length > 0, 10_000, 'a heartbeat');
  assert.deepEqual(
    sim.records.tokens.slice(0, 3).map((tk) => tk.ok),
    [false, false, true],
    'two failed token requests, then a good one',
  );
  assert.ok(d.running);
});

// ---- 6. one daemon per box ------------------------------------------------------------------

test('one daemon per box: a second run exits 3; a stopped agent leaves the services running', async (t) => {
  const h = await setupE2E();
  t.after(() => h.close());
  const { box, sim } = h;
  const a = h.startDaemon();
  const s0 = await servicesRunning(h, a);
  const javaPid = s0.services.java?.pid as number;
  const fsPid = s0.services.freeswitch?.pid as number;

  const second = await h.cli(['run'], { timeoutMs: 20_000 });
  assert.equal(second.code, 3, `second run: ${second.stderr}`);
  assert.ok(second.stderr.includes(h.lockFile), `names the lock: ${second.stderr}`);
  assert.ok(second.stderr.includes(`pid ${a.pid}`), `names the holder's pid: ${second.stderr}`);
  assert.ok(a.running, 'the first daemon is unaffected');

  const exit = await a.stop();
  assert.equal(exit.signal, null, 'exited by itself, not killed');
  assert.equal(exit.code, 0);
  await assert.rejects(access(h.lockFile), 'the lock file is gone');
  assert.ok(
    a.lines.some((l) => l.msg.startsWith('stopping')),
    'logged that it is stopping',
  );
  assert.ok(alive(javaPid), 'Java still runs');
  assert.ok(alive(fsPid), 'FreeSWITCH still runs');
  const pids = (await box.standinProcesses()).map((p) => p.pid);
  assert.ok(pids.includes(javaPid) && pids.includes(fsPid));

  // A new daemon adopts the running services instead of starting new ones.
  const appStarts0 = await box.appStarts();
  const fsStarts0 = await fsStarts(box);
  const startedAt = Date.now();
  const b = h.startDaemon();
  const s1 = await servicesRunning(h, b);
  assert.equal(s1.services.java?.pid, javaPid, 'adopted the running Java');
  assert.equal(s1.services.freeswitch?.pid, fsPid, 'adopted the running FreeSWITCH');
  await heartbeatWhere(h, b, allUp, 'a heartbeat from the new daemon', startedAt);
  assert.equal(await box.appStarts(), appStarts0, 'Java was not started again');
  assert.equal(await fsStarts(box), fsStarts0, 'FreeSWITCH was not started again');
  const owner = JSON.parse(await readFile(h.lockFile, 'utf8')) as { pid: number };
  assert.equal(owner.pid, b.pid);
  assert.ok(sim.records.heartbeats.length > 0);
});

test('a stale lock (dead pid) is taken over', async (t) => {
  const h = await setupE2E();
  t.after(() => h.close());
  const deadPid = 999_999;
  assert.ok(!alive(deadPid));
  await mkdir(h.agentData, { recursive: true });
  await writeFile(
    h.lockFile,
    JSON.stringify({ pid: deadPid, startedAt: new Date().toISOString(), command: 'boxkeeper run' }),
  );
  const d = h.startDaemon();
  await d.waitUntil(() => h.sim.records.heartbeats.length > 0, 15_000, 'a heartbeat');
  const owner = JSON.parse(await readFile(h.lockFile, 'utf8')) as { pid: number };
  assert.equal(owner.pid, d.pid, 'the lock now names the new daemon');
  assert.ok(d.running);
});
