// Signed patches (docs/security.md). A patch zip may carry at its root
// `boxkeeper.manifest.json` (versionNum, versionCode, counter, expiry, every other file's size and
// sha256) and `boxkeeper.manifest.sig` (base64 Ed25519 signature over the manifest's exact
// bytes). With `[security] patch_keys` set, a patch is installed only when that signature is by
// one of the keys and everything the manifest says holds. The format is a contract other tools
// produce: keep it stable.
import type { KeyObject } from 'node:crypto';

// crypto loads when a key is first read: settings.ts (which every command loads) imports this
// module, and crypto is ~30 ms of the start of `status` (docs/benchmarks.md).
const crypto = () => process.getBuiltinModule('node:crypto');

export const MANIFEST_FILE = 'boxkeeper.manifest.json';
export const SIGNATURE_FILE = 'boxkeeper.manifest.sig';
export const MANIFEST_FORMAT = 1;

export interface ManifestFile {
  path: string;
  sha256: string;
  size: number;
}

export interface PatchManifest {
  format: 1;
  versionNum: string;
  versionCode: string;
  counter: number;
  expires: string;
  files: ManifestFile[];
}

/** A refusal: the patch is not installed, and `message` says why (log, status, heartbeat). */
export class PatchTrustError extends Error {
  override name = 'PatchTrustError';
}

const BASE64 = /^[A-Za-z0-9+/]+={0,2}$/;

function decodeBase64(text: string, bytes: number, what: string): Buffer {
  const t = text.trim();
  const buf = BASE64.test(t) ? Buffer.from(t, 'base64') : Buffer.alloc(0);
  if (buf.length !== bytes || buf.toString('base64') !== t)
    throw new PatchTrustError(`${what}: expected standard base64 of ${bytes} bytes`);
  return buf;
}

/** A raw 32-byte Ed25519 public key, base64, as settings.ini and `patch keygen` give it. */
export function publicKeyFromBase64(text: string): KeyObject {
  const raw = decodeBase64(text, 32, 'Ed25519 public key');
  return crypto().createPublicKey({
    key: { kty: 'OKP', crv: 'Ed25519', x: raw.toString('base64url') },
    format: 'jwk',
  });
}

/** `patch_keys`: comma-separated keys; every problem named (for the settings validator). */
export function parsePublicKeys(text: string): { keys: string[]; problems: string[] } {
  const keys: string[] = [];
  const problems: string[] = [];
  for (const [i, part] of text.split(',').entries()) {
    const k = part.trim();
    if (k === '') continue;
    try {
      publicKeyFromBase64(k);
      keys.push(k);
    } catch (err) {
      problems.push(`key ${i + 1}: ${(err as Error).message}`);
    }
  }
  return { keys, problems };
}

export function publicKeyToBase64(key: KeyObject): string {
  const jwk = key.export({ format: 'jwk' });
  if (jwk.crv !== 'Ed25519' || typeof jwk.x !== 'string')
    throw new PatchTrustError('not an Ed25519 key');
  return Buffer.from(jwk.x, 'base64url').toString('base64');
}

/** A private key from PEM (PKCS#8, as `patch keygen` writes it); must be Ed25519. */
export function privateKeyFromPem(pem: string | Buffer, source: string): KeyObject {
  let key: KeyObject;
  try {
    key = crypto().createPrivateKey(pem);
  } catch (err) {
    throw new PatchTrustError(`${source}: not a PEM private key (${(err as Error).message})`);
  }
  if (key.asymmetricKeyType !== 'ed25519')
    throw new PatchTrustError(
      `${source}: an ${key.asymmetricKeyType ?? 'unknown'} key; expected Ed25519`,
    );
  return key;
}

export function signManifest(manifestBytes: Uint8Array, privateKey: KeyObject): string {
  return crypto().sign(null, manifestBytes, privateKey).toString('base64');
}

/** Which of `keys` (base64) signed `manifestBytes`; a refusal otherwise. */
export function checkSignature(
  manifestBytes: Uint8Array,
  signatureText: string,
  keys: readonly string[],
): number {
  const sig = decodeBase64(signatureText, 64, SIGNATURE_FILE);
  const index = keys.findIndex((k) =>
    crypto().verify(null, manifestBytes, publicKeyFromBase64(k), sig),
  );
  if (index < 0)
    throw new PatchTrustError(
      `${SIGNATURE_FILE}: not a signature by any of the ${keys.length} key(s) in [security] patch_keys`,
    );
  return index;
}

/** Text of the manifest for a message, cut to 120 characters. */
function cut(text: string): string {
  return text.length > 120 ? `${text.slice(0, 120)}…` : text;
}

/** A value of the manifest for a message, as JSON (which may overflow on deep nesting), cut. */
function shown(value: unknown): string {
  if (value === undefined) return 'nothing';
  try {
    return cut(JSON.stringify(value));
  } catch {
    return '(nested too deeply to show)';
  }
}

const HEX64 = /^[0-9a-f]{64}$/;
const ISO_UTC = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(:\d{2}(\.\d+)?)?Z$/;

/** A relative '/'-separated path with no empty, '.' or '..' segment. */
function safeRelative(p: string): boolean {
  return (
    p !== '' &&
    !p.includes('\\') &&
    !p.includes('\0') &&
    !/^[A-Za-z]:/.test(p) &&
    p.split('/').every((s) => s !== '' && s !== '.' && s !== '..')
  );
}

