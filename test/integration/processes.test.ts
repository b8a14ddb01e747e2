// The process adapter: listing rows Windows' fastlist really produces, the win32 tree kill by
// parent pids (through seams, so it runs on Linux too), the POSIX tree kill on real processes,
// the /proc listing on real processes, and one listing shared by callers that accept its age.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { realpathSync } from 'node:fs';
import { mkdtemp, readFile, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { basename, join } from 'node:path';
import { test } from 'node:test';
import { createProcessControl, type ProcInfo, type RawProc } from '../../adapters/processes.ts';

const nodeProcesses = createProcessControl();
import { commandLine, listProcfs, parseBootTime, parseProcStat } from '../../adapters/procfs.ts';
import { freeswitchMatcher, javaMatcher } from '../../services/supervision/supervisor.ts';

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
      .then((m) => m.createProcessControl().killTree(${String(victim.pid)}, 'SIGTERM'))
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

// ---- the /proc listing (Linux) ---------------------------------------------------------------

const linuxOnly = { skip: process.platform !== 'linux' };

test(
  '/proc listing: a real child with its exact command line, parent pid and start time',
  linuxOnly,
  async (t) => {
    const marker = `bk-procfs-${process.pid}-${Date.now()}`;
    const child = spawn(process.execPath, ['-e', 'setInterval(() => {}, 1000)', marker], {
      stdio: 'ignore',
    });
    t.after(() => child.kill('SIGKILL'));
    await new Promise((ok) => child.once('spawn', ok));
    const row = listProcfs().find((p) => p.pid === child.pid);
    assert.ok(row !== undefined, 'the child is listed');
    assert.equal(row.cmd, `${process.execPath} -e setInterval(() => {}, 1000) ${marker}`);
    assert.equal(row.ppid, process.pid);
    assert.equal(row.name, basename(process.execPath));
    const startedAt = row.startTime?.getTime() ?? NaN;
    assert.ok(Math.abs(startedAt - Date.now()) < 60_000, `start time ${String(row.startTime)}`);
    // Through the adapter (the default listing on Linux) it is the same row.
    const viaAdapter = (await createProcessControl().list()).find((p) => p.pid === child.pid);
    assert.equal(viaAdapter?.cmd, row.cmd);
    assert.equal(viaAdapter.ppid, process.pid);
  },
);

test(
  "/proc listing: a name with spaces and ')' does not shift the fields after it",
  linuxOnly,
  async (t) => {
    const dir = await mkdtemp(join(tmpdir(), 'bk-procfs-'));
    t.after(() => rm(dir, { recursive: true, force: true }));
    // The kernel's comm is the name of the file executed: "a) b (c".
    const odd = join(dir, 'a) b (c');
    await symlink('/bin/sleep', odd);
    const child = spawn(odd, ['30'], { stdio: 'ignore' });
    t.after(() => child.kill('SIGKILL'));
    await new Promise((ok) => child.once('spawn', ok));
    // Until the exec has happened the child is still a copy of node.
    let row: RawProc | undefined;
    await waitUntil(
      () => {
        row = listProcfs().find((p) => p.pid === child.pid);
        return row?.cmd === `${odd} 30`;
      },
      10_000,
      'the child to run sleep',
    );
    assert.equal(row?.ppid, process.pid);
    // As ps-list names it: the executable's basename (the symlink resolved).
    assert.equal(row.name, basename(realpathSync('/bin/sleep')));
    assert.deepEqual(
      parseProcStat(
        `${String(child.pid)} (a) b (c) S 77 1 1 0 -1 0 0 0 0 0 1 2 0 0 20 0 1 0 4242 0 0`,
      ),
      {
        comm: 'a) b (c',
        state: 'S',
        ppid: 77,
        startTicks: 4242,
      },
    );
  },
);

test(
  '/proc listing: processes exiting while it reads are never returned half-read',
  linuxOnly,
  async (t) => {
    const dir = await mkdtemp(join(tmpdir(), 'bk-procfs-'));
    t.after(() => rm(dir, { recursive: true, force: true }));
    const marker = join(dir, 'short-lived');
    // A shell starting short-lived processes one after another, for as long as the test lists;
    // from a script, so that only the short-lived ones carry the marker.
    const script = join(dir, 'churn.sh');
    await writeFile(script, `while :; do /bin/sleep 0 ${marker}; /bin/true ${marker}; done\n`);
    const churn = spawn('/bin/sh', [script], { stdio: 'ignore' });
    t.after(() => churn.kill('SIGKILL'));
    await new Promise((ok) => churn.once('spawn', ok));
    let seen = 0;
    for (let i = 0; i < 300; i++) {
      for (const p of listProcfs()) {
        // Every row is whole: a command line, or the `[comm]` form of one without (exiting).
        assert.notEqual(p.cmd, '', `pid ${p.pid} (${String(p.name)}) has no command line`);
        assert.ok(Number.isInteger(p.ppid), `pid ${p.pid} has no parent pid`);
        if (p.cmd?.includes(marker) === true) {
          seen++;
          assert.match(p.cmd, new RegExp(`^/bin/(sleep 0|true) ${marker}$`));
        }
      }
      if (i % 20 === 0) await new Promise((ok) => setImmediate(ok));
    }
    assert.ok(seen > 0, 'some short-lived process was caught running');
  },
);

test('/proc helpers: command line and boot time as ps shows them', () => {
  const stat = { comm: 'java', state: 'S', ppid: 1, startTicks: 5 };
  assert.equal(
    commandLine('/usr/bin/java\0-jar\0/box/a b.jar\0', stat),
    '/usr/bin/java -jar /box/a b.jar',
  );
  assert.equal(commandLine('', stat), '[java]');
  assert.equal(commandLine('', { ...stat, state: 'Z' }), '[java] <defunct>');
  assert.equal(parseBootTime('cpu  1 2 3\nintr 5\nbtime 1700000000\nprocesses 9\n'), 1700000000);
  assert.equal(parseBootTime('cpu 1\n'), undefined);
});

// ---- sharing a listing -----------------------------------------------------------------------

function countedListing() {
  const calls = { n: 0 };
  let pending: Array<() => void> = [];
  const procs = createProcessControl({
    platform: 'linux',
    listRaw: async () => {
      calls.n++;
      await new Promise<void>((ok) => pending.push(ok));
      return [{ pid: 1, ppid: 0, name: 'init', cmd: '/sbin/init' }];
    },
    env: {},
  });
  const release = () => {
    const waiting = pending;
    pending = [];
    for (const ok of waiting) ok();
  };
  return { calls, procs, release };
}

test('list(): fresh by default; with `since` a listing started since is shared, running or done', async () => {
  const { calls, procs, release } = countedListing();
  const before = Date.now();
  const first = procs.list();
  // Joined while it runs, by a caller that accepts it.
  const joined = procs.list({ since: before });
  // A caller without `since` never gets it: a listing of its own.
  const fresh = procs.list();
  release();
  assert.equal(await joined, await first);
  assert.notEqual(await fresh, await first);
  assert.equal(calls.n, 2);
  // Done: still shared with a caller whose bound it meets, not with one asking for newer.
  const reused = procs.list({ since: before });
  assert.equal(await reused, await fresh);
  const newer = procs.list({ since: Date.now() + 1 });
  release();
  await newer;
  assert.equal(calls.n, 3);
});

test('list(): a failed listing is not shared', async () => {
  let fail = true;
  let calls = 0;
  const procs = createProcessControl({
    platform: 'linux',
    env: {},
    listRaw: () => {
      calls++;
      return fail
        ? Promise.reject(new Error('ps broke'))
        : Promise.resolve([{ pid: 1, name: 'init' }]);
    },
  });
  const since = Date.now();
  await assert.rejects(procs.list(), /ps broke/);
  fail = false;
  assert.equal((await procs.list({ since })).length, 1);
  assert.equal(calls, 2);
});

test('BOXKEEPER_LISTING_SHARE=off: every caller lists for itself', async () => {
  let calls = 0;
  const procs = createProcessControl({
    platform: 'linux',
    env: { BOXKEEPER_LISTING_SHARE: 'off' },
    listRaw: () => {
      calls++;
      return Promise.resolve([{ pid: 1, name: 'init' }]);
    },
  });
  await procs.list();
  await procs.list({ since: 0 });
  assert.equal(calls, 2);
});
