// One boxkeeper snapshot operation in its own process, so that its peak memory (max RSS) and
// wall time are its own. Run by bench/snapshots.ts as
//   node --import tsx bench/snapshot-case.ts '<json CaseArgs>'
// and prints one JSON line (CaseOutput) on stdout. The repository and service are built with
// the real adapters, as cli/commands/snapshot.ts does (hash pool of default size); mounts and
// boot id are stubbed.
import { sep } from 'node:path';
import { createHashPool, type HashPool } from '../adapters/hash-pool.ts';
import { createLogger } from '../adapters/logger.ts';
import { SnapshotRepo } from '../adapters/snapshot-repo.ts';
import { freeBytes } from '../adapters/system.ts';
import { nodeTree } from '../adapters/tree.ts';
import { SnapshotService } from '../services/snapshot/snapshots.ts';

export type CaseOp = 'noop' | 'commit' | 'rollback' | 'verify' | 'delete';

export interface CaseArgs {
  op: CaseOp;
  /** The live tree (the one subscribed path). */
  tree: string;
  /** The repository directory (created on first commit). */
  repo: string;
  /** Version to commit, roll back to or delete. */
  version?: string;
}

export interface CaseOutput {
  op: CaseOp;
  /** Time of the operation itself, after module loading (ms). */
  opMs: number;
  /** Peak resident set size of this process (KiB), from process.resourceUsage(). */
  maxRssKiB: number;
  /** Small summary of the operation's result (counts). */
  result: Record<string, number | boolean | string>;
}

async function run(args: CaseArgs, pool: HashPool): Promise<CaseOutput['result']> {
  const repo = await SnapshotRepo.init(args.repo);
  const logger = createLogger({ level: 'fatal', console: 'none' }).logger;
  const service = new SnapshotService({
    repo,
    tree: nodeTree,
    hashPool: pool,
    config: { subscribe: [args.tree], exclude: [], retain: 3 },
    logger,
    freeBytes,
    checkMounts: () => Promise.resolve([]),
    bootId: () => Promise.resolve('bench'),
    defaultVersionName: () => 'bench',
    pathSep: sep,
  });
  const version = args.version ?? 'V1';
  switch (args.op) {
    case 'commit': {
      const r = await service.commit({ version });
      return { files: r.files, hashed: r.hashed, newObjects: r.newObjects };
    }
    case 'rollback': {
      const r = await service.rollback(version, { discardChanges: true });
      return { changed: r.changed };
    }
    case 'verify': {
      const r = await service.verify();
      return {
        ok: r.ok,
        objectsChecked: r.objectsChecked,
        damaged: r.damagedObjects.length,
        tampered: r.tampered.length,
        missing: r.missing.length,
        unexpected: r.unexpected.length,
      };
    }
    case 'delete': {
      await service.delete(version);
      return {};
    }
    case 'noop':
      return {};
  }
}

async function main(): Promise<void> {
  const raw = process.argv[2];
  if (raw === undefined) throw new Error('usage: snapshot-case.ts <json args>');
  const args = JSON.parse(raw) as CaseArgs;
  const t0 = process.hrtime.bigint();
  let result: CaseOutput['result'] = {};
  let opMs = 0;
  if (args.op !== 'noop') {
    // The pool (worker threads) is part of the operation's cost, as in the CLI; closing it is not.
    const pool = createHashPool();
    result = await run(args, pool);
    opMs = Number(process.hrtime.bigint() - t0) / 1e6;
    await pool.close();
  }
  const out: CaseOutput = {
    op: args.op,
    opMs,
    maxRssKiB: process.resourceUsage().maxRSS,
    result,
  };
  process.stdout.write(`${JSON.stringify(out)}\n`);
}

main().catch((err: unknown) => {
  process.stderr.write(`${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
  process.exit(1);
});
