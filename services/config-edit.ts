// Surgical edits of the box's configuration files: settings.ini / configuration.ini (INI),
// the FreeSWITCH gateway XMLs and application.yml. The Python tool rewrote each file through a
// parser-serializer, losing comments, key case and order, and choking on `%` and non-string
// values (W-ERR-3, W-ERR-4). Here every function takes text and returns text in which only the
// values it sets differ: comments, blank lines, key spelling, order, unknown sections and keys,
// line endings (CRLF stays CRLF) and a UTF-8 BOM are kept byte for byte.
//
// Pure text in, text out; the file IO (decoding, atomic write) stays with the caller.
import { Document, isCollection, isMap, isScalar, parseDocument, Scalar } from 'yaml';
import { ConfigError, type ConfigProblem } from '../adapters/errors.ts';
import { findEntry, findSection, parseIni, scanIniLines } from '../adapters/ini.ts';

// ---------------------------------------------------------------------------------------------
// Line model shared by the INI editor (and the EOL/BOM handling of the others)

interface Line {
  text: string;
  /** The terminator that followed the line in the original ('' for the last line). */
  eol: string;
}

interface SplitText {
  bom: string;
  lines: Line[];
  /** The terminator new lines get: the first one of the file, else "\n". */
  eol: string;
}

function splitText(text: string): SplitText {
  const bom = text.startsWith('\uFEFF') ? '\uFEFF' : '';
  const parts = text.slice(bom.length).split(/(\r?\n)/);
  const lines: Line[] = [];
  for (let i = 0; i < parts.length; i += 2) {
    lines.push({ text: parts[i] as string, eol: parts[i + 1] ?? '' });
  }
  // "a\n" splits into ["a", "\n", ""]: the empty tail is no line of its own.
  const last = lines[lines.length - 1];
  if (last !== undefined && last.text === '' && last.eol === '') lines.pop();
  return { bom, lines, eol: parts[1] ?? '\n' };
}

function joinText(split: SplitText): string {
  return split.bom + split.lines.map((l) => l.text + l.eol).join('');
}

// ---------------------------------------------------------------------------------------------
// INI

export interface IniChange {
  section: string;
  key: string;
  from: string | null;
  to: string;
}

interface IniEdit {
  section: string;
  key: string;
  value: string;
}

function iniProblems(text: string, file: string): ConfigProblem[] {
  return parseIni(text).problems.map((p) => ({ file, line: p.line, message: p.message }));
}

/** The separator style of an existing entry line ("key = value" vs "key=value"). */
function separatorOf(line: string, valueStart: number, key: string): string {
  const afterKey = line.indexOf(key) + key.length;
  const sep = line.slice(afterKey, valueStart);
  return /^\s*[=:]\s*$/.test(sep) && sep !== '' ? sep : ' = ';
}

/** Lines of a new entry; configparser writes a multi-line value as tab-indented continuations. */
function entryLines(key: string, sep: string, value: string): string[] {
  const [first = '', ...more] = value.split('\n');
  const head = first === '' ? `${key}${sep.trimEnd()}` : `${key}${sep}${first}`;
  return [head, ...more.map((m) => `\t${m}`)];
}

/**
 * Inserts lines before index `at`. A file without a final line break keeps having none: the
 * inserted lines take over the missing terminator when they go after the last line.
 */
function insertLines(split: SplitText, at: number, texts: string[]): void {
  if (texts.length === 0) return;
  const added = texts.map((text) => ({ text, eol: split.eol }));
  const before = split.lines[at - 1];
  if (before !== undefined && before.eol === '') {
    before.eol = split.eol;
    (added[added.length - 1] as Line).eol = '';
  }
  split.lines.splice(at, 0, ...added);
}

