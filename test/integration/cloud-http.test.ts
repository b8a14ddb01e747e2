// The cloud client's HTTP layer against a real loopback server that behaves as a deployed cloud
// might: compressed answers (Spring Boot's server.compression; Python's requests, which the
// deployed tool used, accepted gzip and deflate), a compressed answer that inflates past the cap,
// an answer cut off mid-body and one that never ends.
import assert from 'node:assert/strict';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { test, type TestContext } from 'node:test';
import { deflateSync, gzipSync } from 'node:zlib';
import {
  createCloudClient,
  DEFAULT_CLOUD_LIMITS,
  TOKEN_PATH,
} from '../../adapters/cloud-client.ts';
import { CloudError } from '../../adapters/errors.ts';
import { createLogger } from '../../adapters/logger.ts';

const logger = createLogger({ level: 'fatal', console: 'none' }).logger;

type Handler = (req: IncomingMessage, res: ServerResponse) => void;

const envelope = (content: unknown) => JSON.stringify({ code: 1, msg: 'ok', content });
const tokenAnswer = envelope({ token: 'tok', expireTime: Date.now() + 3_600_000 });

async function cloud(t: TestContext, check: Handler, timeoutMs = 30_000) {
  const seen: { path: string; acceptEncoding: string | undefined }[] = [];
  const server = createServer((req, res) => {
    const path = new URL(req.url ?? '/', 'http://x').pathname;
    seen.push({ path, acceptEncoding: req.headers['accept-encoding'] });
    if (path === TOKEN_PATH) {
      res.setHeader('content-type', 'application/json');
      res.end(tokenAnswer);
      return;
    }
    check(req, res);
  });
  await new Promise<void>((ok) => server.listen(0, '127.0.0.1', ok));
  t.after(() => {
    server.closeAllConnections();
    return new Promise<void>((ok) => server.close(() => ok()));
  });
  const { port } = server.address() as AddressInfo;
  const client = createCloudClient({
    hostAddr: `http://127.0.0.1:${port}`,
    credentials: () => ({ accessKeyId: 'id', accessKeySecret: 'secret', appKey: 'app' }),
    timeoutMs,
    retries: 0,
    refreshMarginMs: 60_000,
    logger,
    limits: { ...DEFAULT_CLOUD_LIMITS, answerBytes: 64 * 1024 },
  });
  return { client, seen };
}

const checkAnswer = envelope(
  JSON.stringify({
    upgradeMark: 2,
    upgradeList: [
      {
        versionNum: 'V1.8',
        versionCode: 'c0de',
        fileMd5: 'd41d8cd98f00b204e9800998ecf8427e',
        remark: 'x'.repeat(2000),
      },
    ],
  }),
);

for (const [encoding, encode] of [
  ['gzip', gzipSync],
  ['deflate', deflateSync],
] as const) {
  test(`a ${encoding}-compressed version check is read like a plain one`, async (t) => {
    const { client, seen } = await cloud(t, (_req, res) => {
      res.setHeader('content-encoding', encoding);
      res.end(encode(checkAnswer));
    });
    const answer = await client.checkVersion('V1.7');
    assert.equal(answer.upgradeMark, 2);
    assert.equal(answer.upgradeList[0]?.versionNum, 'V1.8');
    assert.match(seen.at(-1)?.acceptEncoding ?? '', /gzip/);
  });
}

test('a compressed answer that inflates past the cap is refused as over the limit', async (t) => {
  // 100 KiB on the wire would pass a 64 KiB cap only if it were counted compressed.
  const bomb = gzipSync(Buffer.alloc(8 * 1024 * 1024, ' '));
  assert.ok(bomb.length < 64 * 1024);
  const { client } = await cloud(t, (_req, res) => {
    res.setHeader('content-encoding', 'gzip');
    res.end(bomb);
  });
  await assert.rejects(client.checkVersion('V1.7'), (err) => {
    assert.ok(err instanceof CloudError);
    assert.equal(err.endpoint, 'version/check');
    assert.match(err.message, /the answer passed .* over \[limits\] answer_size/);
    return true;
  });
});

test('an answer cut off mid-body is a network failure naming the request', async (t) => {
  const { client } = await cloud(t, (_req, res) => {
    res.writeHead(200, { 'content-length': String(checkAnswer.length) });
    res.write(checkAnswer.slice(0, 40));
    setTimeout(() => res.socket?.destroy(), 50);
  });
  await assert.rejects(client.checkVersion('V1.7'), (err) => {
    assert.ok(err instanceof CloudError);
    assert.equal(err.endpoint, 'version/check');
    assert.equal(err.failure, 'network');
    return true;
  });
});

test('an answer that never ends is a timeout, not a hang', async (t) => {
  const { client } = await cloud(
    t,
    (_req, res) => {
      res.writeHead(200);
      res.write('{"code":1,');
    },
    500,
  );
  await assert.rejects(client.checkVersion('V1.7'), (err) => {
    assert.ok(err instanceof CloudError);
    assert.equal(err.failure, 'timeout');
    assert.match(err.message, /ETIMEDOUT/);
    return true;
  });
});
