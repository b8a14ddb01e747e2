// Pictures of the statecharts, made from the machines themselves so they cannot drift from the
// code: Mermaid (stateDiagram-v2, rendered by GitHub and most Markdown viewers) and Graphviz DOT
// (rendered to SVG by adapters/graphviz.ts). Pure: machine in, text out, same bytes every time.
//
// What a picture shows:
// - every state; compound states as composite states (Mermaid) or clusters (DOT);
// - a state's invoked actor as ⟨src⟩ (⟨id: src⟩ when the invoke id differs from the src);
// - an optional per-state annotation, e.g. the update machine's Python PatchCyclePhase (· PHASE);
// - every transition, labelled with its event: `done(<invoke id>)` / `error(<invoke id>)` for
//   an invoked actor's completion or failure, `after(<delay>)` for a delay, `always` for an
//   eventless transition, then `[guard]` for a named guard, `[inline guard]` for an anonymous
//   one and `[else]` for the fallback after guarded candidates of the same event;
// - a transition without a target (handled in place, no state change) as a self-loop, with
//   `(ignored)` when it has no actions either (it only shields the event from a parent);
// - transitions declared on the machine itself as leaving a pseudo-state "any state".
//
// Order: states in document order (it is the reading order and gives the clearest layout);
// the events of a state sorted (always, done, error, after, then named events alphabetically);
// the candidates of one event in their declared order, which is their priority.
import type { AnyStateMachine } from 'xstate';
import { patchMachine, patchStatusOf } from '../../machines/patch.machine.ts';
import { serviceMachine } from '../../machines/service.machine.ts';
import {
  phaseOf,
  tagsOfValue,
  updateMachine,
  type VersionEntry,
} from '../../machines/update.machine.ts';

// ---- the parts of XState's state nodes the pictures read -----------------------------------

interface TransitionLike {
  readonly eventType: string;
  readonly target?: readonly { readonly id: string }[] | undefined;
  readonly guard?: unknown;
  readonly actions: readonly unknown[];
  /** Set by XState on `after` transitions. */
  readonly delay?: unknown;
}

interface StateNodeLike {
  readonly id: string;
  readonly key: string;
  readonly type: 'atomic' | 'compound' | 'parallel' | 'final' | 'history';
  readonly states: Readonly<Record<string, StateNodeLike>>;
  /** `machine.definition` for this node; it leaves out the eventless transitions, hence `always`. */
  readonly definition: {
    readonly initial?: { readonly target: readonly { readonly id: string }[] } | undefined;
    readonly transitions: readonly TransitionLike[];
    readonly invoke: readonly { readonly id: string; readonly src: unknown }[];
  };
  readonly always?: readonly TransitionLike[] | undefined;
}

/** Annotation of one state, given its path of keys below the machine (e.g. ['installing', 'applying']). */
export type Annotate = (path: readonly string[], leaf: boolean) => string | undefined;

export interface DiagramOptions {
  /** Shown as the picture's title and in the Mermaid header comment. */
  title?: string;
  /** Where the machine is defined (header comment). */
  source?: string;
  annotate?: Annotate;
  /** Graphviz layout direction (default LR; TB suits tall charts such as the update cycle). */
  rankdir?: 'LR' | 'TB';
}

// ---- a neutral model of the chart ---------------------------------------------------------

interface StateModel {
  id: string;
  key: string;
  path: string[];
  kind: StateNodeLike['type'];
  label: string;
  actors: string | undefined;
  note: string | undefined;
  children: StateModel[];
  initial: string[];
}

interface EdgeModel {
  from: string;
  to: string;
  label: string;
  kind: 'done' | 'error' | 'after' | 'always' | 'event';
}

interface ChartModel {
  machineId: string;
  root: StateModel;
  byId: Map<string, StateModel>;
  parentOf: Map<string, string>;
  edges: EdgeModel[];
  /** Whether the machine itself has transitions (drawn from the "any state" pseudo-state). */
  hasAny: boolean;
}

const ANY = '*any*';

function guardName(guard: unknown): string | undefined {
  if (guard === undefined) return undefined;
  if (typeof guard === 'string') return guard;
  if (typeof guard === 'object' && guard !== null && 'type' in guard) {
    const type = guard.type;
    if (typeof type === 'string') return type;
  }
  return 'inline guard';
}

