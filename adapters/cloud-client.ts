// The cloud-platform client: token (signed, refreshed ahead of expiry, one refresh at a time,
// one re-auth and retry when the server rejects it), version check, chunked download,
// heartbeat and task pause/resume. Every answer is validated; failures are CloudErrors that
// name the endpoint. Idempotent calls are retried with exponential backoff and jitter.
import { randomUUID } from 'node:crypto';
import { open, readFile, rename, rm, stat } from 'node:fs/promises';
import { dirname } from 'node:path';
import got, { RequestError, type Got } from 'got';
import { z } from 'zod';
import { CloudError, errorMessage, isErrnoCode } from './errors.ts';
import { fsyncDir, writeFileAtomic } from './fs-atomic.ts';
import type { Logger } from './logger.ts';
import { signedTokenQuery } from './cloud-signing.ts';

export const API_PREFIX = '/v1/api/center818/box';
export const TOKEN_PATH = '/gateway/token/getUserToken';

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
    options?: { onProgress?: (done: number, total: number) => void; signal?: AbortSignal },
  ): Promise<DownloadResult>;
  heartbeat(items: HeartbeatItem[], versionCode: string): Promise<void>;
  setTaskStatus(taskNos: TaskNo[], op: (typeof TaskOp)[keyof typeof TaskOp]): Promise<void>;
}

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
  expireTime: z.union([z.number(), z.string().regex(/^\d+$/).transform(Number)]),
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
  bytes: z.array(z.unknown()),
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

const AUTH_CODES = new Set([401, 403]);

// ---- client -----------------------------------------------------------------------------------

