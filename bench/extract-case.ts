// One boxkeeper extraction in its own process (so its peak RSS is its own): extractZipSafely of
// ZIP into DEST, then one JSON line with the time, the CPU time and the longest stretch the
// event loop was blocked (the daemon must keep answering during an extraction).
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { DEFAULT_ZIP_LIMITS, extractZipSafely } from '../adapters/zip.ts';

const env = (name: string): string => {
  const v = process.env[name];
  if (v === undefined || v === '') throw new Error(`extract-case: ${name} is not set`);
  return v;
};

const loop = monitorEventLoopDelay({ resolution: 5 });
loop.enable();
const started = process.hrtime.bigint();
const result = await extractZipSafely(env('ZIP'), env('DEST'), DEFAULT_ZIP_LIMITS);
const seconds = Number(process.hrtime.bigint() - started) / 1e9;
loop.disable();
const usage = process.resourceUsage();
process.stdout.write(
  `${JSON.stringify({
    seconds,
    bytes: result.bytes,
    files: result.files.length,
    maxRssKiB: usage.maxRSS,
    cpuSeconds: (usage.userCPUTime + usage.systemCPUTime) / 1e6,
    // The longest the event loop waited beyond its 5 ms timer (≈ the longest synchronous slice).
    maxLoopDelayMs: loop.max / 1e6,
  })}\n`,
);
