// Shared probes of the update tests: the box's DB, the stand-in app's version, debris.
import { readdir } from 'node:fs/promises';
import { join } from 'node:path';
import sqlite3 from 'sqlite3';
import { alive, type E2E } from './cli.ts';

/** Rows of a read-only query on a real SQLite file. */
export function dbQuery<T>(path: string, sql: string): Promise<T[]> {
  return new Promise((resolve, reject) => {
    const db = new sqlite3.Database(path, sqlite3.OPEN_READONLY, (err) => {
      if (err !== null) return reject(err);
      db.all(sql, (e: Error | null, rows: T[]) => {
        db.close();
        if (e !== null) reject(e);
        else resolve(rows);
      });
    });
  });
}

/** The version the running stand-in Java app reports, or undefined if it does not answer. */
export async function appVersion(e: E2E): Promise<string | undefined> {
  try {
    const r = await fetch(`http://127.0.0.1:${e.box.appPort}/standin/info`);
    return ((await r.json()) as { version: string }).version;
  } catch {
    return undefined;
  }
}

/**
 * Temp files of interrupted writes below `dir` (and `.part` downloads when asked). Temp files
 * of live writers are work in progress, not debris.
 */
export async function tempFiles(dir: string, options: { parts?: boolean } = {}): Promise<string[]> {
  const out: string[] = [];
  const walk = async (d: string) => {
    for (const ent of await readdir(d, { withFileTypes: true }).catch(() => [])) {
      const p = join(d, ent.name);
      const writer = /\.bk-tmp-(\d+)-/.exec(ent.name)?.[1];
      if (ent.isDirectory()) await walk(p);
      else if (writer !== undefined && !alive(Number(writer))) out.push(p);
      else if (options.parts === true && ent.name.endsWith('.part')) out.push(p);
    }
  };
  await walk(dir);
  return out;
}
