// Corpus: signed-patch manifests (docs/security.md), through the real admission path: a patch
// zip in the box's patch dir (its MD5 as announced, so nothing is downloaded) goes through
// BoxUpdateEffects.downloadPatch with [security] patch_keys set, which extracts it and runs
// checkSignature, parseManifest, checkManifest and checkFiles (services/update/patch-trust.ts). A bad
// manifest or signature is a PatchTrustError naming the file and field; as documented, the
// refused patch is deleted (zip and extraction) and nothing else changes. The TUF attacks
// (unsigned, other key, tampered, unlisted or missing file, expired, swapped versionCode,
// replayed counter) are in test/e2e/signed-patches.test.ts; these are malformed manifests.
import { createHash, generateKeyPairSync, sign } from 'node:crypto';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { ZipFile } from 'yazl';
import type { CloudApi } from '../../adapters/cloud-client.ts';
import { createLogger } from '../../adapters/logger.ts';
import { nodePatchFs } from '../../adapters/patch-fs.ts';
import { noRegistry } from '../../adapters/registry.ts';
import { extractZipSafely } from '../../adapters/zip.ts';
import {
  MANIFEST_FILE,
  PatchTrustError,
  publicKeyToBase64,
  SIGNATURE_FILE,
} from '../../services/update/patch-trust.ts';
import { loadSettings } from '../../services/agent/settings.ts';
import { BoxUpdateEffects } from '../../services/update/update-effects.ts';
import { runCorpus, type CorpusCase, type Tree } from './runner.ts';

const KEYS = generateKeyPairSync('ed25519');
const VERSION = { versionNum: 'V1.8', versionCode: 'c0de18' };

const FILES: Record<string, Buffer> = {
  'icb-box.jar': Buffer.from('PK the jar of V1.8'),
  'data/db_update.sql': Buffer.from('BEGIN; COMMIT;\n'),
};
const sha256 = (b: Buffer) => createHash('sha256').update(b).digest('hex');
const listed = (path: string, b: Buffer) => ({ path, sha256: sha256(b), size: b.length });

type Manifest = Record<string, unknown> & { files: Array<Record<string, unknown>> };

/** A manifest that passes every check. */
function goodManifest(): Manifest {
  return {
    format: 1,
    ...VERSION,
    counter: 10,
    expires: new Date(Date.now() + 24 * 3600 * 1000).toISOString(),
    files: Object.entries(FILES).map(([p, b]) => listed(p, b)),
  };
}

interface ManifestCase extends CorpusCase {
  /** The manifest's bytes: a change of the good one, or text. */
  manifest?: ((m: Manifest) => void) | string;
  /** The signature file's content, from the signature of the manifest's bytes (base64). */
  signature?: (good: string, manifestBytes: Buffer) => string | Buffer;
  /** The zip's files besides the manifest and signature (default FILES). */
  files?: Record<string, Buffer>;
}

const MAN = MANIFEST_FILE.replaceAll('.', '\\.');
const SIG = SIGNATURE_FILE.replaceAll('.', '\\.');
const refused = (why: string) =>
  new RegExp(`^refused V1\\.8 \\(c0de18\\): ${why}; the patch was deleted$`);

