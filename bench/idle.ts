// The idle daemon: `boxkeeper run` against the cloud simulator on a fixture box (stand-in Java
// and FreeSWITCH supervised) with a fast heartbeat, for BEATS heartbeats. Samples the agent's
// RSS over time (/proc/<pid>/status) and its CPU (/proc/<pid>/stat: its own, and that of the
// children it reaped: ps, fs_cli), and prints RSS at the start, the end, the range after warm-up
// and the CPU per heartbeat. Writes every sample to bench/results/idle-<time>.json. Linux only.
//
//   npm run build && node --import tsx bench/idle.ts                 # 2,000 beats at 50 ms
//   BEATS=10000 node --import tsx bench/idle.ts                      # the 10,000-beat soak
//   BEATS=0 DURATION_S=600 HEARTBEAT_MS=30000 node --import tsx bench/idle.ts   # 10 minutes idle
//
// Environment: BEATS (default 2000; 0: run for DURATION_S), HEARTBEAT_MS (default 50),
// DURATION_S (upper bound; 8 h while counting beats, as a busy machine may beat only
// once a second; 3600 with BEATS=0), SAMPLE_MS (default 1000), NODE_FLAGS (flags for the
// agent's node, e.g. "--max-semi-space-size=1"; for the package they, and HEAP_SNAPSHOT_AT,
// replace its launcher's),
// TARGET (build | package;
// the package from release/…-linux-x64.tar.gz, or PACKAGE=folder), HEAP_SNAPSHOT_AT (beat counts,
// e.g. "300,3000": the agent writes a V8 heap snapshot at each into bench/results/, to compare in
// Chrome DevTools' Memory tab or with bench/heap-diff.ts).
import { execFile, spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { createFixtureBox } from '../fixtures/box/generate.ts';
import { startCloudSimulator } from '../fixtures/cloud-sim/server.ts';

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..');
const BEATS = Number(process.env.BEATS ?? 2000);
const HEARTBEAT_MS = Number(process.env.HEARTBEAT_MS ?? 50);
const DURATION_S = Number(process.env.DURATION_S ?? (BEATS > 0 ? 8 * 3600 : 3600));
const SAMPLE_MS = Number(process.env.SAMPLE_MS ?? 1000);
const TARGET = process.env.TARGET ?? 'build';
/** Node/V8 flags for the agent's process only (NODE_OPTIONS would reach this driver too). */
const NODE_FLAGS = (process.env.NODE_FLAGS ?? '').split(/\s+/).filter((f) => f !== '');
const HEAP_SNAPSHOT_AT = (process.env.HEAP_SNAPSHOT_AT ?? '')
  .split(',')
  .filter((b) => b.trim() !== '')
  .map(Number)
  .sort((a, b) => a - b);
const RESULTS_DIR = join(ROOT, 'bench', 'results');
/** Clock ticks per second of /proc/<pid>/stat (USER_HZ; 100 on every Linux we run). */
const TICK_MS = 10;

interface Sample {
  t: number;
  beats: number;
  rssKiB: number;
  /** The agent's own user+sys CPU, ms. */
  cpuMs: number;
  /** CPU of its waited-for children (ps, fs_cli, …), ms. */
  childCpuMs: number;
}

async function probe(pid: number): Promise<Omit<Sample, 't' | 'beats'>> {
  const status = await readFile(`/proc/${pid}/status`, 'utf8');
  const rssKiB = Number(/^VmRSS:\s+(\d+)/m.exec(status)?.[1] ?? NaN);
  // Fields after the command name (which may hold spaces) start at field 3 (state).
  const stat = await readFile(`/proc/${pid}/stat`, 'utf8');
  const f = stat
    .slice(stat.lastIndexOf(')') + 2)
    .split(' ')
    .map(Number);
  const [utime = 0, stime = 0, cutime = 0, cstime = 0] = f.slice(11, 15);
  return { rssKiB, cpuMs: (utime + stime) * TICK_MS, childCpuMs: (cutime + cstime) * TICK_MS };
}

const sleep = (ms: number) => new Promise((ok) => setTimeout(ok, ms));

async function launcher(scratch: string): Promise<string[]> {
  const flags = [
    ...NODE_FLAGS,
    ...(HEAP_SNAPSHOT_AT.length > 0
      ? ['--heapsnapshot-signal=SIGUSR2', `--diagnostic-dir=${RESULTS_DIR}`]
      : []),
  ];
  if (TARGET === 'build') {
    const main = join(ROOT, 'dist', 'cli', 'main.js');
    if (!existsSync(main)) throw new Error(`${main} is missing: run "npm run build" first`);
    return [process.execPath, ...flags, main];
  }
  if (TARGET !== 'package') throw new Error(`TARGET: expected build or package, got ${TARGET}`);
  let pkg = process.env.PACKAGE;
  if (pkg === undefined) {
    const { version } = JSON.parse(await readFile(join(ROOT, 'package.json'), 'utf8')) as {
      version: string;
    };
    const archive = join(ROOT, 'release', `boxkeeper-${version}-linux-x64.tar.gz`);
    await promisify(execFile)('tar', ['-xzf', archive, '-C', scratch]);
    pkg = join(scratch, `boxkeeper-${version}-linux-x64`);
  }
  // The package's launcher, as a service runs it (it execs the runtime: the pid sampled is the
  // agent's). NODE_FLAGS replace the launcher's flags: the runtime is then started directly.
  if (flags.length === 0) return [join(pkg, 'bin', 'boxkeeper')];
  return [join(pkg, 'runtime', 'node'), ...flags, join(pkg, 'lib', 'boxkeeper.mjs')];
}

async function main(): Promise<void> {
  const scratch = await mkdtemp(join(tmpdir(), 'bk-bench-idle-'));
  const sim = await startCloudSimulator();
  try {
    const box = await createFixtureBox({
      root: join(scratch, 'box'),
      hostAddr: sim.url,
      heartbeatSec: HEARTBEAT_MS / 1000,
    });
    if (HEAP_SNAPSHOT_AT.length > 0) await mkdir(RESULTS_DIR, { recursive: true });
    const [cmd, ...pre] = await launcher(scratch);
    const snapshotsDue = [...HEAP_SNAPSHOT_AT];
    const agent = spawn(cmd as string, [...pre, 'run', '--settings', box.settingsPath], {
      stdio: ['ignore', 'ignore', 'inherit'],
    });
    const pid = agent.pid as number;
    // An object: the exit handler's write is invisible to the linter's flow analysis.
    const proc = { exited: false };
    agent.once('exit', () => (proc.exited = true));
    const started = Date.now();
    const samples: Sample[] = [];
    const beats = () => sim.records.heartbeats.length;
    const deadline = started + DURATION_S * 1000;
    try {
      while (!proc.exited && Date.now() < deadline && (BEATS === 0 || beats() < BEATS)) {
        await sleep(SAMPLE_MS);
        if (agent.exitCode !== null || agent.signalCode !== null) break;
        samples.push({ t: Date.now() - started, beats: beats(), ...(await probe(pid)) });
        if (snapshotsDue.length > 0 && beats() >= (snapshotsDue[0] as number)) {
          snapshotsDue.shift();
          process.stderr.write(`  heap snapshot at ${beats()} beats\n`);
          agent.kill('SIGUSR2');
        }
        if (samples.length % 10 === 0)
          process.stderr.write(
            `  ${(samples.at(-1)?.t ?? 0) / 1000} s: ${beats()} beats, RSS ${((samples.at(-1)?.rssKiB ?? 0) / 1024).toFixed(1)} MiB\n`,
          );
      }
      if (proc.exited) throw new Error(`the agent exited early (code ${agent.exitCode})`);
    } finally {
      agent.kill('SIGTERM');
      await new Promise((ok) => (proc.exited ? ok(undefined) : agent.once('exit', ok)));
      // The stand-in services keep running after the agent by design; stop them.
      await box.cleanup();
    }
    report(samples);
    await mkdir(RESULTS_DIR, { recursive: true });
    const file = join(RESULTS_DIR, `idle-${new Date().toISOString().replace(/[:.]/g, '-')}.json`);
    await writeFile(
      file,
      JSON.stringify({ beats: BEATS, heartbeatMs: HEARTBEAT_MS, target: TARGET, samples }, null, 2),
    );
    process.stderr.write(`wrote ${file}\n`);
  } finally {
    await sim.close();
    await rm(scratch, { recursive: true, force: true });
  }
}

function report(samples: Sample[]): void {
  if (samples.length < 4) throw new Error(`only ${samples.length} samples: run longer`);
  const first = samples[0] as Sample;
  const last = samples.at(-1) as Sample;
  // Warm-up: the first 10 % of the run (modules loaded, first check, services started).
  const steady = samples.slice(Math.floor(samples.length / 10));
  const rss = steady.map((s) => s.rssKiB).sort((a, b) => a - b);
  const mid = rss[rss.length >> 1] as number;
  const lo = rss[0] as number;
  const hi = rss.at(-1) as number;
  const s0 = steady[0] as Sample;
  const beats = last.beats - s0.beats;
  const mib = (k: number) => `${(k / 1024).toFixed(1)} MiB`;
  const per = (ms: number) => (beats > 0 ? `${(ms / beats).toFixed(1)} ms` : 'n/a');
  const lines = [
    `Idle daemon (${TARGET}), heartbeat ${HEARTBEAT_MS} ms, ${last.beats} beats in ${(last.t / 1000).toFixed(0)} s`,
    '',
    '| RSS first sample | RSS at the end | RSS after warm-up: min / median / max | spread | agent CPU per beat | children CPU per beat |',
    '|---|---|---|---|---|---|',
    `| ${mib(first.rssKiB)} | ${mib(last.rssKiB)} | ${mib(lo)} / ${mib(mid)} / ${mib(hi)} | ${(((hi - lo) / mid) * 100).toFixed(1)} % | ${per(last.cpuMs - s0.cpuMs)} | ${per(last.childCpuMs - s0.childCpuMs)} |`,
  ];
  process.stdout.write(`${lines.join('\n')}\n`);
}

await main();
