// Enforces the import direction of docs/architecture.md:
// cli → services → machines; services → adapter interfaces; machines → xstate only;
// adapters → node and third-party only; nothing in production imports fixtures/ or test/.
import assert from 'node:assert/strict';
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { dirname, join, relative, resolve, sep } from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');

function sourceFiles(dir: string): string[] {
  const out: string[] = [];
  for (const name of readdirSync(dir)) {
    const full = join(dir, name);
    if (statSync(full).isDirectory()) out.push(...sourceFiles(full));
    else if (/\.(ts|mts|mjs|js)$/.test(name)) out.push(full);
  }
  return out;
}

/** Every module specifier in a file: static imports, re-exports and dynamic imports. */
export function specifiers(source: string): string[] {
  const found: string[] = [];
  const patterns = [
    /\bimport\s+(?:type\s+)?[^'"()]*?\s+from\s+['"]([^'"]+)['"]/g,
    /\bexport\s+(?:type\s+)?[^'"()]*?\s+from\s+['"]([^'"]+)['"]/g,
    /\bimport\s+['"]([^'"]+)['"]/g,
    /\bimport\(\s*['"]([^'"]+)['"]\s*\)/g,
  ];
  for (const re of patterns) for (const m of source.matchAll(re)) found.push(m[1] as string);
  return found;
}

const topOf = (file: string): string => relative(root, file).split(sep)[0] as string;

interface Violation {
  file: string;
  spec: string;
  why: string;
}

function check(layer: string): Violation[] {
  const violations: Violation[] = [];
  for (const file of sourceFiles(join(root, layer))) {
    const text = readFileSync(file, 'utf8');
    for (const spec of specifiers(text)) {
      const rel = relative(root, file);
      if (spec.startsWith('.')) {
        const target = topOf(resolve(dirname(file), spec));
        const allowed: Record<string, string[]> = {
          machines: ['machines'],
          adapters: ['adapters'],
          services: ['services', 'machines', 'adapters'],
          cli: ['cli', 'services', 'machines', 'adapters'],
        };
        if (!(allowed[layer] ?? []).includes(target)) {
          violations.push({ file: rel, spec, why: `${layer}/ may not import ${target}/` });
        }
      } else if (layer === 'machines' && !(spec === 'xstate' || spec.startsWith('xstate/'))) {
        violations.push({ file: rel, spec, why: 'machines/ may import only xstate' });
      }
    }
  }
  return violations;
}

for (const layer of ['machines', 'services', 'adapters', 'cli']) {
  test(`${layer}/ follows the import direction`, () => {
    assert.deepEqual(check(layer), []);
  });
}

// Modules that reach the world themselves; a service must get such things passed in.
const WORLD =
  /^(node:)?(fs|fs\/promises|child_process|net|http|https|dgram|os)$|^(sqlite3|ps-list|tree-kill|pino|pino-pretty|yauzl|yazl)$/;

function touchesWorld(file: string): boolean {
  return specifiers(readFileSync(file, 'utf8')).some((s) => WORLD.test(s));
}

test('services/ get world-touching adapters passed in, importing only their types', () => {
  // A value import of such an adapter would let a service build its own world. Pure adapter
  // modules (errors, the INI reader, output parsers) may be imported as values.
  const bad: Violation[] = [];
  for (const file of sourceFiles(join(root, 'services'))) {
    const text = readFileSync(file, 'utf8');
    for (const m of text.matchAll(/\bimport\s+(?!type\b)([^'"]*?)\s+from\s+['"](\.[^'"]+)['"]/g)) {
      const target = resolve(dirname(file), m[2] as string);
      if (topOf(target) !== 'adapters') continue;
      const names = (m[1] as string)
        .replace(/[{}]/g, '')
        .split(',')
        .map((s) => s.trim());
      const valueNames = names.filter((n) => n !== '' && !n.startsWith('type '));
      if (valueNames.length > 0 && touchesWorld(target)) {
        bad.push({
          file: relative(root, file),
          spec: m[2] as string,
          why: `value import of ${valueNames.join(', ')}`,
        });
      }
    }
  }
  assert.deepEqual(bad, []);
});

test('the world detector recognises adapters that touch the world', () => {
  assert.equal(touchesWorld(join(root, 'adapters', 'processes.ts')), true);
  assert.equal(touchesWorld(join(root, 'adapters', 'ini.ts')), false);
});

test('the checker sees the import forms it claims to police', () => {
  const sample = [
    "import x from './a.ts';",
    "import type { Y } from '../b.ts';",
    "export { z } from './c.ts';",
    "import './d.ts';",
    "const m = await import('./e.ts');",
  ].join('\n');
  assert.deepEqual(specifiers(sample).sort(), ['../b.ts', './a.ts', './c.ts', './d.ts', './e.ts']);
});
