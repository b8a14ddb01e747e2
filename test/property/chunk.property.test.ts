// Property tests of the chunk decoder (adapters/cloud-client.ts decodeChunkBytes) and of
// downloads through it: the cloud's JSON arrays of bytes — Java's signed bytes, or 0..255 —
// decode to exactly the bytes; any malformed element is a CloudError naming the chunk and the
// element, never a wrong byte. Then whole files over real HTTP on loopback, in random chunk
// sizes and byte styles, arrive byte-identical.
import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import fc from 'fast-check';
import { bodyWithoutBytes, scanChunkBody } from '../../adapters/chunk-decode.ts';
import { createCloudClient, decodeChunkBytes, TOKEN_PATH } from '../../adapters/cloud-client.ts';
import { CloudError } from '../../adapters/errors.ts';
import { createLogger } from '../../adapters/logger.ts';

/** How a server may write byte b: signed as Java does, unsigned, or either per byte. */
type ByteStyle = 'signed' | 'unsigned' | 'mixed';
const byteStyle = fc.constantFrom<ByteStyle>('signed', 'unsigned', 'mixed');

function encode(data: Uint8Array, style: ByteStyle, flips: readonly boolean[]): number[] {
  return Array.from(data, (b, i) => {
    const signed = b > 127 ? b - 256 : b;
    if (style === 'signed') return signed;
    if (style === 'unsigned') return b;
    return flips[i % Math.max(1, flips.length)] === true ? signed : b;
  });
}

test('signed, unsigned or mixed byte arrays decode to exactly the bytes', () => {
  fc.assert(
    fc.property(
      fc.uint8Array({ maxLength: 2048 }),
      byteStyle,
      fc.array(fc.boolean(), { minLength: 1, maxLength: 7 }),
      fc.nat(1000),
      (data, style, flips, index) => {
        const decoded = decodeChunkBytes(encode(data, style, flips), index);
        assert.ok(decoded.equals(Buffer.from(data)));
      },
    ),
    { numRuns: 500 },
  );
});

// Everything JSON can hold that is not a byte: out of range, fractions, strings of digits,
// booleans, null, arrays and objects (a nested byte too).
const notAByte = fc.oneof(
  fc.integer({ min: 256, max: 2 ** 40 }),
  fc.integer({ min: -(2 ** 40), max: -129 }),
  fc.double({ noNaN: true, noDefaultInfinity: true }).filter((x) => !Number.isInteger(x)),
  fc.constantFrom(-129, 256, 255.5, -128.5, 1e300, -1e300, 2 ** 53 + 2),
  fc.integer({ min: -128, max: 255 }).map(String),
  fc.boolean(),
  fc.constant(null),
  fc.integer({ min: 0, max: 255 }).map((b) => [b]),
  fc.dictionary(fc.string({ maxLength: 3 }), fc.integer({ min: 0, max: 255 }), { maxKeys: 2 }),
);

test('any element that is not a byte is a CloudError naming the chunk and the first bad element', () => {
  fc.assert(
    fc.property(
      fc.uint8Array({ minLength: 1, maxLength: 256 }),
      byteStyle,
      fc.array(fc.tuple(fc.nat(), notAByte), { minLength: 1, maxLength: 3 }),
      fc.nat(1000),
      (data, style, bad, index) => {
        const bytes: unknown[] = encode(data, style, [true, false]);
        for (const [at, value] of bad) bytes[at % bytes.length] = value;
        const first = bytes.findIndex((_, i) => bad.some(([at]) => at % bytes.length === i));
        try {
          decodeChunkBytes(bytes, index);
        } catch (err) {
          assert.ok(err instanceof CloudError, String(err));
          assert.equal(err.endpoint, 'version/file');
          assert.equal(err.failure, 'invalid-response');
          assert.match(
            err.message,
            new RegExp(`chunk ${index}: bytes\\[${first}\\] is .*, expected a byte$`),
          );
          return;
        }
        assert.fail('a malformed chunk was decoded');
      },
    ),
    { numRuns: 500 },
  );
});

