// SQL patch scripts against real SQLite files: all or nothing, and exactly once.
import assert from 'node:assert/strict';
import { access, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test, type TestContext } from 'node:test';
import { sqliteAdapter } from '../../adapters/sqlite.ts';
import {
  applySqlScript,
  LEDGER_TABLE,
  listAppliedScripts,
  SqlScriptError,
} from '../../services/update/sql-ledger.ts';

const BASE_SCHEMA = `
CREATE TABLE task (id INTEGER PRIMARY KEY, status INTEGER NOT NULL, name TEXT);
INSERT INTO task (id, status, name) VALUES (1, 1, 'call list A'), (2, 3, 'call list B');
`;

async function makeDb(t: TestContext, setup = BASE_SCHEMA): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'bk-sql-ledger-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  const path = join(dir, 'box');
  await writeFile(path, ''); // an empty file is an empty SQLite database
  await withDb(path, (db) => db.exec(setup));
  return path;
}

async function withDb<T>(
  path: string,
  fn: (db: Awaited<ReturnType<typeof sqliteAdapter.open>>) => Promise<T>,
): Promise<T> {
  const db = await sqliteAdapter.open(path);
  try {
    return await fn(db);
  } finally {
    await db.close();
  }
}

/** Every schema object and every row of every table, in a stable order. */
async function dump(path: string): Promise<string> {
  return withDb(path, async (db) => {
    const objects = await db.all<{ type: string; name: string; sql: string | null }>(
      `SELECT type, name, sql FROM sqlite_master ORDER BY type, name`,
    );
    const out: string[] = objects.map((o) => `${o.type} ${o.name}: ${o.sql ?? ''}`);
    for (const o of objects.filter((x) => x.type === 'table')) {
      const rows = await db.all(`SELECT * FROM "${o.name}" ORDER BY rowid`);
      out.push(`${o.name}: ${JSON.stringify(rows)}`);
    }
    return out.join('\n');
  });
}

async function count(path: string, table: string): Promise<number> {
  const rows = await withDb(path, (db) =>
    db.all<{ n: number }>(`SELECT count(*) AS n FROM "${table}"`),
  );
  return rows[0]?.n ?? -1;
}

async function rejectsWith(promise: Promise<unknown>): Promise<SqlScriptError> {
  try {
    await promise;
  } catch (err) {
    assert.ok(err instanceof SqlScriptError, `expected a SqlScriptError, got ${String(err)}`);
    return err;
  }
  assert.fail('expected the script to be refused');
}

const PATCH = {
  name: 'upgrade-1.2.0.sql',
  version: '1.2.0',
  text:
    '\uFEFF-- patch 1.2.0: call results\r\n' +
    'begin transaction;\r\n' +
    'CREATE TABLE call_result (id INTEGER PRIMARY KEY, task_id INTEGER, result TEXT);\r\n' +
    "INSERT INTO call_result (task_id, result) VALUES (1, 'answered'), (1, 'busy');\r\n" +
    'UPDATE task SET status = 2 WHERE id = 1;\r\n' +
    'COMMIT;\r\n',
};

test('a script is applied with its ledger row, and re-applying it is a no-op', async (t) => {
  const path = await makeDb(t);
  const now = () => new Date('2024-05-06T07:08:09.000Z');
  const first = await applySqlScript(sqliteAdapter, path, PATCH, { now });
  assert.equal(first.applied, true);
  assert.match(first.hash, /^[0-9a-f]{64}$/);
  assert.equal(await count(path, 'call_result'), 2);
  const status = await withDb(path, (db) => db.all(`SELECT status FROM task WHERE id = 1`));
  assert.deepEqual(status, [{ status: 2 }]);
  assert.deepEqual(await listAppliedScripts(sqliteAdapter, path), [
    {
      hash: first.hash,
      version: '1.2.0',
      name: 'upgrade-1.2.0.sql',
      appliedAt: '2024-05-06T07:08:09.000Z',
    },
  ]);

  const before = await dump(path);
  const again = await applySqlScript(sqliteAdapter, path, { ...PATCH, version: '1.2.1' });
  assert.deepEqual(again, { applied: false, hash: first.hash });
  // Without its outer BEGIN/COMMIT and with LF line ends it is the same script.
  const bare = PATCH.text
    .replace(/\r\n/g, '\n')
    .replace('begin transaction;\n', '')
    .replace('COMMIT;\n', '');
  assert.deepEqual(await applySqlScript(sqliteAdapter, path, { ...PATCH, text: bare }), again);
  assert.equal(await dump(path), before);
  assert.equal(await count(path, 'call_result'), 2);
  assert.equal(await count(path, LEDGER_TABLE), 1);
});

test('a failing statement rolls everything back and names script, database and cause', async (t) => {
  const path = await makeDb(t);
  const before = await dump(path);
  const err = await rejectsWith(
    applySqlScript(sqliteAdapter, path, {
      name: 'broken.sql',
      version: '1.3.0',
      text: `BEGIN;
CREATE TABLE extra (x TEXT);
INSERT INTO extra VALUES ('one');
DELETE FROM task;
INSERT INTO no_such_table VALUES (1);
INSERT INTO extra VALUES ('two');
COMMIT;
`,
    }),
  );
  assert.match(err.message, /broken\.sql/);
  assert.ok(err.message.includes(path), err.message);
  assert.match(err.message, /no such table: no_such_table/);
  assert.match(err.message, /rolled back/);
  assert.equal(await dump(path), before);
  assert.deepEqual(await listAppliedScripts(sqliteAdapter, path), []);
});