export const MANIFEST_CASES: readonly ManifestCase[] = [
  // ---- the signature file (checkSignature)
  {
    name: 'signature: not base64',
    signature: () => 'signed by the release team',
    expect: refused(`${SIG}: expected standard base64 of 64 bytes`),
  },
  {
    name: 'signature: base64 of 63 bytes',
    signature: (good) => Buffer.from(good, 'base64').subarray(1).toString('base64'),
    expect: refused(`${SIG}: expected standard base64 of 64 bytes`),
  },
  {
    name: 'signature: the raw 64 bytes instead of base64',
    signature: (good) => Buffer.from(good, 'base64'),
    expect: refused(`${SIG}: expected standard base64 of 64 bytes`),
  },
  {
    name: 'signature: base64url',
    signature: (good) => Buffer.from(good, 'base64').toString('base64url'),
    expect: refused(`${SIG}: expected standard base64 of 64 bytes`),
  },
  {
    name: 'signature: empty',
    signature: () => '',
    expect: refused(`${SIG}: expected standard base64 of 64 bytes`),
  },
  {
    name: 'signature: one bit flipped',
    signature: (good) => {
      const b = Buffer.from(good, 'base64');
      b[10] = (b[10] ?? 0) ^ 0x01;
      return b.toString('base64');
    },
    expect: refused(
      `${SIG}: not a signature by any of the 1 key\\(s\\) in \\[security\\] patch_keys`,
    ),
  },
  {
    name: 'signature: the manifest changed after signing (one blank added)',
    signature: (_good, bytes) =>
      sign(null, bytes.subarray(0, bytes.length - 1), KEYS.privateKey).toString('base64'),
    expect: refused(
      `${SIG}: not a signature by any of the 1 key\\(s\\) in \\[security\\] patch_keys`,
    ),
  },
  // ---- the manifest's shape (parseManifest), signed as it is
  {
    name: 'manifest: not JSON',
    manifest: '{"format": 1, "versionNum": "V1.8",',
    expect: refused(`${MAN}: not JSON \\(.*\\)`),
  },
  {
    name: 'manifest: a JSON array',
    manifest: '[1, "V1.8", "c0de18"]',
    expect: refused(`${MAN}: expected a JSON object`),
  },
  {
    name: 'manifest: format 2',
    manifest: (m) => {
      m.format = 2;
    },
    expect: refused(`${MAN}: format: expected 1, got 2`),
  },
  {
    name: 'manifest: format "1" as a string',
    manifest: (m) => {
      m.format = '1';
    },
    expect: refused(`${MAN}: format: expected 1, got "1"`),
  },
  {
    // JSON.stringify of the bad value for the message overflowed: a RangeError, not a refusal.
    name: 'manifest: format nested 100,000 levels deep',
    manifest: JSON.stringify({ ...goodManifest(), format: '@DEEP@' }).replace(
      '"@DEEP@"',
      '['.repeat(100_000) + ']'.repeat(100_000),
    ),
    expect: refused(`${MAN}: format: expected 1, got \\(nested too deeply to show\\)`),
  },
  {
    name: 'manifest: versionNum missing',
    manifest: (m) => {
      delete m.versionNum;
    },
    expect: refused(`${MAN}: versionNum: expected a non-empty string`),
  },
  {
    name: 'manifest: versionCode empty',
    manifest: (m) => {
      m.versionCode = '';
    },
    expect: refused(`${MAN}: versionCode: expected a non-empty string`),
  },
  {
    name: 'manifest: counter negative',
    manifest: (m) => {
      m.counter = -1;
    },
    expect: refused(`${MAN}: counter: expected a whole number ≥ 0, got -1`),
  },
  {
    name: 'manifest: counter a fraction',
    manifest: (m) => {
      m.counter = 10.5;
    },
    expect: refused(`${MAN}: counter: expected a whole number ≥ 0, got 10\\.5`),
  },
  {
    name: 'manifest: counter a string',
    manifest: (m) => {
      m.counter = '11';
    },
    expect: refused(`${MAN}: counter: expected a whole number ≥ 0, got "11"`),
  },
  {
    name: 'manifest: counter beyond an exact integer',
    manifest: (m) => {
      m.counter = 1e300;
    },
    expect: refused(`${MAN}: counter: expected a whole number ≥ 0, got 1e\\+300`),
  },
  {
    name: 'manifest: expires in words',
    manifest: (m) => {
      m.expires = 'next year';
    },
    expect: refused(`${MAN}: expires: expected an ISO 8601 UTC time .*, got "next year"`),
  },
  {
    name: 'manifest: expires without a zone (local time)',
    manifest: (m) => {
      m.expires = '2099-01-31T00:00:00';
    },
    expect: refused(`${MAN}: expires: expected an ISO 8601 UTC time .*, got "2099-01-31T00:00:00"`),
  },
  {
    name: 'manifest: expires on a day that does not exist',
    manifest: (m) => {
      m.expires = '2099-13-45T00:00:00Z';
    },
    expect: refused(
      `${MAN}: expires: expected an ISO 8601 UTC time .*, got "2099-13-45T00:00:00Z"`,
    ),
  },
  {
    name: 'manifest: files an object',
    manifest: (m) => {
      (m as Record<string, unknown>).files = { 'icb-box.jar': m.files[0] };
    },
    expect: refused(`${MAN}: files: expected an array`),
  },
  {
    name: 'manifest: a file entry null',
    manifest: (m) => {
      (m.files as unknown[]).push(null);
    },
    expect: refused(`${MAN}: files\\[2\\]\\.path: expected a relative path with '/', got nothing`),
  },
  {
    name: 'manifest: a path with ..',
    manifest: (m) => {
      m.files.push(listed('data/../../evil.sql', Buffer.from('x')));
    },
    expect: refused(
      `${MAN}: files\\[2\\]\\.path: expected a relative path with '/', got "data/\\.\\./\\.\\./evil\\.sql"`,
    ),
  },
  {
    name: 'manifest: an absolute path',
    manifest: (m) => {
      m.files.push(listed('/etc/cron.d/evil', Buffer.from('x')));
    },
    expect: refused(
      `${MAN}: files\\[2\\]\\.path: expected a relative path with '/', got "/etc/cron\\.d/evil"`,
    ),
  },
  {
    name: 'manifest: a path with backslashes',
    manifest: (m) => {
      m.files.push(listed('data\\db_update.sql', Buffer.from('x')));
    },
    expect: refused(
      `${MAN}: files\\[2\\]\\.path: expected a relative path with '/', got "data\\\\\\\\db_update\\.sql"`,
    ),
  },
  {
    name: 'manifest: a drive path',
    manifest: (m) => {
      m.files.push(listed('C:/Windows/evil.dll', Buffer.from('x')));
    },
    expect: refused(
      `${MAN}: files\\[2\\]\\.path: expected a relative path with '/', got "C:/Windows/evil\\.dll"`,
    ),
  },
  {
    name: 'manifest: a path listed twice',
    manifest: (m) => {
      m.files.push({ ...m.files[0] });
    },
    expect: refused(`${MAN}: files\\[2\\]\\.path: icb-box\\.jar is listed twice`),
  },
  {
    name: 'manifest: it lists itself',
    manifest: (m) => {
      m.files.push(listed(MANIFEST_FILE, Buffer.from('x')));
    },
    expect: refused(`${MAN}: files\\[2\\]\\.path: ${MAN} cannot list itself`),
  },
  {
    name: 'manifest: a sha256 in capitals',
    manifest: (m) => {
      const f = m.files[0] as { sha256: string };
      f.sha256 = f.sha256.toUpperCase();
    },
    expect: refused(`${MAN}: files\\[0\\]\\.sha256: expected 64 lowercase hex digits`),
  },
  {
    name: 'manifest: an MD5 where the sha256 goes',
    manifest: (m) => {
      (m.files[0] as { sha256: string }).sha256 = 'cd9f1d57fd7b792587d29e7826f4df0e';
    },
    expect: refused(`${MAN}: files\\[0\\]\\.sha256: expected 64 lowercase hex digits`),
  },
  {
    name: 'manifest: a size negative',
    manifest: (m) => {
      (m.files[0] as { size: number }).size = -1;
    },
    expect: refused(`${MAN}: files\\[0\\]\\.size: expected a whole number of bytes ≥ 0`),
  },
  {
    name: 'manifest: a size as a string',
    manifest: (m) => {
      (m.files[0] as Record<string, unknown>).size = '18';
    },
    expect: refused(`${MAN}: files\\[0\\]\\.size: expected a whole number of bytes ≥ 0`),
  },
  {
    name: 'manifest: seven problems at once, five named',
    manifest: (m) => {
      Object.assign(m, { format: 0, versionNum: 1, versionCode: 2, counter: -3, expires: 4 });
      m.files = 'none' as unknown as Manifest['files'];
    },
    expect: refused(
      `${MAN}: format: expected 1, got 0; versionNum: .*; versionCode: .*; counter: .*; expires: .*; and 1 more`,
    ),
  },
  {
    // The whole name went into the message.
    name: 'manifest: a path of 100,000 characters listed twice',
    manifest: (m) => {
      const long = listed(`data/${'a'.repeat(100_000)}.sql`, Buffer.from('x'));
      m.files.push(long, { ...long });
    },
    expect: refused(`${MAN}: files\\[3\\]\\.path: data/a{115}… is listed twice`),
  },
  {
    name: 'manifest: a versionNum of 100,000 characters',
    manifest: (m) => {
      m.versionNum = `V${'9'.repeat(100_000)}`;
    },
    expect: refused(
      'the manifest is for V9{119}… \\(c0de18\\), the cloud announced V1\\.8 \\(c0de18\\)',
    ),
  },
  // ---- the files against the list (checkFiles): renamed paths
  {
    name: 'files: the zip has a path the manifest spells in other case',
    manifest: (m) => {
      (m.files[0] as { path: string }).path = 'ICB-box.jar';
    },
    expect: refused(
      'files: ICB-box\\.jar is listed but missing; icb-box\\.jar is not listed in the manifest',
    ),
  },
  {
    name: 'files: a file listed at the root, found in a directory',
    manifest: (m) => {
      (m.files[1] as { path: string }).path = 'db_update.sql';
    },
    expect: refused(
      'files: db_update\\.sql is listed but missing; data/db_update\\.sql is not listed in the manifest',
    ),
  },
];

