// Corpus: patch.meta, loaded by loadPatchMeta from a real patch dir. A file that cannot be used
// is not an error that stops the agent: it is set aside as patch.meta.rejected-<time> (bytes
// unchanged) and the reason, naming patch.meta and what is wrong, starts a reconcile
// (services/update/update-store.ts). Everything else in the patch dir stays as it was.
import assert from 'node:assert/strict';
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { before } from 'node:test';
import { createActor, fromPromise } from 'xstate';
import { nodePatchFs } from '../../adapters/patch-fs.ts';
import { withEffects, type UpdatePolicy } from '../../machines/update.machine.ts';
import { DurableStore, type Envelope } from '../../services/update/durable.ts';
import {
  loadPatchMeta,
  MACHINE_ID,
  MACHINE_VERSION,
  type PersistedSnapshot,
} from '../../services/update/update-store.ts';
import { runCorpus, type CorpusCase, type Tree } from './runner.ts';

const POLICY: UpdatePolicy = {
  checkIntervalMs: 60_000,
  checkJitterMs: 0,
  healthTimeoutMs: 30_000,
  healthSettleMs: 1_000,
  callsRetryMs: 5_000,
  retryDelayMs: 5_000,
  maxFailedInstalls: 3,
};
const NOW = new Date('2026-05-04T03:02:01.123Z');
const REJECTED = 'patch.meta.rejected-20260504T030201Z';

/** A Python-era patch.meta (§4 of the reference), as the tool wrote it, to spoil. */
const PYTHON = {
  state: 3,
  list: [
    {
      version_code: '9e9763d2baf4477180991667d19fe35d',
      version_num: 'V1.8',
      file_MD5: 'cd9f1d57fd7b792587d29e7826f4df0e',
      remark: 'self-update test',
      status: 2,
      argument_config_map: {},
    },
  ],
  retries: 5,
  mark: 1,
  self_update_version: null,
};
type Python = typeof PYTHON & Record<string, unknown>;
type Version = (typeof PYTHON.list)[number] & Record<string, unknown>;

/** PYTHON changed by `spoil` (a deep copy). */
function python(spoil: (m: Python) => void): string {
  const m = structuredClone(PYTHON) as Python;
  spoil(m);
  return JSON.stringify(m);
}
const pyVersion = (m: Python) => m.list[0] as Version;

type Env = Envelope<PersistedSnapshot>;
/** A patch.meta boxkeeper wrote (a system downloading V1.8), built before the cases run. */
let validEnvelope: Env | undefined;

before(async () => {
  let text = '';
  const pending: Array<(v: unknown) => void> = [];
  const machine = withEffects(() =>
    fromPromise(() => new Promise((resolve) => pending.push(resolve))),
  );
  const store = new DurableStore({
    machineId: MACHINE_ID,
    machineVersion: MACHINE_VERSION,
    write: (t) => {
      text = t;
      return Promise.resolve();
    },
    onFatal: (err) => assert.fail(String(err)),
    now: () => NOW,
  });
  const actor = createActor(machine, { input: { policy: POLICY }, inspect: store.inspect });
  store.attach(actor);
  actor.start();
  actor.send({ type: 'CHECK' });
  await new Promise((r) => setImmediate(r));
  pending.at(-1)?.({
    at: 1_000,
    upgradeMark: 1,
    upgradeList: [
      {
        versionCode: 'aaa',
        versionNum: 'V1.8',
        fileMd5: 'cd9f1d57fd7b792587d29e7826f4df0e',
        remark: '',
        argumentConfigMap: {},
      },
    ],
  });
  await new Promise((r) => setImmediate(r));
  await store.flush();
  store.close();
  actor.stop();
  validEnvelope = JSON.parse(text) as Env;
  assert.equal(validEnvelope.snapshot.value, 'downloading');
});

