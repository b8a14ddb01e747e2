// [limits] against the cloud simulator misbehaving: every cap refuses with a clear error that
// names the request, the field, the value and the cap; an oversized answer is abandoned before
// it is read to the end; a refused download leaves no file behind. Free space is checked on a
// real small tmpfs (needs root to mount; skipped with the reason otherwise).
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test, type TestContext } from 'node:test';
import {
  createCloudClient,
  DEFAULT_CLOUD_LIMITS,
  DownloadSpaceError,
  type CloudApi,
  type CloudLimits,
} from '../../adapters/cloud-client.ts';
import { CloudError } from '../../adapters/errors.ts';
import { createLogger } from '../../adapters/logger.ts';
import { startCloudSimulator } from '../../fixtures/cloud-sim/server.ts';
import type { CloudSim, SimOptions } from '../../fixtures/cloud-sim/server.ts';

const logger = createLogger({ level: 'fatal', console: 'none' }).logger;
const KiB = 1024;
const MiB = 1024 * KiB;

async function setup(
  t: TestContext,
  simOptions: SimOptions = {},
  limits: Partial<CloudLimits> = {},
): Promise<{ sim: CloudSim; client: CloudApi; dir: string }> {
  const sim = await startCloudSimulator(simOptions);
  const dir = await mkdtemp(join(tmpdir(), 'bk-limits-'));
  t.after(async () => {
    await sim.close();
    await rm(dir, { recursive: true, force: true });
  });
  const client = createCloudClient({
    hostAddr: sim.url,
    credentials: () => ({
      accessKeyId: sim.options.accessKeyId,
      accessKeySecret: sim.options.accessKeySecret,
      appKey: sim.options.appKey,
    }),
    timeoutMs: 30_000,
    retries: 2,
    refreshMarginMs: 60_000,
    logger,
    backoffBaseMs: 5,
    backoffMaxMs: 20,
    limits: { ...DEFAULT_CLOUD_LIMITS, ...limits },
  });
  return { sim, client, dir };
}

/** One version V1.8 whose zip is `bytes` of random (incompressible) data. */
async function oneVersion(sim: CloudSim, bytes: number): Promise<string> {
  await sim.setScenario({
    upgradeMark: 2,
    versions: [{ versionNum: 'V1.7' }, { versionNum: 'V1.8', zip: randomBytes(bytes) }],
  });
  const v = sim.versions().find((x) => x.versionNum === 'V1.8');
  assert.ok(v);
  return v.versionCode;
}

/** Asserts a [limits] refusal of `endpoint` whose message matches every pattern. */
function refusal(endpoint: string, ...patterns: RegExp[]) {
  return (err: unknown) => {
    assert.ok(err instanceof CloudError, `expected a CloudError, got ${String(err)}`);
    assert.equal(err.failure, 'limit', err.message);
    assert.equal(err.endpoint, endpoint);
    for (const p of patterns) assert.match(err.message, p);
    return true;
  };
}

const fileRequests = (sim: CloudSim) =>
  sim.records.requests.filter((r) => r.path.endsWith('/version/file')).length;

// ---- downloads ----------------------------------------------------------------------------------

test('a totalIndex of 10^9 is refused at the first chunk: one request, no file left', async (t) => {
  const { sim, client, dir } = await setup(t);
  const code = await oneVersion(sim, 10 * KiB);
  sim.inject('file', { kind: 'total-index', totalIndex: 1e9 });
  await assert.rejects(
    client.downloadFile(code, join(dir, 'p.zip')),
    refusal('version/file', /chunk 0: totalIndex is 1000000000/, /\[limits\] chunk_count = 100000/),
  );
  assert.equal(fileRequests(sim), 1, 'no further chunk was asked for');
  assert.deepEqual(await readdir(dir), []);
});

test('a patch announcing more than patch_size is refused at the first chunk', async (t) => {
  const { sim, client, dir } = await setup(t, { chunkSize: 16 * KiB }, { patchBytes: 100 * KiB });
  const code = await oneVersion(sim, 200 * KiB);
  await assert.rejects(
    client.downloadFile(code, join(dir, 'p.zip')),
    refusal(
      'version/file',
      /totalIndex 13 of 16384 bytes/,
      /announces at least 196609 bytes/,
      /\[limits\] patch_size = 102400 bytes \(100 KiB\)/,
    ),
  );
  assert.equal(fileRequests(sim), 1);
  assert.deepEqual(await readdir(dir), []);
});

