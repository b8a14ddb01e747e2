// The cloud link over https (docs/security.md): a simulator with a self-signed certificate
// (fixtures/tls) is refused unless `[security] ca_file` names it; `run` warns at start when
// patches are unsigned and when host_addr is plain http.
import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { test, type TestContext } from 'node:test';
import { REPO, setupE2E, waitUntil, type E2E } from '../helpers/cli.ts';

const TLS = join(REPO, 'fixtures', 'tls');
const tls = {
  key: await readFile(join(TLS, 'cloud-sim.key')),
  cert: await readFile(join(TLS, 'cloud-sim.crt')),
};

async function httpsBox(t: TestContext, security: Record<string, string>): Promise<E2E> {
  const e = await setupE2E({
    sim: { tls },
    extraSettings: { cloud: { timeout: '10', retries: '0' }, security },
  });
  t.after(() => e.close());
  return e;
}

test('https to a cloud whose CA is not trusted is refused', async (t) => {
  const e = await httpsBox(t, {});
  assert.match(e.sim.url, /^https:/);
  const r = await e.cli(['token']);
  assert.notEqual(r.code, 0, r.stdout);
  assert.match(r.stderr, /self[- ]signed certificate/i);
  assert.equal(e.sim.records.tokens.length, 0, 'no request reached the cloud');
});

test('[security] ca_file pins the CA: the same cloud is reached', async (t) => {
  const e = await httpsBox(t, { ca_file: join(TLS, 'cloud-sim.crt') });
  const r = await e.cli(['token']);
  assert.equal(r.code, 0, r.stderr);
  assert.equal(e.sim.records.tokens.filter((x) => x.ok).length, 1);
});

test('a ca_file that is not a certificate is a configuration error naming the key', async (t) => {
  const e = await httpsBox(t, { ca_file: join(TLS, 'README.md') });
  const r = await e.cli(['token']);
  assert.equal(r.code, 2, r.stderr);
  assert.match(r.stderr, /\[security\] ca_file: .*README\.md holds no PEM certificate/);
});

test('run warns at start: no patch keys, plain http', async (t) => {
  const e = await setupE2E();
  t.after(() => e.close());
  const d = e.startDaemon();
  const text = await waitUntil(
    () => {
      const out = d.tail(200);
      return /patch_keys is empty/.test(out) && /is plain http/.test(out) ? out : undefined;
    },
    60_000,
    'the two warnings',
    () => d.tail(40),
  );
  assert.match(text, /whoever controls or intercepts the cloud link can install software/);
});
