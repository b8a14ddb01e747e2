// Run by a Windows node.exe (under Wine in CI): loads a cross-built node_sqlite3.node through
// sqlite3's own JavaScript API, opens a database in WAL mode, writes and reads it back.
// Usage: node sqlite-check.mjs <node_sqlite3.node> <sqlite3 package dir> <work dir>
import { copyFileSync, mkdirSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { join } from 'node:path';

const [addon, pkg, work] = process.argv.slice(2);
if (work === undefined) {
  console.error('usage: sqlite-check.mjs <node_sqlite3.node> <sqlite3 package dir> <work dir>');
  process.exit(2);
}
// sqlite3's lib/ with the binding pointed at the addon under test (not `bindings`' search).
const lib = join(work, 'sqlite3-lib');
mkdirSync(lib, { recursive: true });
for (const f of ['sqlite3.js', 'trace.js']) copyFileSync(join(pkg, 'lib', f), join(lib, f));
copyFileSync(addon, join(lib, 'node_sqlite3.node'));
// CommonJS, whatever package.json lies above the work dir.
writeFileSync(join(lib, 'package.json'), '{ "type": "commonjs" }\n');
writeFileSync(
  join(lib, 'sqlite3-binding.js'),
  "module.exports = require('./node_sqlite3.node');\n",
);
const sqlite3 = createRequire(import.meta.url)(join(lib, 'sqlite3.js'));

const fail = (what, err) => {
  console.error(`sqlite-check: ${what}: ${err instanceof Error ? err.message : String(err)}`);
  process.exit(1);
};
const dbPath = join(work, 'check.db');
const db = new sqlite3.Database(dbPath, (err) => {
  if (err) fail(`open ${dbPath}`, err);
});
db.serialize(() => {
  db.get('PRAGMA journal_mode=WAL', (err, row) => {
    if (err) fail('PRAGMA journal_mode=WAL', err);
    if (row.journal_mode !== 'wal') fail('journal mode', `expected wal, got ${row.journal_mode}`);
  });
  db.run('CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT)');
  db.run('INSERT INTO t (v) VALUES (?), (?)', ['a', 'b']);
  db.get(
    'SELECT count(*) AS n, group_concat(v) AS vs, sqlite_version() AS version FROM t',
    (err, row) => {
      if (err) fail('SELECT', err);
      if (row.n !== 2 || row.vs !== 'a,b')
        fail('SELECT', `expected 2 rows a,b, got ${JSON.stringify(row)}`);
      console.log(
        `sqlite-check: ok: node ${process.version} ${process.platform}-${process.arch}, ` +
          `SQLite ${row.version}, journal_mode=wal, ${row.n} rows`,
      );
      db.close((e) => {
        if (e) fail('close', e);
      });
    },
  );
});
