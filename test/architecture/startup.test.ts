// Start-up stays light: what `boxkeeper --help` loads (cli/main.ts and its static imports) must
// not pull a third-party package, and every command's code is reachable through the table's
// dynamic import (also what esbuild turns into a lazily loaded chunk of the package).
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { builtinModules } from 'node:module';
import { dirname, join, relative, resolve } from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { commands } from '../../cli/commands/index.ts';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');

/** Value imports that load with the module (not `import type`, not `await import()`). */
export function staticValueImports(source: string): string[] {
  const found: string[] = [];
  const patterns = [
    /^\s*import\s+(?!type\s)[^'"()]*?\s+from\s+['"]([^'"]+)['"]/gm,
    /^\s*export\s+(?!type\s)[^'"()]*?\s+from\s+['"]([^'"]+)['"]/gm,
    /^\s*import\s+['"]([^'"]+)['"]/gm,
  ];
  for (const re of patterns) for (const m of source.matchAll(re)) found.push(m[1] as string);
  return found;
}

/**
 * Every module that loads before main() runs, with the bare (package) specifiers and the
 * built-ins they name.
 */
function staticClosure(entry: string): { files: string[]; packages: string[]; builtins: string[] } {
  const seen = new Set<string>();
  const packages = new Set<string>();
  const builtins = new Set<string>();
  const todo = [entry];
  while (todo.length > 0) {
    const file = todo.pop() as string;
    if (seen.has(file)) continue;
    seen.add(file);
    for (const spec of staticValueImports(readFileSync(file, 'utf8'))) {
      if (spec.startsWith('.')) todo.push(resolve(dirname(file), spec));
      else if (spec.startsWith('node:') || builtinModules.includes(spec))
        builtins.add(spec.replace(/^node:/, ''));
      else packages.add(spec);
    }
  }
  return {
    files: [...seen].map((f) => relative(root, f)).sort(),
    packages: [...packages],
    builtins: [...builtins],
  };
}

test('cli/main.ts and what it loads statically import no third-party package', () => {
  const { files, packages } = staticClosure(join(root, 'cli', 'main.ts'));
  assert.deepEqual(packages, [], `loaded at start by ${files.join(', ')}`);
  assert.ok(files.includes('cli/commands/index.ts'), 'the closure was followed');
});

// status and health are what an operator and a monitoring script run most: they read files and
// ask whether the agent's pid lives, so nothing third-party (zod, YAML, pino, xstate) loads.
// Nor crypto or child_process, which load ~30 and ~20 ms of Node's own modules with them
// (docs/benchmarks.md, Start-up): the modules they share with other commands take those at first
// use (process.getBuiltinModule).
test('status, health and what they load statically import no third-party package', () => {
  for (const command of ['status', 'health']) {
    const { files, packages, builtins } = staticClosure(
      join(root, 'cli', 'commands', `${command}.ts`),
    );
    assert.deepEqual(packages, [], `loaded by ${command} through ${files.join(', ')}`);
    for (const heavy of ['crypto', 'child_process'])
      assert.ok(!builtins.includes(heavy), `${command} loads node:${heavy} at start`);
    assert.ok(files.includes('services/agent/agent-files.ts'), 'the closure was followed');
  }
});

test('the closure checker sees value imports only', () => {
  const sample = [
    "import x from './a.ts';",
    "import type { Y } from './b.ts';",
    "import { type Z, w } from './c.ts';",
    "export { v } from './d.ts';",
    "export type { U } from './e.ts';",
    "const m = await import('./f.ts');",
  ].join('\n');
  assert.deepEqual(staticValueImports(sample).sort(), ['./a.ts', './c.ts', './d.ts']);
});

test('every command of the table loads its run on demand', async () => {
  const names = Object.keys(commands);
  assert.ok(names.includes('run') && names.includes('status') && names.includes('check'));
  for (const name of names) {
    const run = await commands[name]?.load();
    assert.equal(typeof run, 'function', `${name}: load() gave ${typeof run}`);
  }
});
