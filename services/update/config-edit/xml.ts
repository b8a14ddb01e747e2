// The FreeSWITCH gateway XML editor: a gateway's username, realm and password, in place.
import { ConfigError } from '../../../adapters/errors.ts';
import { findSection, parseIni } from '../../../adapters/ini.ts';

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
