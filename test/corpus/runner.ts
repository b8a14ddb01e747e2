// The bad-input corpus's one loop. Each input kind is a table of cases (data) plus how to lay a
// case out in a temp dir and run it through the real code path. For every case the loop asserts
// (a) the clear error: a typed error (or the documented refusal text) that names the file, field
// or request and says what was expected, with no stack trace and of a readable length, and
// (b) that nothing changed: every file in the temp dir is byte-identical afterwards, and no temp
// file is left, except what the kind documents (e.g. patch.meta set aside under a new name).
import assert from 'node:assert/strict';
import { mkdtemp, readdir, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, relative, sep } from 'node:path';
import { describe, test } from 'node:test';

export interface CorpusCase {
  /** What is wrong with the input (the test's name). */
  name: string;
  /** The clear error: names the file, field or request, and what was expected. */
  expect: RegExp;
}

/** Every file below a dir: relative path ('/'-separated) → bytes as hex (directories end in '/'). */
export type Tree = Map<string, string>;

export interface CorpusKind<C extends CorpusCase, P = unknown> {
  kind: string;
  cases: readonly C[];
  /** Writes the case's input (and the files around it) into `dir`. */
  prepare(c: C, dir: string): Promise<P>;
  /**
   * Runs the real code on it. Throws the error it gives, or returns the refusal text for code
   * that documents a refusal without throwing (a patch.meta set aside, a settings warning).
   */
  run(c: C, dir: string, prepared: P): Promise<string | undefined>;
  /** The error types a clear refusal may have (never TypeError, RangeError, a bare Error…). */
  errorTypes: ReadonlyArray<abstract new (...args: never[]) => Error>;
  /** What the message must contain besides the case's pattern (the file path, the endpoint). */
  subject(c: C, dir: string, prepared: P): string;
  /** The files expected afterwards, from those before (default: unchanged). */
  after?(before: Tree, c: C, dir: string, prepared: P): Tree;
}

const MAX_MESSAGE = 4096;

// Names of files a write leaves while in progress: none may be left behind.
const TEMP = /\.bk-tmp-|\.bk-extract$|\.tmp$/;

export async function treeOf(dir: string): Promise<Tree> {
  const out: Tree = new Map();
  const walk = async (d: string) => {
    for (const e of await readdir(d, { withFileTypes: true })) {
      const p = join(d, e.name);
      const rel = relative(dir, p).split(sep).join('/');
      if (e.isDirectory()) {
        out.set(`${rel}/`, '');
        await walk(p);
      } else out.set(rel, (await readFile(p)).toString('hex'));
    }
  };
  await walk(dir);
  return new Map([...out].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)));
}

/** A tree's listing with short digests, for readable assertion diffs. */
function listing(tree: Tree): string[] {
  return [...tree].map(([p, hex]) =>
    p.endsWith('/') ? p : `${p} (${hex.length / 2} bytes, ${hex.slice(0, 16)}…${hex.slice(-8)})`,
  );
}

/** One test per case, all through the same loop. */
export function runCorpus<C extends CorpusCase, P>(k: CorpusKind<C, P>): void {
  const names = new Set<string>();
  for (const c of k.cases) {
    assert.ok(!names.has(c.name), `${k.kind}: case "${c.name}" is listed twice`);
    names.add(c.name);
  }
  void describe(`corpus: ${k.kind} (${k.cases.length} cases)`, () => {
    for (const c of k.cases) {
      void test(c.name, async (t) => {
        const dir = await mkdtemp(join(tmpdir(), 'bk-corpus-'));
        t.after(() => rm(dir, { recursive: true, force: true }));
        const prepared = await k.prepare(c, dir);
        const before = await treeOf(dir);

        let message: string;
        try {
          const refusal = await k.run(c, dir, prepared);
          assert.ok(refusal !== undefined, 'the input was accepted; expected a refusal');
          message = refusal;
        } catch (err) {
          assert.ok(
            k.errorTypes.some((type) => err instanceof type),
            `expected a clear ${k.errorTypes.map((e) => e.name).join(' or ')}, got: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}`,
          );
          message = (err as Error).message;
        }
        assert.match(message, c.expect);
        const subject = k.subject(c, dir, prepared);
        assert.ok(message.includes(subject), `the message names ${subject}: ${message}`);
        assert.doesNotMatch(message, /\n\s+at .+:\d+:\d+/, 'no stack trace in the message');
        assert.ok(message.length <= MAX_MESSAGE, `a readable message (${message.length} chars)`);

        const after = await treeOf(dir);
        const expected = k.after?.(before, c, dir, prepared) ?? before;
        assert.deepEqual(listing(after), listing(expected), 'nothing changed');
        assert.deepEqual(after, expected, 'every file byte-identical');
        assert.deepEqual(
          [...after.keys()].filter((p) => TEMP.test(p.replace(/\/$/, ''))),
          [],
          'no temp file left',
        );
      });
    }
  });
}
