import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { test } from 'node:test';
import { ConfigError } from '../../adapters/errors.ts';
import { decodeConfigText, parseIni } from '../../adapters/ini.ts';
import { noRegistry, parseRegQuery, type Registry } from '../../adapters/registry.ts';
import { resolveBoxPath } from '../../services/agent/box-paths.ts';
import {
  loadSettings,
  locateSettings,
  REGISTRY_KEY,
  REGISTRY_VALUE,
} from '../../services/agent/settings.ts';

const legacyFile = new URL('../../fixtures/legacy-settings.ini', import.meta.url);

function fakeRegistry(values: Record<string, string>): Registry {
  return { readString: (key, name) => Promise.resolve(values[`${key}|${name}`]) };
}

function fromText(text: string) {
  return (path: string) =>
    path === 'settings.ini'
      ? Promise.resolve(Buffer.from(text))
      : Promise.reject(new Error('nope'));
}

const linuxText = (body: string) =>
  `[general]
host_addr=http://127.0.0.1:9 ; cloud
env=uat
logging=info
log_expiration=30
debug_mode=off

[paths] ; relative to box_root
box_root=/srv/box
config=\\conf\\configuration.ini
patch=\\patch
patchmeta=\\patch.meta
backup=\\backup
fs=/opt/FreeSWITCH
fs_conf=\\\\conf\\\\sip_profiles\\\\external\\\\
java=/usr/lib/jvm/java
java_pid=\\\\pid.txt
jar=\\\\icb-box.jar
app_yml=\\\\application.yml
path_bat=\\\\DOS\\\\start.bat
data=\\data

[timer]
heartbeat=0.25
versionCheck=3600
${body}`;

async function problemsOf(text: string): Promise<string[]> {
  try {
    await loadSettings('settings.ini', {
      readFile: fromText(text),
      registry: noRegistry,
      platform: 'linux',
    });
  } catch (err) {
    assert.ok(err instanceof ConfigError, String(err));
    return err.problems.map((p) => `${p.section ?? ''}|${p.key ?? ''}|${p.message}`);
  }
  return [];
}

test('the Python tool’s own settings.ini loads unchanged on Windows, box dir from the registry', async () => {
  const { settings, warnings } = await loadSettings('settings.ini', {
    readFile: () => readFile(legacyFile),
    registry: fakeRegistry({ [`${REGISTRY_KEY}|${REGISTRY_VALUE}`]: 'D:\\Qthz' }),
    platform: 'win32',
  });
  assert.equal(settings.general.hostAddr, 'https://www.tongtongcf.com:10007');
  assert.equal(settings.general.env, 'uat');
  assert.equal(settings.general.logLevel, 'debug');
  assert.equal(settings.general.debugMode, true);
  assert.equal(settings.paths.boxRoot, 'D:\\Qthz');
  assert.equal(settings.paths.config, 'D:\\Qthz\\conf\\configuration.ini');
  assert.equal(settings.paths.patchMeta, 'D:\\Qthz\\patch\\patch.meta');
  assert.equal(settings.paths.managerDir, 'D:\\Qthz\\RemoteManagerDist');
  assert.equal(settings.paths.manager, 'D:\\Qthz\\RemoteManagerDist\\entrypoint.exe');
  assert.equal(settings.paths.fs, 'C:\\Program Files\\FreeSWITCH');
  assert.equal(
    settings.paths.fsConf,
    'C:\\Program Files\\FreeSWITCH\\conf\\sip_profiles\\external',
  );
  assert.equal(settings.paths.java, 'C:\\Program Files\\java');
  assert.equal(settings.timer.heartbeatMs, 30_000);
  assert.equal(settings.timer.versionCheckMs, 3_600_000);
  assert.deepEqual(warnings, []);
});

