// Building the snapshot service for a box: shared by `boxkeeper snapshot` and the updater.
import { readFile } from 'node:fs/promises';
import { sep } from 'node:path';
import { createHashPool, type HashPool } from '../adapters/hash-pool.ts';
import { checkMounts } from '../adapters/mounts.ts';
import { SnapshotRepo } from '../adapters/snapshot-repo.ts';
import { bootId, freeBytes } from '../adapters/system.ts';
import { nodeTree } from '../adapters/tree.ts';
import { loadBoxConfig } from '../services/agent/box-config.ts';
import {
  defaultSnapshotPaths,
  parseSnapshotPaths,
  snapshotConfig,
  type SnapshotPaths,
} from '../services/snapshot/snapshot-config.ts';
import type { Settings } from '../services/agent/settings.ts';
import { SnapshotError, SnapshotService } from '../services/snapshot/snapshots.ts';
import { realWorld, type Context } from './context.ts';
import { fileStamp } from '../services/agent/agent-files.ts';

/** 20261122T183000 (UTC), sortable and safe in a version name. */

export async function boxVersion(settings: Settings): Promise<string> {
  try {
    return (await loadBoxConfig(settings.paths.config, realWorld.files.readFile)).version;
  } catch {
    return 'box';
  }
}

export function service(
  ctx: Context,
  repo: SnapshotRepo,
  paths: SnapshotPaths,
  version: string,
  hashPool: HashPool = createHashPool(),
): SnapshotService {
  const { settings } = ctx;
  return new SnapshotService({
    repo,
    tree: nodeTree,
    hashPool,
    config: snapshotConfig(paths, settings),
    logger: ctx.log.logger,
    freeBytes,
    checkMounts: (p) => checkMounts(p, settings.platform),
    bootId: () => bootId(settings.platform),
    defaultVersionName: () => `${version}-${fileStamp().slice(0, -1)}`,
    pathSep: sep,
  });
}

export async function loadPaths(settings: Settings): Promise<SnapshotPaths> {
  const file = settings.snapshot.config;
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch {
    throw new SnapshotError(
      `no snapshot configuration at ${file}; run "boxkeeper snapshot init" first`,
    );
  }
  return parseSnapshotPaths(file, text);
}

/**
 * The snapshot service the updater uses: the repository is created on first use, with the
 * configuration file if there is one, else the box's default managed paths.
 */
export async function updaterSnapshots(
  ctx: Context,
): Promise<{ service: SnapshotService; close: () => Promise<void> }> {
  const { settings } = ctx;
  let paths: SnapshotPaths;
  if (await realWorld.files.exists(settings.snapshot.config)) paths = await loadPaths(settings);
  else {
    // As `boxkeeper snapshot init` would: the operator can see and edit what is managed.
    paths = defaultSnapshotPaths(settings);
    await realWorld.files.writeAtomic(
      settings.snapshot.config,
      `${JSON.stringify(paths, null, 2)}\n`,
    );
  }
  const repo = SnapshotRepo.exists(settings.snapshot.repo)
    ? SnapshotRepo.open(settings.snapshot.repo)
    : await SnapshotRepo.init(settings.snapshot.repo);
  const pool: HashPool = createHashPool();
  const s = service(ctx, repo, paths, await boxVersion(settings), pool);
  return { service: s, close: () => pool.close() };
}
