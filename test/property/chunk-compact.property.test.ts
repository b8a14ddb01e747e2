// The two decoders of a chunk's byte array (adapters/chunk-decode.ts): decodeCompact, the
// branch-free one for the shape the cloud sends, against decodeExact, which decides every
// refusal. Whatever the compact one accepts, the exact one and JSON.parse read the same way;
// whatever the exact one accepts in the compact shape, the compact one accepts too; and
// decodeValues, which tries one then the other, behaves exactly as the exact one alone.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import { decodeCompact, decodeExact, decodeValues } from '../../adapters/chunk-decode.ts';

type Outcome =
  | { ok: true; end: number; count: number; data: number[] }
  | { ok: false; at: unknown; expected: unknown };

/** Runs a decoder on the array that starts at `body[from - 1]`, into a fresh buffer. */
function outcome(
  decode: (
    body: Buffer,
    from: number,
    out: Buffer,
    limit: number,
  ) => { end: number; count: number },
  body: Buffer,
  from: number,
  limit: number,
): Outcome {
  // Filled with a marker so that stray writes past the values would show.
  const out = Buffer.alloc(body.length, 0xa5);
  try {
    const { end, count } = decode(body, from, out, limit);
    return { ok: true, end, count, data: [...out.subarray(0, Math.min(count, limit))] };
  } catch (err) {
    const miss = err as { at?: unknown; expected?: unknown };
    return { ok: false, at: miss.at, expected: miss.expected };
  }
}

function compact(body: Buffer, from: number, limit: number) {
  const close = body.indexOf(0x5d, from);
  const out = Buffer.alloc(body.length, 0xa5);
  const count = close < 0 ? -1 : decodeCompact(body, from, close, out, limit);
  return { close, count, data: [...out.subarray(0, Math.max(0, Math.min(count, limit)))], out };
}

const signed = (b: number) => (b > 127 ? b - 256 : b);

/** An element as the cloud writes it (Java's signed bytes) or as it might (0..255). */
const goodValue = fc.oneof(
  fc.integer({ min: -128, max: 127 }),
  fc.integer({ min: 0, max: 255 }),
  fc.constantFrom(-128, -100, -10, -1, 0, 9, 10, 99, 100, 127, 128, 255),
);
/** Elements near the grammar's edges and past them, and odd characters. */
const oddValue = fc.oneof(
  fc.constantFrom(
    '',
    '-',
    '--1',
    '-0',
    '00',
    '01',
    '-01',
    '-00',
    '1000',
    '-1000',
    '0000',
    '-128',
    '-129',
    '255',
    '256',
    '999',
    '-999',
    '1.5',
    '1e2',
    '1E2',
    '+1',
    '"7"',
    'null',
    ' 1',
    '1 ',
    '\n-1\t',
    '1,',
    ',',
    '[1]',
    ']',
  ),
  fc.stringMatching(/^[-0-9,.e ]{0,6}$/),
);
const element = fc.oneof(
  { weight: 12, arbitrary: goodValue.map(String) },
  { weight: 1, arbitrary: oddValue },
);
/** What follows the array in a body: the envelope's end, or less than that. */
const tail = fc.constantFrom('}}', '}', '', ']}}', ' }}', ',1]}}', '"]"}}');

/** `[`, the elements joined by commas (or odd separators), `]` and the tail, as a Buffer. */
const arrayBody = fc
  .record({
    elements: fc.array(element, { maxLength: 60 }),
    oddSeparator: fc.option(fc.tuple(fc.nat(), fc.constantFrom('', ',,', ' ,', ', ', ';')), {
      freq: 4,
    }),
    close: fc.constantFrom(']', ']', ']', ',]', ' ]', ''),
    tail,
    limit: fc.oneof({ weight: 4, arbitrary: fc.constant(1 << 20) }, fc.nat(70)),
  })
  .map(({ elements, oddSeparator, close, tail: rest, limit }) => {
    const seps = elements.map((_, i) =>
      oddSeparator !== null && oddSeparator[0] % Math.max(1, elements.length) === i
        ? oddSeparator[1]
        : ',',
    );
    const text = elements.map((e, i) => (i === 0 ? e : `${seps[i]}${e}`)).join('');
    return { body: Buffer.from(`{"bytes":[${text}${close}${rest}`), limit };
  });
const FROM = '{"bytes":['.length;

test('what the compact decoder accepts, the exact one and JSON.parse read the same way', () => {
  let accepted = 0;
  fc.assert(
    fc.property(arrayBody, ({ body, limit }) => {
      const c = compact(body, FROM, limit);
      if (c.count < 0) return;
      accepted++;
      const exact = outcome(decodeExact, body, FROM, limit);
      assert.deepEqual(exact, { ok: true, end: c.close + 1, count: c.count, data: c.data });
      // Nothing written past the values it returns (the rest still holds the marker).
      assert.ok(c.out.subarray(c.data.length).every((b) => b === 0xa5));
      const values = JSON.parse(body.toString('latin1', FROM - 1, c.close + 1)) as number[];
      assert.equal(values.length, c.count);
      assert.deepEqual(
        values.slice(0, limit).map((v) => v & 0xff),
        c.data,
      );
    }),
    { numRuns: 3000 },
  );
  assert.ok(accepted > 500, `the compact decoder accepted only ${accepted} of 3000 arrays`);
});

test('what the exact decoder accepts without whitespace, the compact one accepts too', () => {
  fc.assert(
    fc.property(arrayBody, ({ body, limit }) => {
      const exact = outcome(decodeExact, body, FROM, limit);
      if (!exact.ok || exact.count > limit) return;
      if (/\s/.test(body.toString('latin1', FROM, exact.end))) return;
      const c = compact(body, FROM, limit);
      assert.equal(c.count, exact.count, body.toString('latin1'));
      assert.deepEqual(c.data, exact.data);
    }),
    { numRuns: 3000 },
  );
});

test('decodeValues answers exactly as the exact decoder alone, refusals included', () => {
  fc.assert(
    fc.property(arrayBody, ({ body, limit }) => {
      assert.deepEqual(
        outcome(decodeValues, body, FROM, limit),
        outcome(decodeExact, body, FROM, limit),
      );
    }),
    { numRuns: 3000 },
  );
});

test('chunk-sized arrays of random bytes, signed or not, decode through the compact path', () => {
  fc.assert(
    fc.property(
      fc.uint8Array({ minLength: 0, maxLength: 70_000 }),
      fc.boolean(),
      (data, asSigned) => {
        const values = Array.from(data, (b) => (asSigned ? signed(b) : b));
        const body = Buffer.from(`{"bytes":${JSON.stringify(values)}}}`);
        const c = compact(body, FROM, 1 << 20);
        assert.equal(c.count, data.length);
        assert.ok(Buffer.from(c.data).equals(data));
      },
    ),
    { numRuns: 30 },
  );
});