test('a chunk that would take the download past patch_size is refused before it is written', async (t) => {
  const { sim, client, dir } = await setup(t, { chunkSize: 16 * KiB }, { patchBytes: 64 * KiB });
  // Announces 3 × 16 KiB, then sends 60 KiB as chunk 1.
  const code = await oneVersion(sim, 40 * KiB);
  sim.inject('file', { kind: 'huge-chunk', bytes: 60 * KiB, fileIndex: 1 });
  await assert.rejects(
    client.downloadFile(code, join(dir, 'p.zip')),
    refusal('version/file', /chunk 1 takes the download to 77824 bytes/, /patch_size = 65536/),
  );
  assert.equal(fileRequests(sim), 2);
  assert.deepEqual(await readdir(dir), [], 'the partial download is deleted');
});

test('an oversized chunk is abandoned long before the server has sent it all', async (t) => {
  const { sim, client, dir } = await setup(t, {}, { chunkBytes: 64 * KiB });
  const code = await oneVersion(sim, 10 * KiB);
  // 16 MiB of bytes is 48 MiB of JSON; the cap on the answer is 6 × 64 KiB + 64 KiB.
  sim.inject('file', { kind: 'huge-chunk', bytes: 16 * MiB });
  await assert.rejects(
    client.downloadFile(code, join(dir, 'p.zip')),
    refusal('version/file', /the answer passed \d+ bytes/, /6 × \[limits\] chunk_size/),
  );
  // The simulator stops writing once the client has gone (the socket closes).
  const streamed = await sim.waitFor((r) => r.streamed[0]?.finished === true && r.streamed[0]);
  assert.equal(streamed.complete, false, 'the client read the answer to its end');
  // What was sent beyond the cap sits in socket buffers (a few MiB at most on loopback).
  assert.ok(
    streamed.sentBytes < streamed.bodyBytes / 4,
    `sent ${streamed.sentBytes} of ${streamed.bodyBytes} bytes`,
  );
  assert.equal(fileRequests(sim), 1, 'a refusal is not retried');
  assert.deepEqual(await readdir(dir), []);
});

test('a chunk whose JSON fits but holds more than chunk_size bytes is refused', async (t) => {
  const { sim, client, dir } = await setup(t, {}, { chunkBytes: 64 * KiB });
  const code = await oneVersion(sim, 10 * KiB);
  sim.inject('file', { kind: 'huge-chunk', bytes: 100 * KiB });
  await assert.rejects(
    client.downloadFile(code, join(dir, 'p.zip')),
    refusal(
      'version/file',
      /chunk 0: 102400 bytes \(100 KiB\), over \[limits\] chunk_size = 65536/,
    ),
  );
  assert.deepEqual(await readdir(dir), []);
});

test('downloads within the caps pass, also a patch of exactly patch_size', async (t) => {
  const { sim, client, dir } = await setup(
    t,
    { chunkSize: 16 * KiB },
    { patchBytes: 64 * KiB, chunkBytes: 16 * KiB, chunkCount: 4 },
  );
  const code = await oneVersion(sim, 64 * KiB);
  const r = await client.downloadFile(code, join(dir, 'p.zip'));
  assert.deepEqual({ bytes: r.bytes, chunks: r.chunks }, { bytes: 64 * KiB, chunks: 4 });
  const zip = sim.versions().find((v) => v.versionCode === code)?.zip;
  assert.ok(zip?.equals(await readFile(join(dir, 'p.zip'))));
});

// ---- the version check --------------------------------------------------------------------------

test('a 100,000-entry upgradeList is refused by its length, before any entry is validated', async (t) => {
  const { sim, client } = await setup(t, {}, { answerBytes: 64 * MiB });
  sim.inject('check', { kind: 'long-list', entries: 100_000 });
  await assert.rejects(
    client.checkVersion('V1.7'),
    refusal('version/check', /upgradeList has 100000 entries, over \[limits\] upgrade_list = 100/),
  );
});

