// The application.yml editor: the keys boxkeeper keeps in line with configuration.ini.
import { Document, isCollection, isMap, isScalar, parseDocument, Scalar } from 'yaml';
import { ConfigError, type ConfigProblem } from '../../../adapters/errors.ts';
import { findEntry, findSection, parseIni } from '../../../adapters/ini.ts';
import { dbFileNameProblem } from './ini.ts';

// ---------------------------------------------------------------------------------------------
// application.yml (§5.5)

/** The application.yml keys boxkeeper keeps in line with configuration.ini. */
export interface AppYmlValues {
  appkey: string;
  'access-key-id': string;
  'access-key-secret': string;
  'city-code': string;
  'url-port': string;
  'spring.datasource.druid.url': string;
  'phone-num-encryption': string;
}

/**
 * §5.5: the values application.yml gets from configuration.ini. The DB URL joins `dataDir` and
 * `[dbfile] name` with the separator of `platform`. Missing keys (and an unusable DB file name)
 * throw ConfigError, all at once.
 */
export function appYmlValues(
  configText: string,
  dataDir: string,
  platform: NodeJS.Platform,
  file = 'configuration.ini',
): AppYmlValues {
  const doc = parseIni(configText);
  const problems: ConfigProblem[] = doc.problems.map((p) => ({
    file,
    line: p.line,
    message: p.message,
  }));
  const get = (section: string, key: string): string => {
    const entry = findEntry(findSection(doc, section), key);
    if (entry === undefined) {
      problems.push({ file, section, key, message: 'missing; application.yml needs it' });
      return '';
    }
    return entry.value;
  };
  const sep = platform === 'win32' ? '\\' : '/';
  const dbName = get('dbfile', 'name');
  const values: AppYmlValues = {
    appkey: `\${APP_KEY:${get('appkey', 'key')}}`,
    'access-key-id': `\${ACCESS_KEY_ID:${get('accessid', 'id')}}`,
    'access-key-secret': `\${ACCESS_KEY_SECRET:${get('accesssecret', 'secret')}}`,
    'city-code': `\${CITY_CODE:${get('city', 'num')}}`,
    'url-port': `\${ICB-PORT:${get('host', 'adr')}}`,
    'spring.datasource.druid.url': `jdbc:sqlite:${dataDir}${/[\\/]$/.test(dataDir) ? '' : sep}${dbName}`,
    'phone-num-encryption': get('QTHZ', 'phoneEncryption'),
  };
  const why = problems.some((p) => p.section === 'dbfile') ? undefined : dbFileNameProblem(dbName);
  if (why !== undefined) problems.push({ file, section: 'dbfile', key: 'name', message: why });
  if (problems.length > 0) throw new ConfigError(problems);
  return values;
}

/** A scalar rendered on one line, in the given quoting style if the value allows it. */
function renderScalar(value: string, type: Scalar['type']): string {
  const node = new Scalar(value);
  if (type === 'PLAIN' || type === 'QUOTE_SINGLE' || type === 'QUOTE_DOUBLE') node.type = type;
  const out = new Document(node).toString({ lineWidth: 0 }).replace(/\n$/, '');
  return out.includes('\n') ? JSON.stringify(value) : out;
}

function sameScalar(node: unknown, value: string): boolean {
  if (!isScalar(node)) return false;
  const v = node.value;
  return (
    (typeof v === 'string' || typeof v === 'number' || typeof v === 'boolean') &&
    String(v) === value
  );
}

function pathOf(doc: Document, key: string): string[] {
  // A flat "spring.datasource.druid.url:" key, which Spring also accepts, is edited in place.
  return !key.includes('.') || doc.has(key) ? [key] : key.split('.');
}

function yamlErrors(doc: Document, file: string): ConfigProblem[] {
  const problems: ConfigProblem[] = doc.errors.map((e) => {
    const message = `not valid YAML: ${e.message.split('\n')[0] ?? e.message}`;
    const line = e.linePos?.[0].line;
    return line === undefined ? { file, message } : { file, line, message };
  });
  if (problems.length === 0 && doc.contents !== null && !isMap(doc.contents)) {
    problems.push({ file, message: 'expected a mapping of keys at the top level' });
  }
  return problems;
}

