// The offline NDJSON trace of the update statecharts: one file per agent run, the newest few
// kept. Lines are appended synchronously so the trace is complete up to a crash.
import { appendFileSync, mkdirSync, readdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { describeStorageError, errorMessage } from './errors.ts';

export interface TraceFile {
  path: string;
  write(line: string): void;
}

export function openTraceFile(dir: string, prefix: string, keep = 20, now = new Date()): TraceFile {
  const stamp = now
    .toISOString()
    .replace(/[-:]/g, '')
    .replace(/\.\d+Z$/, 'Z');
  const path = join(dir, `${prefix}-${stamp}-${process.pid}.ndjson`);
  // A trace is a diagnostic: a disk that refuses it (full, read-only) must not stop an update.
  try {
    mkdirSync(dir, { recursive: true });
    const old = readdirSync(dir)
      .filter((n) => n.startsWith(`${prefix}-`) && n.endsWith('.ndjson'))
      .sort();
    for (const n of old.slice(0, Math.max(0, old.length - (keep - 1))))
      rmSync(join(dir, n), { force: true });
  } catch {
    // the first write says what is wrong, in the trace once it works again
  }
  /** Lines lost while the file failed (tried again every few seconds), and why. */
  let lost: { lines: number; why: string; retryAt: number } | undefined;
  return {
    path,
    write(line) {
      if (lost !== undefined && Date.now() < lost.retryAt) {
        lost.lines++;
        return;
      }
      try {
        // Created private: a trace is the box's update history, for the agent's user only.
        if (lost !== undefined) {
          mkdirSync(dir, { recursive: true });
          appendFileSync(
            path,
            `${JSON.stringify({ t: new Date().toISOString(), lost: lost.lines, why: lost.why })}\n`,
            { mode: 0o600 },
          );
        }
        appendFileSync(path, `${line}\n`, { mode: 0o600 });
        lost = undefined;
      } catch (err) {
        lost = {
          lines: (lost?.lines ?? 0) + 1,
          why: describeStorageError(err, path) ?? errorMessage(err),
          retryAt: Date.now() + 5000,
        };
      }
    },
  };
}
