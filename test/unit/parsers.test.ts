import assert from 'node:assert/strict';
import { test } from 'node:test';
import { parseShowCalls, parseSofiaStatus, registrationCode } from '../../adapters/freeswitch.ts';
import { defaultRouteAddressWindows, defaultRouteInterface } from '../../adapters/system.ts';
import { formatGigabytes } from '../../services/agent/heartbeat.ts';

const SOFIA = [
  '                     Name\t   Type\t                                       Data\tState',
  '=================================================================================================',
  '            external::callbox\tgateway\t                    sip:1001@10.1.2.3\tREGED',
  '         external::numconvert\tgateway\t                 sip:nc@10.1.2.4\tFAIL_WAIT',
  '         external::other\tgateway\tsip:x@y\tTRYING',
  '                       external\tprofile\t           sip:mod_sofia@10.1.2.3:5080\tRUNNING (0)',
  '=================================================================================================',
  '2 profiles 0 aliases',
];

test('sofia status is parsed per line whatever the line ends, tabs or alignment', () => {
  for (const eol of ['\n', '\r\n']) {
    const states = parseSofiaStatus(SOFIA.join(eol));
    assert.deepEqual(
      [...states],
      [
        ['external::callbox', 'REGED'],
        ['external::numconvert', 'FAIL_WAIT'],
        ['external::other', 'TRYING'],
      ],
    );
  }
  const spaces = 'external::callbox    gateway    sip:a@b    NOREG\r\n';
  assert.equal(parseSofiaStatus(spaces).get('external::callbox'), 'NOREG');
  assert.equal(parseSofiaStatus('').size, 0);
});

test('registration codes: NOREG is "not registered" (2), not unknown as in the Python tool', () => {
  assert.equal(registrationCode('REGED'), 1);
  assert.equal(registrationCode('FAIL_WAIT'), 0);
  assert.equal(registrationCode('NOREG'), 2);
  assert.equal(registrationCode('UNREGED'), 2);
  assert.equal(registrationCode('TRYING'), -1);
  assert.equal(registrationCode(undefined), -1);
});

test('show calls count comes from the "N total." line (the Python tool read its last digit)', () => {
  assert.equal(parseShowCalls('uuid,direction\n\n0 total.\n'), 0);
  assert.equal(parseShowCalls('uuid,direction\nrow\n...\n\n12 total.\r\n'), 12);
  assert.throws(() => parseShowCalls('-ERR no reply'), /cannot read the call count/);
});

test('the default route is found in /proc/net/route, lowest metric first', () => {
  const table = [
    'Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT',
    'wlan0\t00000000\t0101A8C0\t0003\t0\t0\t600\t00000000\t0\t0\t0',
    'eth0\t00000000\t0100000A\t0003\t0\t0\t100\t00000000\t0\t0\t0',
    'eth0\t0000000A\t00000000\t0001\t0\t0\t100\t00FFFFFF\t0\t0\t0',
  ].join('\n');
  assert.equal(defaultRouteInterface(table), 'eth0');
  assert.equal(defaultRouteInterface(table.split('\n')[0] as string), undefined);
});

test('the default route address is read from Windows route print', () => {
  const out = [
    'IPv4 Route Table',
    '===========================================================================',
    'Active Routes:',
    'Network Destination        Netmask          Gateway       Interface  Metric',
    '          0.0.0.0          0.0.0.0      192.168.1.1    192.168.1.23     25',
    '          0.0.0.0          0.0.0.0         10.0.0.1       10.0.0.7      50',
  ].join('\r\n');
  assert.equal(defaultRouteAddressWindows(out), '192.168.1.23');
});

test('free disk space is reported like the original "2G" field, but real', () => {
  assert.equal(formatGigabytes(2 * 1024 ** 3), '2.0G');
  assert.equal(formatGigabytes(44_771_000_000), '41.7G');
});
