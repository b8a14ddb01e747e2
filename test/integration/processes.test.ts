// The process adapter: listing rows Windows' fastlist really produces, the win32 tree kill by
// parent pids (through seams, so it runs on Linux too), and the POSIX tree kill on real processes.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import {
  createProcessControl,
  nodeProcesses,
  type ProcInfo,
  type RawProc,
} from '../../adapters/processes.ts';
import { freeswitchMatcher, javaMatcher } from '../../services/supervisor.ts';

// What ps-list's win32 parser makes of fastlist output with a trailing empty line.
const FASTLIST_JUNK: RawProc = {
  pid: Number.NaN,
  ppid: Number.NaN,
  name: undefined as unknown as string,
};

test('win32 listing: a row without name or pid is dropped/normalised and detection still works', async () => {
  const procs = createProcessControl({
    platform: 'win32',
    listRaw: () =>
      Promise.resolve([
        { pid: 4, ppid: 0, name: 'System' },
        FASTLIST_JUNK,
        { pid: 612, ppid: 4, name: undefined as unknown as string },
        { pid: 4242, ppid: 612, name: 'FreeSwitchConsole.exe' },
        { pid: 4300, ppid: 612, name: 'java.exe' },
      ]),
  });
  const list = await procs.list();
  assert.deepEqual(
    list.map((p) => [p.pid, p.name]),
    [
      [4, 'System'],
      [612, ''],
      [4242, 'FreeSwitchConsole.exe'],
      [4300, 'java.exe'],
    ],
  );
  const fs = list.find(freeswitchMatcher('C:\\FreeSWITCH', 'win32'));
  assert.equal(fs?.pid, 4242);
  const java = list.find(javaMatcher('C:\\box\\icb-box.jar', 'win32'));
  assert.equal(java?.pid, 4300);
});

test('matchers never pick a row with empty name and command line', () => {
  const empty: ProcInfo = { pid: 10, name: '', cmd: '' };
  for (const platform of ['win32', 'linux'] as const) {
    assert.equal(javaMatcher('/box/icb-box.jar', platform)(empty), false);
    assert.equal(freeswitchMatcher('/fs', platform)(empty), false);
  }
});

test("outside Windows a row without a command line (a process gone between ps-list's two ps runs) is never adopted", () => {
  // ps-list lists names and command lines in two ps runs; another box's Java that exits between
  // them comes back as name 'java' with no command line. Adopting it failed a health gate.
  const dying: ProcInfo = { pid: 11, name: 'java', cmd: '' };
  const dyingFs: ProcInfo = { pid: 12, name: 'FreeSwitchConsole', cmd: '' };
  assert.equal(javaMatcher('/box/icb-box.jar', 'linux')(dying), false);
  assert.equal(freeswitchMatcher('/fs', 'linux')(dyingFs), false);
  // Windows' fast listing never has command lines: there the name is all there is.
  assert.equal(javaMatcher('C:\\box\\icb-box.jar', 'win32')({ ...dying, name: 'java.exe' }), true);
  assert.equal(
    freeswitchMatcher('C:\\fs', 'win32')({ ...dyingFs, name: 'FreeSwitchConsole.exe' }),
    true,
  );
});

test('a listing with no usable row is an error, not "nothing runs"', async () => {
  const procs = createProcessControl({
    platform: 'win32',
    listRaw: () => Promise.resolve([FASTLIST_JUNK]),
  });
  await assert.rejects(procs.list(), /process listing returned no processes/);
});

/** A fake Windows: a process table, TerminateProcess by process.kill, probes by signal 0. */
function fakeWindows(table: RawProc[], behaviour: { stubborn?: number[]; denied?: number[] }) {
  const alive = new Set(table.map((p) => p.pid));
  const terminated: number[] = [];
  const signal = (pid: number, sig: NodeJS.Signals | 0) => {
    const err = (code: string) => Object.assign(new Error(`kill ${code}`), { code });
    if (!alive.has(pid)) throw err('ESRCH');
    if (sig === 0) return;
    if (behaviour.denied?.includes(pid) === true) throw err('EPERM');
    terminated.push(pid);
    if (behaviour.stubborn?.includes(pid) !== true) alive.delete(pid);
  };
  const listRaw = () => Promise.resolve(table.filter((p) => alive.has(p.pid)));
  return {
    terminated,
    alive,
    procs: createProcessControl({ platform: 'win32', listRaw, signal, killWaitMs: 300 }),
  };
}

const TREE: RawProc[] = [
  { pid: 4, ppid: 0, name: 'System' },
  { pid: 100, ppid: 4, name: 'FreeSwitchConsole.exe' },
  { pid: 101, ppid: 100, name: 'node.exe' },
  { pid: 102, ppid: 100, name: 'conhost.exe' },
  { pid: 103, ppid: 101, name: 'fs_cli.exe' },
  { pid: 200, ppid: 4, name: 'explorer.exe' },
];

