// Property tests of the signed-patch checks (services/update/patch-trust.ts): a manifest made by
// manifestText for any file set passes checkFiles against those files, and any single change —
// a byte, a size, an extra or missing file, a renamed path — fails; parseManifest refuses
// anything it cannot use with a PatchTrustError and nothing else; a signature by signManifest
// verifies with its key among others, and any bit flip of manifest or signature fails.
import assert from 'node:assert/strict';
import { createHash, generateKeyPairSync } from 'node:crypto';
import { test } from 'node:test';
import fc from 'fast-check';
import {
  checkFiles,
  checkManifest,
  checkSignature,
  MANIFEST_FILE,
  manifestText,
  parseManifest,
  PatchTrustError,
  publicKeyToBase64,
  SIGNATURE_FILE,
  signManifest,
  type PatchManifest,
} from '../../services/update/patch-trust.ts';

const sha256 = (b: Uint8Array) => createHash('sha256').update(b).digest('hex');

const segment = fc.stringMatching(/^[A-Za-z0-9._-]{1,8}$/).filter((s) => s !== '.' && s !== '..');
const path = fc
  .array(segment, { minLength: 1, maxLength: 3 })
  .map((parts) => parts.join('/'))
  .filter((p) => p !== MANIFEST_FILE && p !== SIGNATURE_FILE);

/** A patch's files: path → content. */
const fileSet = fc
  .uniqueArray(fc.tuple(path, fc.uint8Array({ maxLength: 64 })), {
    maxLength: 8,
    selector: ([p]) => p,
  })
  .map((entries) => new Map(entries.map(([p, c]) => [p, Buffer.from(c)])));

type Actual = Map<string, { size: number; sha256: string }>;
const actualOf = (files: ReadonlyMap<string, Buffer>): Actual =>
  new Map([...files].map(([p, c]) => [p, { size: c.length, sha256: sha256(c) }]));

const RELEASE = {
  versionNum: 'V1.8',
  versionCode: 'c0de18',
  counter: 7,
  expires: '2099-01-31T00:00:00Z',
};

/** The manifest a release tool writes for `files`, parsed back as the agent reads it. */
function manifestFor(files: ReadonlyMap<string, Buffer>): PatchManifest {
  const listed = [...actualOf(files)].map(([p, a]) => ({ path: p, ...a }));
  return parseManifest(Buffer.from(manifestText({ ...RELEASE, files: listed })));
}

test('a manifest made by manifestText for any file set passes checkManifest and checkFiles', () => {
  fc.assert(
    fc.property(fileSet, (files) => {
      const m = manifestFor(files);
      checkManifest(m, { ...RELEASE, counterAbove: 6, now: new Date('2030-01-01T00:00:00Z') });
      checkFiles(m, actualOf(files));
    }),
    { numRuns: 300 },
  );
});

type Change =
  | { kind: 'byte'; file: number; at: number; xor: number }
  | { kind: 'size'; file: number; delta: number }
  | { kind: 'extra'; path: string; content: Uint8Array }
  | { kind: 'missing'; file: number }
  | { kind: 'renamed'; file: number; to: string };

const change: fc.Arbitrary<Change> = fc.oneof(
  fc.record({
    kind: fc.constant('byte' as const),
    file: fc.nat(),
    at: fc.nat(),
    xor: fc.integer({ min: 1, max: 255 }),
  }),
  fc.record({
    kind: fc.constant('size' as const),
    file: fc.nat(),
    delta: fc.integer({ min: -5, max: 5 }).filter((d) => d !== 0),
  }),
  fc.record({
    kind: fc.constant('extra' as const),
    path,
    content: fc.uint8Array({ maxLength: 8 }),
  }),
  fc.record({ kind: fc.constant('missing' as const), file: fc.nat() }),
  fc.record({
    kind: fc.constant('renamed' as const),
    file: fc.nat(),
    to: fc.oneof(path, fc.constant('UPPER')),
  }),
);

/** The files as found after `c`, or undefined if `c` cannot apply to this set. */
function changed(files: ReadonlyMap<string, Buffer>, c: Change): Actual | undefined {
  const actual = actualOf(files);
  const paths = [...files.keys()];
  const pick = (n: number) => paths[n % Math.max(1, paths.length)];
  switch (c.kind) {
    case 'byte': {
      const p = pick(c.file);
      const content = p === undefined ? undefined : files.get(p);
      if (p === undefined || content === undefined || content.length === 0) return undefined;
      const copy = Buffer.from(content);
      const i = c.at % copy.length;
      copy[i] = (copy[i] ?? 0) ^ c.xor;
      actual.set(p, { size: copy.length, sha256: sha256(copy) });
      return actual;
    }
    case 'size': {
      const p = pick(c.file);
      const a = p === undefined ? undefined : actual.get(p);
      if (p === undefined || a === undefined || a.size + c.delta < 0) return undefined;
      actual.set(p, { ...a, size: a.size + c.delta });
      return actual;
    }
    case 'extra':
      if (files.has(c.path)) return undefined;
      actual.set(c.path, { size: c.content.length, sha256: sha256(c.content) });
      return actual;
    case 'missing': {
      const p = pick(c.file);
      if (p === undefined) return undefined;
      actual.delete(p);
      return actual;
    }
    case 'renamed': {
      const p = pick(c.file);
      const a = p === undefined ? undefined : actual.get(p);
      const to = c.to === 'UPPER' && p !== undefined ? p.toUpperCase() : c.to;
      if (p === undefined || a === undefined || to === p || files.has(to)) return undefined;
      actual.delete(p);
      actual.set(to, a);
      return actual;
    }
  }
}

