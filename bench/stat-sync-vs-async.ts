// lstat of every entry under a directory: synchronous calls vs promise-based ones (one at a time,
// and 64 in flight). The figure behind the synchronous walk in adapters/tree.ts.
//   node --import tsx bench/stat-sync-vs-async.ts [dir]     (default: node_modules)
import { lstatSync, readdirSync } from 'node:fs';
import { lstat } from 'node:fs/promises';
import { join } from 'node:path';

const root = process.argv[2] ?? 'node_modules';
const paths: string[] = [];
const walk = (dir: string): void => {
  for (const e of readdirSync(dir, { withFileTypes: true })) {
    const p = join(dir, e.name);
    paths.push(p);
    if (e.isDirectory()) walk(p);
  }
};
walk(root);

const rounds = Number(process.env.RUNS ?? 3);
for (let r = 0; r < rounds; r++) {
  let t0 = performance.now();
  for (const p of paths) lstatSync(p, { bigint: true });
  const sync = performance.now() - t0;
  t0 = performance.now();
  for (const p of paths) await lstat(p, { bigint: true });
  const serial = performance.now() - t0;
  t0 = performance.now();
  let next = 0;
  await Promise.all(
    Array.from({ length: 64 }, async () => {
      while (next < paths.length) await lstat(paths[next++] as string, { bigint: true });
    }),
  );
  const parallel = performance.now() - t0;
  const us = (ms: number) => ((ms * 1000) / paths.length).toFixed(1);
  process.stdout.write(
    `${paths.length} entries: lstatSync ${us(sync)} µs/entry, await lstat one at a time ` +
      `${us(serial)} µs/entry, 64 in flight ${us(parallel)} µs/entry\n`,
  );
}
