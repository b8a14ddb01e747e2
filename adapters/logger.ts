// Logging: pino JSON lines into <logs>/boxkeeper-YYYY-MM-DD.log, one file per local day,
// files older than the retention age deleted, the day files together kept under a size cap;
// human-readable lines on a TTY. Secrets are redacted by key wherever they appear in a log
// object. A log file that cannot be written never stops the agent: lines go to stderr instead.
import {
  closeSync,
  fstatSync,
  fsyncSync,
  mkdirSync,
  openSync,
  readdirSync,
  rmSync,
  statSync,
  writeSync,
} from 'node:fs';
import { join } from 'node:path';
import pino, { type DestinationStream, type Logger as PinoLogger } from 'pino';
import type PinoPretty from 'pino-pretty';
import { describeStorageError, errorMessage } from './errors.ts';

export type Logger = PinoLogger;

const FILE = /^boxkeeper-(\d{4})-(\d{2})-(\d{2})\.log$/;

function localDay(d: Date): string {
  const p = (n: number) => String(n).padStart(2, '0');
  return `${d.getFullYear()}-${p(d.getMonth() + 1)}-${p(d.getDate())}`;
}

/** pino's numeric level of a JSON line (30 = info, 40 = warn). */
function levelOf(line: string): number {
  const m = /"level":(\d+)/.exec(line.slice(0, 64));
  return m === null ? 30 : Number(m[1]);
}

const WARN = 40;

export interface DailyLogFileOptions {
  /** The day files together stay under this many bytes (oldest days go first). */
  maxBytes?: number;
  /** Where lines go while the file cannot be written (default: stderr). */
  fallback?: (text: string) => void;
  /** How often a failing file is tried again (default 5 s). */
  retryMs?: number;
}

function writeStderr(text: string): void {
  try {
    process.stderr.write(text);
  } catch {
    // stderr is gone as well: the line is lost, the agent goes on
  }
}

/**
 * Appends to today's file and switches files when the local date changes, so a file holds
 * exactly one calendar day whatever the process uptime (the Python tool rotated 24 h after
 * start). Writes are synchronous: a crash loses no line that was logged before it.
 *
 * A write that fails (disk full, I/O error, permission) is never thrown at the caller: the
 * logger is called from every error path, and a throw there ended the daemon. The line goes to
 * stderr, with one note saying why; the file is tried again every `retryMs`, and a line in
 * both says when it works again.
 *
 * The size cap: when the day files would exceed `maxBytes`, the oldest days are deleted; when
 * today's file alone reaches the cap, lines below warn are dropped for the rest of the day (one
 * line says so), and warnings and errors get a reserve of a tenth of the cap beyond it.
 */
export class DailyLogFile implements DestinationStream {
  private fd: number | undefined;
  private day = '';
  readonly dir: string;
  private readonly retentionDays: number;
  private readonly now: () => Date;
  private readonly maxBytes: number;
  private readonly fallback: (text: string) => void;
  private readonly retryMs: number;
  /** Bytes of the other day files and of today's file. */
  private olderBytes = 0;
  private todayBytes = 0;
  private capNoted = false;
  private dropped = 0;
  /** Set while the file fails: since when, why, how many lines went to the fallback. */
  private failing: { since: number; why: string; lines: number; nextTry: number } | undefined;
  /** A failed write may have left half a line: the next line starts on a fresh one. */
  private torn = false;

  constructor(
    dir: string,
    retentionDays: number,
    now: () => Date = () => new Date(),
    options: DailyLogFileOptions = {},
  ) {
    this.dir = dir;
    this.retentionDays = retentionDays;
    this.now = now;
    this.maxBytes = options.maxBytes ?? Number.POSITIVE_INFINITY;
    this.fallback = options.fallback ?? writeStderr;
    this.retryMs = options.retryMs ?? 5000;
  }

  get currentFile(): string {
    return join(this.dir, `boxkeeper-${this.day}.log`);
  }

  /** Whether lines currently go to the fallback instead of the file. */
  get degraded(): boolean {
    return this.failing !== undefined;
  }

  write(line: string): void {
    const at = this.now().getTime();
    if (this.failing !== undefined && at < this.failing.nextTry) {
      this.failing.lines++;
      this.fallback(line);
      return;
    }
    try {
      const today = localDay(this.now());
      if (today !== this.day || this.fd === undefined) this.rotate(today);
      if (this.failing !== undefined) this.recovered();
      this.writeCapped(line);
    } catch (err) {
      this.degrade(err, line, at);
    }
  }

  private writeCapped(line: string): void {
    const bytes = Buffer.byteLength(line);
    if (this.olderBytes > 0 && this.olderBytes + this.todayBytes + bytes > this.maxBytes)
      this.pruneToCap(bytes);
    const reserve = this.maxBytes / 10;
    const limit = levelOf(line) >= WARN ? this.maxBytes + reserve : this.maxBytes;
    if (this.todayBytes + bytes > limit) {
      this.dropped++;
      if (!this.capNoted) {
        this.capNoted = true;
        this.append(
          JSON.stringify({
            level: WARN,
            time: this.now().toISOString(),
            pid: process.pid,
            msg: `log size cap of ${Math.round(this.maxBytes / 1048576)} MB reached: lines below warn are dropped until tomorrow`,
          }) + '\n',
        );
      }
      return;
    }
    this.append(line);
  }

  private append(text: string): void {
    const fd = this.fd as number;
    let buf = Buffer.from(this.torn ? `\n${text}` : text);
    const whole = buf.length;
    while (buf.length > 0) {
      let n: number;
      try {
        n = writeSync(fd, buf);
      } catch (err) {
        // Part of the line is in the file: the next line starts on a fresh one.
        if (buf.length < whole) this.torn = true;
        throw err;
      }
      this.todayBytes += n;
      buf = buf.subarray(n);
    }
    this.torn = false;
  }