test('whole files over loopback HTTP arrive byte-identical, in any chunk size and byte style', async () => {
  let current: { data: Uint8Array; chunk: number; style: ByteStyle; spaced: boolean } | undefined;
  const server = createServer((req, res) => {
    const url = new URL(req.url ?? '/', 'http://x');
    let body: unknown;
    if (url.pathname === TOKEN_PATH) {
      body = { code: 1, content: { token: 't', expireTime: Math.floor(Date.now() / 1000) + 3600 } };
    } else if (current !== undefined) {
      const { data, chunk, style } = current;
      const i = Number(url.searchParams.get('fileIndex'));
      const part = data.subarray(i * chunk, (i + 1) * chunk);
      const totalIndex = Math.ceil(data.length / chunk);
      body = {
        code: 1,
        msg: 'success',
        content: { totalIndex, bytes: encode(part, style, [true, false, false]) },
      };
    }
    res.writeHead(200, { 'content-type': 'application/json' });
    res.end(JSON.stringify(body, null, current?.spaced === true ? 1 : undefined));
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const dir = await mkdtemp(join(tmpdir(), 'bk-chunks-'));
  try {
    const client = createCloudClient({
      hostAddr: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
      credentials: () => ({ accessKeyId: 'id', accessKeySecret: 's', appKey: 'app' }),
      timeoutMs: 30_000,
      retries: 0,
      refreshMarginMs: 60_000,
      logger: createLogger({ level: 'fatal', console: 'none' }).logger,
      freeBytes: () => Promise.resolve(Number.MAX_SAFE_INTEGER),
    });
    let n = 0;
    await fc.assert(
      fc.asyncProperty(
        fc.uint8Array({ minLength: 1, maxLength: 5000 }),
        fc.integer({ min: 1, max: 2048 }),
        byteStyle,
        fc.boolean(),
        async (data, chunk, style, spaced) => {
          current = { data, chunk, style, spaced };
          const dest = join(dir, `f${n++}.zip`);
          const r = await client.downloadFile('code', dest);
          assert.equal(r.chunks, Math.ceil(data.length / chunk));
          assert.ok((await readFile(dest)).equals(Buffer.from(data)));
        },
      ),
      { numRuns: 40 },
    );
  } finally {
    server.closeAllConnections();
    await new Promise((r) => server.close(r));
    await rm(dir, { recursive: true, force: true });
  }
});

// The fast scanner (adapters/chunk-decode.ts) against JSON.parse: whenever it claims a body, the
// parse of the whole body agrees on every byte and on the rest of the envelope. A body it does
// not claim goes the general path, so a claim is the only way it could be wrong.
const jsonValue = fc.oneof(
  fc.integer({ min: -200, max: 300 }),
  fc.constantFrom(1.0, 1e1, -0, 0.5, '7', null, true, [1], {}),
);
const chunkBody = fc.record({
  bytes: fc.array(
    fc.oneof({ weight: 20, arbitrary: fc.integer({ min: -128, max: 255 }) }, jsonValue),
    {
      maxLength: 300,
    },
  ),
  extraKeys: fc.dictionary(
    fc.constantFrom('code', 'msg', 'x', 'bytes', 'content', 'totalIndex'),
    jsonValue,
    {
      maxKeys: 3,
    },
  ),
  keysFirst: fc.boolean(),
  indent: fc.constantFrom(undefined, 1, '\t'),
  totalIndex: fc.nat(5),
});

test('the fast scanner claims only bodies JSON.parse reads the same way', () => {
  let claimed = 0;
  fc.assert(
    fc.property(chunkBody, ({ bytes, extraKeys, keysFirst, indent, totalIndex }) => {
      const content = keysFirst
        ? { ...extraKeys, totalIndex, bytes }
        : { bytes, totalIndex, ...extraKeys };
      const body = Buffer.from(JSON.stringify({ code: 1, content, ...extraKeys }, null, indent));
      const scan = scanChunkBody(body, 1 << 16, { buffer: Buffer.alloc(0) });
      if (!scan.ok) return;
      claimed++;
      const parsed = JSON.parse(body.toString('utf8')) as { content: { bytes: unknown[] } };
      assert.ok(scan.data.equals(decodeChunkBytes(parsed.content.bytes, 0)));
      assert.equal(scan.count, parsed.content.bytes.length);
      const rest = JSON.parse(bodyWithoutBytes(body, scan)) as { content: { bytes: unknown[] } };
      parsed.content.bytes = [];
      assert.deepEqual(rest, parsed);
    }),
    { numRuns: 1000 },
  );
  // The property says nothing if the scanner never claims a body.
  assert.ok(claimed > 100, `the scanner claimed only ${claimed} of 1000 bodies`);
});
