// Surgical config edits: only the values set change, every other byte of the file stays.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { parseDocument } from 'yaml';
import { ConfigError } from '../../adapters/errors.ts';
import { findEntry, findSection, parseIni } from '../../adapters/ini.ts';
import {
  appYmlValues,
  applyRemoteConfig,
  gatewayParamsFromConfig,
  injectAppYmlKeys,
  mergeIniText,
  REMOTE_CONF_MAPPING,
  setGatewayParams,
} from '../../services/update/config-edit.ts';

const crlf = (s: string) => s.replace(/\n/g, '\r\n');

function iniValue(text: string, section: string, key: string): string | undefined {
  return findEntry(findSection(parseIni(text), section), key)?.value;
}

function configError(fn: () => unknown): ConfigError {
  try {
    fn();
  } catch (err) {
    assert.ok(err instanceof ConfigError, `expected a ConfigError, got ${String(err)}`);
    return err;
  }
  assert.fail('expected a ConfigError, nothing was thrown');
}

// -- settings.ini partial merge ---------------------------------------------------------------

const SETTINGS = `; boxkeeper / RemoteManager settings
[general]
host_addr=http://10.0.0.1:8080 ; cloud platform
env=prod
logging=info

[paths] ; relative to box_root
box_root=D:\\QTHZ
config=\\conf\\configuration.ini
; FreeSWITCH install dir
fs=C:\\Program Files\\FreeSWITCH

; timers, seconds
[timer]
heartbeat=60
versionCheck=3600
# end of timers

`;

test('mergeIniText overwrites, adds and appends while keeping comments, case and CRLF', () => {
  const original = `\uFEFF${crlf(SETTINGS)}`;
  const patch = `[GENERAL]
HOST_ADDR = http://10.0.0.9:8080
env = prod

[timer]
keepAlive = 30

[update]
jitter = 120
`;
  const { text, changes } = mergeIniText(original, patch);
  const expected = `\uFEFF${crlf(`; boxkeeper / RemoteManager settings
[general]
host_addr=http://10.0.0.9:8080 ; cloud platform
env=prod
logging=info

[paths] ; relative to box_root
box_root=D:\\QTHZ
config=\\conf\\configuration.ini
; FreeSWITCH install dir
fs=C:\\Program Files\\FreeSWITCH

; timers, seconds
[timer]
heartbeat=60
versionCheck=3600
keepAlive=30
# end of timers

[update]
jitter=120
`)}`;
  assert.equal(text, expected);
  assert.deepEqual(changes, [
    {
      section: 'general',
      key: 'host_addr',
      from: 'http://10.0.0.1:8080',
      to: 'http://10.0.0.9:8080',
    },
    { section: 'timer', key: 'keepAlive', from: null, to: '30' },
    { section: 'update', key: 'jitter', from: null, to: '120' },
  ]);
});

test('mergeIniText is idempotent and leaves an up-to-date file byte-identical', () => {
  const patch = '[general]\nhost_addr=http://10.0.0.9:8080\n[new]\nx = 1\n';
  const once = mergeIniText(SETTINGS, patch).text;
  const twice = mergeIniText(once, patch);
  assert.equal(twice.text, once);
  assert.deepEqual(twice.changes, []);
  const same = mergeIniText(SETTINGS, '[General]\nENV=prod\n[timer]\nheartbeat = 60\n');
  assert.equal(same.text, SETTINGS);
  assert.deepEqual(same.changes, []);
});

test('mergeIniText writes %, backslashes and # verbatim and replaces a multi-line value', () => {
  const original = '[db]\npassword = old\nhosts = a\n    b\n    c\nport = 1\n';
  const patch = '[db]\npassword = p%40ss\\w#rd\nhosts = x\n  y\n';
  const { text } = mergeIniText(original, patch);
  assert.equal(text, '[db]\npassword = p%40ss\\w#rd\nhosts = x\n\ty\nport = 1\n');
  assert.equal(iniValue(text, 'db', 'password'), 'p%40ss\\w#rd');
  assert.equal(iniValue(text, 'db', 'hosts'), 'x\ny');
});

test('mergeIniText keeps a file without final newline without one', () => {
  assert.equal(mergeIniText('[a]\nx=1', '[a]\ny=2\n').text, '[a]\nx=1\ny=2');
  assert.equal(mergeIniText('[a]\nx=1', '[b]\ny=2\n').text, '[a]\nx=1\n\n[b]\ny=2');
});

test('mergeIniText refuses an unreadable patch or original, naming the file and line', () => {
  const badPatch = configError(() =>
    mergeIniText(SETTINGS, 'orphan = 1\n', 'settings/settings.ini'),
  );
  assert.match(badPatch.message, /settings\/settings\.ini \(patch\):1: .*before any \[section\]/);
  const dup = configError(() => mergeIniText('[a]\nx=1\nX=2\n', '[a]\nx=3\n', 'settings.ini'));
  assert.match(dup.message, /settings\.ini:3: .*appears more than once/);
});

