// settings.ini [limits]: sizes with units, defaults that match the adapters' own defaults, and
// clear problems for values that are not sizes.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { DEFAULT_CLOUD_LIMITS } from '../../adapters/cloud-client.ts';
import { ConfigError } from '../../adapters/errors.ts';
import { noRegistry } from '../../adapters/registry.ts';
import { DEFAULT_ZIP_LIMITS } from '../../adapters/zip.ts';
import { loadSettings } from '../../services/agent/settings.ts';

const BASE = `[general]
host_addr=http://127.0.0.1:9
env=uat
logging=info
log_expiration=30
debug_mode=off

[paths]
box_root=/srv/box
config=\\conf\\configuration.ini
patch=\\patch
patchmeta=\\patch.meta
backup=\\backup
fs=/opt/FreeSWITCH
fs_conf=\\conf\\sip_profiles\\external
java=/usr/lib/jvm/java
java_pid=\\pid.txt
jar=\\icb-box.jar
app_yml=\\application.yml
path_bat=\\DOS\\start.bat
data=\\data

[timer]
heartbeat=30
versionCheck=3600
`;

function load(limits: string) {
  return loadSettings('settings.ini', {
    readFile: () => Promise.resolve(Buffer.from(`${BASE}\n[limits]\n${limits}\n`)),
    registry: noRegistry,
    platform: 'linux',
  });
}

test('[limits] defaults are the cloud client and zip extractor defaults', async () => {
  const { settings } = await load('');
  const { limits } = settings;
  assert.deepEqual(
    {
      answerBytes: limits.answerBytes,
      chunkBytes: limits.chunkBytes,
      chunkCount: limits.chunkCount,
      patchBytes: limits.patchBytes,
      upgradeList: limits.upgradeList,
      textLength: limits.textLength,
      diskReserveBytes: limits.diskReserveBytes,
    },
    DEFAULT_CLOUD_LIMITS,
  );
  assert.equal(limits.patchFiles, DEFAULT_ZIP_LIMITS.maxEntries);
  assert.equal(limits.unpackedBytes, DEFAULT_ZIP_LIMITS.maxTotalBytes);
});

test('[limits] sizes take K, M, G, T (×1024), optional B/iB, any case; a bare number is bytes', async () => {
  const { settings } = await load(
    [
      'patch_size = 512M',
      'unpacked_size = 3 GiB',
      'chunk_size = 64kb',
      'answer_size = 4096',
      'disk_reserve = 0',
      'upgrade_list = 7',
      'text_length = 80',
    ].join('\n'),
  );
  assert.equal(settings.limits.patchBytes, 512 * 1024 ** 2);
  assert.equal(settings.limits.unpackedBytes, 3 * 1024 ** 3);
  assert.equal(settings.limits.chunkBytes, 64 * 1024);
  assert.equal(settings.limits.answerBytes, 4096);
  assert.equal(settings.limits.diskReserveBytes, 0);
  assert.equal(settings.limits.upgradeList, 7);
  assert.equal(settings.limits.textLength, 80);
});

test('[limits] values that are not sizes are problems naming the key and what was expected', async () => {
  await assert.rejects(
    load(
      ['patch_size = 12x', 'chunk_size = 0', 'disk_reserve = -1', 'upgrade_list = 1.5'].join('\n'),
    ),
    (err: unknown) => {
      assert.ok(err instanceof ConfigError);
      const lines = err.problems.map((p) => `[${p.section ?? ''}] ${p.key ?? ''}: ${p.message}`);
      assert.deepEqual(lines, [
        '[limits] patch_size: expected a size > 0 in bytes, or with K, M, G or T (×1024), e.g. 512M, got "12x"',
        '[limits] chunk_size: expected a size > 0 in bytes, or with K, M, G or T (×1024), e.g. 512M, got "0"',
        '[limits] upgrade_list: expected a whole number ≥ 1, got "1.5"',
        '[limits] disk_reserve: expected a size ≥ 0 in bytes, or with K, M, G or T (×1024), e.g. 100M, got "-1"',
      ]);
      return true;
    },
  );
});
