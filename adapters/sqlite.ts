// SQLite access for the box's database (the `task` table, and later SQL patches).
import type sqlite3 from 'sqlite3';

export interface Database {
  all<T = Record<string, unknown>>(sql: string, params?: unknown[]): Promise<T[]>;
  run(sql: string, params?: unknown[]): Promise<{ changes: number }>;
  exec(sql: string): Promise<void>;
  close(): Promise<void>;
}

export interface SqliteAdapter {
  open(path: string, options?: { readonly?: boolean }): Promise<Database>;
}

export const sqliteAdapter: SqliteAdapter = {
  async open(path, options = {}) {
    // Loaded on first use: the idle daemon opens no database (a native addon it need not hold).
    const { default: sqlite3 } = await import('sqlite3');
    // Never create a database by accident: a wrong path must fail, not yield an empty DB.
    const mode = options.readonly === true ? sqlite3.OPEN_READONLY : sqlite3.OPEN_READWRITE;
    return new Promise((resolve, reject) => {
      const db = new sqlite3.Database(path, mode, (err) => {
        if (err !== null) {
          reject(new Error(`cannot open SQLite database ${path}: ${err.message}`, { cause: err }));
          return;
        }
        db.configure('busyTimeout', 10_000);
        resolve({
          all: <T>(sql: string, params: unknown[] = []) =>
            new Promise<T[]>((res, rej) => {
              db.all(sql, params, (e: Error | null, rows: T[]) => {
                if (e === null) res(rows);
                else rej(e);
              });
            }),
          run: (sql, params = []) =>
            new Promise((res, rej) => {
              db.run(sql, params, function (this: sqlite3.RunResult, e: Error | null) {
                if (e === null) res({ changes: this.changes });
                else rej(e);
              });
            }),
          exec: (sql) =>
            new Promise((res, rej) => {
              db.exec(sql, (e) => {
                if (e === null) res();
                else rej(e);
              });
            }),
          close: () =>
            new Promise((res, rej) => {
              db.close((e) => {
                if (e === null) res();
                else rej(e);
              });
            }),
        });
      });
    });
  },
};
