// Chunked download: boxkeeper's downloadFile against curl fetching the same chunk URLs, both
// from the cloud simulator over loopback, in alternating order (A B A B …), with paired ratios,
// throughput and peak RSS of each process. Usage and knobs: bench/README.md.
import { createHash, randomBytes } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { API_PREFIX, createCloudClient } from '../adapters/cloud-client.ts';
import { createLogger } from '../adapters/logger.ts';
import { startCloudSimulator } from '../fixtures/cloud-sim/server.ts';
import { caseCommand, median, range, run } from './common.ts';

const here = dirname(fileURLToPath(import.meta.url));
const resultsDir = join(here, 'results');
const num = (name: string, fallback: number) => Number(process.env[name] ?? fallback);
const cfg = {
  sizesMB: (process.env.SIZES_MB ?? '100,200').split(',').map(Number),
  runs: num('RUNS', 3),
  warmup: num('WARMUP', 1),
  chunkSize: num('CHUNK', 65536),
  tmp: process.env.BENCH_TMP ?? '/var/tmp',
  runner: process.env.RUNNER ?? 'js',
  profile: process.env.PROFILE === '1',
};
const MB = 1e6;

interface Measure {
  seconds: number;
  maxRssKiB: number;
  cpuSeconds: number;
}

const log = (line: string) => process.stderr.write(`${line}\n`);

async function md5File(path: string): Promise<string> {
  const hash = createHash('md5');
  for await (const piece of createReadStream(path)) hash.update(piece as Buffer);
  return hash.digest('hex');
}