// ---- the box, and the admission path -----------------------------------------------------------

const logger = createLogger({ level: 'fatal', console: 'none' }).logger;
const notUsed = (what: string) => () =>
  Promise.reject(new Error(`${what}: not used by downloadPatch`));
const noCloud: CloudApi = {
  token: notUsed('cloud'),
  refreshToken: notUsed('cloud'),
  checkVersion: notUsed('cloud'),
  downloadFile: notUsed('cloud'),
  heartbeat: notUsed('cloud'),
  setTaskStatus: notUsed('cloud'),
};

const SETTINGS = (box: string, key: string) => `[general]
host_addr = https://cloud.example
env = uat
logging = info
log_expiration = 30
debug_mode = off

[paths]
box_root = ${box}
config = \\conf\\configuration.ini
patch = \\patch
patchmeta = \\patch.meta
backup = \\backup
fs = \\FreeSWITCH
fs_conf = \\conf
java = \\java
java_pid = \\pid.txt
jar = \\icb-box.jar
app_yml = \\application.yml
path_bat = \\start.bat
data = \\data

[timer]
heartbeat = 30
versionCheck = 3600

[security]
patch_keys = ${key}
`;

function zipOf(files: Record<string, Buffer>): Promise<Buffer> {
  const z = new ZipFile();
  for (const [name, data] of Object.entries(files)) z.addBuffer(data, name, { compress: false });
  z.end();
  return new Promise((resolve) => {
    const chunks: Buffer[] = [];
    z.outputStream.on('data', (c: Buffer) => chunks.push(c));
    z.outputStream.on('end', () => resolve(Buffer.concat(chunks)));
  });
}

