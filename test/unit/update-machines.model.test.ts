// Model-based tests of the update statecharts with `xstate/graph`: paths through the patch
// machine and the update cycle are enumerated from the machine definitions (invokes traversed
// with synthetic `xstate.done.actor.<id>` / `xstate.error.actor.<id>` events), then the REAL
// machines are driven along them with fake effects whose promises are resolved or rejected on
// demand (a deferred per invocation). For every prefix of a path the system is persisted, sent
// through JSON, stopped, restored into a fresh actor with fresh fakes, and must re-invoke
// exactly the effects that were in flight and finish the path the same way.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import {
  assign,
  createActor,
  createEmptyActor,
  fromPromise,
  setup,
  type AnyActorRef,
  type AnyActorScope,
  type AnyStateMachine,
  type AnyStateNode,
  type EventObject,
  type SnapshotFrom,
} from 'xstate';
import {
  getAdjacencyMap,
  getShortestPaths,
  getSimplePaths,
  getStateNodes,
  type AdjacencyValue,
} from 'xstate/graph';
import {
  patchMachine,
  withPatchEffects,
  patchStatusOf,
  type PatchEffectInput,
  type PatchEvent,
  type PatchInfo,
  type PatchInput,
  type PatchReport,
} from '../../machines/patch.machine.ts';
import { PHASE, type PatchStatusName, type PhaseName } from '../../machines/phases.ts';
import {
  phaseOf,
  statePath,
  updateMachine,
  withEffects,
  type UpdateEvent,
  type UpdateInput,
  type UpdatePolicy,
} from '../../machines/update.machine.ts';
import { resumeProblems, type PersistedSnapshot } from '../../services/update/update-store.ts';

// ---- fake effects: one deferred per invocation --------------------------------------------

interface Call {
  src: string;
  /** The invoke id (the promise actor's id). */
  id: string;
  input: unknown;
  state: 'pending' | 'resolved' | 'rejected' | 'aborted';
  resolve: (output: unknown) => void;
  reject: (error: Error) => void;
}

class FakeEffects {
  readonly calls: Call[] = [];

  invoke(src: string, id: string, input: unknown, signal: AbortSignal): Promise<unknown> {
    return new Promise((resolve, reject) => {
      const call: Call = {
        src,
        id,
        input: JSON.parse(JSON.stringify(input)) as unknown,
        state: 'pending',
        resolve: (output) => {
          call.state = 'resolved';
          resolve(output);
        },
        reject: (error) => {
          call.state = 'rejected';
          reject(error);
        },
      };
      signal.addEventListener('abort', () => {
        if (call.state === 'pending') call.state = 'aborted';
      });
      this.calls.push(call);
    });
  }

  pending(): Call[] {
    return this.calls.filter((c) => c.state === 'pending');
  }

  /** The one in-flight call of `src` (with invoke id `id`) matching `match`. */
  take(src: string, id: string, match: (input: unknown) => boolean = () => true): Call {
    const found = this.pending().filter((c) => c.src === src && c.id === id && match(c.input));
    assert.equal(
      found.length,
      1,
      `expected exactly one in-flight ${src} (${id}); in flight: ${describeCalls(this.pending()).join(', ') || 'none'}`,
    );
    return found[0] as Call;
  }
}

// `provide` rebuilds the whole machine (milliseconds), so the machines are provided once and
// every fake effect finds the fakes of its own actor system (one per run).
const effectsBySystem = new WeakMap<object, FakeEffects>();

function fake<O, I>(src: string) {
  return fromPromise<O, I>(({ input, self, signal, system }) => {
    const fx = effectsBySystem.get(system as object);
    assert.ok(fx !== undefined, 'every run registers its fakes');
    return fx.invoke(src, self.id, input, signal) as Promise<O>;
  });
}

const fakePatch = withPatchEffects((src) => fake(src));

const fakeUpdate = withEffects((src) => fake(src));

/** Creates and starts an actor whose effects are fresh fakes. */
function startWithFakes<A extends AnyActorRef>(
  create: () => A,
): { actor: A; fx: FakeEffects; errors: unknown[] } {
  const fx = new FakeEffects();
  const actor = create();
  effectsBySystem.set(actor.system as object, fx);
  const errors: unknown[] = [];
  actor.subscribe({ error: (e) => errors.push(e) });
  actor.start();
  return { actor, fx, errors };
}

function describeCalls(calls: Call[]): string[] {
  return calls.map((c) => `${c.src}#${c.id} ${JSON.stringify(c.input)}`).sort();
}

/** Lets every settled promise and every event it causes run to completion. */
function settle(): Promise<void> {
  return new Promise((resolve) => setImmediate(resolve));
}

// ---- model events -----------------------------------------------------------------------

type ModelEvent = EventObject & Record<string, unknown>;

/** The model's effect time; the drive replaces it with its own clock. */
const AT = 1000;

const done = (id: string, output: Record<string, unknown> = {}): ModelEvent => ({
  type: `xstate.done.actor.${id}`,
  output: { at: AT, ...output },
});
const fail = (id: string): ModelEvent => ({
  type: `xstate.error.actor.${id}`,
  error: { message: `${id} failed`, at: AT },
});