/** Sets one value in the split text; returns the change, or undefined if it had that value. */
function setIniValue(split: SplitText, edit: IniEdit): IniChange | undefined {
  const { lines } = split;
  const infos = scanIniLines(lines.map((l) => l.text));
  const sectionLower = edit.section.toLowerCase();
  const doc = parseIni(lines.map((l) => l.text).join('\n'));
  const section = findSection(doc, edit.section);
  const current = findEntry(section, edit.key);
  if (current !== undefined && current.value === edit.value) return undefined;

  // Style for new entries: the separator of the section's (else the file's) first entry.
  let sep = ' = ';
  const inSection = infos.findIndex(
    (i) => i.kind === 'entry' && i.section.toLowerCase() === sectionLower,
  );
  const styleFrom = inSection >= 0 ? inSection : infos.findIndex((i) => i.kind === 'entry');
  const styleInfo = infos[styleFrom];
  if (styleInfo?.kind === 'entry') {
    sep = separatorOf((lines[styleFrom] as Line).text, styleInfo.valueStart, styleInfo.key);
  }

  if (current !== undefined && section !== undefined) {
    const index = current.line - 1;
    const info = infos[index];
    const line = lines[index] as Line;
    if (info?.kind !== 'entry') throw new Error(`internal: line ${current.line} is no entry`);
    const [first = '', ...more] = edit.value.split('\n');
    let rest = line.text.slice(info.valueEnd);
    // "key = ; note" would read the comment as the value: an emptied value loses its comment.
    if (first === '') rest = '';
    const prefix = line.text.slice(0, info.valueStart);
    line.text = first === '' ? prefix.trimEnd() : prefix + first + rest;
    // Drop the old continuation lines, then add the new ones.
    let end = index + 1;
    while (end < lines.length) {
      const next = infos[end];
      if (next?.kind === 'continuation') {
        lines.splice(end, 1);
        infos.splice(end, 1);
      } else if (next?.kind === 'comment') {
        end++;
      } else break;
    }
    insertLines(
      split,
      index + 1,
      more.map((m) => `\t${m}`),
    );
    return { section: section.name, key: current.key, from: current.value, to: edit.value };
  }

  if (section !== undefined) {
    // After the section's last entry (or its header), before trailing blank/comment lines.
    const headerIndex = section.line - 1;
    let insertAt = headerIndex + 1;
    for (let i = headerIndex + 1; i < infos.length; i++) {
      const info = infos[i] as (typeof infos)[number];
      if (info.kind === 'section') break;
      if (info.kind === 'entry' || info.kind === 'continuation' || info.kind === 'invalid') {
        insertAt = i + 1;
      }
    }
    insertLines(split, insertAt, entryLines(edit.key, sep, edit.value));
    return { section: section.name, key: edit.key, from: null, to: edit.value };
  }

  // A new section at the end of the file, separated by a blank line.
  const last = lines[lines.length - 1];
  const gap = last !== undefined && last.text.trim() !== '' ? [''] : [];
  insertLines(split, lines.length, [
    ...gap,
    `[${edit.section}]`,
    ...entryLines(edit.key, sep, edit.value),
  ]);
  return { section: edit.section, key: edit.key, from: null, to: edit.value };
}

/**
 * Applies the edits in order and checks that the result reads back with exactly those values,
 * so a value the INI reader would cut (a ` ;`, leading blanks, an empty line) is refused rather
 * than silently damaged.
 */
function editIni(
  original: string,
  edits: IniEdit[],
  file: string,
): { text: string; changes: IniChange[] } {
  const problems = iniProblems(original, file);
  if (problems.length > 0) throw new ConfigError(problems);
  const split = splitText(original);
  const changes: IniChange[] = [];
  for (const edit of edits) {
    const change = setIniValue(split, edit);
    if (change === undefined) continue;
    const same = changes.findIndex(
      (c) =>
        c.section.toLowerCase() === change.section.toLowerCase() &&
        c.key.toLowerCase() === change.key.toLowerCase(),
    );
    if (same < 0) changes.push(change);
    else {
      // A later edit of the same key: one change from the original value to the last one.
      const merged = { ...(changes[same] as IniChange), to: change.to };
      if (merged.from === merged.to) changes.splice(same, 1);
      else changes[same] = merged;
    }
  }
  const text = joinText(split);
  if (changes.length === 0 || text === original) return { text: original, changes };
  const doc = parseIni(text);
  const bad: ConfigProblem[] = doc.problems.map((p) => ({
    file,
    line: p.line,
    message: p.message,
  }));
  for (const c of changes) {
    const readBack = findEntry(findSection(doc, c.section), c.key)?.value;
    if (readBack !== c.to) {
      bad.push({
        file,
        section: c.section,
        key: c.key,
        message: `value ${JSON.stringify(c.to)} cannot be stored in an INI file (it would read back as ${JSON.stringify(readBack ?? null)}); a " ;" starts a comment, and blanks at the ends and empty lines are lost`,
      });
    }
  }
  if (bad.length > 0) throw new ConfigError(bad);
  return { text, changes };
}

