// Integration tests of the cloud client against the cloud simulator (a real HTTP server on
// loopback), plus a tiny scripted server for answers the simulator cannot produce.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { access, mkdtemp, readFile, readdir, rm, truncate } from 'node:fs/promises';
import { createServer } from 'node:http';
import type { IncomingHttpHeaders } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import type { TestContext } from 'node:test';
import {
  API_PREFIX,
  TOKEN_PATH,
  TaskOp,
  UpgradeMark,
  createCloudClient,
} from '../../adapters/cloud-client.ts';
import type {
  CloudApi,
  CloudClientOptions,
  CloudCredentials,
} from '../../adapters/cloud-client.ts';
import { canonicalQuery, popEncode, signedTokenQuery } from '../../adapters/cloud-signing.ts';
import { CloudError } from '../../adapters/errors.ts';
import { createLogger } from '../../adapters/logger.ts';
import { startCloudSimulator } from '../../fixtures/cloud-sim/server.ts';
import type { CloudSim, SimOptions } from '../../fixtures/cloud-sim/server.ts';

const logger = createLogger({ level: 'fatal', console: 'none' }).logger;

const CHECK_PATH = `${API_PREFIX}/version/check`;
const FILE_PATH = `${API_PREFIX}/version/file`;
const HEARTBEAT_PATH = `${API_PREFIX}/heartBeat`;
const TASK_PATH = `${API_PREFIX}/version/upTaskStatus`;

// ---- helpers ----------------------------------------------------------------------------------

function clientFor(
  hostAddr: string,
  credentials: () => CloudCredentials,
  overrides: Partial<CloudClientOptions> = {},
): CloudApi {
  return createCloudClient({
    hostAddr,
    credentials,
    timeoutMs: 1500,
    retries: 2,
    refreshMarginMs: 60_000,
    logger,
    backoffBaseMs: 5,
    backoffMaxMs: 20,
    ...overrides,
  });
}

async function setup(
  t: TestContext,
  simOptions: SimOptions = {},
  overrides: Partial<CloudClientOptions> = {},
): Promise<{ sim: CloudSim; client: CloudApi }> {
  const sim = await startCloudSimulator(simOptions);
  t.after(() => sim.close());
  const client = clientFor(
    sim.url,
    () => ({
      accessKeyId: sim.options.accessKeyId,
      accessKeySecret: sim.options.accessKeySecret,
      appKey: sim.options.appKey,
    }),
    overrides,
  );
  return { sim, client };
}

const hits = (sim: CloudSim, path: string): number =>
  sim.records.requests.filter((r) => r.path === path).length;

const okTokens = (sim: CloudSim): number => sim.records.tokens.filter((t) => t.ok).length;

/** Awaits a call that must fail and returns its CloudError. */
async function cloudFailure(call: Promise<unknown>): Promise<CloudError> {
  try {
    await call;
  } catch (err) {
    assert.ok(err instanceof CloudError, `expected a CloudError, got: ${String(err)}`);
    return err;
  }
  assert.fail('expected the call to fail');
}

async function tempDir(t: TestContext): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'boxkeeper-cloud-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  return dir;
}

async function exists(path: string): Promise<boolean> {
  try {
    await access(path);
    return true;
  } catch {
    return false;
  }
}

/**
 * adapters/cloud-client.ts line 109: `content: z.unknown()` is a required key in zod 4, so an
 * envelope without `content` (every business error the simulator sends) is "bad envelope".
 */
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** A scenario version with a zip of `size` random (incompressible) bytes. */
function bigVersion(versionNum: string, size: number) {
  return { versionNum, files: { 'data.bin': randomBytes(size), 'version.txt': versionNum } };
}

// ---- a scripted server for answers the simulator cannot give ---------------------------------

interface FakeRequest {
  path: string;
  query: Record<string, string>;
  headers: IncomingHttpHeaders;
}
type FakeAnswer = { status?: number; body: unknown };

/**
 * Answers the token endpoint with a fresh token each time; every other request goes to
 * `handler` with the number of earlier requests to the same path.
 */
