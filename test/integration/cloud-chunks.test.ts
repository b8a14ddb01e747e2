// File chunks as the cloud may write them, through the real client over loopback: the fast
// decoder and the general JSON path must give the same bytes or the same clear error.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { access, mkdtemp, readFile, rm } from 'node:fs/promises';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test, type TestContext } from 'node:test';
import { API_PREFIX, createCloudClient, type CloudApi } from '../../adapters/cloud-client.ts';
import { CloudError } from '../../adapters/errors.ts';
import { createLogger } from '../../adapters/logger.ts';

const logger = createLogger({ level: 'fatal', console: 'none' }).logger;
const FILE_PATH = `${API_PREFIX}/version/file`;

/** A cloud whose file answers are the exact text `chunk(index)` returns (tokens always pass). */
async function rawCloud(
  t: TestContext,
  chunk: (index: number) => string,
): Promise<{ client: CloudApi; fileRequests: () => number; dir: string }> {
  let files = 0;
  const server = createServer((req, res) => {
    const url = new URL(req.url ?? '/', 'http://raw.invalid');
    let body: string;
    if (url.pathname === FILE_PATH) {
      files += 1;
      body = chunk(Number(url.searchParams.get('fileIndex')));
    } else {
      const expireTime = Math.floor(Date.now() / 1000) + 3600;
      body = JSON.stringify({ code: 1, msg: 'success', content: { token: 't', expireTime } });
    }
    res.writeHead(200, { 'content-type': 'application/json' }).end(body);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const dir = await mkdtemp(join(tmpdir(), 'boxkeeper-chunks-'));
  t.after(async () => {
    await new Promise<void>((resolve) => {
      server.close(() => resolve());
      server.closeAllConnections();
    });
    await rm(dir, { recursive: true, force: true });
  });
  const client = createCloudClient({
    hostAddr: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    credentials: () => ({ accessKeyId: 'id', accessKeySecret: 's', appKey: 'app' }),
    timeoutMs: 5000,
    retries: 1,
    refreshMarginMs: 60_000,
    logger,
    backoffBaseMs: 5,
    backoffMaxMs: 20,
  });
  return { client, fileRequests: () => files, dir };
}

const signed = (data: Buffer) =>
  Array.from(new Int8Array(data.buffer, data.byteOffset, data.length));

async function cloudFailure(call: Promise<unknown>): Promise<CloudError> {
  try {
    await call;
  } catch (err) {
    assert.ok(err instanceof CloudError, `expected a CloudError, got: ${String(err)}`);
    return err;
  }
  assert.fail('expected the call to fail');
}

async function exists(path: string): Promise<boolean> {
  return access(path).then(
    () => true,
    () => false,
  );
}

test('pretty-printed chunks, keys in another order, unsigned values: byte-identical', async (t) => {
  const data = randomBytes(3000);
  const size = 1000;
  const { client, dir } = await rawCloud(t, (i) => {
    const part = data.subarray(i * size, (i + 1) * size);
    const content = {
      bytes: i === 1 ? [...part] : signed(part), // chunk 1 as 0..255
      totalIndex: 3,
    };
    const body = { content, msg: 'success', code: i === 2 ? '1' : 1 };
    return i === 0 ? JSON.stringify(body, null, 2) : JSON.stringify(body);
  });
  const dest = join(dir, 'p.zip');
  const r = await client.downloadFile('code1', dest);
  assert.equal(r.bytes, 3000);
  assert.ok((await readFile(dest)).equals(data));
});

test('numbers the scanner leaves to JSON.parse (1.0, 1e1) are accepted as before', async (t) => {
  const { client, dir } = await rawCloud(
    t,
    () => '{"code":1,"msg":"success","content":{"totalIndex":1,"bytes":[1.0,1e1,-1]}}',
  );
  const dest = join(dir, 'p.zip');
  await client.downloadFile('code1', dest);
  assert.deepEqual([...(await readFile(dest))], [1, 10, 255]);
});

test('a truncated chunk fails as not-json naming the request and where it stopped', async (t) => {
  const full = JSON.stringify({
    code: 1,
    msg: 'success',
    content: { totalIndex: 1, bytes: [1, 2, 3] },
  });
  const { client, dir, fileRequests } = await rawCloud(t, () => full.slice(0, full.indexOf('3')));
  const dest = join(dir, 'p.zip');
  const err = await cloudFailure(client.downloadFile('code1', dest));
  assert.equal(err.endpoint, 'version/file');
  assert.equal(err.failure, 'not-json');
  assert.match(
    err.message,
    /at byte \d+: expected a digit in bytes\[2\], found the end of the body/,
  );
  assert.equal(fileRequests(), 1, 'a malformed answer is not retried');
  assert.equal(await exists(dest), false);
});

test('bad grammar inside the array fails as not-json, never as wrong bytes', async (t) => {
  const bad = ['[1,2,01]', '[1,,2]', '[1 2]', '[1,2,]', '[-]', '[1,2,3'];
  let current = '';
  const { client, dir } = await rawCloud(
    t,
    () => `{"code":1,"msg":"success","content":{"totalIndex":1,"bytes":${current}}}`,
  );
  for (const b of bad) {
    current = b;
    const err = await cloudFailure(client.downloadFile('code1', join(dir, 'p.zip')));
    assert.equal(err.failure, 'not-json', b);
    assert.match(err.message, /version\/file/, b);
    assert.match(err.message, /at byte \d+: expected /, b);
    assert.equal(await exists(join(dir, 'p.zip')), false, b);
  }
});

test('values out of range are named by index through the general path', async (t) => {
  const { client, dir } = await rawCloud(
    t,
    () => '{"code":1,"msg":"success","content":{"totalIndex":1,"bytes":[1,2,-129]}}',
  );
  const err = await cloudFailure(client.downloadFile('code1', join(dir, 'p.zip')));
  assert.equal(err.failure, 'invalid-response');
  assert.match(err.message, /chunk 0: bytes\[2\] is -129, expected a byte/);
});

test('an error envelope carrying bytes is a business error, not data', async (t) => {
  const { client, dir } = await rawCloud(
    t,
    () => '{"code":0,"msg":"version withdrawn","content":{"totalIndex":1,"bytes":[1,2,3]}}',
  );
  const err = await cloudFailure(client.downloadFile('code1', join(dir, 'p.zip')));
  assert.equal(err.failure, 'business');
  assert.match(err.message, /code 0: version withdrawn/);
});

test('a wrong totalIndex in a well-formed chunk is still caught', async (t) => {
  const { client, dir } = await rawCloud(t, (i) =>
    JSON.stringify({
      code: 1,
      msg: 'success',
      content: { totalIndex: i === 0 ? 2 : 5, bytes: [i] },
    }),
  );
  const err = await cloudFailure(client.downloadFile('code1', join(dir, 'p.zip')));
  assert.equal(err.failure, 'invalid-response');
  assert.match(err.message, /chunk 1: totalIndex changed from 2 to 5/);
  const bad = await rawCloud(t, () =>
    JSON.stringify({ code: 1, msg: 'success', content: { totalIndex: -1, bytes: [1] } }),
  );
  const neg = await cloudFailure(bad.client.downloadFile('code1', join(bad.dir, 'p.zip')));
  assert.equal(neg.failure, 'invalid-response');
  assert.match(neg.message, /chunk 0: totalIndex/);
});