/**
 * Partial merge of settings.ini (§3.11 step 6): every section/key of `patch` overwrites the same
 * key of `original` (case-insensitive, as configparser) or is added at the end of its section;
 * missing sections are appended. Values are written verbatim. Merging twice equals merging once.
 * Throws ConfigError if either text has INI problems (duplicate keys, lines outside a section…).
 */
export function mergeIniText(
  original: string,
  patch: string,
  file = 'settings.ini',
  /** Which patch entries may be applied (default all); the others are returned as `refused`. */
  allow: (section: string, key: string) => boolean = () => true,
): { text: string; changes: IniChange[]; refused: Array<{ section: string; key: string }> } {
  const patchDoc = parseIni(patch);
  if (patchDoc.problems.length > 0) {
    throw new ConfigError(
      patchDoc.problems.map((p) => ({ file: `${file} (patch)`, line: p.line, message: p.message })),
    );
  }
  const edits: IniEdit[] = [];
  const refused: Array<{ section: string; key: string }> = [];
  for (const section of patchDoc.sections) {
    for (const e of section.entries) {
      if (allow(section.name, e.key))
        edits.push({ section: section.name, key: e.key, value: e.value });
      else refused.push({ section: section.name, key: e.key });
    }
  }
  return { ...editIni(original, edits, file), refused };
}

/** §5.3: remote `argumentConfigMap` key → configuration.ini section and key. */
export const REMOTE_CONF_MAPPING: Readonly<Record<string, { section: string; key: string }>> = {
  callboxPassword: { section: 'FreeSWITCH', key: 'callboxPassword' },
  numconvertRealm: { section: 'FreeSWITCH', key: 'numconvertRealm' },
  callboxRealm: { section: 'FreeSWITCH', key: 'callboxRealm' },
  numconvertUsername: { section: 'FreeSWITCH', key: 'numconvertUsername' },
  outnum: { section: 'city', key: 'out' },
  citynum: { section: 'city', key: 'num' },
  callboxUsername: { section: 'FreeSWITCH', key: 'callboxUsername' },
  numconvertPassword: { section: 'FreeSWITCH', key: 'numconvertPassword' },
  hostAdr: { section: 'host', key: 'adr' },
  dbfileName: { section: 'dbfile', key: 'name' },
  phoneEncryption: { section: 'QTHZ', key: 'phoneEncryption' },
};

function describe(value: unknown): string {
  if (value === null) return 'null';
  if (Array.isArray(value)) return 'an array';
  return typeof value === 'object' ? 'an object' : typeof value;
}

/** A DB file name must stay inside the data dir. */
function dbFileNameProblem(name: string): string | undefined {
  if (name.trim() === '') return 'is empty; the SQLite database needs a file name';
  if (/[\\/]/.test(name) || name === '.' || name === '..') {
    return `"${name}" must be a plain file name inside the data dir (no "/", "\\" or "..")`;
  }
  return undefined;
}

export interface RemoteConfigUpdate {
  versionNum: string;
  versionCode: string;
  /** The cloud's `argumentConfigMap`. */
  map: Readonly<Record<string, unknown>>;
}

/**
 * §5.3: sets `[QTHZ] version` and `code`, then every mapped key of the remote map. Strings are
 * written verbatim (`%` included), numbers and booleans as `String(v)`. Unknown remote keys are
 * returned in `unknown` (the caller logs them); missing sections are created. null, objects,
 * arrays and unusable DB file names throw ConfigError (all problems at once, before any edit).
 */
export function applyRemoteConfig(
  configText: string,
  update: RemoteConfigUpdate,
  file = 'configuration.ini',
): { text: string; applied: string[]; unknown: string[]; changes: IniChange[] } {
  const edits: IniEdit[] = [
    { section: 'QTHZ', key: 'version', value: update.versionNum },
    { section: 'QTHZ', key: 'code', value: update.versionCode },
  ];
  const applied: string[] = [];
  const unknown: string[] = [];
  const problems: ConfigProblem[] = [];
  for (const [remoteKey, raw] of Object.entries(update.map)) {
    const target = Object.hasOwn(REMOTE_CONF_MAPPING, remoteKey)
      ? REMOTE_CONF_MAPPING[remoteKey]
      : undefined;
    if (target === undefined) {
      unknown.push(remoteKey);
      continue;
    }
    let value: string;
    if (typeof raw === 'string') value = raw;
    else if ((typeof raw === 'number' && Number.isFinite(raw)) || typeof raw === 'boolean') {
      value = String(raw);
    } else {
      problems.push({
        file,
        section: target.section,
        key: target.key,
        message: `remote key "${remoteKey}" must be a string, number or boolean, got ${describe(raw)}`,
      });
      continue;
    }
    if (remoteKey === 'dbfileName') {
      const why = dbFileNameProblem(value);
      if (why !== undefined) {
        problems.push({
          file,
          section: target.section,
          key: target.key,
          message: `remote key "${remoteKey}" ${why}`,
        });
        continue;
      }
    }
    applied.push(remoteKey);
    edits.push({ section: target.section, key: target.key, value });
  }
  if (problems.length > 0) throw new ConfigError(problems);
  const { text, changes } = editIni(configText, edits, file);
  return { text, applied, unknown, changes };
}