function outcome(e: ModelEvent): { kind: 'done' | 'error'; id: string } | undefined {
  const m = /^xstate\.(done|error)\.actor\.(.+)$/.exec(e.type);
  if (m === null) return undefined;
  return { kind: m[1] === 'done' ? 'done' : 'error', id: m[2] ?? '' };
}

function label(e: ModelEvent): string {
  const o = outcome(e);
  if (o === undefined) {
    const code = typeof e.versionCode === 'string' ? ` ${e.versionCode}` : '';
    const build = typeof e.agentBuild === 'string' ? ` +${e.agentBuild}` : '';
    return `${e.type}${code}${build}`;
  }
  const out = (e.output ?? {}) as Record<string, unknown>;
  const extra = Object.entries(out)
    .filter(([k]) => k !== 'at')
    .map(([k, v]) =>
      k === 'upgradeList'
        ? `[${(v as Array<{ versionCode: string }>).map((p) => p.versionCode).join(',')}]`
        : `${k}=${JSON.stringify(v)}`,
    )
    .join(' ');
  return `${o.kind}.${o.id}${extra === '' ? '' : `(${extra})`}`;
}

interface ModelPath<S> {
  state: S;
  steps: Array<{ event: ModelEvent; state: S }>;
}

/** Invoke id → src of every invoke of a machine (ids may repeat, with the same src). */
function invokeSources(machine: AnyStateMachine): Map<string, string> {
  const map = new Map<string, string>();
  for (const node of getStateNodes(machine.root)) {
    for (const inv of node.invoke) {
      const src = typeof inv.src === 'string' ? inv.src : '(inline logic)';
      const known = map.get(inv.id);
      assert.ok(known === undefined || known === src, `invoke id ${inv.id} runs two srcs`);
      map.set(inv.id, src);
    }
  }
  return map;
}

/** Dotted paths of the state nodes that invoke something. */
function invokeNodes(machine: AnyStateMachine): string[] {
  return getStateNodes(machine.root)
    .filter((n) => n.invoke.length > 0)
    .map((n) => n.path.join('.'));
}

/** The state nodes a state value makes active (root excluded). */
function activeNodes(machine: AnyStateMachine, value: unknown): AnyStateNode[] {
  const out: AnyStateNode[] = [];
  const visit = (node: AnyStateNode, v: unknown) => {
    if (v === undefined || v === null) return;
    const pairs: Array<[string, unknown]> =
      typeof v === 'string' ? [[v, undefined]] : Object.entries(v as Record<string, unknown>);
    for (const [key, sub] of pairs) {
      const child = (node.states as Record<string, AnyStateNode | undefined>)[key];
      assert.ok(child !== undefined, `state ${key} does not exist`);
      out.push(child);
      visit(child, sub);
    }
  };
  visit(machine.root, value);
  return out;
}

function reachedAll(paths: string[], nodes: string[]): string[] {
  return nodes.filter((n) => !paths.some((p) => p === n || p.startsWith(`${n}.`)));
}

// ---- the patch machine ----------------------------------------------------------------------

const VERSION_A: PatchInfo = {
  versionCode: 'aaa',
  versionNum: 'V1.8',
  fileMd5: 'cd9f1d57fd7b792587d29e7826f4df0e',
  remark: 'first',
  argumentConfigMap: { 'Demo/Key': 'x' },
};
const VERSION_B: PatchInfo = {
  versionCode: 'bbb',
  versionNum: 'V1.9',
  fileMd5: '0f1e2d3c4b5a69788796a5b4c3d2e1f0',
  remark: 'second',
  argumentConfigMap: {},
};
const AGENT_BUILD = 'boxkeeper-2.0.0';

type PatchSnap = SnapshotFrom<typeof patchMachine>;

const PATCH_EVENTS: ModelEvent[] = [
  { type: 'DOWNLOAD' },
  { type: 'APPLY' },
  { type: 'REVERT' },
  done('download'),
  fail('download'),
  done('applySql'),
  fail('applySql'),
  done('replaceFiles', { agentBuild: null }),
  fail('replaceFiles'),
  done('mergeSettings'),
  fail('mergeSettings'),
  done('applyConfig'),
  fail('applyConfig'),
];

const serPatch = (s: PatchSnap): string => JSON.stringify(s.value);

// Standalone (no parent) the machine's sendParent throws (checked below), and so does a pure
// transition with xstate/graph's mock actor scope. The model therefore runs the machine with a
// scope whose `self` has a (stub) parent; the real machine runs as a child of a tiny host.
const stubParent = createEmptyActor();
const patchModel = Object.create(patchMachine, {
  transition: {
    value: (snapshot: PatchSnap, event: EventObject, scope: AnyActorScope) =>
      patchMachine.transition(
        snapshot,
        event as never,
        {
          ...scope,
          self: Object.create(scope.self, { _parent: { value: stubParent } }) as unknown,
        } as never,
      ),
  },
}) as typeof patchMachine;

function patchPaths(input: PatchInput): Array<ModelPath<PatchSnap>> {
  return getSimplePaths(patchModel, {
    input,
    events: ((s: PatchSnap) => PATCH_EVENTS.filter((e) => s.can(e as never))) as never,
    serializeState: serPatch,
  });
}