/**
 * Sets application.yml keys (dotted names are paths: `spring.datasource.druid.url`). Existing
 * scalar values are replaced in place, in their quoting style, so every other byte stays; a
 * missing top-level key is appended; a missing nested key is added through the Document API
 * (comments and key order survive, indentation may be normalised). Idempotent.
 */
export function injectAppYmlKeys(
  ymlText: string,
  values: AppYmlValues | Readonly<Record<string, string>>,
  file = 'application.yml',
): { text: string; changed: string[] } {
  const entries = Object.entries(values as Readonly<Record<string, string>>);
  const bom = ymlText.startsWith('\uFEFF') ? '\uFEFF' : '';
  const source = ymlText.slice(bom.length);
  const eol = source.includes('\r\n') ? '\r\n' : '\n';
  const doc = parseDocument(source);
  const errors = yamlErrors(doc, file);
  if (errors.length > 0) throw new ConfigError(errors);

  const changed: string[] = [];
  const splices: Array<{ start: number; end: number; text: string }> = [];
  const appended: string[] = [];
  let needDocumentApi = false;
  for (const [key, value] of entries) {
    const path = pathOf(doc, key);
    const node = doc.getIn(path, true);
    if (sameScalar(node, value)) continue;
    if (isCollection(node)) {
      throw new ConfigError([
        { file, key, message: 'expected a single value, found a nested mapping or list' },
      ]);
    }
    changed.push(key);
    if (isScalar(node) && node.range !== undefined && node.range !== null) {
      const [start, end] = node.range;
      const rendered = renderScalar(value, node.type);
      // An empty value ("key:") has an empty range right after the colon.
      splices.push({ start, end, text: start === end ? ` ${rendered}` : rendered });
    } else if (node === undefined && path.length === 1) {
      appended.push(`${yamlKey(key)}: ${renderScalar(value, 'PLAIN')}`);
    } else needDocumentApi = true;
  }
  if (changed.length === 0) return { text: ymlText, changed };

  const check = (text: string): boolean => {
    const back = parseDocument(text);
    return (
      back.errors.length === 0 &&
      entries.every(([key, value]) => sameScalar(back.getIn(pathOf(back, key), true), value))
    );
  };
  if (!needDocumentApi) {
    let text = source;
    for (const s of splices.sort((a, b) => b.start - a.start)) {
      text = text.slice(0, s.start) + s.text + text.slice(s.end);
    }
    if (appended.length > 0) {
      if (text !== '' && !text.endsWith('\n')) text += eol;
      text += appended.map((a) => a + eol).join('');
    }
    if (check(text)) return { text: bom + text, changed };
  }
  // Structural change (or an in-place edit that did not read back): the Document API.
  const whole = parseDocument(source);
  try {
    for (const [key, value] of entries) {
      const path = pathOf(whole, key);
      if (!sameScalar(whole.getIn(path, true), value)) whole.setIn(path, value);
    }
  } catch (err) {
    throw new ConfigError([{ file, message: `cannot set keys: ${(err as Error).message}` }]);
  }
  let text = whole.toString({ lineWidth: 0, indent: detectIndent(source) });
  if (eol === '\r\n') text = text.replace(/\r?\n/g, '\r\n');
  if (!check(text)) throw new ConfigError([{ file, message: 'internal: keys did not read back' }]);
  return { text: bom + text, changed };
}

function yamlKey(key: string): string {
  return /^[A-Za-z_][-\w.]*$/.test(key) ? key : JSON.stringify(key);
}

function detectIndent(source: string): number {
  const m = /^[^\s#][^\n]*:[ \t]*(?:#[^\n]*)?\r?\n(?:[ \t]*(?:#[^\n]*)?\r?\n)*( +)\S/m.exec(source);
  const n = m?.[1]?.length ?? 2;
  return n >= 1 && n <= 8 ? n : 2;
}