async function startFakeCloud(
  t: TestContext,
  handler: (req: FakeRequest, n: number) => FakeAnswer,
): Promise<{ url: string; requests: FakeRequest[]; client: CloudApi }> {
  const requests: FakeRequest[] = [];
  const counts = new Map<string, number>();
  let issued = 0;
  const server = createServer((req, res) => {
    const url = new URL(req.url ?? '/', 'http://fake.invalid');
    const r: FakeRequest = {
      path: url.pathname,
      query: Object.fromEntries(url.searchParams),
      headers: req.headers,
    };
    requests.push(r);
    let answer: FakeAnswer;
    if (url.pathname === TOKEN_PATH) {
      issued += 1;
      const expireTime = Math.floor(Date.now() / 1000) + 3600;
      answer = {
        body: { code: 1, msg: 'success', content: { token: `fake-${issued}`, expireTime } },
      };
    } else {
      const n = counts.get(url.pathname) ?? 0;
      counts.set(url.pathname, n + 1);
      answer = handler(r, n);
    }
    res
      .writeHead(answer.status ?? 200, { 'content-type': 'application/json' })
      .end(JSON.stringify(answer.body));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  t.after(
    () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  );
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  const client = clientFor(url, () => ({
    accessKeyId: 'fake-id',
    accessKeySecret: 'fake-secret',
    appKey: 'fake-app',
  }));
  return { url, requests, client };
}

/** Chunk answers for `data` split into `size`-byte chunks, as signed Java bytes. */
function chunkAnswer(data: Buffer, size: number, index: number, totalIndex?: number): FakeAnswer {
  const chunk = data.subarray(index * size, (index + 1) * size);
  const bytes = Array.from(new Int8Array(chunk.buffer, chunk.byteOffset, chunk.length));
  const total = totalIndex ?? Math.ceil(data.length / size);
  return { body: { code: 1, msg: 'success', content: { totalIndex: total, bytes } } };
}

// ---- signing ----------------------------------------------------------------------------------

test('signedTokenQuery matches the published test vector', () => {
  const query = signedTokenQuery(
    'testid',
    'testsecret',
    new Date('2021-08-19T07:00:00Z'),
    '00000000-0000-0000-0000-000000000000',
  );
  assert.deepEqual(query, {
    AccessKeyId: 'testid',
    Format: 'JSON',
    SignatureMethod: 'HMAC-SHA1',
    SignatureNonce: '00000000-0000-0000-0000-000000000000',
    SignatureVersion: '1.0',
    Timestamp: '2021-08-19T07:00:00Z',
    Signature: 'qmB9XUZeZ/RGvZUOusvBOYRPdeo=',
  });
  // Milliseconds are dropped from the timestamp, so they do not change the signature.
  const withMs = signedTokenQuery(
    'testid',
    'testsecret',
    new Date('2021-08-19T07:00:00.987Z'),
    '00000000-0000-0000-0000-000000000000',
  );
  assert.equal(withMs.Signature, 'qmB9XUZeZ/RGvZUOusvBOYRPdeo=');
});

test('popEncode is RFC 3986: only unreserved characters stay, hex is uppercase', () => {
  assert.equal(popEncode('a b*c/+~'), 'a%20b%2Ac%2F%2B~');
  assert.equal(popEncode("!'()"), '%21%27%28%29');
  assert.equal(popEncode('AZaz09-_.~'), 'AZaz09-_.~');
  assert.equal(popEncode('é='), '%C3%A9%3D');
  assert.equal(canonicalQuery({ b: '2', a: 'x y', B: '*' }), 'B=%2A&a=x%20y&b=2');
});

// ---- token --------------------------------------------------------------------------------------

test('token(): a signed request the server accepts, with the AccessKeyId header', async (t) => {
  const { sim, client } = await setup(t);
  const info = await client.token();
  assert.equal(sim.records.tokens.length, 1);
  const rec = sim.records.tokens[0];
  assert.ok(rec !== undefined);
  assert.equal(rec.ok, true, rec.reason);
  assert.equal(rec.headers.accesskeyid, sim.options.accessKeyId);
  assert.equal(rec.query.AccessKeyId, sim.options.accessKeyId);
  assert.equal(info.token, rec.token);
});

for (const unit of ['s', 'ms'] as const) {
  test(`token(): expireTime in ${unit} is detected and converted to epoch ms`, async (t) => {
    const { client } = await setup(t, { expiryUnit: unit, tokenLifetimeSec: 600 });
    const before = Date.now();
    const info = await client.token();
    assert.equal(info.unit, unit);
    const expected = before + 600_000;
    assert.ok(
      Math.abs(info.expiresAt - expected) < 3000,
      `expiresAt ${info.expiresAt} is not within 3 s of ${expected}`,
    );
  });
}

test('token(): a valid token is reused without a second request', async (t) => {
  const { sim, client } = await setup(t);
  const first = await client.token();
  const second = await client.token();
  await client.checkVersion('V1.0');
  assert.equal(second.token, first.token);
  assert.equal(sim.records.tokens.length, 1);
});

test('token(): a short-lived token is refreshed ahead of its expiry', async (t) => {
  const { sim, client } = await setup(
    t,
    { tokenLifetimeSec: 2, expiryUnit: 'ms' },
    { refreshMarginMs: 1000 },
  );
  const first = await client.token();
  assert.equal((await client.token()).token, first.token, 'refreshed too early');
  await sleep(1100);
  const second = await client.token();
  const refreshedAt = Date.now();
  assert.notEqual(second.token, first.token);
  assert.equal(sim.records.tokens.length, 2);
  assert.ok(refreshedAt < first.expiresAt, 'the refresh came only after the token had expired');
  // The refreshed token works.
  await client.checkVersion('V1.0');
  assert.equal(sim.records.tokens.length, 2);
});

test('token()/refreshToken(): concurrent callers share one token request', async (t) => {
  const { sim, client } = await setup(t);
  const all = await Promise.all([
    client.token(),
    client.refreshToken(),
    client.token(),
    client.refreshToken(),
    client.token(),
  ]);
  assert.equal(sim.records.tokens.length, 1);
  assert.equal(new Set(all.map((i) => i.token)).size, 1);
});

test('token(): a wrong secret fails as a business error of getUserToken, not retried', async (t) => {
  const sim = await startCloudSimulator();
  t.after(() => sim.close());
  const client = clientFor(sim.url, () => ({
    accessKeyId: sim.options.accessKeyId,
    accessKeySecret: 'not-the-secret',
    appKey: sim.options.appKey,
  }));
  const err = await cloudFailure(client.token());
  assert.equal(err.endpoint, 'getUserToken');
  assert.equal(err.failure, 'business');
  assert.match(err.message, /Signature mismatch/);
  assert.equal(sim.records.tokens.length, 1);
});

test('credentials are read on every use: rotated keys take effect at the next sign-in', async (t) => {
  const sim = await startCloudSimulator();
  t.after(() => sim.close());
  const creds = {
    accessKeyId: 'old-id',
    accessKeySecret: 'old-secret',
    appKey: sim.options.appKey,
  };
  sim.options.accessKeyId = 'old-id';
  sim.options.accessKeySecret = 'old-secret';
  const client = clientFor(sim.url, () => ({ ...creds }));
  await client.checkVersion('V1.0');
  sim.options.accessKeyId = creds.accessKeyId = 'new-id';
  sim.options.accessKeySecret = creds.accessKeySecret = 'new-secret';
  sim.revokeTokens();
  await client.checkVersion('V1.0');
  const last = sim.records.tokens.at(-1);
  assert.equal(last?.ok, true, last?.reason);
  assert.equal(last.headers.accesskeyid, 'new-id');
  assert.equal(sim.records.tokens.length, 2);
});

// ---- re-authentication --------------------------------------------------------------------------

for (const style of ['http401', 'code401'] as const) {
  test(`re-auth (${style}): a revoked token costs exactly one new token request`, async (t) => {
    const { sim, client } = await setup(t, { tokenRejectStyle: style });
    await client.checkVersion('V1.0');
    assert.equal(sim.records.tokens.length, 1);
    sim.revokeTokens();
    const result = await client.checkVersion('V1.0');
    assert.deepEqual(result, { upgradeMark: 0, upgradeList: [] });
    assert.equal(sim.records.tokens.length, 2);
    assert.equal(okTokens(sim), 2);
    assert.equal(hits(sim, CHECK_PATH), 3); // ok, rejected, ok
    assert.equal(sim.records.checks.length, 2);
  });

  test(`re-auth (${style}): a server that keeps rejecting fails as 'auth' without looping`, async (t) => {
    const { sim, client } = await setup(t, { tokenRejectStyle: style }, { retries: 3 });
    await client.token();
    sim.inject('check', { kind: 'reject-token' });
    const err = await cloudFailure(client.checkVersion('V1.0'));
    assert.equal(err.endpoint, 'version/check');
    assert.equal(err.failure, 'auth');
    await sleep(50); // nothing more arrives afterwards
    assert.equal(hits(sim, CHECK_PATH), 2, 'one call and one repeat after re-auth');
    assert.equal(sim.records.tokens.length, 2, 'one re-auth');
  });
}

test('re-auth: concurrent calls rejected together share one new token', async (t) => {
  const { sim, client } = await setup(t);
  await client.token();
  sim.revokeTokens();
  await Promise.all(Array.from({ length: 5 }, () => client.checkVersion('V1.0')));
  assert.equal(sim.records.tokens.length, 2);
  assert.equal(sim.records.checks.length, 5);
});

test('re-auth: a JSON code "401" sent as a string also triggers re-authentication', async (t) => {
  const fake = await startFakeCloud(t, (_req, n) =>
    n === 0
      ? { body: { code: '401', msg: 'token invalid or expired', content: null } }
      : { body: { code: '1', msg: 'success', content: JSON.stringify({ upgradeMark: 0 }) } },
  );
  const result = await fake.client.checkVersion('V1.0');
  assert.deepEqual(result, { upgradeMark: 0, upgradeList: [] });
  assert.equal(fake.requests.filter((r) => r.path === TOKEN_PATH).length, 2);
});

test('a token endpoint that keeps failing costs retries+1 token requests, not more', async (t) => {
  const { sim, client } = await setup(t, {}, { retries: 2 });
  sim.inject('token', { kind: 'status', status: 500 });
  const err = await cloudFailure(client.checkVersion('V1.0'));
  assert.equal(err.failure, 'http');
  assert.equal(sim.records.tokens.length, 3);
});

// ---- version check ----------------------------------------------------------------------------

test('checkVersion: no update', async (t) => {
  const { sim, client } = await setup(t, {
    scenario: { upgradeMark: 2, versions: [{ versionNum: 'V1.0' }, { versionNum: 'V1.1' }] },
  });
  assert.deepEqual(await client.checkVersion('V1.1'), { upgradeMark: 0, upgradeList: [] });
  await sim.setScenario({ upgradeMark: 0, versions: [] });
  assert.deepEqual(await client.checkVersion('V1.1'), { upgradeMark: 0, upgradeList: [] });
  assert.equal(sim.records.checks[0]?.versionNum, 'V1.1');
  assert.equal(
    sim.records.requests.find((r) => r.path === CHECK_PATH)?.query.appkey,
    'test-app-key',
  );
});

for (const mark of [UpgradeMark.optional, UpgradeMark.mandatory]) {
  test(`checkVersion: upgradeMark ${mark} with the chain after the current version`, async (t) => {
    const { sim, client } = await setup(t, {
      scenario: {
        upgradeMark: mark,
        versions: [
          { versionNum: 'V1.6' },
          {
            versionNum: 'V1.7',
            remark: 'fixes the SIP timeout',
            argumentConfigMap: { 'sip.timeout': 30, nested: { a: ['x', 1] } },
          },
          { versionNum: 'V1.8', configOnly: true, argumentConfigMap: { mode: 'fast' } },
        ],
      },
    });
    const [, v17, v18] = sim.versions();
    assert.ok(v17 !== undefined && v18 !== undefined);
    const expect17 = {
      versionCode: v17.versionCode,
      versionNum: 'V1.7',
      fileMd5: v17.fileMd5,
      remark: 'fixes the SIP timeout',
      argumentConfigMap: { 'sip.timeout': 30, nested: { a: ['x', 1] } },
    };
    const expect18 = {
      versionCode: v18.versionCode,
      versionNum: 'V1.8',
      fileMd5: '',
      remark: 'simulated V1.8',
      argumentConfigMap: { mode: 'fast' },
    };
    assert.deepEqual(await client.checkVersion('V1.6'), {
      upgradeMark: mark,
      upgradeList: [expect17, expect18],
    });
    assert.deepEqual(await client.checkVersion('V1.7'), {
      upgradeMark: mark,
      upgradeList: [expect18],
    });
    // A box on a version the cloud does not know is offered the whole chain.
    const unknown = await client.checkVersion('V0.1');
    assert.deepEqual(
      unknown.upgradeList.map((v) => v.versionNum),
      ['V1.6', 'V1.7', 'V1.8'],
    );
    assert.deepEqual(unknown.upgradeList[0]?.argumentConfigMap, {});
  });
}

test('checkVersion: a non-JSON answer fails as not-json', async (t) => {
  const { sim, client } = await setup(t);
  sim.inject('check', { kind: 'non-json' });
  const err = await cloudFailure(client.checkVersion('V1.0'));
  assert.equal(err.endpoint, 'version/check');
  assert.equal(err.failure, 'not-json');
  assert.match(err.message, /version\/check/);
  assert.equal(hits(sim, CHECK_PATH), 1, 'not retried');
});

test('checkVersion: a business error fails as business with the server message', async (t) => {
  const { sim, client } = await setup(t);
  sim.inject('check', { kind: 'business-error', msg: 'box is disabled by the operator' });
  const err = await cloudFailure(client.checkVersion('V1.0'));
  assert.equal(err.endpoint, 'version/check');
  assert.equal(err.failure, 'business');
  assert.match(err.message, /box is disabled by the operator/);
  assert.equal(hits(sim, CHECK_PATH), 1, 'not retried');
});

test('checkVersion: a missing field fails as invalid-response', async (t) => {
  const { sim, client } = await setup(t, {
    scenario: { upgradeMark: 1, versions: [{ versionNum: 'V1.0' }, { versionNum: 'V1.1' }] },
  });
  sim.inject('check', { kind: 'missing-field' });
  const err = await cloudFailure(client.checkVersion('V1.0'));
  assert.equal(err.endpoint, 'version/check');
  assert.equal(err.failure, 'invalid-response');
  assert.match(err.message, /upgradeList/);
});

test('checkVersion: HTTP 500 is retried, then fails as http', async (t) => {
  const { sim, client } = await setup(t, {}, { retries: 2 });
  sim.inject('check', { kind: 'status', status: 500 });
  const err = await cloudFailure(client.checkVersion('V1.0'));
  assert.equal(err.endpoint, 'version/check');
  assert.equal(err.failure, 'http');
  assert.equal(err.status, 500);
  assert.equal(hits(sim, CHECK_PATH), 3);
});

test('checkVersion: a transient 500 (twice) is retried and succeeds', async (t) => {
  const { sim, client } = await setup(t, {}, { retries: 3 });
  sim.inject('check', { kind: 'status', status: 500, times: 2 });
  assert.deepEqual(await client.checkVersion('V1.0'), { upgradeMark: 0, upgradeList: [] });
  assert.equal(hits(sim, CHECK_PATH), 3);
  assert.equal(sim.records.tokens.length, 1);
});

test('checkVersion: a slow answer fails as timeout', async (t) => {
  const { sim, client } = await setup(t, {}, { timeoutMs: 500, retries: 0 });
  await client.token();
  sim.inject('check', { kind: 'delay', ms: 3000 });
  const started = Date.now();
  const err = await cloudFailure(client.checkVersion('V1.0'));
  assert.equal(err.endpoint, 'version/check');
  assert.equal(err.failure, 'timeout');
  assert.ok(Date.now() - started < 2000, 'the timeout did not cut the request short');
});

test('checkVersion: a dropped connection fails as network', async (t) => {
  const { sim, client } = await setup(t, {}, { retries: 1 });
  sim.inject('check', { kind: 'drop' });
  const err = await cloudFailure(client.checkVersion('V1.0'));
  assert.equal(err.endpoint, 'version/check');
  assert.equal(err.failure, 'network');
  assert.equal(hits(sim, CHECK_PATH), 2, 'network failures are retried');
});

test('checkVersion: a versionNum or versionCode unsafe as a directory name is rejected', async (t) => {
  const { sim, client } = await setup(t);
  const bad = [
    { versionNum: '../V1' },
    { versionNum: 'V1/evil' },
    { versionNum: '.hidden' },
    { versionNum: 'V2', versionCode: '../../etc' },
  ];
  for (const version of bad) {
    await sim.setScenario({ upgradeMark: 2, versions: [{ versionNum: 'V0' }, version] });
    const err = await cloudFailure(client.checkVersion('V0'));
    assert.equal(err.endpoint, 'version/check', JSON.stringify(version));
    assert.equal(err.failure, 'invalid-response', JSON.stringify(version));
  }
  // And a bad MD5.
  await sim.setScenario({
    upgradeMark: 2,
    versions: [{ versionNum: 'V0' }, { versionNum: 'V1', fileMd5: 'not-an-md5' }],
  });
  const err = await cloudFailure(client.checkVersion('V0'));
  assert.equal(err.failure, 'invalid-response');
  assert.match(err.message, /fileMd5/);
});

// ---- download ---------------------------------------------------------------------------------

test('downloadFile: a multi-chunk zip arrives byte-identical, with progress', async (t) => {
  const { sim, client } = await setup(t, {
    chunkSize: 1000,
    scenario: { upgradeMark: 2, versions: [bigVersion('V2.0', 5000)] },
  });
  const dir = await tempDir(t);
  const dest = join(dir, 'V2.0.zip');
  const [version] = sim.versions();
  assert.ok(version?.zip);
  const total = Math.ceil(version.zip.length / 1000);
  assert.ok(total >= 5);
  const progress: Array<[number, number, number, number]> = [];
  const result = await client.downloadFile(version.versionCode, dest, {
    onProgress: (p) => progress.push([p.done, p.total, p.bytes, p.totalBytes]),
  });
  assert.deepEqual(result, {
    noFile: false,
    bytes: version.zip.length,
    chunks: total,
    resumedFrom: 0,
  });
  assert.ok((await readFile(dest)).equals(version.zip));
  assert.deepEqual(await readdir(dir), ['V2.0.zip']);
  // Chunks and bytes; the byte total is the chunk size times the chunks until the last is in.
  const size = version.zip.length;
  assert.deepEqual(
    progress,
    Array.from({ length: total }, (_, i) =>
      i + 1 < total ? [i + 1, total, (i + 1) * 1000, total * 1000] : [total, total, size, size],
    ),
  );
  assert.deepEqual(
    sim.records.downloads.map((d) => d.fileIndex),
    Array.from({ length: total }, (_, i) => i),
  );
});

test('downloadFile: a config-only version gives noFile and creates nothing', async (t) => {
  const { sim, client } = await setup(t, {
    scenario: { upgradeMark: 2, versions: [{ versionNum: 'V3.0', configOnly: true }] },
  });
  const dir = await tempDir(t);
  const [version] = sim.versions();
  assert.ok(version);
  const result = await client.downloadFile(version.versionCode, join(dir, 'V3.0.zip'));
  assert.equal(result.noFile, true);
  assert.equal(result.bytes, 0);
  assert.deepEqual(await readdir(dir), []);
});

test('downloadFile: an unknown versionCode fails as a business error of version/file', async (t) => {
  const { client } = await setup(t);
  const dir = await tempDir(t);
  const err = await cloudFailure(client.downloadFile('f'.repeat(32), join(dir, 'x.zip')));
  assert.equal(err.endpoint, 'version/file');
  assert.equal(err.failure, 'business');
  assert.match(err.message, /unknown versionCode/);
  assert.equal(await exists(join(dir, 'x.zip')), false);
});

test('downloadFile: a download that fails midway resumes with only the missing chunks', async (t) => {
  const { sim, client } = await setup(
    t,
    { chunkSize: 1000, scenario: { upgradeMark: 2, versions: [bigVersion('V2.0', 5000)] } },
    { retries: 0 },
  );
  const dir = await tempDir(t);
  const dest = join(dir, 'V2.0.zip');
  const [version] = sim.versions();
  assert.ok(version?.zip);
  const total = Math.ceil(version.zip.length / 1000);
  sim.inject('file', { kind: 'drop', fileIndex: 3 });

  const err = await cloudFailure(client.downloadFile(version.versionCode, dest));
  assert.equal(err.endpoint, 'version/file');
  assert.equal(err.failure, 'network');
  assert.equal(await exists(dest), false);
  const saved = JSON.parse(await readFile(`${dest}.part.json`, 'utf8')) as { nextIndex: number };
  assert.equal(saved.nextIndex, 3);

  sim.clearFaults();
  const before = sim.records.downloads.length;
  const progress: number[] = [];
  const result = await client.downloadFile(version.versionCode, dest, {
    onProgress: (p) => progress.push(p.done),
  });
  assert.equal(result.resumedFrom, 3);
  assert.equal(result.bytes, version.zip.length);
  assert.deepEqual(
    sim.records.downloads.slice(before).map((d) => d.fileIndex),
    Array.from({ length: total - 3 }, (_, i) => i + 3),
  );
  assert.deepEqual(
    progress,
    Array.from({ length: total - 3 }, (_, i) => i + 4),
  );
  assert.ok((await readFile(dest)).equals(version.zip));
  assert.deepEqual(await readdir(dir), ['V2.0.zip']);
});

test('downloadFile: an aborted download keeps its progress and resumes', async (t) => {
  const { sim, client } = await setup(t, {
    chunkSize: 1000,
    scenario: { upgradeMark: 2, versions: [bigVersion('V2.0', 5000)] },
  });
  const dir = await tempDir(t);
  const dest = join(dir, 'V2.0.zip');
  const [version] = sim.versions();
  assert.ok(version?.zip);
  const controller = new AbortController();
  await assert.rejects(
    client.downloadFile(version.versionCode, dest, {
      signal: controller.signal,
      onProgress: (p) => {
        if (p.done === 2) controller.abort();
      },
    }),
    { name: 'AbortError' },
  );
  assert.equal(await exists(dest), false);
  assert.equal(await exists(`${dest}.part.json`), true);
  const result = await client.downloadFile(version.versionCode, dest);
  assert.equal(result.resumedFrom, 2);
  assert.ok((await readFile(dest)).equals(version.zip));
});

test('downloadFile: partial state that does not match the .part file starts afresh', async (t) => {
  const { sim, client } = await setup(
    t,
    {
      chunkSize: 1000,
      scenario: {
        upgradeMark: 2,
        versions: [bigVersion('V2.0', 5000), bigVersion('V2.1', 5000)],
      },
    },
    { retries: 0 },
  );
  const dir = await tempDir(t);
  const dest = join(dir, 'update.zip');
  const [v20, v21] = sim.versions();
  assert.ok(v20?.zip && v21?.zip);
  sim.inject('file', { kind: 'drop', fileIndex: 3 });
  await cloudFailure(client.downloadFile(v20.versionCode, dest));
  sim.clearFaults();

  // Another version to the same destination ignores the leftover state.
  const other = await client.downloadFile(v21.versionCode, dest);
  assert.equal(other.resumedFrom, 0);
  assert.ok((await readFile(dest)).equals(v21.zip));

  // A .part file shorter than its state says (lost writes) also starts afresh.
  await rm(dest);
  sim.inject('file', { kind: 'drop', fileIndex: 3 });
  await cloudFailure(client.downloadFile(v20.versionCode, dest));
  sim.clearFaults();
  await truncate(`${dest}.part`, 10);
  const fresh = await client.downloadFile(v20.versionCode, dest);
  assert.equal(fresh.resumedFrom, 0);
  assert.ok((await readFile(dest)).equals(v20.zip));
});

test('downloadFile: signed and unsigned byte values both decode to the same bytes', async (t) => {
  const fake = await startFakeCloud(t, () => ({
    body: { code: 1, content: { totalIndex: 1, bytes: [-1, -128, 127, 0, 255, 128, 1] } },
  }));
  const dir = await tempDir(t);
  const dest = join(dir, 'f.zip');
  await fake.client.downloadFile('code1', dest);
  assert.deepEqual([...(await readFile(dest))], [0xff, 0x80, 0x7f, 0x00, 0xff, 0x80, 0x01]);
});

test('downloadFile: a chunk holding something other than bytes fails as invalid-response', async (t) => {
  const badValues: unknown[] = [256, -129, 1.5, '7', null];
  let current: unknown = 0;
  const fake = await startFakeCloud(t, () => ({
    body: { code: 1, content: { totalIndex: 1, bytes: [1, 2, current] } },
  }));
  const dir = await tempDir(t);
  for (const value of badValues) {
    current = value;
    const dest = join(dir, 'f.zip');
    const err = await cloudFailure(fake.client.downloadFile('code1', dest));
    assert.equal(err.endpoint, 'version/file', String(value));
    assert.equal(err.failure, 'invalid-response', String(value));
    assert.match(err.message, /bytes\[2\]/);
    assert.equal(await exists(dest), false);
  }
});

test('downloadFile: a totalIndex that changes midway fails as invalid-response', async (t) => {
  const data = randomBytes(300);
  const fake = await startFakeCloud(t, (req) => {
    const index = Number(req.query.fileIndex);
    return chunkAnswer(data, 100, index, index === 0 ? 3 : 4);
  });
  const dir = await tempDir(t);
  const dest = join(dir, 'f.zip');
  const err = await cloudFailure(fake.client.downloadFile('code1', dest));
  assert.equal(err.endpoint, 'version/file');
  assert.equal(err.failure, 'invalid-response');
  assert.match(err.message, /totalIndex changed from 3 to 4/);
  assert.equal(fake.requests.filter((r) => r.path === FILE_PATH).length, 2, 'not retried');
  assert.equal(await exists(dest), false);
});

test('downloadFile: a chunk claiming "no file" midway fails instead of reporting a config-only version', async (t) => {
  const data = randomBytes(300);
  const fake = await startFakeCloud(t, (req) => {
    const index = Number(req.query.fileIndex);
    return index === 0 ? chunkAnswer(data, 100, 0) : { body: { code: 1, content: null } };
  });
  const dir = await tempDir(t);
  const err = await cloudFailure(fake.client.downloadFile('code1', join(dir, 'f.zip')));
  assert.equal(err.endpoint, 'version/file');
  assert.equal(err.failure, 'invalid-response');
});

// ---- heartbeat ----------------------------------------------------------------------------------

test('heartbeat: the body carries appkey, items in order, time in ms and versionCode', async (t) => {
  const { sim, client } = await setup(t);
  const items = [
    { key: 'cpu', value: 12.5 },
    { key: 'disk', value: '80%' },
    { key: 'sip', value: null },
  ];
  await client.heartbeat(items, 'abc123');
  assert.equal(sim.records.heartbeats.length, 1);
  const rec = sim.records.heartbeats[0];
  assert.ok(rec);
  assert.equal(rec.body.appkey, sim.options.appKey);
  assert.deepEqual(rec.body.items, items);
  assert.equal(rec.body.versionCode, 'abc123');
  assert.ok(Math.abs(rec.body.time - rec.at) < 5000, `time ${rec.body.time} is not ~now (ms)`);
});

test('heartbeat: a business error fails as business', async (t) => {
  const { sim, client } = await setup(t);
  sim.inject('heartBeat', { kind: 'business-error', msg: 'unknown box' });
  const err = await cloudFailure(client.heartbeat([], 'abc123'));
  assert.equal(err.endpoint, 'heartBeat');
  assert.equal(err.failure, 'business');
  assert.match(err.message, /unknown box/);
});

test('heartbeat: a success answer without content is accepted', async (t) => {
  const fake = await startFakeCloud(t, () => ({ body: { code: 1, msg: 'success' } }));
  await fake.client.heartbeat([{ key: 'a', value: 1 }], 'abc123');
  assert.equal(fake.requests.filter((r) => r.path === HEARTBEAT_PATH).length, 1);
});

test('heartbeat: a business error with content null fails as business', async (t) => {
  const fake = await startFakeCloud(t, () => ({
    body: { code: 0, msg: 'unknown box', content: null },
  }));
  const err = await cloudFailure(fake.client.heartbeat([], 'abc123'));
  assert.equal(err.endpoint, 'heartBeat');
  assert.equal(err.failure, 'business');
  assert.match(err.message, /unknown box/);
});

test('heartbeat: HTTP 500 is not retried', async (t) => {
  const { sim, client } = await setup(t, {}, { retries: 3 });
  sim.inject('heartBeat', { kind: 'status', status: 500 });
  const err = await cloudFailure(client.heartbeat([{ key: 'a', value: 1 }], 'abc123'));
  assert.equal(err.endpoint, 'heartBeat');
  assert.equal(err.failure, 'http');
  await sleep(50);
  assert.equal(hits(sim, HEARTBEAT_PATH), 1);
});

test('heartbeat: a revoked token is renewed once and the beat goes through', async (t) => {
  const { sim, client } = await setup(t);
  await client.heartbeat([], 'abc123');
  sim.revokeTokens();
  await client.heartbeat([], 'abc123');
  assert.equal(sim.records.heartbeats.length, 2);
  assert.equal(sim.records.tokens.length, 2);
});

// ---- task pause/resume ------------------------------------------------------------------------

test('setTaskStatus: pause and resume are recorded with the task numbers', async (t) => {
  const { sim, client } = await setup(t);
  await client.setTaskStatus([101, 'T-7'], TaskOp.pause);
  await client.setTaskStatus(['T-7'], TaskOp.resume);
  assert.deepEqual(
    sim.records.taskOps.map(({ op, taskNos }) => ({ op, taskNos })),
    [
      { op: 'pause', taskNos: [101, 'T-7'] },
      { op: 'resume', taskNos: ['T-7'] },
    ],
  );
});

test('setTaskStatus: no tasks sends nothing at all', async (t) => {
  const { sim, client } = await setup(t);
  await client.setTaskStatus([], TaskOp.pause);
  assert.equal(sim.records.requests.length, 0);
});

test('setTaskStatus: a transient 500 is retried and succeeds', async (t) => {
  const { sim, client } = await setup(t, {}, { retries: 2 });
  sim.inject('upTaskStatus', { kind: 'status', status: 500, times: 1 });
  await client.setTaskStatus([5], TaskOp.pause);
  assert.equal(hits(sim, TASK_PATH), 2);
  assert.deepEqual(sim.records.taskOps[0]?.taskNos, [5]);
});

// ---- secrets ------------------------------------------------------------------------------------

test('error messages never contain the token or the access secret', async (t) => {
  const secret = 'S3cr3t-do-not-print';
  const sim = await startCloudSimulator({
    accessKeySecret: secret,
    scenario: { upgradeMark: 1, versions: [{ versionNum: 'V1' }] },
  });
  t.after(() => sim.close());
  const creds = {
    accessKeyId: sim.options.accessKeyId,
    accessKeySecret: secret,
    appKey: 'test-app-key',
  };
  const client = clientFor(sim.url, () => creds, { retries: 0, timeoutMs: 500 });
  await client.token();
  const errors: CloudError[] = [];
  const faults = [
    { kind: 'reject-token' },
    { kind: 'business-error' },
    { kind: 'non-json' },
    { kind: 'missing-field' },
    { kind: 'status', status: 500 },
    { kind: 'status', status: 403 },
    { kind: 'delay', ms: 2000 },
    { kind: 'drop' },
  ] as const;
  for (const fault of faults) {
    sim.clearFaults();
    sim.inject('check', fault);
    errors.push(await cloudFailure(client.checkVersion('V0')));
    sim.inject('heartBeat', fault);
    errors.push(await cloudFailure(client.heartbeat([], 'x')));
  }
  sim.clearFaults();
  sim.revokeTokens();
  sim.inject('token', { kind: 'missing-field' });
  errors.push(await cloudFailure(client.checkVersion('V0')));
  sim.options.accessKeySecret = 'changed-on-the-server'; // the client now signs wrongly
  errors.push(await cloudFailure(client.refreshToken()));
  assert.equal(errors.at(-1)?.endpoint, 'getUserToken');

  const tokens = sim.records.tokens.flatMap((r) => (r.token === undefined ? [] : [r.token]));
  assert.ok(tokens.length >= 2);
  assert.equal(errors.length, 18);
  for (const err of errors) {
    assert.ok(!err.message.includes(secret), `secret in: ${err.message}`);
    for (const token of tokens) {
      assert.ok(!err.message.includes(token), `token in: ${err.message}`);
    }
  }
});