test('on Linux the same layout resolves against box_root with / separators', async () => {
  const { settings } = await loadSettings('settings.ini', {
    readFile: fromText(linuxText('')),
    registry: noRegistry,
    platform: 'linux',
  });
  assert.equal(settings.paths.config, '/srv/box/conf/configuration.ini');
  assert.equal(settings.paths.fsConf, '/opt/FreeSWITCH/conf/sip_profiles/external');
  assert.equal(settings.paths.javaPid, '/srv/box/pid.txt');
  assert.equal(settings.paths.agentData, '/srv/box/boxkeeper');
  assert.equal(settings.paths.logs, '/srv/box/boxkeeper/logs');
  assert.equal(settings.timer.heartbeatMs, 250, 'fractional seconds are allowed');
  assert.equal(settings.supervise.backoffInitialMs, 2000, 'new keys get their defaults');
  assert.equal(settings.general.sendAccessSecret, false);
});

test('a broken file reports every problem at once, naming section, key and expectation', async () => {
  const text = linuxText('')
    .replace('host_addr=http://127.0.0.1:9 ; cloud\n', '')
    .replace('[timer]\nheartbeat=0.25', '[timr]\nheartbeat=abc')
    .replace('log_expiration=30', 'log_expiration=thirty');
  const problems = await problemsOf(text);
  assert.deepEqual(
    problems.sort(),
    [
      'timr||unknown section; did you mean [timer]?',
      'general|host_addr|missing: expected an http:// or https:// URL',
      'general|log_expiration|expected a number of days > 0, got "thirty"',
      'timer|heartbeat|missing: the section [timer] is absent, expected a number of seconds > 0 and at most 2147483 (24 days)',
      'timer|versionCheck|missing: the section [timer] is absent, expected a number of seconds > 0 and at most 2147483 (24 days)',
    ].sort(),
  );
});

test('a misspelt key is an error, an unfamiliar one only a warning', async () => {
  const typo = await problemsOf(linuxText('heartbeet=3\n').replace('heartbeat=0.25\n', ''));
  assert.ok(
    typo.some((p) => p.includes('heartbeet|unknown key; did you mean "heartbeat"?')),
    typo.join('\n'),
  );
  const { warnings } = await loadSettings('settings.ini', {
    readFile: fromText(linuxText('future_option=1\n')),
    registry: noRegistry,
    platform: 'linux',
  });
  assert.ok(warnings.some((w) => w.includes('future_option')));
});

test('bad values name what was expected', async () => {
  const problems = await problemsOf(
    linuxText('')
      .replace('env=uat', 'env=staging')
      .replace('debug_mode=off', 'debug_mode=maybe')
      .replace('versionCheck=3600', 'versionCheck=-5')
      .replace('fs=/opt/FreeSWITCH', 'fs=C:\\\\Program Files\\\\FreeSWITCH'),
  );
  assert.equal(problems.length, 4, problems.join('\n'));
  assert.ok(
    problems.some((p) =>
      p.startsWith('general|env|expected one of local, dev, sit, uat, ymt, prod'),
    ),
  );
  assert.ok(problems.some((p) => p.startsWith('general|debug_mode|expected on or off')));
  assert.ok(
    problems.some((p) =>
      p.startsWith(
        'timer|versionCheck|expected a number of seconds > 0 and at most 2147483 (24 days), got "-5"',
      ),
    ),
  );
  assert.ok(
    problems.some((p) =>
      p.startsWith('paths|fs|"C:\\\\Program Files\\\\FreeSWITCH" is a Windows drive path'),
    ),
  );
});

test('without box_root on Linux the error says to set it; on Windows it names the registry value', async () => {
  const linux = await problemsOf(linuxText('').replace('box_root=/srv/box\n', ''));
  assert.deepEqual(linux, [
    'paths|box_root|missing: set box_root to the box install dir (there is no registry on linux)',
  ]);
  await assert.rejects(
    loadSettings('settings.ini', {
      readFile: () => readFile(legacyFile),
      registry: noRegistry,
      platform: 'win32',
    }),
    (err: ConfigError) =>
      err.problems.some((p) => p.message.includes('HKLM\\SOFTWARE\\Ect888\\Qthz QthzInstallPath')),
  );
});

