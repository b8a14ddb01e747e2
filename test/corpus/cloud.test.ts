// Corpus: every cloud endpoint's answer, over real HTTP on loopback: a tiny scripted server for
// shapes the cloud simulator cannot make (wrong envelope, wrong types, negative numbers,
// missing fields), and the simulator with injected faults. The client must fail with a
// CloudError that names the request and says what was expected; a download leaves no file but
// its documented resume state (`<zip>.part` and `<zip>.part.json`), and nothing else changes.
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { mkdir, writeFile } from 'node:fs/promises';
import { after, before } from 'node:test';
import { randomBytes } from 'node:crypto';
import {
  createCloudClient,
  TOKEN_PATH,
  TaskOp,
  type CloudApi,
} from '../../adapters/cloud-client.ts';
import { CloudError } from '../../adapters/errors.ts';
import { createLogger } from '../../adapters/logger.ts';
import {
  startCloudSimulator,
  type CloudSim,
  type FaultSpec,
  type SimEndpoint,
} from '../../fixtures/cloud-sim/server.ts';
import { runCorpus, type CorpusCase, type Tree } from './runner.ts';

type Request = 'token' | 'version/check' | 'version/file' | 'heartBeat' | 'upTaskStatus';

/** The scripted server's answer: a value sent as JSON, or `raw` text. */
interface Answer {
  status?: number;
  json?: unknown;
  raw?: string;
}

interface CloudCase extends CorpusCase {
  request: Request;
  answer?: Answer;
  /** Or the simulator's answer with this fault. */
  fault?: FaultSpec;
}

/** How the client names each request in its errors. */
const ENDPOINT: Record<Request, string> = {
  token: 'getUserToken',
  'version/check': 'version/check',
  'version/file': 'version/file',
  heartBeat: 'heartBeat',
  upTaskStatus: 'version/upTaskStatus',
};
const SIM_ENDPOINT: Record<Request, SimEndpoint> = {
  token: 'token',
  'version/check': 'check',
  'version/file': 'file',
  heartBeat: 'heartBeat',
  upTaskStatus: 'upTaskStatus',
};

const ok = (content: unknown): Answer => ({ json: { code: 1, msg: 'success', content } });
const version = (v: Record<string, unknown>) => ({
  versionCode: '9e9763d2baf4477180991667d19fe35d',
  versionNum: 'V1.8',
  fileMd5: 'cd9f1d57fd7b792587d29e7826f4df0e',
  remark: 'fixes',
  argumentConfigMap: { citynum: '021' },
  ...v,
});
const check = (content: unknown) => ok(JSON.stringify(content));
/** JSON text of [[[…]]] nested 100,000 levels: 200 KB that overflow any recursion over it. */
const DEEP = '['.repeat(100_000) + ']'.repeat(100_000);
/** `json` as text with the string "@DEEP@" replaced by DEEP (JSON.stringify cannot write it). */
const withDeep = (json: unknown) => JSON.stringify(json).replace('"@DEEP@"', DEEP);
const HTML = '<html><body><h1>502 Bad Gateway</h1></body></html>';

const failed = (endpoint: string, failure: string, detail: string) =>
  new RegExp(`^cloud ${endpoint.replace('/', '\\/')} failed \\(${failure}\\): ${detail}`);

