// Restart after SIGKILL → the interrupted effect resumed. A fixture box is mid-install (a
// mandatory update found FreeSWITCH with active calls: tasks given back, the install waiting in
// `installing.waitingForCalls` for `calls_retry`); the agent is killed with SIGKILL and started
// again, RUNS times. Measured: from the restart's spawn to the resumed effect's start line in
// its new trace (`"wait":"waitForCalls"`, written when the restored wait starts:
// modules loaded, settings read, patch.meta read, validated and restored; a gated effect would
// also wait for the restored state to be written once more, a durable write of about 2 ms).
// Anchor, in A B A B order: `node -e 0` of the same runtime. Writes every run to
// bench/results/resume-<time>.json.
//
//   npm run build && node --import tsx bench/resume.ts
//   TARGET=package node --import tsx bench/resume.ts   # after npm run package -- --target linux-x64
//
// Environment: RUNS (default 15), WARMUP (default 2), TARGET (build | package), PACKAGE (an
// unpacked package folder), NODE_FLAGS (the package's runtime flags; default: the launchers').
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { PACKAGE_NODE_FLAGS } from '../adapters/agent-install.ts';
import { buildStandinJar, createFixtureBox } from '../fixtures/box/generate.ts';
import { startCloudSimulator } from '../fixtures/cloud-sim/server.ts';

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..');
const RUNS = Number(process.env.RUNS ?? 15);
const WARMUP = Number(process.env.WARMUP ?? 2);
const TARGET = process.env.TARGET ?? 'build';
const RESUMED = `"wait":"waitForCalls"`;

const sleep = (ms: number) => new Promise((ok) => setTimeout(ok, ms));

async function until<T>(
  what: string,
  probe: () => Promise<T | undefined>,
  ms = Number(process.env.WAIT_MS ?? 120_000),
) {
  const end = Date.now() + ms;
  for (;;) {
    const v = await probe();
    if (v !== undefined) return v;
    if (Date.now() > end) throw new Error(`timed out after ${ms} ms waiting for ${what}`);
    await sleep(5);
  }
}

/** [runtime, …args before the command] of the target. */
async function launcher(scratch: string): Promise<string[]> {
  if (TARGET === 'build') {
    const main = join(ROOT, 'dist', 'cli', 'main.js');
    if (!existsSync(main)) throw new Error(`${main} is missing: run "npm run build" first`);
    return [process.execPath, main];
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
  // As the service manager and the launchers start it: with the package's V8 flags, unless
  // NODE_FLAGS names others ("" for none).
  const flags =
    process.env.NODE_FLAGS === undefined
      ? [...PACKAGE_NODE_FLAGS]
      : process.env.NODE_FLAGS.split(/\s+/).filter((f) => f !== '');
  return [join(pkg, 'runtime', 'node'), ...flags, join(pkg, 'lib', 'boxkeeper.mjs')];
}

/** The time written on the line of the trace of `pid` that holds `needle`, once it is there. */
async function traceTime(traces: string, pid: number, needle: string): Promise<number> {
  return until(`${needle} in the trace of pid ${pid}`, async () => {
    const name = (await readdir(traces).catch(() => [] as string[])).find((n) =>
      n.endsWith(`-${pid}.ndjson`),
    );
    if (name === undefined) return undefined;
    const text = await readFile(join(traces, name), 'utf8');
    const line = text.split('\n').find((l) => l.includes(needle));
    if (line === undefined) return undefined;
    return Date.parse((JSON.parse(line) as { t: string }).t);
  });
}

async function anchor(runtime: string): Promise<number> {
  const t0 = performance.now();
  await promisify(execFile)(runtime, ['-e', '0']);
  return performance.now() - t0;
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[xs.length >> 1] as number;

async function main(): Promise<void> {
  const scratch = await mkdtemp(join(tmpdir(), 'bk-bench-resume-'));
  const sim = await startCloudSimulator({
    scenario: {
      upgradeMark: 2,
      versions: [
        { versionNum: 'V1.7' },
        {
          versionNum: 'V1.8',
          files: { 'icb-box.jar': await buildStandinJar({ version: 'V1.8' }) },
        },
      ],
    },
  });
  let agent: ChildProcess | undefined;
  const stop = async (signal: NodeJS.Signals) => {
    const a = agent;
    if (a === undefined || a.exitCode !== null || a.signalCode !== null) return;
    const gone = new Promise((ok) => a.once('exit', ok));
    a.kill(signal);
    await gone;
  };
  const box = await createFixtureBox({
    root: join(scratch, 'box'),
    hostAddr: sim.url,
    heartbeatSec: 3600,
    extraSettings: {
      update: { enabled: 'on', check_jitter: '0', calls_retry: '3600' },
    },
  });
  try {
    await box.setFsBehaviour({ activeCalls: 2 });
    const [runtime, ...pre] = await launcher(scratch);
    const start = () =>
      spawn(runtime as string, [...pre, 'run', '--settings', box.settingsPath], {
        stdio: ['ignore', 'ignore', 'inherit'],
      });
    const traces = join(box.boxRoot, 'boxkeeper', 'traces');
    agent = start();
    // The first run checks, downloads and defers the install: the state to be resumed.
    await traceTime(traces, agent.pid as number, RESUMED);
    const runs: Array<{ resumeMs: number; nodeMs: number }> = [];
    for (let i = 0; i < WARMUP + RUNS; i++) {
      await stop('SIGKILL');
      const nodeMs = await anchor(runtime as string);
      const t0 = Date.now();
      agent = start();
      const resumeMs = (await traceTime(traces, agent.pid as number, RESUMED)) - t0;
      if (i >= WARMUP) runs.push({ resumeMs, nodeMs });
      process.stderr.write(
        `  run ${i + 1}: resumed after ${resumeMs} ms (node -e 0: ${nodeMs.toFixed(0)} ms)\n`,
      );
    }
    const resume = runs.map((r) => r.resumeMs);
    const ratios = runs.map((r) => r.resumeMs / r.nodeMs);
    const [lo, hi] = [Math.min(...resume), Math.max(...resume)];
    process.stdout.write(
      [
        `Restart after SIGKILL → resumed effect (${TARGET}), ${RUNS} runs, load ${(await readFile('/proc/loadavg', 'utf8')).split(' ').slice(0, 3).join(' ')}`,
        '',
        '| resumed after: median (min–max) | node -e 0: median | ratio to node -e 0: median |',
        '|---|---|---|',
        `| ${median(resume)} ms (${lo}–${hi}) | ${median(runs.map((r) => r.nodeMs)).toFixed(0)} ms | ${median(ratios).toFixed(2)}× |`,
        '',
      ].join('\n'),
    );
    const resultsDir = join(ROOT, 'bench', 'results');
    await mkdir(resultsDir, { recursive: true });
    const file = join(resultsDir, `resume-${new Date().toISOString().replace(/[:.]/g, '-')}.json`);
    await writeFile(file, JSON.stringify({ target: TARGET, runs }, null, 2));
    process.stderr.write(`wrote ${file}\n`);
  } finally {
    await stop('SIGTERM');
    await box.cleanup();
    await sim.close();
    if (process.env.KEEP === undefined) await rm(scratch, { recursive: true, force: true });
  }
}

await main();