export function createCloudClient(options: CloudClientOptions): CloudApi {
  const now = options.now ?? Date.now;
  const log = options.logger.child({ component: 'cloud' });
  const http: Got = got.extend({
    timeout: { request: options.timeoutMs },
    retry: { limit: 0 },
    throwHttpErrors: false,
    followRedirect: false,
    responseType: 'text',
  });
  const base = options.hostAddr.replace(/\/+$/, '');
  let current: TokenInfo | undefined;
  let refreshAt = 0;
  let inflight: Promise<TokenInfo> | undefined;

  async function send(
    endpoint: string,
    request: () => Promise<{ statusCode: number; body: string }>,
  ): Promise<unknown> {
    let response;
    try {
      response = await request();
    } catch (err) {
      if (err instanceof RequestError) {
        const failure = err.code === 'ETIMEDOUT' ? 'timeout' : 'network';
        throw new CloudError(endpoint, failure, `${err.code}: ${err.message}`, { cause: err });
      }
      throw new CloudError(endpoint, 'network', errorMessage(err), { cause: err });
    }
    const { statusCode, body } = response;
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
        `token rejected (HTTP ${statusCode}): ${snippet(body)}`,
        {
          status: statusCode,
        },
      );
    }
    if (statusCode !== 200) {
      throw new CloudError(endpoint, 'http', `HTTP ${statusCode}: ${snippet(body)}`, {
        status: statusCode,
      });
    }
    if (parsedBody === undefined) {
      throw new CloudError(endpoint, 'not-json', `expected a JSON body, got "${snippet(body)}"`, {
        status: 200,
      });
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
      const why =
        env.data.msg ??
        (typeof content === 'string'
          ? content
          : content == null
            ? '(no message)'
            : JSON.stringify(content));
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
      return send('getUserToken', () =>
        http.get(`${base}${TOKEN_PATH}`, {
          searchParams: query,
          headers: { AccessKeyId: creds.accessKeyId },
        }),
      );
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
  async function authed(
    endpoint: string,
    call: (headers: Record<string, string>) => Promise<unknown>,
  ) {
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
        send(endpoint, () =>
          http.get(`${base}${API_PREFIX}/version/check`, {
            searchParams: { appkey: options.credentials().appKey, versionNum },
            headers,
          }),
        ),
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
    const parsed = checkContent.safeParse(decoded);
    if (!parsed.success) {
      throw new CloudError(endpoint, 'invalid-response', `content: ${describeZod(parsed.error)}`, {
        status: 200,
      });
    }
    if (parsed.data.upgradeMark === 0) return { upgradeMark: 0, upgradeList: [] };
    return { upgradeMark: parsed.data.upgradeMark, upgradeList: parsed.data.upgradeList };
  }

  async function fetchChunk(
    versionCode: string,
    fileIndex: number,
  ): Promise<{ totalIndex: number; data: Buffer }> {
    const endpoint = 'version/file';
    const content = await withRetry(endpoint, () =>
      authed(endpoint, (headers) =>
        send(endpoint, () =>
          http.get(`${base}${API_PREFIX}/version/file`, {
            searchParams: { appkey: options.credentials().appKey, versionCode, fileIndex },
            headers,
          }),
        ),
      ),
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
    const data = Buffer.allocUnsafe(bytes.length);
    for (let i = 0; i < bytes.length; i++) {
      const b = bytes[i];
      // Java bytes are signed (-128..127); accept 0..255 too and keep the low 8 bits.
      if (typeof b !== 'number' || !Number.isInteger(b) || b < -128 || b > 255) {
        throw new CloudError(
          endpoint,
          'invalid-response',
          `chunk ${fileIndex}: bytes[${i}] is ${JSON.stringify(b)}, expected a byte`,
          {
            status: 200,
          },
        );
      }
      data[i] = b & 0xff;
    }
    return { totalIndex, data };
  }

  interface PartState {
    versionCode: string;
    nextIndex: number;
    totalIndex: number;
    size: number;
  }

  async function downloadFile(
    versionCode: string,
    dest: string,
    opts: { onProgress?: (done: number, total: number) => void; signal?: AbortSignal } = {},
  ): Promise<DownloadResult> {
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
    const handle = await open(part, resumedFrom > 0 ? 'r+' : 'w');
    let lastCheckpoint = Date.now();
    let sinceCheckpoint = 0;
    const checkpoint = async () => {
      // The bytes must be durable before the state that counts them.
      await handle.datasync();
      await writeFileAtomic(statePath, JSON.stringify(state));
      lastCheckpoint = Date.now();
      sinceCheckpoint = 0;
    };
    try {
      await handle.truncate(state.size);
      for (;;) {
        opts.signal?.throwIfAborted();
        const { totalIndex, data } = await fetchChunk(versionCode, state.nextIndex);
        // "No file" is only an answer to the first chunk; later it is a broken download.
        if (totalIndex === 0 && state.totalIndex === -1) {
          await handle.close();
          await Promise.all([rm(part, { force: true }), rm(statePath, { force: true })]);
          return { noFile: true, bytes: 0, chunks: 0, resumedFrom };
        }
        if (state.totalIndex !== -1 && totalIndex !== state.totalIndex) {
          throw new CloudError(
            'version/file',
            'invalid-response',
            `chunk ${state.nextIndex}: totalIndex changed from ${state.totalIndex} to ${totalIndex}`,
          );
        }
        await handle.write(data, 0, data.length, state.size);
        state = {
          ...state,
          totalIndex,
          nextIndex: state.nextIndex + 1,
          size: state.size + data.length,
        };
        sinceCheckpoint += data.length;
        opts.onProgress?.(state.nextIndex, totalIndex);
        if (state.nextIndex >= totalIndex) break;
        if (sinceCheckpoint >= 1 << 20 || Date.now() - lastCheckpoint >= 2000) await checkpoint();
      }
      await handle.sync();
      await handle.close();
    } catch (err) {
      await checkpoint().catch(() => undefined);
      await handle.close().catch(() => undefined);
      throw err;
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
      return send(endpoint, () =>
        http.post(`${base}${API_PREFIX}/heartBeat`, {
          json: body,
          headers: { ...headers, 'content-type': 'application/json;charset=UTF-8' },
        }),
      );
    });
  }

  async function setTaskStatus(taskNos: TaskNo[], op: 1 | 2): Promise<void> {
    if (taskNos.length === 0) return;
    const endpoint = 'version/upTaskStatus';
    // Pausing or resuming the same tasks twice is harmless, so this call is retried.
    await withRetry(endpoint, () =>
      authed(endpoint, (headers) =>
        send(endpoint, () =>
          http.post(`${base}${API_PREFIX}/version/upTaskStatus`, {
            json: { appkey: options.credentials().appKey, taskNos, taskOpFlag: op },
            headers: { ...headers, 'content-type': 'application/json;charset=UTF-8' },
          }),
        ),
      ),
    );
  }

  return { token, refreshToken, checkVersion, downloadFile, heartbeat, setTaskStatus };
}
