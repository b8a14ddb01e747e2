// patch.meta on a real disk (temp dir, the real PatchFs): a missing file starts fresh, a file the
// Python tool wrote is imported and set aside, the fork's format is set aside, anything unusable
// is quarantined and the machine reconciles first, and a file boxkeeper wrote restores.
import assert from 'node:assert/strict';
import { mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, test, type TestContext } from 'node:test';
import { createActor, fromPromise, type PromiseActorLogic } from 'xstate';
import { nodePatchFs } from '../../adapters/patch-fs.ts';
import { statePath, withEffects, type UpdatePolicy } from '../../machines/update.machine.ts';
import { DurableStore, type Envelope } from '../../services/update/durable.ts';
import {
  loadPatchMeta,
  MACHINE_ID,
  MACHINE_VERSION,
  resumeProblems,
  type LoadedMeta,
  type MetaFiles,
  type PersistedSnapshot,
  writePatchMeta,
} from '../../services/update/update-store.ts';

const POLICY: UpdatePolicy = {
  checkIntervalMs: 60_000,
  checkJitterMs: 0,
  healthTimeoutMs: 30_000,
  healthSettleMs: 1_000,
  callsRetryMs: 5_000,
  retryDelayMs: 5_000,
  maxFailedInstalls: 3,
};

const NOW = new Date('2026-05-04T03:02:01.123Z');
const STAMP = '20260504T030201Z';
const io: MetaFiles = { fs: nodePatchFs, now: () => NOW };

// The example of §4 of the reference, byte for byte as the Python tool writes it.
const PYTHON_META =
  '{"state": 3, "list": [{"version_code": "9e9763d2baf4477180991667d19fe35d", "version_num": "V1.8", "file_MD5": "cd9f1d57fd7b792587d29e7826f4df0e", "remark": "\\u81ea\\u66f4\\u65b0\\u6d4b\\u8bd5", "status": 2, "argument_config_map": {}}], "retries": 5, "mark": 1, "self_update_version": null}';

const FORK_META = JSON.stringify({
  state: { 'py/object': 'misc.enumerators.PatchCyclePhase', value: 4 },
  list: [{ 'py/object': 'patching.patch_obj.PatchObject', version_num: 'V1.5' }],
  retries: 5,
  mark: 2,
});

async function tempDir(t: TestContext): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'bk-meta-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  return dir;
}

// ---- the update machine with fake effects (each invocation recorded, settled on demand) ----

interface Call {
  src: string;
  input: unknown;
  resolve: (output: unknown) => void;
}

function withFakes() {
  const calls: Call[] = [];
  const fake = <O, I>(src: string): PromiseActorLogic<O, I> =>
    fromPromise<O, I>(
      ({ input }) =>
        new Promise<O>((resolve) => {
          calls.push({ src, input, resolve: (o) => resolve(o as O) });
        }),
    );
  const machine = withEffects((src) => fake(src));

  const last = (src: string): Call => {
    const call = calls.filter((c) => c.src === src).at(-1);
    assert.ok(call !== undefined, `${src} was invoked`);
    return call;
  };
  return { machine, calls, last };
}

const settle = () => new Promise<void>((resolve) => setImmediate(resolve));

/** Starts the machine the way the engine does for anything but a restore. */
async function startFrom(loaded: LoadedMeta) {
  assert.ok(loaded.kind !== 'restored');
  const fx = withFakes();
  const actor = createActor(fx.machine, { input: loaded.input });
  const errors: unknown[] = [];
  actor.subscribe({ error: (e) => errors.push(e) });
  actor.start();
  await settle();
  assert.deepEqual(errors, []);
  return { ...fx, actor, state: () => statePath(actor.getSnapshot().value) };
}

