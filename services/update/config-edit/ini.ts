// The INI editor: settings.ini and configuration.ini (and the cloud's config map applied to it).
import { ConfigError, type ConfigProblem } from '../../../adapters/errors.ts';
import { findEntry, findSection, parseIni, scanIniLines } from '../../../adapters/ini.ts';
import { splitText, joinText, type SplitText, type Line } from './text.ts';

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
/** Why a database file name from the cloud or a file is unusable, or undefined. */
export function dbFileNameProblem(name: string): string | undefined {
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
