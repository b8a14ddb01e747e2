// The cloud-platform client: token (signed, refreshed ahead of expiry, one refresh at a time,
// one re-auth and retry when the server rejects it), version check, chunked download,
// heartbeat and task pause/resume. Every answer is validated and held to the [limits] caps (read
// only up to its cap, so memory is bounded by the caps, not by the server); failures are
// CloudErrors that name the endpoint. Idempotent calls are retried with exponential backoff and
// jitter.
import { randomUUID } from 'node:crypto';
import { open, readFile, rename, rm, stat } from 'node:fs/promises';
import { dirname } from 'node:path';
import {
  exchange,
  HttpExchangeError,
  HttpOverCapError,
  type HttpExchange,
} from './http-request.ts';
import { z } from 'zod';
import { bodyWithoutBytes, scanChunkBody, type ChunkArray } from './chunk-decode.ts';
import { CloudError, errorMessage, isErrnoCode, withPath } from './errors.ts';
import { fsyncDir, writeFileAtomic } from './fs-atomic.ts';
import type { Logger } from './logger.ts';
import { signedTokenQuery } from './cloud-signing.ts';
import { freeBytes } from './system.ts';

export const API_PREFIX = '/v1/api/center818/box';
export const TOKEN_PATH = '/gateway/token/getUserToken';

/** How far a download is: chunks and payload bytes (totalBytes is exact once it is done). */
export interface DownloadProgress {
  done: number;
  total: number;
  bytes: number;
  totalBytes: number;
}

export interface CloudCredentials {
  accessKeyId: string;
  accessKeySecret: string;
  appKey: string;
}

export interface TokenInfo {
  token: string;
  /** Absolute expiry, epoch milliseconds. */
  expiresAt: number;
  /** The unit the server used for expireTime. */
  unit: 's' | 'ms';
}

export const UpgradeMark = { none: 0, optional: 1, mandatory: 2 } as const;

export interface VersionInfo {
  versionCode: string;
  versionNum: string;
  fileMd5: string;
  remark: string;
  argumentConfigMap: Record<string, unknown>;
}

export interface VersionCheck {
  upgradeMark: 0 | 1 | 2;
  upgradeList: VersionInfo[];
}

export interface HeartbeatItem {
  key: string;
  value: string | number | null;
}

export interface HeartbeatBody {
  appkey: string;
  items: HeartbeatItem[];
  time: number;
  versionCode: string;
}

export type TaskNo = string | number;
export const TaskOp = { pause: 1, resume: 2 } as const;

export interface DownloadResult {
  /** The server has no file for this version (a config-only version). */
  noFile: boolean;
  bytes: number;
  chunks: number;
  /** Chunk index the download resumed from (0 for a fresh one). */
  resumedFrom: number;
}

export interface CloudApi {
  token(): Promise<TokenInfo>;
  refreshToken(): Promise<TokenInfo>;
  checkVersion(versionNum: string): Promise<VersionCheck>;
  downloadFile(
    versionCode: string,
    dest: string,
    options?: { onProgress?: (p: DownloadProgress) => void; signal?: AbortSignal },
  ): Promise<DownloadResult>;
  heartbeat(items: HeartbeatItem[], versionCode: string): Promise<void>;
  setTaskStatus(taskNos: TaskNo[], op: (typeof TaskOp)[keyof typeof TaskOp]): Promise<void>;
}

/** Caps on what the cloud may send ([limits] in settings.ini; sizes in bytes). */
export interface CloudLimits {
  /** Largest answer to any request but a file chunk. */
  answerBytes: number;
  /** Largest `bytes` of one chunk. */
  chunkBytes: number;
  /** Largest `totalIndex`. */
  chunkCount: number;
  /** Largest download. */
  patchBytes: number;
  /** Most `upgradeList` entries. */
  upgradeList: number;
  /** Longest text (characters) in an `upgradeList` entry. */
  textLength: number;
  /** Free space a download must leave on its disk. */
  diskReserveBytes: number;
}

/** The defaults of docs/settings.md [limits] (a unit test holds them equal). */
export const DEFAULT_CLOUD_LIMITS: CloudLimits = {
  answerBytes: 4 * 1024 ** 2,
  chunkBytes: 8 * 1024 ** 2,
  chunkCount: 100_000,
  patchBytes: 1024 ** 3,
  upgradeList: 100,
  textLength: 4096,
  diskReserveBytes: 100 * 1024 ** 2,
};

