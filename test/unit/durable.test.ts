// The persist-gate-act store with a real XState system: each effect sees, on "disk", a
// snapshot that already contains it; restored systems re-run in-flight effects; nested
// (spawned) children are recorded too.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { assign, createActor, createMachine, fromPromise, setup, type AnyActorRef } from 'xstate';
import { DurableStore, type Envelope } from '../../services/update/durable.ts';

interface Disk {
  writes: Envelope[];
  current: () => Envelope | undefined;
}

function disk(delayMs = 0): Disk & { write: (text: string) => Promise<void> } {
  const writes: Envelope[] = [];
  return {
    writes,
    current: () => writes[writes.length - 1],
    write: async (text: string) => {
      await new Promise((r) => setTimeout(r, delayMs));
      writes.push(JSON.parse(text) as Envelope);
    },
  };
}

const flow = setup({
  types: { context: {} as { log: string[] } },
  actors: {
    step: fromPromise<string, { name: string }>(() => Promise.reject(new Error('not provided'))),
  },
}).createMachine({
  id: 'flow',
  context: { log: [] },
  initial: 'a',
  states: {
    a: {
      invoke: {
        id: 'stepA',
        src: 'step',
        input: { name: 'a' },
        onDone: {
          target: 'b',
          actions: assign({ log: ({ context, event }) => [...context.log, event.output] }),
        },
      },
    },
    b: {
      invoke: {
        id: 'stepB',
        src: 'step',
        input: { name: 'b' },
        onDone: {
          target: 'done',
          actions: assign({ log: ({ context, event }) => [...context.log, event.output] }),
        },
      },
    },
    done: { type: 'final' },
  },
});

function run(store: DurableStore, d: Disk, seen: string[], snapshot?: unknown) {
  const machine = flow.provide({
    actors: {
      step: fromPromise<string, { name: string }>(async ({ input, self }) => {
        await store.whenDurable(self as AnyActorRef);
        const onDisk = d.current()?.snapshot as { value?: string } | undefined;
        seen.push(`${input.name} started with "${onDisk?.value ?? '(nothing)'}" on disk`);
        return `did ${input.name}`;
      }),
    },
  });
  const actor = createActor(machine, {
    inspect: store.inspect,
    ...(snapshot === undefined ? {} : { snapshot: snapshot as never }),
  });
  store.attach(actor);
  return actor;
}

test('every effect starts only once a snapshot containing it is durable', async () => {
  const d = disk(20);
  const store = new DurableStore({
    machineId: 'flow',
    machineVersion: '1',
    write: d.write,
    onFatal: (e) => assert.fail(String(e)),
  });
  const seen: string[] = [];
  const actor = run(store, d, seen);
  actor.start();
  await new Promise<void>((resolve) => actor.subscribe({ complete: resolve }));
  await store.flush();
  assert.deepEqual(seen, ['a started with "a" on disk', 'b started with "b" on disk']);
  const seqs = d.writes.map((w) => w.seq);
  assert.deepEqual(
    seqs,
    [...seqs].sort((x, y) => x - y),
    'writes land in order',
  );
  assert.equal(d.current()?.machineVersion, '1');
  assert.equal((d.current()?.snapshot as { status: string }).status, 'done');
});

test('a restored system re-runs the effect that was in flight, after re-recording', async () => {
  const d = disk();
  const store = new DurableStore({
    machineId: 'flow',
    machineVersion: '1',
    write: d.write,
    onFatal: () => undefined,
  });
  const blocked = createActor(
    flow.provide({
      actors: { step: fromPromise<string, { name: string }>(() => new Promise(() => undefined)) },
    }),
    { inspect: store.inspect },
  );
  store.attach(blocked);
  blocked.start();
  await store.flush();
  await new Promise((r) => setTimeout(r, 10));
  const crashedAt = JSON.parse(JSON.stringify(d.current())) as Envelope;
  assert.equal((crashedAt.snapshot as { value: string }).value, 'a');
  blocked.stop();

  const d2 = disk();
  const store2 = new DurableStore({
    machineId: 'flow',
    machineVersion: '1',
    write: d2.write,
    onFatal: () => undefined,
    initialSeq: crashedAt.seq,
  });
  const seen: string[] = [];
  const restored = run(store2, d2, seen, crashedAt.snapshot);
  restored.start();
  await new Promise<void>((resolve) => restored.subscribe({ complete: resolve }));
  await store2.flush();
  assert.deepEqual(seen, ['a started with "a" on disk', 'b started with "b" on disk']);
  assert.ok((d2.writes[0]?.seq ?? 0) > crashedAt.seq, 'sequence numbers continue');
});

test('a failed write stops persisting and fails every gate (fail-stop)', async () => {
  let fatal: unknown;
  const store = new DurableStore({
    machineId: 'flow',
    machineVersion: '1',
    write: () => Promise.reject(new Error('ENOSPC: no space left on device')),
    onFatal: (e) => (fatal = e),
  });
  const started: string[] = [];
  const actor = createActor(
    flow.provide({
      actors: {
        step: fromPromise<string, { name: string }>(async ({ self, input }) => {
          await store.whenDurable(self as AnyActorRef);
          started.push(input.name);
          return 'x';
        }),
      },
    }),
    { inspect: store.inspect },
  );
  store.attach(actor);
  const errors: unknown[] = [];
  actor.subscribe({ error: (e) => errors.push(e) });
  actor.start();
  await store.flush().catch(() => undefined);
  await new Promise((r) => setTimeout(r, 20));
  assert.match(String(fatal), /ENOSPC/);
  assert.deepEqual(started, [], 'no effect ran without its state on disk');
});

test('progress of a spawned child is persisted although the root did not change', async () => {
  const child = createMachine({
    id: 'child',
    initial: 'one',
    states: { one: { on: { NEXT: 'two' } }, two: {} },
  });
  const parent = setup({ actors: { child } }).createMachine({
    id: 'parent',
    invoke: { id: 'kid', src: 'child' },
  });
  const d = disk();
  const store = new DurableStore({
    machineId: 'parent',
    machineVersion: '1',
    write: d.write,
    onFatal: () => undefined,
  });
  const actor = createActor(parent, { inspect: store.inspect });
  store.attach(actor);
  actor.start();
  await store.flush();
  const kid = actor.getSnapshot().children.kid as AnyActorRef;
  kid.send({ type: 'NEXT' });
  await store.flush();
  const kidOnDisk = (
    d.current()?.snapshot as { children: { kid: { snapshot: { value: string } } } }
  ).children.kid;
  assert.equal(kidOnDisk.snapshot.value, 'two');
});
