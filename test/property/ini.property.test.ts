// Property tests of the INI reader (adapters/ini.ts): what it reads back is what was written, in
// any style the box's files use; it never throws, whatever the text, and reports problems with
// lines that exist; and the line scanner the editors rely on agrees with it.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import { parseIni, scanIniLines } from '../../adapters/ini.ts';
import { asModel, iniModel, iniStyle, iniText } from './ini-model.ts';

test('parse ∘ serialize: a model written in any style reads back as itself, without problems', () => {
  fc.assert(
    fc.property(iniModel, iniStyle, (model, style) => {
      const doc = parseIni(iniText(model, style));
      assert.deepEqual(doc.problems, []);
      assert.deepEqual(asModel(doc), model);
    }),
    { numRuns: 400 },
  );
});

// Text that looks like INI, with every character the reader treats specially.
const FRAGMENT = fc.constantFrom(
  '[',
  ']',
  '[a]',
  '[A]',
  '=',
  ':',
  ';',
  '#',
  ' ',
  '\t',
  '\n',
  '\r\n',
  '\r',
  'a',
  'b',
  'key',
  'Key',
  ' ; c',
  '\uFEFF',
  '\u0000',
  '中',
);
const iniLike = fc.array(FRAGMENT, { maxLength: 60 }).map((parts) => parts.join(''));
const anyText = fc.oneof(iniLike, fc.string({ unit: 'binary', maxLength: 200 }));

test('never throws on arbitrary text; every problem, section and entry is on a line that exists', () => {
  fc.assert(
    fc.property(anyText, (text) => {
      const doc = parseIni(text);
      const lines = text.replace(/^\uFEFF/, '').split(/\r?\n/).length;
      for (const p of doc.problems) {
        assert.ok(Number.isInteger(p.line) && p.line >= 1 && p.line <= lines, `line ${p.line}`);
        assert.ok(p.message.length > 0);
      }
      for (const s of doc.sections) {
        assert.ok(s.line >= 1 && s.line <= lines);
        for (const e of s.entries) assert.ok(e.line > s.line && e.line <= lines);
      }
    }),
    { numRuns: 1000 },
  );
});

test('a key or section given twice (in any case) is always reported', () => {
  fc.assert(
    fc.property(iniLike, (text) => {
      const doc = parseIni(text);
      const names = doc.sections.map((s) => s.name.toLowerCase());
      if (new Set(names).size < names.length)
        assert.ok(doc.problems.some((p) => /section .* appears more than once/.test(p.message)));
      for (const s of doc.sections) {
        const keys = s.entries.map((e) => e.key.toLowerCase());
        if (new Set(keys).size < keys.length)
          assert.ok(doc.problems.some((p) => /key .* appears more than once/.test(p.message)));
      }
    }),
    { numRuns: 1000 },
  );
});

test('the line scanner the editors use agrees with the reader on every entry', () => {
  fc.assert(
    fc.property(
      fc.oneof(
        iniLike,
        fc.tuple(iniModel, iniStyle).map(([m, s]) => iniText(m, s)),
      ),
      (text) => {
        const doc = parseIni(text);
        if (text.includes('\u0000')) return; // the reader refuses the whole file
        const lines = text.replace(/^\uFEFF/, '').split(/\r?\n/);
        const infos = scanIniLines(lines);
        for (const s of doc.sections) {
          for (const e of s.entries) {
            const info = infos[e.line - 1];
            assert.ok(info?.kind === 'entry', `line ${e.line} is an entry`);
            assert.equal(info.key, e.key);
            assert.equal(info.section.toLowerCase(), s.name.toLowerCase());
            const raw = lines[e.line - 1] ?? '';
            assert.equal(raw.slice(info.valueStart, info.valueEnd), e.value.split('\n')[0]);
          }
        }
      },
    ),
    { numRuns: 1000 },
  );
});
