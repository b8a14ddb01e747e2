// The persist-gate-act store when the disk refuses a write: with `retryable` it parks (the
// effect waits at its gate, the write is retried with a bounded backoff) and goes on by itself
// once the write lands; without it, fail-stop as before.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { createActor, fromPromise, setup, type AnyActorRef } from 'xstate';
import { storageErrorOf } from '../../adapters/errors.ts';
import { DurableStore, type Envelope, type ParkedWrite } from '../../services/update/durable.ts';

const flow = setup({
  actors: { step: fromPromise<string>(() => Promise.reject(new Error('not provided'))) },
}).createMachine({
  id: 'flow',
  initial: 'a',
  states: {
    a: { invoke: { id: 'stepA', src: 'step', onDone: 'done' } },
    done: { type: 'final' },
  },
});

function enospc(): Error {
  return Object.assign(new Error('ENOSPC: no space left on device, write'), {
    code: 'ENOSPC',
    syscall: 'write',
  });
}

async function until(cond: () => boolean, what: string): Promise<void> {
  for (let i = 0; i < 400; i++) {
    if (cond()) return;
    await new Promise((r) => setTimeout(r, 25));
  }
  throw new Error(`timed out waiting for ${what}`);
}

test('a refused write parks the store: the effect waits at its gate until the write lands', async () => {
  const writes: Envelope[] = [];
  let diskFull = true;
  let attempts = 0;
  const parkedEvents: Array<ParkedWrite | null> = [];
  const fatal: unknown[] = [];
  const store = new DurableStore({
    machineId: 'flow',
    machineVersion: '1',
    write: (text) => {
      attempts++;
      if (diskFull) return Promise.reject(enospc());
      writes.push(JSON.parse(text) as Envelope);
      return Promise.resolve();
    },
    onFatal: (err) => fatal.push(err),
    retryable: (err) => storageErrorOf(err) !== undefined,
    retryDelay: { initialMs: 10, maxMs: 40 },
    onParked: (p) => parkedEvents.push(p === null ? null : { ...p }),
  });
  let started = 0;
  let onDiskWhenStarted: unknown;
  const machine = flow.provide({
    actors: {
      step: fromPromise<string>(async ({ self }) => {
        await store.whenDurable(self as AnyActorRef);
        started++;
        onDiskWhenStarted = writes.at(-1)?.snapshot;
        return 'ok';
      }),
    },
  });
  const actor = createActor(machine, { inspect: store.inspect });
  store.attach(actor);
  actor.start();
  store.record();

  await until(() => attempts >= 4, 'four attempts');
  assert.equal(started, 0, 'no effect starts while its state is not on disk');
  assert.equal(fatal.length, 0, 'a full disk is not fatal');
  const parked = store.parked;
  assert.ok(parked !== undefined, 'the store says it is parked');
  assert.ok(parked.attempts >= 3);
  assert.equal(storageErrorOf(parked.error)?.code, 'ENOSPC');
  // The backoff doubles and stays bounded: the retry is at most maxMs after the last failure.
  assert.ok(Date.parse(parked.nextRetryAt) - Date.now() <= 40 + 5);

  diskFull = false;
  await until(() => actor.getSnapshot().status === 'done', 'the machine to finish');
  assert.equal(started, 1);
  assert.deepEqual((onDiskWhenStarted as { value: string }).value, 'a');
  assert.equal(store.parked, undefined);
  assert.equal(parkedEvents.at(-1), null, 'told when it goes on');
  assert.ok(parkedEvents.filter((p) => p !== null).length >= 3);
  await store.flush();
  assert.equal((writes.at(-1)?.snapshot as { status: string }).status, 'done');
});

test('without retryable a refused write is fail-stop; a closed store stops retrying', async () => {
  const waiting = flow.provide({
    actors: { step: fromPromise<string>(() => new Promise<string>(() => undefined)) },
  });
  const fatal: unknown[] = [];
  const failStop = new DurableStore({
    machineId: 'flow',
    machineVersion: '1',
    write: () => Promise.reject(enospc()),
    onFatal: (err) => fatal.push(err),
  });
  const a1 = createActor(waiting, { inspect: failStop.inspect });
  failStop.attach(a1);
  a1.start();
  failStop.record();
  await assert.rejects(failStop.flush(), /ENOSPC/);
  assert.equal(fatal.length, 1);
  a1.stop();

  let attempts = 0;
  const parking = new DurableStore({
    machineId: 'flow',
    machineVersion: '1',
    write: () => {
      attempts++;
      return Promise.reject(enospc());
    },
    onFatal: (err) => fatal.push(err),
    retryable: () => true,
    retryDelay: { initialMs: 60_000, maxMs: 60_000 },
  });
  const a2 = createActor(waiting, { inspect: parking.inspect });
  parking.attach(a2);
  a2.start();
  parking.record();
  await until(() => parking.parked !== undefined, 'parked');
  parking.close();
  // close() wakes the parked retry at once: flush does not wait out the 60 s backoff.
  await parking.flush();
  assert.equal(attempts, 1);
  assert.equal(fatal.length, 1, 'closing while parked is not a failure');
  a2.stop();
});
