// Benchmark of the snapshot store (services/snapshot/snapshots.ts over adapters/snapshot-repo.ts) side by
// side with the real ostree (bare repo), cp -a and rsync, on a generated tree like the one of
// ../shared/reference/deepin-upgrade-manager-and-ostree.md §3.1. See bench/README.md.
//
//   bash bench/setup.sh && node --import tsx bench/snapshots.ts
//
// Every boxkeeper operation runs in its own process (bench/snapshot-case.ts) under
// /usr/bin/time, so that its peak memory is its own. Each case: untimed setup, `sync`, the timed
// command, untimed teardown; WARMUP + RUNS rounds, the contenders' order rotated every round
// (A/B, B/A, ...), medians and min–max over the measured rounds, and paired ratios
// (boxkeeper / reference, same round).
import { execFileSync, spawnSync } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import {
  existsSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  renameSync,
  rmSync,
  statfsSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import { cpus, release, totalmem } from 'node:os';
import { dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { CaseArgs, CaseOutput } from './snapshot-case.ts';

// ---- configuration ---------------------------------------------------------------------------

function envInt(name: string, fallback: number): number {
  const raw = process.env[name];
  if (raw === undefined || raw === '') return fallback;
  const n = Number(raw);
  if (!Number.isInteger(n) || n < 0) throw new Error(`${name} must be a non-negative integer`);
  return n;
}

const cfg = {
  runs: Math.max(1, envInt('RUNS', 3)),
  warmup: envInt('WARMUP', 1),
  /** Regular files in the tree, the binaries included. */
  nfiles: envInt('NFILES', 20_000),
  /** Directories below the tree's root. */
  ndirs: envInt('NDIRS', 1_830),
  nlinks: envInt('NLINKS', 20),
  nchanged: envInt('NCHANGED', 50),
  minKiB: envInt('MIN_KIB', 1),
  maxKiB: envInt('MAX_KIB', 20),
  binariesMiB: (process.env.BINARIES_MIB ?? '20,25,30,35,40,45')
    .split(',')
    .filter((s) => s.trim() !== '')
    .map(Number),
  seed: envInt('SEED', 1),
  tmp: process.env.BENCH_TMP ?? '/var/tmp',
  keep: process.env.KEEP === '1',
  profile: process.env.PROFILE === '1',
  /** How boxkeeper processes run: 'js' = compiled by tsc first (like dist/), 'tsx' = on the fly. */
  runner: process.env.RUNNER === 'tsx' ? 'tsx' : 'js',
  cases: new Set((process.env.CASES ?? '1,2,3,4').split(',').map((s) => s.trim())),
};

const here = dirname(fileURLToPath(import.meta.url));
const projectRoot = resolve(here, '..');
const resultsDir = join(here, 'results');

// ---- small helpers ---------------------------------------------------------------------------

/** mulberry32: a seeded PRNG, so the tree's shape (not its content) is reproducible. */
function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

function log(msg: string): void {
  process.stderr.write(`[bench ${new Date().toISOString().slice(11, 19)}] ${msg}\n`);
}

function sh(cmd: string, args: string[]): string {
  return execFileSync(cmd, args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
}

function syncDisks(): void {
  execFileSync('sync');
}

function sleepMs(ms: number): void {
  Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms);
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const mid = Math.floor(s.length / 2);
  return s.length % 2 === 1 ? (s[mid] ?? NaN) : ((s[mid - 1] ?? NaN) + (s[mid] ?? NaN)) / 2;
}

interface Stat {
  median: number;
  min: number;
  max: number;
}

function stat(xs: number[]): Stat {
  return { median: median(xs), min: Math.min(...xs), max: Math.max(...xs) };
}

// ---- the tree ---------------------------------------------------------------------------------

interface TreeInfo {
  root: string;
  files: number;
  dirs: number;
  symlinks: number;
  bytes: number;
  /** The small files rewritten by the update variant (relative paths and sizes). */
  changed: Array<{ rel: string; size: number }>;
}

function generateTree(root: string): TreeInfo {
  const rnd = prng(cfg.seed);
  const pick = <T>(xs: T[]): T => xs[Math.floor(rnd() * xs.length)] as T;
  mkdirSync(root, { recursive: true });
  // Nested directories: each new one goes under a random existing one, depth at most 8.
  const dirs: Array<{ rel: string; depth: number }> = [{ rel: '', depth: 0 }];
  for (let i = 1; i < cfg.ndirs; i++) {
    let parent = pick(dirs);
    while (parent.depth >= 8) parent = pick(dirs);
    const rel = join(parent.rel, `d${i}`);
    mkdirSync(join(root, rel));
    dirs.push({ rel, depth: parent.depth + 1 });
  }
  let bytes = 0;
  const small: Array<{ rel: string; size: number }> = [];
  const nsmall = Math.max(0, cfg.nfiles - cfg.binariesMiB.length);
  const minB = cfg.minKiB * 1024;
  const span = (cfg.maxKiB - cfg.minKiB) * 1024 + 1;
  for (let i = 0; i < nsmall; i++) {
    const rel = join(pick(dirs).rel, `f${i}.dat`);
    const size = minB + Math.floor(rnd() * span);
    writeFileSync(join(root, rel), randomBytes(size));
    small.push({ rel, size });
    bytes += size;
  }
  if (cfg.binariesMiB.length > 0) {
    mkdirSync(join(root, 'bin'));
    cfg.binariesMiB.forEach((mib, i) => {
      const size = mib * 1024 * 1024;
      writeFileSync(join(root, 'bin', `app${i}.bin`), randomBytes(size), { mode: 0o755 });
      bytes += size;
    });
  }
  let symlinks = 0;
  for (let i = 0; i < cfg.nlinks && small.length > 0; i++) {
    const dir = pick(dirs).rel;
    const target = relative(join(root, dir), join(root, pick(small).rel));
    symlinkSync(target, join(root, dir, `link${i}`));
    symlinks++;
  }
  // The update variant: NCHANGED distinct small files, the same set in every case and round.
  const changed: TreeInfo['changed'] = [];
  const taken = new Set<number>();
  while (changed.length < Math.min(cfg.nchanged, small.length)) {
    const i = Math.floor(rnd() * small.length);
    if (taken.has(i)) continue;
    taken.add(i);
    changed.push(small[i] as { rel: string; size: number });
  }
  return {
    root,
    files: nsmall + cfg.binariesMiB.length,
    dirs: dirs.length - 1 + (cfg.binariesMiB.length > 0 ? 1 : 0),
    symlinks,
    bytes,
    changed,
  };
}

/** The update: the changed files get new content of the same size, written in place. */
function rewriteInPlace(tree: string, changed: TreeInfo['changed']): void {
  for (const f of changed) writeFileSync(join(tree, f.rel), randomBytes(f.size));
}

/** The same, by replacing the file (new inode): what an update of a hardlink checkout must do. */
function rewriteByReplace(tree: string, changed: TreeInfo['changed']): void {
  for (const f of changed) {
    const p = join(tree, f.rel);
    writeFileSync(`${p}.new`, randomBytes(f.size), { mode: 0o644 });
    renameSync(`${p}.new`, p);
  }
}

// ---- measuring ------------------------------------------------------------------------------

interface Measure {
  /** Whole process, parent's clock (s). */
  wallS: number;
  /** The operation inside a boxkeeper process, without Node/tsx start-up (s). */
  opS?: number;
  cpuS: number;
  maxRssMiB: number;
  writtenMB: number;
  readMB: number;
  /** CPU used by other processes during the step, % of all cores (from /proc/stat). */
  bgCpuPct: number;
  result?: CaseOutput['result'];
}

/** Busy and total CPU time of the whole machine (s), from /proc/stat; zeros elsewhere. */
function machineCpu(): { busy: number; total: number } {
  try {
    const line = readFileSync('/proc/stat', 'utf8').split('\n')[0] ?? '';
    const v = line.trim().split(/\s+/).slice(1).map(Number);
    const total = v.slice(0, 8).reduce((a, b) => a + b, 0);
    const idle = (v[3] ?? 0) + (v[4] ?? 0);
    return { busy: (total - idle) / 100, total: total / 100 };
  } catch {
    return { busy: 0, total: 0 };
  }
}

let timeFile = '';

/** Runs argv under GNU time; throws on failure. */
function timed(label: string, argv: string[]): Measure & { stdout: string } {
  const cpu0 = machineCpu();
  const t0 = process.hrtime.bigint();
  const p = spawnSync('/usr/bin/time', ['-f', '%e %U %S %M %O %I', '-o', timeFile, ...argv], {
    cwd: projectRoot,
    encoding: 'utf8',
    maxBuffer: 256 * 1024 * 1024,
  });
  const wallS = Number(process.hrtime.bigint() - t0) / 1e9;
  const cpu1 = machineCpu();
  if (p.status !== 0) {
    throw new Error(
      `${label} failed (exit ${String(p.status)}): ${argv.join(' ')}\n${p.stderr}${p.stdout}`,
    );
  }
  const last = readFileSync(timeFile, 'utf8').trim().split('\n').at(-1) ?? '';
  const [, user = NaN, sys = NaN, rssKiB = NaN, outBlocks = NaN, inBlocks = NaN] = last
    .split(' ')
    .map(Number);
  const cpuS = user + sys;
  const bgCpuPct =
    cpu1.total > cpu0.total
      ? Math.max(0, (100 * (cpu1.busy - cpu0.busy - cpuS)) / (cpu1.total - cpu0.total))
      : 0;
  return {
    wallS,
    bgCpuPct,
    cpuS,
    maxRssMiB: rssKiB / 1024,
    writtenMB: (outBlocks * 512) / 1e6,
    readMB: (inBlocks * 512) / 1e6,
    stdout: p.stdout,
  };
}

let profileCounter = 0;
let caseScript = '';

/**
 * Compiles bench/snapshot-case.ts and what it imports with tsc into `dir`, so boxkeeper processes
 * start like the built CLI (plain JavaScript) rather than through the tsx loader.
 */
function buildCaseScript(dir: string): string {
  sh(process.execPath, [
    join(projectRoot, 'node_modules', 'typescript', 'bin', 'tsc'),
    '-p',
    join(here, 'tsconfig.case.json'),
    '--outDir',
    dir,
  ]);
  writeFileSync(join(dir, 'package.json'), JSON.stringify({ type: 'module' }));
  symlinkSync(join(projectRoot, 'node_modules'), join(dir, 'node_modules'));
  return join(dir, 'bench', 'snapshot-case.js');
}

/** A boxkeeper operation in its own process (bench/snapshot-case.ts). */
function boxkeeper(label: string, args: CaseArgs): Measure {
  const node = [process.execPath];
  if (cfg.profile) {
    node.push(
      '--cpu-prof',
      `--cpu-prof-dir=${join(resultsDir, 'profiles')}`,
      `--cpu-prof-name=${String(++profileCounter).padStart(3, '0')}-${label.replace(/\W+/g, '_')}.cpuprofile`,
    );
  }
  if (cfg.runner === 'tsx') node.push('--import', 'tsx', join(here, 'snapshot-case.ts'));
  else node.push(caseScript);
  node.push(JSON.stringify(args));
  const m = timed(label, node);
  const line = m.stdout.trim().split('\n').at(-1) ?? '';
  const out = JSON.parse(line) as CaseOutput;
  return {
    wallS: m.wallS,
    bgCpuPct: m.bgCpuPct,
    opS: out.opMs / 1000,
    cpuS: m.cpuS,
    maxRssMiB: out.maxRssKiB / 1024,
    writtenMB: m.writtenMB,
    readMB: m.readMB,
    result: out.result,
  };
}

function command(label: string, argv: string[]): Measure {
  const m: Measure & { stdout?: string } = timed(label, argv);
  delete m.stdout;
  return m;
}

interface Contender {
  name: string;
  /** Untimed, before this contender's timed step. */
  setup?: (round: number) => void;
  run: (round: number) => Measure;
  /** Untimed, after it; `last` is true in the final round. */
  teardown?: (round: number, last: boolean) => void;
}

interface CaseSpec {
  id: string;
  title: string;
  contenders: Contender[];
  /** Untimed, before each round's contenders. */
  roundSetup?: (round: number) => void;
  roundTeardown?: (round: number, last: boolean) => void;
}

type CaseResults = Map<string, Measure[]>;

function runCase(spec: CaseSpec): CaseResults {
  const results: CaseResults = new Map(spec.contenders.map((c) => [c.name, []]));
  const total = cfg.warmup + cfg.runs;
  const k = spec.contenders.length;
  for (let r = 0; r < total; r++) {
    const last = r === total - 1;
    const tag = r < cfg.warmup ? 'warm-up' : `run ${r - cfg.warmup + 1}/${cfg.runs}`;
    spec.roundSetup?.(r);
    // Rotate the order every round: A B C, B C A, C A B, ...
    const order = spec.contenders.map((_, i) => spec.contenders[(i + r) % k] as Contender);
    for (const c of order) {
      c.setup?.(r);
      syncDisks();
      const m = c.run(r);
      log(
        `case ${spec.id} ${tag}: ${c.name}: ${m.wallS.toFixed(2)} s` +
          (m.opS === undefined ? '' : ` (op ${m.opS.toFixed(2)} s)`) +
          ` rss ${m.maxRssMiB.toFixed(0)} MiB, other processes ${m.bgCpuPct.toFixed(0)}% CPU` +
          (m.result === undefined ? '' : ` ${JSON.stringify(m.result)}`),
      );
      c.teardown?.(r, last);
      if (r >= cfg.warmup) results.get(c.name)?.push(m);
    }
    spec.roundTeardown?.(r, last);
  }
  return results;
}

// ---- machine ----------------------------------------------------------------------------------

function firstLine(cmd: string, args: string[]): string {
  try {
    return sh(cmd, args).trim().split('\n')[0] ?? '';
  } catch {
    return 'n/a';
  }
}

function loadAvg(): string {
  try {
    return readFileSync('/proc/loadavg', 'utf8').split(' ').slice(0, 3).join(' ');
  } catch {
    return 'n/a';
  }
}

/** The measured code: git commit, whether the store's sources differ from it, their hash. */
function codeVersion(): string {
  const files = [
    'services/snapshot/snapshots.ts',
    'adapters/snapshot-repo.ts',
    'adapters/tree.ts',
    'adapters/hash-pool.ts',
    'adapters/fs-atomic.ts',
  ].filter((f) => existsSync(join(projectRoot, f)));
  const hash = createHash('sha256');
  for (const f of files) hash.update(readFileSync(join(projectRoot, f)));
  let commit = 'unknown';
  let dirty = '';
  try {
    commit = sh('git', ['-C', projectRoot, 'rev-parse', '--short', 'HEAD']).trim();
    const status = sh('git', ['-C', projectRoot, 'status', '--porcelain', '--', ...files]).trim();
    if (status !== '') dirty = ' + uncommitted changes';
  } catch {
    // not a git checkout
  }
  return `${commit}${dirty} (store sources sha256 ${hash.digest('hex').slice(0, 12)})`;
}

function machine(dir: string) {
  const cpuinfo = readFileSync('/proc/cpuinfo', 'utf8');
  const model = /model name\s*:\s*(.*)/.exec(cpuinfo)?.[1] ?? cpus()[0]?.model ?? 'unknown';
  const shaNi = /\bsha_ni\b/.test(cpuinfo);
  // The mount holding `dir`: the longest mount point that prefixes it.
  let mount = { point: '', type: '', options: '', device: '' };
  for (const line of readFileSync('/proc/mounts', 'utf8').split('\n')) {
    const [device = '', point = '', type = '', options = ''] = line.split(' ');
    if (
      (dir === point || dir.startsWith(point === '/' ? '/' : `${point}/`)) &&
      point.length >= mount.point.length
    )
      mount = { point, type, options, device };
  }
  let osName = 'unknown';
  try {
    osName = /PRETTY_NAME="([^"]*)"/.exec(readFileSync('/etc/os-release', 'utf8'))?.[1] ?? osName;
  } catch {
    // not Linux-like
  }
  const ostreeVersion = /Version:\s*'([^']+)'/.exec(sh('ostree', ['--version']))?.[1] ?? 'n/a';
  return {
    date: new Date().toISOString(),
    loadAtStart: loadAvg(),
    cpu: model,
    cores: cpus().length,
    shaNi,
    memGiB: Math.round(totalmem() / 2 ** 30),
    kernel: release(),
    os: osName,
    fs: `${mount.type} (${mount.options}) on ${mount.device}, mounted at ${mount.point}`,
    node: process.version,
    ostree: ostreeVersion,
    code: codeVersion(),
    rsync: firstLine('rsync', ['--version']),
    cp: firstLine('cp', ['--version']),
  };
}

