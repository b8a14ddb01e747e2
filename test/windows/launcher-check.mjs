// Run by a Windows node.exe (under Wine in CI): checks packaging/win/launcher.c as built by
// packaging/win/build.sh. The launcher passes arguments through unchanged (MSVCRT quoting) and
// forwards the exit code; the stand-in shim runs <its name>.mjs, and the shim and its node child
// end together (Job object), whichever is killed; the switch-over entrypoint.exe (a copy with a
// version baked in by services/install/switch-over.ts bakeEntrypoint) honours the launcher contract of
// docs/install.md: package search order, switch-over --from-patch <V>, CWD and exit code.
// Usage: node launcher-check.mjs <launcher.exe> <standin.exe> <work dir> [<baked entrypoint.exe>
//        <its version> <unbaked entrypoint.exe>]
import { spawn } from 'node:child_process';
import { copyFileSync, existsSync, linkSync, mkdirSync, readFileSync, rmSync } from 'node:fs';
import { writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';

// Absolute with a drive (a Unix path under Wine is drive-relative: libuv's spawn with a cwd needs a drive).
const abs = (p) => (p === undefined ? undefined : resolve(p));
const [launcher, standin, work, entrypoint, bakedVersion, unbaked] = process.argv
  .slice(2)
  .map((a, i) => (i === 4 ? a : abs(a)));
if (work === undefined) {
  console.error('usage: launcher-check.mjs <launcher.exe> <standin.exe> <work dir>');
  process.exit(2);
}
let failures = 0;
const check = (ok, what) => {
  console.log(`${ok ? 'ok  ' : 'FAIL'} ${what}`);
  if (!ok) failures++;
};
const alive = (pid) => {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return e.code === 'EPERM';
  }
};
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
async function waitFor(cond, ms) {
  const deadline = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > deadline) return false;
    await sleep(50);
  }
  return true;
}
// 'close', not 'exit': a piped stderr may still hold the last line when the process has exited.
const exitOf = (child) =>
  new Promise((resolve, reject) => {
    child.once('error', reject);
    child.once('close', (code) => resolve(code));
  });
const linkOrCopy = (from, to) => {
  try {
    linkSync(from, to);
  } catch {
    copyFileSync(from, to);
  }
};

// --- the launcher, in the package layout -------------------------------------------------------
const pkg = join(work, 'pkg');
for (const d of ['bin', 'runtime', 'lib']) mkdirSync(join(pkg, d), { recursive: true });
copyFileSync(launcher, join(pkg, 'bin', 'boxkeeper.exe'));
if (!existsSync(join(pkg, 'runtime', 'node.exe')))
  linkOrCopy(process.execPath, join(pkg, 'runtime', 'node.exe'));