/** Not enough free disk for a download (code ENOSPC, so callers treat it as a full disk). */
export class DownloadSpaceError extends Error {
  readonly code = 'ENOSPC';
  readonly dir: string;
  readonly needBytes: number;
  readonly freeBytes: number;
  constructor(dir: string, needBytes: number, free: number, why: string) {
    super(`not enough free space in ${dir}: ${why}; ${fmtBytes(free)} free`);
    this.name = 'DownloadSpaceError';
    this.dir = dir;
    this.needBytes = needBytes;
    this.freeBytes = free;
  }
}

/** "8388608 bytes (8 MiB)": exact for comparing, rounded for reading. */
export function fmtBytes(n: number): string {
  const units = ['KiB', 'MiB', 'GiB', 'TiB'];
  let v = n;
  let unit = '';
  for (const u of units) {
    if (v < 1024) break;
    v /= 1024;
    unit = u;
  }
  return unit === '' ? `${n} bytes` : `${n} bytes (${Number(v.toFixed(1))} ${unit})`;
}

// JSON text of one chunk answer: a byte is at most "-128," (5 characters); one more per byte
// allows spaces, 64 KiB the envelope.
const chunkAnswerBytes = (chunkBytes: number) => chunkBytes * 6 + 64 * 1024;

export interface CloudClientOptions {
  hostAddr: string;
  /** Read on every use, so a reloaded configuration.ini takes effect. */
  credentials: () => CloudCredentials;
  timeoutMs: number;
  retries: number;
  refreshMarginMs: number;
  logger: Logger;
  now?: () => number;
  /** Base of the exponential backoff between retries (tests use small values). */
  backoffBaseMs?: number;
  backoffMaxMs?: number;
  /** Default: DEFAULT_CLOUD_LIMITS. */
  limits?: CloudLimits;
  /** Bytes free on the disk holding a directory (default: statfs). */
  freeBytes?: (dir: string) => Promise<number>;
  /** PEM certificate(s) the cloud's https certificate must chain to, instead of the system's. */
  certificateAuthority?: string;
}

// ---- response schemas -------------------------------------------------------------------------

const envelope = z.object({
  code: z.union([
    z.number(),
    z
      .string()
      .regex(/^-?\d+$/)
      .transform(Number),
  ]),
  msg: z.string().nullish(),
  content: z.unknown().optional(),
});

const tokenContent = z.object({
  token: z.string().min(1),
  // A time a Date can hold: 1e300 made toISOString throw, -1 was taken as "expired".
  expireTime: z
    .union([z.number(), z.string().regex(/^\d+$/).transform(Number)])
    .refine(
      (n) => Number.isSafeInteger(n) && n > 0 && n <= 8.64e15,
      'expected epoch seconds or milliseconds (a whole number > 0)',
    ),
});

// versionNum becomes a directory name: allow only safe characters (no separators, no "..").
const safeName = z
  .string()
  .regex(
    /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/,
    'letters, digits, ".", "_" or "-" (it is used as a directory name)',
  );

const versionInfo = z.object({
  versionCode: safeName,
  versionNum: safeName,
  fileMd5: z
    .string()
    .regex(/^([0-9a-fA-F]{32})?$/, 'an MD5 as 32 hex digits, or empty for a config-only version'),
  remark: z
    .string()
    .nullish()
    .transform((r) => r ?? ''),
  argumentConfigMap: z
    .record(z.string(), z.unknown())
    .nullish()
    .transform((m) => m ?? {}),
});

const checkContent = z.discriminatedUnion('upgradeMark', [
  z.object({ upgradeMark: z.literal(0), upgradeList: z.unknown().optional() }),
  z.object({ upgradeMark: z.literal([1, 2]), upgradeList: z.array(versionInfo).min(1) }),
]);

const chunkContent = z.object({
  totalIndex: z.number().int().min(0),
  // Checked, not parsed: z.array would copy millions of elements (each byte is checked below).
  bytes: z.custom<unknown[]>((v) => Array.isArray(v), 'expected an array of bytes'),
});

