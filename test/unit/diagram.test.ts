// The statechart pictures: the committed docs/diagrams/* must be exactly what the machines
// produce now (regenerated in memory, compared byte for byte), the output must be the same on
// every run, and the pictures must show what docs/architecture.md promises.
import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { dirname, join, resolve } from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { createMachine, type AnyStateMachine } from 'xstate';
import { loadDotRenderer } from '../../adapters/graphviz.ts';
import {
  DIAGRAMS,
  diagramFiles,
  staleDiagramFiles,
  toDot,
  toMermaid,
  type DiagramFile,
} from '../../services/console/diagram.ts';
import { updateMachine } from '../../machines/update.machine.ts';

const DIR = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..', 'docs', 'diagrams');

let cached: DiagramFile[] | undefined;
async function generate(): Promise<DiagramFile[]> {
  cached ??= diagramFiles(await loadDotRenderer());
  return cached;
}

function file(files: DiagramFile[], name: string): string {
  const f = files.find((x) => x.name === name);
  assert.ok(f, `${name} is generated`);
  return f.contents;
}

test('docs/diagrams/ holds exactly what the machines produce now', async () => {
  const files = await generate();
  assert.deepEqual(
    files.map((f) => f.name),
    ['patch.mmd', 'patch.svg', 'service.mmd', 'service.svg', 'update.mmd', 'update.svg'],
  );
  const committed = new Map<string, Uint8Array | null>();
  for (const f of files) {
    committed.set(f.name, await readFile(join(DIR, f.name)).catch(() => null));
  }
  const stale = staleDiagramFiles(files, committed);
  assert.deepEqual(
    stale,
    [],
    `docs/diagrams/ is stale (${stale.join(', ')}): the machines changed. Regenerate the ` +
      'pictures with `npx boxkeeper diagram` (or `node --import tsx cli/main.ts diagram`) ' +
      'and commit docs/diagrams/.',
  );
});

test('the output is deterministic: a second rendering gives the same bytes', async () => {
  const first = await generate();
  const second = diagramFiles(await loadDotRenderer());
  assert.deepEqual(second, first);
});

test('staleness is byte for byte: missing and differing files are reported', () => {
  const files: DiagramFile[] = [
    { name: 'a.mmd', contents: 'x\n' },
    { name: 'b.mmd', contents: 'y\n' },
    { name: 'c.mmd', contents: 'z\n' },
  ];
  const enc = new TextEncoder();
  const committed = new Map<string, Uint8Array | null>([
    ['a.mmd', enc.encode('x\n')],
    ['b.mmd', enc.encode('y\r\n')],
    ['c.mmd', null],
  ]);
  assert.deepEqual(staleDiagramFiles(files, committed), ['b.mmd', 'c.mmd']);
});

/** Every state id of a machine, e.g. 'update.installing.applying'. */
function stateIds(machine: AnyStateMachine): string[] {
  const out: string[] = [];
  const walk = (node: { id: string; states: Record<string, unknown> }): void => {
    for (const child of Object.values(node.states) as Array<typeof node>) {
      out.push(child.id);
      walk(child);
    }
  };
  walk(machine.root);
  return out;
}

test('every state of every machine is drawn, in both formats', () => {
  for (const spec of DIAGRAMS) {
    const mmd = toMermaid(spec.machine, spec.options);
    const dot = toDot(spec.machine, spec.options);
    assert.match(mmd, /^stateDiagram-v2\n/);
    for (const id of stateIds(spec.machine)) {
      const mermaidId = id.split('.').slice(1).join('_');
      assert.match(mmd, new RegExp(`(as ${mermaidId}$|state ${mermaidId} \\{)`, 'm'), id);
      assert.ok(dot.includes(`"${id}"`) || dot.includes(`"cluster_${id}"`), id);
    }
  }
});

