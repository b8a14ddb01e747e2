// `boxkeeper service` end to end. systemd cannot run here as PID 1, so `systemctl` is a
// recording stand-in on PATH (the same command lines reach it as reach the real one); the unit
// itself is verified by the real systemd-analyze in test/unit/service-definitions.test.ts.
// The survival test runs the real agent and applies the unit's kill rule as systemd does.
import assert from 'node:assert/strict';
import { access, chmod, mkdir, mkdtemp, readFile, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { delimiter, join } from 'node:path';
import { test } from 'node:test';
import { renderSystemdUnit } from '../../services/install/service-definitions.ts';
import {
  alive,
  CLI_MAIN,
  Daemon,
  REPO,
  runCli,
  setupE2E,
  TSX_LOADER,
  waitUntil,
  type E2E,
} from '../helpers/cli.ts';

/** A `systemctl` that appends its arguments to calls.log and answers `show` from show.txt. */
async function fakeSystemctl(
  dir: string,
): Promise<{ env: Record<string, string>; calls(): Promise<string[]> }> {
  const bin = join(dir, 'bin');
  await mkdir(bin, { recursive: true });
  const script = `#!/bin/sh
echo "$*" >> "${join(dir, 'calls.log')}"
if [ "$1" = show ]; then
  if [ -f "${join(dir, 'show.txt')}" ]; then cat "${join(dir, 'show.txt')}"; else
  printf 'LoadState=not-found\\nUnitFileState=\\nActiveState=inactive\\nSubState=dead\\nMainPID=0\\n'; fi
fi
exit 0
`;
  await writeFile(join(bin, 'systemctl'), script);
  await chmod(join(bin, 'systemctl'), 0o755);
  return {
    env: { PATH: `${bin}${delimiter}${process.env.PATH ?? ''}` },
    calls: async () =>
      (await readFile(join(dir, 'calls.log'), 'utf8').catch(() => '')).split('\n').filter(Boolean),
  };
}

test('service install / status / uninstall drive systemctl and write the unit atomically', async (t) => {
  const h = await setupE2E();
  t.after(() => h.close());
  const dir = await mkdtemp(join(tmpdir(), 'bk-svc-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  const ctl = await fakeSystemctl(dir);
  const unitDir = join(dir, 'units');
  const unitFile = join(unitDir, 'boxkeeper.service');
  const svc = (args: string[]) =>
    h.cli(['service', ...args, '--unit-dir', unitDir], { env: ctl.env });

  // --dry-run prints the unit and the commands, and changes nothing.
  const dry = await svc(['install', '--dry-run']);
  assert.equal(dry.code, 0, dry.stderr);
  assert.match(dry.stdout, /^KillMode=process$/m);
  assert.ok(dry.stdout.includes(`--settings ${h.box.settingsPath}`), dry.stdout);
  assert.match(dry.stdout, /systemctl enable --now boxkeeper\.service/);
  await assert.rejects(access(unitFile), 'dry run wrote nothing');
  assert.deepEqual(await ctl.calls(), [], 'dry run ran no systemctl');

  const inst = await svc(['install']);
  assert.equal(inst.code, 0, inst.stderr);
  const unit = await readFile(unitFile, 'utf8');
  assert.match(unit, /^ExecStart=.* run --settings .*settings\.ini$/m);
  assert.match(unit, /^Environment=BOXKEEPER_SERVICE=systemd$/m);
  assert.deepEqual(
    (await readdir(unitDir)).filter((n) => n !== 'boxkeeper.service'),
    [],
    'no temp file left beside the unit',
  );
  assert.deepEqual(
    (await ctl.calls()).filter((c) => !c.startsWith('show')),
    ['daemon-reload', 'enable --now boxkeeper.service'],
  );

  await writeFile(
    join(dir, 'show.txt'),
    'LoadState=loaded\nUnitFileState=enabled\nActiveState=active\nSubState=running\nMainPID=4242\n',
  );
  const st = await svc(['status', '--json']);
  assert.equal(st.code, 0, st.stderr);
  assert.deepEqual(JSON.parse(st.stdout) as unknown, {
    manager: 'systemd',
    definition: unitFile,
    installed: true,
    enabled: true,
    active: true,
    mainPid: 4242,
    detail: 'active (running), enabled',
  });
  const text = await svc(['status']);
  assert.match(text.stdout, /installed: yes/);
  assert.match(text.stdout, /active: {4}yes .*pid 4242/);

  // Installing again over a running service restarts it on the new unit.
  const again = await svc(['install']);
  assert.equal(again.code, 0, again.stderr);
  assert.ok((await ctl.calls()).includes('restart boxkeeper.service'));

  const un = await svc(['uninstall']);
  assert.equal(un.code, 0, un.stderr);
  await assert.rejects(access(unitFile), 'the unit is removed');
  const calls = await ctl.calls();
  assert.ok(calls.includes('disable --now boxkeeper.service'), calls.join('\n'));
  assert.equal(calls.at(-2), 'daemon-reload');
});

test('service: bad input names the flag or file and exits 2', async (t) => {
  const h = await setupE2E();
  t.after(() => h.close());
  const none = await h.cli(['service']);
  assert.equal(none.code, 2);
  assert.match(none.stderr, /service needs one of: install, uninstall, status/);
  const rel = await h.cli(['service', 'install', '--dry-run', '--unit-dir', 'units']);
  assert.equal(rel.code, 2);
  assert.match(rel.stderr, /--unit-dir must be an absolute path, got "units"/);
  const mgr = await h.cli(['service', 'install', '--manager', 'launchd', '--dry-run']);
  assert.equal(mgr.code, 2);
  assert.match(mgr.stderr, /--manager must be systemd or winsw, got "launchd"/);
  const missing = await runCli([
    'service',
    'install',
    '--dry-run',
    '--settings',
    '/nonexistent/settings.ini',
  ]);
  assert.equal(missing.code, 2);
  assert.match(missing.stderr, /settings file \/nonexistent\/settings\.ini does not exist/);
});

// ---- survival of the box services under the unit's kill rule ----------------------------

/** pid → parent pid, from /proc. */
async function parents(): Promise<Map<number, number>> {
  const out = new Map<number, number>();
  for (const name of await readdir('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    const stat = await readFile(`/proc/${name}/stat`, 'utf8').catch(() => '');
    const m = /\)\s+\S\s+(\d+)/.exec(stat);
    if (m !== null) out.set(Number(name), Number(m[1]));
  }
  return out;
}

/**
 * The processes systemd signals on stop with KillMode=control-group: the unit's cgroup, i.e.
 * the main process and everything it started (a child inherits its parent's cgroup; setsid or
 * a detached spawn does not leave it). Taken while the agent runs, from the process tree.
 */
async function controlGroupOf(main: number): Promise<Set<number>> {
  const ppid = await parents();
  const group = new Set([main]);
  for (let grew = true; grew;) {
    grew = false;
    for (const [pid, parent] of ppid) {
      if (group.has(parent) && !group.has(pid)) {
        group.add(pid);
        grew = true;
      }
    }
  }
  return group;
}

async function servicesUp(h: E2E, d: Daemon): Promise<{ java: number; fs: number }> {
  return d.waitUntil(
    async () => {
      const s = await h.readStatus();
      const java = s?.services.java;
      const fs = s?.services.freeswitch;
      return s?.pid === d.pid &&
        java?.status === 'running' &&
        fs?.status === 'running' &&
        typeof java.pid === 'number' &&
        typeof fs.pid === 'number'
        ? { java: java.pid, fs: fs.pid }
        : undefined;
    },
    30_000,
    'java and freeswitch running in status.json',
  );
}

test(
  'KillMode=process: Java and FreeSWITCH survive an agent restart and are adopted; control-group would hit them',
  { skip: process.platform !== 'linux' && 'the unit is for Linux' },
  async (t) => {
    const h = await setupE2E();
    t.after(() => h.close());
    const unit = renderSystemdUnit({
      launcher: { program: process.execPath, args: ['--import', TSX_LOADER, CLI_MAIN] },
      settingsFile: h.box.settingsPath,
      home: REPO,
    });
    const value = (key: string) => new RegExp(`^${key}=(.*)$`, 'm').exec(unit)?.[1];
    assert.equal(value('KillMode'), 'process');
    const killSignal = value('KillSignal') as NodeJS.Signals;
    const exec = (value('ExecStart') ?? '').split(' ');
    assert.deepEqual(exec.slice(0, 4), [process.execPath, '--import', TSX_LOADER, CLI_MAIN]);
    const env = Object.fromEntries(
      [value('Environment') ?? ''].map((e) => e.split('=') as [string, string]),
    );
    // systemd starts ExecStart with the unit's environment.
    const start = () => {
      const d = new Daemon(exec.slice(4), { env, cwd: REPO });
      h.daemons.push(d);
      return d;
    };

    const a = start();
    const first = await servicesUp(h, a);
    const appStarts = await h.box.appStarts();
    const group = await controlGroupOf(a.pid);
    assert.ok(
      group.has(first.java) && group.has(first.fs),
      'KillMode=control-group would signal the stand-in Java and FreeSWITCH (they are in the agent’s group)',
    );

    // A stop or restart under KillMode=process: KillSignal to the main process only.
    process.kill(a.pid, killSignal);
    const exit = await a.exited;
    assert.equal(exit.code, 0, a.tail());
    assert.ok(alive(first.java), 'Java survived the agent stop');
    assert.ok(alive(first.fs), 'FreeSWITCH survived the agent stop');

    // Restart=always: systemd runs ExecStart again; the new agent adopts what runs.
    const b = start();
    const second = await servicesUp(h, b);
    assert.deepEqual(second, first, 'the second agent adopted the same Java and FreeSWITCH');
    assert.equal(await h.box.appStarts(), appStarts, 'Java was not started a second time');
    await waitUntil(() => alive(first.java) && alive(first.fs), 5_000, 'services still up');
  },
);

test('service stop-agent (the Windows service stop command) stops the agent over its control channel; the services stay', async (t) => {
  const h = await setupE2E({ extraSettings: { update: { enabled: 'on' } } });
  t.after(() => h.close());
  const a = h.startDaemon();
  const up = await servicesUp(h, a);
  await a.waitUntil(
    () => access(join(h.agentData, 'control.json')).then(() => true),
    20_000,
    'the control channel',
  );
  const r = await h.cli(['service', 'stop-agent']);
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stdout, new RegExp(`agent ${a.pid} stopped \\(asked by control channel\\)`));
  const exit = await a.exited;
  assert.equal(exit.code, 0, a.tail());
  assert.equal(exit.signal, null, 'it exited by itself');
  assert.ok(alive(up.java) && alive(up.fs), 'Java and FreeSWITCH keep running');
  const again = await h.cli(['service', 'stop-agent']);
  assert.equal(again.code, 0, again.stderr);
  assert.match(again.stdout, /no agent runs for this box/);
});