const argvFile = join(work, 'argv.json');
writeFileSync(
  join(pkg, 'lib', 'boxkeeper.mjs'),
  `import { writeFileSync } from 'node:fs';
   writeFileSync(${JSON.stringify(argvFile)}, JSON.stringify(process.argv.slice(2)));
   process.exitCode = Number(process.env.LAUNCHER_CHECK_EXIT ?? 0);\n`,
);
const tricky = [
  'status',
  'two words',
  '',
  'quote"inside',
  'trailing\\',
  'C:\\dir with space\\',
  'back\\\\"slash',
  '\\\\server\\share',
  '%PATH%',
  'ünïcødé',
  '--settings=C:\\a b\\settings.ini',
];
{
  rmSync(argvFile, { force: true });
  const code = await exitOf(
    spawn(join(pkg, 'bin', 'boxkeeper.exe'), tricky, {
      stdio: 'ignore',
      env: { ...process.env, LAUNCHER_CHECK_EXIT: '7' },
    }),
  );
  check(code === 7, `launcher forwards the exit code (got ${code}, expected 7)`);
  const got = existsSync(argvFile) ? JSON.parse(readFileSync(argvFile, 'utf8')) : null;
  check(
    JSON.stringify(got) === JSON.stringify(tricky),
    `launcher passes arguments unchanged: ${JSON.stringify(got)}`,
  );
}
{
  // The agent starts the services detached and exits; they must keep running (not killed with
  // the launcher's job).
  const servicePid = join(work, 'service.pid');
  rmSync(servicePid, { force: true });
  writeFileSync(
    join(pkg, 'lib', 'boxkeeper.mjs'),
    `import { spawn } from 'node:child_process';
     const c = spawn(process.execPath, ['-e', 'setInterval(() => {}, 1000)'], { detached: true, stdio: 'ignore' });
     c.unref();
     (await import('node:fs')).writeFileSync(${JSON.stringify(servicePid)}, String(c.pid));\n`,
  );
  const code = await exitOf(spawn(join(pkg, 'bin', 'boxkeeper.exe'), ['run'], { stdio: 'ignore' }));
  const pid = existsSync(servicePid) ? Number(readFileSync(servicePid, 'utf8')) : NaN;
  await sleep(1000);
  const survived = Number.isInteger(pid) && alive(pid);
  check(code === 0 && survived, `a detached child of node outlives the launcher (pid ${pid})`);
  if (survived) process.kill(pid, 'SIGKILL');
}
{
  const bare = join(work, 'bare', 'bin');
  mkdirSync(bare, { recursive: true });
  copyFileSync(launcher, join(bare, 'boxkeeper.exe'));
  let err = '';
  const child = spawn(join(bare, 'boxkeeper.exe'), ['--help'], {
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  child.stderr.setEncoding('utf8').on('data', (d) => (err += d));
  const code = await exitOf(child);
  check(
    code === 1 && /boxkeeper launcher: .*boxkeeper\.mjs/.test(err),
    `launcher without lib\\boxkeeper.mjs exits 1 naming it (got ${code}: ${err.trim()})`,
  );
}

// --- the stand-in shim ---------------------------------------------------------------------------
const dir = join(work, 'standin');
mkdirSync(dir, { recursive: true });
const shim = join(dir, 'FreeSwitchConsole.exe');
copyFileSync(standin, shim);
const pidFile = join(dir, 'child.pid');
writeFileSync(
  join(dir, 'FreeSwitchConsole.mjs'),
  `import { writeFileSync } from 'node:fs';
   writeFileSync(${JSON.stringify(pidFile)}, JSON.stringify({ pid: process.pid, argv: process.argv.slice(2) }));
   if (process.argv[2] === 'exit') process.exit(Number(process.argv[3]));
   setInterval(() => {}, 1000);\n`,
);
const env = { ...process.env, BOXKEEPER_STANDIN_NODE: process.execPath };
const childInfo = async () => {
  if (!(await waitFor(() => existsSync(pidFile), 30_000))) throw new Error(`no ${pidFile}`);
  for (;;) {
    try {
      return JSON.parse(readFileSync(pidFile, 'utf8'));
    } catch {
      await sleep(50); // half-written
    }
  }
};
{
  rmSync(pidFile, { force: true });
  const code = await exitOf(spawn(shim, ['exit', '42'], { env, stdio: 'ignore' }));
  const info = await childInfo();
  check(code === 42, `shim runs FreeSwitchConsole.mjs and forwards its exit code (got ${code})`);
  check(info.argv.join(' ') === 'exit 42', `shim passes arguments (${JSON.stringify(info.argv)})`);
}
for (const detached of [false, true]) {
  rmSync(pidFile, { force: true });
  const c = spawn(shim, ['-nc'], { env, stdio: 'ignore', detached });
  const { pid } = await childInfo();
  process.kill(c.pid, 'SIGKILL'); // TerminateProcess
  const gone = await waitFor(() => !alive(pid), 10_000);
  check(gone, `shim terminated (detached=${detached}): its node child ${pid} ended too`);
  if (!gone) process.kill(pid, 'SIGKILL');
}
{
  rmSync(pidFile, { force: true });
  const c = spawn(shim, ['-nc'], { env, stdio: 'ignore', detached: true });
  const exited = exitOf(c);
  const { pid } = await childInfo();
  process.kill(pid, 'SIGKILL');
  const code = await Promise.race([exited, sleep(10_000).then(() => 'still running')]);
  check(code === 1, `node child terminated: the shim exits with its code (got ${code})`);
  if (code === 'still running') c.kill('SIGKILL');
}
{
  let err = '';
  const c = spawn(shim, ['-nc'], {
    env: { ...env, BOXKEEPER_STANDIN_NODE: join(work, 'missing', 'node.exe') },
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  c.stderr.setEncoding('utf8').on('data', (d) => (err += d));
  const code = await exitOf(c);
  check(
    code === 1 && /cannot start .*missing/.test(err),
    `shim with a missing node exits 1 naming it (got ${code}: ${err.trim()})`,
  );
}
// --- the switch-over entrypoint.exe --------------------------------------------------------------
if (entrypoint !== undefined) {
  const box = join(work, 'ep-box');
  const manager = join(box, 'RemoteManagerDist');
  mkdirSync(manager, { recursive: true });
  const ep = join(manager, 'entrypoint.exe');
  copyFileSync(entrypoint, ep);
  const record = join(work, 'ep-run.json');
  const fakePackage = (dir, label, parts = ['node', 'script']) => {
    mkdirSync(join(dir, 'runtime'), { recursive: true });
    mkdirSync(join(dir, 'lib'), { recursive: true });
    if (parts.includes('node')) linkOrCopy(process.execPath, join(dir, 'runtime', 'node.exe'));
    if (parts.includes('script'))
      writeFileSync(
        join(dir, 'lib', 'boxkeeper.mjs'),
        `import { writeFileSync } from 'node:fs';
         writeFileSync(${JSON.stringify(record)}, JSON.stringify({ label: ${JSON.stringify(label)}, argv: process.argv.slice(2), cwd: process.cwd(), env: process.env.EP_CHECK ?? null }));
         process.exitCode = Number(process.env.EP_CHECK_EXIT ?? 0);\n`,
      );
  };
  const cwd = join(work, 'ep-cwd');
  mkdirSync(cwd, { recursive: true });
  const runEp = async (exe, args, exit) => {
    rmSync(record, { force: true });
    let err = '';
    const c = spawn(exe, args, {
      cwd,
      stdio: ['ignore', 'ignore', 'pipe'],
      env: { ...process.env, EP_CHECK: 'passed', EP_CHECK_EXIT: String(exit) },
    });
    c.stderr.setEncoding('utf8').on('data', (d) => (err += d));
    const code = await exitOf(c);
    const ran = existsSync(record) ? JSON.parse(readFileSync(record, 'utf8')) : null;
    return { code, ran, err: err.trim() };
  };
  const expectArgv = JSON.stringify(['switch-over', '--from-patch', bakedVersion, '--x', 'a b']);

  fakePackage(join(box, 'patch', bakedVersion, 'boxkeeper-package'), 'patch');
  fakePackage(join(box, 'patch', 'V0.0-other', 'boxkeeper-package'), 'other patch');
  let r = await runEp(ep, ['--x', 'a b'], 7);
  check(
    r.ran?.label === 'patch',
    `entrypoint finds ..\\patch\\${bakedVersion}\\boxkeeper-package (the baked version): ran ${JSON.stringify(r.ran)} ${r.err}`,
  );
  check(
    JSON.stringify(r.ran?.argv) === expectArgv,
    `entrypoint runs ${expectArgv}: ${JSON.stringify(r.ran?.argv)}`,
  );
  check(
    r.ran?.cwd?.toLowerCase() === cwd.toLowerCase() && r.ran?.env === 'passed',
    `entrypoint keeps the CWD and the environment (${r.ran?.cwd}, ${r.ran?.env})`,
  );
  check(r.code === 7, `entrypoint forwards the exit code (got ${r.code}, expected 7)`);

  fakePackage(join(manager, 'boxkeeper-package'), 'beside');
  fakePackage(join(manager, 'boxkeeper'), 'half-installed', ['script']); // no runtime\node.exe
  r = await runEp(ep, ['--x', 'a b'], 0);
  check(
    r.ran?.label === 'beside' && r.code === 0,
    `entrypoint prefers <dir>\\boxkeeper-package and skips a candidate without runtime\\node.exe: ran ${r.ran?.label} (exit ${r.code}) ${r.err}`,
  );
  fakePackage(join(manager, 'boxkeeper'), 'installed');
  r = await runEp(ep, ['--x', 'a b'], 3);
  check(
    r.ran?.label === 'installed' && r.code === 3 && JSON.stringify(r.ran?.argv) === expectArgv,
    `entrypoint prefers the installed <dir>\\boxkeeper: ran ${r.ran?.label} (exit ${r.code}) ${r.err}`,
  );

  const lone = join(work, 'ep-lone', 'RemoteManagerDist');
  mkdirSync(lone, { recursive: true });
  copyFileSync(entrypoint, join(lone, 'entrypoint.exe'));
  r = await runEp(join(lone, 'entrypoint.exe'), [], 0);
  const three = [
    join(lone, 'boxkeeper'),
    join(lone, 'boxkeeper-package'),
    join(lone, '..', 'patch', bakedVersion, 'boxkeeper-package'),
  ];
  const named = three.every((p) => r.err.toLowerCase().includes(p.toLowerCase()));
  check(
    r.code === 1 && r.ran === null && named && r.err.split('\n').length === 1,
    `entrypoint without a package exits 1 with one line naming the three paths (got ${r.code}: ${r.err})`,
  );
  if (unbaked !== undefined) {
    const raw = join(work, 'ep-unbaked');
    mkdirSync(raw, { recursive: true });
    copyFileSync(unbaked, join(raw, 'entrypoint.exe'));
    fakePackage(join(raw, 'boxkeeper'), 'installed');
    r = await runEp(join(raw, 'entrypoint.exe'), [], 0);
    check(
      r.code === 1 && r.ran === null && /no patch version is baked/.test(r.err),
      `an entrypoint.exe without a baked version exits 1 saying so (got ${r.code}: ${r.err})`,
    );
  }
}

console.log(failures === 0 ? 'launcher-check: ok' : `launcher-check: ${failures} failed`);
process.exit(failures === 0 ? 0 : 1);
