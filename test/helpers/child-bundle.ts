// A test child started many times (the update crash test starts ~100 agents, the e2e tests run
// the CLI a few hundred times) is bundled once per test process: each start then costs a plain
// Node start (~0.4 CPU s here) instead of tsx's loader resolving and loading every module
// through its hooks (~1.1 CPU s). Only our TypeScript goes into the bundle; packages stay in
// node_modules. The bundle is written under node_modules/.cache so that, as from source,
// node_modules resolves and the agent's install is this checkout (its package.json is found
// above the entry).
import type { BuildOptions } from 'esbuild';
import { createRequire } from 'node:module';
import { mkdirSync, mkdtempSync, readdirSync, rmSync, statSync } from 'node:fs';
import { rm } from 'node:fs/promises';
import { basename, dirname, extname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

export const REPO = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');
/** tsx's ESM loader, so children run the current TypeScript source rather than dist/. */
export const TSX_LOADER = import.meta.resolve('tsx');
const CACHE = join(REPO, 'node_modules', '.cache');

export interface ChildBundle {
  /** The bundled entry, to run with `node <file>`. */
  file: string;
  remove(): Promise<void>;
}

const PREFIX = 'boxkeeper-test-';
const STALE_MS = 24 * 3600_000;

/**
 * A dir under the cache for one bundle. Bundles of test processes that were killed (their exit
 * handler never ran) are swept here once they are a day old.
 */
function bundleDir(): string {
  mkdirSync(CACHE, { recursive: true });
  for (const name of readdirSync(CACHE)) {
    if (!name.startsWith(PREFIX)) continue;
    const dir = join(CACHE, name);
    try {
      if (Date.now() - statSync(dir).mtimeMs > STALE_MS)
        rmSync(dir, { recursive: true, force: true });
    } catch {
      // Another test process swept it first.
    }
  }
  return mkdtempSync(join(CACHE, PREFIX));
}

function options(entry: string, name: string, outdir: string): BuildOptions {
  return {
    absWorkingDir: REPO,
    // The hash pool starts its worker from a file next to the running module, as in the package.
    entryPoints: { [name]: entry, 'hash-worker': join(REPO, 'adapters', 'hash-worker.ts') },
    outdir,
    outExtension: { '.js': '.mjs' },
    bundle: true,
    packages: 'external',
    format: 'esm',
    platform: 'node',
    target: 'node20',
    logLevel: 'warning',
  };
}

/** `name`: the bundle's file name without .mjs (default: the entry's). */
export async function bundleChild(entry: string, name?: string): Promise<ChildBundle> {
  const dir = bundleDir();
  const base = name ?? basename(entry, extname(entry));
  const { build } = await import('esbuild');
  await build(options(entry, base, dir));
  return {
    file: join(dir, `${base}.mjs`),
    remove: () => rm(dir, { recursive: true, force: true }),
  };
}

/**
 * The same, built synchronously and removed when this process exits: for helpers that start
 * a child synchronously and are used by many tests of a file.
 */
export function bundleChildSync(entry: string, name?: string): string {
  const dir = bundleDir();
  process.once('exit', () => rmSync(dir, { recursive: true, force: true }));
  const base = name ?? basename(entry, extname(entry));
  // Taken at first use: crash children import this module (through snapshot-crash.ts), and
  // loading esbuild would slow each of their starts.
  const { buildSync } = createRequire(import.meta.url)('esbuild') as typeof import('esbuild');
  buildSync(options(entry, base, dir));
  return join(dir, `${base}.mjs`);
}

const bundled = new Map<string, string>();

/**
 * The Node arguments that start `entry`: its bundle (built on first use in this process), or
 * the TypeScript through tsx with BOXKEEPER_TEST_FROM_SOURCE=1, for stack traces that point
 * into the source.
 */
export function childCommand(entry: string, name?: string): string[] {
  if (process.env.BOXKEEPER_TEST_FROM_SOURCE === '1') return ['--import', TSX_LOADER, entry];
  let file = bundled.get(entry);
  if (file === undefined) {
    file = bundleChildSync(entry, name);
    bundled.set(entry, file);
  }
  return [file];
}
