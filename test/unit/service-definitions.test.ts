// The service definitions: the systemd unit (checked by the real `systemd-analyze verify`) and
// the WinSW XML, as services/install/service-definitions.ts renders them.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { chmod, mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import {
  DefinitionError,
  HANDOVER_EXIT_CODE,
  renderSystemdUnit,
  renderWinswXml,
  systemdWord,
} from '../../services/install/service-definitions.ts';

const ANALYZE = '/usr/bin/systemd-analyze';

/** Lines of `key=value` in the unit's sections. */
function directives(unit: string): Map<string, string[]> {
  const out = new Map<string, string[]>();
  for (const line of unit.split('\n')) {
    const m = /^([A-Za-z]+)=(.*)$/.exec(line);
    if (m === null) continue;
    out.set(m[1] as string, [...(out.get(m[1] as string) ?? []), m[2] as string]);
  }
  return out;
}

const sample = {
  launcher: { program: '/opt/boxkeeper/runtime/node', args: ['/opt/boxkeeper/lib/boxkeeper.mjs'] },
  settingsFile: '/srv/box/settings/settings.ini',
  home: '/opt/boxkeeper',
};

test('the unit restarts the agent, limits starts, keeps the box services on stop, logs to the journal', () => {
  const d = directives(renderSystemdUnit(sample));
  assert.deepEqual(d.get('ExecStart'), [
    '/opt/boxkeeper/runtime/node /opt/boxkeeper/lib/boxkeeper.mjs run --settings /srv/box/settings/settings.ini',
  ]);
  assert.deepEqual(d.get('Restart'), ['always']);
  assert.deepEqual(d.get('KillMode'), ['process'], 'a stop signals the agent only');
  assert.deepEqual(d.get('Environment'), ['BOXKEEPER_SERVICE=systemd']);
  assert.deepEqual(d.get('RestartPreventExitStatus'), [String(HANDOVER_EXIT_CODE)]);
  assert.deepEqual(d.get('SuccessExitStatus'), [String(HANDOVER_EXIT_CODE)]);
  assert.deepEqual(d.get('StandardOutput'), ['journal']);
  assert.deepEqual(d.get('WantedBy'), ['multi-user.target']);
  assert.deepEqual(d.get('After'), ['network-online.target']);
  assert.ok(Number(d.get('RestartSec')?.[0]) > 0);
  assert.ok(Number(d.get('StartLimitBurst')?.[0]) > 0);
  assert.ok(Number(d.get('StartLimitIntervalSec')?.[0]) > 0);
});

test('ExecStart words: spaces quoted, % and $ escaped; relative paths and control characters refused', () => {
  assert.equal(systemdWord('/a/b.ini'), '/a/b.ini');
  assert.equal(systemdWord('/srv/my box/settings.ini'), '"/srv/my box/settings.ini"');
  assert.equal(systemdWord('/srv/100%/s.ini'), '/srv/100%%/s.ini');
  assert.equal(systemdWord('/srv/$HOME/s.ini'), '"/srv/$$HOME/s.ini"');
  assert.throws(() => systemdWord('/a\nb'), DefinitionError);
  assert.throws(
    () => renderSystemdUnit({ ...sample, settingsFile: 'settings.ini' }),
    /settings\.ini must be an absolute path, got "settings\.ini"/,
  );
});

test('systemd-analyze verify accepts the rendered unit (paths with spaces and %)', async (t) => {
  if (!existsSync(ANALYZE)) {
    t.skip(`${ANALYZE} is not installed: the unit was not verified by systemd`);
    return;
  }
  const dir = await mkdtemp(join(tmpdir(), 'bk unit-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  const home = join(dir, 'box keeper 100%');
  await mkdir(join(home, 'runtime'), { recursive: true });
  const program = join(home, 'runtime', 'node');
  await writeFile(program, '#!/bin/sh\nexit 0\n');
  await chmod(program, 0o755);
  const unit = renderSystemdUnit({
    launcher: { program, args: [join(home, 'lib', 'boxkeeper.mjs')] },
    settingsFile: join(dir, 'settings', 'settings.ini'),
    home,
  });
  const verify = async (text: string) => {
    const file = join(dir, 'boxkeeper.service');
    await writeFile(file, text);
    const r = spawnSync(ANALYZE, ['verify', file], { encoding: 'utf8' });
    // Only what concerns our file: systemd-analyze also talks about the host's units.
    const ours = `${r.stdout}\n${r.stderr}`
      .split('\n')
      .filter((l) => l.includes('boxkeeper.service'));
    return { code: r.status, ours };
  };
  const good = await verify(unit);
  assert.equal(good.code, 0, good.ours.join('\n'));
  assert.deepEqual(good.ours, [], 'no warning about the unit');
  // The check can fail: a typo in a directive, a missing program.
  const typo = await verify(unit.replace('KillMode=process', 'KillMode=proces'));
  assert.ok(
    typo.ours.some((l) => /kill mode/i.test(l)),
    `a bad KillMode is reported: ${typo.ours.join('\n')}`,
  );
  const missing = await verify(unit.replace(program.replace(/%/g, '%%'), '/nonexistent/node'));
  assert.notEqual(missing.code, 0, 'a missing ExecStart program fails the verification');
});

test('WinSW XML: start and stop commands, automatic start, restart on failure, the service env', () => {
  const xml = renderWinswXml({
    launcher: {
      program: 'C:\\Program Files\\boxkeeper\\runtime\\node.exe',
      args: ['C:\\Program Files\\boxkeeper\\lib\\boxkeeper.mjs'],
    },
    settingsFile: 'C:\\QTHZ\\R&D box\\settings\\settings.ini',
    home: 'C:\\Program Files\\boxkeeper',
    logDir: 'C:\\QTHZ\\boxkeeper\\logs',
  });
  const all = (tag: string) =>
    [...xml.matchAll(new RegExp(`<${tag}>([^<]*)</${tag}>`, 'g'))].map((m) => m[1]);
  assert.deepEqual(all('id'), ['boxkeeper']);
  assert.deepEqual(all('executable'), ['C:\\Program Files\\boxkeeper\\runtime\\node.exe']);
  assert.deepEqual(all('startargument'), [
    'C:\\Program Files\\boxkeeper\\lib\\boxkeeper.mjs',
    'run',
  ]);
  // With stop arguments WinSW runs this command instead of killing the agent's process tree.
  assert.deepEqual(all('stopexecutable'), all('executable'));
  assert.deepEqual(all('stopargument'), [
    'C:\\Program Files\\boxkeeper\\lib\\boxkeeper.mjs',
    'service',
    'stop-agent',
  ]);
  assert.deepEqual(all('argument'), [
    '--settings',
    'C:\\QTHZ\\R&amp;D box\\settings\\settings.ini',
  ]);
  assert.deepEqual(all('startmode'), ['Automatic']);
  assert.match(xml, /<onfailure action="restart" delay="10 sec"\/>/);
  assert.match(xml, /<env name="BOXKEEPER_SERVICE" value="winsw"\/>/);
  assert.deepEqual(all('logpath'), ['C:\\QTHZ\\boxkeeper\\logs']);
  assert.throws(
    () =>
      renderWinswXml({
        launcher: { program: 'C:\\b\\node.exe', args: [] },
        settingsFile: 'C:\\%TEMP%\\settings.ini',
        home: 'C:\\b',
        logDir: 'C:\\b',
      }),
    /contains "%", which WinSW would expand: C:\\%TEMP%\\settings\.ini/,
  );
});