/** A tiny parent: runs one version and keeps every PATCH.* report it receives. */
const host = setup({
  types: {
    context: {} as { patchInput: PatchInput; reports: PatchReport[] },
    events: {} as PatchReport,
    input: {} as PatchInput,
  },
  actors: { patch: patchMachine },
}).createMachine({
  id: 'host',
  context: ({ input }) => ({ patchInput: input, reports: [] }),
  invoke: { id: 'version', src: 'patch', input: ({ context }) => context.patchInput },
  on: {
    'PATCH.*': {
      actions: assign({ reports: ({ context, event }) => [...context.reports, event] }),
    },
  },
});

const PATCH_SRC = invokeSources(patchMachine);

const fakeHost = host.provide({ actors: { patch: fakePatch } });

interface HostRun {
  actor: ReturnType<typeof createActor<typeof fakeHost>>;
  fx: FakeEffects;
  errors: unknown[];
}

async function startHost(init: { input: PatchInput } | { snapshot: unknown }): Promise<HostRun> {
  const run = startWithFakes(() =>
    'input' in init
      ? createActor(fakeHost, { input: init.input })
      : createActor(fakeHost, { snapshot: init.snapshot } as never),
  );
  await settle();
  return run;
}

function versionOf(run: HostRun) {
  const child = run.actor.getSnapshot().children.version;
  assert.ok(child !== undefined, 'the host has its version child');
  return child;
}

/** A report without its time (added by the drive's clock). */
type Unstamped<T> = T extends unknown ? Omit<T, 'at'> : never;

interface PatchAction {
  label: string;
  expect: string;
  /** The report the host must have received by then (if this step sends one). */
  report?: Unstamped<PatchReport>;
  run: (r: HostRun, at: number) => void;
}

function patchActions(path: ModelPath<PatchSnap>): PatchAction[] {
  const actions: PatchAction[] = [];
  path.steps.forEach((step, i) => {
    if (i === 0) return;
    const before = path.steps[i - 1]?.state;
    assert.ok(before !== undefined);
    const e = step.event;
    const o = outcome(e);
    const expect = serPatch(step.state);
    const versionCode = before.context.versionCode;
    if (o === undefined) {
      actions.push({ label: e.type, expect, run: (r) => versionOf(r).send(e as PatchEvent) });
      return;
    }
    const src = PATCH_SRC.get(o.id);
    assert.ok(src !== undefined, `${o.id} is an invoke of the patch machine`);
    let report: Unstamped<PatchReport> | undefined;
    if (o.kind === 'done' && o.id === 'download')
      report = { type: 'PATCH.DOWNLOADED', versionCode };
    else if (o.kind === 'error' && o.id === 'download')
      report = { type: 'PATCH.DOWNLOAD_FAILED', versionCode, error: `${o.id} failed` };
    else if (o.kind === 'error')
      report = { type: 'PATCH.APPLY_FAILED', versionCode, error: `${o.id} failed` };
    else if (o.id === 'applyConfig')
      report = { type: 'PATCH.INSTALLED', versionCode, agentBuild: null };
    actions.push({
      label: label(e),
      expect,
      ...(report === undefined ? {} : { report }),
      run: (r, at) => {
        const call = r.fx.take(src, o.id);
        if (o.kind === 'done') call.resolve({ ...(e.output as object), at });
        else call.reject(Object.assign(new Error(`${o.id} failed`), { at }));
      },
    });
  });
  return actions;
}

function checkHost(r: HostRun, expect: string, reports: PatchReport[], where: string): void {
  assert.deepEqual(r.errors, [], `${where}: no actor error`);
  const snap = versionOf(r).getSnapshot();
  assert.equal(snap.status, 'active', where);
  assert.equal(serPatch(snap), expect, `${where}: state`);
  assert.deepEqual(r.actor.getSnapshot().context.reports, reports, `${where}: reports`);
}

const atOf = (i: number) => 10_000 * (i + 1);

/** What the drives did (reported by the last test of each model). */
const stats = { paths: 0, actions: 0, restores: 0 };

