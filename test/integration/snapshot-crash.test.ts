// Crash safety of the snapshot store: a child process runs commit, rollback or prune with the
// real adapters and is SIGKILLed at a chosen adapter call (test/helpers/snapshot-crash-child.ts);
// then the same command is run again here and the repository and the live tree must converge
// with nothing reachable lost (docs/snapshots.md, "Crash safety").
import assert from 'node:assert/strict';
import { chmod, mkdir, readdir, rm, symlink, unlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, test, type TestContext } from 'node:test';
import type { SnapshotService } from '../../services/snapshot/snapshots.ts';
import {
  crashLabel,
  crashMarker,
  runCrashChild,
  tempFilesUnder,
  type CrashOp,
  type CrashPoint,
} from '../helpers/snapshot-crash.ts';
import {
  createSnapshotFixture,
  treeState,
  type SnapshotFixture,
  boxConfig,
} from '../helpers/snapshots.ts';

const SKIP = ['boxkeeper', 'logs'];
/** Tests of a suite run side by side: most of a test's time is its child starting up. */
const CONCURRENCY = 2;
type TreeState = Record<string, string>;

interface Box {
  f: SnapshotFixture;
  /** A fresh service over the box, configured as the child's. */
  svc(retain?: number): SnapshotService;
  /** The tree each version was committed from. */
  states: Map<string, TreeState>;
  state(): Promise<TreeState>;
  crash(op: CrashOp, at: CrashPoint, retain?: number): Promise<void>;
}

const sleep = (ms: number) => new Promise((ok) => setTimeout(ok, ms));

async function newBox(t: TestContext, retain: number) {
  const f = await createSnapshotFixture();
  t.after(() => f.cleanup());
  const box: Box = {
    f,
    svc: (r = retain) => f.make({ config: boxConfig(f.box, r) }),
    states: new Map(),
    state: () => treeState(f.box, SKIP),
    async crash(op, at, r = retain) {
      const out = await runCrashChild({
        repoDir: f.repoDir,
        config: boxConfig(f.box, r),
        op,
        crash: at,
      });
      const said = `exit ${String(out.code)}, signal ${String(out.signal)}\nstdout: ${out.stdout}\nstderr: ${out.stderr}`;
      assert.ok(out.stderr.includes(crashMarker(at)), `crash point not reached: ${said}`);
      assert.equal(out.signal, 'SIGKILL', `child was not killed: ${said}`);
      if (at.when === 'temp') {
        const left = at.call.startsWith('tree.')
          ? await tempFilesUnder(f.box, [join(f.box, 'boxkeeper')])
          : await tempFilesUnder(f.repoDir);
        assert.notDeepEqual(left, [], 'the kill left a temp file');
      }
    },
  };
  return box;
}

async function commitAs(b: Box, version: string): Promise<void> {
  // Distinct commit times: retention orders versions by time.
  await sleep(5);
  await b.svc().commit({ version });
  b.states.set(version, await b.state());
}

/** Object keys and commit ids every ref and HEAD reach. */
async function reachable(b: Box): Promise<{ objects: string[]; commits: string[] }> {
  const ids = new Set((await b.f.repo.refs()).map((r) => r.commit));
  const head = await b.f.repo.readHead();
  if (head !== undefined) ids.add(head);
  const objects = new Set<string>();
  for (const id of ids) {
    for (const e of (await b.f.repo.readCommit(id)).entries) {
      if (e.type === 'file') objects.add(`${e.hash ?? ''}-${e.mode.toString(8)}`);
    }
  }
  return { objects: [...objects].sort(), commits: [...ids].sort() };
}

const storedObjects = (b: Box) => [...b.f.repo.objects()].map((o) => o.key).sort();

/** The repository's objects are intact and every version's objects are present. */
async function assertNothingReachableLost(s: SnapshotService, when: string): Promise<void> {
  const v = await s.verify();
  assert.deepEqual(v.missingObjects, [], `objects missing ${when}`);
  assert.deepEqual(v.damagedObjects, [], `objects damaged ${when}`);
}