// -- configuration.ini from the cloud's argumentConfigMap ------------------------------------

const CONFIGURATION = `[QTHZ]
version = 1.0.0
code = 100
phoneEncryption = 0

[appkey]
key = ak
; written by the installer
[FreeSWITCH]
callboxUsername = 1001
callboxPassword = cb-pass
callboxRealm = 127.0.0.1
numconvertUsername = numconvert
numconvertPassword = nc-pass
numconvertRealm = 127.0.0.2

[city]
num = 021
out = 0

[dbfile]
name = box
`;

test('the remote mapping is exactly the table of §5.3', () => {
  assert.deepEqual(
    Object.entries(REMOTE_CONF_MAPPING).map(([k, v]) => `${k}>${v.section}.${v.key}`),
    [
      'callboxPassword>FreeSWITCH.callboxPassword',
      'numconvertRealm>FreeSWITCH.numconvertRealm',
      'callboxRealm>FreeSWITCH.callboxRealm',
      'numconvertUsername>FreeSWITCH.numconvertUsername',
      'outnum>city.out',
      'citynum>city.num',
      'callboxUsername>FreeSWITCH.callboxUsername',
      'numconvertPassword>FreeSWITCH.numconvertPassword',
      'hostAdr>host.adr',
      'dbfileName>dbfile.name',
      'phoneEncryption>QTHZ.phoneEncryption',
    ],
  );
});

test('applyRemoteConfig sets version, code and mapped keys; reports unknown keys', () => {
  const { text, applied, unknown } = applyRemoteConfig(crlf(CONFIGURATION), {
    versionNum: '1.2.0',
    versionCode: '120',
    map: {
      callboxPassword: 'p%d&50%',
      citynum: 10,
      phoneEncryption: true,
      hostAdr: '10.1.1.1:9090',
      dbfileName: 'box_v2',
      colour: 'blue',
      constructor: 'x',
    },
  });
  assert.deepEqual(applied, [
    'callboxPassword',
    'citynum',
    'phoneEncryption',
    'hostAdr',
    'dbfileName',
  ]);
  assert.deepEqual(unknown, ['colour', 'constructor']);
  // Only the changed lines differ; [host] did not exist and is appended.
  const expected = crlf(
    CONFIGURATION.replace('version = 1.0.0', 'version = 1.2.0')
      .replace('code = 100', 'code = 120')
      .replace('phoneEncryption = 0', 'phoneEncryption = true')
      .replace('callboxPassword = cb-pass', 'callboxPassword = p%d&50%')
      .replace('num = 021', 'num = 10')
      .replace('name = box', 'name = box_v2') + '\n[host]\nadr = 10.1.1.1:9090\n',
  );
  assert.equal(text, expected);
});

test('applyRemoteConfig creates a missing [QTHZ] and is idempotent', () => {
  const update = { versionNum: '2', versionCode: '200', map: { outnum: '9' } };
  const first = applyRemoteConfig('[city]\nnum = 021\n', update);
  assert.equal(first.text, '[city]\nnum = 021\nout = 9\n\n[QTHZ]\nversion = 2\ncode = 200\n');
  const again = applyRemoteConfig(first.text, update);
  assert.equal(again.text, first.text);
  assert.deepEqual(again.changes, []);
});

test('applyRemoteConfig refuses null, objects, arrays and path-like DB names, naming the key', () => {
  const err = configError(() =>
    applyRemoteConfig(
      CONFIGURATION,
      {
        versionNum: '2',
        versionCode: '2',
        map: { callboxPassword: null, hostAdr: { ip: 'x' }, citynum: [1], dbfileName: '../etc/x' },
      },
      'conf/configuration.ini',
    ),
  );
  assert.equal(err.problems.length, 4);
  assert.match(
    err.message,
    /\[FreeSWITCH\] callboxPassword: remote key "callboxPassword" must be a string, number or boolean, got null/,
  );
  assert.match(err.message, /remote key "hostAdr" .* got an object/);
  assert.match(err.message, /remote key "citynum" .* got an array/);
  assert.match(err.message, /remote key "dbfileName" "\.\.\/etc\/x" must be a plain file name/);
  assert.match(err.message, /conf\/configuration\.ini/);
});

test('applyRemoteConfig refuses a value the INI reader would cut at " ;"', () => {
  const err = configError(() =>
    applyRemoteConfig(CONFIGURATION, {
      versionNum: '2',
      versionCode: '2',
      map: { callboxPassword: 'abc ;def' },
    }),
  );
  assert.match(err.message, /callboxPassword: value "abc ;def" cannot be stored/);
});