function describeZod(err: z.ZodError): string {
  return err.issues
    .map((i) => `${i.path.length > 0 ? i.path.join('.') : '(root)'}: ${i.message}`)
    .join('; ');
}

function snippet(body: string): string {
  const flat = body.replace(/\s+/g, ' ').trim();
  return flat.length > 120 ? `${flat.slice(0, 120)}…` : flat;
}

/** A value of an answer as JSON for a message, cut like snippet; JSON.stringify may overflow. */
function showValue(value: unknown): string {
  try {
    return snippet(JSON.stringify(value));
  } catch {
    return '(nested too deeply to show)';
  }
}

/**
 * The bytes of one chunk: Java's signed bytes (-128..127), or 0..255, as a Buffer. Anything
 * else is an invalid answer naming the chunk and the element, never a wrong byte.
 */
export function decodeChunkBytes(bytes: readonly unknown[], fileIndex: number): Buffer {
  const data = Buffer.allocUnsafe(bytes.length);
  for (let i = 0; i < bytes.length; i++) {
    const b = bytes[i];
    if (typeof b !== 'number' || !Number.isInteger(b) || b < -128 || b > 255) {
      throw new CloudError(
        'version/file',
        'invalid-response',
        `chunk ${fileIndex}: bytes[${i}] is ${showValue(b)}, expected a byte`,
        { status: 200 },
      );
    }
    data[i] = b & 0xff;
  }
  return data;
}

const AUTH_CODES = new Set([401, 403]);

interface AnswerCap {
  bytes: number;
  /** How an error names it. */
  name: string;
}

const limitError = (endpoint: string, detail: string) => new CloudError(endpoint, 'limit', detail);

/** Why an upgradeList entry's text is over the cap, or undefined ([limits] text_length). */
function longText(entry: VersionInfo, index: number, max: number): string | undefined {
  const over = (field: string, text: string) =>
    text.length > max
      ? `upgradeList[${index}].${field} is ${text.length} characters long, over [limits] text_length = ${max}`
      : undefined;
  const direct =
    over('versionNum', entry.versionNum) ??
    over('versionCode', entry.versionCode) ??
    over('remark', entry.remark);
  if (direct !== undefined) return direct;
  for (const [key, value] of Object.entries(entry.argumentConfigMap)) {
    const field = `argumentConfigMap.${key.slice(0, 40)}`;
    let text: string;
    try {
      text = typeof value === 'string' ? value : JSON.stringify(value);
    } catch {
      return `upgradeList[${index}].${field} is nested too deeply to measure against [limits] text_length`;
    }
    const problem = over('argumentConfigMap key', key) ?? over(field, text);
    if (problem !== undefined) return problem;
  }
  return undefined;
}

// ---- client -----------------------------------------------------------------------------------