async function drivePatchPath(path: ModelPath<PatchSnap>, input: PatchInput): Promise<void> {
  const actions = patchActions(path);
  const first = path.steps[0];
  assert.ok(first !== undefined);
  const initial = serPatch(first.state);
  // The reports each prefix must have produced (with the drive's clock).
  const reportsAfter: PatchReport[][] = [[]];
  actions.forEach((a, i) => {
    const prev = reportsAfter[i] ?? [];
    reportsAfter.push(a.report === undefined ? prev : [...prev, { ...a.report, at: atOf(i) }]);
  });
  const expectAfter = (k: number) => (k === 0 ? initial : (actions[k - 1]?.expect ?? ''));

  stats.paths++;
  const main = await startHost({ input });
  checkHost(main, initial, [], 'start');
  for (const [i, a] of actions.entries()) {
    a.run(main, atOf(i));
    await settle();
    stats.actions++;
    checkHost(main, a.expect, reportsAfter[i + 1] ?? [], `step ${i + 1} (${a.label})`);
  }
  const final = JSON.stringify(main.actor.getPersistedSnapshot());
  main.actor.stop();

  for (let k = 0; k <= actions.length; k++) {
    const where = `restored after step ${k}`;
    const run = await startHost({ input });
    for (const [i, a] of actions.slice(0, k).entries()) {
      a.run(run, atOf(i));
      await settle();
    }
    const persisted = JSON.parse(JSON.stringify(run.actor.getPersistedSnapshot())) as unknown;
    const inFlight = describeCalls(run.fx.pending());
    run.actor.stop();
    const restored = await startHost({ snapshot: persisted });
    stats.restores++;
    checkHost(restored, expectAfter(k), reportsAfter[k] ?? [], where);
    assert.deepEqual(
      describeCalls(restored.fx.pending()),
      inFlight,
      `${where}: the in-flight effect is re-invoked with the same input`,
    );
    for (const [i, a] of actions.entries()) {
      if (i < k) continue;
      a.run(restored, atOf(i));
      await settle();
      stats.actions++;
      checkHost(restored, a.expect, reportsAfter[i + 1] ?? [], `${where}, step ${i + 1}`);
    }
    assert.equal(JSON.stringify(restored.actor.getPersistedSnapshot()), final, `${where}: final`);
    restored.actor.stop();
  }
}

describe('patch machine model', () => {
  const NEW_VERSION: PatchInput = VERSION_A;
  const paths = patchPaths(NEW_VERSION);

  test('standalone, without a parent, its sendParent fails the actor (so it runs under a host)', async () => {
    const { actor, fx, errors } = startWithFakes(() =>
      createActor(fakePatch, { input: NEW_VERSION }),
    );
    actor.send({ type: 'DOWNLOAD' });
    fx.take('downloadPatch', 'download').resolve({ at: 1 });
    await settle();
    assert.equal(actor.getSnapshot().status, 'error');
    assert.match(String(errors[0]), /Unable to send event to actor '#_parent'/);
  });

  test('the model reaches every state that invokes an effect', () => {
    assert.ok(paths.length > 10, `${paths.length} simple paths`);
    const reached = paths.flatMap((p) => p.steps.map((s) => statePath(s.state.value)));
    assert.deepEqual(reachedAll(reached, invokeNodes(patchMachine)), []);
    for (const id of PATCH_SRC.keys()) {
      assert.ok(
        PATCH_EVENTS.some((e) => e.type === `xstate.done.actor.${id}`) &&
          PATCH_EVENTS.some((e) => e.type === `xstate.error.actor.${id}`),
        `the model has outcome events for invoke ${id}`,
      );
    }
  });

  test('an imported status boots into the state that carries it', async () => {
    const statuses: PatchStatusName[] = ['PENDING', 'DOWNLOADED', 'INSTALLED', 'REVERTED'];
    for (const status of statuses) {
      const run = await startHost({ input: { ...NEW_VERSION, status } });
      assert.equal(patchStatusOf(versionOf(run).getSnapshot().value), status);
      assert.deepEqual(run.fx.pending(), [], 'an imported version runs nothing by itself');
      run.actor.stop();
    }
  });

  for (const path of paths) {
    const events = path.steps.slice(1).map((s) => label(s.event));
    const name = events.length === 0 ? '(start)' : events.join(' → ');
    test(`patch path: ${name}`, () => drivePatchPath(path, NEW_VERSION));
  }

  test('patch model size', (t) => {
    t.diagnostic(
      `${paths.length} simple paths, ${stats.actions} actions driven, ${stats.restores} restores`,
    );
    Object.assign(stats, { paths: 0, actions: 0, restores: 0 });
  });
});

// ---- the update cycle -----------------------------------------------------------------------

type UpdateSnap = SnapshotFrom<typeof updateMachine>;

const POLICY: UpdatePolicy = {
  checkIntervalMs: 60_000,
  checkJitterMs: 0,
  healthTimeoutMs: 30_000,
  healthSettleMs: 1_000,
  callsRetryMs: 5_000,
  retryDelayMs: 5_000,
  maxFailedInstalls: 1,
};

const UPDATE_SRC = invokeSources(updateMachine);