// -- FreeSWITCH gateways ----------------------------------------------------------------------

test('gatewayParamsFromConfig maps keys case-insensitively, reports unknown, skips empty', () => {
  const params = gatewayParamsFromConfig(`[freeswitch]
CALLBOXUSERNAME = 1001
callboxpassword = s3cret
callboxRealm =
numconvertRealm = 10.0.0.2
callboxProxy = 10.0.0.3
`);
  assert.deepEqual(params, {
    callbox: { username: '1001', password: 's3cret' },
    numconvert: { realm: '10.0.0.2' },
    unknown: ['callboxProxy'],
  });
});

const CALLBOX_XML = `<?xml version="1.0" encoding="utf-8"?>
<include>
  <!-- old line, kept for reference:
  <param name="password" value="legacy"/>
  -->
  <gateway name="callbox">
    <param name="username" value="1001"/>
    <param value='127.0.0.1' name='realm' />
    <param name="password" value="cb-pass"/>
    <param name="register" value="true"/>
    <variables>
      <variable name="password" value="not-a-gateway-param" direction="outbound"/>
    </variables>
  </gateway>
</include>
`;

test('setGatewayParams edits only the value attributes, in either quote style and order', () => {
  const { text, gateway, changed } = setGatewayParams(
    crlf(CALLBOX_XML),
    { username: '1002', realm: '10.0.0.7', password: 'new"pw' },
    'callbox.xml',
  );
  assert.equal(gateway, 'callbox');
  assert.deepEqual(changed, ['username', 'realm', 'password']);
  assert.equal(
    text,
    crlf(
      CALLBOX_XML.replace('value="1001"', 'value="1002"')
        .replace("value='127.0.0.1'", "value='10.0.0.7'")
        .replace('value="cb-pass"', 'value="new&quot;pw"'),
    ),
  );
});

test('setGatewayParams escapes values and is idempotent', () => {
  const params = { password: `a&b<c>"d'e` };
  const first = setGatewayParams(CALLBOX_XML.replace('value="cb-pass"', "value='cb-pass'"), params);
  assert.match(first.text, /<param name="password" value='a&amp;b&lt;c&gt;&quot;d&apos;e'\/>/);
  const again = setGatewayParams(first.text, params);
  assert.equal(again.text, first.text);
  assert.deepEqual(again.changed, []);
  assert.equal(setGatewayParams(CALLBOX_XML, { username: '1001' }).text, CALLBOX_XML);
});

test('setGatewayParams adds a missing param after the last one, indented like it', () => {
  const xml = `<include>
    <gateway name="numconvert">
        <param name="username" value="numconvert"/>
        <param name="register" value="false"></param>
    </gateway>
</include>`;
  const { text, changed, gateway } = setGatewayParams(xml, {
    username: 'numconvert',
    realm: '10.0.0.2',
    password: 'x',
  });
  assert.equal(gateway, 'numconvert');
  assert.deepEqual(changed, ['realm', 'password']);
  assert.equal(
    text,
    `<include>
    <gateway name="numconvert">
        <param name="username" value="numconvert"/>
        <param name="register" value="false"></param>
        <param name="realm" value="10.0.0.2"/>
        <param name="password" value="x"/>
    </gateway>
</include>`,
  );
});

test('setGatewayParams fills a gateway that has no params yet', () => {
  const { text } = setGatewayParams('<include>\n  <gateway name="g">\n  </gateway>\n</include>\n', {
    realm: 'r',
  });
  assert.equal(
    text,
    '<include>\n  <gateway name="g">\n    <param name="realm" value="r"/>\n  </gateway>\n</include>\n',
  );
});

test('setGatewayParams refuses a file without gateway or with broken XML, naming it', () => {
  const none = configError(() =>
    setGatewayParams(
      '<include>\n  <!-- <gateway name="x"> -->\n</include>\n',
      { realm: 'r' },
      'numconvert.xml',
    ),
  );
  assert.match(none.message, /numconvert\.xml: no <gateway name="…"> element/);
  const broken = configError(() =>
    setGatewayParams(
      '<include>\n  <gateway name="x">\n</include>\n',
      { realm: 'r' },
      'callbox.xml',
    ),
  );
  assert.match(
    broken.message,
    /callbox\.xml:3: not well-formed XML: <\/include> does not close <gateway>/,
  );
});

// -- application.yml --------------------------------------------------------------------------

const INI_FOR_YML = `[QTHZ]
version = 1
code = 1
phoneEncryption = 1
[appkey]
key = ak-1
[accessid]
id = id-1
[accesssecret]
secret = se%cret
[city]
num = 0571
[host]
adr = 10.0.0.5:8081
[dbfile]
name = box_v2
`;

