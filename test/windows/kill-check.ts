// Run by a Windows node.exe (bundled by test/windows/smoke.sh, under Wine): the real process
// adapter lists processes with fastlist and kills a tree by parent pids — a stand-in shim, its
// node child and that child's own child — and reports success for a pid that is gone.
// Usage: node kill-check.mjs <standin.exe> <work dir>
import { spawn } from 'node:child_process';
import { copyFileSync, existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { createProcessControl } from '../../adapters/processes.ts';

const nodeProcesses = createProcessControl();

const [standin, work] = process.argv.slice(2);
if (standin === undefined || work === undefined) {
  console.error('usage: kill-check.mjs <standin.exe> <work dir>');
  process.exit(2);
}
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
let failures = 0;
const check = (ok: boolean, what: string) => {
  console.log(`${ok ? 'ok  ' : 'FAIL'} ${what}`);
  if (!ok) failures++;
};

const list = await nodeProcesses.list();
check(
  list.some((p) => p.pid === process.pid && /node/i.test(p.name)),
  `list() sees this node.exe (pid ${process.pid}) among ${list.length} processes`,
);

mkdirSync(work, { recursive: true });
const shim = join(work, 'java.exe');
copyFileSync(standin, shim);
const pids = join(work, 'pids.txt');
// shim → node (java.mjs) → node (leaf): killTree must end all three and say so.
writeFileSync(
  join(work, 'java.mjs'),
  `import { spawn } from 'node:child_process';
   import { appendFileSync } from 'node:fs';
   appendFileSync(${JSON.stringify(pids)}, process.pid + '\\n');
   if (process.argv[2] !== 'leaf') spawn(process.execPath, [process.argv[1], 'leaf'], { stdio: 'ignore' });
   setInterval(() => {}, 1000);\n`,
);
const root = spawn(shim, ['-jar', 'x.jar'], {
  env: { ...process.env, BOXKEEPER_STANDIN_NODE: process.execPath },
  stdio: 'ignore',
  detached: true,
});
root.unref();
const deadline = Date.now() + 30_000;
const started = () =>
  existsSync(pids) ? readFileSync(pids, 'utf8').split('\n').filter(Boolean).map(Number) : [];
while (started().length < 2 && Date.now() < deadline) await sleep(100);
const tree = [root.pid as number, ...started()];
check(tree.length === 3, `a tree of three: shim ${tree.join(', ')}`);

const table = await nodeProcesses.list();
const child = table.find((p) => p.pid === tree[1]);
check(child?.ppid === root.pid, `fastlist gives the parent pid (${String(child?.ppid)})`);

try {
  await nodeProcesses.killTree(root.pid as number, 'SIGKILL');
  check(true, 'killTree resolved');
} catch (err) {
  check(false, `killTree rejected: ${(err as Error).message}`);
}
check(
  tree.every((pid) => !nodeProcesses.isAlive(pid)),
  `every process of the tree is gone: ${tree.filter((pid) => nodeProcesses.isAlive(pid)).join(', ') || 'yes'}`,
);
try {
  await nodeProcesses.killTree(root.pid as number, 'SIGKILL');
  check(true, 'killTree of a gone pid resolves');
} catch (err) {
  check(false, `killTree of a gone pid rejected: ${(err as Error).message}`);
}
// Without a Job object: node → detached node. Only the parent pids can find the child.
const plainPids = join(work, 'plain-pids.txt');
const plain = join(work, 'plain.mjs');
writeFileSync(
  plain,
  `import { spawn } from 'node:child_process';
   import { appendFileSync } from 'node:fs';
   appendFileSync(${JSON.stringify(plainPids)}, process.pid + '\\n');
   if (process.argv[2] !== 'leaf')
     spawn(process.execPath, [process.argv[1], 'leaf'], { stdio: 'ignore', detached: true }).unref();
   setInterval(() => {}, 1000);\n`,
);
const parent = spawn(process.execPath, [plain], { stdio: 'ignore', detached: true });
parent.unref();
const plainStarted = () =>
  existsSync(plainPids)
    ? readFileSync(plainPids, 'utf8').split('\n').filter(Boolean).map(Number)
    : [];
const plainDeadline = Date.now() + 30_000;
while (plainStarted().length < 2 && Date.now() < plainDeadline) await sleep(100);
const plainTree = plainStarted();
check(plainTree.length === 2, `node with a detached child: ${plainTree.join(', ')}`);
await nodeProcesses.killTree(parent.pid as number, 'SIGKILL').then(
  () => check(true, 'killTree resolved'),
  (err: unknown) => check(false, `killTree rejected: ${(err as Error).message}`),
);
check(
  plainTree.every((pid) => !nodeProcesses.isAlive(pid)),
  `the detached child went too: ${plainTree.filter((pid) => nodeProcesses.isAlive(pid)).join(', ') || 'yes'}`,
);

console.log(failures === 0 ? 'kill-check: ok' : `kill-check: ${failures} failed`);
process.exit(failures === 0 ? 0 : 1);
