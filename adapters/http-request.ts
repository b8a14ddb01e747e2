// One HTTP exchange on node:http / node:https: the whole answer in memory, bounded by a byte cap
// and a timeout over the whole exchange. Replaces got, whose module tree (http2-wrapper,
// cacheable-request, …) cost the idle daemon about 20 MiB of memory and its start-up 60 ms for
// features the cloud protocol never uses (redirects, retries, caching, HTTP/2).
import { request as httpRequest, type IncomingMessage } from 'node:http';
import { request as httpsRequest } from 'node:https';
import { createBrotliDecompress, createGunzip, createInflate } from 'node:zlib';
import type { Readable } from 'node:stream';

export interface HttpExchange {
  method: 'GET' | 'POST';
  url: string;
  searchParams?: Record<string, string | number>;
  headers?: Record<string, string>;
  /** Sent as the body, serialised as JSON (content-type application/json unless given). */
  json?: unknown;
  /** Over the whole exchange: connect, send, and the answer's last byte. */
  timeoutMs: number;
  /** PEM CA certificates that alone are trusted for https (default: Node's). */
  ca?: string | Buffer;
  /**
   * Largest answer body kept, after decompression. Past it the exchange is abandoned and the
   * promise rejects with an HttpOverCapError.
   */
  maxBytes: number;
}

export interface HttpAnswer {
  statusCode: number;
  body: Buffer;
}

/** A failure of the exchange itself (no answer): a system code such as ECONNREFUSED, ETIMEDOUT. */
export class HttpExchangeError extends Error {
  readonly code: string;
  constructor(code: string, message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = 'HttpExchangeError';
    this.code = code;
  }
}

/** The answer was bigger than `maxBytes`: `announced` is its Content-Length when that said so. */
export class HttpOverCapError extends Error {
  readonly transferred: number;
  readonly announced: number | undefined;
  constructor(transferred: number, announced: number | undefined) {
    super(
      announced === undefined
        ? `answer passed ${transferred} bytes`
        : `answer announces ${announced} bytes`,
    );
    this.name = 'HttpOverCapError';
    this.transferred = transferred;
    this.announced = announced;
  }
}

function decoded(res: IncomingMessage): Readable {
  // What the cloud may compress, as Python's requests (the deployed tool) accepted it.
  switch ((res.headers['content-encoding'] ?? '').trim().toLowerCase()) {
    case 'gzip':
    case 'x-gzip':
      return res.pipe(createGunzip());
    case 'deflate':
      return res.pipe(createInflate());
    case 'br':
      return res.pipe(createBrotliDecompress());
    default:
      return res;
  }
}

export function exchange(x: HttpExchange): Promise<HttpAnswer> {
  const url = new URL(x.url);
  for (const [k, v] of Object.entries(x.searchParams ?? {})) url.searchParams.set(k, String(v));
  const body = x.json === undefined ? undefined : Buffer.from(JSON.stringify(x.json));
  const headers: Record<string, string> = {
    'accept-encoding': 'gzip, deflate, br',
    ...(body === undefined
      ? {}
      : { 'content-type': 'application/json', 'content-length': String(body.length) }),
    ...x.headers,
  };
  const https = url.protocol === 'https:';
  if (!https && url.protocol !== 'http:') {
    return Promise.reject(
      new HttpExchangeError('ERR_INVALID_PROTOCOL', `unsupported protocol ${url.protocol}`),
    );
  }
  return new Promise<HttpAnswer>((resolve, reject) => {
    let settled = false;
    const finish = (err: Error | undefined, answer?: HttpAnswer) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      if (err !== undefined) {
        req.destroy();
        reject(err);
      } else resolve(answer as HttpAnswer);
    };
    const options = {
      method: x.method,
      headers,
      ...(https && x.ca !== undefined ? { ca: x.ca } : {}),
    };
    const req = (https ? httpsRequest : httpRequest)(url, options, (res) => {
      const announced = Number(res.headers['content-length']);
      if (Number.isFinite(announced) && announced > x.maxBytes) {
        finish(new HttpOverCapError(0, announced));
        return;
      }
      const parts: Buffer[] = [];
      let size = 0;
      const stream = decoded(res);
      stream.on('data', (part: Buffer) => {
        size += part.length;
        if (size > x.maxBytes) {
          finish(new HttpOverCapError(size, undefined));
          stream.destroy();
          return;
        }
        parts.push(part);
      });
      stream.once('end', () =>
        finish(undefined, { statusCode: res.statusCode ?? 0, body: Buffer.concat(parts, size) }),
      );
      stream.once('error', (err: NodeJS.ErrnoException) =>
        finish(
          new HttpExchangeError(
            err.code ?? 'ERR_BAD_ANSWER',
            `reading the answer: ${err.message}`,
            {
              cause: err,
            },
          ),
        ),
      );
      const cutOff = () => finish(new HttpExchangeError('ECONNRESET', 'the answer was cut off'));
      res.once('error', cutOff);
      res.once('close', () => {
        if (!res.complete) cutOff();
      });
    });
    const timer = setTimeout(
      () =>
        finish(new HttpExchangeError('ETIMEDOUT', `no complete answer within ${x.timeoutMs} ms`)),
      x.timeoutMs,
    );
    req.once('error', (err: NodeJS.ErrnoException) =>
      finish(new HttpExchangeError(err.code ?? 'ERR_REQUEST', err.message, { cause: err })),
    );
    req.end(body);
  });
}