/** A patch.meta boxkeeper wrote: a running system persisted through the real DurableStore. */
async function writeRunningSystem(path: string) {
  const fx = withFakes();
  const store = new DurableStore({
    machineId: MACHINE_ID,
    machineVersion: MACHINE_VERSION,
    write: (text) => writePatchMeta(nodePatchFs, path, text),
    onFatal: (err) => assert.fail(String(err)),
    now: () => NOW,
  });
  const actor = createActor(fx.machine, { input: { policy: POLICY }, inspect: store.inspect });
  store.attach(actor);
  actor.start();
  actor.send({ type: 'CHECK' });
  await settle();
  fx.last('checkVersion').resolve({
    at: 1_000,
    upgradeMark: 1,
    upgradeList: [
      {
        versionCode: 'aaa',
        versionNum: 'V1.8',
        fileMd5: 'cd9f1d57fd7b792587d29e7826f4df0e',
        remark: '',
        argumentConfigMap: {},
      },
    ],
  });
  await settle();
  assert.equal(statePath(actor.getSnapshot().value), 'downloading');
  await store.flush();
  store.close();
  const downloadInput = fx.last('downloadPatch').input;
  actor.stop();
  return { seq: store.lastSeq, downloadInput };
}

async function names(dir: string): Promise<string[]> {
  return (await readdir(dir)).sort();
}

