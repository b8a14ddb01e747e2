// Corpus: settings.ini. Every field kind (bool, seconds, size, count, path, url, keys…), unknown
// keys and sections, duplicates, structure and encoding, read from a real file by loadSettings.
// The error names settings.ini, the line, [section] key, and what was expected.
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { ConfigError } from '../../adapters/errors.ts';
import type { Registry } from '../../adapters/registry.ts';
import { loadSettings } from '../../services/agent/settings.ts';
import { runCorpus, type CorpusCase } from './runner.ts';

/** A settings.ini that loads, with `@BOX@` for the box dir. */
const VALID = `[general]
host_addr = https://cloud.example:10007 ; the cloud
env = uat
logging = info
log_expiration = 30
debug_mode = off

[paths] ; relative to box_root
box_root = @BOX@
config = \\conf\\configuration.ini
patch = \\patch
patchmeta = \\patch.meta
backup = \\backup
fs = \\FreeSWITCH
fs_conf = \\conf\\sip_profiles\\external
java = \\java
java_pid = \\pid.txt
jar = \\icb-box.jar
app_yml = \\application.yml
path_bat = \\DOS\\start.bat
data = \\data

[timer]
heartbeat = 30
versionCheck = 3600
`;

/** VALID with `key` of `section` set to `value` (added at the end of the file if absent). */
function withValue(section: string, key: string, value: string): string {
  const line = new RegExp(`^${key} = .*$`, 'm');
  const lines = VALID.split('\n');
  const header = lines.findIndex((l) => l.startsWith(`[${section}]`));
  if (header < 0) return `${VALID}\n[${section}]\n${key} = ${value}\n`;
  const end = lines.findIndex((l, i) => i > header && l.startsWith('['));
  const body = lines.slice(header, end < 0 ? undefined : end).join('\n');
  const edited = line.test(body)
    ? body.replace(line, `${key} = ${value}`)
    : body.replace(/\n/, `\n${key} = ${value}\n`);
  return [...lines.slice(0, header), edited, ...(end < 0 ? [] : lines.slice(end))].join('\n');
}

const without = (line: string) => VALID.replace(`${line}\n`, '');

interface SettingsCase extends CorpusCase {
  /** The file's content (`@BOX@` is replaced by the box dir), or its bytes. */
  input: string | Buffer;
  platform?: NodeJS.Platform;
  /** A directory where settings.ini should be. */
  directory?: true;
}

// A real Ed25519 public key in the three shapes people paste: raw 32 bytes (right), the DER
// SubjectPublicKeyInfo `openssl pkey -pubout` prints the body of, and that PEM.
const RAW_KEY = 'Gb9ECWmEzf6FQbrBZ9w7lshQhqowtrbLDFw4rXAxZuE=';
const SPKI_KEY = 'MCowBQYDK2VwAyEAGb9ECWmEzf6FQbrBZ9w7lshQhqowtrbLDFw4rXAxZuE=';

const SECONDS = String.raw`a number of seconds > 0`;
const KEYS = String.raw`expected Ed25519 public keys, each the standard base64 of 32 bytes`;
const SIZE = String.raw`expected a size > 0 in bytes, or with K, M, G or T \(×1024\)`;