test('the update cycle shows invokes, done/error events, named guards and phases', async () => {
  const mmd = toMermaid(updateMachine, DIAGRAMS[0]?.options);
  assert.match(mmd, /state "checking ⟨checkVersion⟩ · READY" as checking/);
  assert.match(mmd, /state "idle ⟨waitForCheck: waitUntil⟩ · READY \(INCEPTION if/);
  assert.match(mmd, /state installing \{\n {4}\[\*\] --> installing_starting/);
  assert.match(mmd, /installing_applying --> installing_finalizing: always \[inline guard\]/);
  assert.match(mmd, /"applying · BACKUP_CREATED" as installing_applying/);
  assert.match(mmd, /"selfUpdating ⟨handOver⟩ · SELF_UPDATE_PENDING"/);
  assert.match(mmd, /"restoring ⟨rollbackSnapshot⟩ · ROLLEDBACK"/);
  assert.match(mmd, /checking --> routingAfterFailure: error\(checkVersion\)$/m);
  assert.match(mmd, /rollingBack_deciding --> rollingBack_restoring: always \[hasBackup\]$/m);
  assert.match(mmd, /rollingBack_deciding --> rollingBack_releasingServices: always \[else\]$/m);
  assert.match(mmd, /idle --> installing: ROLLBACK \[hasLastBackup\]$/m);
  assert.match(mmd, /installing_backingUp --> rollingBack: error\(backup\)$/m);
  assert.match(mmd, /any_state --> any_state: RELOAD_CONFIG$/m);
  // Cross-composite arrows sit at the top level, after both composites are declared.
  const lines = mmd.split('\n');
  assert.ok(
    lines.indexOf('  state rollingBack {') <
      lines.indexOf('  installing_backingUp --> rollingBack: error(backup)'),
  );

  const svg = file(await generate(), 'update.svg');
  assert.match(svg, /^<\?xml/);
  assert.match(svg, /<\/svg>\n$/);
  for (const text of ['done(checkVersion)', 'error(backup)', '[hasBackup]', '⟨checkVersion⟩']) {
    assert.ok(svg.includes(text), text);
  }
});

test('the patch and service machines: nested steps, after() delays, any-state transitions', () => {
  const [, patch, service] = DIAGRAMS;
  assert.ok(patch && service);
  const p = toMermaid(patch.machine, patch.options);
  assert.match(p, /state applying \{/);
  assert.match(p, /"files ⟨replaceFiles⟩ · DOWNLOADED" as applying_files/);
  assert.match(p, /downloading --> pending: error\(download\)$/m);
  assert.match(p, /applying --> reverted: REVERT$/m);
  const s = toMermaid(service.machine, service.options);
  assert.match(s, /backoff --> detecting: after\(backoff\)$/m);
  assert.match(s, /detecting --> running: done\(detect\) \[found\]$/m);
  assert.match(s, /any_state --> stopping: STOP$/m);
  assert.match(s, /stopped --> stopped: STOP \(ignored\)$/m);
  const dot = toDot(patch.machine, patch.options);
  assert.match(dot, /"patch.downloaded" -> "patch.applying.__initial" \[label="APPLY", lhead=/);
});

test('a tiny machine: final states, numeric delays and sorted events', () => {
  const m = createMachine({
    id: 'tiny',
    initial: 'a',
    states: {
      a: { on: { ZED: 'b', ALPHA: 'b' }, after: { 500: 'b' } },
      b: { type: 'final' },
    },
  });
  assert.equal(
    toMermaid(m),
    [
      'stateDiagram-v2',
      '  %% Generated by `boxkeeper diagram` (machine "tiny"). Do not edit:',
      '  %% run `npx boxkeeper diagram` (or `node --import tsx cli/main.ts diagram`) after changing it.',
      '  [*] --> a',
      '  state "a" as a',
      '  state "b" as b',
      '  b --> [*]',
      '  a --> b: after(500ms)',
      '  a --> b: ALPHA',
      '  a --> b: ZED',
      '',
    ].join('\n'),
  );
  assert.match(toDot(m), /"tiny.b" \[label="b", peripheries=2\]/);
  assert.match(toDot(m), /"tiny.a" -> "tiny.b" \[label="after\(500ms\)\\nALPHA\\nZED"\]/);
});
