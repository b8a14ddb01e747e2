// Start-up: `boxkeeper --help` and `boxkeeper status` (against a fixture box) side by side with
// `node -e 0` of the same Node, in A B A B order, from the source checkout's build
// (`node dist/cli/main.js`) and from the Linux release package (its bin/boxkeeper launcher and
// runtime/node). Prints paired ratios (command ÷ the anchor run just before it) of wall time and
// CPU time, and peak RSS; writes every run to bench/results/startup-<time>.json.
//
//   npm run build && npm run package -- --target linux-x64
//   node --import tsx bench/startup.ts
//
// Environment: RUNS (pairs per case, default 30), WARMUP (default 3), TARGETS (build,package),
// PACKAGE (an unpacked package folder; default: release/boxkeeper-<version>-linux-x64.tar.gz
// unpacked into a temporary directory).
import { execFile, spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { createFixtureBox } from '../fixtures/box/generate.ts';

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..');
const RUNS = Number(process.env.RUNS ?? 30);
const WARMUP = Number(process.env.WARMUP ?? 3);
const TARGETS = (process.env.TARGETS ?? 'build,package').split(',').filter((t) => t !== '');
const TIME = '/usr/bin/time';

interface Sample {
  wallMs: number;
  cpuMs: number;
  rssKiB: number;
}

/**
 * One run under GNU time (user+sys CPU, peak RSS of the child); wall time from here. time's own
 * start (about 1 ms) is in the wall time of both sides of every pair.
 */
async function once(argv: string[], out: string): Promise<Sample> {
  const started = process.hrtime.bigint();
  await new Promise<void>((resolve, reject) => {
    const child = spawn(TIME, ['-o', out, '-f', '%U %S %M', ...argv], {
      stdio: ['ignore', 'ignore', 'pipe'],
    });
    let err = '';
    child.stderr.setEncoding('utf8').on('data', (d: string) => (err += d));
    child.once('error', reject);
    child.once('close', (c) =>
      c === 0 ? resolve() : reject(new Error(`${argv.join(' ')}: exit ${c}\n${err}`)),
    );
  });
  const wallMs = Number(process.hrtime.bigint() - started) / 1e6;
  const last = (await readFile(out, 'utf8')).trim().split('\n').pop() ?? '';
  const [user, sys, rss] = last.split(' ').map(Number);
  return { wallMs, cpuMs: ((user ?? 0) + (sys ?? 0)) * 1000, rssKiB: rss ?? 0 };
}

const median = (xs: number[]): number => {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 === 1 ? (s[m] as number) : ((s[m - 1] as number) + (s[m] as number)) / 2;
};

interface CaseResult {
  target: string;
  name: string;
  argv: string[];
  anchor: string[];
  pairs: Array<{ anchor: Sample; command: Sample }>;
}

async function runCase(
  target: string,
  name: string,
  argv: string[],
  anchor: string[],
  scratch: string,
): Promise<CaseResult> {
  const out = join(scratch, 'time.txt');
  const pairs: CaseResult['pairs'] = [];
  for (let i = 0; i < WARMUP + RUNS; i++) {
    const a = await once(anchor, out);
    const c = await once(argv, out);
    if (i >= WARMUP) pairs.push({ anchor: a, command: c });
  }
  process.stderr.write(`  ${target} ${name}: ${RUNS} pairs\n`);
  return { target, name, argv, anchor, pairs };
}

function row(r: CaseResult): string {
  const ratio = (k: keyof Sample) => median(r.pairs.map((p) => p.command[k] / p.anchor[k]));
  const med = (side: 'anchor' | 'command', k: keyof Sample) =>
    median(r.pairs.map((p) => p[side][k]));
  return [
    r.target,
    r.name,
    `${med('command', 'wallMs').toFixed(0)} ms`,
    `${med('anchor', 'wallMs').toFixed(0)} ms`,
    `**${ratio('wallMs').toFixed(2)}×**`,
    `${med('command', 'cpuMs').toFixed(0)} / ${med('anchor', 'cpuMs').toFixed(0)} ms`,
    `${ratio('cpuMs').toFixed(2)}×`,
    `${(med('command', 'rssKiB') / 1024).toFixed(0)} / ${(med('anchor', 'rssKiB') / 1024).toFixed(0)} MiB`,
  ].join(' | ');
}

async function unpackedPackage(scratch: string): Promise<string> {
  if (process.env.PACKAGE !== undefined) return process.env.PACKAGE;
  const { version } = JSON.parse(await readFile(join(ROOT, 'package.json'), 'utf8')) as {
    version: string;
  };
  const archive = join(ROOT, 'release', `boxkeeper-${version}-linux-x64.tar.gz`);
  if (!existsSync(archive))
    throw new Error(`${archive} is missing: run "npm run package -- --target linux-x64" first`);
  await promisify(execFile)('tar', ['-xzf', archive, '-C', scratch]);
  return join(scratch, `boxkeeper-${version}-linux-x64`);
}

async function main(): Promise<void> {
  if (!existsSync(TIME)) throw new Error(`${TIME} (GNU time) is missing: bash bench/setup.sh`);
  const scratch = await mkdtemp(join(tmpdir(), 'bk-bench-startup-'));
  try {
    const box = await createFixtureBox({
      root: join(scratch, 'box'),
      hostAddr: 'http://127.0.0.1:9',
    });
    const settings = box.settingsPath;
    const results: CaseResult[] = [];
    for (const target of TARGETS) {
      let node: string;
      let cli: string[];
      if (target === 'build') {
        const main = join(ROOT, 'dist', 'cli', 'main.js');
        if (!existsSync(main)) throw new Error(`${main} is missing: run "npm run build" first`);
        node = process.execPath;
        cli = [node, main];
      } else if (target === 'package') {
        const pkg = await unpackedPackage(scratch);
        node = join(pkg, 'runtime', 'node');
        cli = [join(pkg, 'bin', 'boxkeeper')];
      } else throw new Error(`TARGETS: unknown target ${target} (build, package)`);
      const anchor = [node, '-e', '0'];
      results.push(await runCase(target, '--help', [...cli, '--help'], anchor, scratch));
      results.push(
        await runCase(
          target,
          'status',
          [...cli, 'status', '--settings', settings],
          anchor,
          scratch,
        ),
      );
    }
    const lines = [
      `Start-up, ${RUNS} pairs per case (paired medians; the anchor is \`node -e 0\` of the same Node)`,
      '',
      '| from | command | wall | node -e 0 | ratio (wall) | CPU (cmd / anchor) | ratio (CPU) | peak RSS (cmd / anchor) |',
      '|---|---|---|---|---|---|---|---|',
      ...results.map((r) => `| ${row(r)} |`),
    ];
    process.stdout.write(`${lines.join('\n')}\n`);
    const resultsDir = join(ROOT, 'bench', 'results');
    await mkdir(resultsDir, { recursive: true });
    const file = join(resultsDir, `startup-${new Date().toISOString().replace(/[:.]/g, '-')}.json`);
    await writeFile(
      file,
      JSON.stringify({ runs: RUNS, warmup: WARMUP, node: process.version, results }, null, 2),
    );
    process.stderr.write(`wrote ${file}\n`);
    await box.cleanup();
  } finally {
    await rm(scratch, { recursive: true, force: true });
  }
}

await main();
