import { ExitCode } from '../exit-codes.ts';
import { readFile } from 'node:fs/promises';
import { dirname, join, resolve } from 'node:path';
import { isErrnoCode } from '../../adapters/errors.ts';
import { writeFileAtomic } from '../../adapters/fs-atomic.ts';
import { loadDotRenderer } from '../../adapters/graphviz.ts';
import {
  diagramFiles,
  REGENERATE_HINT,
  staleDiagramFiles,
} from '../../services/console/diagram.ts';
import type { CommandArgs } from './index.ts';

async function readOrNull(path: string): Promise<Uint8Array | null> {
  try {
    return await readFile(path);
  } catch (err) {
    if (isErrnoCode(err, 'ENOENT')) return null;
    throw err;
  }
}

/** The boxkeeper checkout containing `from` (its package.json names boxkeeper), else `from`. */
async function repoRoot(from: string): Promise<string> {
  for (let dir = resolve(from); ; dir = dirname(dir)) {
    const pkg = await readOrNull(join(dir, 'package.json'));
    if (pkg !== null) {
      try {
        if (
          (JSON.parse(Buffer.from(pkg).toString('utf8')) as { name?: unknown }).name === 'boxkeeper'
        )
          return dir;
      } catch {
        // not JSON: keep looking
      }
    }
    if (dirname(dir) === dir) return resolve(from);
  }
}

export async function run(args: CommandArgs): Promise<ExitCode> {
  const out =
    typeof args.values.out === 'string'
      ? resolve(args.values.out)
      : join(await repoRoot(process.cwd()), 'docs', 'diagrams');
  const files = diagramFiles(await loadDotRenderer());
  const committed = new Map<string, Uint8Array | null>();
  for (const f of files) committed.set(f.name, await readOrNull(join(out, f.name)));
  const stale = staleDiagramFiles(files, committed);

  if (args.values.check === true) {
    if (stale.length === 0) {
      process.stdout.write(`diagrams in ${out} are up to date (${files.length} files)\n`);
      return ExitCode.ok;
    }
    process.stderr.write(
      `stale diagrams in ${out}:\n${stale.map((n) => `  ${n}`).join('\n')}\n${REGENERATE_HINT}\n`,
    );
    // A check that answered no (11, as health does): nothing is broken, the pictures differ.
    return ExitCode.checkFailed;
  }

  for (const f of files) {
    if (stale.includes(f.name)) await writeFileAtomic(join(out, f.name), f.contents);
  }
  process.stdout.write(
    files
      .map((f) => `${stale.includes(f.name) ? 'wrote    ' : 'unchanged'} ${join(out, f.name)}\n`)
      .join(''),
  );
  return ExitCode.ok;
}