export const CLOUD_CASES: readonly CloudCase[] = [
  // ---- token (getUserToken)
  {
    name: 'token: an HTML page',
    request: 'token',
    answer: { raw: HTML },
    expect: failed('getUserToken', 'not-json', 'expected a JSON body, got "<html>'),
  },
  {
    name: 'token: the envelope is an array',
    request: 'token',
    answer: { json: [1, 'success'] },
    expect: failed(
      'getUserToken',
      'invalid-response',
      'bad envelope: \\(root\\): .*expected object',
    ),
  },
  {
    name: 'token: code is a word',
    request: 'token',
    answer: { json: { code: 'ok', content: { token: 't', expireTime: 1 } } },
    expect: failed('getUserToken', 'invalid-response', 'bad envelope: code: '),
  },
  {
    name: 'token: content without a token',
    request: 'token',
    answer: ok({ expireTime: 1_900_000_000 }),
    expect: failed('getUserToken', 'invalid-response', 'content: token: .*expected string'),
  },
  {
    name: 'token: an empty token',
    request: 'token',
    answer: ok({ token: '', expireTime: 1_900_000_000 }),
    expect: failed('getUserToken', 'invalid-response', 'content: token: Too small'),
  },
  {
    name: 'token: expireTime a word',
    request: 'token',
    answer: ok({ token: 'abc', expireTime: 'tomorrow' }),
    expect: failed('getUserToken', 'invalid-response', 'content: expireTime: '),
  },
  {
    name: 'token: expireTime negative',
    request: 'token',
    answer: ok({ token: 'abc', expireTime: -1 }),
    expect: failed(
      'getUserToken',
      'invalid-response',
      'content: expireTime: expected epoch seconds or milliseconds',
    ),
  },
  {
    // new Date(1e300).toISOString() threw a RangeError out of token().
    name: 'token: expireTime 1e300',
    request: 'token',
    answer: ok({ token: 'abc', expireTime: 1e300 }),
    expect: failed(
      'getUserToken',
      'invalid-response',
      'content: expireTime: expected epoch seconds or milliseconds',
    ),
  },
  {
    name: 'token: expireTime a fraction',
    request: 'token',
    answer: ok({ token: 'abc', expireTime: 1_900_000_000.5 }),
    expect: failed(
      'getUserToken',
      'invalid-response',
      'content: expireTime: expected epoch seconds or milliseconds',
    ),
  },
  {
    name: 'token: success without content',
    request: 'token',
    answer: { json: { code: 1, msg: 'success', content: null } },
    expect: failed('getUserToken', 'invalid-response', 'content: \\(root\\): .*expected object'),
  },
  {
    // JSON.stringify of the content overflowed the stack: a RangeError, not a CloudError.
    name: 'token: a business error whose content is nested 100,000 levels deep',
    request: 'token',
    answer: { raw: withDeep({ code: 0, content: '@DEEP@' }) },
    expect: failed('getUserToken', 'business', 'code 0: \\(nested too deeply to show\\)$'),
  },
  {
    name: 'token: HTTP 404 (simulator)',
    request: 'token',
    fault: { kind: 'status', status: 404 },
    expect: failed('getUserToken', 'http', 'HTTP 404: Not Found'),
  },
  {
    name: 'token: an HTML page (simulator)',
    request: 'token',
    fault: { kind: 'non-json' },
    expect: failed('getUserToken', 'not-json', 'expected a JSON body, got "<html>oops'),
  },
  // ---- version/check
  {
    name: 'check: content is a string that is not JSON',
    request: 'version/check',
    answer: ok('{upgradeMark: 1'),
    expect: failed('version/check', 'invalid-response', 'content is not JSON: "\\{upgradeMark: 1"'),
  },
  {
    name: 'check: upgradeMark 3',
    request: 'version/check',
    answer: check({ upgradeMark: 3, upgradeList: [version({})] }),
    expect: failed('version/check', 'invalid-response', 'content: upgradeMark: '),
  },
  {
    name: 'check: upgradeMark a string',
    request: 'version/check',
    answer: check({ upgradeMark: '2', upgradeList: [version({})] }),
    expect: failed('version/check', 'invalid-response', 'content: upgradeMark: '),
  },
  {
    name: 'check: upgradeMark negative',
    request: 'version/check',
    answer: check({ upgradeMark: -1, upgradeList: [] }),
    expect: failed('version/check', 'invalid-response', 'content: upgradeMark: '),
  },
  {
    name: 'check: upgradeList an object',
    request: 'version/check',
    answer: check({ upgradeMark: 1, upgradeList: { V18: version({}) } }),
    expect: failed('version/check', 'invalid-response', 'content: upgradeList: .*expected array'),
  },
  {
    name: 'check: a mandatory update with an empty upgradeList',
    request: 'version/check',
    answer: check({ upgradeMark: 2, upgradeList: [] }),
    expect: failed('version/check', 'invalid-response', 'content: upgradeList: Too small'),
  },
  {
    name: 'check: an upgradeList entry null',
    request: 'version/check',
    answer: check({ upgradeMark: 1, upgradeList: [null] }),
    expect: failed(
      'version/check',
      'invalid-response',
      'content: upgradeList\\.0: .*expected object',
    ),
  },
  {
    name: 'check: an entry without versionCode',
    request: 'version/check',
    answer: check({ upgradeMark: 1, upgradeList: [version({ versionCode: undefined })] }),
    expect: failed('version/check', 'invalid-response', 'content: upgradeList\\.0\\.versionCode: '),
  },
  {
    name: 'check: remark a number',
    request: 'version/check',
    answer: check({ upgradeMark: 1, upgradeList: [version({ remark: 42 })] }),
    expect: failed('version/check', 'invalid-response', 'content: upgradeList\\.0\\.remark: '),
  },
  {
    name: 'check: argumentConfigMap a list',
    request: 'version/check',
    answer: check({ upgradeMark: 1, upgradeList: [version({ argumentConfigMap: ['citynum'] })] }),
    expect: failed(
      'version/check',
      'invalid-response',
      'content: upgradeList\\.0\\.argumentConfigMap: ',
    ),
  },
  {
    // JSON.stringify of the value (to hold it to text_length) overflowed the stack.
    name: 'check: an argumentConfigMap value nested 100,000 levels deep',
    request: 'version/check',
    answer: {
      raw: JSON.stringify({ code: 1, msg: 'success', content: '@CONTENT@' }).replace(
        '"@CONTENT@"',
        JSON.stringify(
          withDeep({
            upgradeMark: 1,
            upgradeList: [version({ argumentConfigMap: { citynum: '@DEEP@' } })],
          }),
        ),
      ),
    },
    expect: new RegExp(
      String.raw`^cloud version\/check failed \(limit\): upgradeList\[0\]\.argumentConfigMap\.citynum is nested too deeply`,
    ),
  },
  {
    name: 'check: success without content',
    request: 'version/check',
    answer: { json: { code: 1, msg: 'success' } },
    expect: failed('version/check', 'invalid-response', 'content: \\(root\\): '),
  },
  {
    name: 'check: msg a number',
    request: 'version/check',
    answer: { json: { code: 1, msg: 7, content: '{"upgradeMark":0}' } },
    expect: failed('version/check', 'invalid-response', 'bad envelope: msg: .*expected string'),
  },
  {
    name: 'check: a redirect',
    request: 'version/check',
    answer: { status: 302, raw: 'Found' },
    expect: failed('version/check', 'http', 'HTTP 302: Found'),
  },
  // ---- version/file (chunks)
  {
    name: 'file: totalIndex negative (simulator)',
    request: 'version/file',
    fault: { kind: 'total-index', totalIndex: -3 },
    expect: failed('version/file', 'invalid-response', 'chunk 0: totalIndex: Too small'),
  },
  {
    name: 'file: totalIndex a fraction',
    request: 'version/file',
    answer: ok({ totalIndex: 1.5, bytes: [1, 2] }),
    expect: failed('version/file', 'invalid-response', 'chunk 0: totalIndex: .*expected int'),
  },
  {
    name: 'file: totalIndex a string',
    request: 'version/file',
    answer: ok({ totalIndex: '3', bytes: [1, 2] }),
    expect: failed('version/file', 'invalid-response', 'chunk 0: totalIndex: .*expected number'),
  },
  {
    name: 'file: bytes missing',
    request: 'version/file',
    answer: ok({ totalIndex: 3 }),
    expect: failed(
      'version/file',
      'invalid-response',
      'chunk 0: bytes: expected an array of bytes',
    ),
  },
  {
    name: 'file: bytes as a base64 string',
    request: 'version/file',
    answer: ok({ totalIndex: 1, bytes: Buffer.from('PK').toString('base64') }),
    expect: failed(
      'version/file',
      'invalid-response',
      'chunk 0: bytes: expected an array of bytes',
    ),
  },
  {
    name: 'file: a byte that is true',
    request: 'version/file',
    answer: ok({ totalIndex: 1, bytes: [80, true, 3] }),
    expect: failed(
      'version/file',
      'invalid-response',
      'chunk 0: bytes\\[1\\] is true, expected a byte',
    ),
  },
  {
    // JSON.stringify of the bad "byte" overflowed the stack.
    name: 'file: a byte that is an array nested 100,000 levels deep',
    request: 'version/file',
    answer: { raw: withDeep({ code: 1, content: { totalIndex: 1, bytes: ['@DEEP@'] } }) },
    expect: failed(
      'version/file',
      'invalid-response',
      'chunk 0: bytes\\[0\\] is \\(nested too deeply to show\\), expected a byte',
    ),
  },
  {
    // The whole string went into the message.
    name: 'file: a byte that is a 1 MB string',
    request: 'version/file',
    answer: ok({ totalIndex: 1, bytes: ['x'.repeat(1_000_000)] }),
    expect: failed(
      'version/file',
      'invalid-response',
      'chunk 0: bytes\\[0\\] is "x{119}…, expected a byte',
    ),
  },
  {
    // Downloaded as a file of no bytes: a server could make the box ask chunk_count times for nothing.
    name: 'file: an empty chunk of a 3-chunk file',
    request: 'version/file',
    answer: ok({ totalIndex: 3, bytes: [] }),
    expect: failed('version/file', 'invalid-response', 'chunk 0: no bytes, but totalIndex is 3'),
  },
  {
    name: 'file: content an array',
    request: 'version/file',
    answer: ok([3, [1, 2, 3]]),
    expect: failed('version/file', 'invalid-response', 'chunk 0: \\(root\\): .*expected object'),
  },
  {
    name: 'file: an empty body',
    request: 'version/file',
    answer: { raw: '' },
    expect: failed('version/file', 'not-json', 'expected a JSON body, got ""'),
  },
  // ---- heartBeat
  {
    name: 'heartbeat: an HTML page (simulator)',
    request: 'heartBeat',
    fault: { kind: 'non-json' },
    expect: failed('heartBeat', 'not-json', 'expected a JSON body, got "<html>oops'),
  },
  {
    name: 'heartbeat: the envelope without code',
    request: 'heartBeat',
    answer: { json: { msg: 'success', content: null } },
    expect: failed('heartBeat', 'invalid-response', 'bad envelope: code: '),
  },
  {
    name: 'heartbeat: code a word',
    request: 'heartBeat',
    answer: { json: { code: 'abc', msg: 'success' } },
    expect: failed('heartBeat', 'invalid-response', 'bad envelope: code: '),
  },
  {
    name: 'heartbeat: msg an object',
    request: 'heartBeat',
    answer: { json: { code: 1, msg: { text: 'ok' } } },
    expect: failed('heartBeat', 'invalid-response', 'bad envelope: msg: '),
  },
  {
    name: 'heartbeat: a JSON string instead of an envelope',
    request: 'heartBeat',
    answer: { json: 'ok' },
    expect: failed('heartBeat', 'invalid-response', 'bad envelope: \\(root\\): .*expected object'),
  },
  {
    name: 'heartbeat: a business error without msg names its content',
    request: 'heartBeat',
    answer: { json: { code: 0, content: { reason: 'box disabled' } } },
    expect: failed('heartBeat', 'business', 'code 0: \\{"reason":"box disabled"\\}'),
  },
  {
    // The whole message went into the error (and from there into status and patch.meta).
    name: 'heartbeat: a business msg of 1 MB',
    request: 'heartBeat',
    answer: { json: { code: 0, msg: 'no '.repeat(350_000) } },
    expect: failed('heartBeat', 'business', 'code 0: (no ){40}…$'),
  },
  {
    name: 'heartbeat: HTTP 404',
    request: 'heartBeat',
    answer: { status: 404, raw: HTML },
    expect: failed('heartBeat', 'http', 'HTTP 404: <html>'),
  },
  // ---- version/upTaskStatus
  {
    name: 'task status: an HTML page (simulator)',
    request: 'upTaskStatus',
    fault: { kind: 'non-json' },
    expect: failed('version/upTaskStatus', 'not-json', 'expected a JSON body, got "<html>oops'),
  },
  {
    name: 'task status: a business error (simulator)',
    request: 'upTaskStatus',
    fault: { kind: 'business-error', msg: 'task T-7 is not yours' },
    expect: failed('version/upTaskStatus', 'business', 'code 0: task T-7 is not yours'),
  },
  {
    name: 'task status: code "2" as a string',
    request: 'upTaskStatus',
    answer: { json: { code: '2', msg: 'busy' } },
    expect: failed('version/upTaskStatus', 'business', 'code 2: busy'),
  },
  {
    name: 'task status: JSON null',
    request: 'upTaskStatus',
    answer: { raw: 'null' },
    expect: failed('version/upTaskStatus', 'invalid-response', 'bad envelope: \\(root\\): '),
  },
];

