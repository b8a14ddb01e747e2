// settings.ini: the agent's own settings, read unchanged from the Python tool's file.
// Every problem is collected (file, section, key, line, what was expected) and reported at once.
import { z } from 'zod';
import { ConfigError, type ConfigProblem } from '../adapters/errors.ts';
import {
  decodeConfigText,
  editDistance,
  findEntry,
  findSection,
  parseIni,
  type IniDocument,
} from '../adapters/ini.ts';
import type { Registry } from '../adapters/registry.ts';
import { isAbsoluteFor, normalizeAbsolute, resolveBoxPath } from './box-paths.ts';

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
}

// ---- field kinds: each a zod schema from the raw string, plus how to say what was expected ----

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

const num = (pred: (n: number) => boolean) =>
  z
    .string()
    .trim()
    .regex(/^[+]?(\d+(\.\d*)?|\.\d+)$/)
    .transform(Number)
    .refine(pred);

const kinds = {
  url: { schema: z.url({ protocol: /^https?$/ }), expected: 'an http:// or https:// URL' },
  env: { schema: z.enum(ENVIRONMENTS), expected: `one of ${ENVIRONMENTS.join(', ')}` },
  level: {
    schema: z
      .string()
      .transform((s) => s.trim().toLowerCase())
      .pipe(z.enum(Object.keys(LEVELS) as [string, ...string[]]))
      .transform((s) => LEVELS[s] as LogLevel),
    expected: `one of ${Object.keys(LEVELS).join(', ')}`,
  },
  bool: {
    schema: z
      .string()
      .transform((s) => s.trim().toLowerCase())
      .pipe(z.enum(Object.keys(BOOLEANS) as [string, ...string[]]))
      .transform((s) => BOOLEANS[s] as boolean),
    expected: 'on or off',
  },
  seconds: {
    schema: num((n) => n > 0).transform((s) => Math.round(s * 1000)),
    expected: 'a number of seconds > 0',
  },
  secondsOrZero: {
    schema: num((n) => n >= 0).transform((s) => Math.round(s * 1000)),
    expected: 'a number of seconds ≥ 0',
  },
  days: { schema: num((n) => n > 0), expected: 'a number of days > 0' },
  count: { schema: num((n) => Number.isInteger(n) && n >= 1), expected: 'a whole number ≥ 1' },
  countOrZero: {
    schema: num((n) => Number.isInteger(n) && n >= 0),
    expected: 'a whole number ≥ 0',
  },
  path: { schema: z.string().trim().min(1), expected: 'a path' },
} as const;
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
    const parsed = kinds[field.kind].schema.safeParse(raw);
    if (parsed.success) {
      values.set(id(field.section, field.key), parsed.data);
    } else {
      problems.push({
        file,
        section: field.section,
        key: field.key,
        ...(entry === undefined ? {} : { line: entry.line }),
        message: `expected ${kinds[field.kind].expected}, got "${raw}"`,
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
        message: `expected an absolute path for ${deps.platform}, got "${configured}"`,
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
    },
  };
}