// ---- the cases ------------------------------------------------------------------------------

function main(): void {
  for (const tool of ['ostree', 'rsync', 'cp']) {
    try {
      sh('sh', ['-c', `command -v ${tool}`]);
    } catch {
      throw new Error(`${tool} is not installed; run: bash bench/setup.sh`);
    }
  }
  if (!existsSync('/usr/bin/time')) throw new Error('/usr/bin/time missing; run bench/setup.sh');

  mkdirSync(cfg.tmp, { recursive: true });
  const estimate =
    cfg.nfiles * ((cfg.minKiB + cfg.maxKiB) / 2) * 1024 +
    cfg.binariesMiB.reduce((n, m) => n + m * 2 ** 20, 0);
  const fs0 = statfsSync(cfg.tmp);
  const free = fs0.bavail * fs0.bsize;
  // Tree + live copy + rsync copy + two repositories (+ a copy in flight) and a margin.
  const need = 7 * estimate + 512 * 2 ** 20;
  log(
    `free on ${cfg.tmp}: ${(free / 1e9).toFixed(1)} GB, need about ${(need / 1e9).toFixed(1)} GB`,
  );
  if (free < need) throw new Error(`not enough free space on ${cfg.tmp}`);

  const work = mkdtempSync(join(cfg.tmp, 'bk-bench-'));
  process.on('SIGINT', () => {
    if (!cfg.keep) rmSync(work, { recursive: true, force: true });
    process.exit(130);
  });
  timeFile = join(work, 'time.out');
  const started = Date.now();
  const info = machine(work);
  const results: Record<string, CaseResults> = {};
  try {
    if (cfg.runner === 'js') {
      log('compiling bench/snapshot-case.ts with tsc');
      caseScript = buildCaseScript(join(work, 'build'));
    }
    const A = join(work, 'A'); // pristine tree: rsync's source
    const L = join(work, 'L'); // the live tree boxkeeper manages (and ostree commits in case 1)
    log(`generating the tree in ${A}`);
    const t0 = Date.now();
    const tree = generateTree(A);
    log(
      `tree: ${tree.files} files, ${tree.dirs} dirs, ${tree.symlinks} symlinks, ` +
        `${(tree.bytes / 1e6).toFixed(1)} MB in ${((Date.now() - t0) / 1000).toFixed(1)} s`,
    );
    sh('cp', ['-a', A, L]);
    syncDisks();
    // Nothing in L may be "racy" for the stat cache (changed < 2 s before a cache write).
    sleepMs(2100);

    // Kept from the last round of case 1 for the later cases.
    let bkRepo = '';
    let osRepo = '';
    let copyC = '';

    // ---- 1. first commit ----
    const c1Bk = (r: number) => join(work, `c1-bk-${r}`);
    const c1Os = (r: number) => join(work, `c1-os-${r}`);
    const c1Cp = (r: number) => join(work, `c1-cp-${r}`);
    results['1'] = runCase({
      id: '1',
      title: 'first commit',
      contenders: [
        {
          name: 'boxkeeper commit',
          setup: (r) => rmSync(c1Bk(r), { recursive: true, force: true }),
          run: (r) =>
            boxkeeper('c1-commit', { op: 'commit', tree: L, repo: c1Bk(r), version: 'V1' }),
          teardown: (r, last) => {
            if (last) bkRepo = c1Bk(r);
            else rmSync(c1Bk(r), { recursive: true, force: true });
          },
        },
        {
          name: 'ostree init + commit',
          setup: (r) => rmSync(c1Os(r), { recursive: true, force: true }),
          run: (r) =>
            command('c1-ostree', [
              'sh',
              '-c',
              'ostree init --repo="$1" --mode=bare && ostree commit --repo="$1" --branch=main -s V1 --tree=dir="$2" >/dev/null',
              'sh',
              c1Os(r),
              L,
            ]),
          teardown: (r, last) => {
            if (last) osRepo = c1Os(r);
            else rmSync(c1Os(r), { recursive: true, force: true });
          },
        },
        {
          name: 'cp -a',
          setup: (r) => rmSync(c1Cp(r), { recursive: true, force: true }),
          run: (r) => command('c1-cp', ['cp', '-a', L, c1Cp(r)]),
          teardown: (r, last) => {
            if (last) copyC = c1Cp(r);
            else rmSync(c1Cp(r), { recursive: true, force: true });
          },
        },
      ],
    });

    // ---- 2. commit after NCHANGED changed files ----
    const W = join(work, 'W');
    if (cfg.cases.has('2')) {
      results['2'] = runCase({
        id: '2',
        title: `commit after ${tree.changed.length} changed files`,
        roundSetup: () => {
          // boxkeeper's live tree (also ostree's "plain directory"): changed in place.
          rewriteInPlace(L, tree.changed);
          // ostree's best case: a hardlink checkout of V1 with the files replaced.
          rmSync(W, { recursive: true, force: true });
          sh('ostree', ['checkout', `--repo=${osRepo}`, '-H', 'main', W]);
          rewriteByReplace(W, tree.changed);
        },
        contenders: [
          {
            name: 'boxkeeper commit',
            run: () =>
              boxkeeper('c2-commit', { op: 'commit', tree: L, repo: bkRepo, version: 'V2' }),
          },
          {
            name: 'ostree commit --link-checkout-speedup (hardlink checkout)',
            run: () =>
              command('c2-ostree-speedup', [
                'ostree',
                'commit',
                `--repo=${osRepo}`,
                '--branch=w',
                '-s',
                'W',
                '--link-checkout-speedup',
                `--tree=dir=${W}`,
              ]),
          },
          {
            name: 'ostree commit (plain directory)',
            run: () =>
              command('c2-ostree-plain', [
                'ostree',
                'commit',
                `--repo=${osRepo}`,
                '--branch=b',
                '-s',
                'B',
                `--tree=dir=${L}`,
              ]),
          },
        ],
        roundTeardown: () => {
          // Back to V1 everywhere, so that every round starts from the same state.
          boxkeeper('c2-teardown-rollback', {
            op: 'rollback',
            tree: L,
            repo: bkRepo,
            version: 'V1',
          });
          boxkeeper('c2-teardown-delete', { op: 'delete', tree: L, repo: bkRepo, version: 'V2' });
          sh('ostree', ['refs', `--repo=${osRepo}`, '--delete', 'w', 'b']);
          sh('ostree', ['prune', `--repo=${osRepo}`, '--refs-only']);
          rmSync(W, { recursive: true, force: true });
        },
      });
    }

    // ---- 3. rollback of the changed files ----
    if (cfg.cases.has('3')) {
      results['3'] = runCase({
        id: '3',
        title: `rollback of ${tree.changed.length} changed files`,
        contenders: [
          {
            name: 'boxkeeper rollback --discard',
            setup: () => rewriteInPlace(L, tree.changed),
            run: () =>
              boxkeeper('c3-rollback', { op: 'rollback', tree: L, repo: bkRepo, version: 'V1' }),
          },
          {
            name: 'rsync -a',
            setup: () => rewriteInPlace(copyC, tree.changed),
            run: () => command('c3-rsync', ['rsync', '-a', `${A}/`, `${copyC}/`]),
          },
          {
            name: 'rsync -a --fsync',
            setup: () => rewriteInPlace(copyC, tree.changed),
            run: () => command('c3-rsync-fsync', ['rsync', '-a', '--fsync', `${A}/`, `${copyC}/`]),
          },
        ],
      });
    }

    // ---- 4. verify ----
    if (cfg.cases.has('4')) {
      results['4'] = runCase({
        id: '4',
        title: 'verify',
        contenders: [
          {
            name: 'boxkeeper verify',
            run: () => boxkeeper('c4-verify', { op: 'verify', tree: L, repo: bkRepo }),
          },
          {
            name: 'ostree fsck',
            run: () => command('c4-fsck', ['ostree', 'fsck', `--repo=${osRepo}`, '-q']),
          },
          {
            name: `node start-up (${cfg.runner === 'tsx' ? 'tsx' : 'compiled JS'}, no operation)`,
            run: () => boxkeeper('c4-noop', { op: 'noop', tree: L, repo: bkRepo }),
          },
        ],
      });
    }
  } finally {
    if (cfg.keep) log(`kept ${work}`);
    else rmSync(work, { recursive: true, force: true });
  }
  const codeAtEnd = codeVersion();
  if (codeAtEnd !== info.code) {
    log(`WARNING: the store's sources changed during the run (now ${codeAtEnd})`);
    info.code += `, changed during the run to ${codeAtEnd}`;
  }
  report(info, results, Date.now() - started);
}

