// One durable patch.meta write against the "sync floor" (issue 10, target ≤ 1.5×).
//   node --import tsx bench/durable-write.ts
// A: writePatchMeta (services/update/update-store.ts), the DurableStore's `write`, on the real adapter.
// B: the floor — in this process, synchronously: the same bytes to a temp file in the same dir,
//    fsync, rename over the target, fsync the directory. Nothing can be durable for less.
// C: (for reference) the async writeFileAtomic, what patch.meta used before.
// Rounds run A B C, A B C, … on the same file; each round does WRITES writes of each.
// Knobs: RUNS (15), WARMUP (2), WRITES (50), VERSIONS (3, versions in the snapshot: its size),
// BENCH_TMP (/var/tmp: a real disk; /tmp may be a tmpfs where fsync costs nothing).
import { execFileSync } from 'node:child_process';
import {
  closeSync,
  fsyncSync,
  mkdirSync,
  mkdtempSync,
  openSync,
  renameSync,
  rmSync,
  writeFileSync,
  writeSync,
} from 'node:fs';
import { loadavg } from 'node:os';
import { join } from 'node:path';
import { createActor, fromPromise } from 'xstate';
import { writeFileAtomic } from '../adapters/fs-atomic.ts';
import { nodePatchFs } from '../adapters/patch-fs.ts';
import { withEffects, type UpdatePolicy } from '../machines/update.machine.ts';
import { envelopeText } from '../services/update/durable.ts';
import { MACHINE_ID, MACHINE_VERSION, writePatchMeta } from '../services/update/update-store.ts';
import { median, range } from './common.ts';

const RUNS = Number(process.env.RUNS ?? 15);
const WARMUP = Number(process.env.WARMUP ?? 2);
const WRITES = Number(process.env.WRITES ?? 50);
const VERSIONS = Number(process.env.VERSIONS ?? 3);
const BENCH_TMP = process.env.BENCH_TMP ?? '/var/tmp';

const policy: UpdatePolicy = {
  checkIntervalMs: 3_600_000,
  checkJitterMs: 600_000,
  healthTimeoutMs: 120_000,
  healthSettleMs: 10_000,
  callsRetryMs: 60_000,
  retryDelayMs: 300_000,
  maxFailedInstalls: 3,
};

/** A real patch.meta: the update machines' persisted snapshot with VERSIONS downloaded versions. */
function patchMetaText(): string {
  const never = fromPromise(() => new Promise<never>(() => undefined));
  const actor = createActor(
    withEffects(() => never),
    {
      input: {
        policy,
        imported: {
          phase: 'PENDING',
          versions: Array.from({ length: VERSIONS }, (_, i) => ({
            versionCode: `c0ffee${String(i).padStart(26, '0')}`,
            versionNum: `V1.${8 + i}`,
            fileMd5: 'cd9f1d57fd7b792587d29e7826f4df0e',
            remark: `release ${i}: fixes and a new call-routing option`,
            argumentConfigMap: {
              'spring.datasource.password': 'not-a-real-secret',
              'icb.freeswitch.host': '127.0.0.1',
              'icb.recording.retentionDays': 30,
            },
            status: 'DOWNLOADED' as const,
          })),
          retries: 0,
          mark: 1,
        },
      },
    },
  );
  actor.start();
  const text = envelopeText(
    {
      machineId: MACHINE_ID,
      machineVersion: MACHINE_VERSION,
      seq: 1234,
      savedAt: new Date().toISOString(),
    },
    JSON.stringify(actor.getPersistedSnapshot()),
  );
  actor.stop();
  return text;
}

