// Generators shared by the INI property tests: a model of an INI file (sections, keys, values
// the reader can hold) and its text in any of the styles the box's files use.
import fc from 'fast-check';

export interface IniModelEntry {
  key: string;
  /** Lines joined by "\n" (a multi-line value is written as indented continuation lines). */
  value: string;
}
export interface IniModelSection {
  name: string;
  entries: IniModelEntry[];
}

/** The characters of an ASCII string, one by one. */
const chars = (s: string): string[] => Array.from({ length: s.length }, (_, i) => s.charAt(i));
const letters = chars('abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ');
const LETTER = fc.constantFrom(...letters, '中', '文', 'é', '_');
const NAME_CHAR = fc.constantFrom(
  ...letters,
  ...chars('0123456789'),
  '_',
  '.',
  '-',
  ' ',
  '中',
  'é',
);

/** A section or key name: starts and ends with a letter-like character, blanks only inside. */
export const iniName = fc.oneof(
  LETTER,
  fc
    .tuple(LETTER, fc.string({ unit: NAME_CHAR, maxLength: 8 }), LETTER)
    .map(([a, mid, b]) => `${a}${mid}${b}`),
);

// Characters a value may hold: separators, comment marks, quotes, %, backslashes, CJK.
const VALUE_CHAR = fc.constantFrom(
  ...chars('abcxyzABC0123456789'),
  ' ',
  '\t',
  '#',
  ';',
  '=',
  ':',
  '%',
  '\\',
  '"',
  "'",
  '[',
  ']',
  '/',
  '$',
  '{',
  '}',
  '中',
  'é',
  '😀',
);

/** Whether `line` reads back as itself: no blanks at its ends, no " ;" (an inline comment). */
export const storableLine = (line: string): boolean => line === line.trim() && !/\s;/.test(line);

/** One line of a value (maybe empty). */
export const valueLine = fc.string({ unit: VALUE_CHAR, maxLength: 16 }).filter(storableLine);

/** A value: one line, or several (continuation lines cannot be empty or look like a header/comment). */
export const iniValue = fc.oneof(
  { weight: 4, arbitrary: valueLine },
  {
    weight: 1,
    arbitrary: fc
      .array(
        valueLine.filter((l) => l !== '' && !/^[[;#]/.test(l)),
        { minLength: 2, maxLength: 3 },
      )
      .map((lines) => lines.join('\n')),
  },
);

const unique = (x: { name: string } | { key: string }) =>
  ('name' in x ? x.name : x.key).toLowerCase();

// fc.record builds objects without a prototype: made plain so that deepEqual compares values.
const entry = fc.tuple(iniName, iniValue).map(([key, value]) => ({ key, value }));
export const iniModel: fc.Arbitrary<IniModelSection[]> = fc.uniqueArray(
  fc
    .tuple(iniName, fc.uniqueArray(entry, { maxLength: 5, selector: unique }))
    .map(([name, entries]) => ({ name, entries })),
  { maxLength: 5, selector: unique },
);

/** How the model is written: separators, comments, blank lines, line ends, BOM. */
export interface IniStyle {
  eol: '\n' | '\r\n';
  bom: boolean;
  /** Per entry, cycled: the separator between key and value. */
  separators: string[];
  /** Per line slot, cycled: a comment or blank line to put before it, or nothing. */
  fillers: string[];
  /** Per entry, cycled: an inline comment after a non-empty value. */
  inline: string[];
  /** Per section, cycled: a comment after the header. */
  headerComments: string[];
}

export const iniStyle: fc.Arbitrary<IniStyle> = fc.record({
  eol: fc.constantFrom('\n' as const, '\r\n' as const),
  bom: fc.boolean(),
  separators: fc.array(fc.constantFrom('=', ' = ', ': ', ' : ', '=  ', '\t=\t'), {
    minLength: 1,
    maxLength: 4,
  }),
  fillers: fc.array(
    fc.constantFrom('', '', '', '; a comment', '# 注释 = not a key', '', '  ; indented'),
    { minLength: 1, maxLength: 5 },
  ),
  inline: fc.array(fc.constantFrom('', '', ' ; note', '  ; a = b'), { minLength: 1, maxLength: 3 }),
  headerComments: fc.array(fc.constantFrom('', '', ' ; section', ' # section'), {
    minLength: 1,
    maxLength: 3,
  }),
});

const cycle = (xs: readonly string[], i: number): string => xs[i % xs.length] ?? '';

/** The model as INI text in `style`. */
export function iniText(model: readonly IniModelSection[], style: IniStyle): string {
  const lines: string[] = [];
  let slot = 0;
  const filler = () => {
    const f = cycle(style.fillers, slot++);
    if (f !== '' || slot % 3 === 0) lines.push(f);
  };
  let n = 0;
  model.forEach((section, s) => {
    filler();
    lines.push(`[${section.name}]${cycle(style.headerComments, s)}`);
    for (const e of section.entries) {
      const [first = '', ...more] = e.value.split('\n');
      const sep = cycle(style.separators, n);
      const comment = first === '' ? '' : cycle(style.inline, n);
      n++;
      lines.push(first === '' ? `${e.key}${sep.trimEnd()}` : `${e.key}${sep}${first}${comment}`);
      for (const m of more) lines.push(`\t${m}`);
      // A blank line would end a multi-line value; a comment line is fine.
      const f = cycle(style.fillers, slot++);
      if (f.trim() !== '') lines.push(f);
    }
  });
  return (style.bom ? '\uFEFF' : '') + lines.map((l) => l + style.eol).join('');
}

/** What parseIni gives for a document, as a model. */
export function asModel(doc: {
  sections: Array<{ name: string; entries: Array<{ key: string; value: string }> }>;
}): IniModelSection[] {
  return doc.sections.map((s) => ({
    name: s.name,
    entries: s.entries.map((e) => ({ key: e.key, value: e.value })),
  }));
}
