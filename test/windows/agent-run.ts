// `boxkeeper run` under Wine against a win32 fixture box and the cloud simulator: the agent
// starts java.exe and FreeSwitchConsole.exe (the stand-in shim), sends heartbeats, restarts
// Java after it is terminated, and after the agent itself is terminated the services keep
// running and the next agent adopts them. Run by test/windows/smoke.sh (Wine prefix and wineserver ready);
// the caller ends the Wine processes (wineserver -k).
// Usage: tsx test/windows/agent-run.ts <boxkeeper.exe> <node.exe> <work dir> <standin.exe> <node_sqlite3.node>
import { spawn } from 'node:child_process';
import { openSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { createFixtureBox, winePath } from '../../fixtures/box/generate.ts';
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
  } | null;
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
});
const settings = winePath(box.settingsPath);

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
  const before = await until(
    'both services running again',
    60_000,
    (s) => running(s, 'java') && running(s, 'freeswitch'),
  );
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
  if (sim.records.heartbeats.length === 0) throw new Error('the simulator received no heartbeat');
  say(`ok: ${sim.records.heartbeats.length} heartbeats received by the simulator`);
} catch (err) {
  process.stderr.write(`agent-run: FAILED: ${(err as Error).message}\n`);
  process.stderr.write(`agent log: ${join(work, 'run-agent.log')}\n`);
  process.exitCode = 1;
} finally {
  await sim.close();
}