interface Prepared {
  box: string;
  zip: string;
  md5: string;
}

runCorpus<ManifestCase, Prepared>({
  kind: 'signed-patch manifests',
  cases: MANIFEST_CASES,
  async prepare(c, dir) {
    const box = join(dir, 'box');
    for (const d of ['settings', 'conf', 'boxkeeper', 'patch/V1.8'])
      await mkdir(join(box, d), { recursive: true });
    await writeFile(
      join(box, 'settings', 'settings.ini'),
      SETTINGS(box, publicKeyToBase64(KEYS.publicKey)),
    );
    await writeFile(join(box, 'conf', 'configuration.ini'), '[QTHZ]\nversion = V1.7\n');
    await writeFile(join(box, 'icb-box.jar'), 'PK the jar of V1.7');
    // The last installed signed patch had counter 5.
    await writeFile(
      join(box, 'boxkeeper', 'patch-counter.json'),
      JSON.stringify({
        installed: {
          counter: 5,
          versionNum: 'V1.7',
          versionCode: 'c0de17',
          backup: null,
          previous: null,
        },
        applying: null,
      }),
    );
    let manifest: Buffer;
    if (typeof c.manifest === 'string') manifest = Buffer.from(c.manifest);
    else {
      const m = goodManifest();
      c.manifest?.(m);
      manifest = Buffer.from(JSON.stringify(m, null, 2) + '\n');
    }
    const good = sign(null, manifest, KEYS.privateKey).toString('base64');
    const signature = c.signature?.(good, manifest) ?? good;
    const bytes = await zipOf({
      ...(c.files ?? FILES),
      [MANIFEST_FILE]: manifest,
      [SIGNATURE_FILE]: Buffer.from(signature),
    });
    const zip = join(box, 'patch', 'V1.8', `${VERSION.versionCode}.zip`);
    await writeFile(zip, bytes);
    return { box, zip, md5: createHash('md5').update(bytes).digest('hex') };
  },
  async run(_c, _dir, p) {
    const { settings } = await loadSettings(join(p.box, 'settings', 'settings.ini'), {
      readFile: (f) => readFile(f),
      registry: noRegistry,
      platform: 'linux',
    });
    const effects = new BoxUpdateEffects({
      settings,
      cloud: noCloud,
      fs: nodePatchFs,
      sqlite: { open: notUsed('sqlite') },
      extractZip: (zip, dest) => extractZipSafely(zip, dest),
      snapshots: notUsed('snapshots'),
      services: {
        stopAll: notUsed('services'),
        startAll: notUsed('services'),
        releaseAll: () => Promise.resolve(),
        isRunning: notUsed('services'),
      },
      unfinishedTasks: notUsed('tasks'),
      pausedTasks: notUsed('tasks'),
      fsCli: { run: notUsed('fs_cli') },
      logger,
      agentVersion: '0.0.0',
    });
    await effects.downloadPatch(
      { ...VERSION, fileMd5: p.md5, argumentConfigMap: {} },
      new AbortController().signal,
    );
    return undefined;
  },
  errorTypes: [PatchTrustError],
  subject: () => `refused V1.8 (${VERSION.versionCode})`,
  // Documented: a refused patch is deleted, zip and extraction; the box is untouched.
  after(before: Tree) {
    const out = new Map(before);
    out.delete(`box/patch/V1.8/${VERSION.versionCode}.zip`);
    return out;
  },
});
