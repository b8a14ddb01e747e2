// Heartbeat cost: processes the agent spawns and CPU it burns per heartbeat. `boxkeeper run`
// against the cloud simulator on a fixture box (stand-in Java and FreeSWITCH supervised), the
// code as it is ("after") and its earlier path ("before": ps-list's `ps` runs and every caller
// listing for itself, forced by BOXKEEPER_PROCESS_LISTING=ps-list BOXKEEPER_LISTING_SHARE=off),
// alternately A B A B …, one agent process per run. Per run, after WARMUP_BEATS: the processes
// the agent itself spawned (a preload counts ChildProcess spawns, by executable) and its own
// user+sys CPU (/proc/<pid>/stat) per beat; then paired ratios after / before. Linux only.
//
//   npm run build && node --import tsx bench/heartbeat.ts
//   RUNS=1 BEATS=4 HEARTBEAT_MS=500 RUNNER=tsx node --import tsx bench/heartbeat.ts   # smoke
//
// Environment: RUNS (rounds, default 5), BEATS (measured beats per run, 20), WARMUP_BEATS (3),
// HEARTBEAT_MS (1000), SUPERVISE_MS (HEARTBEAT_MS / 6: a real box beats every 30 s and checks
// its services every 5 s), RUNNER (build: dist/cli/main.js | tsx: cli/main.ts through tsx).
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir, loadavg } from 'node:os';
import { basename, dirname, join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { createFixtureBox } from '../fixtures/box/generate.ts';
import { startCloudSimulator } from '../fixtures/cloud-sim/server.ts';
import { median, range } from './common.ts';

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..');
const RUNS = Number(process.env.RUNS ?? 5);
const BEATS = Number(process.env.BEATS ?? 20);
const WARMUP_BEATS = Number(process.env.WARMUP_BEATS ?? 3);
const HEARTBEAT_MS = Number(process.env.HEARTBEAT_MS ?? 1000);
const SUPERVISE_MS = Number(process.env.SUPERVISE_MS ?? HEARTBEAT_MS / 6);
const RUNNER = process.env.RUNNER ?? 'build';
/** Clock ticks per second of /proc/<pid>/stat (USER_HZ; 100 on every Linux we run). */
const TICK_MS = 10;

const ARMS = {
  after: {},
  before: { BOXKEEPER_PROCESS_LISTING: 'ps-list', BOXKEEPER_LISTING_SHARE: 'off' },
} as const;
type Arm = keyof typeof ARMS;

/** Loaded into the agent with --import: one line per process it spawns, with its executable. */
const SPAWN_COUNTER = `import { ChildProcess } from 'node:child_process';
import { appendFileSync } from 'node:fs';
const log = process.env.BENCH_SPAWN_LOG;
const spawn = ChildProcess.prototype.spawn;
ChildProcess.prototype.spawn = function (options) {
  appendFileSync(log, Date.now() + ' ' + String(options?.file) + '\\n');
  return spawn.call(this, options);
};
`;

interface RunResult {
  arm: Arm;
  beats: number;
  seconds: number;
  cpuMsPerBeat: number;
  spawnsPerBeat: number;
  /** Spawns per beat by executable (basename). */
  byFile: Record<string, number>;
}

const sleep = (ms: number) => new Promise((ok) => setTimeout(ok, ms));

async function cpuMs(pid: number): Promise<number> {
  const stat = await readFile(`/proc/${pid}/stat`, 'utf8');
  // Fields after the command name (which may hold spaces) start at field 3 (state).
  const f = stat
    .slice(stat.lastIndexOf(')') + 2)
    .split(' ')
    .map(Number);
  const [utime = 0, stime = 0] = f.slice(11, 13);
  return (utime + stime) * TICK_MS;
}

function agentCommand(counter: string): string[] {
  const pre = ['--import', pathToFileURL(counter).href];
  if (RUNNER === 'tsx') return [...pre, '--import', 'tsx', join(ROOT, 'cli', 'main.ts')];
  if (RUNNER !== 'build') throw new Error(`RUNNER: expected build or tsx, got ${RUNNER}`);
  const main = join(ROOT, 'dist', 'cli', 'main.js');
  if (!existsSync(main)) throw new Error(`${main} is missing: run "npm run build" first`);
  return [...pre, main];
}

async function runAgent(
  arm: Arm,
  o: { settings: string; counter: string; spawnLog: string; beats: () => number; warmup: number },
): Promise<RunResult> {
  await writeFile(o.spawnLog, '');
  const agent = spawn(
    process.execPath,
    [...agentCommand(o.counter), 'run', '--settings', o.settings],
    {
      cwd: ROOT,
      env: { ...process.env, ...ARMS[arm], BENCH_SPAWN_LOG: o.spawnLog },
      stdio: ['ignore', 'ignore', 'inherit'],
    },
  );
  const pid = agent.pid as number;
  const exited = new Promise((ok) => agent.once('exit', ok));
  const proc = { exited: false };
  void exited.then(() => (proc.exited = true));
  try {
    const first = o.beats();
    const until = async (n: number) => {
      const deadline = Date.now() + (n - first + 5) * HEARTBEAT_MS * 3 + 60_000;
      while (o.beats() < n) {
        if (proc.exited) throw new Error(`the agent exited early (code ${agent.exitCode})`);
        if (Date.now() > deadline) throw new Error(`no beat ${n - first} within the time allowed`);
        await sleep(Math.min(50, HEARTBEAT_MS / 10));
      }
    };
    await until(first + o.warmup);
    const b0 = o.beats();
    const t0 = Date.now();
    const c0 = await cpuMs(pid);
    await until(b0 + BEATS);
    const c1 = await cpuMs(pid);
    const b1 = o.beats();
    const t1 = Date.now();
    const spawned = (await readFile(o.spawnLog, 'utf8'))
      .split('\n')
      .filter((l) => l !== '')
      .map((l) => ({ at: Number(l.slice(0, l.indexOf(' '))), file: l.slice(l.indexOf(' ') + 1) }))
      .filter((s) => s.at >= t0 && s.at <= t1);
    const beats = b1 - b0;
    const byFile: Record<string, number> = {};
    for (const s of spawned) byFile[basename(s.file)] = (byFile[basename(s.file)] ?? 0) + 1;
    for (const k of Object.keys(byFile)) byFile[k] = (byFile[k] as number) / beats;
    return {
      arm,
      beats,
      seconds: (t1 - t0) / 1000,
      cpuMsPerBeat: (c1 - c0) / beats,
      spawnsPerBeat: spawned.length / beats,
      byFile,
    };
  } finally {
    agent.kill('SIGTERM');
    await exited;
  }
}

async function main(): Promise<void> {
  if (process.platform !== 'linux') throw new Error('bench/heartbeat.ts needs Linux (/proc)');
  const scratch = await mkdtemp(join(tmpdir(), 'bk-bench-beat-'));
  const sim = await startCloudSimulator();
  const load0 = loadavg();
  try {
    const box = await createFixtureBox({
      root: join(scratch, 'box'),
      hostAddr: sim.url,
      heartbeatSec: HEARTBEAT_MS / 1000,
      extraSettings: { supervise: { interval: String(SUPERVISE_MS / 1000) } },
    });
    const counter = join(scratch, 'spawn-counter.mjs');
    await writeFile(counter, SPAWN_COUNTER);
    const o = {
      settings: box.settingsPath,
      counter,
      spawnLog: join(scratch, 'spawns.log'),
      beats: () => sim.records.heartbeats.length,
    };
    const results: RunResult[] = [];
    try {
      // Unmeasured: the first agent starts Java and FreeSWITCH; every later one adopts them.
      process.stderr.write('warm-up run (starts the services)\n');
      await runAgent('after', { ...o, warmup: WARMUP_BEATS });
      for (let round = 0; round < RUNS; round++) {
        for (const arm of ['after', 'before'] as const) {
          const r = await runAgent(arm, { ...o, warmup: WARMUP_BEATS });
          process.stderr.write(
            `  round ${round + 1} ${arm}: ${r.beats} beats, ${r.spawnsPerBeat.toFixed(2)} spawns/beat, ${r.cpuMsPerBeat.toFixed(1)} ms CPU/beat\n`,
          );
          results.push(r);
        }
      }
    } finally {
      // The stand-in services keep running after the agent by design; stop them.
      await box.cleanup();
    }
    const load1 = loadavg();
    report(results, load0, load1);
    const resultsDir = join(ROOT, 'bench', 'results');
    await mkdir(resultsDir, { recursive: true });
    const file = join(
      resultsDir,
      `heartbeat-${new Date().toISOString().replace(/[:.]/g, '-')}.json`,
    );
    await writeFile(
      file,
      JSON.stringify(
        { RUNS, BEATS, WARMUP_BEATS, HEARTBEAT_MS, SUPERVISE_MS, RUNNER, load0, load1, results },
        null,
        2,
      ),
    );
    process.stderr.write(`wrote ${file}\n`);
  } finally {
    await sim.close();
    await rm(scratch, { recursive: true, force: true });
  }
}

function report(results: RunResult[], load0: number[], load1: number[]): void {
  const of = (arm: Arm) => results.filter((r) => r.arm === arm);
  const after = of('after');
  const before = of('before');
  const files = [...new Set(results.flatMap((r) => Object.keys(r.byFile)))].sort();
  const row = (arm: Arm, rs: RunResult[]) => {
    const spawns = rs.map((r) => r.spawnsPerBeat);
    const cpu = rs.map((r) => r.cpuMsPerBeat);
    const by = files.map((f) => `${f} ${median(rs.map((r) => r.byFile[f] ?? 0)).toFixed(2)}`);
    return `| ${arm} | ${median(spawns).toFixed(2)} (${range(spawns, 2)}) | ${by.join(', ')} | ${median(cpu).toFixed(1)} (${range(cpu, 1)}) |`;
  };
  const ratio = (pick: (r: RunResult) => number) => {
    const xs = after.map((a, i) => pick(a) / pick(before[i] as RunResult));
    return `${median(xs).toFixed(2)} (${range(xs, 2)})`;
  };
  const lines = [
    `Heartbeat cost (${RUNNER}), heartbeat ${HEARTBEAT_MS} ms, supervise interval ${SUPERVISE_MS.toFixed(0)} ms, ` +
      `${RUNS} rounds × ${BEATS} beats, load ${load0.map((l) => l.toFixed(2)).join(' / ')} → ${load1.map((l) => l.toFixed(2)).join(' / ')}`,
    '',
    '| code path | processes spawned per beat: median (min–max) | by executable (median) | agent CPU ms per beat: median (min–max) |',
    '|---|---|---|---|',
    row('after', after),
    row('before', before),
    '',
    `Paired ratios after / before: processes spawned ${ratio((r) => r.spawnsPerBeat)}, agent CPU ${ratio((r) => r.cpuMsPerBeat)}`,
  ];
  process.stdout.write(`${lines.join('\n')}\n`);
}

await main();