/**
 * The state every rerun must reach: exactly `versions` listed, `current` is HEAD, staging and
 * the live tree free of debris, verify clean, and rolling back to each version gives the tree it
 * was committed from. With `swept`, nothing unreachable is left either.
 */
async function assertConverged(
  b: Box,
  versions: string[],
  current: string,
  swept: boolean,
): Promise<void> {
  const s = b.svc();
  const list = await s.list();
  assert.deepEqual(list.map((v) => v.version).sort(), [...versions].sort());
  assert.equal(list.find((v) => v.current)?.version, current, 'HEAD is the current version');
  assert.deepEqual(await readdir(join(b.f.repoDir, 'staging')), [], 'staging is empty');
  assert.deepEqual(
    await tempFilesUnder(b.f.box, [join(b.f.box, 'boxkeeper')]),
    [],
    'no temp files in the live tree',
  );
  const v = await s.verify();
  assert.equal(v.ok, true, `verify: ${JSON.stringify(v)}`);
  if (swept) {
    const r = await reachable(b);
    assert.deepEqual(storedObjects(b), r.objects, 'exactly the reachable objects are stored');
    assert.deepEqual(b.f.repo.commitIds().sort(), r.commits, 'exactly the reachable commits');
  }
  for (const version of versions) {
    await s.rollback(version, { discardChanges: true });
    assert.deepEqual(await b.state(), b.states.get(version), `the tree of ${version}`);
    assert.equal((await s.verify()).ok, true, `verify after rolling back to ${version}`);
  }
}

// ---- commit -------------------------------------------------------------------------------

/** V1 and V2 committed; the tree changed since (new, modified, re-moded files, a new dir). */
async function commitBox(t: TestContext): Promise<Box> {
  const b = await newBox(t, 10);
  await commitAs(b, 'V1');
  await writeFile(join(b.f.box, 'icb-box.jar'), 'jar v2');
  await commitAs(b, 'V2');
  await writeFile(join(b.f.box, 'application.yml'), 'server:\n  port: 9090\n');
  await writeFile(join(b.f.box, 'data', 'new.sql'), 'BEGIN TRANSACTION;');
  await chmod(join(b.f.box, 'DOS', 'start.bat'), 0o700);
  await mkdir(join(b.f.box, 'conf', 'extra'));
  return b;
}

/**
 * In commit order. `published`: the crash leaves ref V3 in place (the commit is visible). The
 * ref is written last; a crash after HEAD moved but before the ref is completed by recover().
 */
const COMMIT_POINTS: Array<{ at: CrashPoint; published: boolean }> = [
  { at: { call: 'hashPool.ingest', nth: 1, when: 'before' }, published: false },
  { at: { call: 'hashPool.ingest', nth: 1, when: 'after' }, published: false },
  { at: { call: 'repo.publishStaged', nth: 1, when: 'before' }, published: false },
  { at: { call: 'repo.publishStaged', nth: 1, when: 'after' }, published: false },
  { at: { call: 'repo.writeCommit', nth: 1, when: 'temp' }, published: false },
  { at: { call: 'repo.writeCommit', nth: 1, when: 'after' }, published: false },
  { at: { call: 'repo.writeHead', nth: 1, when: 'before' }, published: false },
  { at: { call: 'repo.writeHead', nth: 1, when: 'temp' }, published: false },
  { at: { call: 'repo.writeHead', nth: 1, when: 'after' }, published: false },
  { at: { call: 'repo.writeStatCache', nth: 1, when: 'before' }, published: false },
  { at: { call: 'repo.writeLastBoot', nth: 1, when: 'before' }, published: false },
  { at: { call: 'repo.writeRef', nth: 1, when: 'before' }, published: false },
  { at: { call: 'repo.writeRef', nth: 1, when: 'temp' }, published: false },
  { at: { call: 'repo.writeRef', nth: 1, when: 'after' }, published: true },
];

