// The box's own configuration: conf/configuration.ini (shared with the box app) and the
// Spring Boot application.yml (only server.port is read here).
import { parse as parseYaml } from 'yaml';
import type { BoxAppApi } from '../../adapters/box-app.ts';
import { ConfigError, formatProblem, type ConfigProblem } from '../../adapters/errors.ts';
import { decodeConfigText, findEntry, findSection, parseIni } from '../../adapters/ini.ts';

export interface BoxConfig {
  file: string;
  version: string;
  code: string;
  phoneEncryption: string;
  appKey: string;
  accessId: string;
  accessSecret: string;
  freeswitch: {
    callboxUsername: string;
    callboxPassword: string;
    callboxRealm: string;
    numconvertUsername: string;
    numconvertPassword: string;
    numconvertRealm: string;
  };
  cityNum: string;
  cityOut: string;
  hostAdr: string;
  dbFileName: string;
}

type ReadFile = (path: string) => Promise<Uint8Array>;

async function readOrProblem(file: string, readFile: ReadFile): Promise<Uint8Array> {
  try {
    return await readFile(file);
  } catch (err) {
    const missing = (err as { code?: string }).code === 'ENOENT';
    throw new ConfigError([
      { file, message: missing ? 'file not found' : `cannot read: ${(err as Error).message}` },
    ]);
  }
}

/** Keys the agent cannot work without; the others default to "" when absent. */
const REQUIRED: Array<[string, string]> = [
  ['QTHZ', 'version'],
  ['QTHZ', 'code'],
  ['appkey', 'key'],
  ['accessid', 'id'],
  ['accesssecret', 'secret'],
];

export async function loadBoxConfig(file: string, readFile: ReadFile): Promise<BoxConfig> {
  const doc = parseIni(decodeConfigText(await readOrProblem(file, readFile)));
  const problems: ConfigProblem[] = doc.problems.map((p) => ({
    file,
    line: p.line,
    message: p.message,
  }));
  const get = (section: string, key: string) =>
    findEntry(findSection(doc, section), key)?.value ?? '';
  for (const [section, key] of REQUIRED) {
    if (get(section, key).trim() === '') {
      problems.push({
        file,
        section,
        key,
        message: 'missing or empty; the cloud protocol needs it',
      });
    }
  }
  if (problems.length > 0) throw new ConfigError(problems);
  return {
    file,
    version: get('QTHZ', 'version'),
    code: get('QTHZ', 'code'),
    phoneEncryption: get('QTHZ', 'phoneEncryption'),
    appKey: get('appkey', 'key'),
    accessId: get('accessid', 'id'),
    accessSecret: get('accesssecret', 'secret'),
    freeswitch: {
      callboxUsername: get('FreeSWITCH', 'callboxUsername'),
      callboxPassword: get('FreeSWITCH', 'callboxPassword'),
      callboxRealm: get('FreeSWITCH', 'callboxRealm'),
      numconvertUsername: get('FreeSWITCH', 'numconvertUsername'),
      numconvertPassword: get('FreeSWITCH', 'numconvertPassword'),
      numconvertRealm: get('FreeSWITCH', 'numconvertRealm'),
    },
    cityNum: get('city', 'num'),
    cityOut: get('city', 'out'),
    hostAdr: get('host', 'adr'),
    dbFileName: get('dbfile', 'name'),
  };
}

/** `server.port` of application.yml: the port of the box app's local HTTP API. */
export async function readAppPort(file: string, readFile: ReadFile): Promise<number> {
  const text = decodeConfigText(await readOrProblem(file, readFile));
  let doc: unknown;
  try {
    doc = parseYaml(text);
  } catch (err) {
    throw new ConfigError([{ file, message: `not valid YAML: ${(err as Error).message}` }]);
  }
  const server = (doc as { server?: { port?: unknown } } | null)?.server;
  const raw = server?.port;
  // A number, or digits in a string (Spring reads both); Number() would take [8080] or true too.
  const port =
    typeof raw === 'number'
      ? raw
      : typeof raw === 'string' && /^\s*\d+\s*$/.test(raw)
        ? Number(raw)
        : NaN;
  if (!Number.isInteger(port) || port < 1 || port > 65535) {
    throw new ConfigError([
      {
        file,
        key: 'server.port',
        message: `expected a TCP port number, got ${JSON.stringify(server?.port)}`,
      },
    ]);
  }
  return port;
}

/**
 * What is wrong with application.yml for starting the box app (the file named, what was
 * expected), or null. A broken file keeps Java from starting, not the agent from running.
 */
export async function appConfigProblem(file: string, readFile: ReadFile): Promise<string | null> {
  try {
    await readAppPort(file, readFile);
    return null;
  } catch (err) {
    if (err instanceof ConfigError) return err.problems.map(formatProblem).join('; ');
    throw err;
  }
}

/**
 * The box app at the port application.yml names at the time of each call: a file that was
 * broken at start and fixed later, or a port an update changed, is followed. Unreadable, the
 * app counts as not ready and its task lists fail with the file's problem.
 */
export function boxAppAtConfiguredPort(
  file: string,
  readFile: ReadFile,
  clientFor: (port: number) => BoxAppApi,
): BoxAppApi {
  let current: { port: number; client: BoxAppApi } | undefined;
  const client = async () => {
    const port = await readAppPort(file, readFile);
    if (current?.port !== port) current = { port, client: clientFor(port) };
    return current.client;
  };
  return {
    listUnfinishedTasks: async () => (await client()).listUnfinishedTasks(),
    listPausedTasks: async () => (await client()).listPausedTasks(),
    async isReady() {
      const c = await client().catch(() => undefined);
      return c === undefined ? false : c.isReady();
    },
  };
}
