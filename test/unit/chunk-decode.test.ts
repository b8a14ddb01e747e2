// The file-chunk scanner: what it decodes (and into which bytes), and what it leaves to the
// general JSON path, with where and what it expected.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { bodyWithoutBytes, scanChunkBody, type ChunkScan } from '../../adapters/chunk-decode.ts';

const scan = (text: string, capacity = 1 << 20): ChunkScan =>
  scanChunkBody(Buffer.from(text), capacity, { buffer: Buffer.alloc(0) });

function decoded(text: string, capacity?: number): number[] {
  const r = scan(text, capacity);
  assert.ok(r.ok, r.ok ? '' : `miss at ${r.at}: ${r.expected}`);
  return [...r.data];
}

function miss(text: string, expected: RegExp): number {
  const r = scan(text);
  if (r.ok) assert.fail(`expected a miss for ${text}`);
  assert.match(r.expected, expected);
  return r.at;
}

const envelope = (bytes: string) =>
  `{"code":1,"msg":"success","content":{"totalIndex":3,"bytes":${bytes}}}`;

test('signed and unsigned values decode to their low 8 bits', () => {
  assert.deepEqual(
    decoded(envelope('[-1,-128,127,0,255,128,1,-0,10,-10,100,-100]')),
    [0xff, 0x80, 0x7f, 0x00, 0xff, 0x80, 0x01, 0x00, 10, 246, 100, 156],
  );
  assert.deepEqual(decoded(envelope('[]')), []);
});

test('every signed byte round-trips', () => {
  const all = Array.from({ length: 256 }, (_, i) => i - 128);
  assert.deepEqual(
    decoded(envelope(JSON.stringify(all))),
    all.map((v) => v & 0xff),
  );
});

test('whitespace anywhere JSON allows it, keys in any order, extra keys', () => {
  const text =
    ' \r\n{ "content" :\t{ "bytes" : [ -1 ,\n2 ,\r\n 3\t] , "totalIndex" : 3 , "x": {"bytes": [9]} },' +
    ' "msg" : "a \\"bytes\\":[1] in a string" , "code" : "1" } \n';
  assert.deepEqual(decoded(text), [0xff, 2, 3]);
});

test('the rest of the body, with [] for the array, is what JSON.parse sees', () => {
  const text = envelope('[1, 2, 3]');
  const r = scan(text);
  assert.ok(r.ok);
  assert.deepEqual(JSON.parse(bodyWithoutBytes(Buffer.from(text), r)), {
    code: 1,
    msg: 'success',
    content: { totalIndex: 3, bytes: [] },
  });
});

test('values past the capacity are counted, not written', () => {
  const r = scan(envelope('[1,2,3,4,5]'), 3);
  assert.ok(r.ok);
  assert.equal(r.count, 5);
  assert.deepEqual([...r.data], [1, 2, 3]);
});

test('malformed numbers are misses naming the element and what was expected', () => {
  miss(envelope('[1,2,01]'), /no leading zeros/);
  miss(envelope('[1,1.5]'), /bytes\[1\].*no fraction or exponent/);
  miss(envelope('[1e2]'), /bytes\[0\].*no fraction or exponent/);
  miss(envelope('[1,2,1000]'), /bytes\[2\].*at most 3 digits/);
  miss(envelope('[256]'), /bytes\[0\] \(-128\.\.255\), found 256/);
  miss(envelope('[-129]'), /found -129/);
  miss(envelope('[1,"7"]'), /a digit in bytes\[1\], found "\\"7/);
  miss(envelope('[null]'), /a digit in bytes\[0\]/);
  miss(envelope('[-]'), /a digit in bytes\[0\]/);
  miss(envelope('[+1]'), /a digit in bytes\[0\]/);
  miss(envelope('[1,]'), /a digit in bytes\[1\]/);
  miss(envelope('[1 2]'), /"," or "\]" after bytes\[0\], found "2/);
  miss(envelope('[1,,2]'), /a digit in bytes\[1\]/);
});

test('a truncated body is a miss at its end', () => {
  const full = envelope('[1,2,3]');
  for (let cut = 1; cut < full.length; cut++) {
    const at = miss(full.slice(0, cut), /./);
    assert.ok(at <= cut, `cut ${cut}: miss at ${at}`);
  }
  assert.equal(miss(full.slice(0, full.indexOf('2')), /a digit in bytes\[1\]/), full.indexOf('2'));
  miss(`${full} x`, /the end of the body, found "x"/);
});

test('shapes left to the general path: no content object, no bytes, escaped or repeated keys', () => {
  miss('{"code":0,"msg":"no such version","content":null}', /content to be an object/);
  miss('{"code":1,"msg":"success","content":{"totalIndex":0}}', /content\.bytes/);
  miss('{"code":1,"msg":"success"}', /content\.bytes/);
  miss('[1,2]', /"\{" \(the answer\)/);
  miss('{"code":1,"content":{"totalIndex":1,"b\\u0079tes":[1]}}', /a key without escapes/);
  miss('{"code":1,"content":{"totalIndex":1,"bytes":[1],"bytes":[2]}}', /one "bytes" key/);
  miss('{"content":{"bytes":[1]},"content":{"bytes":[2]}}', /one "content" key/);
  miss('{"code":1,"content":{"totalIndex":1,"bytes":"AQI="}}', /"\[" \(content\.bytes\)/);
});
