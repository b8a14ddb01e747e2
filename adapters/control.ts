// The daemon's local control channel: HTTP on 127.0.0.1 only, every request authenticated by a
// random token that the daemon writes to a file only the agent's user can read (mode 0600).
// `boxkeeper check|install|rollback|clear-cache|reload-config` use it when a daemon runs.
import { randomBytes, timingSafeEqual } from 'node:crypto';
import { readFile, rm } from 'node:fs/promises';
import { createServer, request, type Server } from 'node:http';
import { writeFileAtomic } from './fs-atomic.ts';

export interface ControlInfo {
  url: string;
  token: string;
  pid: number;
}

export interface ControlReply {
  status: number;
  body: unknown;
}

export type ControlHandler = (
  method: string,
  path: string,
  body: unknown,
) => Promise<ControlReply> | ControlReply;

export interface ControlServer {
  info: ControlInfo;
  close(): Promise<void>;
}

function sameToken(a: string, b: string): boolean {
  const ba = Buffer.from(a);
  const bb = Buffer.from(b);
  return ba.length === bb.length && timingSafeEqual(ba, bb);
}

/** Listens on a free loopback port and writes `infoFile` (0600) for the CLI. */
export async function startControlServer(
  infoFile: string,
  handler: ControlHandler,
  /** GET paths answered without the token (a health probe); still loopback only. */
  open: ReadonlySet<string> = new Set(),
): Promise<ControlServer> {
  const token = randomBytes(24).toString('hex');
  const server: Server = createServer((req, res) => {
    const reply = (status: number, body: unknown) => {
      res.writeHead(status, { 'content-type': 'application/json' });
      res.end(JSON.stringify(body));
    };
    const auth = req.headers.authorization ?? '';
    const isOpen = req.method === 'GET' && open.has(req.url ?? '');
    if (!isOpen && !sameToken(auth, `Bearer ${token}`)) {
      reply(401, { error: 'missing or wrong control token' });
      return;
    }
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      let body: unknown;
      try {
        const text = Buffer.concat(chunks).toString('utf8');
        body = text === '' ? null : JSON.parse(text);
      } catch {
        reply(400, { error: 'the request body is not JSON' });
        return;
      }
      Promise.resolve(handler(req.method ?? 'GET', req.url ?? '/', body)).then(
        (r) => reply(r.status, r.body),
        (err: unknown) => reply(500, { error: err instanceof Error ? err.message : String(err) }),
      );
    });
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => resolve());
  });
  // Never keeps the process alive on its own.
  server.unref();
  const address = server.address();
  if (address === null || typeof address === 'string')
    throw new Error('control server has no port');
  const info: ControlInfo = { url: `http://127.0.0.1:${address.port}`, token, pid: process.pid };
  await writeFileAtomic(infoFile, JSON.stringify(info), { mode: 0o600 });
  return {
    info,
    async close() {
      await rm(infoFile, { force: true });
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

/** The running daemon's control info, or undefined when there is none. */
export async function readControlInfo(infoFile: string): Promise<ControlInfo | undefined> {
  try {
    const info = JSON.parse(await readFile(infoFile, 'utf8')) as ControlInfo;
    return typeof info.url === 'string' && typeof info.token === 'string' ? info : undefined;
  } catch {
    return undefined;
  }
}

/** One request to the daemon; rejects when it cannot be reached. */
export function controlRequest(
  info: ControlInfo,
  method: string,
  path: string,
  body?: unknown,
  timeoutMs = 10_000,
): Promise<ControlReply> {
  return new Promise((resolve, reject) => {
    const payload = body === undefined ? '' : JSON.stringify(body);
    const req = request(
      `${info.url}${path}`,
      {
        method,
        headers: {
          authorization: `Bearer ${info.token}`,
          'content-type': 'application/json',
          'content-length': Buffer.byteLength(payload),
        },
        timeout: timeoutMs,
      },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => {
          const text = Buffer.concat(chunks).toString('utf8');
          let parsed: unknown = text;
          try {
            parsed = JSON.parse(text);
          } catch {
            // keep the text
          }
          resolve({ status: res.statusCode ?? 0, body: parsed });
        });
      },
    );
    req.on('timeout', () =>
      req.destroy(new Error(`control request timed out after ${timeoutMs} ms`)),
    );
    req.on('error', reject);
    req.end(payload);
  });
}
