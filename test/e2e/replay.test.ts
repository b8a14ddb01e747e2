// `boxkeeper replay`: an update interrupted mid-install (the agent killed) is re-run from its
// patch.meta against a copy of the box, printing its transitions; the original box is untouched.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { cp, mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { test } from 'node:test';
import { WebSocketServer } from 'ws';
import { buildStandinJar } from '../../fixtures/box/generate.ts';
import type { UpdateStatus } from '../../services/update/update-engine.ts';
import { childEnv, REPO, runCli, setupE2E, TSX_LOADER } from '../helpers/cli.ts';

function crashChild(settings: string, env: Record<string, string>) {
  return new Promise<{ signal: NodeJS.Signals | null; stderr: string }>((resolve) => {
    const child = spawn(
      process.execPath,
      ['--import', TSX_LOADER, join(REPO, 'test', 'helpers', 'update-crash-child.ts'), settings],
      { env: childEnv(env), stdio: ['ignore', 'ignore', 'pipe'] },
    );
    let stderr = '';
    child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
    child.on('close', (_code, signal) => resolve({ signal, stderr }));
  });
}

/** A box whose agent was killed mid-install, and a copy of it to replay against. */
async function interrupted(t: { after: (fn: () => Promise<void>) => void }) {
  const jar18 = await buildStandinJar({ version: 'V1.8' });
  const e = await setupE2E({
    extraSettings: {
      timer: { versionCheck: '3600' },
      update: { enabled: 'on', check_jitter: '0', health_timeout: '20', health_settle: '0.2' },
    },
    sim: {
      scenario: {
        upgradeMark: 2,
        versions: [
          { versionNum: 'V1.7' },
          {
            versionNum: 'V1.8',
            files: {
              'icb-box.jar': jar18,
              'data/001.sql': 'BEGIN TRANSACTION;\nCREATE TABLE flow (id INTEGER);\nCOMMIT;\n',
            },
            argumentConfigMap: { callboxPassword: 's3cret-v18' },
          },
        ],
      },
    },
  });
  const copy = await mkdtemp(join(tmpdir(), 'bk-replay-copy-'));
  t.after(async () => {
    await e.close();
    await rm(copy, { recursive: true, force: true });
  });
  const crash = await crashChild(e.box.settingsPath, { CRASH_AT: 'replaceFiles' });
  assert.equal(crash.signal, 'SIGKILL', crash.stderr.slice(-1500));
  const metaPath = join(e.box.boxRoot, 'patch', 'patch.meta');
  const metaBefore = await readFile(metaPath, 'utf8');
  const jarBefore = await readFile(e.box.jarPath);
  const killedIn = JSON.parse(metaBefore) as { snapshot: { value: unknown } };
  assert.deepEqual(killedIn.snapshot.value, { installing: 'applying' });

  const boxCopy = join(copy, 'box');
  await cp(e.box.boxRoot, boxCopy, { recursive: true, verbatimSymlinks: true });
  const replay = (extra: string[] = []) =>
    runCli(
      [
        'replay',
        metaPath,
        '--box',
        boxCopy,
        '--settings',
        join(boxCopy, 'RemoteManagerDist', 'settings', 'settings.ini'),
        ...extra,
      ],
      { timeoutMs: 60_000 },
    );
  return { e, metaPath, metaBefore, jarBefore, jar18, boxCopy, replay };
}

test('replay re-runs an interrupted install from its patch.meta on a copy of the box', async (t) => {
  const { e, metaPath, metaBefore, jarBefore, jar18, boxCopy, replay } = await interrupted(t);
  const r = await replay();
  assert.equal(r.code, 0, r.stderr + r.stdout.slice(-2000));
  const lines = r.stdout
    .trim()
    .split('\n')
    .map((l) => JSON.parse(l) as Record<string, unknown>);
  const effects = lines.filter((l) => typeof l.effect === 'string').map((l) => l.effect);
  assert.deepEqual(
    effects.slice(0, 2),
    ['replaceFiles', 'mergeSettings'],
    'resumes at the step it was killed in',
  );
  assert.ok(effects.includes('commitSnapshot'), effects.join(', '));
  assert.ok(
    lines.some((l) => l.replay === 'services would be started and checked'),
    'services are not touched',
  );
  assert.ok(
    lines.some((l) => typeof l.state === 'string'),
    'transitions are printed',
  );
  const final = lines.find((l) => l.final !== undefined)?.final as UpdateStatus;
  assert.equal(final.lastResult, 'installed V1.8');
  assert.deepEqual(await readFile(join(boxCopy, 'icb-box.jar')), jar18, 'the copy is updated');
  assert.deepEqual(await readFile(e.box.jarPath), jarBefore, 'the original box is untouched');
  assert.equal(await readFile(metaPath, 'utf8'), metaBefore, 'the original patch.meta too');
});

test('--inspect streams to a Stately inspector, masks secrets, and never keeps the process alive', async (t) => {
  const { replay } = await interrupted(t);
  const server = new WebSocketServer({ host: '127.0.0.1', port: 0 });
  t.after(() => new Promise<void>((r) => server.close(() => r())));
  await new Promise((r) => server.once('listening', r));
  const port = (server.address() as AddressInfo).port;
  const messages: string[] = [];
  server.on('connection', (ws) =>
    ws.on('message', (m: Buffer) => messages.push(m.toString('utf8'))),
  );
  const r = await replay(['--inspect', `ws://127.0.0.1:${port}`]);
  assert.equal(r.code, 0, r.stderr);
  assert.equal(r.timedOut, false);
  const types = new Set(messages.map((m) => (JSON.parse(m) as { type: string }).type));
  assert.ok(types.has('@xstate.actor') && types.has('@xstate.snapshot'), [...types].join(', '));
  assert.ok(
    messages.some((m) => m.includes('callboxPassword')),
    'contexts are streamed',
  );
  assert.ok(!messages.some((m) => m.includes('s3cret-v18')), 'secrets are masked');

  // Nobody listening: the inspector retries every 5 s, the command still ends.
  server.close();
  const started = Date.now();
  const alone = await replay(['--inspect', `ws://127.0.0.1:${port}`]);
  assert.equal(alone.code, 0, alone.stderr);
  assert.ok(Date.now() - started < 30_000, `took ${Date.now() - started} ms`);
});
