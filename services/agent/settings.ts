// settings.ini: the agent's own settings, read unchanged from the Python tool's file.
// Every problem is collected (file, section, key, line, what was expected) and reported at once.
import { ConfigError, type ConfigProblem } from '../../adapters/errors.ts';
import {
  decodeConfigText,
  editDistance,
  findEntry,
  findSection,
  parseIni,
  quoted,
  type IniDocument,
} from '../../adapters/ini.ts';
import type { Registry } from '../../adapters/registry.ts';
import { isAbsoluteFor, normalizeAbsolute, resolveBoxPath } from './box-paths.ts';
import { parsePublicKeys } from '../update/patch-trust.ts';

export const ENVIRONMENTS = ['local', 'dev', 'sit', 'uat', 'ymt', 'prod'] as const;
export type LogLevel = 'debug' | 'info' | 'warn' | 'error' | 'fatal';

export interface Settings {
  file: string;
  platform: NodeJS.Platform;
  general: {
    hostAddr: string;
    env: (typeof ENVIRONMENTS)[number];
    logLevel: LogLevel;
    logExpirationDays: number;
    /** The day files together stay under this size; the oldest days go first. */
    logMaxMb: number;
    debugMode: boolean;
    sendAccessSecret: boolean;
  };
  paths: {
    boxRoot: string;
    config: string;
    patch: string;
    patchMeta: string;
    backup: string;
    managerDir: string;
    fs: string;
    fsConf: string;
    java: string;
    javaPid: string;
    jar: string;
    appYml: string;
    pathBat: string;
    data: string;
    manager: string;
    updater: string;
    starter: string;
    agentData: string;
    logs: string;
  };
  timer: { heartbeatMs: number; versionCheckMs: number };
  supervise: {
    enabled: boolean;
    intervalMs: number;
    readyTimeoutMs: number;
    stopTimeoutMs: number;
    backoffInitialMs: number;
    backoffMaxMs: number;
    crashLoopStarts: number;
    crashLoopWindowMs: number;
    crashLoopRetryMs: number;
  };
  cloud: { timeoutMs: number; retries: number; tokenRefreshMarginMs: number };
  snapshot: { repo: string; config: string; retain: number };
  update: {
    enabled: boolean;
    checkJitterMs: number;
    healthTimeoutMs: number;
    healthSettleMs: number;
    callsRetryMs: number;
    retryDelayMs: number;
    maxFailedInstalls: number;
  };
  /** Caps on what the cloud may send (docs/settings.md [limits]); sizes in bytes. */
  limits: {
    patchBytes: number;
    unpackedBytes: number;
    patchFiles: number;
    chunkBytes: number;
    chunkCount: number;
    answerBytes: number;
    upgradeList: number;
    textLength: number;
    diskReserveBytes: number;
  };
  security: {
    /** Ed25519 public keys (base64 of the raw 32 bytes); empty: patches are not signed. */
    patchKeys: string[];
    /** A CA certificate (PEM) the cloud's https certificate must chain to; null: the system's. */
    caFile: string | null;
  };
  /** The local web console (docs/operations.md): off unless asked for. */
  console: { enabled: boolean; port: number };
}

// ---- field kinds: each a parser of the raw string, plus how to say what was expected ----
// Plain functions rather than zod schemas: settings are read by every command, and loading zod
// was most of `boxkeeper status`'s start-up (docs/benchmarks.md).

/** What a kind's parser returns for a value it refuses. */
const INVALID = Symbol('invalid');
type Parse = (raw: string) => unknown;

const LEVELS: Record<string, LogLevel> = {
  debug: 'debug',
  info: 'info',
  warning: 'warn',
  warn: 'warn',
  error: 'error',
  critical: 'fatal',
  crit: 'fatal',
};
const BOOLEANS: Record<string, boolean> = {
  on: true,
  off: false,
  yes: true,
  no: false,
  true: true,
  false: false,
  '1': true,
  '0': false,
};

const NUMBER = /^[+]?(\d+(\.\d*)?|\.\d+)$/;
const num =
  (pred: (n: number) => boolean, then: (n: number) => unknown = (n) => n): Parse =>
  (raw) => {
    const t = raw.trim();
    if (!NUMBER.test(t)) return INVALID;
    const n = Number(t);
    return pred(n) ? then(n) : INVALID;
  };

