// The box's preparation script runs in a real shell and its environment is what Java gets.
import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { captureScriptEnvironment, decodeCmd, parseWindowsSet } from '../../adapters/script-env.ts';

let dir: string;
before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'bk-env-'));
});
after(() => rm(dir, { recursive: true, force: true }));

test('a .sh script: what it exports reaches the captured environment, the rest is kept', async () => {
  const script = join(dir, 'start.sh');
  await writeFile(
    script,
    'echo preparing\nexport JAVA_OPTS="-Xms256m -Xmx512m"\nexport MULTI="line1\nline2"\nunset DROP_ME\n',
  );
  const r = await captureScriptEnvironment(script, 'linux', {
    PATH: process.env.PATH ?? '',
    KEEP: 'kept',
    DROP_ME: 'x',
  });
  assert.ok(r.ok === true, JSON.stringify(r));
  assert.equal(r.env.JAVA_OPTS, '-Xms256m -Xmx512m');
  assert.equal(r.env.MULTI, 'line1\nline2');
  assert.equal(r.env.KEEP, 'kept');
  assert.equal(r.env.DROP_ME, undefined);
});

test('no script, or a Windows .bat on Linux: Java inherits the agent environment', async () => {
  assert.deepEqual(await captureScriptEnvironment(join(dir, 'missing.sh'), 'linux', {}), {
    ok: 'absent',
  });
  const bat = join(dir, 'start.bat');
  await writeFile(bat, '@echo off\r\nset JAVA_OPTS=-Xmx1g\r\n');
  assert.deepEqual(await captureScriptEnvironment(bat, 'linux', {}), { ok: 'absent' });
});

test('a script that hangs is stopped and named', async () => {
  const script = join(dir, 'hang.sh');
  await writeFile(script, 'sleep 30\n');
  const r = await captureScriptEnvironment(script, 'linux', { PATH: process.env.PATH ?? '' }, 300);
  assert.ok(r.ok === false, JSON.stringify(r));
  assert.match(r.reason, /hang\.sh did not finish/);
});

test("cmd's set output, UTF-16 (cmd /u) or code page, is parsed without drive entries", () => {
  const text = '=C:=C:\\box\r\nJAVA_OPTS=-Xmx1g\r\nPath=C:\\Windows;C:\\java\\bin\r\nNAME=盒子\r\n';
  const env = parseWindowsSet(decodeCmd(Buffer.from(text, 'utf16le')));
  assert.deepEqual(env, {
    JAVA_OPTS: '-Xmx1g',
    Path: 'C:\\Windows;C:\\java\\bin',
    NAME: '盒子',
  });
  assert.equal(parseWindowsSet(decodeCmd(Buffer.from('A=1\r\n', 'latin1'))).A, '1');
});