describe('SIGKILL during commit', { concurrency: CONCURRENCY }, () => {
  for (const { at, published } of COMMIT_POINTS) {
    test(`commit killed at ${crashLabel(at)}: a rerun converges, no version is lost`, async (t) => {
      const b = await commitBox(t);
      const v3 = await b.state();
      await b.crash({ kind: 'commit', version: 'V3' }, at);
      assert.equal(
        (await b.f.repo.readRef('V3')) !== undefined,
        published,
        'ref V3 after the kill',
      );
      await assertNothingReachableLost(b.svc(), 'right after the kill');
      assert.deepEqual(await b.state(), v3, 'a commit does not touch the live tree');

      // A commit that was not published is simply made again; one that was is kept as it is.
      const again = published ? 'V3-again' : 'V3';
      const r = await b.svc().commit({ version: again });
      assert.equal(r.version, again);
      b.states.set(again, v3);
      if (published) b.states.set('V3', v3);
      await assertConverged(b, [...b.states.keys()], again, true);
    });
  }

  for (const at of [
    { call: 'repo.writeRef', nth: 1, when: 'after' },
    { call: 'repo.writeHead', nth: 1, when: 'before' },
  ] satisfies CrashPoint[]) {
    test(`commit --version V3 killed at ${crashLabel(at)}: rerunning the same command finishes V3`, async (t) => {
      const b = await commitBox(t);
      await b.crash({ kind: 'commit', version: 'V3' }, at);
      await b.svc().commit({ version: 'V3' });
      b.states.set('V3', await b.state());
      await assertConverged(b, ['V1', 'V2', 'V3'], 'V3', true);
    });
  }

  test('the first commit killed before its ref: V1 is completed and stays the initial snapshot', async (t) => {
    const b = await newBox(t, 1);
    b.states.set('V1', await b.state());
    await b.crash(
      { kind: 'commit', version: 'V1' },
      { call: 'repo.writeRef', nth: 1, when: 'before' },
    );
    assert.equal(await b.f.repo.readRef('V1'), undefined, 'V1 was not yet visible');
    for (const v of ['V2', 'V3', 'V4']) {
      await writeFile(join(b.f.box, 'icb-box.jar'), `jar ${v}`);
      await commitAs(b, v);
    }
    const list = await b.svc().list();
    assert.equal(list.find((v) => v.initial)?.version, 'V1');
    assert.deepEqual(list.map((v) => v.version).sort(), ['V1', 'V4']);
  });
});

// ---- rollback ------------------------------------------------------------------------------

interface RollbackBox extends Box {
  c1: string;
  c2: string;
}

/**
 * V1 committed, then V2 with every kind of change: content, added and removed files and
 * directories, file and directory modes, a retargeted symlink, a directory that became a file
 * and a file that became a directory.
 */
async function rollbackBox(t: TestContext): Promise<RollbackBox> {
  const b = await newBox(t, 10);
  const box = b.f.box;
  await writeFile(join(box, 'DOS', 'run.sh'), 'echo run\n');
  await commitAs(b, 'V1');
  await writeFile(join(box, 'icb-box.jar'), 'jar v2, longer than v1');
  await writeFile(join(box, 'data', 'ztdb'), Buffer.alloc(8192, 9));
  await rm(join(box, 'data', 'nested'), { recursive: true });
  await writeFile(join(box, 'data', 'nested'), 'now a file');
  await writeFile(join(box, 'data', 'new.sql'), 'BEGIN TRANSACTION;');
  await mkdir(join(box, 'conf', 'extra', 'deep'), { recursive: true });
  await writeFile(join(box, 'conf', 'extra', 'x.conf'), 'x=1');
  await writeFile(join(box, 'conf', 'extra', 'deep', 'y'), 'y');
  await chmod(join(box, 'conf'), 0o700);
  await chmod(join(box, 'DOS', 'start.bat'), 0o600);
  await unlink(join(box, 'conf', 'current.ini'));
  await symlink('elsewhere.ini', join(box, 'conf', 'current.ini'));
  await rm(join(box, 'DOS', 'run.sh'));
  await mkdir(join(box, 'DOS', 'run.sh'));
  await writeFile(join(box, 'DOS', 'run.sh', 'inner'), 'inner');
  await commitAs(b, 'V2');
  const c1 = await b.f.repo.readRef('V1');
  const c2 = await b.f.repo.readRef('V2');
  assert.ok(c1 !== undefined && c2 !== undefined);
  assert.notDeepEqual(b.states.get('V1'), b.states.get('V2'));
  return { ...b, c1, c2 };
}