// ---- report -----------------------------------------------------------------------------------

interface Ratio {
  label: string;
  a: string;
  b: string;
  caseId: string;
  /** Target: a/b at most this. */
  target?: number;
}

const ratios: Ratio[] = [
  {
    caseId: '1',
    label: 'first commit: boxkeeper / ostree',
    a: 'boxkeeper commit',
    b: 'ostree init + commit',
    target: 1,
  },
  { caseId: '1', label: 'first commit: boxkeeper / cp -a', a: 'boxkeeper commit', b: 'cp -a' },
  {
    caseId: '2',
    label: 'incremental commit: boxkeeper / ostree --link-checkout-speedup',
    a: 'boxkeeper commit',
    b: 'ostree commit --link-checkout-speedup (hardlink checkout)',
    target: 0.6,
  },
  {
    caseId: '2',
    label: 'incremental commit: boxkeeper / ostree plain directory',
    a: 'boxkeeper commit',
    b: 'ostree commit (plain directory)',
  },
  {
    caseId: '3',
    label: 'rollback: boxkeeper / rsync -a',
    a: 'boxkeeper rollback --discard',
    b: 'rsync -a',
    target: 2,
  },
  {
    caseId: '3',
    label: 'rollback: boxkeeper / rsync -a --fsync',
    a: 'boxkeeper rollback --discard',
    b: 'rsync -a --fsync',
  },
  {
    caseId: '4',
    label: 'verify: boxkeeper / ostree fsck',
    a: 'boxkeeper verify',
    b: 'ostree fsck',
    target: 0.5,
  },
];