async function main() {
  await mkdir(resultsDir, { recursive: true });
  const work = await mkdtemp(join(cfg.tmp, 'bk-bench-download-'));
  const caseArgs = await caseCommand(join(here, 'download-case.ts'), {
    runner: cfg.runner,
    profile: cfg.profile,
    profileDir: join(resultsDir, 'profiles'),
  });
  log(`generating ${cfg.sizesMB.join(', ')} MB of random patches…`);
  const versions = cfg.sizesMB.map((mb) => ({ versionNum: `V${mb}`, zip: randomBytes(mb * MB) }));
  const sim = await startCloudSimulator({
    chunkSize: cfg.chunkSize,
    cacheChunks: true,
    scenario: { upgradeMark: 2, versions: [{ versionNum: 'V0' }, ...versions] },
  });
  const creds = {
    accessKeyId: sim.options.accessKeyId,
    accessKeySecret: sim.options.accessKeySecret,
    appKey: sim.options.appKey,
  };
  // curl uses a token the driver signs in for, with the same signing as the client.
  const driverClient = createCloudClient({
    hostAddr: sim.url,
    credentials: () => creds,
    timeoutMs: 30_000,
    retries: 0,
    refreshMarginMs: 60_000,
    logger: createLogger({ level: 'fatal', console: 'none' }).logger,
  });
  const { token } = await driverClient.token();
  const rows: Array<Record<string, unknown>> = [];
  const printed: string[] = [];
  try {
    for (const v of versions) {
      const info = sim.versions().find((x) => x.versionNum === v.versionNum);
      if (info === undefined) throw new Error(`no version ${v.versionNum}`);
      const totalIndex = Math.ceil(v.zip.length / cfg.chunkSize);
      const urls = Array.from(
        { length: totalIndex },
        (_, i) =>
          `${sim.url}${API_PREFIX}/version/file?appkey=${encodeURIComponent(creds.appKey)}&versionCode=${info.versionCode}&fileIndex=${i}`,
      );
      const curlConfig = join(work, `curl-${v.versionNum}.cfg`);
      await writeFile(curlConfig, urls.map((u) => `url = "${u}"\n`).join(''));
      const dest = join(work, `${v.versionNum}.zip`);
      const boxkeeper = async (): Promise<Measure> => {
        // Through /usr/bin/time like curl: a process forked straight from this driver inherits
        // its peak RSS (Linux keeps ru_maxrss across fork and exec), gigabytes here.
        const timeFile = join(work, 'time-boxkeeper.txt');
        const args = ['-f', '%M', '-o', timeFile, process.execPath, ...caseArgs];
        const out = await run('/usr/bin/time', args, {
          ...process.env,
          SIM_URL: sim.url,
          SIM_ACCESS_ID: creds.accessKeyId,
          SIM_ACCESS_SECRET: creds.accessKeySecret,
          SIM_APP_KEY: creds.appKey,
          VERSION_CODE: info.versionCode,
          DEST: dest,
        });
        const m = JSON.parse(out.stdout.trim().split('\n').pop() ?? '') as Measure & {
          bytes: number;
        };
        if (m.bytes !== v.zip.length) throw new Error(`boxkeeper got ${m.bytes} bytes`);
        if ((await md5File(dest)) !== info.fileMd5) throw new Error('boxkeeper: MD5 mismatch');
        await rm(dest);
        return { ...m, maxRssKiB: Number((await readFile(timeFile, 'utf8')).trim()) };
      };
      const curl = async (): Promise<Measure> => {
        const timeFile = join(work, 'time.txt');
        const out = await run(
          '/usr/bin/time',
          [
            '-f',
            '%M %U %S',
            '-o',
            timeFile,
            'curl',
            '-sS',
            '--fail',
            '-K',
            curlConfig,
            '-H',
            `token: ${token}`,
            '-H',
            `appkey: ${creds.appKey}`,
            '-w',
            '%{stderr}%{size_download}\n',
          ],
          process.env,
          true,
        );
        const received = out.stderr
          .trim()
          .split('\n')
          .reduce((a, b) => a + Number(b), 0);
        if (out.stderr.trim().split('\n').length !== totalIndex || received < v.zip.length * 2)
          throw new Error(`curl: unexpected transfers: ${out.stderr.slice(0, 200)}`);
        const [rss, user, sys] = (await readFile(timeFile, 'utf8')).trim().split(/\s+/).map(Number);
        return {
          seconds: out.seconds,
          maxRssKiB: rss ?? NaN,
          cpuSeconds: (user ?? NaN) + (sys ?? NaN),
        };
      };
      const bk: Measure[] = [];
      const cu: Measure[] = [];
      for (let r = 0; r < cfg.warmup + cfg.runs; r++) {
        const a = await boxkeeper();
        const b = await curl();
        const tag = r < cfg.warmup ? 'warm-up' : `run ${r - cfg.warmup + 1}`;
        log(
          `${v.versionNum} ${tag}: boxkeeper ${a.seconds.toFixed(2)} s (${(a.maxRssKiB / 1024).toFixed(0)} MiB), curl ${b.seconds.toFixed(2)} s`,
        );
        if (r >= cfg.warmup) {
          bk.push(a);
          cu.push(b);
        }
      }
      const mbps = (m: Measure) => v.zip.length / MB / m.seconds;
      const ratios = bk.map((a, i) => mbps(a) / mbps(cu[i] as Measure));
      const row = {
        sizeMB: v.zip.length / MB,
        chunks: totalIndex,
        boxkeeper: bk,
        curl: cu,
        ratios,
      };
      rows.push(row);
      const line = (name: string, ms: Measure[]) =>
        `| ${v.zip.length / MB} MB | ${name} | ${median(ms.map(mbps)).toFixed(1)} | ${range(ms.map(mbps), 1)} | ${median(ms.map((m) => m.cpuSeconds)).toFixed(2)} | ${(Math.max(...ms.map((m) => m.maxRssKiB)) / 1024).toFixed(0)} |`;
      printed.push(line('boxkeeper downloadFile', bk), line('curl, same chunk URLs', cu));
      printed.push(
        `| ${v.zip.length / MB} MB | **ratio boxkeeper / curl** | **${median(ratios).toFixed(2)}** | ${range(ratios, 2)} | | |`,
      );
    }
  } finally {
    await sim.close();
    await rm(work, { recursive: true, force: true });
  }
  const stamp = new Date().toISOString().replace(/[:.]/g, '-');
  const jsonPath = join(resultsDir, `download-${stamp}.json`);
  await writeFile(jsonPath, JSON.stringify({ cfg, rows }, null, 2));
  console.log(
    `chunk ${cfg.chunkSize} bytes, RUNS=${cfg.runs} + ${cfg.warmup} warm-up, runner ${cfg.runner}\n`,
  );
  console.log('| patch | contender | MB/s median | MB/s min–max | cpu s | max RSS MiB |');
  console.log('| ----- | --------- | ----------: | -----------: | ----: | ----------: |');
  for (const l of printed) console.log(l);
  log(`full result: ${jsonPath}`);
}

await main();