test('win32 killTree terminates the tree by parent pids, children first, and nothing else', async () => {
  const w = fakeWindows(TREE, {});
  await w.procs.killTree(100, 'SIGKILL');
  assert.deepEqual(new Set(w.terminated), new Set([100, 101, 102, 103]));
  const at = (pid: number) => w.terminated.indexOf(pid);
  assert.ok(at(103) < at(101) && at(101) < at(100) && at(102) < at(100), String(w.terminated));
  assert.ok(w.alive.has(200) && w.alive.has(4));
});

test('win32 killTree of a process that already exited succeeds', async () => {
  const w = fakeWindows(TREE, {});
  await w.procs.killTree(999, 'SIGTERM');
  assert.deepEqual(w.terminated, []);
});

test('win32 killTree reports a process that survives and one it may not kill', async () => {
  const stubborn = fakeWindows(TREE, { stubborn: [103] });
  await assert.rejects(
    stubborn.procs.killTree(100, 'SIGKILL'),
    /cannot kill process tree of pid 100 \(SIGKILL\): still running after 300 ms: 103/,
  );
  const denied = fakeWindows(TREE, { denied: [101] });
  await assert.rejects(
    denied.procs.killTree(100, 'SIGKILL'),
    /cannot kill process tree of pid 100 \(SIGKILL\): refused: pid 101: EPERM/,
  );
});

async function waitUntil(cond: () => boolean | Promise<boolean>, ms: number, what: string) {
  const deadline = Date.now() + ms;
  while (!(await cond())) {
    if (Date.now() > deadline) assert.fail(`timed out after ${ms} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

test(
  'POSIX killTree kills a real process tree (parent, child, grandchild)',
  { skip: process.platform === 'win32' },
  async (t) => {
    const dir = await mkdtemp(join(tmpdir(), 'bk-proc-'));
    t.after(() => rm(dir, { recursive: true, force: true }));
    // Each level writes its pid and ignores SIGTERM; SIGKILL must reach all three.
    const script = join(dir, 'level.mjs');
    await writeFile(
      script,
      `import { spawn } from 'node:child_process';
       import { appendFileSync } from 'node:fs';
       process.on('SIGTERM', () => {});
       const depth = Number(process.argv[2]);
       appendFileSync(${JSON.stringify(join(dir, 'pids'))}, process.pid + '\\n');
       if (depth < 2) spawn(process.execPath, [process.argv[1], String(depth + 1)], { stdio: 'ignore' });
       setInterval(() => {}, 1000);`,
    );
    const root = spawn(process.execPath, [script, '0'], { stdio: 'ignore', detached: true });
    root.unref();
    const pids = async () =>
      (await readFile(join(dir, 'pids'), 'utf8').catch(() => '')).split('\n').filter(Boolean);
    await waitUntil(async () => (await pids()).length === 3, 15_000, 'three levels to start');
    const all = (await pids()).map(Number);
    t.after(() => {
      for (const pid of all) if (nodeProcesses.isAlive(pid)) process.kill(pid, 'SIGKILL');
    });

    await nodeProcesses.killTree(all[0] as number, 'SIGKILL');
    await waitUntil(
      () => all.every((pid) => !nodeProcesses.isAlive(pid)),
      10_000,
      `pids ${all.join(', ')} to be gone`,
    );
    // Gone already: still success.
    await nodeProcesses.killTree(all[0] as number, 'SIGKILL');
  },
);

test(
  'POSIX killTree reports a process it may not signal (EPERM)',
  { skip: process.platform === 'win32' },
  async (t) => {
    if (process.getuid?.() !== 0) {
      // pid 1 belongs to root.
      await assert.rejects(nodeProcesses.killTree(1, 'SIGTERM'), /pid 1 \(SIGTERM\): EPERM/);
      return;
    }
    // As root anything may be killed: an unprivileged child tries to kill a root-owned one.
    const victim = spawn(process.execPath, ['-e', 'setInterval(() => {}, 1000)'], {
      stdio: 'ignore',
    });
    t.after(() => victim.kill('SIGKILL'));
    const adapter = new URL('../../adapters/processes.ts', import.meta.url).pathname;
    const code = `import(${JSON.stringify(adapter)})
      .then((m) => m.nodeProcesses.killTree(${String(victim.pid)}, 'SIGTERM'))
      .then(() => console.log('resolved'), (e) => console.log(e.message));`;
    const out = await new Promise<string>((resolve, reject) => {
      const c = spawn(process.execPath, ['--import', 'tsx', '-e', code], {
        uid: 65534,
        gid: 65534,
        cwd: process.cwd(),
        stdio: ['ignore', 'pipe', 'inherit'],
      });
      let s = '';
      c.stdout.setEncoding('utf8').on('data', (d: string) => (s += d));
      c.once('error', reject);
      c.once('close', () => resolve(s));
    });
    assert.match(
      out,
      new RegExp(`cannot kill process tree of pid ${String(victim.pid)} \\(SIGTERM\\): EPERM`),
    );
    assert.equal(nodeProcesses.isAlive(victim.pid as number), true);
  },
);
