// Decodes the `bytes` array of a file-chunk answer straight from the response bytes. The
// general path (JSON.parse of the whole text, then a check of each element) costs ~3.65 bytes
// of JSON, a string and a JS array element per payload byte; this scanner writes each value
// into a Buffer as it reads it. It only finds and decodes the one array: the rest of the answer
// (the envelope with `"bytes":[]` in its place) still goes through JSON.parse and the usual
// checks. Anything it does not fully understand is left to the general path, so the two paths
// cannot disagree: a malformed body still fails there, with this scanner's finding attached.

/** Where the `content.bytes` array was and what it held. */
export interface ChunkArray {
  ok: true;
  /** Offset of its `[` and just past its `]` in the body. */
  start: number;
  end: number;
  /** Number of values (may exceed `data.length`: values past the capacity are counted only). */
  count: number;
  /** The first min(count, capacity) values, masked to 8 bits, in the caller's scratch buffer. */
  data: Buffer;
}

/** Why the fast path does not apply: the body is malformed, or valid but not the fast shape. */
export interface ChunkScanMiss {
  ok: false;
  /** Byte offset in the body. */
  at: number;
  /** What the scanner expected there, e.g. `"," or "]" after bytes[12]`. */
  expected: string;
}

export type ChunkScan = ChunkArray | ChunkScanMiss;

const QUOTE = 0x22;
const BACKSLASH = 0x5c;
const COMMA = 0x2c;
const COLON = 0x3a;
const MINUS = 0x2d;
const ZERO = 0x30;
const OPEN_BRACE = 0x7b;
const CLOSE_BRACE = 0x7d;
const OPEN_BRACKET = 0x5b;
const CLOSE_BRACKET = 0x5d;

const isSpace = (c: number | undefined) => c === 0x20 || c === 0x0a || c === 0x0d || c === 0x09;

/** Thrown inside the scanner only; returned to the caller as a ChunkScanMiss. */
class Miss extends Error {
  readonly at: number;
  readonly expected: string;
  constructor(at: number, expected: string) {
    super(expected);
    this.at = at;
    this.expected = expected;
  }
}

function describe(body: Buffer, at: number): string {
  if (at >= body.length) return 'the end of the body';
  return JSON.stringify(body.toString('latin1', at, Math.min(body.length, at + 12)));
}

/**
 * Finds `content.bytes` of a `{…, "content": {…, "bytes": [n, …], …}, …}` body and decodes it
 * into `scratch` (grown when too small, up to `capacity` bytes). Values must be integers written
 * plainly (`-?(0|[1-9][0-9]{0,2})`) in -128..255; fractions, exponents, other values, escaped or
 * repeated keys are a miss.
 */