/** The valid envelope changed by `spoil` (a deep copy). */
function envelope(spoil: (e: Env & Record<string, unknown>) => void): () => string {
  return () => {
    assert.ok(validEnvelope !== undefined);
    const e = structuredClone(validEnvelope) as Env & Record<string, unknown>;
    spoil(e);
    return JSON.stringify(e);
  };
}

interface MetaCase extends CorpusCase {
  /** The file's text or bytes (a function: built from the valid envelope). */
  input: string | Buffer | (() => string);
}

const UNUSABLE = String.raw`patch\.meta was unusable \(`;
const KEPT = String.raw`\); kept as ${REJECTED.replaceAll('.', '\\.')}$`;
const unusable = (why: string) => new RegExp(`^${UNUSABLE}${why}${KEPT}`);

export const PATCH_META_CASES: readonly MetaCase[] = [
  // ---- not JSON, or not an object
  { name: 'an empty file', input: '', expect: unusable('not JSON: Unexpected end of JSON input') },
  {
    name: 'a Python-era file cut in half (a crash while the tool wrote it)',
    input: JSON.stringify(PYTHON).slice(0, 150),
    expect: unusable('not JSON: [^]*'),
  },
  {
    name: 'JSON null',
    input: 'null',
    expect: unusable('\\(root\\): Invalid input: expected object, received null'),
  },
  {
    name: 'a JSON array',
    input: '[]',
    expect: unusable('\\(root\\): Invalid input: expected object, received array'),
  },
  {
    name: 'a JSON number',
    input: '42',
    expect: unusable('\\(root\\): Invalid input: expected object, received number'),
  },
  {
    name: 'a UTF-8 byte order mark before the JSON (saved by an editor)',
    input: `\uFEFF${JSON.stringify(PYTHON)}`,
    expect: unusable('not JSON: [^]*'),
  },
  {
    name: 'binary bytes',
    input: Buffer.from([0x00, 0xff, 0x7b, 0x22, 0x80, 0x0a, 0xc3, 0x28]),
    expect: unusable('not JSON: [^]*'),
  },
  {
    // Recursion over the parsed value overflowed the stack: a RangeError out of the loader.
    name: 'JSON nested 100,000 levels deep',
    input: '['.repeat(100_000) + ']'.repeat(100_000),
    expect: unusable('\\(root\\): Invalid input: expected object, received array'),
  },
  {
    name: 'huge: a Python-era file with a 20 MB remark',
    input: python((m) => {
      pyVersion(m).remark = 'x'.repeat(20_000_000);
    }),
    expect: unusable('20000\\d{3} bytes, over the 16 MiB a patch\\.meta may have'),
  },
  // ---- boxkeeper's envelope, wrong
  {
    name: 'envelope: format 2',
    input: envelope((e) => {
      (e as Record<string, unknown>).format = 2;
    }),
    expect: unusable('format: Invalid input: expected 1'),
  },
  {
    name: 'envelope: another machine id',
    input: envelope((e) => {
      e.machineId = 'supervisor';
    }),
    expect: unusable('machineId: Invalid input: expected "update"'),
  },
  {
    name: 'envelope: seq negative',
    input: envelope((e) => {
      e.seq = -1;
    }),
    expect: unusable('seq: Too small: expected number to be >=0'),
  },
  {
    name: 'envelope: seq a string',
    input: envelope((e) => {
      (e as Record<string, unknown>).seq = '7';
    }),
    expect: unusable('seq: Invalid input: expected number, received string'),
  },
  {
    name: 'envelope: machineVersion a number',
    input: envelope((e) => {
      (e as Record<string, unknown>).machineVersion = 3;
    }),
    expect: unusable('machineVersion: Invalid input: expected string, received number'),
  },
  {
    name: 'envelope: the snapshot missing',
    input: envelope((e) => {
      delete (e as Record<string, unknown>).snapshot;
    }),
    expect: unusable('snapshot: Invalid input: expected object, received undefined'),
  },
  {
    name: 'envelope: snapshot status "done"',
    input: envelope((e) => {
      e.snapshot.status = 'done';
    }),
    expect: unusable('update: status is "done", expected "active".*'),
  },
  {
    name: 'envelope: context.versions an object',
    input: envelope((e) => {
      e.snapshot.context.versions = { V18: {} };
    }),
    expect: unusable('update context versions: Invalid input: expected array, received object'),
  },
  {
    name: 'envelope: context.retries a fraction',
    input: envelope((e) => {
      e.snapshot.context.retries = 1.5;
    }),
    expect: unusable('update context retries: Invalid input: expected int, received number'),
  },
  // ---- the Python tool's format, wrong
  {
    name: 'Python: state a string',
    input: python((m) => {
      (m as Record<string, unknown>).state = '3';
    }),
    expect: unusable('state: Invalid input: expected number, received string'),
  },
  {
    name: 'Python: a status name instead of its number',
    input: python((m) => {
      pyVersion(m).status = 'DOWNLOADED' as unknown as number;
    }),
    expect: unusable('list\\.0\\.status: Invalid input: expected number, received string'),
  },
  {
    name: 'Python: mark 7',
    input: python((m) => {
      m.mark = 7;
    }),
    expect: unusable('mark: Too big: expected number to be <=2'),
  },
  {
    name: 'Python: retries a fraction',
    input: python((m) => {
      m.retries = 1.5;
    }),
    expect: unusable('retries: Invalid input: expected int, received number'),
  },
  {
    name: 'Python: list an object',
    input: python((m) => {
      (m as Record<string, unknown>).list = { V18: PYTHON.list[0] };
    }),
    expect: unusable('list: Invalid input: expected array, received object'),
  },
  {
    name: 'Python: odd fields (a newer tool: py_version, file_MD5 null)',
    input: python((m) => {
      m.py_version = '3.6.8';
      pyVersion(m).file_MD5 = null as unknown as string;
      pyVersion(m).download_url = 'http://x/V1.8.zip';
    }),
    expect: unusable('list\\.0\\.file_MD5: Invalid input: expected string, received null'),
  },
  {
    name: 'Python: argument_config_map a list',
    input: python((m) => {
      (pyVersion(m) as Record<string, unknown>).argument_config_map = ['citynum', '021'];
    }),
    expect: unusable(
      'list\\.0\\.argument_config_map: Invalid input: expected record, received array',
    ),
  },
  {
    name: 'Python: version_num a number',
    input: python((m) => {
      pyVersion(m).version_num = 1.8 as unknown as string;
    }),
    expect: unusable('list\\.0\\.version_num: Invalid input: expected string, received number'),
  },
];

