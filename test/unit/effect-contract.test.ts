// The effect contract is derived from the machines' actor declarations: an implementation that
// wants an input the machine does not give, or returns another output, does not compile. The
// lines marked ts-expect-error are the test (npm run typecheck fails if they compile); the runtime
// part checks that the box's effects implement every declared effect.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { UPDATE_EFFECTS } from '../../machines/update.machine.ts';
import { BoxUpdateEffects } from '../../services/update/update-effects.ts';
import type { UpdateEffects } from '../../services/update/update-engine.ts';

type Confirm = UpdateEffects['confirmSelfUpdate'];
type Backup = UpdateEffects['backup'];

test('a wrong input or output for an effect is a type error', () => {
  const ok: Confirm = (input) => (input.agentBuild === '' ? Promise.resolve() : Promise.resolve());
  // @ts-expect-error -- the machine gives no `force` to confirmSelfUpdate
  const wantsMore: Confirm = (input: { versionNum: string; force: boolean }) =>
    input.force ? Promise.resolve() : Promise.resolve();
  // @ts-expect-error -- backup must say which snapshot it made (BackupOutput without `at`)
  const returnsNothing: Backup = () => Promise.resolve();
  assert.equal(typeof ok, 'function');
  assert.equal(typeof wantsMore, 'function');
  assert.equal(typeof returnsNothing, 'function');
});

test("the box's effects implement every effect the machines declare", () => {
  const missing = [...UPDATE_EFFECTS, 'downloadPatch', 'applySql', 'replaceFiles']
    .filter((src) => src !== 'waitUntil' && src !== 'patch')
    .filter(
      (src) =>
        typeof (BoxUpdateEffects.prototype as unknown as Record<string, unknown>)[src] !==
        'function',
    );
  assert.deepEqual(missing, []);
});