function syncFloor(dir: string, target: string, bytes: Buffer): void {
  const temp = join(dir, '.floor.tmp');
  const fd = openSync(temp, 'w', 0o600);
  try {
    for (let done = 0; done < bytes.length;)
      done += writeSync(fd, bytes, done, bytes.length - done);
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
  renameSync(temp, target);
  const dfd = openSync(dir, 'r');
  try {
    fsyncSync(dfd);
  } finally {
    closeSync(dfd);
  }
}

/** Milliseconds per write over `WRITES` writes. */
async function timed(write: () => Promise<void> | void): Promise<number> {
  const t0 = performance.now();
  for (let i = 0; i < WRITES; i++) await write();
  return (performance.now() - t0) / WRITES;
}

const commit = (() => {
  try {
    return execFileSync('git', ['rev-parse', '--short', 'HEAD'], { encoding: 'utf8' }).trim();
  } catch {
    return 'unknown';
  }
})();

mkdirSync(BENCH_TMP, { recursive: true });
const work = mkdtempSync(join(BENCH_TMP, 'bk-durable-write-'));
try {
  const dir = join(work, 'patch');
  mkdirSync(dir);
  const target = join(dir, 'patch.meta');
  const text = patchMetaText();
  const bytes = Buffer.from(text, 'utf8');
  writeFileSync(target, bytes);
  const load = loadavg().map((l) => l.toFixed(2));
  process.stderr.write(
    `durable write: ${bytes.length} bytes, ${WRITES} writes × ${RUNS} rounds (+${WARMUP} warm-up), ` +
      `in ${work}, code ${commit}, load ${load.join(' / ')}\n`,
  );

  const contenders = {
    a: () => writePatchMeta(nodePatchFs, target, text),
    b: () => syncFloor(dir, target, bytes),
    c: () => writeFileAtomic(target, text, { mode: 0o600 }),
  };
  const ms = { a: [] as number[], b: [] as number[], c: [] as number[] };
  for (let round = 0; round < WARMUP + RUNS; round++) {
    const a = await timed(contenders.a);
    const b = await timed(contenders.b);
    const c = await timed(contenders.c);
    if (round < WARMUP) continue;
    ms.a.push(a);
    ms.b.push(b);
    ms.c.push(c);
    process.stderr.write(
      `round ${round - WARMUP + 1}: A ${a.toFixed(3)} ms, B ${b.toFixed(3)} ms, C ${c.toFixed(3)} ms, ` +
        `A/B ${(a / b).toFixed(2)}\n`,
    );
  }
  const ratioAB = ms.a.map((a, i) => a / (ms.b[i] as number));
  const ratioCB = ms.c.map((c, i) => c / (ms.b[i] as number));
  const row = (name: string, xs: number[]) =>
    `| ${name} | ${median(xs).toFixed(3)} | ${range(xs, 3)} |\n`;
  process.stdout.write(
    `\nDurable write of patch.meta (${bytes.length} bytes), ${RUNS} rounds × ${WRITES} writes, ` +
      `code ${commit}, load before ${load.join(' / ')}, after ${loadavg()
        .map((l) => l.toFixed(2))
        .join(' / ')}\n\n` +
      `| contender | ms per write: median | min–max |\n| --- | ---: | --- |\n` +
      row('A writePatchMeta (sync path)', ms.a) +
      row('B sync floor', ms.b) +
      row('C async writeFileAtomic (before)', ms.c) +
      `\n| paired ratio | median | min–max | target |\n| --- | ---: | --- | ---: |\n` +
      `| A / B | ${median(ratioAB).toFixed(2)} | ${range(ratioAB, 2)} | ≤ 1.5 |\n` +
      `| C / B | ${median(ratioCB).toFixed(2)} | ${range(ratioCB, 2)} | |\n`,
  );
  const results = join(import.meta.dirname, 'results');
  mkdirSync(results, { recursive: true });
  const file = join(
    results,
    `durable-write-${new Date().toISOString().replace(/[:.]/g, '-')}.json`,
  );
  writeFileSync(
    file,
    JSON.stringify(
      { commit, bytes: bytes.length, RUNS, WARMUP, WRITES, load, ms, ratioAB },
      null,
      2,
    ),
  );
  process.stderr.write(`full result: ${file}\n`);
} finally {
  rmSync(work, { recursive: true, force: true });
}
