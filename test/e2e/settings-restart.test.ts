// Policy is configuration, not state: the update cycle's timers and limits come from
// settings.ini at every start, not from the snapshot patch.meta restores. The real daemon,
// restarted with a changed settings.ini.
import assert from 'node:assert/strict';
import { readFile, writeFile } from 'node:fs/promises';
import { test } from 'node:test';
import { setupE2E, type E2E } from '../helpers/cli.ts';

async function policyOf(e: E2E, pid: number): Promise<number | undefined> {
  const s = await e.readStatus();
  return s?.pid === pid ? (s.update?.policy?.checkIntervalMs ?? undefined) : undefined;
}

test('a daemon restarted with a changed [timer] versionCheck runs with the new one', async (t) => {
  const e = await setupE2E({
    extraSettings: { timer: { versionCheck: '111111' }, update: { enabled: 'on' } },
  });
  t.after(() => e.close());
  const first = e.startDaemon();
  await first.waitUntil(
    async () => (await policyOf(e, first.pid)) === 111_111_000 || undefined,
    30_000,
    'the first daemon to run with versionCheck 111111',
  );
  await first.stop();

  const text = await readFile(e.box.settingsPath, 'utf8');
  assert.match(text, /^versionCheck\s*=\s*111111\b/m);
  await writeFile(
    e.box.settingsPath,
    text.replace(/^versionCheck\s*=\s*111111/m, 'versionCheck=999999'),
  );
  const second = e.startDaemon();
  const seen = await second.waitUntil(
    async () => {
      const ms = await policyOf(e, second.pid);
      return ms === undefined ? undefined : { ms };
    },
    30_000,
    'the second daemon to publish its update policy',
  );
  assert.equal(seen.ms, 999_999_000, 'the settings of this start, not the saved policy');
});
