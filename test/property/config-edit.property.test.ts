// Property tests of the config editors (services/update/config-edit.ts): the values set read back,
// applying twice equals applying once, and every other line — comments, unknown sections and
// keys, blank lines — stays byte for byte (line ends included).
import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import { parseDocument } from 'yaml';
import { ConfigError } from '../../adapters/errors.ts';
import { findEntry, findSection, parseIni, scanIniLines } from '../../adapters/ini.ts';
import {
  applyRemoteConfig,
  injectAppYmlKeys,
  mergeIniText,
  REMOTE_CONF_MAPPING,
  setGatewayParams,
  type GatewayParams,
} from '../../services/update/config-edit.ts';
import {
  asModel,
  iniModel,
  iniName,
  iniStyle,
  iniText,
  iniValue,
  type IniModelSection,
} from './ini-model.ts';

const lower = (s: string) => s.toLowerCase();
const id = (section: string, key: string) => `${lower(section)}\u0000${lower(key)}`;
const linesOf = (text: string) => text.replace(/^\uFEFF/, '').split(/\r?\n/);

/** A bare LF in a file whose line ends are all CRLF. */
const bareLf = (text: string) => /(^|[^\r])\n/.test(text);

/**
 * The lines that are not entries (or continuations) of the edited keys, up to the first
 * section the original did not have (new sections are appended at the end).
 */
function untouched(
  text: string,
  edited: ReadonlySet<string>,
  known: ReadonlySet<string>,
): string[] {
  const lines = linesOf(text);
  const infos = scanIniLines(lines);
  const out: string[] = [];
  for (const [i, info] of infos.entries()) {
    if (info.kind === 'section' && !known.has(lower(info.section))) break;
    if (
      (info.kind === 'entry' || info.kind === 'continuation') &&
      edited.has(id(info.section, info.key))
    )
      continue;
    out.push(lines[i] ?? '');
  }
  while (out.at(-1) === '') out.pop();
  return out;
}

/** The model with `edits` applied the way the editor does: in place, else added. */
function applied(
  model: readonly IniModelSection[],
  edits: ReadonlyArray<{ section: string; key: string; value: string }>,
): IniModelSection[] {
  const out = model.map((s) => ({ name: s.name, entries: s.entries.map((e) => ({ ...e })) }));
  for (const e of edits) {
    let section = out.find((s) => lower(s.name) === lower(e.section));
    if (section === undefined) {
      section = { name: e.section, entries: [] };
      out.push(section);
    }
    const entry = section.entries.find((x) => lower(x.key) === lower(e.key));
    if (entry === undefined) section.entries.push({ key: e.key, value: e.value });
    else entry.value = e.value;
  }
  return out;
}

// ---- mergeIniText (settings.ini from a patch) -------------------------------------------------

/** An original, and edits of its keys, of new keys in its sections, and of new sections. */
const mergeCase = fc.tuple(iniModel, iniStyle).chain(([model, style]) => {
  const sections = model.map((s) => s.name);
  const keysOf = (name: string) =>
    model.find((s) => lower(s.name) === lower(name))?.entries.map((e) => e.key) ?? [];
  const edit = fc
    .oneof(sections.length > 0 ? fc.constantFrom(...sections) : iniName, iniName)
    .chain((section) => {
      const keys = keysOf(section);
      return fc.record({
        // Any case: keys and sections match case-insensitively.
        section: fc.constantFrom(section, section.toUpperCase(), section.toLowerCase()),
        key: keys.length > 0 ? fc.oneof(fc.constantFrom(...keys), iniName) : iniName,
        value: iniValue,
      });
    });
  return fc.tuple(
    fc.constant(model),
    fc.constant(style),
    fc.uniqueArray(edit, { maxLength: 6, selector: (e) => id(e.section, e.key) }),
  );
});

/** A patch's settings.ini holding `edits` (sections in their first spelling). */
function patchText(edits: ReadonlyArray<{ section: string; key: string; value: string }>): string {
  const model: IniModelSection[] = [];
  for (const e of edits) {
    let s = model.find((x) => lower(x.name) === lower(e.section));
    if (s === undefined) model.push((s = { name: e.section, entries: [] }));
    s.entries.push({ key: e.key, value: e.value });
  }
  return iniText(model, {
    eol: '\n',
    bom: false,
    separators: ['='],
    fillers: [''],
    inline: [''],
    headerComments: [''],
  });
}

