// `boxkeeper install --file PATCH.zip`: a patch from a file instead of the cloud, for a box with
// no link. It is staged where a download would have put it (patch/<V>/<code>.zip) and given to
// the update cycle as a one-version list; the cycle then "downloads" it (finds the zip with its
// MD5), admits it (signature rules of docs/security.md) and installs it with the usual backup,
// health gate and rollback.
import { join } from 'node:path';
import type { PatchFs } from '../../adapters/patch-fs.ts';
import type { PatchInfo } from '../../machines/patch.machine.ts';
import { MANIFEST_FILE, parseManifest, PatchTrustError } from './patch-trust.ts';

export interface LocalPatchDeps {
  fs: PatchFs;
  /** One entry of a zip (null when absent); throws when the file is not a readable zip. */
  readZipEntry(zip: string, name: string, maxBytes: number): Promise<Buffer | null>;
  patchDir: string;
}

export class LocalPatchError extends Error {
  constructor(file: string, why: string) {
    super(`${file}: ${why}`);
    this.name = 'LocalPatchError';
  }
}

const SAFE_SEGMENT = /^[A-Za-z0-9._-]{1,64}$/;
const MANIFEST_MAX_BYTES = 4 * 1024 * 1024;

/**
 * Where the version number and code come from: a signed patch's manifest names both (and they
 * must agree with --version-num / --version-code when given); an unsigned one needs
 * --version-num, and its code is `local-<first 12 hex digits of its MD5>`.
 */
export async function stageLocalPatch(
  file: string,
  given: { versionNum?: string; versionCode?: string },
  deps: LocalPatchDeps,
): Promise<PatchInfo> {
  const manifestBytes = await deps.readZipEntry(file, MANIFEST_FILE, MANIFEST_MAX_BYTES);
  let fromManifest: { versionNum: string; versionCode: string } | undefined;
  if (manifestBytes !== null) {
    try {
      const m = parseManifest(manifestBytes);
      fromManifest = { versionNum: m.versionNum, versionCode: m.versionCode };
    } catch (err) {
      if (!(err instanceof PatchTrustError)) throw err;
      throw new LocalPatchError(file, `its ${MANIFEST_FILE} is not valid: ${err.message}`);
    }
    for (const key of ['versionNum', 'versionCode'] as const) {
      const want = given[key];
      if (want !== undefined && want !== fromManifest[key])
        throw new LocalPatchError(
          file,
          `its manifest names ${key} ${fromManifest[key]}, not ${want} as given`,
        );
    }
  }
  const md5 = await deps.fs.md5(file);
  const versionNum = fromManifest?.versionNum ?? given.versionNum;
  if (versionNum === undefined)
    throw new LocalPatchError(
      file,
      `an unsigned patch does not say its version; give it with --version-num (e.g. V1.8)`,
    );
  const versionCode = fromManifest?.versionCode ?? given.versionCode ?? `local-${md5.slice(0, 12)}`;
  for (const [what, value] of [
    ['version number', versionNum],
    ['version code', versionCode],
  ] as const) {
    if (!SAFE_SEGMENT.test(value) || value === '.' || value === '..')
      throw new LocalPatchError(
        file,
        `${what} "${value}" must be 1–64 letters, digits, ".", "_" or "-"`,
      );
  }
  const dir = join(deps.patchDir, versionNum);
  await deps.fs.mkdir(dir);
  await deps.fs.copyFileAtomic(file, join(dir, `${versionCode}.zip`));
  return {
    versionNum,
    versionCode,
    fileMd5: md5,
    remark: `installed from ${file}`,
    argumentConfigMap: {},
  };
}