export function scanChunkBody(
  body: Buffer,
  capacity: number,
  scratch: { buffer: Buffer },
): ChunkScan {
  let i = 0;
  const skipSpace = () => {
    while (isSpace(body[i])) i++;
  };
  const expect = (code: number, what: string) => {
    skipSpace();
    if (body[i] !== code) throw new Miss(i, `${what}, found ${describe(body, i)}`);
    i++;
  };
  /** Reads a string at i; returns its text when it has no escapes, else undefined. */
  const readString = (): string | undefined => {
    expect(QUOTE, 'a string');
    const start = i;
    let escaped = false;
    for (;;) {
      const c = body[i];
      if (c === undefined) throw new Miss(i, 'the end of a string, found the end of the body');
      if (c === QUOTE) break;
      if (c === BACKSLASH) {
        escaped = true;
        i++;
      }
      i++;
    }
    i++;
    return escaped ? undefined : body.toString('utf8', start, i - 1);
  };
  /** Skips any value (JSON.parse checks it later); strings and nesting are tracked exactly. */
  const skipValue = () => {
    skipSpace();
    const c = body[i];
    if (c === QUOTE) {
      readString();
      return;
    }
    if (c === OPEN_BRACE || c === OPEN_BRACKET) {
      for (let depth = 0; ;) {
        const d = body[i];
        if (d === undefined)
          throw new Miss(i, 'the end of an object or array, found the end of the body');
        if (d === QUOTE) {
          readString();
          continue;
        }
        i++;
        if (d === OPEN_BRACE || d === OPEN_BRACKET) depth++;
        else if ((d === CLOSE_BRACE || d === CLOSE_BRACKET) && --depth === 0) return;
      }
    }
    const start = i;
    for (
      let d = body[i];
      d !== undefined && d !== COMMA && d !== CLOSE_BRACE && d !== CLOSE_BRACKET && !isSpace(d);
      d = body[++i]
    );
    if (i === start) throw new Miss(i, `a value, found ${describe(body, i)}`);
  };
  /** Walks an object's members, calling `onKey` at each value; keys must not be escaped. */
  const walkObject = (where: string, onKey: (key: string) => void) => {
    expect(OPEN_BRACE, `"{" (${where})`);
    skipSpace();
    if (body[i] === CLOSE_BRACE) {
      i++;
      return;
    }
    for (;;) {
      skipSpace();
      const keyAt = i;
      const key = readString();
      if (key === undefined) throw new Miss(keyAt, `a key without escapes (${where})`);
      expect(COLON, `":" after the key "${key.slice(0, 40)}"`);
      onKey(key);
      skipSpace();
      const c = body[i];
      i++;
      if (c === CLOSE_BRACE) return;
      if (c !== COMMA)
        throw new Miss(i - 1, `"," or "}" (${where}), found ${describe(body, i - 1)}`);
    }
  };

  let found: ChunkArray | undefined;
  let contentSeen = false;
  const decodeBytes = (): ChunkArray => {
    expect(OPEN_BRACKET, '"[" (content.bytes)');
    const start = i - 1;
    // Each value takes at least two characters ("0,"), so this bounds the count.
    const room = Math.min(capacity, Math.ceil((body.length - i) / 2) + 1);
    if (scratch.buffer.length < room) scratch.buffer = Buffer.allocUnsafe(room);
    const out = scratch.buffer;
    const limit = Math.min(out.length, capacity);
    const { end, count } = decodeValues(body, i, out, limit);
    i = end;
    return { ok: true, start, end, count, data: out.subarray(0, Math.min(count, limit)) };
  };

  try {
    walkObject('the answer', (key) => {
      if (key !== 'content') return skipValue();
      if (contentSeen) throw new Miss(i, 'one "content" key, found a second');
      contentSeen = true;
      skipSpace();
      // Only an object holds bytes; anything else (null, "", an error text) is the general path's.
      if (body[i] !== OPEN_BRACE) throw new Miss(i, 'content to be an object');
      walkObject('content', (inner) => {
        if (inner !== 'bytes') return skipValue();
        if (found !== undefined) throw new Miss(i, 'one "bytes" key, found a second');
        found = decodeBytes();
      });
    });
    skipSpace();
    if (i !== body.length) throw new Miss(i, `the end of the body, found ${describe(body, i)}`);
    if (found === undefined) throw new Miss(i, 'content.bytes');
    return found;
  } catch (err) {
    if (err instanceof Miss) return { ok: false, at: err.at, expected: err.expected };
    throw err;
  }
}

/**
 * Decodes the values of an array whose `[` is just before `from` into `out` (the first `limit`
 * of them); returns the offset just past its `]` and the number of values. The hot loop of a
 * download: the shape the cloud sends (no whitespace) goes through decodeCompact, anything else
 * (or anything it refuses) through decodeExact, which alone decides what is refused and why.
 * Throws a Miss. The three are exported for the tests that hold them to each other.
 */
export function decodeValues(
  body: Buffer,
  from: number,
  out: Buffer,
  limit: number,
): { end: number; count: number } {
  const close = body.indexOf(CLOSE_BRACKET, from);
  const count = close < 0 ? -1 : decodeCompact(body, from, close, out, limit);
  return count >= 0 ? { end: close + 1, count } : decodeExact(body, from, out, limit);
}