const f2 = (x: number) => x.toFixed(2);
const range = (s: Stat, f: (x: number) => string = f2) => `${f(s.min)}–${f(s.max)}`;

function report(
  info: ReturnType<typeof machine>,
  results: Record<string, CaseResults>,
  elapsedMs: number,
): void {
  const lines: string[] = [];
  lines.push(
    `Machine: ${info.cpu}, ${info.cores} cores${info.shaNi ? ' (SHA-NI)' : ''}, ${info.memGiB} GiB, ` +
      `${info.os}, Linux ${info.kernel}, ${info.fs}; Node ${info.node}, ostree ${info.ostree}, ` +
      `${info.rsync}, ${info.cp}.`,
  );
  lines.push(
    `Code: ${info.code}. RUNS=${cfg.runs} WARMUP=${cfg.warmup} RUNNER=${cfg.runner}; total ${(elapsedMs / 1000).toFixed(0)} s; ` +
      `load average ${info.loadAtStart} at start, ${loadAvg()} at end.`,
  );
  lines.push('');
  lines.push(
    '| case | command | median s | min–max s | boxkeeper op s: median (min–max) | cpu s | max RSS MiB | written MB | other CPU % | result |',
  );
  lines.push('|---|---|---:|---:|---:|---:|---:|---:|---:|---|');
  const titles: Record<string, string> = {
    '1': '1 first commit',
    '2': `2 commit after ${cfg.nchanged} changed`,
    '3': `3 rollback of ${cfg.nchanged}`,
    '4': '4 verify',
  };
  const summary: Record<string, Record<string, unknown>> = {};
  for (const [id, res] of Object.entries(results)) {
    summary[id] = {};
    for (const [name, ms] of res) {
      if (ms.length === 0) continue;
      const wall = stat(ms.map((m) => m.wallS));
      const ops = ms.map((m) => m.opS).filter((x): x is number => x !== undefined);
      const op = ops.length > 0 ? stat(ops) : undefined;
      const cpu = stat(ms.map((m) => m.cpuS));
      const rss = stat(ms.map((m) => m.maxRssMiB));
      const written = stat(ms.map((m) => m.writtenMB));
      const bg = stat(ms.map((m) => m.bgCpuPct));
      const result = ms.at(-1)?.result;
      lines.push(
        `| ${titles[id] ?? id} | ${name} | ${f2(wall.median)} | ${range(wall)} | ` +
          `${op === undefined ? '' : `${f2(op.median)} (${range(op)})`} | ${f2(cpu.median)} | ` +
          `${rss.max.toFixed(0)} | ${written.median.toFixed(1)} | ${bg.median.toFixed(0)} | ` +
          `${
            result === undefined
              ? ''
              : Object.entries(result)
                  .map(([k, v]) => `${k}=${String(v)}`)
                  .join(' ')
          } |`,
      );
      summary[id][name] = { wall, op, cpu, rss, written, bg, runs: ms };
    }
  }
  lines.push('');
  lines.push(
    'Paired ratios (same round; median, min–max), on the operation time and on the whole process:',
  );
  lines.push('');
  lines.push(
    '| ratio | op: median | op: min–max | process: median | process: min–max | target | met (op / process) |',
  );
  lines.push('|---|---:|---:|---:|---:|---:|---|');
  const ratioOut: Array<Record<string, unknown>> = [];
  for (const q of ratios) {
    const a = results[q.caseId]?.get(q.a);
    const b = results[q.caseId]?.get(q.b);
    if (a === undefined || b === undefined || a.length === 0 || a.length !== b.length) continue;
    const op = stat(a.map((m, i) => (m.opS ?? m.wallS) / (b[i]?.wallS ?? NaN)));
    const proc = stat(a.map((m, i) => m.wallS / (b[i]?.wallS ?? NaN)));
    const met = (s: Stat) => (q.target === undefined ? '' : s.median <= q.target ? 'yes' : 'no');
    lines.push(
      `| ${q.label} | ${f2(op.median)} | ${range(op)} | ${f2(proc.median)} | ${range(proc)} | ` +
        `${q.target === undefined ? '' : `≤ ${q.target}`} | ${q.target === undefined ? '' : `${met(op)} / ${met(proc)}`} |`,
    );
    ratioOut.push({ ...q, op, process: proc });
  }
  const bkRss = Object.values(results).flatMap((res) =>
    [...res.entries()]
      .filter(([name]) => name.startsWith('boxkeeper'))
      .flatMap(([name, ms]) => ms.map((m) => ({ name, rss: m.maxRssMiB }))),
  );
  const peak = bkRss.reduce((p, x) => (x.rss > p.rss ? x : p), { name: '', rss: 0 });
  lines.push('');
  const peakMB = peak.rss * 1.048576;
  lines.push(
    `Peak memory of a boxkeeper process: ${peak.rss.toFixed(0)} MiB = ${peakMB.toFixed(0)} MB ` +
      `(${peak.name}); target < 150 MB: ${peakMB < 150 ? 'met' : 'missed'}` +
      `${peak.rss < 150 && peakMB >= 150 ? ' (but < 150 MiB)' : ''}.`,
  );
  const text = lines.join('\n');
  process.stdout.write(`${text}\n`);
  mkdirSync(resultsDir, { recursive: true });
  const file = join(
    resultsDir,
    `snapshots-${info.date.replace(/[-:]/g, '').replace(/\..*$/, '')}.json`,
  );
  writeFileSync(
    file,
    JSON.stringify(
      {
        machine: info,
        config: { ...cfg, cases: [...cfg.cases] },
        summary,
        ratios: ratioOut,
        table: text,
      },
      null,
      2,
    ),
  );
  log(`results written to ${relative(projectRoot, file)}`);
}

main();
