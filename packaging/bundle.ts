// Bundles the CLI into lib/boxkeeper.mjs (+ lazily loaded chunks) for the release packages:
// one file to parse instead of hundreds of module opens (under Wine each costs tens of ms).
// Native and helper binaries stay files next to the bundle: sqlite3's addon is loaded as
// lib/node_sqlite3.node and ps-list finds its Windows helper in lib/vendor/.
import { build, type Plugin } from 'esbuild';
import { builtinModules } from 'node:module';
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

/**
 * Node's built-in modules are taken with `process.getBuiltinModule` (Node ≥ 20.16; the package
 * runs its own Node 24) rather than by ES import. An ES import of a built-in builds its module
 * namespace, which reads every export and so runs every lazy getter: `node:http` loads undici
 * (fetch, WebSocket) for its `WebSocket` export, ~12 ms of each start of `run`; `node:fs` loads
 * the promises API with streams and readline. As a CommonJS module, an export is read where it
 * is used (docs/benchmarks.md, Restart after SIGKILL).
 */
const builtinsOnUse: Plugin = {
  name: 'builtins-on-use',
  setup(b) {
    const names = new Set(builtinModules);
    b.onResolve({ filter: /^(node:)?[a-z_/]+$/ }, (args) => {
      const name = args.path.replace(/^node:/, '');
      if (!names.has(name) || args.kind !== 'import-statement') return undefined;
      return { path: `node:${name}`, namespace: 'builtin' };
    });
    b.onLoad({ filter: /.*/, namespace: 'builtin' }, (args) => ({
      contents: `module.exports = process.getBuiltinModule(${JSON.stringify(args.path)});`,
      loader: 'js',
    }));
  },
};

/**
 * zod's `locales` namespace holds its error messages in 64 languages, half of zod's 584 KB in
 * the bundle; the agent never switches from English (its default). Every start of `run` parses
 * the chunk, so it is compiled without them (docs/benchmarks.md, Restart after SIGKILL).
 */
const zodEnglishOnly: Plugin = {
  name: 'zod-english-only',
  setup(b) {
    b.onLoad({ filter: /[\\/]node_modules[\\/]zod[\\/]v4[\\/]locales[\\/]index\.js$/ }, (args) => ({
      contents: "export { default as en } from './en.js';",
      loader: 'js',
      resolveDir: dirname(args.path),
    }));
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
    plugins: [sqliteAddonNextToBundle, builtinsOnUse, zodEnglishOnly],
    metafile: true,
    logLevel: 'warning',
  });
  return Object.keys(result.metafile.outputs);
}