// Constant lookup tables of decodeCompact, by byte value.
const byteTable = (f: (c: number) => number) => Uint8Array.from({ length: 256 }, (_, c) => f(c));
const isDigitByte = (c: number) => c >= ZERO && c <= ZERO + 9;
/** 1 for a digit. */
const DIGIT = byteTable((c) => (isDigitByte(c) ? 1 : 0));
/** The digit's value; 0 for anything else (it is then multiplied by 0 or refused). */
const DIGIT_VALUE = byteTable((c) => (isDigitByte(c) ? c - ZERO : 0));
/** 1 for "-". */
const SIGN = byteTable((c) => (c === MINUS ? 1 : 0));
/** 1 for "0". */
const ZERO_DIGIT = byteTable((c) => (c === ZERO ? 1 : 0));
/** 1 for what cannot start a value: neither a digit nor "-". */
const NOT_START = byteTable((c) => (isDigitByte(c) || c === MINUS ? 0 : 1));
/** 1 for what cannot end a value: neither "," nor "]". */
const NOT_END = byteTable((c) => (c === COMMA || c === CLOSE_BRACKET ? 0 : 1));

/**
 * Decodes `-?(0|[1-9][0-9]{0,2})` values in -128..255 separated by bare commas, from `from` to
 * the array's `]` at `close` (the first one: a string, which could hold another, is refused),
 * into `out` (the first `limit` of them); returns their number, or -1 for anything else
 * (whitespace, a malformed value), which decodeExact then decodes or refuses. On random bytes a
 * branch per character (values are 1 to 4 characters long) is mispredicted about once a value:
 * here each value is read as 4 bytes whose lookups give its length, value and validity without
 * a branch (0.41 against 0.80 ms per 64 KiB chunk on this machine). `bad` gathers every refusal.
 */
export function decodeCompact(
  body: Buffer,
  from: number,
  close: number,
  out: Buffer,
  limit: number,
): number {
  let i = from;
  let n = 0;
  let bad = 0;
  // A value and its separator end at `close` at the latest (it is no digit), but its 4 bytes may
  // reach past it: up to the end of the body (a chunk answer's array is followed by "}}").
  const stop = Math.min(close, body.length - 3);
  while (i < stop && n < limit) {
    const b0 = body[i] as number;
    const b1 = body[i + 1] as number;
    const b2 = body[i + 2] as number;
    const b3 = body[i + 3] as number;
    // d1..d3: whether the value goes on to b1..b3 (digits only: "-" is b0 or refused).
    const d1 = DIGIT[b1] as number;
    const d2 = d1 & (DIGIT[b2] as number);
    const d3 = d2 & (DIGIT[b3] as number);
    const neg = SIGN[b0] as number;
    let v = DIGIT_VALUE[b0] as number;
    v += d1 * (v * 9 + (DIGIT_VALUE[b1] as number));
    v += d2 * (v * 9 + (DIGIT_VALUE[b2] as number));
    v += d3 * (v * 9 + (DIGIT_VALUE[b3] as number));
    const end = i + 1 + d1 + d2 + d3;
    bad |=
      (NOT_START[b0] as number) |
      // "-" without a digit (four digits are out of range, or have a leading zero)
      (neg & (d1 ^ 1)) |
      // a leading zero
      ((ZERO_DIGIT[b0] as number) & d1) |
      (neg & (ZERO_DIGIT[b1] as number) & d2) |
      // out of range: 255, or 128 after "-"
      ((255 - 127 * neg - v) >>> 31) |
      (NOT_END[body[end] as number] as number);
    // A Buffer keeps the low 8 bits: -1 becomes 255, as `& 0xFF` would.
    out[n++] = (v ^ -neg) + neg;
    i = end + 1;
  }
  return bad === 0 ? compactTail(body, from, i, close, out, n, limit) : -1;
}

/**
 * decodeCompact from `i` (value number `n`) on, one checked read at a time: the values too close
 * to the end of the body for 4-byte reads, and any past `limit` (counted only). A function of its
 * own: its loop, which a chunk answer never needs, would have decodeCompact's optimised code
 * thrown away each time it met a value of a new kind there.
 */
function compactTail(
  body: Buffer,
  from: number,
  i: number,
  close: number,
  out: Buffer,
  n: number,
  limit: number,
): number {
  while (i < close) {
    const neg = body[i] === MINUS ? 1 : 0;
    const first = i + neg;
    let j = first;
    let v = 0;
    for (let d = body[j] as number; j < close && isDigitByte(d); d = body[++j] as number)
      v = v * 10 + d - ZERO;
    const digits = j - first;
    if (digits === 0 || digits > 3 || (digits > 1 && body[first] === ZERO)) return -1;
    if (v > (neg === 1 ? 128 : 255) || (j !== close && body[j] !== COMMA)) return -1;
    if (n < limit) out[n] = neg === 1 ? -v : v;
    n++;
    i = j + 1;
  }
  // Past the `]`; at `close` only if the array is empty ("[]") or ends in a comma ("[1,]").
  return i === close + 1 || (i === from && i === close) ? n : -1;
}