/** `journaled`: the kill comes after the rollback journal was written. */
const ROLLBACK_POINTS: Array<{ at: CrashPoint; journaled: boolean }> = [
  { at: { call: 'repo.writeRollbackJournal', nth: 1, when: 'before' }, journaled: false },
  { at: { call: 'repo.writeRollbackJournal', nth: 1, when: 'temp' }, journaled: false },
  { at: { call: 'repo.writeRollbackJournal', nth: 1, when: 'after' }, journaled: true },
  { at: { call: 'tree.removePath', nth: 1, when: 'before' }, journaled: true },
  { at: { call: 'tree.removePath', nth: 3, when: 'after' }, journaled: true },
  { at: { call: 'tree.ensureDir', nth: 1, when: 'before' }, journaled: true },
  { at: { call: 'tree.ensureDir', nth: 1, when: 'after' }, journaled: true },
  { at: { call: 'tree.placeFile', nth: 1, when: 'before' }, journaled: true },
  { at: { call: 'tree.placeFile', nth: 2, when: 'temp' }, journaled: true },
  { at: { call: 'tree.placeFile', nth: 3, when: 'after' }, journaled: true },
  { at: { call: 'tree.placeSymlink', nth: 1, when: 'temp' }, journaled: true },
  { at: { call: 'tree.chmod', nth: 1, when: 'after' }, journaled: true },
  { at: { call: 'repo.writeHead', nth: 1, when: 'before' }, journaled: true },
  { at: { call: 'repo.writeHead', nth: 1, when: 'temp' }, journaled: true },
  { at: { call: 'repo.writeHead', nth: 1, when: 'after' }, journaled: true },
  { at: { call: 'repo.writeStatCache', nth: 1, when: 'before' }, journaled: true },
  { at: { call: 'repo.clearRollbackJournal', nth: 1, when: 'before' }, journaled: true },
];

describe('SIGKILL during rollback', { concurrency: CONCURRENCY }, () => {
  for (const { at, journaled } of ROLLBACK_POINTS) {
    const then = journaled ? 'recover() finishes it' : 'nothing changed and a rerun does it';
    test(`rollback killed at ${crashLabel(at)}: ${then}`, async (t) => {
      const b = await rollbackBox(t);
      await b.crash({ kind: 'rollback', version: 'V1' }, at);
      const journal = await b.f.repo.readRollbackJournal();
      assert.equal(journal !== undefined, journaled, 'rollback journal after the kill');

      await b.svc().recover();
      if (journaled) {
        assert.deepEqual(await b.state(), b.states.get('V1'), 'recover() finished the rollback');
      } else {
        assert.deepEqual(await b.state(), b.states.get('V2'), 'the tree was not touched');
        assert.equal(await b.f.repo.readHead(), b.c2);
        const r = await b.svc().rollback('V1');
        assert.equal(r.saved, null, 'no spurious save of "changes"');
        assert.deepEqual(await b.state(), b.states.get('V1'));
      }
      assert.equal(await b.f.repo.readHead(), b.c1, 'HEAD is V1');
      assert.equal(await b.f.repo.readRollbackJournal(), undefined, 'the journal is gone');
      await assertConverged(b, ['V2', 'V1'], 'V1', false);
    });
  }

  test('an interrupted rollback is finished by the next commit before it commits', async (t) => {
    const b = await rollbackBox(t);
    await b.crash(
      { kind: 'rollback', version: 'V1' },
      { call: 'tree.placeFile', nth: 2, when: 'after' },
    );
    assert.ok((await b.f.repo.readRollbackJournal()) !== undefined);
    const halfway = await b.state();
    assert.notDeepEqual(halfway, b.states.get('V1'));
    assert.notDeepEqual(halfway, b.states.get('V2'));

    const r = await b.svc().commit({ version: 'V3' });
    b.states.set('V3', await b.state());
    assert.deepEqual(b.states.get('V3'), b.states.get('V1'), 'the rollback was finished first');
    assert.deepEqual(await b.svc().diff('V1', 'V3'), { added: [], removed: [], modified: [] });
    assert.equal(await b.f.repo.readHead(), r.commit);
    assert.equal(await b.f.repo.readRollbackJournal(), undefined);
    await assertConverged(b, ['V1', 'V2', 'V3'], 'V3', true);
  });

  test('a rollback elsewhere after an interrupted one finishes it first and saves nothing', async (t) => {
    const b = await rollbackBox(t);
    await b.crash(
      { kind: 'rollback', version: 'V1' },
      { call: 'tree.removePath', nth: 2, when: 'after' },
    );
    const r = await b.svc().rollback('V2');
    assert.equal(r.saved, null, 'the half-rolled-back tree is not saved as a version');
    assert.deepEqual(await b.state(), b.states.get('V2'));
    assert.equal(await b.f.repo.readHead(), b.c2);
    await assertConverged(b, ['V1', 'V2'], 'V2', true);
  });
});