// ---------------------------------------------------------------------------------------------
// FreeSWITCH gateway XMLs (§5.4)

export type GatewayName = 'callbox' | 'numconvert';
export type GatewayParamName = 'username' | 'realm' | 'password';
export type GatewayParams = Partial<Record<GatewayParamName, string>>;

/** §5.4: lowercased configuration.ini `[FreeSWITCH]` key → gateway and param. */
export const FS_CONF_MAPPING: Readonly<
  Record<string, { gateway: GatewayName; param: GatewayParamName }>
> = {
  callboxpassword: { gateway: 'callbox', param: 'password' },
  numconvertrealm: { gateway: 'numconvert', param: 'realm' },
  callboxrealm: { gateway: 'callbox', param: 'realm' },
  numconvertusername: { gateway: 'numconvert', param: 'username' },
  callboxusername: { gateway: 'callbox', param: 'username' },
  numconvertpassword: { gateway: 'numconvert', param: 'password' },
};

/**
 * The gateway params configured in configuration.ini `[FreeSWITCH]`. Unknown keys are reported
 * in `unknown` (the Python tool crashed on them, W-ERR-3); empty values are skipped.
 */
export function gatewayParamsFromConfig(
  configText: string,
  file = 'configuration.ini',
): { callbox: GatewayParams; numconvert: GatewayParams; unknown: string[] } {
  const doc = parseIni(configText);
  if (doc.problems.length > 0) {
    throw new ConfigError(doc.problems.map((p) => ({ file, line: p.line, message: p.message })));
  }
  const out = {
    callbox: {} as GatewayParams,
    numconvert: {} as GatewayParams,
    unknown: [] as string[],
  };
  for (const entry of findSection(doc, 'FreeSWITCH')?.entries ?? []) {
    const lower = entry.key.toLowerCase();
    const target = Object.hasOwn(FS_CONF_MAPPING, lower) ? FS_CONF_MAPPING[lower] : undefined;
    if (target === undefined) out.unknown.push(entry.key);
    else if (entry.value !== '') out[target.gateway][target.param] = entry.value;
  }
  return out;
}

interface XmlAttr {
  name: string;
  /** Decoded value. */
  value: string;
  /** Offsets of the raw value between the quotes. */
  valueStart: number;
  valueEnd: number;
  quote: '"' | "'";
  /** Offset just past the closing quote. */
  end: number;
}

interface XmlTag {
  kind: 'open' | 'close' | 'empty';
  name: string;
  start: number;
  end: number;
  attrs: XmlAttr[];
  depth: number;
}

function lineAt(text: string, offset: number): number {
  let line = 1;
  for (let i = 0; i < offset && i < text.length; i++) if (text.charCodeAt(i) === 10) line++;
  return line;
}

function decodeXml(raw: string): string {
  return raw.replace(/&(?:#x([0-9a-f]+)|#(\d+)|(amp|lt|gt|quot|apos));/gi, (m, hex, dec, named) => {
    if (typeof hex === 'string') return String.fromCodePoint(parseInt(hex, 16));
    if (typeof dec === 'string') return String.fromCodePoint(parseInt(dec, 10));
    const map: Record<string, string> = { amp: '&', lt: '<', gt: '>', quot: '"', apos: "'" };
    return map[(named as string).toLowerCase()] ?? m;
  });
}

