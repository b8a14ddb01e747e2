// Bundles the CLI into lib/boxkeeper.mjs (+ lazily loaded chunks) for the release packages:
// one file to parse instead of hundreds of module opens (under Wine each costs tens of ms).
// Native and helper binaries stay files next to the bundle: sqlite3's addon is loaded as
// lib/node_sqlite3.node and ps-list finds its Windows helper in lib/vendor/.
import { build, type Plugin } from 'esbuild';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..');

/** sqlite3 looks its addon up through `bindings` in build/ dirs; in a package it sits in lib/. */
const sqliteAddonNextToBundle: Plugin = {
  name: 'sqlite3-addon',
  setup(b) {
    b.onLoad({ filter: /[\\/]sqlite3[\\/]lib[\\/]sqlite3-binding\.js$/ }, () => ({
      contents: "module.exports = require('./node_sqlite3.node');",
      loader: 'js',
    }));
    b.onResolve({ filter: /\.node$/ }, (args) => ({ path: args.path, external: true }));
  },
};

// esbuild's require helper needs a `require` in scope; nothing of ours declares one.
const BANNER = [
  "import { createRequire as __bkRequire } from 'node:module';",
  'const require = __bkRequire(import.meta.url);',
].join('\n');

export async function bundleAgent(libDir: string): Promise<string[]> {
  const result = await build({
    absWorkingDir: ROOT,
    // The hash pool's worker is started from its own file next to the bundle (hash-pool.ts).
    entryPoints: { boxkeeper: 'cli/main.ts', 'hash-worker': 'adapters/hash-worker.ts' },
    outdir: libDir,
    outExtension: { '.js': '.mjs' },
    bundle: true,
    splitting: true,
    format: 'esm',
    platform: 'node',
    target: 'node20',
    minifySyntax: true,
    minifyWhitespace: true,
    legalComments: 'none',
    banner: { js: BANNER },
    // __filename and __dirname for CommonJS dependencies (see cjs-shim.ts).
    inject: ['packaging/cjs-shim.ts'],
    // Optional speed-ups of ws that it loads inside try/catch.
    external: ['bufferutil', 'utf-8-validate'],
    plugins: [sqliteAddonNextToBundle],
    metafile: true,
    logLevel: 'warning',
  });
  return Object.keys(result.metafile.outputs);
}