/**
 * decodeValues for any array JSON allows, one byte read per step, no calls on the way. A miss
 * leaves through valueMiss, whose message is built there: with the messages built in the loop
 * (template strings over its locals) TurboFan's code ran 3.7× slower (1.45 ms against 0.39 ms
 * for a 64 KiB chunk on this machine).
 */
export function decodeExact(
  body: Buffer,
  from: number,
  out: Buffer,
  limit: number,
): { end: number; count: number } {
  const len = body.length;
  let i = from;
  let n = 0;
  // -1 past the end, so every comparison below fails there.
  let c = i < len ? (body[i] as number) : -1;
  while (c === 0x20 || c === 0x0a || c === 0x0d || c === 0x09)
    c = ++i < len ? (body[i] as number) : -1;
  if (c === CLOSE_BRACKET) return { end: i + 1, count: 0 };
  for (;;) {
    while (c === 0x20 || c === 0x0a || c === 0x0d || c === 0x09)
      c = ++i < len ? (body[i] as number) : -1;
    const negative = c === MINUS;
    if (negative) c = ++i < len ? (body[i] as number) : -1;
    let v = c - ZERO;
    if (v < 0 || v > 9) return valueMiss(body, i, n, 'digit');
    c = ++i < len ? (body[i] as number) : -1;
    let d = c - ZERO;
    if (d >= 0 && d <= 9) {
      if (v === 0) return valueMiss(body, i, n, 'leading zero');
      v = v * 10 + d;
      c = ++i < len ? (body[i] as number) : -1;
      d = c - ZERO;
      if (d >= 0 && d <= 9) {
        v = v * 10 + d;
        c = ++i < len ? (body[i] as number) : -1;
        d = c - ZERO;
        if (d >= 0 && d <= 9) return valueMiss(body, i, n, 'digits');
      }
    }
    if (c === 0x2e || c === 0x65 || c === 0x45) return valueMiss(body, i, n, 'fraction');
    if (negative ? v > 128 : v > 255) return valueMiss(body, i, n, negative ? -v : v);
    // A Buffer keeps the low 8 bits: -1 becomes 255, as `& 0xFF` would.
    if (n < limit) out[n] = negative ? -v : v;
    n++;
    while (c === 0x20 || c === 0x0a || c === 0x0d || c === 0x09)
      c = ++i < len ? (body[i] as number) : -1;
    if (c === COMMA) {
      c = ++i < len ? (body[i] as number) : -1;
      continue;
    }
    if (c === CLOSE_BRACKET) return { end: i + 1, count: n };
    return valueMiss(body, i, n - 1, 'separator');
  }
}

/** Why decodeValues stopped at `at` (value number `n`): a value out of range, or what it saw. */
type ValueMissReason = 'digit' | 'leading zero' | 'digits' | 'fraction' | 'separator' | number;

function valueMiss(body: Buffer, at: number, n: number, reason: ValueMissReason): never {
  const expected =
    typeof reason === 'number'
      ? `a byte in bytes[${n}] (-128..255), found ${reason}`
      : reason === 'digit'
        ? `a digit in bytes[${n}], found ${describe(body, at)}`
        : reason === 'leading zero'
          ? `"," or "]" after bytes[${n}] (no leading zeros)`
          : reason === 'digits'
            ? `a byte in bytes[${n}] (at most 3 digits)`
            : reason === 'fraction'
              ? `an integer in bytes[${n}] (no fraction or exponent)`
              : `"," or "]" after bytes[${n}], found ${describe(body, at)}`;
  throw new Miss(at, expected);
}

/** The body with the decoded array replaced by `[]`, as text for JSON.parse. */
export function bodyWithoutBytes(body: Buffer, found: ChunkArray): string {
  return `${body.toString('utf8', 0, found.start)}[]${body.toString('utf8', found.end)}`;
}
