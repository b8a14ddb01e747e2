// One exit-code table (adapters/errors.ts EXIT_CODE_MEANINGS) for --help, README.md and
// docs/architecture.md, and each command ending with the code the table gives for its outcome:
// the real CLI as a child process, a fixture box and the cloud simulator.
import { EXIT_CODE_MEANINGS } from '../../cli/exit-codes.ts';
import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';

import { runCli, setupE2E, type CliResult } from '../helpers/cli.ts';

const show = (r: CliResult): string =>
  `exit ${String(r.code)}\n--- stdout ---\n${r.stdout}\n--- stderr ---\n${r.stderr}`;

/** The rows of the first Markdown table after a heading that names exit codes. */
function documentedCodes(markdown: string): Array<[number, string]> {
  const lines = markdown.split('\n');
  const start = lines.findIndex((l) => /^#+ .*exit codes/i.test(l));
  assert.ok(start >= 0, 'a heading names the exit codes');
  const rows: Array<[number, string]> = [];
  for (const line of lines.slice(start + 1)) {
    if (/^#/.test(line)) break;
    const cells = line.split('|').map((c) => c.trim());
    if (cells.length < 4 || !/^\d+$/.test(cells[1] ?? '')) {
      if (rows.length > 0 && !line.startsWith('|')) break;
      continue;
    }
    rows.push([Number(cells[1]), cells[2] ?? '']);
  }
  return rows;
}

test('--help, README.md and docs/architecture.md give the same exit-code table', async () => {
  const expected = EXIT_CODE_MEANINGS.map(([c, m]) => [c as number, m]);
  for (const doc of ['README.md', 'docs/architecture.md']) {
    const text = await readFile(new URL(`../../${doc}`, import.meta.url), 'utf8');
    assert.deepEqual(documentedCodes(text), expected, doc);
  }
  const help = await runCli(['--help']);
  for (const [code, meaning] of EXIT_CODE_MEANINGS)
    assert.ok(help.stdout.includes(`${String(code).padStart(2)}  ${meaning}`), `--help: ${code}`);
});

test('usage is checked before settings, lock or repository: exit 2 with what was expected', async () => {
  const nowhere = join(tmpdir(), 'bk-no-such-dir', 'settings.ini');
  const cases: Array<[string[], RegExp]> = [
    [['snapshot', 'rollback'], /snapshot rollback needs --version V/],
    [['snapshot', 'delete'], /snapshot delete needs a version/],
    [['snapshot', 'diff', 'A'], /snapshot diff needs two versions/],
    [['check', '--timeout', 'soon'], /--timeout soon: expected seconds > 0/],
    [['install', '--timeout', '0'], /--timeout 0: expected seconds > 0/],
  ];
  for (const [args, message] of cases) {
    const r = await runCli([...args, '--settings', nowhere]);
    assert.equal(r.code, 2, `${args.join(' ')}: ${show(r)}`);
    assert.match(r.stderr, message, args.join(' '));
    assert.doesNotMatch(r.stderr, /settings|another boxkeeper/i, args.join(' '));
  }
});

test('a misspelt option gets our message and the nearest option', async () => {
  const typo = await runCli(['check', '--tiemout', '5']);
  assert.equal(typo.code, 2, show(typo));
  assert.match(
    typo.stderr,
    /unknown option --tiemout for "boxkeeper check"; did you mean --timeout\?/,
  );
  const noValue = await runCli(['check', '--timeout']);
  assert.equal(noValue.code, 2, show(noValue));
  assert.match(noValue.stderr, /option --timeout needs a value/);
  const value = await runCli(['status', '--json=yes']);
  assert.equal(value.code, 2, show(value));
  assert.match(value.stderr, /option --json takes no value/);
  assert.doesNotMatch(typo.stderr + noValue.stderr + value.stderr, /ERR_PARSE_ARGS|<value>/);
});

test('check with the cloud down exits 4; install and rollback with nothing to do exit 9', async (t) => {
  const h = await setupE2E();
  t.after(() => h.close());
  const install = await h.cli(['install']);
  assert.equal(install.code, 9, show(install));
  assert.match(install.stderr, /no downloaded update waits to be installed/);
  const rollback = await h.cli(['rollback']);
  assert.equal(rollback.code, 9, show(rollback));
  assert.match(rollback.stderr, /nothing to roll back/);
  const ok = await h.cli(['check']);
  assert.equal(ok.code, 0, show(ok));
  // The cloud fails every version check. Not by closing the simulator: under load another
  // test's simulator can be given the freed port at once and answer in its place.
  h.sim.inject('check', { kind: 'status', status: 503 });
  const down = await h.cli(['check']);
  assert.equal(down.code, 4, show(down));
  assert.match(down.stdout, /last error: version check:/);
});

test('diagram --check exits 11 when a picture is stale, 0 when fresh', async (t) => {
  const out = await mkdtemp(join(tmpdir(), 'bk-diagrams-'));
  t.after(() => rm(out, { recursive: true, force: true }));
  const stale = await runCli(['diagram', '--check', '--out', out]);
  assert.equal(stale.code, 11, show(stale));
  assert.match(stale.stderr, /stale diagrams/);
  const written = await runCli(['diagram', '--out', out]);
  assert.equal(written.code, 0, show(written));
  const fresh = await runCli(['diagram', '--check', '--out', out]);
  assert.equal(fresh.code, 0, show(fresh));
  await writeFile(join(out, 'update.mmd'), 'changed\n');
  const changed = await runCli(['diagram', '--check', '--out', out]);
  assert.equal(changed.code, 11, show(changed));
});