  private degrade(err: unknown, line: string, at: number): void {
    this.closeQuietly();
    const why =
      describeStorageError(err, this.currentFile) ?? `${this.currentFile}: ${errorMessage(err)}`;
    if (this.failing === undefined) {
      this.failing = { since: at, why, lines: 0, nextTry: 0 };
      this.fallback(
        `boxkeeper: log file unusable, logging to stderr until it works again: ${why}\n`,
      );
    }
    this.failing.lines++;
    this.failing.nextTry = at + this.retryMs;
    this.fallback(line);
  }

  /** The file works again: says so in the file (which throws if it does not) and on stderr. */
  private recovered(): void {
    const f = this.failing as NonNullable<DailyLogFile['failing']>;
    const msg = `the log file works again; ${f.lines} line(s) went to stderr since ${new Date(f.since).toISOString()} (${f.why})`;
    this.append(
      JSON.stringify({ level: WARN, time: this.now().toISOString(), pid: process.pid, msg }) + '\n',
    );
    this.failing = undefined;
    this.fallback(`boxkeeper: ${msg}\n`);
  }

  private closeQuietly(): void {
    if (this.fd === undefined) return;
    try {
      closeSync(this.fd);
    } catch {
      // the descriptor is unusable anyway
    }
    this.fd = undefined;
  }

  private rotate(today: string): void {
    this.closeQuietly();
    if (today !== this.day) {
      if (this.dropped > 0 && this.day !== '')
        this.fallback(
          `boxkeeper: ${this.dropped} log line(s) of ${this.day} were dropped by the size cap\n`,
        );
      this.capNoted = false;
      this.dropped = 0;
    }
    this.day = today;
    // Created here, not in the constructor: a command that fails first leaves no directory.
    mkdirSync(this.dir, { recursive: true });
    this.fd = openSync(this.currentFile, 'a');
    this.todayBytes = fstatSync(this.fd).size;
    this.prune();
    this.pruneToCap();
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

  /** Deletes the oldest day files (never today's) while the day files exceed the cap. */
  private pruneToCap(incoming = 0): void {
    const others = readdirSync(this.dir)
      .filter((n) => FILE.test(n) && n !== `boxkeeper-${this.day}.log`)
      .sort()
      .map((name) => {
        try {
          return { name, size: statSync(join(this.dir, name)).size };
        } catch {
          return { name, size: 0 };
        }
      });
    let older = others.reduce((sum, f) => sum + f.size, 0);
    for (const f of others) {
      if (older + this.todayBytes + incoming <= this.maxBytes) break;
      rmSync(join(this.dir, f.name), { force: true });
      older -= f.size;
    }
    this.olderBytes = older;
  }

  flushSync(): void {
    if (this.fd !== undefined) fsyncSync(this.fd);
  }

  end(): void {
    this.closeQuietly();
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

/**
 * The last log lines in memory (the console shows them): a fixed-size ring of the JSON lines
 * pino wrote, already redacted, with listeners for new ones.
 */
export class RecentLines implements DestinationStream {
  private readonly lines: string[] = [];
  private readonly listeners = new Set<(line: string) => void>();
  private readonly size: number;
  constructor(size: number) {
    this.size = size;
  }

  write(line: string): void {
    const text = line.endsWith('\n') ? line.slice(0, -1) : line;
    this.lines.push(text);
    if (this.lines.length > this.size) this.lines.shift();
    for (const l of this.listeners) l(text);
  }

  /** Oldest first. */
  snapshot(): string[] {
    return [...this.lines];
  }

  onLine(listener: (line: string) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }
}

export interface LoggerOptions {
  level: 'debug' | 'info' | 'warn' | 'error' | 'fatal';
  /** Directory for day files; omit to log to the console only. */
  dir?: string;
  retentionDays?: number;
  /** The day files together stay under this size (settings `[general] log_max_mb`). */
  maxBytes?: number;
  /** Console output: pretty lines (TTY), JSON lines, or nothing. */
  console: 'pretty' | 'json' | 'none';
  /** pino-pretty, for `console: 'pretty'`: the caller loads it (`loadPretty`) only then. */
  pretty?: typeof PinoPretty;
  now?: () => Date;
  /** Keep this many recent lines in memory (`LogHandle.recent`), e.g. for the console. */
  recent?: number;
}

export interface LogHandle {
  logger: Logger;
  file: DailyLogFile | undefined;
  recent?: RecentLines;
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

/** stdout that never throws: a closed pipe or a full disk behind it must not end the agent. */
function guardedStdout(): DestinationStream {
  if (process.stdout.listenerCount('error') === 0) process.stdout.on('error', () => undefined);
  return {
    write(line: string) {
      try {
        process.stdout.write(line);
      } catch {
        // the line is in the log file (if that works); the console is best effort
      }
    },
  };
}

export function createLogger(options: LoggerOptions): LogHandle {
  const streams: pino.StreamEntry[] = [];
  const file =
    options.dir === undefined
      ? undefined
      : new DailyLogFile(
          options.dir,
          options.retentionDays ?? 30,
          options.now,
          options.maxBytes === undefined ? {} : { maxBytes: options.maxBytes },
        );
  if (file !== undefined) streams.push({ level: options.level, stream: file });
  const recent = options.recent === undefined ? undefined : new RecentLines(options.recent);
  if (recent !== undefined) streams.push({ level: options.level, stream: recent });
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
    streams.push({ level: options.level, stream: guardedStdout() });
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
  return {
    logger,
    file,
    ...(recent === undefined ? {} : { recent }),
    close: () => file?.end(),
  };
}
