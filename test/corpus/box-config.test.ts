// Corpus: the box's own configuration, read from real files: conf/configuration.ini through
// loadBoxConfig (what the cloud protocol needs) and application.yml through readAppPort (the
// box app's port; a broken file keeps Java from starting, services/agent/box-config.ts). The error
// names the file, the section/key or line, and what was expected; neither file is touched.
import { mkdir, readFile, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { ConfigError } from '../../adapters/errors.ts';
import { loadBoxConfig, readAppPort } from '../../services/agent/box-config.ts';
import { runCorpus, type CorpusCase } from './runner.ts';

const CONFIG_INI = `[QTHZ]
version = V1.7
code = 9e9763d2baf4477180991667d19fe35d
phoneEncryption = 0

[appkey]
key = app-key-1

[accessid]
id = access-id-1

[accesssecret]
secret = s3cr%t#1

[FreeSWITCH]
callboxUsername = 1001
callboxPassword = cb-pass

[dbfile]
name = ztdb
`;

const APP_YML = `# icb-box (Spring Boot)
server:
  port: 8080
spring:
  datasource:
    druid:
      url: "jdbc:sqlite:/box/data/ztdb"
appkey: "\${APP_KEY:app-key-1}"
`;

interface FileCase extends CorpusCase {
  /** The file's content or bytes; absent: the file does not exist. */
  input?: string | Buffer;
  /** A directory where the file should be. */
  directory?: true;
}

const MISSING = 'missing or empty; the cloud protocol needs it';

export const CONFIG_INI_CASES: readonly FileCase[] = [
  {
    name: 'an empty file',
    input: '',
    expect: new RegExp(String.raw`configuration\.ini \[QTHZ\] version: ${MISSING}`),
  },
  {
    name: '[QTHZ] version empty',
    input: CONFIG_INI.replace('version = V1.7', 'version ='),
    expect: new RegExp(String.raw`configuration\.ini \[QTHZ\] version: ${MISSING}`),
  },
  {
    name: '[QTHZ] code absent',
    input: CONFIG_INI.replace('code = 9e9763d2baf4477180991667d19fe35d\n', ''),
    expect: new RegExp(String.raw`configuration\.ini \[QTHZ\] code: ${MISSING}`),
  },
  {
    name: 'the [accesssecret] section absent',
    input: CONFIG_INI.replace('[accesssecret]\nsecret = s3cr%t#1\n', ''),
    expect: new RegExp(String.raw`configuration\.ini \[accesssecret\] secret: ${MISSING}`),
  },
  {
    name: 'a secret of blanks only',
    input: CONFIG_INI.replace('secret = s3cr%t#1', 'secret =    '),
    expect: new RegExp(String.raw`configuration\.ini \[accesssecret\] secret: ${MISSING}`),
  },
  {
    name: 'a key twice in [QTHZ]',
    input: CONFIG_INI.replace('version = V1.7\n', 'version = V1.7\nversion = V1.8\n'),
    expect: /configuration\.ini:3: key "version" appears more than once in \[QTHZ\]/,
  },
  {
    name: 'the [appkey] section twice',
    input: `${CONFIG_INI}\n[appkey]\nkey = other\n`,
    expect: /configuration\.ini:\d+: section \[appkey\] appears more than once/,
  },
  {
    name: 'a key before any section',
    input: `version = V1.7\n${CONFIG_INI}`,
    expect: /configuration\.ini:1: "version = V1\.7" comes before any \[section\] header/,
  },
  {
    name: 'a malformed section header',
    input: CONFIG_INI.replace('[accessid]', '[accessid'),
    expect: /configuration\.ini:9: malformed section header "\[accessid"/,
  },
  {
    name: 'a line without = or :',
    input: CONFIG_INI.replace('id = access-id-1', 'id access-id-1'),
    expect: /configuration\.ini:10: expected "key = value", got "id access-id-1"/,
  },
  {
    name: 'saved as UTF-16',
    input: Buffer.concat([Buffer.from([0xff, 0xfe]), Buffer.from(CONFIG_INI, 'utf16le')]),
    expect: /configuration\.ini:1: contains NUL characters: not a text file, or saved as UTF-16/,
  },
  {
    name: 'the file is missing',
    expect: /configuration\.ini: file not found/,
  },
  {
    name: 'configuration.ini is a directory',
    directory: true,
    expect: /configuration\.ini: cannot read: EISDIR/,
  },
];

export const APP_YML_CASES: readonly FileCase[] = [
  {
    name: 'a tab for indentation',
    input: APP_YML.replace('  port: 8080', '\tport: 8080'),
    expect: /application\.yml: not valid YAML: .*[Tt]ab/,
  },
  {
    name: 'an unclosed quote',
    input: APP_YML.replace('"jdbc:sqlite:/box/data/ztdb"', '"jdbc:sqlite:/box/data/ztdb'),
    expect: /application\.yml: not valid YAML: /,
  },
  {
    name: 'the key server twice',
    input: `${APP_YML}server:\n  port: 9090\n`,
    expect: /application\.yml: not valid YAML: Map keys must be unique/,
  },
  {
    name: 'two YAML documents',
    input: `${APP_YML}---\nserver:\n  port: 9090\n`,
    expect: /application\.yml: not valid YAML: .*multiple documents/,
  },
  {
    name: 'an alias bomb (billion laughs)',
    input:
      'a: &a ["x","x","x","x","x","x","x","x","x","x"]\n' +
      Array.from(
        { length: 8 },
        (_, i) =>
          `${String.fromCharCode(98 + i)}: &${String.fromCharCode(98 + i)} [${Array(10)
            .fill(`*${String.fromCharCode(97 + i)}`)
            .join(',')}]`,
      ).join('\n') +
      '\nserver:\n  port: *i\n',
    expect: /application\.yml: not valid YAML: Excessive alias count/,
  },
  {
    name: 'server.port is a word',
    input: APP_YML.replace('port: 8080', 'port: http'),
    expect: /application\.yml server\.port: expected a TCP port number, got "http"/,
  },
  {
    name: 'server.port is 0',
    input: APP_YML.replace('port: 8080', 'port: 0'),
    expect: /application\.yml server\.port: expected a TCP port number, got 0/,
  },
  {
    name: 'server.port above 65535',
    input: APP_YML.replace('port: 8080', 'port: 70000'),
    expect: /application\.yml server\.port: expected a TCP port number, got 70000/,
  },
  {
    name: 'server.port negative',
    input: APP_YML.replace('port: 8080', 'port: -8080'),
    expect: /application\.yml server\.port: expected a TCP port number, got -8080/,
  },
  {
    name: 'server.port a fraction',
    input: APP_YML.replace('port: 8080', 'port: 8080.5'),
    expect: /application\.yml server\.port: expected a TCP port number, got 8080\.5/,
  },
  {
    name: 'server.port a list',
    input: APP_YML.replace('port: 8080', 'port: [8080]'),
    expect: /application\.yml server\.port: expected a TCP port number, got \[8080\]/,
  },
  {
    name: 'server.port empty',
    input: APP_YML.replace('port: 8080', 'port:'),
    expect: /application\.yml server\.port: expected a TCP port number, got null/,
  },
  {
    name: 'server.port true',
    input: APP_YML.replace('port: 8080', 'port: true'),
    expect: /application\.yml server\.port: expected a TCP port number, got true/,
  },
  {
    name: 'no server key',
    input: APP_YML.replace('server:\n  port: 8080\n', ''),
    expect: /application\.yml server\.port: expected a TCP port number, got undefined/,
  },
  {
    name: 'server is a scalar',
    input: APP_YML.replace('server:\n  port: 8080\n', 'server: 8080\n'),
    expect: /application\.yml server\.port: expected a TCP port number, got undefined/,
  },
  {
    name: 'a list at the top level',
    input: '- server\n- port: 8080\n',
    expect: /application\.yml server\.port: expected a TCP port number, got undefined/,
  },
  {
    name: 'an empty file',
    input: '',
    expect: /application\.yml server\.port: expected a TCP port number, got undefined/,
  },
  {
    name: 'the file is missing',
    expect: /application\.yml: file not found/,
  },
];

/** Both files in a box dir; the case's input replaces `name`, the other one stays as it is. */
async function layOut(
  dir: string,
  name: 'conf/configuration.ini' | 'application.yml',
  c: FileCase,
) {
  await mkdir(join(dir, 'conf'), { recursive: true });
  await writeFile(join(dir, 'conf', 'configuration.ini'), CONFIG_INI);
  await writeFile(join(dir, 'application.yml'), APP_YML);
  const file = join(dir, ...name.split('/'));
  if (c.input !== undefined) await writeFile(file, c.input);
  else {
    await rm(file);
    if (c.directory === true) await mkdir(file);
  }
  return file;
}

const read = (p: string) => readFile(p);

runCorpus<FileCase, string>({
  kind: 'configuration.ini',
  cases: CONFIG_INI_CASES,
  prepare: (c, dir) => layOut(dir, 'conf/configuration.ini', c),
  async run(_c, _dir, file) {
    await loadBoxConfig(file, read);
    return undefined;
  },
  errorTypes: [ConfigError],
  subject: (_c, _dir, file) => file,
});

runCorpus<FileCase, string>({
  kind: 'application.yml',
  cases: APP_YML_CASES,
  prepare: (c, dir) => layOut(dir, 'application.yml', c),
  async run(_c, _dir, file) {
    await readAppPort(file, read);
    return undefined;
  },
  errorTypes: [ConfigError],
  subject: (_c, _dir, file) => file,
});
