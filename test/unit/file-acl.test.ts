// Making agent files private: the POSIX modes for real on temp files, the Windows icacls
// command line through a recording runner (Windows cannot run here; under Wine see the note in
// docs/architecture.md), and the masking of secrets in traces.
import assert from 'node:assert/strict';
import { chmod, mkdir, mkdtemp, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import {
  icaclsArgs,
  posixFileAccess,
  windowsFileAccess,
  windowsUser,
  type RunCommand,
} from '../../adapters/file-acl.ts';
import { maskSecrets } from '../../adapters/secrets.ts';

async function tempDir(t: { after: (fn: () => Promise<void>) => void }): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'bk-acl-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  return dir;
}

test('icacls: inheritance removed, full control for the user, SYSTEM and Administrators only', () => {
  assert.deepEqual(icaclsArgs('C:\\box\\patch\\patch.meta', 'BOX01\\agent', 'file'), [
    'C:\\box\\patch\\patch.meta',
    '/inheritance:r',
    '/grant:r',
    'BOX01\\agent:F',
    '*S-1-5-18:F',
    '*S-1-5-32-544:F',
    '/C',
    '/Q',
  ]);
  // A directory passes its grants on to what is created in it later; /T for what is there.
  assert.deepEqual(icaclsArgs('C:\\box\\boxkeeper\\traces', 'agent', 'dir', true), [
    'C:\\box\\boxkeeper\\traces',
    '/inheritance:r',
    '/grant:r',
    'agent:(OI)(CI)F',
    '*S-1-5-18:(OI)(CI)F',
    '*S-1-5-32-544:(OI)(CI)F',
    '/T',
    '/C',
    '/Q',
  ]);
});

test('the Windows user is DOMAIN\\name when the domain is known', () => {
  assert.equal(windowsUser({ USERNAME: 'agent', USERDOMAIN: 'BOX01' }), 'BOX01\\agent');
  assert.equal(windowsUser({ USERNAME: 'agent', USERDOMAIN: '' }), 'agent');
});

test('windowsFileAccess runs icacls per path, skips missing ones and reports a failure', async (t) => {
  const dir = await tempDir(t);
  const file = join(dir, 'status.json');
  await writeFile(file, '{}');
  const calls: Array<[string, string[]]> = [];
  let answer = { code: 0, stdout: 'Successfully processed 1 files', stderr: '' };
  const run: RunCommand = (f, args) => {
    calls.push([f, args]);
    return Promise.resolve(answer);
  };
  const access = windowsFileAccess(run, 'BOX01\\agent');
  await access.makePrivate(file);
  await access.makePrivate(dir, { recursive: true });
  await access.makePrivate(join(dir, 'missing.json'));
  assert.deepEqual(calls, [
    ['icacls', icaclsArgs(file, 'BOX01\\agent', 'file')],
    ['icacls', icaclsArgs(dir, 'BOX01\\agent', 'dir', true)],
  ]);
  answer = { code: 5, stdout: '', stderr: 'Access is denied.' };
  await assert.rejects(
    access.makePrivate(file),
    /icacls .*status\.json.* exited 5: Access is denied\./,
  );
});

test(
  'posixFileAccess: files 0600, directories 0700, recursively; missing paths skipped',
  { skip: process.platform === 'win32' ? 'POSIX modes' : false },
  async (t) => {
    const dir = await tempDir(t);
    const traces = join(dir, 'traces');
    await mkdir(traces);
    const a = join(traces, 'a.ndjson');
    const meta = join(dir, 'patch.meta');
    await writeFile(a, 'x');
    await writeFile(meta, 'x');
    await chmod(a, 0o644);
    await chmod(meta, 0o666);
    await chmod(traces, 0o755);
    await posixFileAccess.makePrivate(traces, { recursive: true });
    await posixFileAccess.makePrivate(meta);
    await posixFileAccess.makePrivate(join(dir, 'missing'));
    const mode = async (p: string) => (await stat(p)).mode & 0o777;
    assert.equal(await mode(traces), 0o700);
    assert.equal(await mode(a), 0o600);
    assert.equal(await mode(meta), 0o600);
  },
);

test('maskSecrets hides password, secret, token and credential values at any depth', () => {
  const input = {
    version: { versionNum: 'V1.8', argumentConfigMap: { citynum: '010', callboxPassword: 'p1' } },
    list: [{ numconvertPassword: 'p2', accessSecret: 's', apiToken: 't', db_pwd: 4 }],
    token: { nested: 'kept structure' },
  };
  assert.deepEqual(maskSecrets(input), {
    version: { versionNum: 'V1.8', argumentConfigMap: { citynum: '010', callboxPassword: '***' } },
    list: [{ numconvertPassword: '***', accessSecret: '***', apiToken: '***', db_pwd: '***' }],
    token: { nested: 'kept structure' },
  });
});
