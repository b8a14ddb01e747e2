// Idempotent SQL patch scripts (§3.11 step 1, W-DUR-4). The Python tool ran a patch's .sql with
// executescript on an autocommit connection: every statement committed on its own, a failure
// left half a script applied, and a re-run after a crash applied it twice. Here a script runs
// inside one `BEGIN IMMEDIATE … COMMIT` together with a row in a ledger table of the same
// database, keyed by the sha256 of the script body: either the whole script and its ledger row
// are committed, or nothing is; and a script whose row exists is skipped. As the ledger lives in
// the database itself, restoring the data dir from a backup also restores which scripts ran.
import { createHash } from 'node:crypto';
import { BoxkeeperError, errorMessage } from '../../adapters/errors.ts';
import type { Database, SqliteAdapter } from '../../adapters/sqlite.ts';

export const LEDGER_TABLE = 'boxkeeper_sql_ledger';

export interface SqlScript {
  /** File name, for messages and the ledger. */
  name: string;
  text: string;
  /** The patch version that ships the script. */
  version: string;
}

export interface AppliedScript {
  hash: string;
  version: string;
  name: string;
  appliedAt: string;
}

/** A patch script was refused or failed; nothing of it was applied. */
export class SqlScriptError extends BoxkeeperError {
  readonly script: string;
  readonly dbPath: string;
  readonly line: number | undefined;
  constructor(
    script: string,
    dbPath: string,
    detail: string,
    options?: { line?: number; cause?: unknown },
  ) {
    const where = options?.line === undefined ? '' : ` line ${options.line}`;
    super(`SQL script ${script}${where} on ${dbPath}: ${detail}`, 'internal', options);
    this.script = script;
    this.dbPath = dbPath;
    this.line = options?.line;
  }
}

// ---------------------------------------------------------------------------------------------
// Tokenizer: enough of SQLite's lexer to find statement boundaries and first keywords without
// being fooled by string literals, quoted identifiers, comments or trigger bodies.

interface Token {
  /** Upper-cased word, or the punctuation character. */
  word: string;
  start: number;
  end: number;
}

function tokens(text: string): Token[] {
  const out: Token[] = [];
  let i = 0;
  const n = text.length;
  while (i < n) {
    const c = text[i] as string;
    if (/\s/.test(c)) {
      i++;
    } else if (c === '-' && text[i + 1] === '-') {
      const nl = text.indexOf('\n', i);
      i = nl < 0 ? n : nl + 1;
    } else if (c === '/' && text[i + 1] === '*') {
      const end = text.indexOf('*/', i + 2);
      i = end < 0 ? n : end + 2;
    } else if (c === "'" || c === '"' || c === '`' || c === '[') {
      // Strings and quoted identifiers; a doubled quote escapes itself ([…] has no escape).
      const close = c === '[' ? ']' : c;
      let j = i + 1;
      for (;;) {
        const k = text.indexOf(close, j);
        if (k < 0) {
          j = n;
          break;
        }
        if (close !== ']' && text[k + 1] === close) {
          j = k + 2;
          continue;
        }
        j = k + 1;
        break;
      }
      out.push({ word: c === "'" ? "'" : 'IDENT', start: i, end: j });
      i = j;
    } else if (/[\p{L}_$\d]/u.test(c) || c.charCodeAt(0) > 127) {
      let j = i + 1;
      while (j < n && (/[\p{L}\p{N}_$]/u.test(text[j] as string) || text.charCodeAt(j) > 127)) j++;
      out.push({ word: text.slice(i, j).toUpperCase(), start: i, end: j });
      i = j;
    } else {
      out.push({ word: c, start: i, end: i + 1 });
      i++;
    }
  }
  return out;
}

interface Statement {
  tokens: Token[];
  start: number;
  /** Just past the terminating `;` (or the end of the text). */
  end: number;
}

/**
 * Splits into statements at top-level `;`. A CREATE TRIGGER body holds `;`-terminated
 * statements and ends with `END`, so there the split waits for `; END ;` (as sqlite3_complete).
 */
function statements(text: string): Statement[] {
  const out: Statement[] = [];
  let current: Token[] = [];
  const isTrigger = (ts: Token[]): boolean => {
    const words = ts.slice(0, 4).map((t) => t.word);
    if (words[0] === 'EXPLAIN') words.shift();
    if (words[0] === 'QUERY') words.splice(0, 2);
    return (
      words[0] === 'CREATE' &&
      (words[1] === 'TRIGGER' ||
        ((words[1] === 'TEMP' || words[1] === 'TEMPORARY') && words[2] === 'TRIGGER'))
    );
  };
  for (const t of tokens(text)) {
    if (t.word === ';') {
      if (current.length === 0) continue;
      const prev = current[current.length - 1];
      const prev2 = current[current.length - 2];
      if (isTrigger(current) && !(prev?.word === 'END' && prev2?.word === ';')) {
        current.push(t);
        continue;
      }
      out.push({ tokens: current, start: (current[0] as Token).start, end: t.end });
      current = [];
    } else current.push(t);
  }
  if (current.length > 0) {
    out.push({
      tokens: current,
      start: (current[0] as Token).start,
      end: (current[current.length - 1] as Token).end,
    });
  }
  return out;
}

const isOpening = (s: Statement): boolean => s.tokens[0]?.word === 'BEGIN';
const isClosing = (s: Statement): boolean => {
  const first = s.tokens[0]?.word;
  return first === 'COMMIT' || first === 'END';
};
/** Statements that would end or nest our transaction. SAVEPOINT, RELEASE and ROLLBACK TO stay
 * inside it and are allowed. */