runCorpus<MetaCase, string>({
  kind: 'patch.meta',
  cases: PATCH_META_CASES,
  async prepare(c, dir) {
    // The patch dir around it: a downloaded zip and a file set aside by an earlier start.
    await mkdir(join(dir, 'V1.8'));
    await writeFile(join(dir, 'V1.8', '9e9763d2baf4477180991667d19fe35d.zip'), 'PK\x05\x06zip');
    await writeFile(join(dir, 'patch.meta.rejected-20250101T000000Z'), '{"older": true}');
    const path = join(dir, 'patch.meta');
    await writeFile(path, typeof c.input === 'function' ? c.input() : c.input);
    return path;
  },
  async run(_c, _dir, path) {
    const loaded = await loadPatchMeta(path, POLICY, { fs: nodePatchFs, now: () => NOW });
    if (loaded.kind !== 'recover') return undefined;
    assert.deepEqual(loaded.notes, [loaded.input.recover]);
    return loaded.input.recover;
  },
  errorTypes: [],
  subject: () => 'patch.meta',
  // Documented: the original is kept, byte for byte, under a new name beside it.
  after(before: Tree) {
    const out = new Map(before);
    out.set(REJECTED, before.get('patch.meta') ?? '');
    out.delete('patch.meta');
    return new Map([...out].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)));
  },
});
