// State groups live once, as tags on the update machine's states (machines/phases.ts UpdateTag):
// no code outside machines/ names a state of the update cycle in a string to decide something.
// Comments are left out; so is the console page, which only draws the chart (it lights the
// node whose title is the current state).
import assert from 'node:assert/strict';
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import type { AnyStateNode } from 'xstate';
import { updateMachine } from '../../machines/update.machine.ts';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');

function sourceFiles(dir: string): string[] {
  return readdirSync(dir).flatMap((name) => {
    const full = join(dir, name);
    if (statSync(full).isDirectory()) return sourceFiles(full);
    return name.endsWith('.ts') ? [full] : [];
  });
}

function statePaths(node: AnyStateNode, prefix: string[] = []): string[] {
  return Object.entries(node.states).flatMap(([key, child]) => {
    const path = [...prefix, key];
    return [path.join('.'), ...statePaths(child, path)];
  });
}

/** The text without // and /* comments (string contents kept). */
function code(source: string): string {
  return source.replace(/\/\*[\s\S]*?\*\//g, '').replace(/(^|[^:'"`])\/\/.*$/gm, '$1');
}

test('no state path of the update machine is spelled out in services/ or cli/', () => {
  const paths = statePaths(updateMachine.root);
  assert.ok(paths.length > 30, `the walk found the states (${paths.length})`);
  const found: string[] = [];
  for (const file of [...sourceFiles(join(root, 'services')), ...sourceFiles(join(root, 'cli'))]) {
    if (file.endsWith('console-page.ts')) continue;
    const text = code(readFileSync(file, 'utf8'));
    for (const p of paths) {
      const literal = new RegExp(`['"\`]${p.replace(/\./g, '\\.')}(\\.|['"\`])`, 'g');
      for (const m of text.matchAll(literal)) {
        const line = text.slice(0, m.index).split('\n').length;
        found.push(`${relative(root, file)}:${line} ${m[0]}`);
      }
    }
  }
  assert.deepEqual(found, [], 'ask the snapshot (hasTag, UpdateStatus.tags) instead');
});

/** The state node at a dotted path. */
const nodeAt = (path: string): AnyStateNode =>
  path.split('.').reduce<AnyStateNode>((n, k) => n.states[k] as AnyStateNode, updateMachine.root);

/** A state's tags with those of its ancestors (as a snapshot in it has them). */
function tagsOf(path: string): Set<string> {
  const keys = path.split('.');
  return new Set(keys.flatMap((_, i) => nodeAt(keys.slice(0, i + 1).join('.')).tags));
}

const leaves = () =>
  statePaths(updateMachine.root).filter((p) => Object.keys(nodeAt(p).states).length === 0);

test('every leaf state of the update cycle has one phase tag; the groups are the documented ones', () => {
  for (const p of leaves()) {
    const phases = [...tagsOf(p)].filter((t) => t.startsWith('phase:'));
    assert.equal(phases.length, 1, `${p}: one phase tag, got ${phases.join(', ') || 'none'}`);
  }
  const withTag = (tag: string) => leaves().filter((p) => tagsOf(p).has(tag));
  assert.deepEqual(withTag('settled'), ['idle', 'awaitingInstall']);
  assert.deepEqual(withTag('servicesDown'), [
    'installing.backingUp',
    'installing.applying',
    'installing.finalizing',
    'installing.selfUpdating',
    'installing.selfUpdated',
    'rollingBack.restoring',
    'rollingBack.restoreWaiting',
  ]);
  assert.deepEqual(withTag('selfUpdate'), ['installing.selfUpdating', 'installing.selfUpdated']);
  assert.ok(withTag('installStep').every((p) => p.startsWith('installing.')));
});
