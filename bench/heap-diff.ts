// Compares two V8 heap snapshots (from HEAP_SNAPSHOT_AT in bench/idle.ts, or any
// --heapsnapshot-signal file): objects grouped by type and constructor name, the groups that grew
// most by retained count and self size first. What a leak looks like: a group whose count grows
// with the number of heartbeats.
//
//   node --import tsx bench/heap-diff.ts before.heapsnapshot after.heapsnapshot [TOP]
import { readFile } from 'node:fs/promises';

interface Group {
  count: number;
  bytes: number;
}

interface RawSnapshot {
  snapshot: { meta: { node_fields: string[]; node_types: [string[], ...unknown[]] } };
  nodes: number[];
  strings: string[];
}

async function groups(file: string): Promise<{ total: number; byKey: Map<string, Group> }> {
  const raw = JSON.parse(await readFile(file, 'utf8')) as RawSnapshot;
  const fields = raw.snapshot.meta.node_fields;
  const types = raw.snapshot.meta.node_types[0];
  const stride = fields.length;
  const typeAt = fields.indexOf('type');
  const nameAt = fields.indexOf('name');
  const sizeAt = fields.indexOf('self_size');
  const byKey = new Map<string, Group>();
  let total = 0;
  for (let i = 0; i < raw.nodes.length; i += stride) {
    const type = types[raw.nodes[i + typeAt] as number] ?? '?';
    // Strings and code are grouped by type only: their "names" are their contents.
    const name =
      type === 'object' || type === 'closure' || type === 'native'
        ? (raw.strings[raw.nodes[i + nameAt] as number] ?? '?').slice(0, 60)
        : '';
    const key = `${type}${name === '' ? '' : ` ${name}`}`;
    const size = raw.nodes[i + sizeAt] as number;
    total += size;
    const g = byKey.get(key) ?? { count: 0, bytes: 0 };
    g.count += 1;
    g.bytes += size;
    byKey.set(key, g);
  }
  return { total, byKey };
}

async function main(): Promise<void> {
  const [before, after, top = '25'] = process.argv.slice(2);
  if (before === undefined || after === undefined)
    throw new Error('usage: heap-diff.ts BEFORE.heapsnapshot AFTER.heapsnapshot [TOP]');
  const a = await groups(before);
  const b = await groups(after);
  const rows = [...new Set([...a.byKey.keys(), ...b.byKey.keys()])].map((key) => {
    const x = a.byKey.get(key) ?? { count: 0, bytes: 0 };
    const y = b.byKey.get(key) ?? { count: 0, bytes: 0 };
    return { key, count: y.count - x.count, bytes: y.bytes - x.bytes, now: y.count };
  });
  rows.sort((p, q) => q.bytes - p.bytes);
  const kib = (n: number) => `${(n / 1024).toFixed(1)} KiB`;
  process.stdout.write(
    `heap: ${kib(a.total)} → ${kib(b.total)} (${kib(b.total - a.total)})\n\n| group | Δ count | Δ self size | count after |\n|---|---|---|---|\n`,
  );
  for (const r of rows.slice(0, Number(top)))
    process.stdout.write(`| ${r.key} | ${r.count} | ${kib(r.bytes)} | ${r.now} |\n`);
}

await main();