test('with the default answer_size, a 1,000,000-entry answer is abandoned part-way', async (t) => {
  const { sim, client } = await setup(t);
  // Far larger than loopback's socket buffers (a few MiB each way): an 8 MiB answer could sit
  // whole in them under load, and the server would see it sent although the client stopped.
  sim.inject('check', { kind: 'long-list', entries: 1_000_000 });
  await assert.rejects(
    client.checkVersion('V1.7'),
    refusal('version/check', /the answer passed \d+ bytes/, /\[limits\] answer_size = 4194304/),
  );
  const streamed = await sim.waitFor((r) => r.streamed[0]?.finished === true && r.streamed[0]);
  assert.ok(streamed.bodyBytes > 64 * MiB, `the whole answer is ${streamed.bodyBytes} bytes`);
  assert.equal(streamed.complete, false);
  assert.ok(streamed.sentBytes < 32 * MiB, `the server sent ${streamed.sentBytes} bytes`);
  assert.equal(sim.records.requests.filter((r) => r.path.endsWith('/check')).length, 1);
});

test('a remark of 20 MB is refused (answer_size); one over text_length is named', async (t) => {
  const { sim, client } = await setup(t);
  await sim.setScenario({
    upgradeMark: 2,
    versions: [{ versionNum: 'V1.7' }, { versionNum: 'V1.8', remark: 'x'.repeat(20_000_000) }],
  });
  await assert.rejects(
    client.checkVersion('V1.7'),
    refusal('version/check', /the answer (announces|passed) \d+ bytes/, /answer_size/),
  );
  await sim.setScenario({
    upgradeMark: 2,
    versions: [
      { versionNum: 'V1.7' },
      { versionNum: 'V1.8', remark: 'fine' },
      { versionNum: 'V1.9', remark: '说明'.repeat(2049) },
    ],
  });
  await assert.rejects(
    client.checkVersion('V1.7'),
    refusal(
      'version/check',
      /upgradeList\[1\]\.remark is 4098 characters long, over \[limits\] text_length = 4096/,
    ),
  );
});

test('argumentConfigMap keys and values are held to text_length; other values by their JSON', async (t) => {
  const { sim, client } = await setup(t, {}, { textLength: 100 });
  const offer = (argumentConfigMap: Record<string, unknown>) =>
    sim.setScenario({
      upgradeMark: 1,
      versions: [{ versionNum: 'V1.7' }, { versionNum: 'V1.8', argumentConfigMap }],
    });
  await offer({ citynum: '0'.repeat(101) });
  await assert.rejects(
    client.checkVersion('V1.7'),
    refusal('version/check', /upgradeList\[0\]\.argumentConfigMap\.citynum is 101 characters/),
  );
  await offer({ ['k'.repeat(101)]: 'v' });
  await assert.rejects(
    client.checkVersion('V1.7'),
    refusal('version/check', /argumentConfigMap key is 101 characters/),
  );
  await offer({ nested: { deep: 'y'.repeat(100) } });
  await assert.rejects(
    client.checkVersion('V1.7'),
    refusal('version/check', /argumentConfigMap\.nested is 111 characters/),
  );
  await offer({ citynum: '0'.repeat(100), outnum: 7 });
  const ok = await client.checkVersion('V1.7');
  assert.deepEqual(ok.upgradeList[0]?.argumentConfigMap, { citynum: '0'.repeat(100), outnum: 7 });
});

// ---- free space (a real tmpfs) ------------------------------------------------------------------

/** A tmpfs of `size` mounted on a new temp dir, or the reason it cannot be. */
async function smallDisk(t: TestContext, size: string): Promise<string | undefined> {
  if (process.platform !== 'linux') {
    t.skip('tmpfs needs Linux');
    return undefined;
  }
  const dir = await mkdtemp(join(tmpdir(), 'bk-tmpfs-'));
  try {
    execFileSync('mount', ['-t', 'tmpfs', '-o', `size=${size}`, 'tmpfs', dir], { stdio: 'pipe' });
  } catch (err) {
    await rm(dir, { recursive: true, force: true });
    const why = (err as { stderr?: Buffer }).stderr?.toString().trim() ?? String(err);
    t.skip(`cannot mount a tmpfs (needs root; CI runs as root): ${why}`);
    return undefined;
  }
  t.after(async () => {
    execFileSync('umount', [dir]);
    await rm(dir, { recursive: true, force: true });
  });
  return dir;
}