test('mergeIniText: the edited keys read back, and every other line stays as it was', () => {
  fc.assert(
    fc.property(mergeCase, ([model, style, edits]) => {
      const original = iniText(model, style);
      const patch = patchText(edits);
      // The patch's own sections spell the section as the patch does; existing ones keep theirs.
      const expected = applied(
        model,
        edits.map((e) => {
          const first = edits.find((x) => lower(x.section) === lower(e.section));
          return { ...e, section: first?.section ?? e.section };
        }),
      );
      const r = mergeIniText(original, patch);
      const doc = parseIni(r.text);
      assert.deepEqual(doc.problems, []);
      assert.deepEqual(asModel(doc), expected);
      const edited = new Set(edits.map((e) => id(e.section, e.key)));
      const known = new Set(model.map((s) => lower(s.name)));
      assert.deepEqual(untouched(r.text, edited, known), untouched(original, edited, known));
      assert.equal(r.text.startsWith('\uFEFF'), style.bom, 'the BOM is kept');
      if (original.includes('\r\n')) assert.ok(!bareLf(r.text), 'CRLF stays CRLF');
      if (edits.length === 0) assert.equal(r.text, original);
    }),
    { numRuns: 300 },
  );
});

test('mergeIniText is idempotent: merging twice equals merging once', () => {
  fc.assert(
    fc.property(mergeCase, ([model, style, edits]) => {
      const patch = patchText(edits);
      const once = mergeIniText(iniText(model, style), patch);
      const twice = mergeIniText(once.text, patch);
      assert.equal(twice.text, once.text);
      assert.deepEqual(twice.changes, []);
    }),
    { numRuns: 300 },
  );
});

// ---- applyRemoteConfig (configuration.ini from the cloud's argumentConfigMap) ----------------

const REMOTE_KEYS = Object.keys(REMOTE_CONF_MAPPING);
const CONFIG_SECTIONS = ['QTHZ', 'appkey', 'FreeSWITCH', 'city', 'host', 'dbfile'];
const safeName = fc.stringMatching(/^[A-Za-z0-9][A-Za-z0-9._-]{0,15}$/);

/** A configuration.ini: some of the box's sections (any keys) and unknown ones, in any style. */
const configText = fc
  .tuple(
    fc.subarray(CONFIG_SECTIONS),
    fc.array(
      fc.tuple(fc.constantFrom(...REMOTE_KEYS, 'version', 'code', 'name', 'num'), iniValue),
      {
        maxLength: 8,
      },
    ),
    iniModel,
    iniStyle,
  )
  .map(([names, entries, extra, style]) => {
    const model: IniModelSection[] = names.map((name) => ({ name, entries: [] }));
    for (const [i, [key, value]] of entries.entries()) {
      const s = model[i % Math.max(1, model.length)];
      if (s !== undefined && !s.entries.some((e) => lower(e.key) === lower(key)))
        s.entries.push({ key, value });
    }
    const taken = new Set(model.map((s) => lower(s.name)));
    model.push(...extra.filter((s) => !taken.has(lower(s.name))));
    return { model, style, text: iniText(model, style) };
  });

const remoteValue = fc.oneof(
  iniValue,
  fc.integer(),
  fc.double({ noNaN: true, noDefaultInfinity: true }),
  fc.boolean(),
);
const remoteMap = fc
  .tuple(
    fc.dictionary(fc.constantFrom(...REMOTE_KEYS.filter((k) => k !== 'dbfileName')), remoteValue),
    fc.option(safeName, { nil: undefined }),
    fc.dictionary(fc.stringMatching(/^x[a-z]{1,6}$/), fc.jsonValue({ maxDepth: 2 })),
  )
  .map(([mapped, db, unknown]): Record<string, unknown> => ({
    ...unknown,
    ...mapped,
    ...(db === undefined ? {} : { dbfileName: db }),
  }));

