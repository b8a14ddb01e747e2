// The supervision statechart driven step by step: effects are deferreds the test settles, time
// is XState's SimulatedClock, so backoff, crash-loop and stop behaviour are exact.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { createActor, fromPromise, SimulatedClock } from 'xstate';
import {
  serviceMachine,
  type DetectOutput,
  type StartOutput,
  serviceStatus,
  type EffectInput,
  type SupervisionPolicy,
} from '../../machines/service.machine.ts';

interface Call {
  src: string;
  input: EffectInput;
  resolve: (v: unknown) => void;
  reject: (e: unknown) => void;
}

const policy: SupervisionPolicy = {
  backoffInitialMs: 1000,
  backoffMaxMs: 5000,
  crashLoopStarts: 3,
  crashLoopWindowMs: 60_000,
  crashLoopRetryMs: 0,
  stableAfterMs: 30_000,
  notStartableRetryMs: 1000,
};

function harness(overrides: Partial<SupervisionPolicy> = {}) {
  const clock = new SimulatedClock();
  const calls: Call[] = [];
  const fake = <O>(src: string) =>
    fromPromise<O, EffectInput>(
      ({ input }) =>
        new Promise((resolve, reject) =>
          calls.push({ src, input, resolve: resolve as (v: unknown) => void, reject }),
        ),
    );
  const machine = serviceMachine.provide({
    actors: {
      detect: fake<DetectOutput>('detect'),
      start: fake<StartOutput>('start'),
      waitReady: fake<undefined>('waitReady'),
      watch: fake<undefined>('watch'),
      stop: fake<undefined>('stop'),
    },
  });
  const actor = createActor(machine, {
    input: { name: 'java', policy: { ...policy, ...overrides } },
    clock,
  });
  actor.start();
  const settle = () => new Promise((r) => setImmediate(r));
  return {
    actor,
    clock,
    calls,
    state: () => actor.getSnapshot().value,
    /** The next effect started; asserts which one. */
    async next(src: string): Promise<Call> {
      await settle();
      const call = calls.shift();
      assert.ok(call, `expected effect ${src}, none started (state ${actor.getSnapshot().value})`);
      assert.equal(call.src, src);
      return call;
    },
    async tick(ms: number) {
      clock.increment(ms);
      await settle();
    },
    settle,
  };
}

/** detect (nothing) → start → ready → running, with the start stamped at `at`. */
async function bringUp(h: ReturnType<typeof harness>, pid: number, at: number) {
  (await h.next('detect')).resolve({ pid: null });
  (await h.next('start')).resolve({ pid, at });
  (await h.next('waitReady')).resolve(undefined);
  return h.next('watch');
}

test('a service already running is adopted, not started again', async () => {
  const h = harness();
  (await h.next('detect')).resolve({ pid: 4242 });
  const watch = await h.next('watch');
  assert.equal(watch.input.pid, 4242);
  assert.equal(h.state(), 'running');
  assert.equal(h.actor.getSnapshot().context.adopted, true);
});

test('a missing service is started, waited for, then watched', async () => {
  const h = harness();
  const watch = await bringUp(h, 100, 0);
  assert.equal(watch.input.pid, 100);
  assert.equal(serviceStatus(h.actor.getSnapshot().value), 'running');
});

test('after an exit the restart waits for an exponentially growing, capped backoff', async () => {
  const h = harness({ crashLoopStarts: 100 });
  let watch = await bringUp(h, 1, 0);
  const waits: number[] = [];
  for (let i = 0; i < 5; i++) {
    watch.resolve(undefined); // the process exited
    await h.settle();
    assert.equal(h.state(), 'backoff');
    let waited = 0;
    while (h.state() === 'backoff') {
      await h.tick(250);
      waited += 250;
    }
    waits.push(waited);
    watch = await bringUp(h, 10 + i, i * 1000);
  }
  assert.deepEqual(waits, [1000, 2000, 4000, 5000, 5000]);
});

test('too many starts inside the window is a crash loop: reported, not restarted', async () => {
  const h = harness();
  for (let i = 0; i < 3; i++) {
    const watch = await bringUp(h, 50 + i, i * 2000);
    watch.resolve(undefined);
    await h.settle();
    if (i < 2) {
      while (h.state() === 'backoff') await h.tick(500);
    }
  }
  assert.equal(h.state(), 'crashLoop');
  assert.equal(serviceStatus(h.actor.getSnapshot().value), 'crash-loop');
  assert.match(h.actor.getSnapshot().context.lastError ?? '', /exited/);
  await h.tick(24 * 3600 * 1000);
  assert.equal(h.state(), 'crashLoop', 'with crash_loop_retry 0 it stays down');
  assert.equal(h.calls.length, 0);
  h.actor.send({ type: 'START' });
  await h.next('detect');
});