const UPDATE_EVENTS: ModelEvent[] = [
  { type: 'CHECK' },
  { type: 'INSTALL' },
  { type: 'ROLLBACK' },
  { type: 'CLEAR_CACHE' },
  { type: 'SELF_UPDATE.SWAPPED' },
  { type: 'SELF_UPDATE.FAILED', error: 'the new build did not start' },
  done('waitForCheck'),
  done('waitForCalls'),
  done('waitForResume'),
  done('waitForRestore'),
  done('checkVersion', { upgradeMark: 0, upgradeList: [] }),
  done('checkVersion', { upgradeMark: 1, upgradeList: [VERSION_A] }),
  done('checkVersion', { upgradeMark: 2, upgradeList: [VERSION_A] }),
  done('checkVersion', { upgradeMark: 1, upgradeList: [VERSION_A, VERSION_B] }),
  done('checkVersion', { upgradeMark: 2, upgradeList: [VERSION_A, VERSION_B] }),
  fail('checkVersion'),
  done('admitVersions'),
  fail('admitVersions'),
  done('listTasks', { tasks: [7, 'nightly'] }),
  fail('listTasks'),
  done('listPausedTasks', { tasks: [7, 'py-paused'] }),
  fail('listPausedTasks'),
  done('pauseTasks'),
  fail('pauseTasks'),
  done('checkCalls', { active: 0 }),
  done('checkCalls', { active: 2 }),
  fail('checkCalls'),
  done('resumeTasks'),
  fail('resumeTasks'),
  done('stopServices'),
  fail('stopServices'),
  done('backup', { version: 'pre-V1.9.1' }),
  fail('backup'),
  done('finalizeConfig'),
  fail('finalizeConfig'),
  done('handOver'),
  fail('handOver'),
  done('confirmSelfUpdate'),
  fail('confirmSelfUpdate'),
  done('startServices'),
  fail('startServices'),
  done('commitSnapshot', { version: 'V1.9' }),
  fail('commitSnapshot'),
  done('rollbackSnapshot'),
  fail('rollbackSnapshot'),
  done('releaseServices'),
  fail('releaseServices'),
  done('clearCache'),
  fail('clearCache'),
  done('reconcile', { backup: null, note: 'nothing was half-installed' }),
  done('reconcile', { backup: 'pre-V1.8.3', note: 'an install was interrupted' }),
  fail('reconcile'),
];

/** What the versions' children can report in this state (they run the downloads and applies). */
function patchReports(s: UpdateSnap): ModelEvent[] {
  const out: ModelEvent[] = [];
  for (const v of s.context.versions) {
    if (v.status !== 'DOWNLOADING') continue;
    out.push(
      { type: 'PATCH.DOWNLOADED', versionCode: v.versionCode, at: AT },
      { type: 'PATCH.DOWNLOAD_FAILED', versionCode: v.versionCode, error: 'x', at: AT },
    );
  }
  if (s.matches({ installing: 'applying' })) {
    const next = s.context.versions.find(
      (v) => v.status === 'DOWNLOADED' || v.status === 'REVERTED',
    );
    if (next !== undefined) {
      const versionCode = next.versionCode;
      out.push(
        { type: 'PATCH.INSTALLED', versionCode, agentBuild: null, at: AT },
        { type: 'PATCH.INSTALLED', versionCode, agentBuild: AGENT_BUILD, at: AT },
        { type: 'PATCH.APPLY_FAILED', versionCode, error: 'x', at: AT },
      );
    }
  }
  return out;
}

function updateEvents(s: UpdateSnap): ModelEvent[] {
  return [...UPDATE_EVENTS.filter((e) => s.can(e as never)), ...patchReports(s)];
}

/** Coarse: state and per-version statuses (one shortest path per combination). */
const serCoarse = (s: UpdateSnap): string =>
  JSON.stringify([s.value, s.context.versions.map((v) => `${v.versionCode}:${v.status}`)]);

/**
 * Fine: everything a guard reads, without the volatile parts (times, texts, installId), and
 * counters capped where the guards stop caring; finite, so simple paths are bounded.
 */
const serFine = (s: UpdateSnap): string => {
  const c = s.context;
  return JSON.stringify({
    value: s.value,
    mark: c.mark,
    versions: c.versions.map((v) => [v.versionCode, v.status, v.agentBuild !== null]),
    retries: c.retries,
    installRequested: c.installRequested,
    job: c.job,
    backup: c.backup !== null,
    lastBackup: c.lastBackup !== null,
    paused: c.pausedTasks,
    failedInstalls: Math.min(c.failedInstalls, c.policy.maxFailedInstalls),
    rollbackAttempts: c.rollbackAttempts,
  });
};

const settled = (s: UpdateSnap): boolean => s.matches('idle') || s.matches('awaitingInstall');

type Ser = (s: UpdateSnap) => string;

interface UpdateModel {
  name: string;
  input: UpdateInput;
  ser: Ser;
  paths: Array<ModelPath<UpdateSnap>>;
}

type Bound = 'everything' | 'stop at settled' | 'to settled';

function updateOptions(input: UpdateInput, ser: Ser, bound: Bound) {
  return {
    input,
    events: updateEvents as never,
    // Volatile context (times, texts, installId) is left out of a state's identity.
    serializeState: ser as never,
    // 'stop at settled': the traversal does not continue past idle/awaitingInstall (one update
    // cycle); 'to settled': in addition only paths that end there (complete cycles) are kept.
    ...(bound === 'stop at settled' ? { stopWhen: settled as never } : {}),
    ...(bound === 'to settled' ? { toState: settled as never } : {}),
  };
}

/** One shortest path per reachable (coarse) state. */
function shortest(name: string, input: UpdateInput, bound: Bound = 'stop at settled'): UpdateModel {
  const paths = getShortestPaths(updateMachine, updateOptions(input, serCoarse, bound));
  return { name, input, ser: serCoarse, paths };
}

/** Every simple path (fine states) from the start to the end of the cycle. */
function simple(name: string, input: UpdateInput): UpdateModel {
  const paths = getSimplePaths(updateMachine, updateOptions(input, serFine, 'to settled'));
  return { name, input, ser: serFine, paths };
}

