// The running agent's side of self-update (services/update/self-update.ts) on a fixture box's
// real files: a build is checked before the box is handed to it, one updater at a time, and the
// record it leaves names both versions. Starting real updaters is test/e2e/update.test.ts's part;
// here the installs are recorded, so a wrong start shows as a call.
import assert from 'node:assert/strict';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { readAgentPackage, type AgentInstalls } from '../../adapters/agent-install.ts';
import { createLogger } from '../../adapters/logger.ts';
import { nodePatchFs } from '../../adapters/patch-fs.ts';
import type { ExecResult } from '../../adapters/processes.ts';
import { noRegistry } from '../../adapters/registry.ts';
import { createFixtureBox } from '../../fixtures/box/generate.ts';
import { selfUpdatePath } from '../../services/agent/agent-files.ts';
import { loadSettings } from '../../services/agent/settings.ts';
import { createSelfUpdater } from '../../services/update/self-update.ts';

const logger = createLogger({ level: 'fatal', console: 'none' }).logger;

async function setUp(t: { after: (fn: () => Promise<void>) => void }, opts: { alive?: number[] }) {
  const root = await mkdtemp(join(tmpdir(), 'bk-self-update-'));
  t.after(() => rm(root, { recursive: true, force: true }));
  const box = await createFixtureBox({ root, hostAddr: 'http://127.0.0.1:9' });
  const { settings } = await loadSettings(box.settingsPath, {
    readFile: (f) => readFile(f),
    registry: noRegistry,
    platform: process.platform,
  });
  const build = join(root, 'build');
  await mkdir(join(build, 'dist', 'cli'), { recursive: true });
  await writeFile(join(build, 'dist', 'cli', 'main.js'), '');
  await writeFile(
    join(build, 'package.json'),
    JSON.stringify({ name: 'boxkeeper', version: '0.2.0' }),
  );
  const running = { version: '0.1.0' };
  const started: string[][] = [];
  const exits: string[] = [];
  let versionAnswer: ExecResult = { code: 0, stdout: '0.2.0\n', stderr: '', timedOut: false };
  const installs: AgentInstalls = {
    current: () => ({
      home: join(root, 'home'),
      version: running.version,
      entry: join('dist', 'cli', 'main.js'),
    }),
    readPackage: readAgentPackage,
    runVersion: () => Promise.resolve(versionAnswer),
    swap: () => Promise.reject(new Error('not the agent side')),
    restore: () => Promise.reject(new Error('not the agent side')),
    startAgent: (_home, _entry, args) => {
      started.push(args);
      return 4242;
    },
  };
  const alive = new Set(opts.alive ?? []);
  const updater = createSelfUpdater(
    settings,
    logger,
    {
      installs,
      processes: { isAlive: (pid) => alive.has(pid), killTree: () => Promise.resolve() },
      fs: nodePatchFs,
      lock: () => Promise.reject(new Error('not the agent side')),
    },
    (why) => exits.push(why),
  );
  return {
    settings,
    build,
    updater,
    started,
    exits,
    answerVersion: (r: ExecResult) => (versionAnswer = r),
    running,
  };
}

test('hand-over: starts one updater from the new build, records both versions, asks the agent to exit', async (t) => {
  const s = await setUp(t, {});
  await s.updater.handOver(s.build, 'V1.9');
  assert.equal(s.started.length, 1);
  const [args = []] = s.started;
  assert.equal(args[0], 'self-update');
  assert.ok(args.includes(s.build), 'the updater is told the build');
  const record: unknown = JSON.parse(await readFile(selfUpdatePath(s.settings), 'utf8'));
  assert.deepEqual(record, {
    pid: 4242,
    build: s.build,
    from: '0.1.0',
    to: '0.2.0',
    versionNum: 'V1.9',
  });
  assert.deepEqual(s.exits, ['self-update']);
});

test('hand-over again while that updater runs (the agent restarted): no second updater', async (t) => {
  const s = await setUp(t, { alive: [4242] });
  await s.updater.handOver(s.build, 'V1.9');
  await s.updater.handOver(s.build, 'V1.9');
  assert.equal(s.started.length, 1, 'one updater at a time');
  assert.deepEqual(s.exits, ['self-update', 'self-update']);
});

test('a build that does not answer --version with its version is not handed the box', async (t) => {
  const s = await setUp(t, {});
  s.answerVersion({
    code: 1,
    stdout: '',
    stderr: 'SyntaxError: Unexpected token',
    timedOut: false,
  });
  await assert.rejects(
    s.updater.handOver(s.build, 'V1.9'),
    /--version" of the new build failed \(exit 1\): SyntaxError/,
  );
  assert.equal(s.started.length, 0);
  assert.deepEqual(s.exits, [], 'the agent keeps running');
  await assert.rejects(readFile(selfUpdatePath(s.settings)), { code: 'ENOENT' });
});

test('a folder that is not a boxkeeper build is refused with its path', async (t) => {
  const s = await setUp(t, {});
  await writeFile(
    join(s.build, 'package.json'),
    JSON.stringify({ name: 'other', version: '1.0.0' }),
  );
  await assert.rejects(s.updater.handOver(s.build, 'V1.9'), (err: Error) =>
    err.message.startsWith(`${s.build}: not a boxkeeper build`),
  );
  assert.equal(s.started.length, 0);
});

test('confirm: the running version must be the build’s; then the record is removed', async (t) => {
  const s = await setUp(t, {});
  await s.updater.handOver(s.build, 'V1.9');
  // This process still runs 0.1.0: the new agent did not come up.
  await assert.rejects(
    s.updater.confirm(s.build),
    /the running agent is 0\.1\.0; the update carried 0\.2\.0/,
  );
  assert.ok(await nodePatchFs.exists(selfUpdatePath(s.settings)), 'the record stays');
});

test('confirm once the new version runs: the record is removed', async (t) => {
  const s = await setUp(t, {});
  await s.updater.handOver(s.build, 'V1.9');
  s.running.version = '0.2.0';
  await s.updater.confirm(s.build);
  assert.equal(await nodePatchFs.exists(selfUpdatePath(s.settings)), false);
});
