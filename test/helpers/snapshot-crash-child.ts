// Child process of test/integration/snapshot-crash.test.ts: runs one snapshot operation over an
// existing tree and repository with the real adapters, except that the chosen call of one
// adapter method kills the process with SIGKILL at that exact point (no cleanup, no finally
// blocks, no flushing: what a power cut or the OOM killer leaves). Usage:
//   node --import tsx snapshot-crash-child.ts '<CrashChildArgs as JSON>'
import { readFileSync, symlinkSync, writeFileSync, writeSync } from 'node:fs';
import { join, sep } from 'node:path';
import { tempPathFor } from '../../adapters/fs-atomic.ts';
import { createHashPool } from '../../adapters/hash-pool.ts';
import { createLogger } from '../../adapters/logger.ts';
import { SnapshotRepo } from '../../adapters/snapshot-repo.ts';
import { freeBytes } from '../../adapters/system.ts';
import { hashText, nodeTree } from '../../adapters/tree.ts';
import { SnapshotService } from '../../services/snapshot/snapshots.ts';
import { crashMarker, type CrashChildArgs } from './snapshot-crash.ts';

const args = JSON.parse(process.argv[2] ?? '') as CrashChildArgs;
const { crash } = args;
let calls = 0;

function die(): never {
  writeSync(2, crashMarker(crash));
  process.kill(process.pid, 'SIGKILL');
  // SIGKILL is not catchable; block this thread until the kernel has finished the process.
  Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0);
  throw new Error('still alive after SIGKILL');
}

function half(text: string | Buffer): string | Buffer {
  const n = Math.max(1, Math.floor(text.length / 2));
  return typeof text === 'string' ? text.slice(0, n) : text.subarray(0, n);
}

/**
 * Leaves what the real call would have left had it died after writing its temp file and before
 * renaming it: a partly written `.<name>.bk-tmp-<pid>-<random>` beside the destination.
 */
function leaveTemp(a: unknown[]): void {
  const meta = (name: string, text: string) =>
    writeFileSync(tempPathFor(join(args.repoDir, name)), half(text));
  switch (crash.call) {
    case 'tree.placeFile': {
      const [source, dest, mode] = a as [string, string, number];
      writeFileSync(tempPathFor(dest), half(readFileSync(source)), { mode });
      return;
    }
    case 'tree.placeSymlink': {
      const [target, dest] = a as [string, string];
      symlinkSync(target, tempPathFor(dest));
      return;
    }
    case 'repo.writeCommit': {
      const text = JSON.stringify(a[0]);
      meta(join('commits', `${hashText(text)}.json`), text);
      return;
    }
    case 'repo.writeRef':
      meta(join('refs', (a[0] as { version: string }).version), '{"partial":');
      return;
    case 'repo.writeHead':
      meta('HEAD', a[0] as string);
      return;
    case 'repo.writeStatCache':
      meta('statcache', 'bk-statcache-2\npartial');
      return;
    case 'repo.writeRollbackJournal':
      meta('rollback.journal', JSON.stringify(a[0]));
      return;
    default:
      throw new Error(`no temp file to leave for ${crash.call}`);
  }
}

/** `target` with `<prefix>.<method>` replaced by one that dies at the chosen call. */
function faulty<T extends object>(prefix: 'repo' | 'tree' | 'hashPool', target: T): T {
  return new Proxy(target, {
    get(t, prop) {
      const value: unknown = Reflect.get(t, prop);
      if (typeof value !== 'function') return value;
      const real = value as (...a: unknown[]) => unknown;
      if (typeof prop !== 'string' || `${prefix}.${prop}` !== crash.call) return real.bind(t);
      return (...a: unknown[]): unknown => {
        if (++calls !== crash.nth) return real.apply(t, a);
        if (crash.when === 'before') die();
        if (crash.when === 'temp') {
          leaveTemp(a);
          die();
        }
        const result = real.apply(t, a);
        if (result instanceof Promise) return result.then(() => die());
        return die();
      };
    },
  });
}

const logger = createLogger({ level: 'fatal', console: 'none' }).logger;
const service = new SnapshotService({
  repo: faulty('repo', SnapshotRepo.open(args.repoDir)),
  tree: faulty('tree', nodeTree),
  hashPool: faulty('hashPool', createHashPool(2)),
  config: args.config,
  logger,
  freeBytes,
  checkMounts: () => Promise.resolve([]),
  bootId: () => Promise.resolve('boot-crash-child'),
  defaultVersionName: () => `auto-${Date.now()}`,
  pathSep: sep,
});

const { op } = args;
switch (op.kind) {
  case 'commit':
    await service.commit(op.version === undefined ? {} : { version: op.version });
    break;
  case 'rollback':
    await service.rollback(op.version, { discardChanges: op.discardChanges === true });
    break;
  case 'prune':
    // As `boxkeeper snapshot prune` does.
    await service.recover();
    await service.prune();
    break;
}
// Reaching this line means the crash point was never reached; the parent reports that.
process.stdout.write(`finished without reaching ${crash.call} #${crash.nth}\n`);
