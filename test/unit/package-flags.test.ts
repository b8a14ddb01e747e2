// The package's Node flags reach its runtime however it is started: the sh launcher is written
// from PACKAGE_NODE_FLAGS (the package test checks the daemon's command line), the Windows
// launcher has them as literals, and the service definition and a self-update ask nodeFlagsFor.
import assert from 'node:assert/strict';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { nodeFlagsFor, PACKAGE_NODE_FLAGS } from '../../adapters/agent-install.ts';
import { REPO } from '../helpers/cli.ts';

test('bin\\boxkeeper.exe passes the same flags as the other starters', async () => {
  const source = await readFile(join(REPO, 'packaging', 'win', 'launcher.c'), 'utf8');
  const passed = [...source.matchAll(/append_arg\(cmd, &len, L"(--[^"]+)"\)/g)].map((m) => m[1]);
  assert.deepEqual(
    passed.filter((f) => f !== '--from-patch'),
    [...PACKAGE_NODE_FLAGS],
  );
});

test("an install's own runtime gets the package flags; any other Node gets the fallback", async (t) => {
  const home = await mkdtemp(join(tmpdir(), 'bk-flags-'));
  t.after(() => rm(home, { recursive: true, force: true }));
  const tsx = ['--import', 'file:///checkout/node_modules/tsx/dist/loader.mjs'];
  const linuxNode = join(home, 'runtime', 'node');
  const winNode = join(home, 'runtime', 'node.exe');
  // A source checkout: no runtime in the install.
  assert.deepEqual(nodeFlagsFor(home, linuxNode, tsx, 'linux'), tsx);
  await mkdir(join(home, 'runtime'));
  await writeFile(linuxNode, '');
  await writeFile(winNode, '');
  assert.deepEqual(nodeFlagsFor(home, linuxNode, tsx, 'linux'), [...PACKAGE_NODE_FLAGS]);
  assert.deepEqual(nodeFlagsFor(home, winNode, tsx, 'win32'), [...PACKAGE_NODE_FLAGS]);
  // Another install's runtime, or the system's Node, is not this package's.
  assert.deepEqual(nodeFlagsFor(home, '/usr/bin/node', tsx, 'linux'), tsx);
  assert.deepEqual(nodeFlagsFor(join(home, 'other'), linuxNode, [], 'linux'), []);
});