const imported = (
  phase: PhaseName,
  mark: number,
  versions: Array<[PatchInfo, PatchStatusName]>,
  retries = 5,
): UpdateInput => ({
  policy: POLICY,
  imported: { phase, mark, retries, versions: versions.map(([v, status]) => ({ ...v, status })) },
});

interface UpdateRun {
  actor: ReturnType<typeof createActor<typeof fakeUpdate>>;
  fx: FakeEffects;
  errors: unknown[];
}

async function startUpdate(
  init: { input: UpdateInput } | { snapshot: unknown },
): Promise<UpdateRun> {
  const run = startWithFakes(() =>
    'input' in init
      ? createActor(fakeUpdate, { input: init.input })
      : createActor(fakeUpdate, { snapshot: init.snapshot } as never),
  );
  await settle();
  return run;
}

interface UpdateAction {
  label: string;
  expect: string;
  run: (r: UpdateRun, at: number) => void;
}

const forVersion = (versionCode: string) => (input: unknown) =>
  (input as PatchEffectInput).versionCode === versionCode;

/** The real counterpart of one model event (a child's report becomes its effects' outcomes). */
function expand(e: ModelEvent, before: string, expect: string): UpdateAction[] {
  const o = outcome(e);
  if (o !== undefined) {
    const src = UPDATE_SRC.get(o.id);
    assert.ok(src !== undefined, `${o.id} is an invoke of the update machine`);
    return [
      {
        label: label(e),
        expect,
        run: (r, at) => {
          const call = r.fx.take(src, o.id);
          if (o.kind === 'done') call.resolve({ ...(e.output as object), at });
          else call.reject(Object.assign(new Error(`${o.id} failed`), { at }));
        },
      },
    ];
  }
  const versionCode = String(e.versionCode);
  const child = (src: string, id: string, how: 'ok' | 'fail', output: object = {}) => ({
    label: `${versionCode}: ${how === 'ok' ? 'done' : 'error'}.${id}`,
    run: (r: UpdateRun, at: number) => {
      const call = r.fx.take(src, id, forVersion(versionCode));
      if (how === 'ok') call.resolve({ ...output, at });
      else call.reject(Object.assign(new Error(`${id} failed`), { at }));
    },
  });
  const steps = (list: Array<ReturnType<typeof child>>): UpdateAction[] =>
    list.map((s, i) => ({ ...s, expect: i === list.length - 1 ? expect : before }));
  switch (e.type) {
    case 'PATCH.DOWNLOADED':
      return steps([child('downloadPatch', 'download', 'ok')]);
    case 'PATCH.DOWNLOAD_FAILED':
      return steps([child('downloadPatch', 'download', 'fail')]);
    case 'PATCH.INSTALLED':
      return steps([
        child('applySql', 'applySql', 'ok'),
        child('replaceFiles', 'replaceFiles', 'ok', { agentBuild: e.agentBuild ?? null }),
        child('mergeSettings', 'mergeSettings', 'ok'),
        child('applyConfig', 'applyConfig', 'ok'),
      ]);
    case 'PATCH.APPLY_FAILED':
      return steps([
        child('applySql', 'applySql', 'ok'),
        child('replaceFiles', 'replaceFiles', 'ok', { agentBuild: null }),
        child('mergeSettings', 'mergeSettings', 'fail'),
      ]);
    default:
      return [{ label: e.type, expect, run: (r) => r.actor.send(e as UpdateEvent) }];
  }
}

function updateActions(path: ModelPath<UpdateSnap>, ser: Ser): UpdateAction[] {
  return path.steps.flatMap((step, i) => {
    const prev = path.steps[i - 1];
    return prev === undefined ? [] : expand(step.event, ser(prev.state), ser(step.state));
  });
}

/** Invariants of every state the real system rests in. */
function checkUpdate(r: UpdateRun, ser: Ser, expect: string, where: string): void {
  assert.deepEqual(r.errors, [], `${where}: no actor error`);
  const snap = r.actor.getSnapshot();
  assert.equal(snap.status, 'active', `${where}: status`);
  assert.equal(ser(snap), expect, `${where}: state`);
  checkInvariants(r, where);
}

function checkInvariants(r: UpdateRun, where: string): void {
  const snap = r.actor.getSnapshot();
  const path = statePath(snap.value);
  const phase = phaseOf(snap.tags, snap.context);
  assert.ok(phase in PHASE, `${where}: phase of ${path}`);
  if (path.startsWith('installing.'))
    assert.notEqual(phase, 'READY', `${where}: ${path} has an install phase`);
  const children = snap.children as Record<string, AnyActorRef | undefined>;
  const versionIds = new Set<string>();
  for (const v of snap.context.versions) {
    versionIds.add(v.id);
    const child = children[v.id];
    assert.ok(child !== undefined, `${where}: version ${v.versionCode} has its child`);
    const childSnap = child.getSnapshot() as PatchSnap;
    assert.equal(childSnap.status, 'active', `${where}: child ${v.id} is active`);
    assert.equal(
      v.status,
      patchStatusOf(childSnap.value),
      `${where}: mirror of ${v.id} (child in ${statePath(childSnap.value)})`,
    );
  }
  const invoked = activeNodes(updateMachine, snap.value).flatMap((n) => n.invoke.map((i) => i.id));
  for (const id of invoked) assert.ok(children[id] !== undefined, `${where}: ${id} is running`);
  for (const id of Object.keys(children)) {
    assert.ok(
      versionIds.has(id) || invoked.includes(id),
      `${where}: child ${id} belongs to a version or an active invoke`,
    );
  }
}