describe('loadPatchMeta', () => {
  test('no patch.meta: a fresh start, and temp files of an interrupted write are removed', async (t) => {
    const dir = await tempDir(t);
    const path = join(dir, 'patch.meta');
    await writeFile(join(dir, '.patch.meta.bk-tmp-4242-0badcafe'), '{"format": 1, "se');
    await writeFile(join(dir, '.other.bk-tmp-4242-0badcafe'), 'not ours');
    const loaded = await loadPatchMeta(path, POLICY, io);
    assert.equal(loaded.kind, 'fresh');
    assert.deepEqual(loaded.input, { policy: POLICY });
    assert.equal(loaded.seq, 0);
    assert.deepEqual(loaded.notes, ['removed 1 temp file(s) of an interrupted write']);
    assert.deepEqual(await names(dir), ['.other.bk-tmp-4242-0badcafe']);
    const run = await startFrom(loaded);
    assert.equal(run.state(), 'idle');
    run.actor.stop();
  });

  test('a Python-era patch.meta is imported and the original set aside', async (t) => {
    const dir = await tempDir(t);
    const path = join(dir, 'patch.meta');
    await writeFile(path, PYTHON_META);
    const loaded = await loadPatchMeta(path, POLICY, io);
    assert.equal(loaded.kind, 'imported');
    assert.deepEqual(loaded.input, {
      policy: POLICY,
      imported: {
        phase: 'PENDING',
        versions: [
          {
            versionCode: '9e9763d2baf4477180991667d19fe35d',
            versionNum: 'V1.8',
            fileMd5: 'cd9f1d57fd7b792587d29e7826f4df0e',
            remark: '自更新测试',
            argumentConfigMap: {},
            status: 'DOWNLOADED',
          },
        ],
        retries: 5,
        mark: 1,
      },
    });
    assert.match(loaded.notes.join('\n'), /imported the Python tool's patch\.meta: phase PENDING/);
    assert.match(loaded.notes.join('\n'), new RegExp(`kept as patch\\.meta\\.python-${STAMP}`));
    assert.deepEqual(await names(dir), [`patch.meta.python-${STAMP}`]);
    assert.equal(await readFile(join(dir, `patch.meta.python-${STAMP}`), 'utf8'), PYTHON_META);

    // An optional update (mark 1), downloaded: it waits for the operator.
    const run = await startFrom(loaded);
    assert.equal(run.state(), 'awaitingInstall');
    const version = run.actor.getSnapshot().context.versions[0];
    assert.equal(version?.status, 'DOWNLOADED');
    assert.equal(run.last('waitUntil').src, 'waitUntil');
    assert.ok(!run.calls.some((c) => c.src === 'downloadPatch'), 'nothing is downloaded again');
    run.actor.stop();
  });

  test('an imported mandatory update (mark 2) is installed straight away', async (t) => {
    const dir = await tempDir(t);
    const path = join(dir, 'patch.meta');
    await writeFile(path, PYTHON_META.replace('"mark": 1', '"mark": 2'));
    const loaded = await loadPatchMeta(path, POLICY, io);
    assert.equal(loaded.kind, 'imported');
    const run = await startFrom(loaded);
    assert.equal(run.state(), 'installing.admitting');
    assert.deepEqual(
      (run.last('admitVersions').input as { versions: Array<{ versionNum: string }> }).versions.map(
        (v) => v.versionNum,
      ),
      ['V1.8'],
    );
    run.last('admitVersions').resolve({ at: 1 });
    await settle();
    assert.equal(run.state(), 'installing.listingTasks');
    assert.deepEqual(run.last('listTasks').input, {});
    run.actor.stop();
  });

  test('a half-downloaded version restarts its download; self_update_version is noted', async (t) => {
    const dir = await tempDir(t);
    const path = join(dir, 'patch.meta');
    const meta = JSON.parse(PYTHON_META) as {
      state: number;
      list: Array<{ status: number }>;
      self_update_version: string | null;
    };
    meta.state = 2; // DOWNLOAD
    meta.list[0] = { ...meta.list[0], status: 1 }; // DOWNLOADING
    meta.self_update_version = 'V1.8';
    await writeFile(path, JSON.stringify(meta));
    const loaded = await loadPatchMeta(path, POLICY, io);
    assert.equal(loaded.kind, 'imported');
    assert.match(loaded.notes.join('\n'), /self_update_version V1\.8 is not carried over/);
    const run = await startFrom(loaded);
    assert.equal(run.state(), 'downloading');
    assert.equal(
      (run.last('downloadPatch').input as { versionCode: string }).versionCode,
      '9e9763d2baf4477180991667d19fe35d',
    );
    run.actor.stop();
  });

  test('SELF_UPDATE_COMPLETE with every version INSTALLED (the switch-over) finishes the install: no backup, nothing applied, paused tasks adopted', async (t) => {
    const dir = await tempDir(t);
    const path = join(dir, 'patch.meta');
    // What the Python updater writes back: state 7, the version INSTALLED, self_update_version kept.
    await writeFile(
      path,
      PYTHON_META.replace('"state": 3', '"state": 7')
        .replace('"status": 2', '"status": 3')
        .replace('"self_update_version": null', '"self_update_version": "V1.8"'),
    );
    const loaded = await loadPatchMeta(path, POLICY, io);
    assert.equal(loaded.kind, 'imported');
    const run = await startFrom(loaded);
    assert.equal(run.state(), 'installing.finalizing');
    assert.equal(run.actor.getSnapshot().context.adoptPaused, true);
    run.last('finalizeConfig').resolve({ at: 1_000 });
    await settle();
    assert.equal(run.state(), 'installing.startingServices');
    assert.deepEqual(run.last('startServices').input, { deadline: 31_000, settleMs: 1_000 });
    run.last('startServices').resolve({ at: 2_000 });
    await settle();
    assert.equal(run.state(), 'installing.adoptingTasks');
    assert.deepEqual(run.last('listPausedTasks').input, { until: 32_000 });
    run.last('listPausedTasks').resolve({ at: 2_100, tasks: [101, 'x'] });
    await settle();
    assert.equal(run.state(), 'installing.resumingTasks');
    assert.deepEqual(run.last('resumeTasks').input, { tasks: [101, 'x'] });
    run.last('resumeTasks').resolve({ at: 2_200 });
    await settle();
    run.last('commitSnapshot').resolve({ at: 2_300, version: 'V1.8' });
    await settle();
    assert.equal(run.state(), 'idle');
    const c = run.actor.getSnapshot().context;
    assert.equal(c.lastResult, 'installed V1.8');
    assert.equal(c.adoptPaused, false);
    assert.equal(c.pausedTasks, null);
    const srcs = run.calls.map((x) => x.src);
    for (const never of [
      'listTasks',
      'pauseTasks',
      'stopServices',
      'backup',
      'applySql',
      'replaceFiles',
    ])
      assert.ok(!srcs.includes(never), `${never} is not run`);
    run.actor.stop();
  });

  test('an imported FILES_UPDATED installs from the top and then also resumes the tasks it finds paused', async (t) => {
    const dir = await tempDir(t);
    const path = join(dir, 'patch.meta');
    await writeFile(path, PYTHON_META.replace('"state": 3', '"state": 5'));
    const run = await startFrom(await loadPatchMeta(path, POLICY, io));
    assert.equal(run.state(), 'installing.admitting');
    run.last('admitVersions').resolve({ at: 1 });
    await settle();
    assert.equal(run.state(), 'installing.listingTasks');
    run.last('listTasks').resolve({ at: 1, tasks: [7] });
    await settle();
    run.last('pauseTasks').resolve({ at: 2 });
    await settle();
    run.last('checkCalls').resolve({ at: 3, active: 0 });
    await settle();
    run.last('stopServices').resolve({ at: 4 });
    await settle();
    run.last('backup').resolve({ at: 5, version: 'pre-V1.8.1' });
    await settle();
    assert.equal(run.state(), 'installing.applying');
    run.actor.stop();
    assert.equal(run.actor.getSnapshot().context.adoptPaused, true);
  });

  test('a version-1 envelope is migrated (adoptPaused added) and restores', async (t) => {
    const dir = await tempDir(t);
    const path = join(dir, 'patch.meta');
    await writeRunningSystem(path);
    const env = JSON.parse(await readFile(path, 'utf8')) as Envelope<PersistedSnapshot>;
    env.machineVersion = '1+patch1';
    delete env.snapshot.context.adoptPaused;
    await writeFile(path, JSON.stringify(env));
    const loaded = await loadPatchMeta(path, POLICY, io);
    assert.equal(loaded.kind, 'restored', loaded.notes.join('\n'));
    assert.equal(loaded.snapshot.context.adoptPaused, false);
  });

  test('a version-3 envelope is migrated (restored added) and restores', async (t) => {
    const dir = await tempDir(t);
    const path = join(dir, 'patch.meta');
    await writeRunningSystem(path);
    const env = JSON.parse(await readFile(path, 'utf8')) as Envelope<PersistedSnapshot>;
    env.machineVersion = '3+patch1';
    delete env.snapshot.context.restored;
    await writeFile(path, JSON.stringify(env));
    const loaded = await loadPatchMeta(path, POLICY, io);
    assert.equal(loaded.kind, 'restored', loaded.notes.join('\n'));
    assert.equal(loaded.snapshot.context.restored, null);
  });

  test("the fork's jsonpickle format is set aside and boxkeeper starts clean", async (t) => {
    const dir = await tempDir(t);
    const path = join(dir, 'patch.meta');
    await writeFile(path, FORK_META);
    const loaded = await loadPatchMeta(path, POLICY, io);
    assert.equal(loaded.kind, 'fresh');
    assert.deepEqual(loaded.input, { policy: POLICY });
    const note = loaded.notes.join('\n');
    assert.match(note, /jsonpickle object graph/);
    assert.match(note, /phases are numbered differently/);
    assert.match(
      note,
      new RegExp(`kept as patch\\.meta\\.fork-${STAMP}, starting from a clean state`),
    );
    assert.deepEqual(await names(dir), [`patch.meta.fork-${STAMP}`]);
    assert.equal(await readFile(join(dir, `patch.meta.fork-${STAMP}`), 'utf8'), FORK_META);
  });

  test('a patch.meta boxkeeper wrote from a running system restores as it was', async (t) => {
    const dir = await tempDir(t);
    const path = join(dir, 'patch.meta');
    const written = await writeRunningSystem(path);
    const loaded = await loadPatchMeta(path, POLICY, io);
    assert.equal(loaded.kind, 'restored', loaded.notes.join('\n'));
    assert.equal(loaded.seq, written.seq);
    assert.deepEqual(loaded.notes, []);
    assert.equal(statePath(loaded.snapshot.value), 'downloading');
    assert.deepEqual(resumeProblems(loaded.snapshot), []);
    assert.deepEqual(await names(dir), ['patch.meta'], 'nothing set aside');

    // Restored, the version's download (in flight when it was written) runs again.
    const fx = withFakes();
    const actor = createActor(fx.machine, { snapshot: loaded.snapshot } as never);
    actor.start();
    await settle();
    assert.equal(statePath(actor.getSnapshot().value), 'downloading');
    assert.deepEqual(fx.last('downloadPatch').input, written.downloadInput);
    actor.stop();
  });

  test('a restored patch.meta runs with the policy of this start, not the saved one', async (t) => {
    const dir = await tempDir(t);
    const path = join(dir, 'patch.meta');
    await writeRunningSystem(path);
    const saved = JSON.parse(await readFile(path, 'utf8')) as Envelope<PersistedSnapshot>;
    assert.deepEqual(saved.snapshot.context.policy, POLICY);
    const changed = { ...POLICY, checkIntervalMs: 999_999_000, healthTimeoutMs: 5_000 };
    const loaded = await loadPatchMeta(path, changed, io);
    assert.equal(loaded.kind, 'restored', loaded.notes.join('\n'));
    assert.deepEqual(loaded.snapshot.context.policy, changed);
  });
});

describe('loadPatchMeta: an unusable patch.meta is quarantined and the box reconciled', () => {
  /** A valid envelope (a system downloading one version), changed by `spoil`. */
  async function envelope(t: TestContext, spoil: (e: Envelope<PersistedSnapshot>) => void) {
    const dir = await tempDir(t);
    const path = join(dir, 'patch.meta');
    await writeRunningSystem(path);
    const env = JSON.parse(await readFile(path, 'utf8')) as Envelope<PersistedSnapshot>;
    spoil(env);
    return { dir, path, text: JSON.stringify(env), seq: env.seq };
  }

  async function expectRecover(
    dir: string,
    path: string,
    text: string,
    why: RegExp,
    seq: number,
  ): Promise<void> {
    await writeFile(path, text);
    const loaded = await loadPatchMeta(path, POLICY, io);
    assert.equal(loaded.kind, 'recover', loaded.notes.join('\n'));
    assert.equal(loaded.seq, seq, 'the sequence continues after the rejected file');
    const reason = loaded.input.recover ?? '';
    assert.match(reason, why);
    assert.match(reason, new RegExp(`kept as patch\\.meta\\.rejected-${STAMP}`));
    assert.deepEqual(loaded.notes, [reason]);
    assert.deepEqual(await names(dir), [`patch.meta.rejected-${STAMP}`]);
    assert.equal(
      await readFile(join(dir, `patch.meta.rejected-${STAMP}`), 'utf8'),
      text,
      'the original bytes are kept',
    );

    const run = await startFrom(loaded);
    assert.equal(run.state(), 'reconciling', 'the box is reconciled before anything else');
    assert.deepEqual(run.last('reconcile').input, { reason });
    assert.equal(run.actor.getSnapshot().context.versions.length, 0);
    run.last('reconcile').resolve({ at: 5_000, backup: null, note: 'nothing was half-installed' });
    await settle();
    assert.equal(run.state(), 'idle');
    run.actor.stop();
  }

  test('corrupt JSON', async (t) => {
    const dir = await tempDir(t);
    await expectRecover(
      dir,
      join(dir, 'patch.meta'),
      '{"format": 1, "machineId": "update", "snap',
      /not JSON/,
      0,
    );
  });

  test('a valid envelope with a state this machine does not have', async (t) => {
    const e = await envelope(t, (env) => {
      env.snapshot.value = 'teleporting';
    });
    await expectRecover(e.dir, e.path, e.text, /state "teleporting" does not exist/, e.seq);
  });

  test('an envelope whose active invoke has no child (it would wait forever)', async (t) => {
    const e = await envelope(t, (env) => {
      // The version's own machine is downloading; its invoke goes missing.
      const version = Object.values(env.snapshot.children)[0];
      assert.ok(version !== undefined);
      version.snapshot.children = {};
    });
    await expectRecover(
      e.dir,
      e.path,
      e.text,
      /active invoke "download" has no restored child/,
      e.seq,
    );
  });

  test('an envelope whose root invoke has no child', async (t) => {
    const e = await envelope(t, (env) => {
      env.snapshot.value = 'idle';
    });
    await expectRecover(
      e.dir,
      e.path,
      e.text,
      /active invoke "waitForCheck" has no restored child/,
      e.seq,
    );
  });

  test('an envelope from a machine version this agent has no migration for', async (t) => {
    const e = await envelope(t, (env) => {
      env.machineVersion = '0+patch0';
    });
    await expectRecover(
      e.dir,
      e.path,
      e.text,
      /written by machine version 0\+patch0, this agent runs .* and has no migration/,
      e.seq,
    );
  });
});