test('starts spread wider than the window are not a crash loop', async () => {
  const h = harness();
  for (let i = 0; i < 4; i++) {
    const watch = await bringUp(h, 70 + i, i * 61_000);
    watch.resolve(undefined);
    await h.settle();
    assert.equal(h.state(), 'backoff', `exit ${i + 1}`);
    while (h.state() === 'backoff') await h.tick(500);
  }
});

test('a crash loop is retried after crash_loop_retry when that is set', async () => {
  const h = harness({ crashLoopRetryMs: 600_000 });
  for (let i = 0; i < 3; i++) {
    const watch = await bringUp(h, 80 + i, i);
    watch.resolve(undefined);
    await h.settle();
    while (h.state() === 'backoff') await h.tick(500);
  }
  assert.equal(h.state(), 'crashLoop');
  await h.tick(599_000);
  assert.equal(h.state(), 'crashLoop');
  await h.tick(1000);
  await h.next('detect');
  assert.equal(h.actor.getSnapshot().context.failures, 0);
});

test('not ready in time: the half-started process is stopped before the backoff', async () => {
  const h = harness();
  (await h.next('detect')).resolve({ pid: null });
  (await h.next('start')).resolve({ pid: 77, at: 0 });
  (await h.next('waitReady')).reject(new Error('not ready within 120000 ms'));
  const stop = await h.next('stop');
  assert.equal(stop.input.pid, 77);
  stop.resolve(undefined);
  await h.settle();
  assert.equal(h.state(), 'backoff');
  assert.match(h.actor.getSnapshot().context.lastError ?? '', /not ready/);
});

test('STOP holds the service stopped until START; nothing restarts it meanwhile', async () => {
  const h = harness();
  await bringUp(h, 9, 0);
  h.actor.send({ type: 'STOP' });
  const stop = await h.next('stop');
  assert.equal(stop.input.pid, 9);
  assert.equal(serviceStatus(h.actor.getSnapshot().value), 'stopping');
  stop.resolve(undefined);
  await h.settle();
  assert.equal(h.state(), 'stopped');
  await h.tick(3_600_000);
  assert.equal(h.calls.length, 0, 'no effect runs while intentionally stopped');
  h.actor.send({ type: 'START' });
  (await h.next('detect')).resolve({ pid: null });
  await h.next('start');
});

test('a START while stopping is kept: the service starts again once it has stopped', async () => {
  const h = harness();
  await bringUp(h, 9, 0);
  h.actor.send({ type: 'STOP' });
  const stop = await h.next('stop');
  h.actor.send({ type: 'START' });
  stop.resolve(undefined);
  (await h.next('detect')).resolve({ pid: null });
  await h.next('start');
  assert.equal(h.actor.getSnapshot().context.startAfterStop, false);

  // START then STOP while stopping: the later STOP wins.
  const h2 = harness();
  await bringUp(h2, 9, 0);
  h2.actor.send({ type: 'STOP' });
  const stop2 = await h2.next('stop');
  h2.actor.send({ type: 'START' });
  h2.actor.send({ type: 'STOP' });
  stop2.resolve(undefined);
  await h2.settle();
  assert.equal(h2.state(), 'stopped');
  assert.equal(h2.calls.length, 0);
});

test('a service that stays up long enough has its failure count cleared', async () => {
  const h = harness({ crashLoopStarts: 100 });
  let watch = await bringUp(h, 1, 0);
  watch.resolve(undefined);
  await h.settle();
  while (h.state() === 'backoff') await h.tick(250);
  watch = await bringUp(h, 2, 1000);
  assert.equal(h.actor.getSnapshot().context.failures, 1);
  await h.tick(30_000);
  assert.equal(h.actor.getSnapshot().context.failures, 0);
  assert.equal(watch.input.pid, 2);
});

test('a service that cannot be started is not-startable: no failure, no start counted, looked at again', async () => {
  const h = harness({ crashLoopStarts: 2 });
  for (let round = 0; round < 4; round++) {
    (await h.next('detect')).resolve({ pid: null });
    const broken = Object.assign(new Error('java: not startable: application.yml is broken'), {
      notStartable: true,
    });
    (await h.next('start')).reject(broken);
    await h.settle();
    assert.equal(serviceStatus(h.actor.getSnapshot().value), 'not-startable', `round ${round}`);
    const ctx = h.actor.getSnapshot().context;
    assert.equal(ctx.failures, 0);
    assert.deepEqual(ctx.starts, []);
    assert.match(ctx.lastError ?? '', /application\.yml is broken/);
    await h.tick(999);
    assert.equal(h.state(), 'notStartable', 'waits notStartableRetryMs');
    await h.tick(1);
  }
  // Fixed: the next look starts it.
  await bringUp(h, 7, 10_000);
  assert.equal(h.state(), 'running');
  assert.equal(h.actor.getSnapshot().context.lastError, null);
});
