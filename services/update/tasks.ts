// Which call tasks are running on the box, asked of the box app, with the box database as the
// fallback. The Python tool fell back only on HTTP 404 and otherwise paused nothing (W-RACE-4);
// here any failure of the app falls back to the database, and only if both fail is it an error.
import type { BoxAppApi } from '../../adapters/box-app.ts';
import type { TaskNo } from '../../adapters/cloud-client.ts';
import { errorMessage } from '../../adapters/errors.ts';
import type { Logger } from '../../adapters/logger.ts';
import type { SqliteAdapter } from '../../adapters/sqlite.ts';

/** Statuses of the `task` table that mean "not finished" (§10 of the reference). */
export const ONGOING_STATUSES = [1, 2, 5] as const;

export interface TaskSource {
  boxApp: BoxAppApi;
  sqlite: SqliteAdapter;
  /** Path of the box DB: <data dir>/<configuration.ini [dbfile] name>, read at call time. */
  dbPath: () => string;
  logger: Logger;
}

export async function ongoingTasksFromDb(sqlite: SqliteAdapter, dbPath: string): Promise<TaskNo[]> {
  const db = await sqlite.open(dbPath, { readonly: true });
  try {
    const rows = await db.all<{ id: TaskNo }>(
      `SELECT id FROM task WHERE status IN (${ONGOING_STATUSES.join(', ')}) ORDER BY id`,
    );
    return rows.map((r) => r.id);
  } finally {
    await db.close();
  }
}

export interface UnfinishedTasks {
  tasks: TaskNo[];
  source: 'box-app' | 'database';
}

export async function listUnfinishedTasks(src: TaskSource): Promise<UnfinishedTasks> {
  try {
    return { tasks: await src.boxApp.listUnfinishedTasks(), source: 'box-app' };
  } catch (appErr) {
    const dbPath = src.dbPath();
    src.logger.warn(
      { err: errorMessage(appErr), dbPath },
      'box app task list failed; reading the box database',
    );
    try {
      return { tasks: await ongoingTasksFromDb(src.sqlite, dbPath), source: 'database' };
    } catch (dbErr) {
      throw new Error(
        `cannot tell which tasks run: box app: ${errorMessage(appErr)}; database ${dbPath}: ${errorMessage(dbErr)}`,
        { cause: dbErr },
      );
    }
  }
}
