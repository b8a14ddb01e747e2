// The switch-over from the Python tool, played end to end with real processes on Linux: the
// Linux release package is turned into a switch-over patch (`boxkeeper patch pack
// --switch-over`), a fixture box is put in the state the Python tool leaves it in just before
// its self_updater runs (§3.8, §3.11, §7 of the reference), and the test then does exactly what
// self_updater does: copy patch/<V>/entrypoint.exe over RemoteManagerDist/entrypoint.exe,
// write patch.meta back with state 7, start the entrypoint with CWD = RemoteManagerDist.
// Run by `npm run test:package` (builds the package first if it is missing).
import assert from 'node:assert/strict';
import { execFile, spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import {
  copyFile,
  mkdtemp,
  readdir,
  readFile,
  realpath,
  rm,
  stat,
  writeFile,
} from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { promisify } from 'node:util';
import { extractZipSafely } from '../../adapters/zip.ts';
import { REPO, itemsOf, runCli, setupE2E, waitUntil, type E2E } from '../helpers/cli.ts';

const run = promisify(execFile);

const V = 'V2.0';
const CODE = 'a1b2c3d4e5f60718293a4b5c6d7e8f90';
/** The Python tool paused these before stopping the services (status 3 = paused in the fixture). */
const PAUSED = [101, 102, 103];

const UPDATE_SETTINGS = {
  timer: { versionCheck: '2' },
  update: {
    enabled: 'on',
    check_jitter: '0',
    health_timeout: '15',
    health_settle: '1',
    calls_retry: '1',
    retry_delay: '0.5',
  },
};

let scratch: string;
let patchZip: string;
let packMd5: string;

before(async () => {
  const { version } = JSON.parse(await readFile(join(REPO, 'package.json'), 'utf8')) as {
    version: string;
  };
  const archive = join(REPO, 'release', `boxkeeper-${version}-linux-x64.tar.gz`);
  if (!existsSync(archive))
    await run('npm', ['run', 'package', '--', '--target', 'linux-x64'], {
      cwd: REPO,
      maxBuffer: 16 << 20,
    });
  scratch = await mkdtemp(join(tmpdir(), 'bk-sw-'));
  patchZip = join(scratch, 'switch-over.zip');
  const r = await runCli(
    [
      'patch',
      'pack',
      '--switch-over',
      '--package',
      archive,
      '--version-num',
      V,
      '--version-code',
      CODE,
      '--out',
      patchZip,
    ],
    { timeoutMs: 120_000 },
  );
  assert.equal(r.code, 0, `${r.stdout}\n${r.stderr}`);
  const m = /fileMd5\s+([0-9a-f]{32})/.exec(r.stdout);
  assert.ok(m !== null, r.stdout);
  packMd5 = m[1] as string;
});
after(() => rm(scratch, { recursive: true, force: true }));

/** patch.meta as the Python tool writes it (json.dumps defaults). */
function pythonMeta(state: number, md5: string): string {
  return `{"state": ${state}, "list": [{"version_code": "${CODE}", "version_num": "${V}", "file_MD5": "${md5}", "remark": "switch to boxkeeper", "status": 3, "argument_config_map": {}}], "retries": 5, "mark": 2, "self_update_version": "${V}"}`;
}

/** Runs the entrypoint the way self_updater starts it: detached, CWD = the manager dir. */
function startEntrypoint(
  managerDir: string,
): Promise<{ code: number | null; stdout: string; stderr: string }> {
  // Linux only: Python's zipfile drops the executable bit, so the script is run through sh.
  const child = spawn('/bin/sh', [join(managerDir, 'entrypoint.exe')], {
    cwd: managerDir,
    detached: true,
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { PATH: process.env.PATH ?? '/usr/bin:/bin', HOME: process.env.HOME ?? '/' },
  });
  let stdout = '';
  let stderr = '';
  child.stdout.setEncoding('utf8').on('data', (d: string) => (stdout += d));
  child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
  const timer = setTimeout(() => child.kill('SIGKILL'), 180_000);
  return new Promise((ok) =>
    child.once('close', (code) => {
      clearTimeout(timer);
      ok({ code, stdout, stderr });
    }),
  );
}

async function cmdline(pid: number): Promise<string> {
  return (await readFile(`/proc/${pid}/cmdline`, 'utf8')).split('\0').join(' ');
}

/** Agents (`… boxkeeper.mjs run …`) running from this box's install. */
async function agentsOf(home: string): Promise<number[]> {
  const pids: number[] = [];
  for (const name of await readdir('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    const cmd = await cmdline(Number(name)).catch(() => '');
    if (cmd.includes(join(home, 'lib', 'boxkeeper.mjs')) && / run /.test(`${cmd} `))
      pids.push(Number(name));
  }
  return pids;
}

async function logsTail(e: E2E): Promise<string> {
  const parts: string[] = [];
  for (const f of await readdir(e.logsDir).catch(() => [] as string[])) {
    const text = await readFile(join(e.logsDir, f), 'utf8').catch(() => '');
    parts.push(`--- ${f}\n${text.split('\n').slice(-25).join('\n')}`);
  }
  return parts.join('\n');
}

test('the Python updater starts the switch-over entrypoint: boxkeeper takes the box over and finishes the update', async (t) => {
  const zip = await readFile(patchZip);
  const e = await setupE2E({
    extraSettings: UPDATE_SETTINGS,
    box: {
      tasks: [...PAUSED.map((id) => ({ id, status: 3 })), { id: 104, status: 4 }],
    },
    sim: {
      scenario: {
        upgradeMark: 2,
        versions: [
          { versionNum: 'V1.7' },
          { versionNum: V, versionCode: CODE, remark: 'switch to boxkeeper', zip },
        ],
      },
    },
  });
  const agent: { pid?: number } = {};
  t.after(async () => {
    const agentPid = agent.pid;
    if (agentPid !== undefined) {
      try {
        process.kill(agentPid, 'SIGTERM');
      } catch {
        // gone
      }
      await waitUntil(() => !existsSync(`/proc/${agentPid}`), 15_000, 'the agent to stop').catch(
        () => process.kill(agentPid, 'SIGKILL'),
      );
    }
    await e.close();
  });
  const box = await realpath(e.box.boxRoot);
  const managerDir = join(box, 'RemoteManagerDist');
  const home = join(managerDir, 'boxkeeper');
  const sim = e.sim.versions().find((v) => v.versionNum === V);
  assert.equal(sim?.fileMd5, packMd5, 'the cloud announces the MD5 patch pack printed');

  // ---- the box as the Python tool leaves it when it launches self_updater.exe ----
  // Its own files in the manager dir.
  await writeFile(join(managerDir, 'entrypoint.exe'), 'MZ the Python tool (PyInstaller)');
  await writeFile(join(managerDir, 'self_updater.exe'), 'MZ self_updater (PyInstaller)');
  // The patch downloaded to patch/<V>/<code>.zip and extracted into patch/<V>/ (§3.5, §3.6).
  const patchDir = join(box, 'patch', V);
  await extractZipSafely(patchZip, patchDir, {
    maxEntries: 1000,
    maxTotalBytes: 4 * 1024 ** 3,
    maxRatio: 1000,
  });
  await writeFile(join(patchDir, `${CODE}.zip`), zip);
  // replace_one_version step 8: configuration.ini carries the new version and code.
  const ini = await readFile(e.box.configIniPath, 'utf8');
  await writeFile(
    e.box.configIniPath,
    ini.replace(/^version = .*$/m, `version = ${V}`).replace(/^code = .*$/m, `code = ${CODE}`),
  );
  // Files replaced, self-update pending; services stopped, tasks paused (the DB says so).
  await writeFile(join(box, 'patch', 'patch.meta'), pythonMeta(6, packMd5));
  const settingsBefore = await readFile(e.box.settingsPath);

  // ---- self_updater.exe, step by step (§7) ----
  // 3–4: no entrypoint.exe process runs (the tool has exited); copy the new one in place.
  await copyFile(join(patchDir, 'entrypoint.exe'), join(managerDir, 'entrypoint.exe'));
  // 5: patch.meta written back, identical except state = 7.
  const meta = await readFile(join(box, 'patch', 'patch.meta'), 'utf8');
  await writeFile(join(box, 'patch', 'patch.meta'), meta.replace('"state": 6', '"state": 7'));
  // 6: start RemoteManagerDist\entrypoint.exe, detached, with the updater's CWD.
  const t0 = Date.now();
  const first = await startEntrypoint(managerDir);
  t.diagnostic(`switch-over took ${Date.now() - t0} ms`);
  assert.equal(first.code, 0, `${first.stdout}\n${first.stderr}\n${await logsTail(e)}`);
  assert.match(first.stdout, /runs \(pid \d+\) from .*RemoteManagerDist\/boxkeeper/);

  // boxkeeper runs from its install in the manager dir, on the unchanged settings.ini.
  const status = await e.readStatus();
  assert.ok(status !== null);
  agent.pid = status.pid;
  const cmd = await cmdline(status.pid);
  assert.ok(cmd.includes(join(home, 'runtime', 'node')), cmd);
  assert.ok(cmd.includes(join(home, 'lib', 'boxkeeper.mjs')), cmd);
  assert.ok(existsSync(join(home, 'MANIFEST.json')));
  assert.deepEqual(await readFile(e.box.settingsPath), settingsBefore, 'settings.ini unchanged');

  // The update is finished as SELF_UPDATE_COMPLETE: no backup, nothing re-applied, services
  // started, the tasks the Python tool paused resumed.
  const done = await waitUntil(
    async () => {
      const s = await e.readStatus();
      return s?.update?.lastResult === `installed ${V}` && s.update.state === 'idle'
        ? s
        : undefined;
    },
    60_000,
    `the update to be finished (installed ${V})`,
    () => JSON.stringify(e.sim.records.taskOps),
  ).catch(async (err: unknown) => {
    throw new Error(`${String(err)}\n${await logsTail(e)}`);
  });
  const u = done.update;
  assert.ok(u !== null);
  assert.equal(u.phase, 'READY');
  assert.equal(u.lastBackup, null, 'no backup of an already updated box');
  assert.equal(done.services.java?.status, 'running');
  assert.equal(done.services.freeswitch?.status, 'running');
  assert.equal(done.box.version, V);
  const resumed = e.sim.records.taskOps.filter((o) => o.op === 'resume').flatMap((o) => o.taskNos);
  assert.deepEqual([...new Set(resumed)].map(Number).sort(), PAUSED);
  assert.equal(e.sim.records.taskOps.filter((o) => o.op === 'pause').length, 0, 'nothing paused');
  assert.equal(e.sim.records.downloads.length, 0, 'nothing downloaded');
  assert.ok(
    (await readdir(join(box, 'patch'))).some((n) => n.startsWith('patch.meta.python-')),
    "the Python tool's patch.meta is kept aside",
  );
  const beats = e.sim.records.heartbeats.length;
  await waitUntil(() => e.sim.records.heartbeats.length >= beats + 2, 20_000, 'heartbeats');
  assert.equal(itemsOf(e.sim.records.heartbeats.at(-1)?.body ?? { items: [] }).version, V);
  const statusCli = await runCli(['status', '--settings', e.box.settingsPath]);
  assert.match(statusCli.stdout, new RegExp(`installed ${V.replace('.', '\\.')}`));

  // ---- the tool's autostart runs the entrypoint again at the next boot: nothing changes ----
  const manifestStat = await stat(join(home, 'MANIFEST.json'));
  const again = await startEntrypoint(managerDir);
  assert.equal(again.code, 0, `${again.stdout}\n${again.stderr}`);
  assert.match(again.stdout, new RegExp(`pid ${status.pid}\\)`), 'the same agent');
  assert.deepEqual(await agentsOf(home), [status.pid], 'one agent');
  assert.equal((await stat(join(home, 'MANIFEST.json'))).ino, manifestStat.ino, 'install kept');
  assert.deepEqual(await readFile(e.box.settingsPath), settingsBefore);
  assert.equal((await e.readStatus())?.update?.lastResult, `installed ${V}`);
  assert.ok(!existsSync(`${home}.incoming`));
});