// ---- the scripted server and the simulator, shared by all cases -----------------------------

const logger = createLogger({ level: 'fatal', console: 'none' }).logger;
let scripted: { server: Server; url: string; answer: Answer | undefined };
let sim: CloudSim;
let simCode = '';

before(async () => {
  const state: typeof scripted = { server: createServer(), url: '', answer: undefined };
  state.server.on('request', (req, res) => {
    const path = new URL(req.url ?? '/', 'http://x').pathname;
    // Every request but the one under test gets a good answer (the token, to reach it).
    const a: Answer =
      path === TOKEN_PATH && currentRequest !== 'token'
        ? ok({ token: 'tok', expireTime: Math.floor(Date.now() / 1000) + 3600 })
        : (state.answer ?? { status: 500, raw: 'no answer scripted' });
    res
      .writeHead(a.status ?? 200, { 'content-type': 'application/json' })
      .end(a.raw ?? JSON.stringify(a.json));
  });
  await new Promise<void>((r) => state.server.listen(0, '127.0.0.1', r));
  state.url = `http://127.0.0.1:${(state.server.address() as AddressInfo).port}`;
  scripted = state;
  sim = await startCloudSimulator({
    chunkSize: 64,
    scenario: {
      upgradeMark: 1,
      versions: [
        { versionNum: 'V1.7' },
        { versionNum: 'V1.8', files: { 'icb-box.jar': randomBytes(300) } },
      ],
    },
  });
  simCode = sim.versions()[1]?.versionCode ?? '';
});
after(async () => {
  scripted.server.closeAllConnections();
  await new Promise((r) => scripted.server.close(r));
  await sim.close();
});
let currentRequest: Request | undefined;