// ---- prune ---------------------------------------------------------------------------------

/**
 * V1..V5, each with its own jar, application.yml and configuration.ini, the box rolled back to
 * V3. Pruning with retain 1 keeps V5 (newest), V3 (current) and V1 (initial) and drops V2 and
 * V4 with six objects only they use.
 */
async function pruneBox(t: TestContext): Promise<Box> {
  const b = await newBox(t, 1);
  for (let i = 1; i <= 5; i++) {
    await writeFile(join(b.f.box, 'icb-box.jar'), `jar build ${i}`);
    await writeFile(join(b.f.box, 'application.yml'), `server:\n  port: 80${i}0\n`);
    await writeFile(join(b.f.box, 'conf', 'configuration.ini'), `[QTHZ]\nversion = V${i}\n`);
    await sleep(5);
    await b.svc(10).commit({ version: `V${i}` });
    b.states.set(`V${i}`, await b.state());
  }
  await b.svc(10).rollback('V3', { discardChanges: true });
  return b;
}

const PRUNE_POINTS: CrashPoint[] = [
  { call: 'repo.deleteRef', nth: 1, when: 'before' },
  { call: 'repo.deleteRef', nth: 2, when: 'before' },
  { call: 'repo.deleteRef', nth: 2, when: 'after' },
  { call: 'repo.deleteCommit', nth: 1, when: 'before' },
  { call: 'repo.deleteCommit', nth: 2, when: 'after' },
  { call: 'repo.removeObject', nth: 1, when: 'before' },
  { call: 'repo.removeObject', nth: 3, when: 'after' },
  { call: 'repo.removeObject', nth: 5, when: 'before' },
];

describe('SIGKILL during prune', { concurrency: CONCURRENCY }, () => {
  for (const at of PRUNE_POINTS) {
    test(`prune killed at ${crashLabel(at)}: nothing kept is lost, a rerun finishes the sweep`, async (t) => {
      const b = await pruneBox(t);
      const before = storedObjects(b);
      await b.crash({ kind: 'prune' }, at);
      await assertNothingReachableLost(b.svc(), 'right after the kill');
      assert.equal((await b.svc().verify()).ok, true, 'the live tree is still V3');

      const s = b.svc();
      await s.recover();
      await s.prune();
      for (const v of ['V2', 'V4']) b.states.delete(v);
      const after = storedObjects(b);
      assert.equal(before.length - after.length, 6, 'the six objects only V2 and V4 used are gone');
      await assertConverged(b, ['V5', 'V3', 'V1'], 'V3', true);
    });
  }
});
