// `boxkeeper snapshot …` as an operator uses it, on a generated fixture box.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { appendFile, mkdir, mkdtemp, readFile, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test, type TestContext } from 'node:test';
import { createFixtureBox, type FixtureBox } from '../../fixtures/box/generate.ts';
import { runCli } from '../helpers/cli.ts';

function cli(args: string[]): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return runCli(args, { timeoutMs: 120_000 });
}

async function box(t: TestContext): Promise<FixtureBox> {
  const b = await createFixtureBox({
    root: await mkdtemp(join(tmpdir(), 'bk-snapcli-')),
    hostAddr: 'http://127.0.0.1:9',
  });
  t.after(() => b.cleanup());
  return b;
}

test('init, commit, list, diff, rollback and verify through the CLI', async (t) => {
  const b = await box(t);
  const s = ['--settings', b.settingsPath];
  const init = await cli(['snapshot', 'init', ...s]);
  assert.equal(init.code, 0, init.stderr);
  assert.match(init.stdout, /initial snapshot V1\.7-\d{8}T\d{6}: \d+ entries/);
  const config = JSON.parse(
    await readFile(join(b.boxRoot, 'boxkeeper', 'snapshot.json'), 'utf8'),
  ) as { subscribe: string[] };
  assert.ok(
    config.subscribe.includes(b.jarPath) && config.subscribe.includes(join(b.boxRoot, 'data')),
  );

  const original = await readFile(b.appYmlPath, 'utf8');
  await appendFile(b.appYmlPath, 'extra: true\n');
  await mkdir(join(b.boxRoot, 'conf', 'new'), { recursive: true });
  await writeFile(join(b.boxRoot, 'conf', 'new', 'x.ini'), '[x]\n');
  const verify = await cli(['snapshot', 'verify', ...s]);
  assert.equal(verify.code, 6, 'verify exits 6 when the box drifted');
  assert.match(verify.stdout, new RegExp(`tampered\\s+${b.appYmlPath}`));
  assert.match(verify.stdout, /unexpected .*conf\/new/);

  const commit = await cli([
    'snapshot',
    'commit',
    '--version',
    'after-edit',
    '--subject',
    'edited yml',
    ...s,
  ]);
  assert.equal(commit.code, 0, commit.stderr);
  const list = JSON.parse((await cli(['snapshot', 'list', '--json', ...s])).stdout) as Array<{
    version: string;
    current: boolean;
    initial: boolean;
  }>;
  assert.equal(list.length, 2);
  assert.deepEqual(list[0], { ...list[0], version: 'after-edit', current: true });
  const initial = list[1]?.version ?? '';
  const diff = await cli(['snapshot', 'diff', initial, 'after-edit', ...s]);
  assert.match(diff.stdout, new RegExp(`M ${b.appYmlPath}`));
  assert.match(diff.stdout, /\+ .*conf\/new\/x\.ini/);

  const rb = await cli(['snapshot', 'rollback', '--version', initial, ...s]);
  assert.equal(rb.code, 0, rb.stderr);
  assert.equal(await readFile(b.appYmlPath, 'utf8'), original);
  assert.equal((await cli(['snapshot', 'verify', ...s])).code, 0);
  const unknown = await cli(['snapshot', 'rollback', '--version', 'nope', ...s]);
  assert.equal(unknown.code, 6);
  assert.match(unknown.stderr, /no version "nope"; known: .*after-edit/);
});

test('snapshot writers take the daemon’s lock: a live holder refuses, a dead one is taken over', async (t) => {
  const b = await box(t);
  const s = ['--settings', b.settingsPath];
  assert.equal((await cli(['snapshot', 'init', ...s])).code, 0);
  const lock = join(b.boxRoot, 'boxkeeper', 'agent.lock');
  // A live boxkeeper-looking holder: this test process runs cli code through tsx.
  const holder = spawn(process.execPath, ['-e', 'setTimeout(() => {}, 60000)', 'boxkeeper'], {
    stdio: 'ignore',
  });
  t.after(() => holder.kill('SIGKILL'));
  await writeFile(
    lock,
    JSON.stringify({
      pid: holder.pid,
      startedAt: new Date().toISOString(),
      command: 'boxkeeper run',
    }),
  );
  const refused = await cli(['snapshot', 'commit', ...s]);
  assert.equal(refused.code, 3);
  assert.match(
    refused.stderr,
    new RegExp(`another boxkeeper \\(pid ${String(holder.pid)}\\) already runs`),
  );
  assert.equal((await cli(['snapshot', 'list', ...s])).code, 0, 'readers do not need the lock');

  await writeFile(
    lock,
    JSON.stringify({ pid: 999_999_999, startedAt: 'x', command: 'boxkeeper run' }),
  );
  const taken = await cli(['snapshot', 'commit', ...s]);
  assert.equal(taken.code, 0, taken.stderr);
});

test('snapshot without init and with a bad subcommand say what to do', async (t) => {
  const b = await box(t);
  const s = ['--settings', b.settingsPath];
  const none = await cli(['snapshot', 'list', ...s]);
  assert.equal(none.code, 6);
  assert.match(none.stderr, /run "boxkeeper snapshot init" first/);
  const bad = await cli(['snapshot', 'frobnicate', ...s]);
  assert.equal(bad.code, 2);
  assert.match(bad.stderr, /unknown snapshot subcommand "frobnicate"/);
  const help = await cli(['snapshot', '--help']);
  assert.equal(help.code, 0);
  assert.match(help.stdout, /rollback --version V/);
});