function clientFor(c: CloudCase): CloudApi {
  const viaSim = c.fault !== undefined;
  return createCloudClient({
    hostAddr: viaSim ? sim.url : scripted.url,
    credentials: () =>
      viaSim
        ? {
            accessKeyId: sim.options.accessKeyId,
            accessKeySecret: sim.options.accessKeySecret,
            appKey: sim.options.appKey,
          }
        : { accessKeyId: 'id', accessKeySecret: 'secret', appKey: 'app' },
    timeoutMs: 10_000,
    retries: 0,
    refreshMarginMs: 60_000,
    logger,
  });
}

interface Prepared {
  dest: string;
  code: string;
}

runCorpus<CloudCase, Prepared>({
  kind: 'cloud answers',
  cases: CLOUD_CASES,
  async prepare(c, dir) {
    // The patch dir a download writes to, with an earlier version's zip beside it.
    await mkdir(join(dir, 'V1.8'), { recursive: true });
    await writeFile(join(dir, 'V1.8', 'older.zip'), 'PK\x05\x06');
    const code = c.fault === undefined ? '9e9763d2baf4477180991667d19fe35d' : simCode;
    return { dest: join(dir, 'V1.8', `${code}.zip`), code };
  },
  async run(c, _dir, p) {
    currentRequest = c.request;
    scripted.answer = c.answer;
    sim.clearFaults();
    if (c.fault !== undefined) sim.inject(SIM_ENDPOINT[c.request], c.fault);
    const client = clientFor(c);
    switch (c.request) {
      case 'token':
        await client.token();
        break;
      case 'version/check':
        await client.checkVersion('V1.7');
        break;
      case 'version/file':
        await client.downloadFile(p.code, p.dest);
        break;
      case 'heartBeat':
        await client.heartbeat([{ key: 'cpu', value: 3 }], 'code');
        break;
      case 'upTaskStatus':
        await client.setTaskStatus(['T-7'], TaskOp.pause);
        break;
    }
    return undefined;
  },
  errorTypes: [CloudError],
  subject: (c) => `cloud ${ENDPOINT[c.request]} failed`,
  // A failed (not refused) download keeps its progress for a resume: here none, as chunk 0 failed.
  after(before: Tree, c, dir, p) {
    if (c.request !== 'version/file') return before;
    const rel = (path: string) => path.slice(dir.length + 1);
    const state = { versionCode: p.code, nextIndex: 0, totalIndex: -1, size: 0 };
    const out = new Map(before);
    out.set(rel(`${p.dest}.part`), '');
    out.set(rel(`${p.dest}.part.json`), Buffer.from(JSON.stringify(state)).toString('hex'));
    return new Map([...out].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)));
  },
});
