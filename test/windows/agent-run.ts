// The agent under Wine against a win32 fixture box and the cloud simulator (issue 8, "Windows
// proven in CI"): `boxkeeper heartbeat` reaches the simulator; `boxkeeper run` starts java.exe and
// FreeSwitchConsole.exe (the stand-in shim), Java with the environment DOS\start.bat prepares,
// sends heartbeats, and restarts Java after it is terminated; `boxkeeper check` goes to the
// daemon over its control channel and installs a mandatory V1.8 with a new icb-box.jar (the old
// Java holds the old jar open); after the agent itself is terminated the services keep running
// and the next agent adopts them; `boxkeeper service stop-agent` stops the agent gracefully
// (control channel) and Java and FreeSWITCH keep running. Run by test/windows/smoke.sh (Wine
// prefix and wineserver ready); the caller ends the Wine processes (wineserver -k).
// Usage: tsx test/windows/agent-run.ts <boxkeeper.exe> <node.exe> <work dir> <standin.exe> <node_sqlite3.node>
import { spawn } from 'node:child_process';
import { openSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import {
  buildStandinJar,
  createFixtureBox,
  STANDIN_ENV_VALUE,
  winePath,
} from '../../fixtures/box/generate.ts';
import { startCloudSimulator } from '../../fixtures/cloud-sim/server.ts';

const argv = process.argv.slice(2);
if (argv.length !== 5) {
  process.stderr.write(
    'usage: agent-run.ts <boxkeeper.exe> <node.exe> <work dir> <standin.exe> <node_sqlite3.node>\n',
  );
  process.exit(2);
}
const [bk, nodeExe, work, standinExe, sqlite3Addon] = argv as [
  string,
  string,
  string,
  string,
  string,
];
const t0 = Date.now();
const say = (msg: string) =>
  process.stderr.write(`agent-run: ${msg} (${((Date.now() - t0) / 1000).toFixed(1)} s)\n`);
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Runs a Windows program under Wine; output goes to a file (a Unix pipe kills node there). */
function wine(args: string[], out: string, detached = false): Promise<number | null> {
  const fd = openSync(out, 'w');
  const child = spawn('wine', args, {
    stdio: ['ignore', fd, fd],
    detached,
    env: { ...process.env, BOXKEEPER_STANDIN_NODE: winePath(nodeExe) },
  });
  if (detached) {
    child.unref();
    return Promise.resolve(null);
  }
  return new Promise((resolve, reject) => {
    child.once('error', reject);
    child.once('exit', (code) => resolve(code));
  });
}

interface Status {
  running: boolean;
  pid: number | null;
  status: {
    services: Partial<Record<'java' | 'freeswitch', { status: string; pid: number | null }>>;
    heartbeat: { sent: number; failed: number };
    update?: { state: string; lastResult: string | null; lastError: string | null } | null;
  } | null;
}

interface StandinInfo {
  version: string;
  pid: number;
  env: { ICB_BOX_ENV: string | null; JAVA_OPTS: string | null };
}

const sim = await startCloudSimulator();
const box = await createFixtureBox({
  root: join(work, 'run-box'),
  hostAddr: sim.url,
  platform: 'win32',
  standinExe,
  sqlite3Addon,
  boxPath: winePath,
  heartbeatSec: 2,
  // Updates on, checked only when asked (`boxkeeper check`); Wine is slow to start a process.
  extraSettings: {
    update: {
      enabled: 'on',
      check_jitter: '0',
      health_timeout: '120',
      health_settle: '1',
      calls_retry: '1',
      retry_delay: '0.5',
    },
  },
});
const settings = winePath(box.settingsPath);

/** What the running stand-in Java app reports (loopback is shared with Wine). */
async function appInfo(): Promise<StandinInfo | undefined> {
  try {
    const r = await fetch(`http://127.0.0.1:${box.appPort}/standin/info`, {
      signal: AbortSignal.timeout(5000),
    });
    return (await r.json()) as StandinInfo;
  } catch {
    return undefined;
  }
}

/** Runs a boxkeeper command to completion; its exit code and output. */
async function cli(args: string[], name: string): Promise<{ code: number | null; out: string }> {
  const file = join(work, `cli-${name}.out`);
  const code = await wine([bk, ...args, '--settings', settings], file);
  return { code, out: readFileSync(file, 'utf8') };
}

/** Whether a Windows pid is alive, asked from inside Wine. */
async function winAlive(pid: number): Promise<boolean> {
  const code = await wine(
    [
      nodeExe,
      '-e',
      `try { process.kill(${pid}, 0) } catch (e) { process.exit(e.code === 'EPERM' ? 0 : 3) }`,
    ],
    join(work, 'run-alive.log'),
  );
  return code === 0;
}

async function status(): Promise<Status | undefined> {
  const out = join(work, 'run-status.json');
  const code = await wine([bk, 'status', '--json', '--settings', settings], out);
  if (code !== 0) return undefined;
  try {
    return JSON.parse(readFileSync(out, 'utf8')) as Status;
  } catch {
    return undefined;
  }
}

async function until(what: string, ms: number, cond: (s: Status) => boolean): Promise<Status> {
  const deadline = Date.now() + ms;
  let last: Status | undefined;
  while (Date.now() < deadline) {
    last = await status();
    if (last !== undefined && cond(last)) {
      say(what);
      return last;
    }
    await sleep(1000);
  }
  throw new Error(
    `timed out after ${ms} ms waiting for: ${what}; last status ${JSON.stringify(last)}`,
  );
}

const running = (s: Status, name: 'java' | 'freeswitch') =>
  s.status?.services[name]?.status === 'running';

try {
  const hb = await cli(['heartbeat'], 'heartbeat');
  if (hb.code !== 0) throw new Error(`boxkeeper heartbeat exited ${hb.code}: ${hb.out}`);
  if (sim.records.heartbeats.length !== 1)
    throw new Error(
      `boxkeeper heartbeat: the simulator received ${sim.records.heartbeats.length} heartbeats, expected 1`,
    );
  say('boxkeeper heartbeat: one heartbeat reached the simulator, exit 0');

  await wine([bk, 'run', '--settings', settings], join(work, 'run-agent.log'), true);
  say('started boxkeeper run');
  const up = await until(
    'both services running and a heartbeat sent',
    180_000,
    (s) =>
      s.running &&
      running(s, 'java') &&
      running(s, 'freeswitch') &&
      (s.status?.heartbeat.sent ?? 0) > 0,
  );
  const javaPid = up.status?.services.java?.pid;
  if (typeof javaPid !== 'number') throw new Error(`no java pid in ${JSON.stringify(up)}`);
  const info = await appInfo();
  if (info?.env.ICB_BOX_ENV !== STANDIN_ENV_VALUE)
    throw new Error(
      `Java does not run with the environment DOS\\start.bat prepares: /standin/info ${JSON.stringify(info)}`,
    );
  say(`Java runs with ICB_BOX_ENV=${info.env.ICB_BOX_ENV} from DOS\\start.bat`);

  // Terminate java.exe (the shim): its node child goes with it (Job object), so the port is
  // free and the agent's restart can come up.
  const code = await wine(
    [nodeExe, '-e', `process.kill(${javaPid}, 'SIGKILL')`],
    join(work, 'run-kill.log'),
  );
  if (code !== 0) throw new Error(`terminating java.exe ${javaPid} failed: exit ${code}`);
  say(`terminated java.exe pid ${javaPid}`);
  await until('java restarted with a new pid', 120_000, (s) => {
    const j = s.status?.services.java;
    return j?.status === 'running' && j.pid !== javaPid;
  });
  await until(
    'both services running again',
    60_000,
    (s) => running(s, 'java') && running(s, 'freeswitch'),
  );

  // An update: the cloud offers a mandatory V1.8 with a new icb-box.jar; `boxkeeper check` asks
  // the daemon over its control channel and waits until the update has settled. Java must be
  // stopped (it holds the old jar open) before the jar is replaced.
  await sim.setScenario({
    upgradeMark: 2,
    versions: [
      { versionNum: 'V1.7' },
      { versionNum: 'V1.8', files: { 'icb-box.jar': await buildStandinJar({ version: 'V1.8' }) } },
    ],
  });
  const check = await cli(['check', '--timeout', '300'], 'check');
  if (!/sent to the running daemon \(pid \d+\) over its control channel/.test(check.out))
    throw new Error(`boxkeeper check did not go to the daemon (exit ${check.code}): ${check.out}`);
  if (check.code !== 0 || !/last result: installed V1\.8/.test(check.out))
    throw new Error(`boxkeeper check did not install V1.8 (exit ${check.code}): ${check.out}`);
  say('boxkeeper check went to the daemon (control channel) and installed V1.8');
  const updated = await until(
    'status shows installed V1.8 and both services running',
    60_000,
    (s) =>
      s.status?.update?.lastResult === 'installed V1.8' &&
      running(s, 'java') &&
      running(s, 'freeswitch'),
  );
  const v18 = await appInfo();
  if (v18?.version !== 'V1.8' || v18.env.ICB_BOX_ENV !== STANDIN_ENV_VALUE)
    throw new Error(`after the update /standin/info says ${JSON.stringify(v18)}`);
  say(`the Java app reports V1.8 (pid ${v18.pid}), started with the start.bat environment`);
  const before = updated;
  const pids = {
    java: before.status?.services.java?.pid,
    freeswitch: before.status?.services.freeswitch?.pid,
    agent: before.pid,
  };

  // The agent dies (TerminateProcess of node.exe); the services keep running, and the next
  // agent adopts them: found by image name in fastlist's table, not started twice.
  const killed = await wine(
    [nodeExe, '-e', `process.kill(${String(pids.agent)}, 'SIGKILL')`],
    join(work, 'run-kill-agent.log'),
  );
  if (killed !== 0)
    throw new Error(`terminating the agent ${String(pids.agent)} failed: exit ${killed}`);
  await until('the agent is gone', 60_000, (s) => !s.running);
  await wine([bk, 'run', '--settings', settings], join(work, 'run-agent-2.log'), true);
  say('started a second boxkeeper run');
  await until(
    `the second agent adopted java ${String(pids.java)} and freeswitch ${String(pids.freeswitch)}`,
    120_000,
    (s) =>
      s.running &&
      running(s, 'java') &&
      running(s, 'freeswitch') &&
      s.status?.services.java?.pid === pids.java &&
      s.status?.services.freeswitch?.pid === pids.freeswitch,
  );

  // A graceful stop: `service stop-agent` asks the agent over the control channel (POST /stop);
  // it exits, and Java and FreeSWITCH keep running (the same pids).
  const second = await until('the second agent runs', 30_000, (s) => s.running);
  const stop = await cli(['service', 'stop-agent'], 'stop-agent');
  if (stop.code !== 0 || !/stopped \(asked by control channel\)/.test(stop.out))
    throw new Error(`boxkeeper service stop-agent (exit ${stop.code}): ${stop.out}`);
  await until('the agent has stopped', 60_000, (s) => !s.running);
  if (second.pid !== null && (await winAlive(second.pid)))
    throw new Error(`the agent ${second.pid} still runs after stop-agent`);
  const after = await appInfo();
  if (after?.pid === undefined || after.version !== 'V1.8')
    throw new Error(`Java does not answer after the agent stopped: ${JSON.stringify(after)}`);
  for (const [name, pid] of Object.entries({ java: pids.java, freeswitch: pids.freeswitch }))
    if (typeof pid !== 'number' || !(await winAlive(pid)))
      throw new Error(
        `${name} (pid ${String(pid)}) did not survive the graceful stop of the agent`,
      );
  say(
    `service stop-agent: the agent stopped (control channel); java ${String(pids.java)} and freeswitch ${String(pids.freeswitch)} keep running`,
  );

  say(`ok: ${sim.records.heartbeats.length} heartbeats received by the simulator`);
} catch (err) {
  process.stderr.write(`agent-run: FAILED: ${(err as Error).message}\n`);
  process.stderr.write(`agent log: ${join(work, 'run-agent.log')}\n`);
  process.exitCode = 1;
} finally {
  await sim.close();
}
