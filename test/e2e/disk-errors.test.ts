// Every command on a disk that refuses it: one line on stderr naming the file, what the disk
// said and what to do, exit 7 (docs/architecture.md, "Exit codes"), never a stack trace. Real
// files: patch.meta that is a directory (EISDIR), a really full tmpfs (ENOSPC).
import assert from 'node:assert/strict';
import { mkdir, mkdtemp, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { runCli, setupE2E, type CliResult, type E2E } from '../helpers/cli.ts';
import { canMountTmpfs, fillDisk, mountTmpfs, NO_MOUNT } from '../helpers/tmpfs.ts';

const STORAGE_EXIT = 7;

/** One `boxkeeper: …` line, no stack frames, no "internal error". */
function assertOneLine(r: CliResult, pattern: RegExp, what: string): void {
  const text = r.stderr.trim();
  assert.equal(r.code, STORAGE_EXIT, `${what}: exit code (stderr: ${text})`);
  assert.doesNotMatch(text, /\n\s+at |internal error/, `${what}: no stack trace:\n${text}`);
  const lines = text.split('\n').filter((l) => l.startsWith('boxkeeper: '));
  assert.equal(lines.length, 1, `${what}: one error line:\n${text}`);
  assert.match(lines[0] as string, pattern, what);
}

describe('patch.meta is a directory (EISDIR)', () => {
  let h: E2E;
  let meta: string;
  before(async () => {
    h = await setupE2E({ extraSettings: { update: { enabled: 'on' } } });
    meta = join(h.box.boxRoot, 'patch', 'patch.meta');
    await mkdir(meta, { recursive: true });
  });
  after(() => h.close());

  const expected = () =>
    new RegExp(
      `^boxkeeper: cannot read ${meta}: is a directory, expected a file \\(EISDIR\\); move the directory aside$`,
    );

  for (const command of ['check', 'install', 'rollback', 'clear-cache']) {
    test(`boxkeeper ${command}`, async () => {
      assertOneLine(await h.cli([command]), expected(), command);
    });
  }

  test('boxkeeper run', async () => {
    assertOneLine(await h.cli(['run'], { timeoutMs: 60_000 }), expected(), 'run');
  });

  test('boxkeeper replay', async () => {
    const copy = join(h.box.boxRoot, '..', 'copy');
    await mkdir(copy, { recursive: true });
    const r = await h.cli(['replay', meta, '--box', copy]);
    assertOneLine(r, expected(), 'replay');
  });

  test('boxkeeper status names it and exits 0', async () => {
    const r = await h.cli(['status']);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /update: +cannot read .*patch\.meta: is a directory.*\(EISDIR\)/);
  });
});

test(
  'a full disk (ENOSPC): run cannot take its lock, check cannot save patch.meta',
  { skip: !canMountTmpfs && NO_MOUNT },
  async (t) => {
    const disk = await mountTmpfs(t, 1);
    const agentData = join(disk, 'agent');
    const patchDir = join(disk, 'patch');
    await mkdir(agentData);
    await mkdir(patchDir);
    // Logs off the full disk, so the lock (in agent data, on it) is what fails first.
    const logs = await mkdtemp(join(tmpdir(), 'bk-logs-'));
    t.after(() => rm(logs, { recursive: true, force: true }));
    const h = await setupE2E({
      extraSettings: {
        paths: { agent_data: agentData, logs, patch: patchDir },
        update: { enabled: 'on' },
      },
    });
    t.after(() => h.close());
    await fillDisk(disk);

    assertOneLine(
      await h.cli(['run'], { timeoutMs: 60_000 }),
      new RegExp(
        `^boxkeeper: cannot write ${join(agentData, 'agent.lock')}: no space left on the disk \\(ENOSPC\\); free space on that disk$`,
      ),
      'run',
    );
    assert.deepEqual(
      (await readdir(agentData)).filter((n) => n.startsWith('agent.lock')),
      [],
      'no half-written lock left',
    );
    assertOneLine(
      await h.cli(['check'], { timeoutMs: 60_000 }),
      new RegExp(
        `^boxkeeper: cannot write (${join(agentData, 'agent.lock')}|${join(patchDir, 'patch.meta')}): no space left on the disk \\(ENOSPC\\); free space on that disk$`,
      ),
      'check',
    );
  },
);

test('run with a missing box_root fails with exit 2 and creates no log dir there (status answers)', async (t) => {
  const h = await setupE2E();
  t.after(() => h.close());
  const missing = join(h.box.boxRoot, '..', 'no-such-box');
  const settings = (await readFile(h.box.settingsPath, 'utf8')).replace(
    /^box_root=.*$/m,
    `box_root=${missing}`,
  );
  const file = join(h.box.boxRoot, '..', 'missing-root.ini');
  await writeFile(file, settings);
  const r = await runCli(['run', '--settings', file]);
  assert.equal(r.code, 2, r.stderr);
  assert.match(r.stderr, /\[paths\] box_root: the box install dir .*no-such-box does not exist/);
  await assert.rejects(stat(missing), { code: 'ENOENT' }, 'nothing created at the missing box');
  // status only reads: it answers for a missing box, and creates nothing there either.
  const s = await runCli(['status', '--settings', file]);
  assert.equal(s.code, 0, s.stderr);
  await assert.rejects(stat(missing), { code: 'ENOENT' }, 'status created nothing there');
});
