// A reader for the INI files the box shares with the Python tool (settings.ini, configuration.ini).
// It follows Python configparser, which wrote and read them: `key=value` or `key: value`,
// full-line `;`/`#` comments, indented continuation lines, case-insensitive keys, values kept
// verbatim (backslashes are not escapes). On top it accepts inline ` ; comment`s and section
// headers followed by a comment, as the documented settings.ini uses both. The npm `ini`
// package was not used: it cuts values at `#`, drops `[paths] ; comment` headers and unescapes
// backslashes (see docs/architecture.md).
//
// Pure text in, data out; the file IO stays with the caller.

export interface IniEntry {
  /** The key as written (configparser compares keys case-insensitively). */
  key: string;
  value: string;
  line: number;
}

export interface IniSection {
  name: string;
  line: number;
  entries: IniEntry[];
}

export interface IniProblem {
  line: number;
  message: string;
}

export interface IniDocument {
  sections: IniSection[];
  problems: IniProblem[];
}

const SECTION = /^\s*\[([^\]]+)\]\s*(?:[;#].*)?$/;
const ENTRY = /^\s*([^=:\s][^=:]*?)\s*[=:]\s*(.*)$/;

// eslint-disable-next-line no-control-regex -- control characters are what it escapes
const CONTROL = /[\u0000-\u001f\u007f]/g;

/**
 * Text of a file quoted for a message, control characters written as \uXXXX: a NUL, a lone CR
 * or an escape sequence would otherwise be invisible or act on the terminal.
 */
export function quoted(text: string): string {
  const visible = text.replace(
    CONTROL,
    (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`,
  );
  return `"${visible}"`;
}

/** Cuts an inline comment: a `;` that follows whitespace starts one. */
function stripInlineComment(value: string): string {
  const m = /\s;/.exec(value);
  return (m === null ? value : value.slice(0, m.index)).trim();
}

export function parseIni(text: string): IniDocument {
  const sections: IniSection[] = [];
  const problems: IniProblem[] = [];
  // UTF-16 (Notepad's "Unicode") decodes with a NUL beside every ASCII letter: one problem that
  // says so, not one per line of garbage.
  const nul = text.indexOf('\u0000');
  if (nul >= 0) {
    const line = text.slice(0, nul).split(/\r?\n/).length;
    const message =
      'contains NUL characters: not a text file, or saved as UTF-16 (Notepad\'s "Unicode"); save it as UTF-8';
    return { sections, problems: [{ line, message }] };
  }
  let current: IniSection | undefined;
  let lastEntry: IniEntry | undefined;
  const lines = text.replace(/^\uFEFF/, '').split(/\r?\n/);
  lines.forEach((raw, index) => {
    const line = index + 1;
    const trimmed = raw.trim();
    if (trimmed === '' || trimmed.startsWith(';') || trimmed.startsWith('#')) {
      if (trimmed === '') lastEntry = undefined;
      return;
    }
    const header = SECTION.exec(raw);
    if (header !== null) {
      const name = (header[1] as string).trim();
      if (sections.some((s) => s.name.toLowerCase() === name.toLowerCase())) {
        problems.push({ line, message: `section [${name}] appears more than once` });
      }
      current = { name, line, entries: [] };
      sections.push(current);
      lastEntry = undefined;
      return;
    }
    if (trimmed.startsWith('[')) {
      problems.push({ line, message: `malformed section header ${quoted(trimmed)}` });
      return;
    }
    if (/^\s/.test(raw) && lastEntry !== undefined) {
      const more = stripInlineComment(trimmed);
      lastEntry.value = lastEntry.value === '' ? more : `${lastEntry.value}\n${more}`;
      return;
    }
    const entry = ENTRY.exec(raw);
    if (entry === null) {
      problems.push({ line, message: `expected "key = value", got ${quoted(trimmed)}` });
      return;
    }
    if (current === undefined) {
      problems.push({ line, message: `${quoted(trimmed)} comes before any [section] header` });
      return;
    }
    const key = (entry[1] as string).trim();
    if (current.entries.some((e) => e.key.toLowerCase() === key.toLowerCase())) {
      problems.push({ line, message: `key "${key}" appears more than once in [${current.name}]` });
    }
    lastEntry = { key, value: stripInlineComment(entry[2] as string), line };
    current.entries.push(lastEntry);
  });
  return { sections, problems };
}

export function findSection(doc: IniDocument, name: string): IniSection | undefined {
  const lower = name.toLowerCase();
  return doc.sections.find((s) => s.name.toLowerCase() === lower);
}

export function findEntry(section: IniSection | undefined, key: string): IniEntry | undefined {
  const lower = key.toLowerCase();
  return section?.entries.find((e) => e.key.toLowerCase() === lower);
}

/**
 * Decodes an INI file's bytes. The Python tool wrote with the platform encoding, which is GBK
 * on a Chinese Windows, but read as UTF-8; accept both so such a file is not misread.
 */
export function decodeConfigText(bytes: Uint8Array): string {
  try {
    return new TextDecoder('utf-8', { fatal: true }).decode(bytes).replace(/^\uFEFF/, '');
  } catch {
    return new TextDecoder('gb18030').decode(bytes);
  }
}

/** Levenshtein distance, for "did you mean" hints on misspelt sections and keys. */
export function editDistance(a: string, b: string): number {
  const prev = Array.from({ length: b.length + 1 }, (_, i) => i);
  for (let i = 1; i <= a.length; i++) {
    let diag = prev[0] as number;
    prev[0] = i;
    for (let j = 1; j <= b.length; j++) {
      const up = prev[j] as number;
      const cost = a[i - 1] === b[j - 1] ? 0 : 1;
      prev[j] = Math.min(up + 1, (prev[j - 1] as number) + 1, diag + cost);
      diag = up;
    }
  }
  return prev[b.length] as number;
}

/** What one physical line of an INI file is, by the same rules as {@link parseIni}. */
export type IniLineInfo =
  | { kind: 'blank' | 'comment' | 'invalid'; section: string | undefined }
  | { kind: 'section'; section: string }
  | {
      kind: 'entry';
      section: string;
      key: string;
      /** Offsets in the line of the value as parseIni reads it (inline comment excluded). */
      valueStart: number;
      valueEnd: number;
    }
  | { kind: 'continuation'; section: string; key: string };

/**
 * Classifies each line (as split by /\r?\n/, BOM removed) the way {@link parseIni} reads it, for
 * editors that change single values and must leave every other byte alone.
 */
export function scanIniLines(lines: readonly string[]): IniLineInfo[] {
  const out: IniLineInfo[] = [];
  let section: string | undefined;
  let lastKey: string | undefined;
  for (const raw of lines) {
    const trimmed = raw.trim();
    if (trimmed === '' || trimmed.startsWith(';') || trimmed.startsWith('#')) {
      if (trimmed === '') lastKey = undefined;
      out.push({ kind: trimmed === '' ? 'blank' : 'comment', section });
      continue;
    }
    const header = SECTION.exec(raw);
    if (header !== null) {
      section = (header[1] as string).trim();
      lastKey = undefined;
      out.push({ kind: 'section', section });
      continue;
    }
    if (trimmed.startsWith('[')) {
      out.push({ kind: 'invalid', section });
      continue;
    }
    if (/^\s/.test(raw) && lastKey !== undefined && section !== undefined) {
      out.push({ kind: 'continuation', section, key: lastKey });
      continue;
    }
    const entry = ENTRY.exec(raw);
    if (entry === null || section === undefined) {
      out.push({ kind: 'invalid', section });
      continue;
    }
    const rest = entry[2] as string;
    const valueStart = raw.length - rest.length;
    const valueEnd = valueStart + stripInlineComment(rest).length;
    lastKey = (entry[1] as string).trim();
    out.push({ kind: 'entry', section, key: lastKey, valueStart, valueEnd });
  }
  return out;
}