test('applyRemoteConfig: idempotent, the mapped keys read back, every other line kept', () => {
  fc.assert(
    fc.property(
      configText,
      safeName,
      safeName,
      remoteMap,
      (config, versionNum, versionCode, map) => {
        const update = { versionNum, versionCode, map };
        const once = applyRemoteConfig(config.text, update);
        const twice = applyRemoteConfig(once.text, update);
        assert.equal(twice.text, once.text);
        assert.deepEqual(twice.changes, []);

        const doc = parseIni(once.text);
        assert.deepEqual(doc.problems, []);
        const read = (s: string, k: string) => findEntry(findSection(doc, s), k)?.value;
        assert.equal(read('QTHZ', 'version'), versionNum);
        assert.equal(read('QTHZ', 'code'), versionCode);
        const edited = new Set([id('QTHZ', 'version'), id('QTHZ', 'code')]);
        for (const [key, value] of Object.entries(map)) {
          const target = REMOTE_CONF_MAPPING[key];
          if (target === undefined) {
            assert.ok(once.unknown.includes(key));
            continue;
          }
          assert.equal(read(target.section, target.key), String(value as string | number));
          edited.add(id(target.section, target.key));
        }
        const known = new Set(config.model.map((s) => lower(s.name)));
        assert.deepEqual(
          untouched(once.text, edited, known),
          untouched(config.text, edited, known),
        );
        if (config.text.includes('\r\n')) assert.ok(!bareLf(once.text));
      },
    ),
    { numRuns: 300 },
  );
});

test('applyRemoteConfig: any string value is either stored exactly or refused with a ConfigError', () => {
  fc.assert(
    fc.property(configText, fc.string({ unit: 'binary', maxLength: 12 }), (config, value) => {
      const update = { versionNum: 'V1.8', versionCode: 'c0de', map: { citynum: value } };
      try {
        const r = applyRemoteConfig(config.text, update);
        assert.equal(findEntry(findSection(parseIni(r.text), 'city'), 'num')?.value, value);
      } catch (err) {
        assert.ok(err instanceof ConfigError, String(err));
      }
    }),
    { numRuns: 500 },
  );
});

// ---- setGatewayParams (FreeSWITCH gateway XMLs) -----------------------------------------------

const PARAMS = ['username', 'realm', 'password'] as const;
const xmlValue = fc.string({
  unit: fc.constantFrom('a', 'B', '7', ' ', '&', '<', '>', '"', "'", ';', '中', '.', '-'),
  maxLength: 10,
});
const quote = fc.constantFrom('"', "'");

/** A gateway file: some of the three params (either quote, self-closed or not), others, comments. */
const gatewayXml = fc
  .record({
    present: fc.subarray([...PARAMS]),
    values: fc.array(fc.stringMatching(/^[A-Za-z0-9.@-]{0,8}$/), { minLength: 3, maxLength: 3 }),
    quotes: fc.array(quote, { minLength: 4, maxLength: 4 }),
    closed: fc.array(fc.boolean(), { minLength: 3, maxLength: 3 }),
    others: fc.subarray(['register', 'proxy', 'expire-seconds']),
    comment: fc.boolean(),
    indent: fc.constantFrom('  ', '    ', '\t'),
    eol: fc.constantFrom('\n', '\r\n'),
  })
  .map((g) => {
    const q = (i: number) => g.quotes[i % 4] ?? '"';
    const params = [...g.present, ...g.others].map((name, i) => {
      const value = PARAMS.includes(name as never) ? (g.values[i % 3] ?? '') : 'true';
      const tag = `<param name=${q(i)}${name}${q(i)} value=${q(i + 1)}${value}${q(i + 1)}`;
      return `${g.indent}${g.indent}${g.closed[i % 3] === true ? `${tag}></param>` : `${tag}/>`}`;
    });
    const lines = [
      '<include>',
      ...(g.comment ? [`${g.indent}<!-- <param name="password" value="old"/> -->`] : []),
      `${g.indent}<gateway name="callbox">`,
      ...params,
      `${g.indent}</gateway>`,
      '</include>',
      '',
    ];
    return { text: lines.join(g.eol), eol: g.eol };
  });

const gatewayParams = fc
  .record({ username: xmlValue, realm: xmlValue, password: xmlValue }, { requiredKeys: [] })
  .map((p): GatewayParams => ({ ...p }));