// Node's timers fire at once for a delay over 2^31-1 ms (a heartbeat every millisecond): every
// time is held below that.
const MAX_SECONDS = Math.floor((2 ** 31 - 1) / 1000);

// 1024-based, as Windows Explorer counts; a bare number is bytes.
const SIZE = /^(\d+)\s*(?:([kmgt])(?:i?b)?|b)?$/i;
const SIZE_UNITS: Record<string, number> = { k: 1024, m: 1024 ** 2, g: 1024 ** 3, t: 1024 ** 4 };
const size =
  (pred: (n: number) => boolean): Parse =>
  (raw) => {
    const [, digits, unit = ''] = SIZE.exec(raw.trim()) ?? [];
    if (digits === undefined) return INVALID;
    const n = Number(digits) * (SIZE_UNITS[unit.toLowerCase()] ?? 1);
    return pred(n) && Number.isSafeInteger(n) ? n : INVALID;
  };

/** One of `table`'s own keys (trimmed, any case), mapped to its value. */
const oneOf =
  <T>(table: Record<string, T>): Parse =>
  (raw) => {
    const k = raw.trim().toLowerCase();
    return Object.hasOwn(table, k) ? table[k] : INVALID;
  };

/** An absolute http(s) URL with its `//` (not `http:host`); tabs and newlines dropped. */
const httpUrl: Parse = (raw) => {
  const t = raw.trim();
  if (!/^https?:\/\//i.test(t)) return INVALID;
  const url = URL.canParse(t) ? new URL(t) : undefined;
  if (url === undefined || !/^https?:$/.test(url.protocol)) return INVALID;
  return t.replace(/[\t\n\r]/g, '');
};

const kinds = {
  url: { parse: httpUrl, expected: 'an http:// or https:// URL' },
  env: {
    parse: (raw: string) => ((ENVIRONMENTS as readonly string[]).includes(raw) ? raw : INVALID),
    expected: `one of ${ENVIRONMENTS.join(', ')}`,
  },
  level: { parse: oneOf(LEVELS), expected: `one of ${Object.keys(LEVELS).join(', ')}` },
  bool: { parse: oneOf(BOOLEANS), expected: 'on or off' },
  seconds: {
    parse: num(
      (n) => n > 0 && n <= MAX_SECONDS,
      (s) => Math.round(s * 1000),
    ),
    expected: `a number of seconds > 0 and at most ${MAX_SECONDS} (24 days)`,
  },
  secondsOrZero: {
    parse: num(
      (n) => n >= 0 && n <= MAX_SECONDS,
      (s) => Math.round(s * 1000),
    ),
    expected: `a number of seconds ≥ 0 and at most ${MAX_SECONDS} (24 days)`,
  },
  days: { parse: num((n) => n > 0), expected: 'a number of days > 0' },
  port: {
    parse: num((n) => Number.isInteger(n) && n >= 0 && n <= 65535),
    expected: 'a TCP port 1-65535 (0: any free port)',
  },
  count: { parse: num((n) => Number.isInteger(n) && n >= 1), expected: 'a whole number ≥ 1' },
  countOrZero: {
    parse: num((n) => Number.isInteger(n) && n >= 0),
    expected: 'a whole number ≥ 0',
  },
  path: { parse: (raw: string) => raw.trim() || INVALID, expected: 'a path' },
  size: {
    parse: size((n) => n > 0),
    expected: 'a size > 0 in bytes, or with K, M, G or T (×1024), e.g. 512M',
  },
  sizeOrZero: {
    parse: size((n) => n >= 0),
    expected: 'a size ≥ 0 in bytes, or with K, M, G or T (×1024), e.g. 100M',
  },
  optionalPath: { parse: (raw: string) => raw.trim(), expected: 'a path, or nothing' },
  keys: {
    parse: (raw: string) => {
      const r = parsePublicKeys(raw);
      return r.problems.length === 0 ? r.keys : INVALID;
    },
    expected:
      'Ed25519 public keys, each the standard base64 of 32 bytes (as `boxkeeper patch keygen` prints), separated by commas',
  },
} as const satisfies Record<string, { parse: Parse; expected: string }>;
type Kind = keyof typeof kinds;

interface Field {
  section: string;
  key: string;
  kind: Kind;
  /** Absent: the key must be present (it was in the Python tool's template). */
  default?: string;
}

// Keys the Python tool's own template contained are required; keys it lacked (W-ERR-5) and
// boxkeeper's additions have defaults. docs/settings.md documents every one.
export const FIELDS: readonly Field[] = [
  { section: 'general', key: 'host_addr', kind: 'url' },
  { section: 'general', key: 'env', kind: 'env' },
  { section: 'general', key: 'logging', kind: 'level' },
  { section: 'general', key: 'log_expiration', kind: 'days' },
  { section: 'general', key: 'debug_mode', kind: 'bool' },
  { section: 'general', key: 'send_access_secret', kind: 'bool', default: 'off' },
  { section: 'general', key: 'log_max_mb', kind: 'count', default: '200' },
  { section: 'paths', key: 'box_root', kind: 'path', default: '' },
  { section: 'paths', key: 'config', kind: 'path' },
  { section: 'paths', key: 'patch', kind: 'path' },
  { section: 'paths', key: 'patchmeta', kind: 'path' },
  { section: 'paths', key: 'backup', kind: 'path' },
  { section: 'paths', key: 'manager_dir', kind: 'path', default: '\\RemoteManagerDist' },
  { section: 'paths', key: 'fs', kind: 'path' },
  { section: 'paths', key: 'fs_conf', kind: 'path' },
  { section: 'paths', key: 'java', kind: 'path' },
  { section: 'paths', key: 'java_pid', kind: 'path' },
  { section: 'paths', key: 'jar', kind: 'path' },
  { section: 'paths', key: 'app_yml', kind: 'path' },
  { section: 'paths', key: 'path_bat', kind: 'path' },
  { section: 'paths', key: 'data', kind: 'path' },
  { section: 'paths', key: 'manager', kind: 'path', default: '\\entrypoint.exe' },
  { section: 'paths', key: 'updater', kind: 'path', default: '\\self_updater.exe' },
  { section: 'paths', key: 'starter', kind: 'path', default: '\\start.exe' },
  { section: 'paths', key: 'agent_data', kind: 'path', default: '\\boxkeeper' },
  { section: 'paths', key: 'logs', kind: 'path', default: '\\boxkeeper\\logs' },
  { section: 'timer', key: 'heartbeat', kind: 'seconds' },
  { section: 'timer', key: 'versionCheck', kind: 'seconds' },
  { section: 'supervise', key: 'enabled', kind: 'bool', default: 'on' },
  { section: 'supervise', key: 'interval', kind: 'seconds', default: '5' },
  { section: 'supervise', key: 'ready_timeout', kind: 'seconds', default: '120' },
  { section: 'supervise', key: 'stop_timeout', kind: 'seconds', default: '30' },
  { section: 'supervise', key: 'backoff_initial', kind: 'seconds', default: '2' },
  { section: 'supervise', key: 'backoff_max', kind: 'seconds', default: '300' },
  { section: 'supervise', key: 'crash_loop_starts', kind: 'count', default: '5' },
  { section: 'supervise', key: 'crash_loop_window', kind: 'seconds', default: '600' },
  { section: 'supervise', key: 'crash_loop_retry', kind: 'secondsOrZero', default: '1800' },
  { section: 'cloud', key: 'timeout', kind: 'seconds', default: '30' },
  { section: 'cloud', key: 'retries', kind: 'countOrZero', default: '3' },
  { section: 'cloud', key: 'token_refresh_margin', kind: 'secondsOrZero', default: '60' },
  { section: 'snapshot', key: 'repo', kind: 'path', default: '\\boxkeeper\\repo' },
  { section: 'snapshot', key: 'config', kind: 'path', default: '\\boxkeeper\\snapshot.json' },
  { section: 'snapshot', key: 'retain', kind: 'count', default: '3' },
  { section: 'update', key: 'enabled', kind: 'bool', default: 'on' },
  { section: 'update', key: 'check_jitter', kind: 'secondsOrZero', default: '300' },
  { section: 'update', key: 'health_timeout', kind: 'seconds', default: '300' },
  { section: 'update', key: 'health_settle', kind: 'secondsOrZero', default: '30' },
  { section: 'update', key: 'calls_retry', kind: 'seconds', default: '300' },
  { section: 'update', key: 'retry_delay', kind: 'seconds', default: '60' },
  { section: 'update', key: 'max_failed_installs', kind: 'count', default: '3' },
  { section: 'limits', key: 'patch_size', kind: 'size', default: '1G' },
  { section: 'limits', key: 'unpacked_size', kind: 'size', default: '2G' },
  { section: 'limits', key: 'patch_files', kind: 'count', default: '10000' },
  { section: 'limits', key: 'chunk_size', kind: 'size', default: '8M' },
  { section: 'limits', key: 'chunk_count', kind: 'count', default: '100000' },
  { section: 'limits', key: 'answer_size', kind: 'size', default: '4M' },
  { section: 'limits', key: 'upgrade_list', kind: 'count', default: '100' },
  { section: 'limits', key: 'text_length', kind: 'count', default: '4096' },
  { section: 'limits', key: 'disk_reserve', kind: 'sizeOrZero', default: '100M' },
  { section: 'security', key: 'patch_keys', kind: 'keys', default: '' },
  { section: 'security', key: 'ca_file', kind: 'optionalPath', default: '' },
  { section: 'console', key: 'enabled', kind: 'bool', default: 'off' },
  { section: 'console', key: 'port', kind: 'port', default: '8720' },
];

export const REGISTRY_KEY = 'HKLM\\SOFTWARE\\Ect888\\Qthz';
export const REGISTRY_VALUE = 'QthzInstallPath';

export interface SettingsDeps {
  readFile: (path: string) => Promise<Uint8Array>;
  registry: Registry;
  platform: NodeJS.Platform;
}

export interface LoadedSettings {
  settings: Settings;
  /** Unknown sections and keys that look intentional (not typos): logged, not fatal. */
  warnings: string[];
}

/** `--settings PATH`, else `$BOXKEEPER_SETTINGS`, else `./settings/settings.ini`. */
export function locateSettings(
  flag: string | undefined,
  env: Record<string, string | undefined>,
  cwd: string,
  platform: NodeJS.Platform,
): string {
  const chosen = flag ?? env.BOXKEEPER_SETTINGS ?? 'settings/settings.ini';
  const result = resolveBoxPath(platform, cwd, chosen);
  return result.ok ? result.path : chosen;
}

function near(name: string, candidates: readonly string[]): string | undefined {
  const lower = name.toLowerCase();
  return candidates.find(
    (c) => c.toLowerCase() !== lower && editDistance(c.toLowerCase(), lower) <= 2,
  );
}

type Values = Map<string, unknown>;
const id = (section: string, key: string) => `${section}.${key}`;

function validateFields(
  file: string,
  doc: IniDocument,
  problems: ConfigProblem[],
  warnings: string[],
): Values {
  const values: Values = new Map();
  const known = [...new Set(FIELDS.map((f) => f.section))];
  for (const section of doc.sections) {
    const lower = section.name.toLowerCase();
    if (known.includes(lower)) {
      const keys = FIELDS.filter((f) => f.section === lower).map((f) => f.key);
      for (const entry of section.entries) {
        if (keys.some((k) => k.toLowerCase() === entry.key.toLowerCase())) continue;
        const guess = near(entry.key, keys);
        if (guess !== undefined && findEntry(section, guess) === undefined) {
          problems.push({
            file,
            section: section.name,
            key: entry.key,
            line: entry.line,
            message: `unknown key; did you mean "${guess}"?`,
          });
        } else {
          warnings.push(
            `${file}:${entry.line} [${section.name}] ${entry.key}: unknown key, ignored`,
          );
        }
      }
      continue;
    }
    const guess = near(section.name, known);
    if (guess !== undefined) {
      problems.push({
        file,
        section: section.name,
        line: section.line,
        message: `unknown section; did you mean [${guess}]?`,
      });
    } else {
      warnings.push(`${file}:${section.line} [${section.name}]: unknown section, ignored`);
    }
  }
  for (const field of FIELDS) {
    const section = findSection(doc, field.section);
    const entry = findEntry(section, field.key);
    const raw = entry?.value ?? field.default;
    if (raw === undefined) {
      problems.push({
        file,
        section: field.section,
        key: field.key,
        ...(section === undefined ? {} : { line: section.line }),
        message:
          section === undefined
            ? `missing: the section [${field.section}] is absent, expected ${kinds[field.kind].expected}`
            : `missing: expected ${kinds[field.kind].expected}`,
      });
      continue;
    }
    if (field.key === 'box_root' && raw === '') continue;
    const parsed = kinds[field.kind].parse(raw);
    if (parsed !== INVALID) {
      values.set(id(field.section, field.key), parsed);
    } else {
      problems.push({
        file,
        section: field.section,
        key: field.key,
        ...(entry === undefined ? {} : { line: entry.line }),
        message: `expected ${kinds[field.kind].expected}, got ${quoted(raw)}`,
      });
    }
  }
  return values;
}

async function findBoxRoot(
  file: string,
  configured: unknown,
  deps: SettingsDeps,
  problems: ConfigProblem[],
): Promise<string | undefined> {
  if (typeof configured === 'string' && configured !== '') {
    if (!isAbsoluteFor(deps.platform, configured)) {
      problems.push({
        file,
        section: 'paths',
        key: 'box_root',
        message: `expected an absolute path for ${deps.platform}, got ${quoted(configured)}`,
      });
      return undefined;
    }
    return normalizeAbsolute(deps.platform, configured);
  }
  const fromRegistry = await deps.registry.readString(REGISTRY_KEY, REGISTRY_VALUE);
  if (fromRegistry !== undefined && fromRegistry.trim() !== '') {
    return normalizeAbsolute(deps.platform, fromRegistry.trim());
  }
  problems.push({
    file,
    section: 'paths',
    key: 'box_root',
    message:
      deps.platform === 'win32'
        ? `missing: not set here and the registry value ${REGISTRY_KEY} ${REGISTRY_VALUE} does not exist; set box_root to the box install dir`
        : `missing: set box_root to the box install dir (there is no registry on ${deps.platform})`,
  });
  return undefined;
}

export async function loadSettings(file: string, deps: SettingsDeps): Promise<LoadedSettings> {
  let bytes: Uint8Array;
  try {
    bytes = await deps.readFile(file);
  } catch (err) {
    const code = (err as { code?: string }).code;
    throw new ConfigError([
      {
        file,
        message:
          code === 'ENOENT' ? 'settings file not found' : `cannot read: ${(err as Error).message}`,
      },
    ]);
  }
  const doc = parseIni(decodeConfigText(bytes));
  const problems: ConfigProblem[] = doc.problems.map((p) => ({
    file,
    line: p.line,
    message: p.message,
  }));
  const warnings: string[] = [];
  const v = validateFields(file, doc, problems, warnings);
  const boxRoot = await findBoxRoot(file, v.get('paths.box_root'), deps, problems);

  const paths: Partial<Record<string, string>> = {};
  const resolve = (key: string, base: string | undefined) => {
    const raw = v.get(id('paths', key));
    if (typeof raw !== 'string' || base === undefined) return;
    const r = resolveBoxPath(deps.platform, base, raw);
    if (r.ok) paths[key] = r.path;
    else problems.push({ file, section: 'paths', key, message: r.message });
  };
  // Most paths hang off the box dir; fs_conf off FreeSWITCH, patchmeta off the patch dir and
  // the agent's executables off its own install dir, as the Python tool concatenated them.
  const fromBox = ['config', 'patch', 'backup', 'manager_dir', 'fs', 'java', 'java_pid', 'jar'];
  for (const key of [...fromBox, 'app_yml', 'path_bat', 'data', 'agent_data', 'logs']) {
    resolve(key, boxRoot);
  }
  resolve('fs_conf', paths.fs);
  const caFile = v.get(id('security', 'ca_file'));
  if (typeof caFile === 'string' && caFile !== '' && boxRoot !== undefined) {
    const r = resolveBoxPath(deps.platform, boxRoot, caFile);
    if (r.ok) paths['security.ca_file'] = r.path;
    else problems.push({ file, section: 'security', key: 'ca_file', message: r.message });
  }
  for (const key of ['repo', 'config']) {
    const raw = v.get(id('snapshot', key));
    if (typeof raw !== 'string' || boxRoot === undefined) continue;
    const r = resolveBoxPath(deps.platform, boxRoot, raw);
    if (r.ok) paths[`snapshot.${key}`] = r.path;
    else problems.push({ file, section: 'snapshot', key, message: r.message });
  }
  resolve('patchmeta', paths.patch);
  for (const key of ['manager', 'updater', 'starter']) resolve(key, paths.manager_dir);

  if (problems.length > 0 || boxRoot === undefined) throw new ConfigError(problems);

  const p = (key: string) => paths[key] as string;
  // eslint-disable-next-line @typescript-eslint/no-unnecessary-type-parameters -- typed read of a validated value
  const g = <T>(section: string, key: string) => v.get(id(section, key)) as T;
  return {
    warnings,
    settings: {
      file,
      platform: deps.platform,
      general: {
        hostAddr: g<string>('general', 'host_addr').replace(/\/+$/, ''),
        env: g('general', 'env'),
        logLevel: g('general', 'logging'),
        logExpirationDays: g('general', 'log_expiration'),
        logMaxMb: g('general', 'log_max_mb'),
        debugMode: g('general', 'debug_mode'),
        sendAccessSecret: g('general', 'send_access_secret'),
      },
      paths: {
        boxRoot,
        config: p('config'),
        patch: p('patch'),
        patchMeta: p('patchmeta'),
        backup: p('backup'),
        managerDir: p('manager_dir'),
        fs: p('fs'),
        fsConf: p('fs_conf'),
        java: p('java'),
        javaPid: p('java_pid'),
        jar: p('jar'),
        appYml: p('app_yml'),
        pathBat: p('path_bat'),
        data: p('data'),
        manager: p('manager'),
        updater: p('updater'),
        starter: p('starter'),
        agentData: p('agent_data'),
        logs: p('logs'),
      },
      timer: { heartbeatMs: g('timer', 'heartbeat'), versionCheckMs: g('timer', 'versionCheck') },
      supervise: {
        enabled: g('supervise', 'enabled'),
        intervalMs: g('supervise', 'interval'),
        readyTimeoutMs: g('supervise', 'ready_timeout'),
        stopTimeoutMs: g('supervise', 'stop_timeout'),
        backoffInitialMs: g('supervise', 'backoff_initial'),
        backoffMaxMs: g('supervise', 'backoff_max'),
        crashLoopStarts: g('supervise', 'crash_loop_starts'),
        crashLoopWindowMs: g('supervise', 'crash_loop_window'),
        crashLoopRetryMs: g('supervise', 'crash_loop_retry'),
      },
      cloud: {
        timeoutMs: g('cloud', 'timeout'),
        retries: g('cloud', 'retries'),
        tokenRefreshMarginMs: g('cloud', 'token_refresh_margin'),
      },
      snapshot: {
        repo: p('snapshot.repo'),
        config: p('snapshot.config'),
        retain: g('snapshot', 'retain'),
      },
      update: {
        enabled: g('update', 'enabled'),
        checkJitterMs: g('update', 'check_jitter'),
        healthTimeoutMs: g('update', 'health_timeout'),
        healthSettleMs: g('update', 'health_settle'),
        callsRetryMs: g('update', 'calls_retry'),
        retryDelayMs: g('update', 'retry_delay'),
        maxFailedInstalls: g('update', 'max_failed_installs'),
      },
      limits: {
        patchBytes: g('limits', 'patch_size'),
        unpackedBytes: g('limits', 'unpacked_size'),
        patchFiles: g('limits', 'patch_files'),
        chunkBytes: g('limits', 'chunk_size'),
        chunkCount: g('limits', 'chunk_count'),
        answerBytes: g('limits', 'answer_size'),
        upgradeList: g('limits', 'upgrade_list'),
        textLength: g('limits', 'text_length'),
        diskReserveBytes: g('limits', 'disk_reserve'),
      },
      security: {
        patchKeys: g('security', 'patch_keys'),
        caFile: paths['security.ca_file'] ?? null,
      },
      console: { enabled: g('console', 'enabled'), port: g('console', 'port') },
    },
  };
}

/** What `run` warns about at start: settings that leave the box open to whoever holds the link. */
export function securityWarnings(settings: Settings): string[] {
  const out: string[] = [];
  if (settings.security.patchKeys.length === 0)
    out.push(
      '[security] patch_keys is empty: patches are checked only by the MD5 the cloud sends, so whoever controls or intercepts the cloud link can install software on this box (docs/security.md)',
    );
  if (/^http:/i.test(settings.general.hostAddr))
    out.push(
      `[general] host_addr ${settings.general.hostAddr} is plain http: the cloud link can be read and changed on the way; use https (and [security] ca_file for a private CA)`,
    );
  return out;
}
