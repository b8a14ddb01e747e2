// The local console's web server: HTTP on 127.0.0.1 only, a page, a few JSON routes and one
// Server-Sent Events stream. Access is by a random token: the link `boxkeeper console` prints
// carries it once (`/?token=…`), the answer trades it for an HttpOnly, SameSite=Strict cookie
// and sends the browser on to `/`, so the token leaves the address bar. Besides the cookie:
// - the Host header must name this loopback address (a DNS-rebinding page cannot reach us);
// - a POST needs our own header and, when the browser sends one, our own Origin (a page of
//   another site cannot make a browser send it without a CORS preflight we never answer);
// - bodies are capped, and no answer may be framed or cached.
import { randomBytes, timingSafeEqual } from 'node:crypto';
import { rm } from 'node:fs/promises';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import { writeFileAtomic } from './fs-atomic.ts';

export interface ConsoleInfo {
  url: string;
  token: string;
  pid: number;
}

export interface ConsoleAnswer {
  status: number;
  type: string;
  body: string;
}

export interface ConsoleRoutes {
  /** GET of anything but `/events`; undefined: 404. */
  get(path: string): Promise<ConsoleAnswer | undefined> | ConsoleAnswer | undefined;
  /** POST with a JSON body; the answer is sent as JSON. */
  post(path: string, body: unknown): Promise<{ status: number; body: unknown }>;
  /** What a page that just connected to `/events` receives first. */
  hello(): { event: string; data: unknown }[];
}

export interface ConsoleServer {
  info: ConsoleInfo;
  /** Sends an event to every connected page. */
  publish(event: string, data: unknown): void;
  close(): Promise<void>;
}

/** The header a console POST must carry (see the top of this file). */
export const CONSOLE_HEADER = 'x-boxkeeper-console';
const COOKIE = 'boxkeeper_console';
const MAX_BODY = 64 * 1024;
/** A comment on the event stream now and then, so proxies and browsers keep it open. */
const KEEPALIVE_MS = 15_000;

export class ConsolePortError extends Error {
  constructor(port: number, cause: unknown) {
    const code = (cause as { code?: string }).code;
    super(
      code === 'EADDRINUSE'
        ? `the console port 127.0.0.1:${port} is in use ([console] port)`
        : `cannot listen on 127.0.0.1:${port} ([console] port): ${(cause as Error).message}`,
      { cause },
    );
    this.name = 'ConsolePortError';
  }
}

function same(a: string, b: string): boolean {
  const ba = Buffer.from(a);
  const bb = Buffer.from(b);
  return ba.length === bb.length && timingSafeEqual(ba, bb);
}

function cookieOf(req: IncomingMessage): string {
  for (const part of (req.headers.cookie ?? '').split(';')) {
    const [k, ...v] = part.trim().split('=');
    if (k === COOKIE) return v.join('=');
  }
  return '';
}

const SECURITY_HEADERS = {
  'cache-control': 'no-store',
  'x-frame-options': 'DENY',
  'x-content-type-options': 'nosniff',
  'referrer-policy': 'no-referrer',
  'content-security-policy':
    "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; frame-ancestors 'none'; form-action 'none'",
};

function send(res: ServerResponse, status: number, type: string, body: string): void {
  res.writeHead(status, { ...SECURITY_HEADERS, 'content-type': type });
  res.end(body);
}

const refused = (res: ServerResponse, status: number, why: string) =>
  send(res, status, 'text/plain; charset=utf-8', `${why}\n`);