test('setGatewayParams: idempotent, the values read back, other lines untouched', () => {
  fc.assert(
    fc.property(gatewayXml, gatewayParams, (xml, params) => {
      const once = setGatewayParams(xml.text, params, 'callbox.xml');
      const twice = setGatewayParams(once.text, params, 'callbox.xml');
      assert.equal(twice.text, once.text);
      assert.deepEqual(twice.changed, [], 'every value reads back as set');
      const edited = Object.keys(params);
      const isEdited = (line: string) =>
        edited.some((name) => line.includes(`name="${name}"`) || line.includes(`name='${name}'`));
      const before = linesOf(xml.text).filter((l) => !isEdited(l));
      const after = linesOf(once.text).filter((l) => !isEdited(l));
      assert.deepEqual(after, before);
      if (xml.eol === '\r\n') assert.ok(!bareLf(once.text));
    }),
    { numRuns: 300 },
  );
});

// ---- injectAppYmlKeys (application.yml) ---------------------------------------------------------

const YML_KEYS = ['appkey', 'access-key-id', 'city-code', 'url-port', 'phone-num-encryption'];
const ymlScalar = fc.oneof(
  fc.stringMatching(/^[A-Za-z0-9]{1,8}$/),
  fc.stringMatching(/^\$\{[A-Z_]{1,8}:[a-z0-9.:/]{0,10}\}$/),
  fc.string({
    unit: fc.constantFrom('a', '1', ' ', ':', '#', '"', "'", '{', '-', '中'),
    maxLength: 8,
  }),
);
const render = fc.constantFrom(
  (v: string) => JSON.stringify(v),
  (v: string) => `'${v.replace(/'/g, "''")}'`,
);

/** An application.yml: some of the keys (quoted either way), comments, other keys, a nested URL. */
const appYml = fc
  .record({
    present: fc.subarray(YML_KEYS),
    values: fc.array(fc.stringMatching(/^[A-Za-z0-9]{0,6}$/), { minLength: 5, maxLength: 5 }),
    renders: fc.array(render, { minLength: 5, maxLength: 5 }),
    comments: fc.boolean(),
    eol: fc.constantFrom('\n', '\r\n'),
  })
  .map((y) => {
    const lines = [
      ...(y.comments ? ['# icb-box (Spring Boot)'] : []),
      'server:',
      '  port: 8080 # the box app',
      'spring:',
      '  datasource:',
      '    druid:',
      '      url: "jdbc:sqlite:/box/data/ztdb"',
      '      driver-class-name: org.sqlite.JDBC',
      ...y.present.map((k, i) => `${k}: ${(y.renders[i] ?? JSON.stringify)(y.values[i] ?? '')}`),
      ...(y.comments ? ['# the end'] : []),
      '',
    ];
    return { text: lines.join(y.eol), eol: y.eol };
  });

const ymlValues = fc
  .tuple(
    fc.subarray(YML_KEYS, { minLength: 1 }),
    fc.array(ymlScalar, { minLength: 6, maxLength: 6 }),
  )
  .map(([keys, values]) => {
    const out: Record<string, string> = {};
    keys.forEach((k, i) => (out[k] = values[i] ?? ''));
    out['spring.datasource.druid.url'] = `jdbc:sqlite:/box/data/${values[5] ?? 'db'}`;
    return out;
  });

test('injectAppYmlKeys: idempotent, the values read back, comments and other keys kept', () => {
  fc.assert(
    fc.property(appYml, ymlValues, (yml, values) => {
      const once = injectAppYmlKeys(yml.text, values);
      const twice = injectAppYmlKeys(once.text, values);
      assert.equal(twice.text, once.text);
      assert.deepEqual(twice.changed, []);
      const doc = parseDocument(once.text);
      assert.deepEqual(doc.errors, []);
      for (const [key, value] of Object.entries(values)) {
        const path = key.includes('.') ? key.split('.') : [key];
        assert.equal(String(doc.getIn(path)), value, key);
      }
      assert.equal(doc.getIn(['server', 'port']), 8080);
      assert.equal(
        doc.getIn(['spring', 'datasource', 'druid', 'driver-class-name']),
        'org.sqlite.JDBC',
      );
      // Lines of keys not set are byte-identical (the edits are in place).
      const set = Object.keys(values).map((k) => `${k.split('.').at(-1) ?? k}:`);
      const keep = (l: string) => !set.some((k) => l.trimStart().startsWith(k));
      assert.deepEqual(linesOf(once.text).filter(keep), linesOf(yml.text).filter(keep));
      if (yml.eol === '\r\n') assert.ok(!bareLf(once.text));
    }),
    { numRuns: 300 },
  );
});
