// Patch extraction: boxkeeper's extractZipSafely (bench/extract-case.ts, one process per run)
// against Info-ZIP `unzip -q` on the same zip (an 80 MB incompressible-ish jar + 2,000 small
// text/xml/sql files in nested dirs, ~169 MB extracted), in alternating order (A B A B …), with
// paired ratios, throughput, CPU time and peak RSS of each process. Usage and knobs:
// bench/README.md.
import { createHash, randomBytes } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { mkdir, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { loadavg } from 'node:os';
import { dirname, join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import { writeZip, type ZipEntrySource } from '../adapters/zip-write.ts';
import { caseCommand, median, range, run } from './common.ts';

const here = dirname(fileURLToPath(import.meta.url));
const resultsDir = join(here, 'results');
const num = (name: string, fallback: number) => Number(process.env[name] ?? fallback);
const cfg = {
  runs: num('RUNS', 5),
  warmup: num('WARMUP', 1),
  jarMB: num('JAR_MB', 80),
  files: num('FILES', 2000),
  smallMB: num('SMALL_MB', 89),
  tmp: process.env.BENCH_TMP ?? '/var/tmp',
  runner: process.env.RUNNER ?? 'js',
  profile: process.env.PROFILE === '1',
};
const MB = 1e6;
const log = (line: string) => process.stderr.write(`${line}\n`);

/** A small deterministic generator (mulberry32), so the tree's shape is the same every run. */
function prng(seed: number) {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** The zip's entries: the jar (random blocks with some class-like text: deflates to ~90%). */
function entries(): ZipEntrySource[] {
  const rand = prng(1);
  const jar = randomBytes(cfg.jarMB * MB);
  const classText = Buffer.from(
    'Lcom/icb/box/service/CallHandler;()V java/lang/Object '.repeat(80),
  );
  for (let at = 0; at + 65536 <= jar.length; at += 65536) classText.copy(jar, at, 0, 4096);
  // Text from a pool of words, cut at random places: compresses about 3× like real configs.
  const words = Array.from({ length: 3000 }, () =>
    Math.floor(rand() * 2 ** 40)
      .toString(36)
      .slice(0, 3 + Math.floor(rand() * 8)),
  );
  let text = '';
  while (text.length < 2 * 2 ** 20) {
    const line = Array.from(
      { length: 4 + Math.floor(rand() * 10) },
      () => words[Math.floor(rand() * words.length)],
    );
    text += `${line.join(' ')};\n`;
  }
  const pool = Buffer.from(text);
  const mean = (cfg.smallMB * MB) / cfg.files;
  const list: ZipEntrySource[] = [{ name: 'icb-box.jar', data: jar }];
  const exts = ['xml', 'sql', 'txt', 'yml'];
  for (let i = 0; i < cfg.files; i++) {
    const size = Math.max(1, Math.round(mean * 2 * rand()));
    const at = Math.floor(rand() * (pool.length - size));
    const dir = `app/m${i % 25}/d${(i >> 5) % 8}`;
    list.push({
      name: `${dir}/f${i}.${exts[i % exts.length] ?? 'txt'}`,
      data: pool.subarray(at, at + size),
    });
  }
  return list;
}

interface Measure {
  /** Wall time of the whole process (start included). */
  seconds: number;
  /** Wall time of the extraction alone (boxkeeper: inside its process; unzip: = seconds). */
  extractSeconds: number;
  cpuSeconds: number;
  maxRssKiB: number;
  maxLoopDelayMs?: number;
}

/** GNU time's "%e %M %U %S" line. */
async function timed(timeFile: string) {
  const last = (await readFile(timeFile, 'utf8')).trim().split('\n').pop() ?? '';
  const [wall, rss, user, sys] = last.split(/\s+/).map(Number);
  return { wall: wall ?? NaN, rss: rss ?? NaN, cpu: (user ?? NaN) + (sys ?? NaN) };
}

/** Relative path → sha1 of every file under `dir`: the two extractions must be identical. */
async function treeHashes(dir: string): Promise<Map<string, string>> {
  const out = new Map<string, string>();
  for (const e of await readdir(dir, { recursive: true, withFileTypes: true })) {
    if (!e.isFile()) continue;
    const path = join(e.parentPath, e.name);
    const hash = createHash('sha1');
    for await (const piece of createReadStream(path)) hash.update(piece as Buffer);
    out.set(relative(dir, path), hash.digest('hex'));
  }
  return out;
}

async function main() {
  await mkdir(resultsDir, { recursive: true });
  const work = await mkdtemp(join(cfg.tmp, 'bk-bench-extract-'));
  const caseArgs = await caseCommand(join(here, 'extract-case.ts'), {
    runner: cfg.runner,
    profile: cfg.profile,
    profileDir: join(resultsDir, 'profiles'),
    bundlePackages: true,
  });
  const zip = join(work, 'patch.zip');
  const out = join(work, 'out');
  const timeFile = join(work, 'time.txt');
  const loadBefore = loadavg();
  try {
    log(`writing the zip (${cfg.jarMB} MB jar + ${cfg.files} files)…`);
    const list = entries();
    const totalBytes = list.reduce((n, e) => n + (e.data?.length ?? 0), 0);
    const zipBytes = await writeZip(zip, list);
    log(`${(zipBytes / MB).toFixed(0)} MB zip, ${(totalBytes / MB).toFixed(0)} MB extracted`);

    const settle = async () => {
      await rm(out, { recursive: true, force: true });
      // Both start with no dirty pages of the previous run still being written back.
      await run('sync', ['-f', work]);
    };
    const boxkeeper = async (): Promise<Measure> => {
      const args = ['-f', '%e %M %U %S', '-o', timeFile, process.execPath, ...caseArgs];
      const r = await run('/usr/bin/time', args, { ...process.env, ZIP: zip, DEST: out });
      const m = JSON.parse(r.stdout.trim().split('\n').pop() ?? '') as {
        seconds: number;
        bytes: number;
        files: number;
        maxLoopDelayMs: number;
      };
      if (m.bytes !== totalBytes || m.files !== list.length)
        throw new Error(`boxkeeper extracted ${m.files} files, ${m.bytes} bytes`);
      const t = await timed(timeFile);
      return {
        seconds: r.seconds,
        extractSeconds: m.seconds,
        cpuSeconds: t.cpu,
        maxRssKiB: t.rss,
        maxLoopDelayMs: m.maxLoopDelayMs,
      };
    };
    const unzip = async (): Promise<Measure> => {
      const args = ['-f', '%e %M %U %S', '-o', timeFile, 'unzip', '-q', zip, '-d', out];
      const r = await run('/usr/bin/time', args);
      const t = await timed(timeFile);
      return { seconds: r.seconds, extractSeconds: r.seconds, cpuSeconds: t.cpu, maxRssKiB: t.rss };
    };

    const bk: Measure[] = [];
    const uz: Measure[] = [];
    for (let r = 0; r < cfg.warmup + cfg.runs; r++) {
      const check = r === 0;
      await settle();
      const a = await boxkeeper();
      const bkHashes = check ? await treeHashes(out) : undefined;
      await settle();
      const b = await unzip();
      if (bkHashes !== undefined) {
        const uzHashes = await treeHashes(out);
        const differ = [...uzHashes].filter(([k, v]) => bkHashes.get(k) !== v);
        if (differ.length > 0 || uzHashes.size !== bkHashes.size)
          throw new Error(`boxkeeper's extraction differs from unzip's: ${differ.length} files`);
        log(`the two extractions are identical (${uzHashes.size} files)`);
      }
      const tag = r < cfg.warmup ? 'warm-up' : `run ${r - cfg.warmup + 1}`;
      log(
        `${tag}: boxkeeper ${a.seconds.toFixed(2)} s (extraction ${a.extractSeconds.toFixed(2)} s, ${(a.maxRssKiB / 1024).toFixed(0)} MiB, loop blocked ≤ ${a.maxLoopDelayMs?.toFixed(0)} ms), unzip ${b.seconds.toFixed(2)} s (${(b.maxRssKiB / 1024).toFixed(0)} MiB)`,
      );
      if (r >= cfg.warmup) {
        bk.push(a);
        uz.push(b);
      }
    }
    await settle();
    const loadAfter = loadavg();
    const mbps = (m: Measure) => totalBytes / MB / m.seconds;
    const mbpsExtract = (m: Measure) => totalBytes / MB / m.extractSeconds;
    const ratios = bk.map((a, i) => mbps(a) / mbps(uz[i] as Measure));
    const ratiosExtract = bk.map((a, i) => mbpsExtract(a) / mbps(uz[i] as Measure));
    const rssRatios = bk.map((a, i) => a.maxRssKiB / (uz[i] as Measure).maxRssKiB);
    const stamp = new Date().toISOString().replace(/[:.]/g, '-');
    const jsonPath = join(resultsDir, `extract-${stamp}.json`);
    await writeFile(
      jsonPath,
      JSON.stringify(
        { cfg, zipBytes, totalBytes, loadBefore, loadAfter, boxkeeper: bk, unzip: uz, ratios },
        null,
        2,
      ),
    );
    const fmtLoad = (l: number[]) => l.map((x) => x.toFixed(2)).join(' ');
    console.log(
      `${(zipBytes / MB).toFixed(0)} MB zip → ${(totalBytes / MB).toFixed(0)} MB in ${list.length} files; RUNS=${cfg.runs} + ${cfg.warmup} warm-up, runner ${cfg.runner}; load before ${fmtLoad(loadBefore)}, after ${fmtLoad(loadAfter)}\n`,
    );
    console.log('| contender | MB/s median | MB/s min–max | cpu s | max RSS MiB |');
    console.log('| --------- | ----------: | -----------: | ----: | ----------: |');
    const line = (name: string, ms: Measure[], speed: (m: Measure) => number) =>
      `| ${name} | ${median(ms.map(speed)).toFixed(1)} | ${range(ms.map(speed), 1)} | ${median(ms.map((m) => m.cpuSeconds)).toFixed(2)} | ${(Math.max(...ms.map((m) => m.maxRssKiB)) / 1024).toFixed(0)} |`;
    console.log(line('boxkeeper, whole process', bk, mbps));
    console.log(line('boxkeeper, extraction alone', bk, mbpsExtract));
    console.log(line('unzip -q, whole process', uz, mbps));
    console.log(
      `| **ratio boxkeeper / unzip (process)** | **${median(ratios).toFixed(2)}** | ${range(ratios, 2)} | | |`,
    );
    console.log(
      `| ratio boxkeeper / unzip (extraction alone) | ${median(ratiosExtract).toFixed(2)} | ${range(ratiosExtract, 2)} | | |`,
    );
    console.log(
      `| ratio of peak RSS boxkeeper / unzip | ${median(rssRatios).toFixed(1)} | ${range(rssRatios, 1)} | | |`,
    );
    const delays = bk.map((m) => m.maxLoopDelayMs ?? NaN);
    console.log(
      `\nboxkeeper's event loop blocked at most ${median(delays).toFixed(0)} ms (median over runs; ${range(delays, 0)})`,
    );
    log(`full result: ${jsonPath}`);
  } finally {
    await rm(work, { recursive: true, force: true });
  }
}

await main();
