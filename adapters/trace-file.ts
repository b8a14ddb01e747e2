// The offline NDJSON trace of the update statecharts: one file per agent run, the newest few
// kept. Lines are appended synchronously so the trace is complete up to a crash.
import { appendFileSync, mkdirSync, readdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';

export interface TraceFile {
  path: string;
  write(line: string): void;
}

export function openTraceFile(dir: string, prefix: string, keep = 20, now = new Date()): TraceFile {
  mkdirSync(dir, { recursive: true });
  const stamp = now
    .toISOString()
    .replace(/[-:]/g, '')
    .replace(/\.\d+Z$/, 'Z');
  const path = join(dir, `${prefix}-${stamp}-${process.pid}.ndjson`);
  const old = readdirSync(dir)
    .filter((n) => n.startsWith(`${prefix}-`) && n.endsWith('.ndjson'))
    .sort();
  for (const n of old.slice(0, Math.max(0, old.length - (keep - 1))))
    rmSync(join(dir, n), { force: true });
  let broken = false;
  return {
    path,
    write(line) {
      if (broken) return;
      try {
        appendFileSync(path, `${line}\n`);
      } catch {
        // A trace is a diagnostic: losing it must not stop an update.
        broken = true;
      }
    },
  };
}