function eventLabel(t: TransitionLike): { text: string; kind: EdgeModel['kind'] } {
  const e = t.eventType;
  if (e === '') return { text: 'always', kind: 'always' };
  if (e.startsWith('xstate.done.actor.'))
    return { text: `done(${e.slice('xstate.done.actor.'.length)})`, kind: 'done' };
  if (e.startsWith('xstate.error.actor.'))
    return { text: `error(${e.slice('xstate.error.actor.'.length)})`, kind: 'error' };
  if (e.startsWith('xstate.done.state.'))
    return { text: `done(${e.slice('xstate.done.state.'.length)})`, kind: 'done' };
  if (e.startsWith('xstate.after.')) {
    const delay = typeof t.delay === 'number' ? `${t.delay}ms` : String(t.delay);
    return { text: `after(${delay})`, kind: 'after' };
  }
  return { text: e, kind: 'event' };
}

const KIND_ORDER: Record<EdgeModel['kind'], number> = {
  always: 0,
  done: 1,
  error: 2,
  after: 3,
  event: 4,
};

function compareText(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

function actorsOf(node: StateNodeLike): string | undefined {
  const parts = node.definition.invoke.map((inv) => {
    const src = typeof inv.src === 'string' ? inv.src : inv.id;
    return inv.id === src ? src : `${inv.id}: ${src}`;
  });
  return parts.length === 0 ? undefined : parts.map((p) => `⟨${p}⟩`).join(' ');
}

function buildState(
  node: StateNodeLike,
  path: string[],
  options: DiagramOptions,
  byId: Map<string, StateModel>,
  parentOf: Map<string, string>,
): StateModel {
  const childNodes = Object.values(node.states);
  const leaf = childNodes.length === 0;
  const state: StateModel = {
    id: node.id,
    key: node.key,
    path,
    kind: node.type,
    label: node.key,
    actors: actorsOf(node),
    note: path.length === 0 ? undefined : options.annotate?.(path, leaf),
    children: [],
    initial: (node.definition.initial?.target ?? []).map((t) => t.id),
  };
  byId.set(state.id, state);
  for (const child of childNodes) {
    parentOf.set(child.id, node.id);
    state.children.push(buildState(child, [...path, child.key], options, byId, parentOf));
  }
  return state;
}

function collectEdges(node: StateNodeLike, isRoot: boolean, edges: EdgeModel[]): void {
  const from = isRoot ? ANY : node.id;
  const groups = new Map<string, TransitionLike[]>();
  for (const t of [...(node.always ?? []), ...node.definition.transitions]) {
    const list = groups.get(t.eventType) ?? [];
    list.push(t);
    groups.set(t.eventType, list);
  }
  const sorted = [...groups.values()]
    .map((list) => ({ list, ev: eventLabel(list[0] as TransitionLike) }))
    .sort(
      (a, b) => KIND_ORDER[a.ev.kind] - KIND_ORDER[b.ev.kind] || compareText(a.ev.text, b.ev.text),
    );
  for (const { list, ev } of sorted) {
    let guardedBefore = false;
    for (const t of list) {
      const guard = guardName(t.guard);
      const suffix =
        guard !== undefined ? ` [${guard}]` : guardedBefore && list.length > 1 ? ' [else]' : '';
      if (guard !== undefined) guardedBefore = true;
      const targets = (t.target ?? []).map((x) => x.id).sort(compareText);
      if (targets.length === 0) {
        const ignored = t.actions.length === 0 ? ' (ignored)' : '';
        edges.push({ from, to: from, label: `${ev.text}${suffix}${ignored}`, kind: ev.kind });
      }
      for (const to of targets)
        edges.push({ from, to, label: `${ev.text}${suffix}`, kind: ev.kind });
    }
  }
  for (const child of Object.values(node.states)) collectEdges(child, false, edges);
}

function model(machine: AnyStateMachine, options: DiagramOptions): ChartModel {
  const rootNode: StateNodeLike = machine.root;
  const byId = new Map<string, StateModel>();
  const parentOf = new Map<string, string>();
  const root = buildState(rootNode, [], options, byId, parentOf);
  const edges: EdgeModel[] = [];
  collectEdges(rootNode, true, edges);
  return {
    machineId: machine.id,
    root,
    byId,
    parentOf,
    edges,
    hasAny: edges.some((e) => e.from === ANY),
  };
}

function ancestors(chart: ChartModel, id: string): string[] {
  const out: string[] = [];
  for (let p = chart.parentOf.get(id); p !== undefined; p = chart.parentOf.get(p)) out.push(p);
  return out;
}

/** The innermost compound state containing both ends (the root for "any state"). */
function commonParent(chart: ChartModel, a: string, b: string): string {
  const root = chart.root.id;
  if (a === ANY || b === ANY) return root;
  const up = new Set(ancestors(chart, a));
  for (const p of ancestors(chart, b)) if (up.has(p)) return p;
  return root;
}

function headerLines(chart: ChartModel, options: DiagramOptions): string[] {
  const from = options.source === undefined ? '' : ` from ${options.source}`;
  return [
    `Generated by \`boxkeeper diagram\`${from} (machine "${chart.machineId}"). Do not edit:`,
    'run `npx boxkeeper diagram` (or `node --import tsx cli/main.ts diagram`) after changing it.',
  ];
}

// ---- Mermaid --------------------------------------------------------------------------------

/** Mermaid state ids: the state's path below the machine, joined by `_`. */
function mermaidId(chart: ChartModel, id: string): string {
  if (id === ANY) return 'any_state';
  const state = chart.byId.get(id);
  const path = state?.path ?? [id];
  return path.join('_').replace(/[^A-Za-z0-9_]/g, '_');
}

function mermaidText(s: string): string {
  // `;` ends a statement and `#` starts an entity code in Mermaid; `"` would end the label.
  return s.replace(/[;#"]/g, ' ').replace(/\s+/g, ' ').trim();
}

function leafLabel(state: StateModel): string {
  return [state.label, state.actors, state.note === undefined ? undefined : `· ${state.note}`]
    .filter((p) => p !== undefined)
    .join(' ');
}

export function toMermaid(machine: AnyStateMachine, options: DiagramOptions = {}): string {
  const chart = model(machine, options);
  const lines: string[] = ['stateDiagram-v2'];
  for (const h of headerLines(chart, options)) lines.push(`  %% ${h}`);
  if (options.title !== undefined) lines.push(`  %% ${options.title}`);

  const edgesAt = new Map<string, EdgeModel[]>();
  for (const e of chart.edges) {
    const at = commonParent(chart, e.from, e.to);
    const list = edgesAt.get(at) ?? [];
    list.push(e);
    edgesAt.set(at, list);
  }

  const emit = (state: StateModel, indent: string): void => {
    for (const target of state.initial) lines.push(`${indent}[*] --> ${mermaidId(chart, target)}`);
    state.children.forEach((child, i) => {
      if (state.kind === 'parallel' && i > 0) lines.push(`${indent}--`);
      const id = mermaidId(chart, child.id);
      if (child.children.length > 0) {
        // Composite states keep a plain id as their title: Mermaid mishandles described ones.
        lines.push(`${indent}state ${id} {`);
        emit(child, `${indent}  `);
        lines.push(`${indent}}`);
        const extra = [child.actors, child.note === undefined ? undefined : `· ${child.note}`]
          .filter((p) => p !== undefined)
          .join(' ');
        if (extra !== '') lines.push(`${indent}note right of ${id}: ${mermaidText(extra)}`);
      } else if (child.kind === 'history') {
        lines.push(`${indent}state "H" as ${id}`);
      } else {
        lines.push(`${indent}state "${mermaidText(leafLabel(child))}" as ${id}`);
      }
      if (child.kind === 'final') lines.push(`${indent}${id} --> [*]`);
    });
    if (state === chart.root && chart.hasAny) lines.push(`${indent}state "any state" as any_state`);
    for (const e of edgesAt.get(state.id) ?? []) {
      lines.push(
        `${indent}${mermaidId(chart, e.from)} --> ${mermaidId(chart, e.to)}: ${mermaidText(e.label)}`,
      );
    }
  };
  emit(chart.root, '  ');
  return `${lines.join('\n')}\n`;
}

// ---- Graphviz DOT ---------------------------------------------------------------------------

function dotString(s: string): string {
  return `"${s.replace(/\\/g, '\\\\').replace(/"/g, '\\"').replace(/\n/g, '\\n')}"`;
}

const anchorOf = (id: string): string => `${id}.__initial`;
const clusterOf = (id: string): string => `cluster_${id}`;

export function toDot(machine: AnyStateMachine, options: DiagramOptions = {}): string {
  const chart = model(machine, options);
  const isCompound = (id: string): boolean =>
    (chart.byId.get(id)?.children.length ?? 0) > 0 && id !== chart.root.id;
  const lines: string[] = [`digraph ${dotString(chart.machineId)} {`];
  for (const h of headerLines(chart, options)) lines.push(`  // ${h}`);
  const title = options.title ?? chart.machineId;
  lines.push(
    `  graph [rankdir=${options.rankdir ?? 'LR'}, compound=true, newrank=true, nodesep=0.25, ranksep=0.45, fontname="Helvetica", fontsize=13, labelloc=t, label=${dotString(title)}];`,
    '  node [shape=box, style="rounded,filled", fillcolor="#f4f6fa", color="#44546a", fontname="Helvetica", fontsize=10];',
    '  edge [color="#44546a", fontcolor="#222222", fontname="Helvetica", fontsize=9, arrowsize=0.7];',
  );

  const emit = (state: StateModel, indent: string): void => {
    if (state.initial.length > 0 || state.children.length > 0) {
      const anchor = state === chart.root ? '__start' : anchorOf(state.id);
      lines.push(
        `${indent}${dotString(anchor)} [label="", shape=point, width=0.1, style=filled, fillcolor="#222222", color="#222222"];`,
      );
      for (const target of state.initial) {
        const head = isCompound(target) ? anchorOf(target) : target;
        const lhead = isCompound(target) ? `, lhead=${dotString(clusterOf(target))}` : '';
        lines.push(
          `${indent}${dotString(anchor)} -> ${dotString(head)} [color="#222222"${lhead}];`,
        );
      }
    }
    for (const child of state.children) {
      if (child.children.length > 0) {
        const label = [
          child.label,
          child.actors,
          child.note === undefined ? undefined : `· ${child.note}`,
        ]
          .filter((p) => p !== undefined)
          .join('  ');
        const style = child.kind === 'parallel' ? 'rounded,dashed' : 'rounded';
        lines.push(
          `${indent}subgraph ${dotString(clusterOf(child.id))} {`,
          `${indent}  graph [label=${dotString(label)}, style=${dotString(style)}, color="#7f8c9d", fontsize=11, labeljust=l];`,
        );
        emit(child, `${indent}  `);
        lines.push(`${indent}}`);
      } else {
        const label = [
          child.label,
          child.actors,
          child.note === undefined ? undefined : `· ${child.note}`,
        ]
          .filter((p) => p !== undefined)
          .join('\n');
        const extra =
          child.kind === 'final'
            ? ', peripheries=2'
            : child.kind === 'history'
              ? ', shape=circle'
              : '';
        lines.push(`${indent}${dotString(child.id)} [label=${dotString(label)}${extra}];`);
      }
    }
  };
  emit(chart.root, '  ');
  if (chart.hasAny) {
    lines.push(
      `  ${dotString(ANY)} [label="any state", style="rounded,dashed", fillcolor="#ffffff"];`,
    );
  }

  // One arrow per (from, to): the labels of parallel transitions stacked on it.
  const merged = new Map<
    string,
    { from: string; to: string; labels: string[]; kinds: Set<string> }
  >();
  for (const e of chart.edges) {
    const key = `${e.from}\u0000${e.to}`;
    const m = merged.get(key) ?? { from: e.from, to: e.to, labels: [], kinds: new Set<string>() };
    m.labels.push(e.label);
    m.kinds.add(e.kind);
    merged.set(key, m);
  }
  for (const m of merged.values()) {
    const attrs: string[] = [`label=${dotString(m.labels.join('\n'))}`];
    let tail = m.from;
    let head = m.to;
    if (m.from !== m.to && isCompound(m.from)) {
      tail = anchorOf(m.from);
      if (!ancestors(chart, m.to).includes(m.from))
        attrs.push(`ltail=${dotString(clusterOf(m.from))}`);
    }
    if (m.from !== m.to && isCompound(m.to)) {
      head = anchorOf(m.to);
      if (!ancestors(chart, m.from).includes(m.to))
        attrs.push(`lhead=${dotString(clusterOf(m.to))}`);
    }
    if (m.kinds.size === 1 && m.kinds.has('error'))
      attrs.push('color="#b03a2e"', 'fontcolor="#b03a2e"');
    if (m.kinds.size === 1 && m.kinds.has('always')) attrs.push('style=dashed');
    lines.push(`  ${dotString(tail)} -> ${dotString(head)} [${attrs.join(', ')}];`);
  }
  lines.push('}');
  return `${lines.join('\n')}\n`;
}

// ---- boxkeeper's pictures -------------------------------------------------------------------

export interface DiagramSpec {
  /** Base name of the files (`<name>.mmd`, `<name>.svg`). */
  name: string;
  machine: AnyStateMachine;
  options: DiagramOptions;
}

/** A version whose download is not complete: the one context fact `phaseOf` looks at. */
const INCOMPLETE: VersionEntry = {
  versionCode: '',
  versionNum: '',
  fileMd5: '',
  remark: '',
  argumentConfigMap: {},
  id: '',
  status: 'PENDING',
  agentBuild: null,
};

/** A state value for a path of keys: ['a', 'b'] → { a: 'b' }. */
function valueOf(path: readonly string[]): unknown {
  const [head, ...rest] = path;
  return rest.length === 0 ? head : { [head ?? '']: valueOf(rest) };
}

/** The Python PatchCyclePhase of each leaf state of the update cycle. */
export const updatePhaseNote: Annotate = (path, leaf) => {
  if (!leaf) return undefined;
  const tags = tagsOfValue(valueOf(path));
  const phase = phaseOf(tags);
  const withIncomplete = phaseOf(tags, { versions: [INCOMPLETE] });
  return phase === withIncomplete ? phase : `${phase} (${withIncomplete} if downloads pending)`;
};

/** The Python PatchStatus of each leaf state of a version. */
export const patchStatusNote: Annotate = (path, leaf) =>
  leaf ? patchStatusOf(valueOf(path)) : undefined;

export const DIAGRAMS: readonly DiagramSpec[] = [
  {
    name: 'update',
    machine: updateMachine,
    options: {
      title: 'Update cycle (machines/update.machine.ts) · PatchCyclePhase per state',
      source: 'machines/update.machine.ts',
      annotate: updatePhaseNote,
      rankdir: 'TB',
    },
  },
  {
    name: 'patch',
    machine: patchMachine,
    options: {
      title: 'One version of an update (machines/patch.machine.ts) · PatchStatus per state',
      source: 'machines/patch.machine.ts',
      annotate: patchStatusNote,
    },
  },
  {
    name: 'service',
    machine: serviceMachine,
    options: {
      title: 'Supervision of one box service (machines/service.machine.ts)',
      source: 'machines/service.machine.ts',
    },
  },
];

/** Renders DOT text to SVG text (adapters/graphviz.ts). */
export type DotRenderer = (dot: string) => string;

export interface DiagramFile {
  /** File name inside the diagrams directory, e.g. `update.svg`. */
  name: string;
  contents: string;
}

/** Every file of docs/diagrams/, sorted by name. */
export function diagramFiles(render: DotRenderer, specs = DIAGRAMS): DiagramFile[] {
  const files: DiagramFile[] = [];
  for (const spec of specs) {
    files.push({ name: `${spec.name}.mmd`, contents: toMermaid(spec.machine, spec.options) });
    const svg = render(toDot(spec.machine, spec.options));
    files.push({ name: `${spec.name}.svg`, contents: svg.endsWith('\n') ? svg : `${svg}\n` });
  }
  return files.sort((a, b) => compareText(a.name, b.name));
}

/** The names of the files whose committed bytes differ from `files` (or that are missing). */
export function staleDiagramFiles(
  files: readonly DiagramFile[],
  committed: ReadonlyMap<string, Uint8Array | null>,
): string[] {
  const encoder = new TextEncoder();
  return files
    .filter((f) => {
      const have = committed.get(f.name) ?? null;
      if (have === null) return true;
      const want = encoder.encode(f.contents);
      return have.length !== want.length || want.some((byte, i) => have[i] !== byte);
    })
    .map((f) => f.name);
}

export const REGENERATE_HINT =
  'run `npx boxkeeper diagram` (or `node --import tsx cli/main.ts diagram`) and commit docs/diagrams/';