test('any single change of the files — a byte, a size, an extra, a missing or a renamed file — fails checkFiles', () => {
  fc.assert(
    fc.property(fileSet, change, (files, c) => {
      const actual = changed(files, c);
      fc.pre(actual !== undefined);
      const m = manifestFor(files);
      assert.throws(
        () => checkFiles(m, actual),
        (err: unknown) => err instanceof PatchTrustError && /^files: /.test(err.message),
      );
    }),
    { numRuns: 1000 },
  );
});

/** The bytes of a manifest a release tool writes. */
const validManifest = fileSet.map((files) =>
  Buffer.from(
    manifestText({
      ...RELEASE,
      files: [...actualOf(files)].map(([p, a]) => ({ path: p, ...a })),
    }),
  ),
);

// JSON shaped like a manifest, each field right or anything else.
const anything = fc.jsonValue({ maxDepth: 3 });
const fileEntry = fc.oneof(
  anything,
  fc.record(
    {
      path: fc.oneof(
        path,
        anything,
        fc.constantFrom('../x', '/x', 'a\\b', 'C:/x', '', 'a//b', MANIFEST_FILE),
      ),
      sha256: fc.oneof(fc.stringMatching(/^[0-9a-f]{64}$/), anything),
      size: fc.oneof(fc.nat(), anything),
    },
    { requiredKeys: [] },
  ),
);
const manifestLike = fc.record(
  {
    format: fc.oneof(fc.constant(1), anything),
    versionNum: fc.oneof(fc.constant('V1.8'), anything),
    versionCode: fc.oneof(fc.constant('c0de'), anything),
    counter: fc.oneof(fc.nat(), anything),
    expires: fc.oneof(fc.constant('2099-01-01T00:00:00Z'), anything),
    files: fc.oneof(fc.array(fileEntry, { maxLength: 4 }), anything),
  },
  { requiredKeys: [] },
);

test('parseManifest never throws anything but PatchTrustError, and what it accepts is well-formed', () => {
  const input = fc.oneof(
    validManifest,
    manifestLike.map((m) => Buffer.from(JSON.stringify(m))),
    anything.map((v) => Buffer.from(JSON.stringify(v))),
    fc.uint8Array({ maxLength: 200 }).map((b) => Buffer.from(b)),
  );
  let accepted = 0;
  fc.assert(
    fc.property(input, (bytes) => {
      let m: PatchManifest;
      try {
        m = parseManifest(bytes);
      } catch (err) {
        assert.ok(err instanceof PatchTrustError, String(err));
        assert.ok(err.message.startsWith(`${MANIFEST_FILE}: `), err.message);
        return;
      }
      assert.equal(m.format, 1);
      assert.ok(Number.isSafeInteger(m.counter) && m.counter >= 0);
      assert.ok(!Number.isNaN(Date.parse(m.expires)));
      const seen = new Set<string>();
      for (const f of m.files) {
        assert.ok(!f.path.split('/').some((s) => s === '' || s === '.' || s === '..'), f.path);
        assert.ok(!f.path.includes('\\') && !/^[A-Za-z]:/.test(f.path), f.path);
        assert.ok(!seen.has(f.path));
        seen.add(f.path);
        assert.match(f.sha256, /^[0-9a-f]{64}$/);
        assert.ok(Number.isSafeInteger(f.size) && f.size >= 0);
      }
      accepted++;
    }),
    { numRuns: 2000 },
  );
  assert.ok(accepted > 0, 'some inputs were accepted');
});

const KEYS = Array.from({ length: 3 }, () => generateKeyPairSync('ed25519'));
const PUBLIC = KEYS.map((k) => publicKeyToBase64(k.publicKey));

const manifestBytes = fc.oneof(
  validManifest,
  fc.uint8Array({ minLength: 1, maxLength: 300 }).map((b) => Buffer.from(b)),
);

test('a signature by signManifest verifies, and names the key that made it', () => {
  fc.assert(
    fc.property(manifestBytes, fc.nat(2), (bytes, k) => {
      const sig = signManifest(bytes, (KEYS[k] as (typeof KEYS)[number]).privateKey);
      assert.equal(checkSignature(bytes, sig, PUBLIC), k);
      assert.equal(checkSignature(bytes, `${sig}\n`, PUBLIC), k, 'a final line break is fine');
    }),
    { numRuns: 200 },
  );
});

test('any bit flip of the manifest or of the signature fails the check', () => {
  fc.assert(
    fc.property(manifestBytes, fc.nat(2), fc.boolean(), fc.nat(), (bytes, k, inSignature, bit) => {
      const sig = signManifest(bytes, (KEYS[k] as (typeof KEYS)[number]).privateKey);
      let m = bytes;
      let s = sig;
      if (inSignature) {
        const raw = Buffer.from(sig, 'base64');
        const i = (bit >> 3) % raw.length;
        raw[i] = (raw[i] ?? 0) ^ (1 << (bit & 7));
        s = raw.toString('base64');
      } else {
        m = Buffer.from(bytes);
        const i = (bit >> 3) % m.length;
        m[i] = (m[i] ?? 0) ^ (1 << (bit & 7));
      }
      assert.throws(
        () => checkSignature(m, s, PUBLIC),
        (err: unknown) =>
          err instanceof PatchTrustError &&
          err.message ===
            `${SIGNATURE_FILE}: not a signature by any of the 3 key(s) in [security] patch_keys`,
      );
    }),
    { numRuns: 300 },
  );
});
