// Helpers shared by the benchmark drivers that run boxkeeper in a process of its own per run
// (bench/download.ts, bench/extract.ts): running a command, bundling a case script, medians.
import { spawn } from 'node:child_process';
import { join } from 'node:path';
import { build } from 'esbuild';

/** Runs a command; `discard` sends its stdout to /dev/null. Rejects on a non-zero exit. */
export function run(
  cmd: string,
  args: string[],
  env: NodeJS.ProcessEnv = process.env,
  discard = false,
) {
  return new Promise<{ stdout: string; stderr: string; seconds: number }>((resolve, reject) => {
    const started = process.hrtime.bigint();
    const child = spawn(cmd, args, { env, stdio: ['ignore', discard ? 'ignore' : 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout?.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr?.on('data', (d: Buffer) => (stderr += d.toString()));
    child.on('error', reject);
    child.on('close', (code) => {
      const seconds = Number(process.hrtime.bigint() - started) / 1e9;
      if (code === 0) resolve({ stdout, stderr, seconds });
      else reject(new Error(`${cmd} ${args.join(' ')} exited ${code}: ${stderr.slice(-2000)}`));
    });
  });
}

export const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 === 1 ? (s[m] as number) : ((s[m - 1] as number) + (s[m] as number)) / 2;
};

export const range = (xs: number[], digits: number) =>
  `${Math.min(...xs).toFixed(digits)}–${Math.max(...xs).toFixed(digits)}`;

/**
 * The node arguments that run a case script: bundled to plain JS (RUNNER=js, the default) so
 * the process starts like the built CLI, or through tsx (RUNNER=tsx); PROFILE=1 adds
 * --cpu-prof into `profileDir`. `bundlePackages` bundles the npm packages too, as the release
 * package does (an ESM import of a CommonJS package otherwise starts Node's WebAssembly export
 * scanner: 12 MiB of RSS that the shipped agent does not pay).
 */
export async function caseCommand(
  entry: string,
  opts: { runner: string; profile: boolean; profileDir: string; bundlePackages?: boolean },
): Promise<string[]> {
  // NODE_FLAGS: V8/Node flags for the measured process only (NODE_OPTIONS would reach the
  // driver too, and refuses most V8 flags), e.g. "--max-semi-space-size=1".
  const flags = (process.env.NODE_FLAGS ?? '').split(/\s+/).filter((f) => f !== '');
  const prof = [
    ...flags,
    ...(opts.profile ? ['--cpu-prof', `--cpu-prof-dir=${opts.profileDir}`] : []),
  ];
  if (opts.runner === 'tsx') return [...prof, '--import', 'tsx', entry];
  // Under node_modules, so that the external packages resolve (and lint does not see it).
  const name = (entry.split(/[\\/]/).pop() ?? entry).replace(/\.ts$/, '.mjs');
  const outfile = join(entry, '..', '..', 'node_modules', '.cache', 'boxkeeper-bench', name);
  await build({
    entryPoints: [entry],
    bundle: true,
    platform: 'node',
    format: 'esm',
    target: 'node20',
    packages: opts.bundlePackages === true ? 'bundle' : 'external',
    // Bundled CommonJS packages require() node built-ins (as packaging/bundle.ts provides).
    banner:
      opts.bundlePackages === true
        ? {
            js: "import { createRequire as __bkRequire } from 'node:module'; const require = __bkRequire(import.meta.url);",
          }
        : {},
    outfile,
    logLevel: 'warning',
  });
  return [...prof, outfile];
}
