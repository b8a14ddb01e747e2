// Logging: pino JSON lines into <logs>/boxkeeper-YYYY-MM-DD.log, one file per local day,
// files older than the retention age deleted; human-readable lines on a TTY. Secrets are
// redacted by key wherever they appear in a log object.
import { closeSync, fsyncSync, mkdirSync, openSync, readdirSync, rmSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import pino, { type DestinationStream, type Logger as PinoLogger } from 'pino';
import type PinoPretty from 'pino-pretty';

export type Logger = PinoLogger;

const FILE = /^boxkeeper-(\d{4})-(\d{2})-(\d{2})\.log$/;

function localDay(d: Date): string {
  const p = (n: number) => String(n).padStart(2, '0');
  return `${d.getFullYear()}-${p(d.getMonth() + 1)}-${p(d.getDate())}`;
}

/**
 * Appends to today's file and switches files when the local date changes, so a file holds
 * exactly one calendar day whatever the process uptime (the Python tool rotated 24 h after
 * start). Writes are synchronous: a crash loses no line that was logged before it.
 */
export class DailyLogFile implements DestinationStream {
  private fd: number | undefined;
  private day = '';
  readonly dir: string;
  private readonly retentionDays: number;
  private readonly now: () => Date;

  constructor(dir: string, retentionDays: number, now: () => Date = () => new Date()) {
    this.dir = dir;
    this.retentionDays = retentionDays;
    this.now = now;
    mkdirSync(dir, { recursive: true });
  }

  get currentFile(): string {
    return join(this.dir, `boxkeeper-${this.day}.log`);
  }

  write(line: string): void {
    const today = localDay(this.now());
    if (today !== this.day || this.fd === undefined) this.rotate(today);
    writeSync(this.fd as number, line);
  }

  private rotate(today: string): void {
    if (this.fd !== undefined) closeSync(this.fd);
    this.day = today;
    this.fd = openSync(this.currentFile, 'a');
    this.prune();
  }

  /** Deletes day files older than the retention age, judged by the date in their name. */
  prune(): string[] {
    const now = this.now();
    const cutoff = new Date(now.getFullYear(), now.getMonth(), now.getDate() - this.retentionDays);
    const removed: string[] = [];
    for (const name of readdirSync(this.dir)) {
      const m = FILE.exec(name);
      if (m === null) continue;
      const day = new Date(Number(m[1]), Number(m[2]) - 1, Number(m[3]));
      if (day < cutoff) {
        rmSync(join(this.dir, name), { force: true });
        removed.push(name);
      }
    }
    return removed;
  }

  flushSync(): void {
    if (this.fd !== undefined) fsyncSync(this.fd);
  }

  end(): void {
    if (this.fd !== undefined) closeSync(this.fd);
    this.fd = undefined;
  }
}

export const REDACT_PATHS = [
  'token',
  '*.token',
  'headers.token',
  'secret',
  '*.secret',
  'accessSecret',
  '*.accessSecret',
  'accessKeySecret',
  '*.accessKeySecret',
  'access_secret',
  '*.access_secret',
  'password',
  '*.password',
  'Signature',
  '*.Signature',
];

export interface LoggerOptions {
  level: 'debug' | 'info' | 'warn' | 'error' | 'fatal';
  /** Directory for day files; omit to log to the console only. */
  dir?: string;
  retentionDays?: number;
  /** Console output: pretty lines (TTY), JSON lines, or nothing. */
  console: 'pretty' | 'json' | 'none';
  /** pino-pretty, for `console: 'pretty'`: the caller loads it (`loadPretty`) only then. */
  pretty?: typeof PinoPretty;
  now?: () => Date;
}

export interface LogHandle {
  logger: Logger;
  file: DailyLogFile | undefined;
  close: () => void;
}

/**
 * Loaded only for a terminal: it costs tens of ms at start-up that commands run by scripts and
 * services should not pay. A dynamic import, so a bundle keeps it in a chunk of its own.
 */
export async function loadPretty(): Promise<typeof PinoPretty> {
  return (await import('pino-pretty')).default;
}

export function consoleModeFor(stream: { isTTY?: boolean }): 'pretty' | 'json' {
  return stream.isTTY === true ? 'pretty' : 'json';
}

export function createLogger(options: LoggerOptions): LogHandle {
  const streams: pino.StreamEntry[] = [];
  const file =
    options.dir === undefined
      ? undefined
      : new DailyLogFile(options.dir, options.retentionDays ?? 30, options.now);
  if (file !== undefined) streams.push({ level: options.level, stream: file });
  if (options.console === 'pretty') {
    const pretty = options.pretty;
    if (pretty === undefined)
      throw new Error("createLogger: console 'pretty' needs options.pretty");
    streams.push({
      level: options.level,
      stream: pretty({
        colorize: true,
        sync: true,
        singleLine: true,
        translateTime: 'SYS:yyyy-mm-dd HH:MM:ss.l',
        ignore: 'pid,hostname,service,component',
        messageFormat: '{if service}[{service}] {end}{if component}[{component}] {end}{msg}',
      }),
    });
  } else if (options.console === 'json') {
    streams.push({ level: options.level, stream: process.stdout });
  }
  const logger = pino(
    {
      level: options.level,
      base: { pid: process.pid },
      redact: { paths: REDACT_PATHS, censor: '[redacted]' },
      timestamp: pino.stdTimeFunctions.isoTime,
    },
    pino.multistream(streams),
  );
  return { logger, file, close: () => file?.end() };
}
