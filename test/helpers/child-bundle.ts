// A test child started many times (the update crash test starts ~100 agents) is bundled once
// per test process: each start then costs a plain Node start (~0.4 CPU s here) instead of tsx's
// loader resolving and loading every module through its hooks (~1.1 CPU s). Only our TypeScript
// goes into the bundle; packages stay in node_modules. The bundle is written under
// node_modules/.cache so that, as from source, node_modules resolves and the agent's install
// is this checkout (its package.json is found above the entry).
import { build } from 'esbuild';
import { mkdir, mkdtemp, rm } from 'node:fs/promises';
import { basename, extname, join } from 'node:path';
import { REPO } from './cli.ts';

export interface ChildBundle {
  /** The bundled entry, to run with `node <file>`. */
  file: string;
  remove(): Promise<void>;
}

export async function bundleChild(entry: string): Promise<ChildBundle> {
  const cache = join(REPO, 'node_modules', '.cache');
  await mkdir(cache, { recursive: true });
  const dir = await mkdtemp(join(cache, 'boxkeeper-test-'));
  const name = basename(entry, extname(entry));
  await build({
    absWorkingDir: REPO,
    // The hash pool starts its worker from a file next to the running module, as in the package.
    entryPoints: { [name]: entry, 'hash-worker': join(REPO, 'adapters', 'hash-worker.ts') },
    outdir: dir,
    outExtension: { '.js': '.mjs' },
    bundle: true,
    packages: 'external',
    format: 'esm',
    platform: 'node',
    target: 'node20',
    logLevel: 'warning',
  });
  return {
    file: join(dir, `${name}.mjs`),
    remove: () => rm(dir, { recursive: true, force: true }),
  };
}
