// Crash safety of the update lifecycle, run by test/integration/update-crash-*.test.ts: the
// agent is killed (SIGKILL) when each effect starts and between the fsync and the rename of
// patch.meta writes, then started again. Every run must converge — fully updated (or, in the failing scenario, fully rolled back), the database intact
// with each SQL script applied exactly once, the services running, exactly the paused tasks
// resumed — with no temp files left.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { readdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { TestContext } from 'node:test';
import { buildStandinJar } from '../../fixtures/box/generate.ts';
import { simKeyPair, type Scenario } from '../../fixtures/cloud-sim/server.ts';
import type { UpdateStatus } from '../../services/update/update-engine.ts';
import { bundleChild, type ChildBundle } from './child-bundle.ts';
import { childEnv, REPO, setupE2E, waitUntil, type E2E } from './cli.ts';
import { appVersion, dbQuery, tempFiles } from './update.ts';

const CHILD = join(REPO, 'test', 'helpers', 'update-crash-child.ts');
const SETTINGS = {
  timer: { versionCheck: '3600' },
  update: {
    enabled: 'on',
    check_jitter: '0',
    health_timeout: '20',
    health_settle: '0.5',
    calls_retry: '1',
    retry_delay: '0.3',
  },
};

interface ChildResult {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

function runChild(
  child: ChildBundle,
  settings: string,
  env: Record<string, string>,
): Promise<ChildResult> {
  return new Promise((resolve) => {
    const proc = spawn(process.execPath, [child.file, settings], {
      env: childEnv(env),
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    proc.stdout.setEncoding('utf8').on('data', (d: string) => (stdout += d));
    proc.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
    const timer = setTimeout(() => proc.kill('SIGKILL'), 120_000);
    proc.on('close', (code, signal) => {
      clearTimeout(timer);
      resolve({ code, signal, stdout, stderr });
    });
  });
}

const sha = async (p: string) =>
  createHash('sha256')
    .update(await readFile(p))
    .digest('hex');

// Signed cases: the box trusts KEY; V1.8 and V1.9 carry counters 10 and 11.
const KEY = simKeyPair();

async function scenario(failSecond: boolean, signed = false): Promise<Scenario> {
  const sign = (counter: number) => (signed ? { sign: { ...KEY, counter } } : {});
  return {
    upgradeMark: 2,
    versions: [
      { versionNum: 'V1.7' },
      {
        versionNum: 'V1.8',
        files: {
          'icb-box.jar': await buildStandinJar({ version: 'V1.8' }),
          'data/001.sql':
            "BEGIN TRANSACTION;\nCREATE TABLE flow (id INTEGER PRIMARY KEY, v TEXT);\nINSERT INTO flow (v) VALUES ('v18');\nCOMMIT;\n",
        },
        argumentConfigMap: { citynum: '010' },
        ...sign(10),
      },
      {
        versionNum: 'V1.9',
        files: {
          'icb-box.jar': await buildStandinJar({ version: 'V1.9' }),
          'data/002.sql': failSecond
            ? "BEGIN TRANSACTION;\nINSERT INTO flow (v) VALUES ('v19');\nINSERT INTO missing_table VALUES (1);\nCOMMIT;\n"
            : "BEGIN TRANSACTION;\nINSERT INTO flow (v) VALUES ('v19');\nCOMMIT;\n",
        },
        argumentConfigMap: { outnum: '9' },
        ...sign(11),
      },
    ],
  };
}

export interface Case {
  name: string;
  env: Record<string, string>;
  failSecond: boolean;
  /** The patches are signed and the box has the key: the counter file must converge too. */
  signed?: boolean;
  /** Before the first run. */
  before?: (e: E2E) => Promise<void>;
  /** Between the killed run and the restart. */
  between?: (e: E2E) => Promise<void>;
  /** More checks after convergence. */
  check?: (e: E2E) => Promise<void>;
}

const SUCCESS_EFFECTS = [
  'checkVersion',
  'downloadPatch',
  'downloadPatch:2',
  'admitVersions',
  'listTasks',
  'pauseTasks',
  'checkCalls',
  'stopServices',
  'backup',
  'applySql',
  'applySql:2',
  'replaceFiles',
  'mergeSettings',
  'applyConfig',
  'applyConfig:2',
  'finalizeConfig',
  'startServices',
  'resumeTasks',
  'commitSnapshot',
];
const SUCCESS_STATES = [
  'checking',
  'downloading',
  'installing.admitting',
  'installing.listingTasks',
  'installing.pausingTasks',
  'installing.stoppingServices',
  'installing.backingUp',
  'installing.applying',
  'installing.finalizing',
  'installing.startingServices',
  'installing.resumingTasks',
  'installing.committing',
  'idle',
];
// Killed after the effect did its work but before the result was recorded: it runs again.
const AFTER_EFFECTS = [
  'pauseTasks',
  'backup',
  'applySql',
  'applySql:2',
  'replaceFiles:2',
  'applyConfig',
  'finalizeConfig',
  'resumeTasks',
  'commitSnapshot',
];
const FAILURE_EFFECTS = ['applySql:2', 'rollbackSnapshot', 'releaseServices', 'resumeTasks'];
const FAILURE_STATES = [
  'rollingBack.restoring',
  'rollingBack.releasingServices',
  'rollingBack.resumingTasks',
  'awaitingInstall',
];

/**
 * The stand-in app answers with the expected version. Generous: the suite may share the machine
 * with other work; the last answer seen is in the message, to tell "not up" from "old version".
 */
async function untilAppVersion(e: E2E, version: string, name: string): Promise<void> {
  let last: string | undefined;
  await waitUntil(
    async () => (last = await appVersion(e)) === version,
    90_000,
    `${name}: ${version} running`,
    () => `the app last answered ${last ?? 'nothing'}`,
  );
}

// Three groups of about 20 cases, one test file each, so that the test runner can spread them
// over its slots (and the other files) instead of running one long file at the end.

/** Killed as each effect of a successful two-version update starts. */
export const KILL_AT_EFFECT_CASES: Case[] = SUCCESS_EFFECTS.map((c) => ({
  name: `kill at ${c}`,
  env: { CRASH_AT: c },
  failSecond: false,
}));

/** Killed between the fsync and the rename of each patch.meta write, succeeding and failing. */
export const KILL_BEFORE_RENAME_CASES: Case[] = [
  ...SUCCESS_STATES.map((s) => ({
    name: `kill before the rename into ${s}`,
    env: { CRASH_BEFORE_RENAME: s },
    failSecond: false,
  })),
  ...FAILURE_STATES.map((s) => ({
    name: `failing SQL, kill before the rename into ${s}`,
    env: { CRASH_BEFORE_RENAME: s },
    failSecond: true,
  })),
];

/** Killed after effects, in a rollback, with calls active, with patch.meta lost, and signed. */
export const KILL_AFTER_AND_ROLLBACK_CASES: Case[] = [
  ...AFTER_EFFECTS.map((c) => ({
    name: `kill after ${c}`,
    env: { CRASH_AFTER: c },
    failSecond: false,
  })),
  {
    name: 'failing SQL, kill after rollbackSnapshot',
    env: { CRASH_AFTER: 'rollbackSnapshot' },
    failSecond: true,
  },
  {
    // Calls active: tasks are given back (killed there), then the install goes through.
    name: 'active calls, kill while giving the tasks back',
    env: { CRASH_AT: 'resumeTasks' },
    failSecond: false,
    before: (e) => e.box.setFsBehaviour({ activeCalls: 2 }),
    between: (e) => e.box.setFsBehaviour({ activeCalls: 0 }),
  },
  {
    // Killed mid-install, then patch.meta is lost: the box is reconciled from the
    // install-in-progress marker (rolled back to the backup, services stopped first), and the
    // mandatory update, still offered, is installed again from a clean box.
    name: 'kill mid-install, patch.meta corrupted: reconciled, then installed',
    env: { CRASH_AT: 'applySql:2' },
    failSecond: false,
    between: async (e) => {
      await writeFile(join(e.box.boxRoot, 'patch', 'patch.meta'), '{"format": 1, "snapsh');
    },
    check: async (e) => {
      const patch = await readdir(join(e.box.boxRoot, 'patch'));
      assert.ok(
        patch.some((n) => n.startsWith('patch.meta.rejected-')),
        patch.join(', '),
      );
      const trace = await readdir(join(e.agentData, 'traces'));
      const lines = (
        await Promise.all(trace.map((f) => readFile(join(e.agentData, 'traces', f), 'utf8')))
      ).join('');
      assert.match(lines, /"effect":"reconcile"/);
      assert.match(lines, /"effect":"rollbackSnapshot"/, 'the interrupted install was undone');
    },
  },
  ...FAILURE_EFFECTS.map((c) => ({
    name: `failing SQL, kill at ${c}`,
    env: { CRASH_AT: c },
    failSecond: true,
  })),
  // The anti-rollback counter (patch-counter.json) is written at admission and at commit.
  ...['admitVersions', 'commitSnapshot'].flatMap((effect) => [
    {
      name: `signed, kill at ${effect}`,
      env: { CRASH_AT: effect },
      failSecond: false,
      signed: true,
    },
    {
      name: `signed, kill after ${effect}`,
      env: { CRASH_AFTER: effect },
      failSecond: false,
      signed: true,
    },
  ]),
  {
    name: 'signed, failing SQL, kill after rollbackSnapshot',
    env: { CRASH_AFTER: 'rollbackSnapshot' },
    failSecond: true,
    signed: true,
  },
];

/**
 * What a failed case leaves to read: each start of the stand-in app (pid, version; a start that
 * found its port taken is there too) and the agent's lines about Java.
 */
async function evidence(e: E2E): Promise<string> {
  const starts = await readFile(join(e.box.boxRoot, 'standin-app.log'), 'utf8').catch(() => '');
  const logs = await readdir(e.logsDir).catch(() => [] as string[]);
  const lines = (
    await Promise.all(logs.map((f) => readFile(join(e.logsDir, f), 'utf8').catch(() => '')))
  )
    .join('')
    .split('\n')
    .filter((l) => l.includes('"service":"java"') || l.includes('health'));
  return `\n-- stand-in app starts:\n${starts}-- agent on java:\n${lines.slice(-25).join('\n')}`;
}

async function runCase(child: ChildBundle, c: Case): Promise<void> {
  const e = await setupE2E({
    extraSettings:
      c.signed === true ? { ...SETTINGS, security: { patch_keys: KEY.publicKey } } : SETTINGS,
    sim: { scenario: await scenario(c.failSecond, c.signed) },
  });
  try {
    await checkCase(child, c, e);
  } catch (err) {
    (err as Error).message += await evidence(e);
    throw err;
  } finally {
    await e.close();
  }
}

async function checkCase(child: ChildBundle, c: Case, e: E2E): Promise<void> {
  {
    const before = {
      jar: await sha(e.box.jarPath),
      config: await sha(e.box.configIniPath),
      db: JSON.stringify(await dbQuery(e.box.dbPath, 'SELECT * FROM task ORDER BY id')),
    };
    await c.before?.(e);
    const first = await runChild(child, e.box.settingsPath, c.env);
    assert.equal(
      first.signal,
      'SIGKILL',
      `${c.name}: the crash point was not reached (exit ${String(first.code)})\n${first.stderr.slice(-2000)}`,
    );
    await c.between?.(e);
    const second = await runChild(child, e.box.settingsPath, {});
    assert.equal(
      second.code,
      0,
      `${c.name}: the restart did not converge\n${second.stderr.slice(-3000)}`,
    );
    const result = JSON.parse(second.stdout.trim().split('\n').pop() ?? '{}') as {
      status: UpdateStatus;
    };
    const u = result.status;

    const integrity = await dbQuery<{ integrity_check: string }>(
      e.box.dbPath,
      'PRAGMA integrity_check',
    );
    assert.equal(integrity[0]?.integrity_check, 'ok', `${c.name}: DB integrity`);
    const ops = e.sim.records.taskOps;
    const paused = new Set(
      ops.filter((o) => o.op === 'pause').flatMap((o) => o.taskNos.map(String)),
    );
    const resumed = new Set(
      ops.filter((o) => o.op === 'resume').flatMap((o) => o.taskNos.map(String)),
    );
    assert.ok(paused.size > 0, `${c.name}: tasks were paused`);
    assert.deepEqual(
      [...resumed].sort(),
      [...paused].sort(),
      `${c.name}: exactly the paused tasks resumed`,
    );

    if (c.failSecond) {
      assert.match(
        u.lastResult ?? '',
        /^install failed; rolled back/,
        `${c.name}: ${JSON.stringify(u)}`,
      );
      assert.equal(await sha(e.box.jarPath), before.jar, `${c.name}: jar rolled back`);
      assert.equal(
        await sha(e.box.configIniPath),
        before.config,
        `${c.name}: configuration.ini rolled back`,
      );
      const tables = await dbQuery<{ name: string }>(
        e.box.dbPath,
        "SELECT name FROM sqlite_master WHERE name = 'flow'",
      );
      assert.equal(tables.length, 0, `${c.name}: V1.8's table rolled back`);
      await untilAppVersion(e, 'V1.7', c.name);
    } else {
      assert.equal(u.lastResult, 'installed V1.8, V1.9', `${c.name}: ${JSON.stringify(u)}`);
      const rows = await dbQuery<{ v: string }>(e.box.dbPath, 'SELECT v FROM flow ORDER BY id');
      assert.deepEqual(
        rows.map((r) => r.v),
        ['v18', 'v19'],
        `${c.name}: each script applied once`,
      );
      assert.match(await readFile(e.box.configIniPath, 'utf8'), /^version = V1\.9$/m);
      await untilAppVersion(e, 'V1.9', c.name);
    }
    assert.equal(
      JSON.stringify(await dbQuery(e.box.dbPath, 'SELECT * FROM task ORDER BY id')),
      before.db,
    );
    await c.check?.(e);
    if (c.signed === true) {
      const counters = JSON.parse(
        await readFile(join(e.agentData, 'patch-counter.json'), 'utf8'),
      ) as { installed: { counter: number } | null; applying: unknown };
      assert.equal(counters.installed?.counter ?? null, c.failSecond ? null : 11, c.name);
      assert.equal(counters.applying, null, `${c.name}: nothing left applying`);
    }
    assert.deepEqual(
      await tempFiles(e.box.root, { parts: true }),
      [],
      `${c.name}: temp files left`,
    );
  }
}

/**
 * Runs `cases`, two boxes at a time (the suite runs beside it): each case is two agent runs
 * against its own box and simulator. Every failure is collected, so one run names them all.
 * UPDATE_CRASH_ONLY=<text> runs the matching cases only (while debugging).
 */
export async function runCrashCases(t: TestContext, cases: Case[]): Promise<void> {
  const only = process.env.UPDATE_CRASH_ONLY;
  const queue = cases.filter((c) => only === undefined || c.name.includes(only));
  const child = await bundleChild(CHILD);
  const failures: string[] = [];
  try {
    const worker = async () => {
      for (let c = queue.shift(); c !== undefined; c = queue.shift()) {
        const name = c.name;
        await runCase(child, c).catch((err: unknown) =>
          failures.push(`${name}: ${(err as Error).message}`),
        );
      }
    };
    await Promise.all([worker(), worker()]);
  } finally {
    await child.remove();
  }
  t.diagnostic(`${cases.length} crash cases`);
  assert.deepEqual(failures, []);
}
