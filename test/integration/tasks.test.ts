// Which tasks run: asked of the (stand-in) box app over HTTP, else read from the real SQLite DB.
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test, type TestContext } from 'node:test';
import { createBoxAppClient } from '../../adapters/box-app.ts';
import { createLogger } from '../../adapters/logger.ts';
import { sqliteAdapter } from '../../adapters/sqlite.ts';
import { loadBoxConfig, readAppPort } from '../../services/agent/box-config.ts';
import { listUnfinishedTasks } from '../../services/update/tasks.ts';
import { createFixtureBox, type FixtureBox } from '../../fixtures/box/generate.ts';

const logger = createLogger({ level: 'fatal', console: 'none' }).logger;
const UNFINISHED = [101, 102, 103, 106]; // statuses 1, 2, 5 of the fixture's default tasks

async function makeBox(t: TestContext): Promise<FixtureBox> {
  const root = await mkdtemp(join(tmpdir(), 'bk-tasks-'));
  const box = await createFixtureBox({ root, hostAddr: 'http://127.0.0.1:9' });
  t.after(() => box.cleanup());
  return box;
}

async function startApp(t: TestContext, box: FixtureBox): Promise<ChildProcess> {
  const child = spawn(
    box.javaExe,
    ['-jar', box.jarPath, `--spring.config.location=${box.appYmlPath}`],
    {
      cwd: box.boxRoot,
      stdio: 'ignore',
    },
  );
  t.after(async () => {
    if (child.exitCode === null && child.signalCode === null) {
      child.kill('SIGTERM');
      await once(child, 'exit');
    }
  });
  const app = createBoxAppClient(box.appPort, 1000);
  for (let i = 0; i < 100 && !(await app.isReady()); i++)
    await new Promise((r) => setTimeout(r, 50));
  assert.equal(await app.isReady(), true, 'stand-in app became ready');
  return child;
}

function source(box: FixtureBox, dbPath = box.dbPath) {
  return {
    boxApp: createBoxAppClient(box.appPort, 1000),
    sqlite: sqliteAdapter,
    dbPath: () => dbPath,
    logger,
  };
}

test('the running box app answers the unfinished-task list', async (t) => {
  const box = await makeBox(t);
  await startApp(t, box);
  assert.deepEqual(await listUnfinishedTasks(source(box)), {
    tasks: UNFINISHED,
    source: 'box-app',
  });
  assert.deepEqual(await createBoxAppClient(box.appPort).listPausedTasks(), [104]);
});

test('an app without the task API (404) falls back to the box database', async (t) => {
  const box = await makeBox(t);
  await box.setAppBehaviour({ taskApi404: true });
  await startApp(t, box);
  assert.deepEqual(await listUnfinishedTasks(source(box)), {
    tasks: UNFINISHED,
    source: 'database',
  });
});

test('an app that is down also falls back to the database (the Python tool paused nothing)', async (t) => {
  const box = await makeBox(t);
  assert.equal(await createBoxAppClient(box.appPort).isReady(), false);
  assert.deepEqual(await listUnfinishedTasks(source(box)), {
    tasks: UNFINISHED,
    source: 'database',
  });
});

test('when both fail the error names both causes and the database is not created', async (t) => {
  const box = await makeBox(t);
  const missing = join(box.boxRoot, 'data', 'no-such-db');
  await assert.rejects(listUnfinishedTasks(source(box, missing)), (err: Error) => {
    assert.match(err.message, /box app \/task\/listUnFinishTaskNos failed/);
    assert.match(err.message, /no-such-db/);
    return true;
  });
  await assert.rejects(readFile(missing), { code: 'ENOENT' });
});

test('configuration.ini and application.yml of the box are read; problems name file and key', async (t) => {
  const box = await makeBox(t);
  const config = await loadBoxConfig(box.configIniPath, (p) => readFile(p));
  assert.equal(config.version, 'V1.7');
  assert.equal(config.appKey, 'test-app-key');
  assert.equal(config.freeswitch.callboxRealm, '127.0.0.1');
  assert.equal(config.dbFileName, 'ztdb-version1');
  assert.equal(await readAppPort(box.appYmlPath, (p) => readFile(p)), box.appPort);
  const broken = (await readFile(box.configIniPath, 'utf8')).replace(/^key = .*$/m, 'key =');
  await assert.rejects(
    loadBoxConfig('configuration.ini', () => Promise.resolve(Buffer.from(broken))),
    /configuration\.ini \[appkey\] key: missing or empty/,
  );
  await assert.rejects(
    readAppPort('application.yml', () => Promise.resolve(Buffer.from('server:\n  port: eighty\n'))),
    /application\.yml server\.port: expected a TCP port number, got "eighty"/,
  );
  await rm(box.appYmlPath);
  await assert.rejects(
    readAppPort(box.appYmlPath, (p) => readFile(p)),
    /application\.yml: file not found/,
  );
});