test('appYmlValues builds the seven §5.5 values with the platform separator', () => {
  assert.deepEqual(appYmlValues(INI_FOR_YML, 'C:\\QTHZ\\data', 'win32'), {
    appkey: '${APP_KEY:ak-1}',
    'access-key-id': '${ACCESS_KEY_ID:id-1}',
    'access-key-secret': '${ACCESS_KEY_SECRET:se%cret}',
    'city-code': '${CITY_CODE:0571}',
    'url-port': '${ICB-PORT:10.0.0.5:8081}',
    'spring.datasource.druid.url': 'jdbc:sqlite:C:\\QTHZ\\data\\box_v2',
    'phone-num-encryption': '1',
  });
  assert.equal(
    appYmlValues(INI_FOR_YML, '/srv/box/data/', 'linux')['spring.datasource.druid.url'],
    'jdbc:sqlite:/srv/box/data/box_v2',
  );
});

test('appYmlValues names every missing key', () => {
  const err = configError(() => appYmlValues('[QTHZ]\nversion = 1\n', '/d', 'linux', 'conf.ini'));
  assert.equal(err.problems.length, 7);
  assert.match(err.message, /conf\.ini \[dbfile\] name: missing/);
  assert.match(err.message, /conf\.ini \[QTHZ\] phoneEncryption: missing/);
});

const APP_YML = `# icb-box application configuration (Spring Boot)
server:
    port: 8080   # local API
spring:
    datasource:
        druid:
            url: "jdbc:sqlite:/srv/box/data/box.db"
            driver-class-name: org.sqlite.JDBC
            filters: [stat, wall]
appkey: '\${APP_KEY:old}'
access-key-id: \${ACCESS_KEY_ID:id-1}
access-key-secret: \${ACCESS_KEY_SECRET:old}
city-code: \${CITY_CODE:0571}
url-port: \${ICB-PORT:10.0.0.5:8081}
# 0 = phone numbers in clear, 1 = encrypted
phone-num-encryption: 1
`;

test('injectAppYmlKeys replaces values in place, keeping comments, quoting and layout', () => {
  const values = appYmlValues(INI_FOR_YML, '/srv/box/data', 'linux');
  const { text, changed } = injectAppYmlKeys(crlf(APP_YML), values);
  assert.deepEqual(changed, ['appkey', 'access-key-secret', 'spring.datasource.druid.url']);
  assert.equal(
    text,
    crlf(
      APP_YML.replace("'${APP_KEY:old}'", "'${APP_KEY:ak-1}'")
        .replace('${ACCESS_KEY_SECRET:old}', '${ACCESS_KEY_SECRET:se%cret}')
        .replace('"jdbc:sqlite:/srv/box/data/box.db"', '"jdbc:sqlite:/srv/box/data/box_v2"'),
    ),
  );
  const again = injectAppYmlKeys(text, values);
  assert.equal(again.text, text);
  assert.deepEqual(again.changed, []);
});

test('injectAppYmlKeys adds missing keys, nested ones as a path, comments surviving', () => {
  const yml = `# header comment
server:
  port: 8080 # local API
spring:
  jpa:
    show-sql: false
`;
  const values = appYmlValues(INI_FOR_YML, 'C:\\QTHZ\\data', 'win32');
  const { text, changed } = injectAppYmlKeys(yml, values);
  assert.equal(changed.length, 7);
  const doc = parseDocument(text);
  assert.deepEqual(doc.errors, []);
  assert.equal(
    doc.getIn(['spring', 'datasource', 'druid', 'url']),
    'jdbc:sqlite:C:\\QTHZ\\data\\box_v2',
  );
  assert.equal(doc.getIn(['spring', 'jpa', 'show-sql']), false);
  assert.equal(doc.get('url-port'), '${ICB-PORT:10.0.0.5:8081}');
  assert.equal(doc.get('phone-num-encryption'), '1');
  assert.match(text, /^# header comment\nserver:\n {2}port: 8080 # local API\nspring:\n/);
  assert.equal(injectAppYmlKeys(text, values).text, text);
});

test('injectAppYmlKeys appends a missing top-level key without touching the rest', () => {
  const { text } = injectAppYmlKeys(APP_YML, {
    'city-code': '${CITY_CODE:0571}',
    extra: 'yes: no',
  });
  assert.equal(text, `${APP_YML}extra: "yes: no"\n`);
});

test('injectAppYmlKeys refuses a yml that does not parse, naming the file', () => {
  const err = configError(() =>
    injectAppYmlKeys('server:\n  port: [8080\n', { appkey: 'x' }, 'C:\\QTHZ\\application.yml'),
  );
  assert.match(err.message, /C:\\QTHZ\\application\.yml(:\d+)?: not valid YAML/);
});