function escapeXmlAttr(value: string, quote: '"' | "'"): string {
  const out = value
    .replace(/&/g, '&amp;')
    .replace(/</g, '&lt;')
    .replace(/>/g, '&gt;')
    .replace(/"/g, '&quot;');
  return quote === "'" ? out.replace(/'/g, '&apos;') : out;
}

const NAME = /[A-Za-z_:][-\w.:]*/y;
const ATTR = /\s*([A-Za-z_:][-\w.:]*)\s*=\s*(?:"([^"<]*)"|'([^'<]*)')/y;

/**
 * The tags of a small XML document, skipping comments, CDATA, processing instructions and the
 * doctype; checks nesting so a damaged file is refused rather than edited.
 */
function xmlTags(text: string, file: string): XmlTag[] {
  const fail = (offset: number, message: string): never => {
    throw new ConfigError([
      { file, line: lineAt(text, offset), message: `not well-formed XML: ${message}` },
    ]);
  };
  const tags: XmlTag[] = [];
  const stack: string[] = [];
  let i = 0;
  for (;;) {
    const lt = text.indexOf('<', i);
    if (lt < 0) break;
    const skipTo = (close: string, what: string): number => {
      const end = text.indexOf(close, lt);
      return end < 0 ? fail(lt, `unterminated ${what}`) : end + close.length;
    };
    if (text.startsWith('<!--', lt)) i = skipTo('-->', 'comment');
    else if (text.startsWith('<![CDATA[', lt)) i = skipTo(']]>', 'CDATA section');
    else if (text.startsWith('<?', lt)) i = skipTo('?>', 'processing instruction');
    else if (text.startsWith('<!', lt)) {
      // <!DOCTYPE …> with an optional [internal subset].
      const bracket = text.indexOf('[', lt);
      const gt = text.indexOf('>', lt);
      if (gt < 0) fail(lt, 'unterminated declaration');
      i = bracket >= 0 && bracket < gt ? skipTo(']>', 'declaration') : gt + 1;
    } else {
      const closing = text[lt + 1] === '/';
      NAME.lastIndex = lt + (closing ? 2 : 1);
      const nameMatch = NAME.exec(text);
      if (nameMatch === null) fail(lt, 'a "<" that starts no tag');
      const name = (nameMatch as RegExpExecArray)[0];
      let p = NAME.lastIndex;
      const attrs: XmlAttr[] = [];
      if (!closing) {
        for (;;) {
          ATTR.lastIndex = p;
          const a = ATTR.exec(text);
          if (a === null) break;
          const double = a[2] !== undefined;
          const raw = (double ? a[2] : a[3]) as string;
          const end = ATTR.lastIndex;
          attrs.push({
            name: a[1] as string,
            value: decodeXml(raw),
            valueStart: end - 1 - raw.length,
            valueEnd: end - 1,
            quote: double ? '"' : "'",
            end,
          });
          p = end;
        }
      }
      const tail = /\s*(\/?)>/y;
      tail.lastIndex = p;
      const t = tail.exec(text);
      if (t === null) fail(p, `malformed tag <${closing ? '/' : ''}${name}>`);
      const selfClosing = (t as RegExpExecArray)[1] === '/';
      if (closing && selfClosing) fail(lt, `malformed end tag </${name}>`);
      const end = tail.lastIndex;
      if (closing) {
        const open = stack.pop();
        if (open !== name) fail(lt, `</${name}> does not close <${open ?? '(nothing)'}>`);
        tags.push({ kind: 'close', name, start: lt, end, attrs, depth: stack.length });
      } else {
        tags.push({
          kind: selfClosing ? 'empty' : 'open',
          name,
          start: lt,
          end,
          attrs,
          depth: stack.length,
        });
        if (!selfClosing) stack.push(name);
      }
      i = end;
    }
  }
  if (stack.length > 0) fail(text.length, `<${stack[stack.length - 1] as string}> is never closed`);
  return tags;
}

function indentBefore(text: string, offset: number): string {
  const lineStart = text.lastIndexOf('\n', offset - 1) + 1;
  const lead = text.slice(lineStart, offset);
  return /^[ \t]*$/.test(lead) ? lead : '';
}

/**
 * §5.4: sets `username`, `realm` and `password` (those given) on the first `<gateway name="…">`
 * of a FreeSWITCH gateway file, editing only those `value` attributes (a missing param element
 * is added after the last param). Everything else stays byte-identical.
 */
export function setGatewayParams(
  xmlText: string,
  params: GatewayParams,
  file = 'gateway.xml',
): { text: string; gateway: string; changed: string[] } {
  const tags = xmlTags(xmlText, file);
  const gwIndex = tags.findIndex((t) => t.kind !== 'close' && t.name === 'gateway');
  const gw = tags[gwIndex];
  if (gw === undefined) {
    throw new ConfigError([
      { file, message: 'no <gateway name="…"> element; not a FreeSWITCH gateway file' },
    ]);
  }
  const gwName = gw.attrs.find((a) => a.name === 'name');
  if (gwName === undefined || gwName.value === '') {
    throw new ConfigError([
      { file, line: lineAt(xmlText, gw.start), message: '<gateway> has no name attribute' },
    ]);
  }
  // Direct <param> children of the gateway.
  const children: XmlTag[] = [];
  let gwClose: XmlTag | undefined;
  if (gw.kind === 'open') {
    for (const t of tags.slice(gwIndex + 1)) {
      if (t.depth === gw.depth && t.kind === 'close') {
        gwClose = t;
        break;
      }
      if (t.depth === gw.depth + 1 && t.kind !== 'close' && t.name === 'param') children.push(t);
    }
  }
  const eol = xmlText.includes('\r\n') ? '\r\n' : '\n';
  const splices: Array<{ start: number; end: number; text: string }> = [];
  const changed: string[] = [];
  const missing: string[] = [];
  for (const name of ['username', 'realm', 'password'] as const) {
    const value = params[name];
    if (value === undefined) continue;
    const matching = children.filter(
      (c) => c.attrs.find((a) => a.name === 'name')?.value.toLowerCase() === name,
    );
    if (matching.length === 0) {
      missing.push(`<param name="${name}" value="${escapeXmlAttr(value, '"')}"/>`);
      changed.push(name);
      continue;
    }
    let didChange = false;
    for (const param of matching) {
      const attr = param.attrs.find((a) => a.name === 'value');
      if (attr === undefined) {
        const nameAttr = param.attrs.find((a) => a.name === 'name') as XmlAttr;
        splices.push({
          start: nameAttr.end,
          end: nameAttr.end,
          text: ` value="${escapeXmlAttr(value, '"')}"`,
        });
        didChange = true;
      } else if (attr.value !== value) {
        splices.push({
          start: attr.valueStart,
          end: attr.valueEnd,
          text: escapeXmlAttr(value, attr.quote),
        });
        didChange = true;
      }
    }
    if (didChange) changed.push(name);
  }
  if (missing.length > 0) {
    const lastParam = children[children.length - 1];
    if (lastParam !== undefined) {
      // After the last param (its end tag if it has one), with that param's indentation.
      const pIndex = tags.indexOf(lastParam);
      const after =
        lastParam.kind === 'open'
          ? (
              tags
                .slice(pIndex + 1)
                .find((t) => t.kind === 'close' && t.depth === lastParam.depth) as XmlTag
            ).end
          : lastParam.end;
      const indent = indentBefore(xmlText, lastParam.start);
      splices.push({
        start: after,
        end: after,
        text: missing.map((m) => `${eol}${indent}${m}`).join(''),
      });
    } else if (gwClose !== undefined) {
      const gwIndent = indentBefore(xmlText, gw.start);
      const closeIndent = indentBefore(xmlText, gwClose.start);
      const indent = `${gwIndent}  `;
      const lineStart = gwClose.start - closeIndent.length;
      const atLineStart = closeIndent !== '' || xmlText[gwClose.start - 1] === '\n';
      splices.push({
        start: atLineStart ? lineStart : gwClose.start,
        end: atLineStart ? lineStart : gwClose.start,
        text: atLineStart
          ? missing.map((m) => `${indent}${m}${eol}`).join('')
          : `${missing.map((m) => `${eol}${indent}${m}`).join('')}${eol}${gwIndent}`,
      });
    } else {
      // <gateway name="x"/>: open it up.
      const gwIndent = indentBefore(xmlText, gw.start);
      const selfEnd = xmlText.lastIndexOf('/>', gw.end);
      splices.push({
        start: selfEnd,
        end: gw.end,
        text: `>${missing.map((m) => `${eol}${gwIndent}  ${m}`).join('')}${eol}${gwIndent}</gateway>`,
      });
    }
  }
  let text = xmlText;
  for (const s of splices.sort((a, b) => b.start - a.start)) {
    text = text.slice(0, s.start) + s.text + text.slice(s.end);
  }
  return { text, gateway: gwName.value, changed };
}

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