export function createCloudClient(options: CloudClientOptions): CloudApi {
  const now = options.now ?? Date.now;
  const log = options.logger.child({ component: 'cloud' });
  /** One request to the cloud: the parts that differ between endpoints. */
  type CloudRequest = Pick<HttpExchange, 'method' | 'url' | 'searchParams' | 'headers' | 'json'>;
  const base = options.hostAddr.replace(/\/+$/, '');
  const limits = options.limits ?? DEFAULT_CLOUD_LIMITS;
  const freeSpace = options.freeBytes ?? freeBytes;
  const answerCap: AnswerCap = {
    bytes: limits.answerBytes,
    name: `[limits] answer_size = ${fmtBytes(limits.answerBytes)}`,
  };
  const chunkCap: AnswerCap = {
    bytes: chunkAnswerBytes(limits.chunkBytes),
    name: `6 × [limits] chunk_size + 64 KiB = ${fmtBytes(chunkAnswerBytes(limits.chunkBytes))}`,
  };
  let current: TokenInfo | undefined;
  let refreshAt = 0;
  let inflight: Promise<TokenInfo> | undefined;

  async function send(
    endpoint: string,
    request: CloudRequest,
    cap: AnswerCap = answerCap,
  ): Promise<unknown> {
    const { statusCode, body } = await receive(endpoint, request, cap);
    return interpret(endpoint, statusCode, body.toString('utf8'));
  }

  /** Sends a request and reads its answer, abandoned as soon as it passes `cap`. */
  async function receive(endpoint: string, request: CloudRequest, cap: AnswerCap) {
    try {
      return await exchange({
        ...request,
        timeoutMs: options.timeoutMs,
        maxBytes: cap.bytes,
        ...(options.certificateAuthority === undefined ? {} : { ca: options.certificateAuthority }),
      });
    } catch (err) {
      if (err instanceof HttpOverCapError) {
        const seen =
          err.announced !== undefined
            ? `announces ${fmtBytes(err.announced)} (Content-Length)`
            : `passed ${fmtBytes(err.transferred)}`;
        throw new CloudError(
          endpoint,
          'limit',
          `the answer ${seen}, over ${cap.name}; abandoned after ${err.transferred} bytes`,
        );
      }
      if (err instanceof HttpExchangeError) {
        const failure = err.code === 'ETIMEDOUT' ? 'timeout' : 'network';
        throw new CloudError(endpoint, failure, `${err.code}: ${err.message}`, { cause: err });
      }
      throw new CloudError(endpoint, 'network', errorMessage(err), { cause: err });
    }
  }

  /**
   * The content of an answer, after the status, the envelope and its code are checked.
   * `shown` is the text error messages quote (default: the body); `notJsonWhy` is added to a
   * not-json failure.
   */
  function interpret(
    endpoint: string,
    statusCode: number,
    body: string,
    shown: string = body,
    notJsonWhy = '',
  ): unknown {
    let parsedBody: unknown;
    try {
      parsedBody = JSON.parse(body);
    } catch {
      parsedBody = undefined;
    }
    // The body code may come as a number or a numeric string.
    const code = Number((parsedBody as { code?: unknown } | undefined)?.code);
    if (statusCode === 401 || statusCode === 403 || AUTH_CODES.has(code)) {
      throw new CloudError(
        endpoint,
        'auth',
        `token rejected (HTTP ${statusCode}): ${snippet(shown)}`,
        {
          status: statusCode,
        },
      );
    }
    if (statusCode !== 200) {
      throw new CloudError(endpoint, 'http', `HTTP ${statusCode}: ${snippet(shown)}`, {
        status: statusCode,
      });
    }
    if (parsedBody === undefined) {
      throw new CloudError(
        endpoint,
        'not-json',
        `expected a JSON body, got "${snippet(shown)}"${notJsonWhy}`,
        { status: 200 },
      );
    }
    const env = envelope.safeParse(parsedBody);
    if (!env.success) {
      throw new CloudError(
        endpoint,
        'invalid-response',
        `bad envelope: ${describeZod(env.error)}`,
        { status: 200 },
      );
    }
    if (env.data.code !== 1) {
      const content = env.data.content;
      // Cut: the message travels on into the log, status and patch.meta.
      const why = snippet(
        env.data.msg ??
          (typeof content === 'string'
            ? content
            : content == null
              ? '(no message)'
              : showValue(content)),
      );
      throw new CloudError(endpoint, 'business', `code ${env.data.code}: ${why}`, { status: 200 });
    }
    // The original treats any falsy content ("", 0, [], {}, null) as absent.
    const c = env.data.content;
    const empty =
      c === undefined ||
      c === null ||
      c === '' ||
      c === 0 ||
      (Array.isArray(c) && c.length === 0) ||
      (typeof c === 'object' && !Array.isArray(c) && Object.keys(c).length === 0);
    return empty ? null : c;
  }

  async function withRetry<T>(endpoint: string, attempt: () => Promise<T>): Promise<T> {
    const baseMs = options.backoffBaseMs ?? 500;
    const maxMs = options.backoffMaxMs ?? 30_000;
    for (let n = 0; ; n++) {
      try {
        return await attempt();
      } catch (err) {
        // Only this endpoint's own failures: a token failure inside it was already retried.
        const retriable = err instanceof CloudError && err.transient && err.endpoint === endpoint;
        if (!retriable || n >= options.retries) throw err;
        // Full jitter keeps a fleet of boxes from retrying in lockstep.
        const delay = Math.min(maxMs, baseMs * 2 ** n) * (0.5 + Math.random() / 2);
        log.warn(
          { endpoint, attempt: n + 1, delayMs: Math.round(delay), err: err.message },
          'cloud call failed, retrying',
        );
        await new Promise((r) => setTimeout(r, delay));
      }
    }
  }

  async function acquire(): Promise<TokenInfo> {
    const creds = options.credentials();
    const content = await withRetry('getUserToken', async () => {
      const query = signedTokenQuery(
        creds.accessKeyId,
        creds.accessKeySecret,
        new Date(now()),
        randomUUID(),
      );
      return send('getUserToken', {
        method: 'GET',
        url: `${base}${TOKEN_PATH}`,
        searchParams: query,
        headers: { AccessKeyId: creds.accessKeyId },
      });
    });
    const parsed = tokenContent.safeParse(content);
    if (!parsed.success) {
      throw new CloudError(
        'getUserToken',
        'invalid-response',
        `content: ${describeZod(parsed.error)}`,
        {
          status: 200,
        },
      );
    }
    // The deployed server sends seconds; the old mock sent milliseconds. 10^11 s is year 5138.
    const unit = parsed.data.expireTime >= 1e11 ? 'ms' : 's';
    const expiresAt = unit === 'ms' ? parsed.data.expireTime : parsed.data.expireTime * 1000;
    const obtained = now();
    const lifetime = expiresAt - obtained;
    if (lifetime <= 0)
      log.warn({ expiresAt, now: obtained }, 'token already expired on arrival (clock skew?)');
    // Refresh ahead of expiry, but never sooner than half the lifetime of a short token.
    refreshAt = expiresAt - Math.min(options.refreshMarginMs, Math.max(0, lifetime / 2));
    current = { token: parsed.data.token, expiresAt, unit };
    log.info({ expiresAt: new Date(expiresAt).toISOString(), unit }, 'cloud token acquired');
    return current;
  }

  function refreshToken(): Promise<TokenInfo> {
    inflight ??= acquire().finally(() => {
      inflight = undefined;
    });
    return inflight;
  }

  async function token(): Promise<TokenInfo> {
    if (current !== undefined && now() < refreshAt) return current;
    return refreshToken();
  }

  /** A call with token headers; on a rejected token, re-authenticates once and repeats. */
  async function authed<T>(
    endpoint: string,
    call: (headers: Record<string, string>) => Promise<T>,
  ): Promise<T> {
    const headersFor = (t: TokenInfo) => ({ token: t.token, appkey: options.credentials().appKey });
    const first = await token();
    try {
      return await call(headersFor(first));
    } catch (err) {
      if (!(err instanceof CloudError) || err.failure !== 'auth') throw err;
      log.warn({ endpoint }, 'server rejected the token; re-authenticating once');
      if (current?.token === first.token) current = undefined;
      return call(headersFor(await token()));
    }
  }

  async function checkVersion(versionNum: string): Promise<VersionCheck> {
    const endpoint = 'version/check';
    const content = await withRetry(endpoint, () =>
      authed(endpoint, (headers) =>
        send(endpoint, {
          method: 'GET',
          url: `${base}${API_PREFIX}/version/check`,
          searchParams: { appkey: options.credentials().appKey, versionNum },
          headers,
        }),
      ),
    );
    let decoded: unknown = content;
    // content is a JSON document inside a JSON string; an older server sent the object itself.
    if (typeof content === 'string') {
      try {
        decoded = JSON.parse(content);
      } catch {
        throw new CloudError(
          endpoint,
          'invalid-response',
          `content is not JSON: "${snippet(content)}"`,
          {
            status: 200,
          },
        );
      }
    }
    // Counted before any entry is validated or kept: a huge list costs one length check.
    const list = (decoded as { upgradeList?: unknown } | null)?.upgradeList;
    const mark = (decoded as { upgradeMark?: unknown } | null)?.upgradeMark;
    if (mark !== 0 && Array.isArray(list) && list.length > limits.upgradeList) {
      throw limitError(
        endpoint,
        `upgradeList has ${list.length} entries, over [limits] upgrade_list = ${limits.upgradeList}`,
      );
    }
    const parsed = checkContent.safeParse(decoded);
    if (!parsed.success) {
      throw new CloudError(endpoint, 'invalid-response', `content: ${describeZod(parsed.error)}`, {
        status: 200,
      });
    }
    if (parsed.data.upgradeMark === 0) return { upgradeMark: 0, upgradeList: [] };
    for (const [i, entry] of parsed.data.upgradeList.entries()) {
      const problem = longText(entry, i, limits.textLength);
      if (problem !== undefined) throw limitError(endpoint, problem);
    }
    return { upgradeMark: parsed.data.upgradeMark, upgradeList: parsed.data.upgradeList };
  }

  async function fetchChunk(
    versionCode: string,
    fileIndex: number,
    scratch: { buffer: Buffer },
  ): Promise<{ totalIndex: number; data: Buffer }> {
    const endpoint = 'version/file';
    const { content, decoded } = await withRetry(endpoint, () =>
      authed(endpoint, async (headers) => {
        const { statusCode, body } = await receive(
          endpoint,
          {
            method: 'GET',
            url: `${base}${API_PREFIX}/version/file`,
            searchParams: { appkey: options.credentials().appKey, versionCode, fileIndex },
            headers,
          },
          chunkCap,
        );
        // The usual answer's bytes are decoded straight from the body, the rest of it parsed as
        // any answer; anything else (an error envelope, odd numbers) takes the general path.
        const scan =
          statusCode === 200 ? scanChunkBody(body, limits.chunkBytes, scratch) : undefined;
        if (scan?.ok === true) {
          const rest = bodyWithoutBytes(body, scan);
          const shown = body.toString('utf8', 0, 1024);
          return { content: interpret(endpoint, statusCode, rest, shown), decoded: scan };
        }
        const text = body.toString('utf8');
        const why = scan === undefined ? '' : `; at byte ${scan.at}: expected ${scan.expected}`;
        const general = interpret(endpoint, statusCode, text, text, why);
        return { content: general, decoded: undefined as ChunkArray | undefined };
      }),
    );
    // A config-only version answers totalIndex 0 with no bytes, which the envelope rule makes null.
    if (content === null) return { totalIndex: 0, data: Buffer.alloc(0) };
    const parsed = chunkContent.safeParse(content);
    if (!parsed.success) {
      throw new CloudError(
        endpoint,
        'invalid-response',
        `chunk ${fileIndex}: ${describeZod(parsed.error)}`,
        {
          status: 200,
        },
      );
    }
    const { bytes, totalIndex } = parsed.data;
    const count = decoded?.count ?? bytes.length;
    if (totalIndex > limits.chunkCount) {
      throw limitError(
        endpoint,
        `chunk ${fileIndex}: totalIndex is ${totalIndex}, over [limits] chunk_count = ${limits.chunkCount}`,
      );
    }
    if (count > limits.chunkBytes) {
      throw limitError(
        endpoint,
        `chunk ${fileIndex}: ${fmtBytes(count)}, over [limits] chunk_size = ${fmtBytes(limits.chunkBytes)}`,
      );
    }
    // Already checked and decoded by the scanner (into the download's scratch buffer).
    if (decoded !== undefined) return { totalIndex, data: decoded.data };
    return { totalIndex, data: decodeChunkBytes(bytes, fileIndex) };
  }

  interface PartState {
    versionCode: string;
    nextIndex: number;
    totalIndex: number;
    size: number;
    /** Bytes of the first chunk, the server's chunk size (absent in older checkpoints). */
    chunkBytes?: number;
  }

  /**
   * Refuses a download the disk cannot hold: the rest of the zip, its extraction beside it
   * (counted as the zip's size again) and [limits] disk_reserve.
   */
  async function ensureSpace(dir: string, state: PartState, totalIndex: number, chunk: number) {
    const reserve = limits.diskReserveBytes;
    const free = await freeSpace(dir);
    // Before the first chunk the size is unknown: keep at least the reserve.
    if (totalIndex < 0) {
      if (free < reserve)
        throw new DownloadSpaceError(
          dir,
          reserve,
          free,
          `[limits] disk_reserve is ${fmtBytes(reserve)}`,
        );
      return;
    }
    const zip = Math.min(totalIndex * chunk, limits.patchBytes);
    const rest = Math.max(0, zip - state.size);
    const need = rest + zip + reserve;
    if (free < need) {
      throw new DownloadSpaceError(
        dir,
        need,
        free,
        `the download needs ${fmtBytes(need)}: ${fmtBytes(rest)} more of the zip, about ${fmtBytes(zip)} to extract it and [limits] disk_reserve ${fmtBytes(reserve)}`,
      );
    }
  }

  /** Refuses a chunk that would take the download past [limits] patch_size (before it is written). */
  function checkPatchSize(totalIndex: number, chunk: number, index: number) {
    const endpoint = 'version/file';
    const cap = `[limits] patch_size = ${fmtBytes(limits.patchBytes)}`;
    // All chunks but the last have the first one's size: this much is announced at least.
    const announced = (totalIndex - 1) * chunk + 1;
    if (totalIndex > 0 && announced > limits.patchBytes) {
      throw limitError(
        endpoint,
        `chunk ${index}: totalIndex ${totalIndex} of ${fmtBytes(chunk)} chunks announces at least ${fmtBytes(announced)}, over ${cap}`,
      );
    }
  }

  async function downloadFile(
    versionCode: string,
    dest: string,
    opts: { onProgress?: (p: DownloadProgress) => void; signal?: AbortSignal } = {},
  ): Promise<DownloadResult> {
    const dir = dirname(dest);
    const part = `${dest}.part`;
    const statePath = `${dest}.part.json`;
    let state: PartState = { versionCode, nextIndex: 0, totalIndex: -1, size: 0 };
    try {
      const saved = JSON.parse(await readFile(statePath, 'utf8')) as PartState;
      if (saved.versionCode === versionCode && (await stat(part)).size >= saved.size) state = saved;
    } catch (err) {
      if (!isErrnoCode(err, 'ENOENT') && !(err instanceof SyntaxError)) throw err;
    }
    const resumedFrom = state.nextIndex;
    if (resumedFrom > 0)
      log.info({ versionCode, fromChunk: resumedFrom, bytes: state.size }, 'resuming download');
    // A resumed download knows its size already; a fresh one learns it from the first chunk.
    let chunkSize =
      resumedFrom > 0 ? (state.chunkBytes ?? Math.ceil(state.size / resumedFrom)) : undefined;
    await ensureSpace(dir, state, chunkSize === undefined ? -1 : state.totalIndex, chunkSize ?? 0);
    const handle = await open(part, resumedFrom > 0 ? 'r+' : 'w');
    // Chunk n is decoded into buffer n % 2: the next chunk arrives while this one is written.
    const scratches = [{ buffer: Buffer.alloc(0) }, { buffer: Buffer.alloc(0) }] as const;
    const fetchInto = (index: number) => {
      const chunk = fetchChunk(versionCode, index, scratches[index % 2 === 0 ? 0 : 1]);
      // Awaited in turn, or (after a failure) only waited for.
      chunk.catch(() => undefined);
      return { index, chunk };
    };
    let ahead: ReturnType<typeof fetchInto> | undefined;
    let lastCheckpoint = Date.now();
    let sinceCheckpoint = 0;
    const checkpoint = async (saved: PartState) => {
      // The bytes must be durable before the state that counts them.
      await handle.datasync();
      await writeFileAtomic(statePath, JSON.stringify(saved));
    };
    // Checkpoints run while the next chunks arrive (one at a time): a sync costs milliseconds,
    // a chunk less. A failed one fails the download at its next step, as a direct one would.
    let background: Promise<void> | undefined;
    let backgroundError: { err: unknown } | undefined;
    const settled = async () => {
      await background;
      if (backgroundError !== undefined) throw backgroundError.err;
    };
    try {
      await handle.truncate(state.size);
      for (;;) {
        if (backgroundError !== undefined) throw backgroundError.err;
        opts.signal?.throwIfAborted();
        const index = state.nextIndex;
        const next = ahead?.index === index ? ahead : fetchInto(index);
        ahead = undefined;
        const { totalIndex, data } = await next.chunk;
        // "No file" is only an answer to the first chunk; later it is a broken download.
        if (totalIndex === 0 && state.totalIndex === -1) {
          await settled();
          await handle.close();
          await Promise.all([rm(part, { force: true }), rm(statePath, { force: true })]);
          return { noFile: true, bytes: 0, chunks: 0, resumedFrom };
        }
        if (state.totalIndex !== -1 && totalIndex !== state.totalIndex) {
          throw new CloudError(
            'version/file',
            'invalid-response',
            `chunk ${index}: totalIndex changed from ${state.totalIndex} to ${totalIndex}`,
          );
        }
        // Empty chunks would have the box ask up to chunk_count times for nothing.
        if (data.length === 0) {
          throw new CloudError(
            'version/file',
            'invalid-response',
            `chunk ${index}: no bytes, but totalIndex is ${totalIndex}`,
          );
        }
        // Every cap is checked before the chunk is written.
        if (chunkSize === undefined) {
          chunkSize = data.length;
          checkPatchSize(totalIndex, chunkSize, index);
          await ensureSpace(dir, state, totalIndex, chunkSize);
        }
        if (state.size + data.length > limits.patchBytes) {
          throw limitError(
            'version/file',
            `chunk ${index} takes the download to ${fmtBytes(state.size + data.length)}, over [limits] patch_size = ${fmtBytes(limits.patchBytes)}`,
          );
        }
        // Every check passed: ask for the next chunk before this one goes to disk.
        if (index + 1 < totalIndex) ahead = fetchInto(index + 1);
        await handle.write(data, 0, data.length, state.size);
        state = {
          ...state,
          totalIndex,
          nextIndex: index + 1,
          size: state.size + data.length,
          chunkBytes: state.chunkBytes ?? chunkSize,
        };
        sinceCheckpoint += data.length;
        opts.onProgress?.({
          done: state.nextIndex,
          total: totalIndex,
          bytes: state.size,
          // All chunks but the last have the first one's size: an upper bound until the end.
          totalBytes: state.nextIndex >= totalIndex ? state.size : totalIndex * chunkSize,
        });
        if (state.nextIndex >= totalIndex) break;
        const due = sinceCheckpoint >= 1 << 20 || Date.now() - lastCheckpoint >= 2000;
        if (due && background === undefined) {
          lastCheckpoint = Date.now();
          sinceCheckpoint = 0;
          background = checkpoint(state)
            .catch((err: unknown) => {
              backgroundError = { err };
            })
            .finally(() => {
              background = undefined;
            });
        }
      }
      await settled();
      await handle.sync();
      await handle.close();
    } catch (err) {
      // A refused download (or one refused for space before anything arrived) leaves nothing;
      // any other is kept for a resume (a full disk fails this cycle; the next one continues).
      const refused =
        (err instanceof CloudError && err.failure === 'limit') ||
        (err instanceof DownloadSpaceError && state.nextIndex === 0);
      // Never two checkpoints at once, nor one writing the state after it is removed; no request
      // left running after the download has failed.
      await background;
      await ahead?.chunk.catch(() => undefined);
      if (!refused) await checkpoint(state).catch(() => undefined);
      await handle.close().catch(() => undefined);
      if (refused) await Promise.all([rm(part, { force: true }), rm(statePath, { force: true })]);
      throw withPath(err, part);
    }
    await rename(part, dest);
    await fsyncDir(dirname(dest));
    await rm(statePath, { force: true });
    return { noFile: false, bytes: state.size, chunks: state.totalIndex, resumedFrom };
  }

  async function heartbeat(items: HeartbeatItem[], versionCode: string): Promise<void> {
    const endpoint = 'heartBeat';
    // Not retried: the next beat is never far away, and a late duplicate would mislead.
    await authed(endpoint, (headers) => {
      const body: HeartbeatBody = {
        appkey: options.credentials().appKey,
        items,
        time: now(),
        versionCode,
      };
      return send(endpoint, {
        method: 'POST',
        url: `${base}${API_PREFIX}/heartBeat`,
        json: body,
        headers: { ...headers, 'content-type': 'application/json;charset=UTF-8' },
      });
    });
  }

  async function setTaskStatus(taskNos: TaskNo[], op: 1 | 2): Promise<void> {
    if (taskNos.length === 0) return;
    const endpoint = 'version/upTaskStatus';
    // Pausing or resuming the same tasks twice is harmless, so this call is retried.
    await withRetry(endpoint, () =>
      authed(endpoint, (headers) =>
        send(endpoint, {
          method: 'POST',
          url: `${base}${API_PREFIX}/version/upTaskStatus`,
          json: { appkey: options.credentials().appKey, taskNos, taskOpFlag: op },
          headers: { ...headers, 'content-type': 'application/json;charset=UTF-8' },
        }),
      ),
    );
  }

  return { token, refreshToken, checkVersion, downloadFile, heartbeat, setTaskStatus };
}