test('free space: a download the disk cannot hold with its extraction is refused at chunk 0', async (t) => {
  const disk = await smallDisk(t, '1m');
  if (disk === undefined) return;
  const { sim, client } = await setup(t, {}, { diskReserveBytes: 0 });
  // 600 KiB fits once, not twice (zip + extraction) in 1 MiB.
  const code = await oneVersion(sim, 600 * KiB);
  await assert.rejects(client.downloadFile(code, join(disk, 'p.zip')), (err: unknown) => {
    assert.ok(err instanceof DownloadSpaceError, String(err));
    assert.equal(err.code, 'ENOSPC');
    assert.match(err.message, new RegExp(`not enough free space in ${disk}`));
    assert.match(err.message, /needs 1310720 bytes .*: 655360 bytes \(640 KiB\) more of the zip/);
    assert.match(err.message, /; \d+ bytes( \([\d.]+ [KM]iB\))? free$/);
    return true;
  });
  assert.equal(fileRequests(sim), 1);
  assert.deepEqual(await readdir(disk), [], 'nothing written');
  // What fits is downloaded.
  const small = await oneVersion(sim, 300 * KiB);
  const r = await client.downloadFile(small, join(disk, 'p.zip'));
  assert.equal(r.bytes, 300 * KiB);
});

test('free space: a disk below disk_reserve is refused before anything is asked', async (t) => {
  const disk = await smallDisk(t, '1m');
  if (disk === undefined) return;
  const { sim, client } = await setup(t, {}, { diskReserveBytes: 2 * MiB });
  const code = await oneVersion(sim, 10 * KiB);
  await assert.rejects(
    client.downloadFile(code, join(disk, 'p.zip')),
    (err: unknown) =>
      err instanceof DownloadSpaceError &&
      /\[limits\] disk_reserve is 2097152 bytes \(2 MiB\)/.test(err.message),
  );
  assert.equal(fileRequests(sim), 0);
  assert.deepEqual(await readdir(disk), []);
});

test('free space: a resumed download refused for space keeps its progress and resumes later', async (t) => {
  const disk = await smallDisk(t, '1m');
  if (disk === undefined) return;
  const { sim, client } = await setup(t, {}, { diskReserveBytes: 0 });
  const code = await oneVersion(sim, 300 * KiB);
  const dest = join(disk, 'p.zip');
  // Chunks 0 and 1 arrive, then the connection keeps dropping.
  sim.inject('file', { kind: 'drop', fileIndex: 2 });
  await assert.rejects(client.downloadFile(code, dest), /version\/file failed \(network\)/);
  sim.clearFaults();
  assert.deepEqual((await readdir(disk)).sort(), ['p.zip.part', 'p.zip.part.json']);
  // Now the disk holds 128 KiB of the zip and 600 KiB of something else: the rest (192 KiB)
  // and the extraction (320 KiB) no longer fit.
  await writeFile(join(disk, 'filler'), Buffer.alloc(600 * KiB));
  const asked = fileRequests(sim);
  await assert.rejects(
    client.downloadFile(code, dest),
    (err: unknown) =>
      err instanceof DownloadSpaceError &&
      /196608 bytes \(192 KiB\) more of the zip/.test(err.message),
  );
  assert.equal(fileRequests(sim), asked, 'refused before asking for anything');
  assert.deepEqual((await readdir(disk)).sort(), ['filler', 'p.zip.part', 'p.zip.part.json']);
  await rm(join(disk, 'filler'));
  const r = await client.downloadFile(code, dest);
  assert.deepEqual(
    { bytes: r.bytes, resumedFrom: r.resumedFrom },
    { bytes: 300 * KiB, resumedFrom: 2 },
  );
});
