// The heartbeat's process listing: a beat uses a listing taken moments before (a supervisor's)
// instead of reading the table again, the supervisors' table checks ride on the beats'
// listings, and what the beat reports stays the same. Real processes play Java and FreeSWITCH.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdir, mkdtemp, rm, symlink } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test, type TestContext } from 'node:test';
import type { CloudApi, HeartbeatItem } from '../../adapters/cloud-client.ts';
import { createLogger } from '../../adapters/logger.ts';
import {
  createProcessControl,
  defaultListRaw,
  type ListOptions,
  type ProcessControl,
} from '../../adapters/processes.ts';
import type { BoxConfig } from '../../services/agent/box-config.ts';
import {
  collectHeartbeat,
  HEARTBEAT_KEYS,
  HeartbeatLoop,
  type HeartbeatDeps,
} from '../../services/agent/heartbeat.ts';
import {
  freeswitchMatcher,
  javaMatcher,
  ServiceSupervisor,
  type ServiceSpec,
} from '../../services/supervision/supervisor.ts';

const logger = createLogger({ level: 'fatal', console: 'none' }).logger;

const SOFIA_STATUS = [
  '                     Name          Type                                       Data      State',
  '=================================================================================================',
  '        external::callbox       gateway              sip:callbox@10.0.0.2       REGED',
  '     external::numconvert       gateway           sip:numconvert@10.0.0.3       REGED',
].join('\n');

const CONFIG = {
  version: 'V1.7',
  code: '17',
  appKey: 'key',
  accessId: 'id',
  accessSecret: 'secret',
  freeswitch: { callboxRealm: '10.0.0.2' },
} as BoxConfig;