interface DriveOptions {
  prefixes: boolean;
}

async function driveUpdatePath(
  model: UpdateModel,
  path: ModelPath<UpdateSnap>,
  o: DriveOptions,
): Promise<void> {
  const { ser, input } = model;
  const actions = updateActions(path, ser);
  const first = path.steps[0];
  assert.ok(first !== undefined);
  const initial = ser(first.state);
  const expectAfter = (k: number) => (k === 0 ? initial : (actions[k - 1]?.expect ?? ''));

  stats.paths++;
  const main = await startUpdate({ input });
  checkUpdate(main, ser, initial, 'start');
  for (const [i, a] of actions.entries()) {
    a.run(main, atOf(i));
    await settle();
    stats.actions++;
    checkUpdate(main, ser, a.expect, `step ${i + 1} (${a.label})`);
  }
  const final = JSON.stringify(main.actor.getPersistedSnapshot());
  main.actor.stop();
  if (!o.prefixes) return;

  for (let k = 0; k <= actions.length; k++) {
    const where = `restored after step ${k}${k > 0 ? ` (${actions[k - 1]?.label ?? ''})` : ''}`;
    const run = await startUpdate({ input });
    for (const [i, a] of actions.slice(0, k).entries()) {
      a.run(run, atOf(i));
      await settle();
      stats.actions++;
    }
    const persisted = JSON.parse(
      JSON.stringify(run.actor.getPersistedSnapshot()),
    ) as PersistedSnapshot;
    const inFlight = describeCalls(run.fx.pending());
    run.actor.stop();
    assert.deepEqual(resumeProblems(persisted), [], `${where}: resumeProblems`);
    const restored = await startUpdate({ snapshot: persisted });
    stats.restores++;
    checkUpdate(restored, ser, expectAfter(k), where);
    assert.deepEqual(
      describeCalls(restored.fx.pending()),
      inFlight,
      `${where}: the in-flight effects are re-invoked with the same input`,
    );
    for (const [i, a] of actions.entries()) {
      if (i < k) continue;
      a.run(restored, atOf(i));
      await settle();
      stats.actions++;
      checkUpdate(restored, ser, a.expect, `${where}, step ${i + 1} (${a.label})`);
    }
    assert.equal(JSON.stringify(restored.actor.getPersistedSnapshot()), final, `${where}: final`);
    restored.actor.stop();
  }
}

function pathName(path: ModelPath<UpdateSnap>): string {
  const events = path.steps.slice(1).map((s) => label(s.event));
  return `${statePath(path.state.value)} ⇐ ${events.length === 0 ? '(start)' : events.join(' → ')}`;
}