test('a missing settings file is a configuration error naming the path', async () => {
  await assert.rejects(
    loadSettings('/nowhere/settings.ini', {
      readFile: () => Promise.reject(Object.assign(new Error('x'), { code: 'ENOENT' })),
      registry: noRegistry,
      platform: 'linux',
    }),
    /\/nowhere\/settings\.ini: settings file not found/,
  );
});

test('settings location: flag, then BOXKEEPER_SETTINGS, then ./settings/settings.ini', () => {
  assert.equal(
    locateSettings('/a/s.ini', { BOXKEEPER_SETTINGS: '/b/s.ini' }, '/cwd', 'linux'),
    '/a/s.ini',
  );
  assert.equal(
    locateSettings(undefined, { BOXKEEPER_SETTINGS: '/b/s.ini' }, '/cwd', 'linux'),
    '/b/s.ini',
  );
  assert.equal(locateSettings(undefined, {}, '/cwd', 'linux'), '/cwd/settings/settings.ini');
  assert.equal(locateSettings('rel/s.ini', {}, '/cwd', 'linux'), '/cwd/rel/s.ini');
});

test('ini reader follows configparser: comments, continuation, duplicates, GBK bytes', () => {
  const doc = parseIni('[a]\nx = 1 ; note\npw = p#ss;word\nlong = first\n  second\nx = 2\nstray\n');
  const a = doc.sections[0];
  assert.ok(a);
  assert.equal(
    a.entries.find((e) => e.key === 'pw')?.value,
    'p#ss;word',
    '# and ; inside a value are kept',
  );
  assert.equal(a.entries.find((e) => e.key === 'long')?.value, 'first\nsecond');
  assert.deepEqual(
    doc.problems.map((p) => p.line),
    [6, 7],
  );
  const gbk = Buffer.from([0x5b, 0x61, 0x5d, 0x0a, 0x6e, 0x3d, 0xd6, 0xd0, 0xce, 0xc4]); // "[a]\nn=中文" in GBK
  assert.equal(parseIni(decodeConfigText(gbk)).sections[0]?.entries[0]?.value, '中文');
});

test('path rules: leading separator is box-relative, drive paths absolute, doubles collapse', () => {
  assert.deepEqual(resolveBoxPath('win32', 'D:\\Q', '\\\\RemoteManagerDist'), {
    ok: true,
    path: 'D:\\Q\\RemoteManagerDist',
  });
  assert.deepEqual(resolveBoxPath('win32', 'D:\\Q', 'C:\\\\Program Files\\\\FreeSWITCH'), {
    ok: true,
    path: 'C:\\Program Files\\FreeSWITCH',
  });
  assert.deepEqual(resolveBoxPath('linux', '/q', '\\conf\\configuration.ini'), {
    ok: true,
    path: '/q/conf/configuration.ini',
  });
  assert.deepEqual(resolveBoxPath('linux', '/q', '/opt//fs/'), { ok: true, path: '/opt/fs' });
  assert.deepEqual(resolveBoxPath('linux', '/q', 'data'), { ok: true, path: '/q/data' });
});

test('reg query output is parsed for the value', () => {
  const out =
    '\r\nHKEY_LOCAL_MACHINE\\SOFTWARE\\Ect888\\Qthz\r\n    QthzInstallPath    REG_SZ    D:\\Program Files\\Qthz\r\n\r\n';
  assert.equal(parseRegQuery(out, 'QthzInstallPath'), 'D:\\Program Files\\Qthz');
  assert.equal(parseRegQuery(out, 'Other'), undefined);
});

test('docs/settings.md documents every key the agent reads', async () => {
  const { FIELDS } = await import('../../services/agent/settings.ts');
  const doc = await readFile(new URL('../../docs/settings.md', import.meta.url), 'utf8');
  const missing = FIELDS.filter((f) => !new RegExp(`\\|\\s*\`${f.key}\`\\s*\\|`).test(doc)).map(
    (f) => `[${f.section}] ${f.key}`,
  );
  assert.deepEqual(missing, []);
});