export const SETTINGS_CASES: readonly SettingsCase[] = [
  // ---- bool
  {
    name: 'bool: [supervise] enabled = enabled',
    input: withValue('supervise', 'enabled', 'enabled'),
    expect: /settings\.ini:\d+ \[supervise\] enabled: expected on or off, got "enabled"/,
  },
  {
    name: 'bool: [update] enabled = 2',
    input: withValue('update', 'enabled', '2'),
    expect: /\[update\] enabled: expected on or off, got "2"/,
  },
  {
    name: 'bool: send_access_secret left empty',
    input: withValue('general', 'send_access_secret', ''),
    expect: /\[general\] send_access_secret: expected on or off, got ""/,
  },
  // ---- seconds
  {
    name: 'seconds: heartbeat = 0',
    input: withValue('timer', 'heartbeat', '0'),
    expect: new RegExp(String.raw`:\d+ \[timer\] heartbeat: expected ${SECONDS}.*, got "0"`),
  },
  {
    name: 'seconds: heartbeat in exponent notation (1e3)',
    input: withValue('timer', 'heartbeat', '1e3'),
    expect: new RegExp(String.raw`\[timer\] heartbeat: expected ${SECONDS}.*, got "1e3"`),
  },
  {
    name: 'seconds: a decimal comma (1,5)',
    input: withValue('timer', 'heartbeat', '1,5'),
    expect: new RegExp(String.raw`\[timer\] heartbeat: expected ${SECONDS}.*, got "1,5"`),
  },
  {
    name: 'seconds: a unit suffix ([cloud] timeout = 30s)',
    input: withValue('cloud', 'timeout', '30s'),
    expect: new RegExp(String.raw`\[cloud\] timeout: expected ${SECONDS}.*, got "30s"`),
  },
  {
    name: 'seconds: NaN',
    input: withValue('timer', 'versionCheck', 'NaN'),
    expect: new RegExp(String.raw`\[timer\] versionCheck: expected ${SECONDS}.*, got "NaN"`),
  },
  {
    name: 'seconds: Infinity',
    input: withValue('update', 'health_timeout', 'Infinity'),
    expect: new RegExp(
      String.raw`\[update\] health_timeout: expected ${SECONDS}.*, got "Infinity"`,
    ),
  },
  {
    // Node's timers fire at once for delays over 2^31-1 ms: a heartbeat every millisecond.
    name: 'seconds: more than a timer can wait (heartbeat = 99999999999)',
    input: withValue('timer', 'heartbeat', '99999999999'),
    expect:
      /\[timer\] heartbeat: expected a number of seconds > 0 and at most 2147483 \(24 days\), got "99999999999"/,
  },
  {
    name: 'seconds or zero: [supervise] crash_loop_retry = -1',
    input: withValue('supervise', 'crash_loop_retry', '-1'),
    expect: /\[supervise\] crash_loop_retry: expected a number of seconds ≥ 0.*, got "-1"/,
  },
  {
    name: 'days: log_expiration = 0',
    input: withValue('general', 'log_expiration', '0'),
    expect: /\[general\] log_expiration: expected a number of days > 0, got "0"/,
  },
  // ---- size
  {
    name: 'size: a fraction ([limits] patch_size = 1.5G)',
    input: withValue('limits', 'patch_size', '1.5G'),
    expect: new RegExp(String.raw`\[limits\] patch_size: ${SIZE}, e\.g\. 512M, got "1\.5G"`),
  },
  {
    name: 'size: an unknown unit ([limits] answer_size = 4P)',
    input: withValue('limits', 'answer_size', '4P'),
    expect: new RegExp(String.raw`\[limits\] answer_size: ${SIZE}, e\.g\. 512M, got "4P"`),
  },
  {
    name: 'size: beyond an exact integer ([limits] unpacked_size = 99999999999T)',
    input: withValue('limits', 'unpacked_size', '99999999999T'),
    expect: new RegExp(
      String.raw`\[limits\] unpacked_size: ${SIZE}, e\.g\. 512M, got "99999999999T"`,
    ),
  },
  // ---- count
  {
    name: 'count: [supervise] crash_loop_starts = 0',
    input: withValue('supervise', 'crash_loop_starts', '0'),
    expect: /\[supervise\] crash_loop_starts: expected a whole number ≥ 1, got "0"/,
  },
  {
    name: 'count or zero: [cloud] retries = -1',
    input: withValue('cloud', 'retries', '-1'),
    expect: /\[cloud\] retries: expected a whole number ≥ 0, got "-1"/,
  },
  {
    name: 'count: a word ([snapshot] retain = three)',
    input: withValue('snapshot', 'retain', 'three'),
    expect: /\[snapshot\] retain: expected a whole number ≥ 1, got "three"/,
  },
  {
    name: 'count: hexadecimal ([limits] patch_files = 0x10)',
    input: withValue('limits', 'patch_files', '0x10'),
    expect: /\[limits\] patch_files: expected a whole number ≥ 1, got "0x10"/,
  },
  // ---- path
  {
    name: 'path: [paths] app_yml left empty',
    input: withValue('paths', 'app_yml', ''),
    expect: /\[paths\] app_yml: expected a path, got ""/,
  },
  {
    name: 'path: a relative box_root',
    input: withValue('paths', 'box_root', 'srv/box'),
    expect: /\[paths\] box_root: expected an absolute path for linux, got "srv\/box"/,
  },
  {
    name: 'path: a POSIX box_root on Windows',
    input: withValue('paths', 'box_root', '/srv/box'),
    platform: 'win32',
    expect: /\[paths\] box_root: expected an absolute path for win32, got "\/srv\/box"/,
  },
  {
    name: 'path: [security] ca_file with a drive letter on Linux',
    input: withValue('security', 'ca_file', 'C:\\certs\\ca.pem'),
    expect:
      /\[security\] ca_file: "C:\\certs\\ca\.pem" is a Windows drive path but this box runs linux/,
  },
  // ---- url, enumerations
  {
    name: 'url: host_addr with ftp://',
    input: withValue('general', 'host_addr', 'ftp://cloud.example'),
    expect:
      /\[general\] host_addr: expected an http:\/\/ or https:\/\/ URL, got "ftp:\/\/cloud\.example"/,
  },
  {
    name: 'url: host_addr without a scheme',
    input: withValue('general', 'host_addr', 'cloud.example:10007'),
    expect:
      /\[general\] host_addr: expected an http:\/\/ or https:\/\/ URL, got "cloud\.example:10007"/,
  },
  {
    name: 'enum: logging = verbose',
    input: withValue('general', 'logging', 'verbose'),
    expect:
      /\[general\] logging: expected one of debug, info, warning, warn, error, critical, crit, got "verbose"/,
  },
  {
    name: 'enum: env in capitals (UAT)',
    input: withValue('general', 'env', 'UAT'),
    expect: /\[general\] env: expected one of local, dev, sit, uat, ymt, prod, got "UAT"/,
  },
  // ---- [security] patch_keys
  {
    name: 'keys: not base64',
    input: withValue('security', 'patch_keys', 'my-release-key!'),
    expect: new RegExp(String.raw`\[security\] patch_keys: ${KEYS}.*got "my-release-key!"`),
  },
  {
    name: 'keys: base64 of 31 bytes',
    input: withValue('security', 'patch_keys', Buffer.alloc(31, 7).toString('base64')),
    expect: new RegExp(String.raw`\[security\] patch_keys: ${KEYS}`),
  },
  {
    name: 'keys: the DER SubjectPublicKeyInfo instead of the raw key',
    input: withValue('security', 'patch_keys', SPKI_KEY),
    expect: new RegExp(String.raw`\[security\] patch_keys: ${KEYS}.*got "MCow`),
  },
  {
    name: 'keys: a PEM public key pasted',
    input: withValue('security', 'patch_keys', `-----BEGIN PUBLIC KEY----- ${SPKI_KEY}`),
    expect: new RegExp(String.raw`\[security\] patch_keys: ${KEYS}.*got "-----BEGIN PUBLIC KEY`),
  },
  {
    name: 'keys: two keys separated by a blank, not a comma',
    input: withValue('security', 'patch_keys', `${RAW_KEY} ${RAW_KEY}`),
    expect: new RegExp(
      String.raw`\[security\] patch_keys: ${KEYS}.*separated by commas, got "\S+ \S+"`,
    ),
  },
  {
    name: 'keys: base64url (- and _) instead of standard base64',
    input: withValue(
      'security',
      'patch_keys',
      Buffer.from(RAW_KEY, 'base64').toString('base64url'),
    ),
    expect: new RegExp(String.raw`\[security\] patch_keys: ${KEYS}`),
  },
  {
    name: 'keys: one good key and one cut short',
    input: withValue('security', 'patch_keys', `${RAW_KEY}, ${RAW_KEY.slice(0, 20)}`),
    expect: new RegExp(String.raw`\[security\] patch_keys: ${KEYS}`),
  },
  // ---- unknown keys and sections
  {
    name: 'unknown key, close to a known one ([supervise] intervall)',
    input: withValue('supervise', 'intervall', '5'),
    expect: /settings\.ini:\d+ \[supervise\] intervall: unknown key; did you mean "interval"\?/,
  },
  {
    name: 'unknown section, close to a known one ([limit])',
    input: `${VALID}\n[limit]\npatch_size = 1G\n`,
    expect: /settings\.ini:\d+ \[limit\]: unknown section; did you mean \[limits\]\?/,
  },
  {
    name: 'unknown section, unlike any: a warning naming file and line',
    input: `${VALID}\n[proxy_settings]\nhost = 10.0.0.1\n`,
    expect: /settings\.ini:27 \[proxy_settings\]: unknown section, ignored/,
  },
  {
    name: 'unknown key, unlike any: a warning naming file, line and section',
    input: withValue('cloud', 'proxy', 'http://10.0.0.1:3128'),
    expect: /settings\.ini:\d+ \[cloud\] proxy: unknown key, ignored/,
  },
  // ---- duplicates, structure
  {
    name: 'duplicate key in a section',
    input: VALID.replace('heartbeat = 30\n', 'heartbeat = 30\nheartbeat = 60\n'),
    expect: /settings\.ini:25: key "heartbeat" appears more than once in \[timer\]/,
  },
  {
    name: 'duplicate key differing only in case',
    input: VALID.replace('heartbeat = 30\n', 'heartbeat = 30\nHeartBeat = 60\n'),
    expect: /settings\.ini:25: key "HeartBeat" appears more than once in \[timer\]/,
  },
  {
    name: 'duplicate section',
    input: `${VALID}\n[timer]\nheartbeat = 60\n`,
    expect: /settings\.ini:27: section \[timer\] appears more than once/,
  },
  {
    name: 'a key before any section',
    input: `debug_mode = on\n${VALID}`,
    expect: /settings\.ini:1: "debug_mode = on" comes before any \[section\] header/,
  },
  {
    name: 'a malformed section header',
    input: VALID.replace('[timer]', '[timer'),
    expect: /settings\.ini:23: malformed section header "\[timer"/,
  },
  {
    name: 'a line without = or :',
    input: VALID.replace('debug_mode = off', 'debug_mode off'),
    expect: /settings\.ini:6: expected "key = value", got "debug_mode off"/,
  },
  {
    name: 'a required key missing (versionCheck)',
    input: without('versionCheck = 3600'),
    expect: /settings\.ini:23 \[timer\] versionCheck: missing: expected a number of seconds > 0/,
  },
  // ---- file, encoding
  {
    name: 'an empty file',
    input: '',
    expect:
      /settings\.ini \[general\] host_addr: missing: the section \[general\] is absent, expected an http:\/\/ or https:\/\/ URL/,
  },
  {
    name: 'a binary file saved over settings.ini',
    input: Buffer.from([
      0x50, 0x4b, 0x03, 0x04, 0x14, 0x00, 0x00, 0x00, 0x08, 0x00, 0xff, 0xfe, 0x0a, 0x00, 0x01,
    ]),
    expect: /settings\.ini:1: contains NUL characters: not a text file/,
  },
  {
    // Each line was reported as garbage, 46 problems that never said why.
    name: 'saved as UTF-16 with a byte order mark (Notepad\'s "Unicode")',
    input: Buffer.concat([Buffer.from([0xff, 0xfe]), Buffer.from(VALID, 'utf16le')]),
    expect:
      /settings\.ini:1: contains NUL characters: not a text file, or saved as UTF-16 \(Notepad's "Unicode"\); save it as UTF-8/,
  },
  {
    name: 'saved as UTF-16 big-endian without a byte order mark',
    input: Buffer.from(VALID, 'utf16le').swap16(),
    expect: /settings\.ini:1: contains NUL characters: not a text file, or saved as UTF-16/,
  },
  {
    name: 'old Mac line ends (CR only): one malformed line',
    input: VALID.replace(/\n/g, '\r'),
    expect: /settings\.ini:1: malformed section header "\[general\]\\u000dhost_addr = https:/,
  },
  {
    name: 'a NUL byte in a value',
    input: withValue('general', 'env', 'uat\u0000'),
    expect: /settings\.ini:3: contains NUL characters: not a text file, or saved as UTF-16/,
  },
  {
    name: 'settings.ini is a directory',
    input: '',
    directory: true,
    expect: /settings\.ini: cannot read: EISDIR/,
  },
];

/** The registry of a Windows box without the Qthz install key. */
const emptyRegistry: Registry = { readString: () => Promise.resolve(undefined) };

runCorpus<SettingsCase, string>({
  kind: 'settings.ini',
  cases: SETTINGS_CASES,
  async prepare(c, dir) {
    const box = join(dir, 'box');
    await mkdir(join(box, 'conf'), { recursive: true });
    await writeFile(join(box, 'conf', 'configuration.ini'), '[QTHZ]\nversion = V1.7\n');
    const file = join(box, 'settings', 'settings.ini');
    await mkdir(join(box, 'settings'), { recursive: true });
    if (c.directory === true) await mkdir(file);
    else
      await writeFile(
        file,
        typeof c.input === 'string' ? c.input.replaceAll('@BOX@', box) : c.input,
      );
    return file;
  },
  async run(c, _dir, file) {
    const { warnings } = await loadSettings(file, {
      readFile: (p) => readFile(p),
      registry: emptyRegistry,
      platform: c.platform ?? 'linux',
    });
    return warnings.length > 0 ? warnings.join('\n') : undefined;
  },
  errorTypes: [ConfigError],
  subject: (_c, _dir, file) => file,
});