describe('update machine model', () => {
  const shortestModels: UpdateModel[] = [
    shortest('fresh', { policy: POLICY }, 'everything'),
    shortest('recover', { policy: POLICY, recover: 'patch.meta was unusable (test)' }),
    shortest(
      'imported PENDING, optional, downloaded',
      imported('PENDING', 1, [[VERSION_A, 'DOWNLOADED']]),
    ),
    shortest(
      'imported PENDING, mandatory, two downloaded',
      imported('PENDING', 2, [
        [VERSION_A, 'DOWNLOADED'],
        [VERSION_B, 'DOWNLOADED'],
      ]),
    ),
    shortest(
      'imported BACKUP_CREATED, one installed',
      imported('BACKUP_CREATED', 2, [
        [VERSION_A, 'INSTALLED'],
        [VERSION_B, 'DOWNLOADED'],
      ]),
    ),
    shortest(
      'imported SELF_UPDATE_PENDING, all installed',
      imported('SELF_UPDATE_PENDING', 2, [[VERSION_A, 'INSTALLED']]),
    ),
    shortest(
      'imported SELF_UPDATE_COMPLETE, all installed (the switch-over)',
      imported('SELF_UPDATE_COMPLETE', 2, [[VERSION_A, 'INSTALLED']]),
    ),
    shortest(
      'imported SELF_UPDATE_COMPLETE, one not installed',
      imported('SELF_UPDATE_COMPLETE', 2, [
        [VERSION_A, 'INSTALLED'],
        [VERSION_B, 'DOWNLOADED'],
      ]),
    ),
    shortest('imported ROLLEDBACK', imported('ROLLEDBACK', 1, [[VERSION_A, 'REVERTED']])),
    shortest(
      'imported INCEPTION, half downloaded',
      imported('INCEPTION', 1, [
        [VERSION_A, 'DOWNLOADED'],
        [VERSION_B, 'PENDING'],
      ]),
    ),
    shortest(
      'imported DOWNLOAD, no retries left',
      imported('DOWNLOAD', 1, [[VERSION_A, 'PENDING']], 0),
    ),
  ];
  const simpleModels: UpdateModel[] = [
    simple('install cycle, one version', imported('PENDING', 2, [[VERSION_A, 'DOWNLOADED']])),
    simple(
      'install cycle, two versions',
      imported('PENDING', 2, [
        [VERSION_A, 'DOWNLOADED'],
        [VERSION_B, 'DOWNLOADED'],
      ]),
    ),
  ];

  test('every invoke of the machine has outcome events in the model', () => {
    for (const [id, src] of UPDATE_SRC) {
      assert.ok(
        UPDATE_EVENTS.some((e) => e.type === `xstate.done.actor.${id}`),
        `done event for invoke ${id}`,
      );
      if (src !== 'waitUntil')
        assert.ok(
          UPDATE_EVENTS.some((e) => e.type === `xstate.error.actor.${id}`),
          `error event for invoke ${id}`,
        );
    }
  });

  test('every state that invokes an effect (or waits for a child) is reached by a path', () => {
    const reached = [...shortestModels, ...simpleModels].flatMap((m) =>
      m.paths.flatMap((p) => p.steps.map((s) => statePath(s.state.value))),
    );
    assert.deepEqual(reachedAll(reached, invokeNodes(updateMachine)), [], 'invoke states');
    // States without an invoke in which the machine rests: the children do the work there.
    const atomic = getStateNodes(updateMachine.root)
      .filter((n) => n.type === 'atomic' && (n.always ?? []).length === 0)
      .map((n) => n.path.join('.'));
    assert.deepEqual(reachedAll(reached, atomic), [], 'resting states');
  });

  test('no reachable state is a dead end: each can reach idle or awaitingInstall', () => {
    const adj = getAdjacencyMap(updateMachine, {
      input: { policy: POLICY },
      events: updateEvents as never,
      serializeState: serCoarse,
    }) as unknown as Record<string, AdjacencyValue<UpdateSnap, ModelEvent>>;
    const canSettle = new Set(
      Object.entries(adj)
        .filter(([, v]) => settled(v.state))
        .map(([k]) => k),
    );
    for (let grew = true; grew;) {
      grew = false;
      for (const [k, v] of Object.entries(adj)) {
        if (canSettle.has(k)) continue;
        const next = Object.values(v.transitions).map((t) => serCoarse(t.state));
        if (next.some((n) => canSettle.has(n))) {
          canSettle.add(k);
          grew = true;
        }
      }
    }
    const stuck = Object.keys(adj).filter((k) => !canSettle.has(k));
    assert.deepEqual(stuck, [], 'states from which no update cycle ends');
    assert.ok(Object.keys(adj).length > 30, `${Object.keys(adj).length} abstract states`);
  });

  test('mirror: a REVERTED version applied again is DOWNLOADED in the parent as in its child', async () => {
    // Rolled back (imported ROLLEDBACK, or CHECK → … → PATCH.APPLY_FAILED → rollback in a
    // fresh run), then installed again by the operator.
    const r = await startUpdate({ input: imported('ROLLEDBACK', 1, [[VERSION_A, 'REVERTED']]) });
    assert.equal(statePath(r.actor.getSnapshot().value), 'awaitingInstall');
    const events: ModelEvent[] = [
      { type: 'INSTALL' },
      done('admitVersions'),
      done('listTasks', { tasks: [7] }),
      done('pauseTasks'),
      done('checkCalls', { active: 0 }),
      done('stopServices'),
      done('backup', { version: 'pre-V1.8.1' }),
    ];
    for (const [i, e] of events.entries()) {
      for (const a of expand(e, '', '')) {
        a.run(r, atOf(i));
        await settle();
      }
    }
    assert.equal(statePath(r.actor.getSnapshot().value), 'installing.applying');
    try {
      checkInvariants(r, 'installing.applying, re-applying a REVERTED version');
    } finally {
      r.actor.stop();
    }
  });

  for (const model of shortestModels) {
    describe(`shortest paths: ${model.name}`, () => {
      for (const path of model.paths) {
        test(pathName(path), async () => {
          await driveUpdatePath(model, path, { prefixes: true });
        });
      }
    });
  }

  for (const model of simpleModels) {
    describe(`simple paths: ${model.name}`, () => {
      // Every path is driven; every prefix is round-tripped on a deterministic sample (the
      // shortest paths above round-trip all of theirs).
      model.paths.forEach((path, i) => {
        test(pathName(path), async () => {
          await driveUpdatePath(model, path, { prefixes: i % 4 === 0 });
        });
      });
    });
  }

  test('update model size', (t) => {
    const states = new Set(
      [...shortestModels, ...simpleModels].flatMap((m) =>
        m.paths.flatMap((p) => p.steps.map((s) => statePath(s.state.value))),
      ),
    );
    for (const m of [...shortestModels, ...simpleModels])
      t.diagnostic(
        `${m.name}: ${m.paths.length} paths, longest ${Math.max(...m.paths.map((p) => p.steps.length - 1))} events`,
      );
    t.diagnostic(
      `${states.size} machine states reached; ${stats.paths} paths driven, ${stats.actions} actions, ${stats.restores} restores`,
    );
  });
});
