// Path values of settings.ini, as the Python tool wrote them: `\conf\configuration.ini` and
// `\\RemoteManagerDist` are appended to the box install dir; `C:\\Program Files\\FreeSWITCH`
// is absolute with doubled backslashes (configparser never unescaped them). These rules hold on
// every OS, so the same file works on Windows and, with absolute POSIX dirs, on Linux.
import { posix, win32 } from 'node:path';

export type PathResult = { ok: true; path: string } | { ok: false; message: string };

const DRIVE = /^[A-Za-z]:[\\/]/;

function parts(value: string): string[] {
  return value.split(/[\\/]+/).filter((p) => p !== '' && p !== '.');
}

export function isAbsoluteFor(platform: NodeJS.Platform, value: string): boolean {
  return platform === 'win32'
    ? DRIVE.test(value) || value.startsWith('\\\\\\\\')
    : value.startsWith('/');
}

/** Normalizes an absolute path written in either separator style, with doubled separators. */
export function normalizeAbsolute(platform: NodeJS.Platform, value: string): string {
  if (platform === 'win32') {
    if (value.startsWith('\\\\\\\\')) return '\\\\' + parts(value).join('\\');
    const [drive, ...rest] = parts(value);
    return win32.join(`${drive ?? ''}\\`, ...rest);
  }
  return posix.join('/', ...parts(value));
}

/**
 * Resolves a settings path against `base` (the box install dir, or the FreeSWITCH / agent dir
 * for keys appended to those). A leading separator means "relative to base", as in the original.
 */
export function resolveBoxPath(platform: NodeJS.Platform, base: string, raw: string): PathResult {
  const value = raw.trim();
  if (value === '') return { ok: false, message: 'expected a path, got an empty value' };
  if (DRIVE.test(value) && platform !== 'win32') {
    return {
      ok: false,
      message: `"${value}" is a Windows drive path but this box runs ${platform}; use an absolute path starting with /`,
    };
  }
  if (isAbsoluteFor(platform, value)) return { ok: true, path: normalizeAbsolute(platform, value) };
  const api = platform === 'win32' ? win32 : posix;
  return { ok: true, path: api.join(base, ...parts(value)) };
}

/** `java` → `java.exe` on Windows. */
export function executableName(base: string, platform: NodeJS.Platform): string {
  return platform === 'win32' ? `${base}.exe` : base;
}
