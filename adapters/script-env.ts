// The environment a box's preparation script leaves behind (`DOS\start.bat` on Windows, a `.sh`
// on Linux), captured so that Java is started with it. The Python tool ran the script in a
// `cmd /c` of its own and then started Java from its own environment, so the script's `set`
// lines never reached Java (W-PROC-2). Here the script runs in a shell that prints its whole
// environment afterwards, and that environment is what Java gets.
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { errorMessage } from './errors.ts';

export type EnvCapture =
  { ok: true; env: NodeJS.ProcessEnv } | { ok: false; reason: string } | { ok: 'absent' };

function run(
  file: string,
  args: string[],
  opts: { verbatim: boolean; env: NodeJS.ProcessEnv; timeoutMs: number },
): Promise<{ code: number | null; stdout: Buffer; stderr: string; timedOut: boolean }> {
  return new Promise((resolve) => {
    const child = spawn(file, args, {
      stdio: ['ignore', 'pipe', 'pipe'],
      windowsHide: true,
      windowsVerbatimArguments: opts.verbatim,
      env: opts.env,
    });
    const out: Buffer[] = [];
    let stderr = '';
    let timedOut = false;
    child.stdout.on('data', (d: Buffer) => out.push(d));
    child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
    const timer = setTimeout(() => {
      timedOut = true;
      child.kill('SIGKILL');
    }, opts.timeoutMs);
    child.once('error', (err) => {
      clearTimeout(timer);
      resolve({ code: null, stdout: Buffer.concat(out), stderr: errorMessage(err), timedOut });
    });
    child.once('close', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout: Buffer.concat(out), stderr, timedOut });
    });
  });
}

/** `KEY=VALUE` lines of cmd's `set` (no `=C:` drive entries, which cmd prints first). */
export function parseWindowsSet(text: string): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const line of text.split(/\r?\n/)) {
    const eq = line.indexOf('=');
    if (eq <= 0) continue;
    env[line.slice(0, eq)] = line.slice(eq + 1);
  }
  return env;
}

/** cmd /u output is UTF-16LE; a cmd that ignores /u writes its code page (ASCII in practice). */
export function decodeCmd(bytes: Buffer): string {
  return bytes.length >= 2 && bytes[1] === 0 ? bytes.toString('utf16le') : bytes.toString('latin1');
}

/** `env -0` output: NUL-separated `KEY=VALUE` entries (values may hold newlines). */
export function parseNulEnv(text: string): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const entry of text.split('\0')) {
    const eq = entry.indexOf('=');
    if (eq > 0) env[entry.slice(0, eq)] = entry.slice(eq + 1);
  }
  return env;
}

/**
 * Runs `script` and returns the environment it leaves, starting from `base`. On Linux only a
 * `.sh` script is sourced (a `.bat` there is a leftover of a Windows layout, not something sh
 * can run). `absent`: there is no script to run, so Java inherits the agent's environment.
 */
export async function captureScriptEnvironment(
  script: string,
  platform: NodeJS.Platform,
  base: NodeJS.ProcessEnv,
  timeoutMs = 30_000,
): Promise<EnvCapture> {
  if (!existsSync(script)) return { ok: 'absent' };
  let r;
  if (platform === 'win32') {
    if (!/\.(bat|cmd)$/i.test(script)) return { ok: false, reason: `${script}: not a .bat/.cmd` };
    // The script's own output is discarded; whatever it exits with, `set` prints what it left.
    const comspec = base.ComSpec ?? base.COMSPEC ?? 'cmd.exe';
    // /u: `set` writes UTF-16, so values in any code page survive.
    r = await run(comspec, ['/d', '/u', '/s', '/c', `"call "${script}" >nul 2>&1 & set"`], {
      verbatim: true,
      env: base,
      timeoutMs,
    });
    if (r.code === 0 && !r.timedOut) return { ok: true, env: parseWindowsSet(decodeCmd(r.stdout)) };
  } else {
    if (!script.endsWith('.sh')) return { ok: 'absent' };
    r = await run('/bin/sh', ['-c', '. "$0" >/dev/null 2>&1; env -0', script], {
      verbatim: false,
      env: base,
      timeoutMs,
    });
    if (r.code === 0 && !r.timedOut)
      return { ok: true, env: parseNulEnv(r.stdout.toString('utf8')) };
  }
  return {
    ok: false,
    reason: r.timedOut
      ? `${script} did not finish within ${timeoutMs / 1000} s`
      : `${script} could not be run (exit ${String(r.code)}): ${r.stderr.trim().slice(0, 200)}`,
  };
}
