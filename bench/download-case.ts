// One boxkeeper download in its own process (so its peak RSS is its own): downloadFile of the
// cloud simulator's version into DEST, then one JSON line with the time and the peak RSS.
import { createCloudClient } from '../adapters/cloud-client.ts';
import { createLogger } from '../adapters/logger.ts';

const env = (name: string): string => {
  const v = process.env[name];
  if (v === undefined || v === '') throw new Error(`download-case: ${name} is not set`);
  return v;
};

const client = createCloudClient({
  hostAddr: env('SIM_URL'),
  credentials: () => ({
    accessKeyId: env('SIM_ACCESS_ID'),
    accessKeySecret: env('SIM_ACCESS_SECRET'),
    appKey: env('SIM_APP_KEY'),
  }),
  timeoutMs: 60_000,
  retries: 3,
  refreshMarginMs: 60_000,
  logger: createLogger({ level: 'fatal', console: 'none' }).logger,
  // The benchmark's disk is whatever BENCH_TMP is: the free-space rule is not what is measured.
  freeBytes: () => Promise.resolve(Number.MAX_SAFE_INTEGER),
});
// The token is not part of the download (curl gets one from the driver too).
await client.token();
const started = process.hrtime.bigint();
const result = await client.downloadFile(env('VERSION_CODE'), env('DEST'));
const seconds = Number(process.hrtime.bigint() - started) / 1e9;
const usage = process.resourceUsage();
process.stdout.write(
  `${JSON.stringify({
    seconds,
    bytes: result.bytes,
    chunks: result.chunks,
    maxRssKiB: usage.maxRSS,
    cpuSeconds: (usage.userCPUTime + usage.systemCPUTime) / 1e6,
    // Where the memory is at the end (MiB): the JS heap, Buffers, the rest of the process.
    memoryMiB: Object.fromEntries(
      Object.entries(process.memoryUsage()).map(([k, v]) => [k, Math.round(v / 2 ** 20)]),
    ),
  })}\n`,
);