/** Listens on 127.0.0.1:`port` (0: any free port) and writes `infoFile` (0600) for the CLI. */
export async function startConsoleServer(opts: {
  port: number;
  infoFile: string;
  routes: ConsoleRoutes;
  /** For tests: a token of the caller's (else a random one). */
  token?: string;
}): Promise<ConsoleServer> {
  const token = opts.token ?? randomBytes(24).toString('hex');
  const pages = new Set<ServerResponse>();
  let hosts: Set<string> = new Set();
  let origins: Set<string> = new Set();

  const server = createServer((req, res) => {
    const url = new URL(req.url ?? '/', 'http://127.0.0.1');
    if (!hosts.has(req.headers.host ?? '')) {
      refused(res, 421, `not this console's address (Host: ${req.headers.host ?? 'none'})`);
      return;
    }
    const offered = url.searchParams.get('token');
    if (req.method === 'GET' && url.pathname === '/' && offered !== null) {
      if (!same(offered, token)) {
        refused(res, 401, 'wrong console token: open the link `boxkeeper console` prints');
        return;
      }
      res.writeHead(303, {
        ...SECURITY_HEADERS,
        location: '/',
        'set-cookie': `${COOKIE}=${token}; HttpOnly; SameSite=Strict; Path=/`,
      });
      res.end();
      return;
    }
    if (!same(cookieOf(req), token)) {
      refused(res, 401, 'no console token: open the link `boxkeeper console` prints');
      return;
    }
    if (req.method === 'GET' && url.pathname === '/events') {
      res.writeHead(200, {
        ...SECURITY_HEADERS,
        'content-type': 'text/event-stream; charset=utf-8',
        connection: 'keep-alive',
      });
      for (const e of opts.routes.hello()) res.write(frame(e.event, e.data));
      pages.add(res);
      req.on('close', () => pages.delete(res));
      return;
    }
    if (req.method === 'GET') {
      Promise.resolve(opts.routes.get(url.pathname)).then(
        (a) =>
          a === undefined
            ? refused(res, 404, `no page ${url.pathname}`)
            : send(res, a.status, a.type, a.body),
        (err: unknown) => refused(res, 500, err instanceof Error ? err.message : String(err)),
      );
      return;
    }
    if (req.method !== 'POST') {
      refused(res, 405, `${req.method ?? '?'} is not served here`);
      return;
    }
    const sentOrigin = req.headers.origin;
    if (
      req.headers[CONSOLE_HEADER] !== '1' ||
      (sentOrigin !== undefined && !origins.has(sentOrigin))
    ) {
      refused(res, 403, 'a console action must come from the console page');
      return;
    }
    const chunks: Buffer[] = [];
    let size = 0;
    req.on('data', (c: Buffer) => {
      size += c.length;
      if (size > MAX_BODY) {
        refused(res, 413, `the request body is over ${MAX_BODY} bytes`);
        req.destroy();
      } else chunks.push(c);
    });
    req.on('end', () => {
      if (res.headersSent) return;
      let body: unknown;
      try {
        const text = Buffer.concat(chunks).toString('utf8');
        body = text === '' ? null : JSON.parse(text);
      } catch {
        refused(res, 400, 'the request body is not JSON');
        return;
      }
      opts.routes.post(url.pathname, body).then(
        (r) => send(res, r.status, 'application/json', JSON.stringify(r.body)),
        (err: unknown) =>
          send(
            res,
            500,
            'application/json',
            JSON.stringify({ error: err instanceof Error ? err.message : String(err) }),
          ),
      );
    });
  });

  await new Promise<void>((resolve, reject) => {
    server.once('error', (err) => reject(new ConsolePortError(opts.port, err)));
    server.listen(opts.port, '127.0.0.1', () => resolve());
  });
  server.unref();
  const address = server.address();
  if (address === null || typeof address === 'string') throw new Error('console has no port');
  hosts = new Set([`127.0.0.1:${address.port}`, `localhost:${address.port}`]);
  origins = new Set([...hosts].map((h) => `http://${h}`));
  const keepalive = setInterval(() => {
    for (const p of pages) p.write(': keep-alive\n\n');
  }, KEEPALIVE_MS);
  keepalive.unref();
  const info: ConsoleInfo = { url: `http://127.0.0.1:${address.port}`, token, pid: process.pid };
  await writeFileAtomic(opts.infoFile, JSON.stringify(info), { mode: 0o600 });
  return {
    info,
    publish(event, data) {
      const text = frame(event, data);
      for (const p of pages) p.write(text);
    },
    async close() {
      clearInterval(keepalive);
      await rm(opts.infoFile, { force: true });
      for (const p of pages) p.end();
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

function frame(event: string, data: unknown): string {
  return `event: ${event}\ndata: ${JSON.stringify(data)}\n\n`;
}
