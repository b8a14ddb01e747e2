// The box's own configuration: conf/configuration.ini (shared with the box app) and the
// Spring Boot application.yml (only server.port is read here).
import { parse as parseYaml } from 'yaml';
import { ConfigError, type ConfigProblem } from '../adapters/errors.ts';
import { decodeConfigText, findEntry, findSection, parseIni } from '../adapters/ini.ts';

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
  const port = Number(server?.port);
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
