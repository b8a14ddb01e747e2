// The store serialises a snapshot once and builds the envelope around that text: the file must
// stay byte-identical to JSON.stringify(envelope), which older agents and tools parse.
import assert from 'node:assert/strict';
import { readFile, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { assign, createActor, fromPromise, setup } from 'xstate';
import { nodePatchFs } from '../../adapters/patch-fs.ts';
import { DurableStore, envelopeText, type Envelope } from '../../services/update/durable.ts';
import { writePatchMeta } from '../../services/update/update-store.ts';

const awkward = [
  'update',
  'quote " backslash \\ slash /',
  'control \u0000\u0001\n\t\u001f and del \u007f',
  'unicode é ✓ 😀 and lone surrogate \ud800',
  '\u2028\u2029',
  '',
];

test('envelopeText is JSON.stringify(envelope) for awkward fields and snapshots', () => {
  const snapshots: unknown[] = [
    { status: 'active', value: { installing: 'copying' }, context: {}, children: {} },
    { '10': 'integer-like keys', '2': 'come first', b: [1, -0, 1e21, 0.1, null], a: { '': true } },
    { text: awkward.join('|'), nested: { deeper: [{ x: 'y' }, [], {}] } },
  ];
  for (const machineId of awkward)
    for (const snapshot of snapshots)
      for (const seq of [0, 1, 2 ** 53 - 1]) {
        const envelope: Envelope = {
          format: 1,
          machineId,
          machineVersion: `3+patch1 ${machineId}`,
          seq,
          savedAt: '2026-12-05T18:30:00.123Z',
          snapshot,
        };
        assert.equal(
          envelopeText(envelope, JSON.stringify(snapshot)),
          JSON.stringify(envelope),
          `${JSON.stringify(machineId)} seq ${seq}`,
        );
      }
});

test('patch.meta on disk is JSON.stringify of the envelope of the persisted snapshot', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'bk-envelope-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  const path = join(dir, 'patch.meta');
  const machine = setup({
    types: { context: {} as { notes: string[] } },
    actors: { wait: fromPromise(() => new Promise<never>(() => undefined)) },
  }).createMachine({
    id: 'awkward',
    context: { notes: awkward },
    initial: 'a',
    states: {
      a: {
        entry: assign({ notes: ({ context }) => [...context.notes, 'entered "a"'] }),
        invoke: { id: 'waiting', src: 'wait' },
      },
    },
  });
  const savedAt = new Date('2026-12-05T18:30:00.123Z');
  const store = new DurableStore({
    machineId: 'update',
    machineVersion: '3+patch1',
    write: (text) => writePatchMeta(nodePatchFs, path, text),
    onFatal: (err) => assert.fail(String(err)),
    initialSeq: 41,
    now: () => savedAt,
  });
  // Not inspected: only the explicit record() writes, while the actor waits in "a".
  const actor = createActor(machine);
  store.attach(actor);
  actor.start();
  store.record();
  await store.flush();
  const expected = JSON.stringify({
    format: 1,
    machineId: 'update',
    machineVersion: '3+patch1',
    seq: 42,
    savedAt: savedAt.toISOString(),
    snapshot: actor.getPersistedSnapshot(),
  });
  assert.equal(await readFile(path, 'utf8'), expected);
  actor.stop();
});