function isTransactionControl(s: Statement): boolean {
  const [first, second, third] = s.tokens.map((t) => t.word);
  if (first === 'BEGIN' || first === 'COMMIT' || first === 'END') return true;
  if (first !== 'ROLLBACK') return false;
  return !(second === 'TO' || (second === 'TRANSACTION' && third === 'TO'));
}

function lineAt(text: string, offset: number): number {
  let line = 1;
  for (let i = 0; i < offset; i++) if (text.charCodeAt(i) === 10) line++;
  return line;
}

export interface PreparedScript {
  /** The statements of the script without its outer BEGIN/COMMIT, CRLF as LF. */
  body: string;
  /** sha256 (hex) of `body`. */
  hash: string;
}

/**
 * Strips the outer `BEGIN [TRANSACTION];` … `COMMIT;`/`END [TRANSACTION];` that patches written
 * for the Python tool carry, and refuses any other transaction statement in the script.
 */
export function prepareSqlScript(script: SqlScript, dbPath = '(not run)'): PreparedScript {
  const text = script.text.replace(/^\uFEFF/, '');
  const stmts = statements(text);
  let inner = stmts;
  if (stmts[0] !== undefined && isOpening(stmts[0])) {
    inner = stmts.slice(1);
    const last = inner[inner.length - 1];
    if (last !== undefined && isClosing(last)) inner = inner.slice(0, -1);
  }
  const bad = inner.find(isTransactionControl);
  if (bad !== undefined) {
    const words = bad.tokens.slice(0, 2).map((t) => text.slice(t.start, t.end));
    throw new SqlScriptError(
      script.name,
      dbPath,
      `refused: "${words.join(' ')}" inside the script; boxkeeper runs each script in one ` +
        'transaction of its own, so a script may only begin with BEGIN and end with COMMIT. ' +
        'Nothing was run.',
      { line: lineAt(text, bad.start) },
    );
  }
  // From the first to the last statement: comments around them do not change the hash.
  const first = inner[0];
  const last = inner[inner.length - 1];
  const body =
    first === undefined || last === undefined
      ? ''
      : text.slice(first.start, last.end).replace(/\r\n/g, '\n');
  return { body, hash: createHash('sha256').update(body, 'utf8').digest('hex') };
}

const CREATE_LEDGER = `CREATE TABLE IF NOT EXISTS ${LEDGER_TABLE} (
  hash TEXT PRIMARY KEY,
  version TEXT NOT NULL,
  name TEXT NOT NULL,
  applied_at TEXT NOT NULL
)`;

async function rollbackQuietly(db: Database): Promise<void> {
  try {
    await db.exec('ROLLBACK');
  } catch {
    // SQLite already rolled back (some errors do that themselves); nothing is pending.
  }
}

/**
 * Runs a patch's SQL script against the database at `dbPath` exactly once: the body and the
 * ledger row commit together; a script whose hash is in the ledger is skipped
 * (`applied: false`). On any error everything is rolled back and a SqlScriptError names the
 * script, the database and SQLite's message.
 */
export async function applySqlScript(
  sqlite: SqliteAdapter,
  dbPath: string,
  script: SqlScript,
  options: { now?: () => Date } = {},
): Promise<{ applied: boolean; hash: string }> {
  const { body, hash } = prepareSqlScript(script, dbPath);
  const fail = (what: string, err: unknown): SqlScriptError =>
    new SqlScriptError(
      script.name,
      dbPath,
      `${what}: ${errorMessage(err)}; rolled back, nothing of it applied`,
      {
        cause: err,
      },
    );
  let db: Database;
  try {
    db = await sqlite.open(dbPath);
  } catch (err) {
    throw new SqlScriptError(
      script.name,
      dbPath,
      `cannot open the database: ${errorMessage(err)}`,
      {
        cause: err,
      },
    );
  }
  try {
    try {
      await db.exec('BEGIN IMMEDIATE');
    } catch (err) {
      throw new SqlScriptError(
        script.name,
        dbPath,
        `cannot start a transaction: ${errorMessage(err)}`,
        {
          cause: err,
        },
      );
    }
    try {
      await db.exec(CREATE_LEDGER);
      const seen = await db.all(`SELECT 1 FROM ${LEDGER_TABLE} WHERE hash = ?`, [hash]);
      if (seen.length > 0) {
        await db.exec('COMMIT');
        return { applied: false, hash };
      }
    } catch (err) {
      await rollbackQuietly(db);
      throw fail('cannot read the ledger', err);
    }
    try {
      if (body !== '') await db.exec(body);
    } catch (err) {
      await rollbackQuietly(db);
      throw fail('failed', err);
    }
    try {
      await db.run(
        `INSERT INTO ${LEDGER_TABLE} (hash, version, name, applied_at) VALUES (?, ?, ?, ?)`,
        [hash, script.version, script.name, (options.now?.() ?? new Date()).toISOString()],
      );
      await db.exec('COMMIT');
    } catch (err) {
      await rollbackQuietly(db);
      throw fail('cannot record it in the ledger', err);
    }
    return { applied: true, hash };
  } finally {
    // A close failure after COMMIT/ROLLBACK loses nothing; do not let it hide the real outcome.
    await db.close().catch(() => undefined);
  }
}

/** The scripts recorded in the database's ledger, oldest first ([] if there is no ledger). */
export async function listAppliedScripts(
  sqlite: SqliteAdapter,
  dbPath: string,
): Promise<AppliedScript[]> {
  const db = await sqlite.open(dbPath, { readonly: true });
  try {
    const exists = await db.all(`SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?`, [
      LEDGER_TABLE,
    ]);
    if (exists.length === 0) return [];
    return await db.all<AppliedScript>(
      `SELECT hash, version, name, applied_at AS appliedAt FROM ${LEDGER_TABLE} ORDER BY applied_at, rowid`,
    );
  } finally {
    await db.close();
  }
}
