// A snapshot service over a real temp tree with the real adapters.
import {
  mkdir,
  mkdtemp,
  rm,
  writeFile,
  symlink,
  chmod,
  readdir,
  readFile,
  lstat,
  readlink,
} from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, relative, sep } from 'node:path';
import { createLogger } from '../../adapters/logger.ts';
import { SnapshotRepo } from '../../adapters/snapshot-repo.ts';
import { createHashPool } from '../../adapters/hash-pool.ts';
import { freeBytes } from '../../adapters/system.ts';
import { nodeTree } from '../../adapters/tree.ts';
import {
  SnapshotService,
  type SnapshotConfig,
  type SnapshotDeps,
} from '../../services/snapshot/snapshots.ts';

export interface SnapshotFixture {
  root: string;
  box: string;
  repoDir: string;
  service: SnapshotService;
  repo: SnapshotRepo;
  make(overrides?: Partial<SnapshotDeps>): SnapshotService;
  cleanup(): Promise<void>;
}

let counter = 0;

/** The managed paths of the fixture box below. */
export function boxConfig(box: string, retain: number): SnapshotConfig {
  return {
    subscribe: ['icb-box.jar', 'application.yml', 'conf', 'data', 'DOS'].map((p) => join(box, p)),
    exclude: [join(box, 'logs')],
    retain,
  };
}

/** A small box-like tree: app dir with a jar, yml, conf/, data/, DOS/ and a symlink. */
export async function createSnapshotFixture(
  config: Partial<SnapshotConfig> = {},
): Promise<SnapshotFixture> {
  const root = await mkdtemp(join(tmpdir(), 'bk-snap-'));
  const box = join(root, 'box');
  await mkdir(join(box, 'conf'), { recursive: true });
  await mkdir(join(box, 'data', 'nested'), { recursive: true });
  await mkdir(join(box, 'DOS'), { recursive: true });
  await mkdir(join(box, 'logs'), { recursive: true });
  await writeFile(join(box, 'icb-box.jar'), 'jar v1');
  await writeFile(join(box, 'application.yml'), 'server:\n  port: 8080\n');
  await writeFile(join(box, 'conf', 'configuration.ini'), '[QTHZ]\nversion = V1.7\n');
  await writeFile(join(box, 'data', 'ztdb'), Buffer.alloc(4096, 7));
  await writeFile(join(box, 'data', 'nested', 'a.txt'), 'a');
  await writeFile(join(box, 'DOS', 'start.bat'), '@echo off\r\n');
  await chmod(join(box, 'DOS', 'start.bat'), 0o755);
  await symlink('configuration.ini', join(box, 'conf', 'current.ini'));
  await writeFile(join(box, 'logs', 'app.log'), 'log');
  const repoDir = join(box, 'boxkeeper', 'repo');
  const repo = await SnapshotRepo.init(repoDir);
  const logger = createLogger({ level: 'fatal', console: 'none' }).logger;
  const hashPool = createHashPool(2);
  const make = (overrides: Partial<SnapshotDeps> = {}) =>
    new SnapshotService({
      repo,
      tree: nodeTree,
      hashPool,
      config: { ...boxConfig(box, 3), ...config },
      logger,
      freeBytes,
      checkMounts: () => Promise.resolve([]),
      bootId: () => Promise.resolve('boot-1'),
      defaultVersionName: () => `V1.7-${++counter}`,
      pathSep: sep,
      ...overrides,
    });
  return {
    root,
    box,
    repoDir,
    repo,
    service: make(),
    make,
    cleanup: () => rm(root, { recursive: true, force: true }),
  };
}

/** Every path under `dir` with type, mode, content or link target: equal trees, equal maps. */
export async function treeState(dir: string, skip: string[] = []): Promise<Record<string, string>> {
  const out: Record<string, string> = {};
  const walk = async (d: string) => {
    for (const name of (await readdir(d)).sort()) {
      const p = join(d, name);
      const rel = relative(dir, p);
      if (skip.some((s) => rel === s || rel.startsWith(s + sep))) continue;
      const st = await lstat(p);
      const mode = (st.mode & 0o7777).toString(8);
      if (st.isDirectory()) {
        out[rel] = `dir ${mode}`;
        await walk(p);
      } else if (st.isSymbolicLink()) {
        out[rel] = `link -> ${await readlink(p)}`;
      } else {
        out[rel] = `file ${mode} ${(await readFile(p)).toString('base64')}`;
      }
    }
  };
  await walk(dir);
  return out;
}