/** Parses and validates the manifest's shape; every problem is named by its field. */
export function parseManifest(bytes: Uint8Array): PatchManifest {
  let doc: unknown;
  try {
    doc = JSON.parse(Buffer.from(bytes).toString('utf8'));
  } catch (err) {
    throw new PatchTrustError(`${MANIFEST_FILE}: not JSON (${(err as Error).message})`);
  }
  const problems: string[] = [];
  const m = (typeof doc === 'object' && doc !== null ? doc : {}) as Record<string, unknown>;
  if (typeof doc !== 'object' || doc === null || Array.isArray(doc))
    throw new PatchTrustError(`${MANIFEST_FILE}: expected a JSON object`);
  if (m.format !== MANIFEST_FORMAT)
    problems.push(`format: expected ${MANIFEST_FORMAT}, got ${shown(m.format)}`);
  for (const key of ['versionNum', 'versionCode'] as const) {
    if (typeof m[key] !== 'string' || m[key] === '')
      problems.push(`${key}: expected a non-empty string`);
  }
  if (typeof m.counter !== 'number' || !Number.isSafeInteger(m.counter) || m.counter < 0)
    problems.push(`counter: expected a whole number ≥ 0, got ${shown(m.counter)}`);
  if (
    typeof m.expires !== 'string' ||
    !ISO_UTC.test(m.expires) ||
    Number.isNaN(Date.parse(m.expires))
  )
    problems.push(
      `expires: expected an ISO 8601 UTC time such as 2027-01-31T00:00:00Z, got ${shown(m.expires)}`,
    );
  const files: ManifestFile[] = [];
  if (!Array.isArray(m.files)) {
    problems.push('files: expected an array');
  } else {
    const seen = new Set<string>();
    for (const [i, f] of (m.files as unknown[]).entries()) {
      const e = (typeof f === 'object' && f !== null ? f : {}) as Record<string, unknown>;
      const where = `files[${i}]`;
      const path = e.path;
      if (typeof path !== 'string' || !safeRelative(path)) {
        problems.push(`${where}.path: expected a relative path with '/', got ${shown(path)}`);
        continue;
      }
      if (path === MANIFEST_FILE || path === SIGNATURE_FILE)
        problems.push(`${where}.path: ${path} cannot list itself`);
      if (seen.has(path)) problems.push(`${where}.path: ${cut(path)} is listed twice`);
      seen.add(path);
      if (typeof e.sha256 !== 'string' || !HEX64.test(e.sha256))
        problems.push(`${where}.sha256: expected 64 lowercase hex digits`);
      if (typeof e.size !== 'number' || !Number.isSafeInteger(e.size) || e.size < 0)
        problems.push(`${where}.size: expected a whole number of bytes ≥ 0`);
      files.push({ path, sha256: String(e.sha256), size: Number(e.size) });
    }
  }
  if (problems.length > 0)
    throw new PatchTrustError(
      `${MANIFEST_FILE}: ${problems.slice(0, 5).join('; ')}${problems.length > 5 ? `; and ${problems.length - 5} more` : ''}`,
    );
  return {
    format: 1,
    versionNum: m.versionNum as string,
    versionCode: m.versionCode as string,
    counter: m.counter as number,
    expires: m.expires as string,
    files,
  };
}

export interface ManifestExpectations {
  versionNum: string;
  versionCode: string;
  /** The manifest's counter must be greater (the last installed patch's counter). */
  counterAbove: number | null;
  now: Date;
}

/** What the cloud's entry and the box's history require of a valid manifest. */
export function checkManifest(m: PatchManifest, want: ManifestExpectations): void {
  if (m.versionNum !== want.versionNum || m.versionCode !== want.versionCode)
    throw new PatchTrustError(
      `the manifest is for ${cut(m.versionNum)} (${cut(m.versionCode)}), the cloud announced ${want.versionNum} (${want.versionCode})`,
    );
  if (Date.parse(m.expires) <= want.now.getTime())
    throw new PatchTrustError(`the manifest expired at ${m.expires}`);
  if (want.counterAbove !== null && m.counter <= want.counterAbove)
    throw new PatchTrustError(
      `counter ${m.counter} is not above ${want.counterAbove}, the last installed patch's (an older release replayed?)`,
    );
}

/** The patch's files, as found (path → size and sha256), against the manifest's list. */
export function checkFiles(
  m: PatchManifest,
  actual: ReadonlyMap<string, { size: number; sha256: string }>,
): void {
  const problems: string[] = [];
  const listed = new Set<string>();
  for (const f of m.files) {
    listed.add(f.path);
    const a = actual.get(f.path);
    const name = cut(f.path);
    if (a === undefined) problems.push(`${name} is listed but missing`);
    else if (a.size !== f.size) problems.push(`${name} has ${a.size} bytes, listed ${f.size}`);
    else if (a.sha256 !== f.sha256) problems.push(`${name} does not match its sha256`);
  }
  for (const path of actual.keys()) {
    if (path === MANIFEST_FILE || path === SIGNATURE_FILE) continue;
    if (!listed.has(path)) problems.push(`${cut(path)} is not listed in the manifest`);
  }
  if (problems.length > 0)
    throw new PatchTrustError(
      `files: ${problems.slice(0, 5).join('; ')}${problems.length > 5 ? `; and ${problems.length - 5} more` : ''}`,
    );
}

/** The manifest text for `files` (what `patch pack --key` signs). */
export function manifestText(m: Omit<PatchManifest, 'format'>): string {
  const sorted = [...m.files].sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0));
  return (
    JSON.stringify(
      {
        format: MANIFEST_FORMAT,
        versionNum: m.versionNum,
        versionCode: m.versionCode,
        counter: m.counter,
        expires: m.expires,
        files: sorted,
      },
      null,
      2,
    ) + '\n'
  );
}
