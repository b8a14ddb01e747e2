// What a waiting update command shows: not on a terminal (here, a pipe), timestamped lines for
// each step and the download every 10 %; `status` during a download shows live bytes. The real
// CLI and daemon, a fixture box, the cloud simulator serving a patch slowly (small chunks).
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { test, type TestContext } from 'node:test';
import { buildStandinJar } from '../../fixtures/box/generate.ts';
import { setupE2E, type CliResult, type E2E } from '../helpers/cli.ts';

const show = (r: CliResult): string =>
  `exit ${String(r.code)}\n--- stdout ---\n${r.stdout}\n--- stderr ---\n${r.stderr}`;

const UPDATE = {
  update: { enabled: 'on', check_jitter: '0', health_timeout: '30', health_settle: '0.5' },
};

/** A box whose cloud offers a mandatory V1.8 of ~30 chunks, each answered after 300 ms (~10 s in all). */
async function slowDownloadBox(t: TestContext): Promise<E2E> {
  const e = await setupE2E({
    extraSettings: UPDATE,
    sim: {
      chunkSize: 4096,
      scenario: {
        upgradeMark: 2,
        versions: [
          { versionNum: 'V1.7' },
          {
            versionNum: 'V1.8',
            // Bytes the zip cannot shrink, so the download has ~30 chunks.
            files: {
              'icb-box.jar': await buildStandinJar({ version: 'V1.8' }),
              'data/blob.bin': randomBytes(120_000),
            },
          },
        ],
      },
    },
  });
  t.after(() => e.close());
  e.sim.inject('file', { kind: 'delay', ms: 300, times: 1000 });
  return e;
}

test('a waiting check (not on a terminal) prints timestamped steps and the download every 10 %', async (t) => {
  const e = await slowDownloadBox(t);
  const r = await e.cli(['check', '--timeout', '120'], { timeoutMs: 180_000 });
  assert.equal(r.code, 0, show(r));
  const stamped = /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z /;
  const steps = r.stdout
    .split('\n')
    .filter((l) => stamped.test(l))
    .map((l) => l.replace(stamped, ''));
  assert.ok(
    steps.some((l) => /^downloading \(phase \d+ \w+\)$/.test(l)),
    r.stdout,
  );
  assert.ok(
    steps.some((l) => /^installing\.\w+/.test(l)),
    r.stdout,
  );
  const percents = steps
    .map((l) => /^ {2}V1\.8: downloaded (\d+)% \(([\d.]+) of ([\d.]+) MB\)$/.exec(l)?.[1])
    .filter((p) => p !== undefined)
    .map(Number);
  assert.ok(percents.length >= 3, `several progress lines: ${percents.join(', ')}\n${r.stdout}`);
  assert.deepEqual(
    percents,
    [...percents].sort((a, b) => a - b),
    'in order',
  );
  assert.equal(percents.at(-1), 100);
  // The extraction that follows the download is measured too.
  assert.ok(
    steps.some((l) => /^ {2}V1\.8: extracted 100% \([\d.]+ of [\d.]+ MB\)$/.test(l)),
    r.stdout,
  );
  assert.match(r.stdout, /last result: installed V1\.8/);
});

test('status shows a running download in bytes, refreshed while it runs', async (t) => {
  const e = await slowDownloadBox(t);
  // The daemon checks at start; the mandatory V1.8 downloads at once.
  const d = e.startDaemon();
  const seen: number[] = [];
  let last = '';
  await d.waitUntil(
    async () => {
      const s = await e.cli(['status']);
      last = s.stdout;
      const m = /V1\.8 +DOWNLOADING ([\d.]+) of ([\d.]+) MB \((\d+)\/(\d+) chunks\)/.exec(s.stdout);
      if (m !== null && !seen.includes(Number(m[3]))) seen.push(Number(m[3]));
      return seen.length >= 2 || /installed V1\.8/.test(s.stdout) ? true : undefined;
    },
    90_000,
    'two different download positions in status',
  );
  assert.ok(seen.length >= 2, `status showed the download moving: ${seen.join(', ')}\n${last}`);
});