/** A box whose Java and FreeSWITCH are real processes the matchers recognise. */
async function box(t: TestContext) {
  const dir = await mkdtemp(join(tmpdir(), 'bk-beat-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  const jar = join(dir, 'icb-box.jar');
  const fsDir = join(dir, 'FreeSWITCH');
  await mkdir(fsDir);
  await symlink('/bin/sleep', join(fsDir, 'FreeSwitchConsole'));
  const java = spawn(process.execPath, ['-e', 'setInterval(() => {}, 1000)', '--', '-jar', jar], {
    stdio: 'ignore',
  });
  const freeswitch = spawn(join(fsDir, 'FreeSwitchConsole'), ['600'], { stdio: 'ignore' });
  t.after(() => {
    java.kill('SIGKILL');
    freeswitch.kill('SIGKILL');
  });
  await Promise.all([java, freeswitch].map((c) => new Promise((ok) => c.once('spawn', ok))));
  const isJava = javaMatcher(jar, process.platform);
  const isFreeswitch = freeswitchMatcher(fsDir, process.platform);
  // Until both have exec'd, the table may still show copies of node.
  const probe = createProcessControl();
  for (let i = 0; ; i++) {
    const table = await probe.list();
    if (table.some(isJava) && table.some(isFreeswitch)) break;
    if (i === 400) assert.fail('the stand-in Java and FreeSWITCH did not show up in the table');
    await new Promise((ok) => setTimeout(ok, 25));
  }
  return { isJava, isFreeswitch, javaPid: java.pid as number, fsPid: freeswitch.pid as number };
}

/** The real process table, counting how often it is read. */
function countedProcesses() {
  const reads = { n: 0 };
  const real = defaultListRaw(process.platform, process.env);
  const processes = createProcessControl({
    listRaw: () => {
      reads.n++;
      return real();
    },
  });
  return { reads, processes };
}

function heartbeatDeps(
  b: Awaited<ReturnType<typeof box>>,
  processes: ProcessControl,
  sent: HeartbeatItem[][],
): HeartbeatDeps {
  return {
    cloud: {
      heartbeat: (items: HeartbeatItem[]) => {
        sent.push(items);
        return Promise.resolve();
      },
    } as Partial<CloudApi> as CloudApi,
    boxConfig: () => Promise.resolve(CONFIG),
    fsCli: { run: (cmd) => Promise.resolve(cmd === 'sofia status' ? SOFIA_STATUS : '+OK') },
    processes,
    system: {
      cpuPercent: () => 12.5,
      memPercent: () => 40,
      freeDiskBytes: () => Promise.resolve(8 * 1024 ** 3),
      hostIp: () => Promise.resolve('192.0.2.7'),
    },
    isJava: b.isJava,
    isFreeswitch: b.isFreeswitch,
    boxRoot: '/box',
    sendAccessSecret: false,
    logger,
  };
}

test(
  'a beat right after a listing uses it, and reports what a beat with its own listing reports',
  { skip: process.platform === 'win32' },
  async (t) => {
    const b = await box(t);
    const { reads, processes } = countedProcesses();
    // A supervisor looked moments ago.
    await processes.list();
    assert.equal(reads.n, 1);
    const shared = await collectHeartbeat({
      ...heartbeatDeps(b, processes, []),
      listingMaxAgeMs: 60_000,
    });
    assert.equal(reads.n, 1, 'the beat read the table again');

    const own = countedProcesses();
    const fresh = await collectHeartbeat(heartbeatDeps(b, own.processes, []));
    assert.equal(own.reads.n, 1);
    assert.deepEqual(shared, fresh);
    assert.deepEqual(
      shared.items.map((i) => i.key),
      [...HEARTBEAT_KEYS],
    );
    const value = (key: string) => shared.items.find((i) => i.key === key)?.value;
    assert.equal(value('Java'), 1);
    assert.equal(value('Freeswitch'), 1);
    assert.equal(value('Reg_callbox'), 1);
    assert.equal(value('Reg_numconvert'), 1);
    assert.equal(value('access_secret'), '');
    assert.equal(value('media_storage'), '8.0G');

    // Without a bound the beat lists for itself.
    await collectHeartbeat(heartbeatDeps(b, processes, []));
    assert.equal(reads.n, 2);
  },
);

test(
  "the supervisors' checks of the process table ride on the beats' listings",
  { skip: process.platform === 'win32' },
  async (t) => {
    const b = await box(t);
    const { reads, processes } = countedProcesses();
    // The supervisors' own listings with a bound (their periodic pid-reuse checks).
    const checks = { n: 0 };
    const supervised: ProcessControl = {
      ...processes,
      list: (options?: ListOptions) => {
        if (options?.since !== undefined) checks.n++;
        return processes.list(options);
      },
    };
    const spec = (name: ServiceSpec['name'], matches: ServiceSpec['matches']): ServiceSpec => ({
      name,
      matches,
      start: () => Promise.reject(new Error('adopted, never started here')),
      isReady: () => Promise.resolve(true),
    });
    const supervisorDeps = {
      processes: supervised,
      logger,
      // A table check every 12 ticks: every 120 ms, against a beat every 20 ms.
      intervalMs: 10,
      readyTimeoutMs: 5000,
      stopTimeoutMs: 5000,
      policy: {
        backoffInitialMs: 100,
        backoffMaxMs: 400,
        crashLoopStarts: 5,
        crashLoopWindowMs: 60_000,
        crashLoopRetryMs: 0,
        stableAfterMs: 60_000,
        notStartableRetryMs: 1000,
      },
    };
    const supervisors = [
      new ServiceSupervisor(spec('java', b.isJava), supervisorDeps),
      new ServiceSupervisor(spec('freeswitch', b.isFreeswitch), supervisorDeps),
    ];
    t.after(() => {
      for (const s of supervisors) s.detach();
    });
    for (const s of supervisors) s.start();
    const up = await Promise.all(supervisors.map((s) => s.waitFor(['running'], 10_000)));
    assert.deepEqual(
      up.map((s) => s.pid),
      [b.javaPid, b.fsPid],
    );

    const sent: HeartbeatItem[][] = [];
    const startReads = reads.n;
    const startChecks = checks.n;
    let beats = 0;
    let stopping = false;
    const done = new Promise<void>((resolve) => {
      const loop = new HeartbeatLoop(
        { ...heartbeatDeps(b, processes, sent), listingMaxAgeMs: 10 },
        20,
        (outcome) => {
          assert.equal(outcome.ok, true, outcome.error);
          // Enough beats for several table checks by each supervisor.
          if (++beats < 40 || checks.n - startChecks < 4 || stopping) return;
          stopping = true;
          void loop.stop().then(resolve);
        },
      );
      loop.start();
    });
    await done;
    const tableChecks = checks.n - startChecks;
    const tableReads = reads.n - startReads;
    // Every beat reads the table at most once; the supervisors' checks add (next to) nothing:
    // one of their own only when a beat came late (a loaded machine), hence the small margin.
    assert.ok(
      tableReads <= sent.length + 3,
      `${tableReads} reads for ${sent.length} beats and ${tableChecks} supervisor checks`,
    );
    assert.ok(sent.every((items) => items.find((i) => i.key === 'Java')?.value === 1));
    for (const s of supervisors) assert.equal(s.state().status, 'running');
  },
);