test('a script that makes SQLite abort the transaction itself leaves the DB unchanged', async (t) => {
  const path = await makeDb(t);
  await applySqlScript(sqliteAdapter, path, PATCH);
  const before = await dump(path);
  const err = await rejectsWith(
    applySqlScript(sqliteAdapter, path, {
      name: 'conflict.sql',
      version: '1.4.0',
      text: `UPDATE task SET name = 'renamed';
INSERT OR ROLLBACK INTO task (id, status) VALUES (1, 9);
UPDATE task SET status = 7;`,
    }),
  );
  assert.match(err.message, /conflict\.sql.*UNIQUE constraint failed: task\.id/);
  assert.equal(await dump(path), before);
  assert.equal((await listAppliedScripts(sqliteAdapter, path)).length, 1);
});

test('works on a WAL-mode database while another connection reads it', async (t) => {
  const path = await makeDb(t, `PRAGMA journal_mode = WAL;${BASE_SCHEMA}`);
  const reader = await sqliteAdapter.open(path, { readonly: true });
  t.after(() => reader.close());
  assert.deepEqual(await reader.all(`SELECT count(*) AS n FROM task`), [{ n: 2 }]);
  const result = await applySqlScript(sqliteAdapter, path, PATCH);
  assert.equal(result.applied, true);
  assert.deepEqual(await reader.all(`SELECT count(*) AS n FROM call_result`), [{ n: 2 }]);
  assert.deepEqual(await reader.all(`PRAGMA journal_mode`), [{ journal_mode: 'wal' }]);
  await access(`${path}-wal`);
  assert.equal((await applySqlScript(sqliteAdapter, path, PATCH)).applied, false);
});

test('transaction words in strings, comments, identifiers and trigger bodies are not statements', async (t) => {
  const path = await makeDb(t);
  const text = `/* BEGIN; this patch used to COMMIT; twice */
BEGIN TRANSACTION;
-- COMMIT;
CREATE TABLE note (id INTEGER PRIMARY KEY, body TEXT, "end" TEXT, [commit] TEXT);
INSERT INTO note (body, "end", [commit]) VALUES ('COMMIT;', 'it''s END; really', 'BEGIN;');
CREATE TRIGGER task_done AFTER UPDATE OF status ON task
BEGIN
  INSERT INTO note (body) VALUES (CASE WHEN new.status = 3 THEN 'done' ELSE 'open' END);
  UPDATE note SET "end" = 'END;' WHERE body = 'done';
END;
UPDATE task SET status = 3 WHERE id = 1;
END TRANSACTION;
`;
  const result = await applySqlScript(sqliteAdapter, path, {
    name: 'notes.sql',
    version: '2.0.0',
    text,
  });
  assert.equal(result.applied, true);
  const notes = await withDb(path, (db) =>
    db.all(`SELECT body, "end", [commit] AS c FROM note ORDER BY id`),
  );
  assert.deepEqual(notes, [
    { body: 'COMMIT;', end: "it's END; really", c: 'BEGIN;' },
    { body: 'done', end: 'END;', c: null },
  ]);
});

test('a transaction statement inside the script is refused before anything runs', async (t) => {
  const path = await makeDb(t);
  const before = await dump(path);
  const nested = await rejectsWith(
    applySqlScript(sqliteAdapter, path, {
      name: 'nested.sql',
      version: '3.0.0',
      text: `BEGIN TRANSACTION;
DELETE FROM task;
  begin;
INSERT INTO task (id, status) VALUES (9, 1);
COMMIT;
COMMIT;
`,
    }),
  );
  assert.match(nested.message, /nested\.sql line 3/);
  assert.match(nested.message, /"begin" inside the script/);
  assert.equal(nested.line, 3);

  const midCommit = await rejectsWith(
    applySqlScript(sqliteAdapter, path, {
      name: 'commit-in-middle.sql',
      version: '3.0.0',
      text: `DELETE FROM task;\nCOMMIT;\nDELETE FROM call_result;\n`,
    }),
  );
  assert.match(midCommit.message, /commit-in-middle\.sql line 2 on .*: refused: "COMMIT"/);

  const rollback = await rejectsWith(
    applySqlScript(sqliteAdapter, path, {
      name: 'rollback.sql',
      version: '3.0.0',
      text: `BEGIN;\nDELETE FROM task;\nROLLBACK;\n`,
    }),
  );
  assert.match(rollback.message, /rollback\.sql line 3/);
  assert.equal(await dump(path), before);
});

test('savepoints inside a script stay inside its transaction', async (t) => {
  const path = await makeDb(t);
  await applySqlScript(sqliteAdapter, path, {
    name: 'savepoint.sql',
    version: '3.1.0',
    text: `SAVEPOINT a;
DELETE FROM task WHERE id = 2;
ROLLBACK TO a;
RELEASE a;
INSERT INTO task (id, status) VALUES (3, 5);`,
  });
  assert.deepEqual(await withDb(path, (db) => db.all(`SELECT id FROM task ORDER BY id`)), [
    { id: 1 },
    { id: 2 },
    { id: 3 },
  ]);
});

test('a missing database is an error naming it, and no file is created', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'bk-sql-ledger-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  const path = join(dir, 'box_v9');
  const err = await rejectsWith(applySqlScript(sqliteAdapter, path, PATCH));
  assert.match(err.message, /upgrade-1\.2\.0\.sql/);
  assert.ok(err.message.includes(path));
  await assert.rejects(access(path), { code: 'ENOENT' });
});
