/// <reference lib="dom" />
// The local console in a real browser: Debian's Chromium driven by playwright-core, the real
// daemon on a fixture box with its stand-in Java and FreeSWITCH, the cloud simulator offering an
// optional V1.8. The page lights the state the cycle is in and follows it live through an
// install started from the page itself; requests without the token are refused.
// CONSOLE_SCREENSHOT=path writes the screenshot docs/console.png was made from.
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { request } from 'node:http';
import { join } from 'node:path';
import { test } from 'node:test';
import { chromium, type Browser } from 'playwright-core';
import { buildStandinJar } from '../../fixtures/box/generate.ts';
import { setupE2E, type CliResult } from '../helpers/cli.ts';
import { appVersion } from '../helpers/update.ts';

const CHROMIUM = process.env.CHROMIUM ?? '/usr/bin/chromium';

const show = (r: CliResult): string =>
  `exit ${String(r.code)}\n--- stdout ---\n${r.stdout}\n--- stderr ---\n${r.stderr}`;

/** A GET with a Host header of our choosing (fetch does not let one be set). */
function getWithHost(url: string, host: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const req = request(url, { headers: { host } }, (res) => {
      res.resume();
      resolve(res.statusCode ?? 0);
    });
    req.on('error', reject);
    req.end();
  });
}

test('the console: token link, live statechart through an install started from the page, refusals', async (t) => {
  assert.ok(
    existsSync(CHROMIUM),
    `${CHROMIUM} is missing: install Debian's chromium (apt-get install chromium; .ci/run does)`,
  );
  const e = await setupE2E({
    extraSettings: {
      timer: { versionCheck: '3600' },
      update: { enabled: 'on', check_jitter: '0', health_timeout: '30', health_settle: '1' },
      console: { enabled: 'on', port: '0' },
    },
    sim: {
      scenario: {
        upgradeMark: 1,
        versions: [
          { versionNum: 'V1.7' },
          {
            versionNum: 'V1.8',
            remark: 'new call flow',
            files: { 'icb-box.jar': await buildStandinJar({ version: 'V1.8' }) },
            argumentConfigMap: { citynum: '010' },
          },
        ],
      },
    },
  });
  t.after(() => e.close());

  const before = await e.cli(['console']);
  assert.equal(before.code, 1, show(before));
  assert.match(before.stderr, /the agent is not running/);

  const d = e.startDaemon();
  await d.waitUntil(
    async () => (await e.readStatus())?.update?.state === 'awaitingInstall' || undefined,
    60_000,
    'the optional V1.8 to be downloaded',
  );
  const link = await d.waitUntil(
    async () => {
      const r = await e.cli(['console']);
      return r.code === 0 ? r.stdout.trim() : undefined;
    },
    30_000,
    'boxkeeper console to print the link',
  );
  const { url, token } = JSON.parse(await readFile(join(e.agentData, 'console.json'), 'utf8')) as {
    url: string;
    token: string;
  };
  assert.equal(link, `${url}/?token=${token}`);

  // Refused without the token, with a wrong one, from another Host, and an action without the
  // page's header (what a cross-site form could send).
  assert.equal((await fetch(`${url}/`)).status, 401);
  assert.equal((await fetch(`${url}/events`)).status, 401);
  assert.equal((await fetch(`${url}/api/status`)).status, 401);
  assert.equal((await fetch(`${url}/?token=${'0'.repeat(token.length)}`)).status, 401);
  assert.equal(
    await getWithHost(`${url}/?token=${token}`, `evil.example:${new URL(url).port}`),
    421,
  );
  const cookie = `boxkeeper_console=${token}`;
  const forged = await fetch(`${url}/api/action`, {
    method: 'POST',
    headers: { cookie, 'content-type': 'application/json' },
    body: JSON.stringify({ action: 'install' }),
  });
  assert.equal(forged.status, 403);
  assert.equal(
    (await readFile(join(e.agentData, 'status.json'), 'utf8')).includes('"awaitingInstall"'),
    true,
  );

  const browser: Browser = await chromium.launch({
    executablePath: CHROMIUM,
    args: [
      '--no-sandbox',
      '--disable-gpu',
      '--disable-quic',
      '--no-first-run',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
    ],
  });
  t.after(() => browser.close());
  const page = await browser.newPage({ viewport: { width: 1400, height: 1000 } });
  page.setDefaultTimeout(60_000);
  await page.goto(link);
  // The token was traded for a cookie: it is no longer in the address bar.
  assert.equal(page.url(), `${url}/`);
  await page.waitForFunction(
    () => document.getElementById('state')?.textContent === 'awaitingInstall',
  );
  await page.waitForSelector('#chart g.lit');
  const lit = await page.$$eval('#chart g.lit > title', (ts) => ts.map((x) => x.textContent));
  assert.deepEqual(lit, ['update.awaitingInstall']);
  const row = await page.textContent('#versions tbody');
  assert.match(row ?? '', /V1\.8\s*DOWNLOADED/);
  await page.waitForFunction(() =>
    /running/.test(document.querySelector('#services tr[data-service="java"]')?.textContent ?? ''),
  );
  assert.match((await page.textContent('#link')) ?? '', /live/);
  assert.ok(((await page.textContent('#log')) ?? '').length > 0, 'recent log lines are shown');

  // Every state the page shows from now on.
  await page.evaluate(() => {
    const seen: string[] = [];
    (window as unknown as { seen: string[] }).seen = seen;
    const el = document.getElementById('state') as HTMLElement;
    new MutationObserver(() => seen.push(el.textContent)).observe(el, {
      childList: true,
      characterData: true,
      subtree: true,
    });
  });
  await page.click('button[data-action="install"]');
  assert.match((await page.textContent('#confirm-text')) ?? '', /Install the downloaded update/);
  if (process.env.CONSOLE_SCREENSHOT !== undefined)
    await page.screenshot({ path: process.env.CONSOLE_SCREENSHOT, fullPage: true });
  // Nothing happens before the confirmation.
  assert.equal(e.sim.records.taskOps.length, 0);
  await page.click('#confirm-yes');
  await page.waitForFunction(
    () => document.getElementById('action-result')?.textContent === 'install: accepted',
  );
  // The cycle rests again with a result (the box had none before).
  await page.waitForFunction(
    () =>
      ['idle', 'awaitingInstall'].includes(document.getElementById('state')?.textContent ?? '') &&
      (document.getElementById('result')?.textContent ?? '–') !== '–',
    undefined,
    { timeout: 180_000 },
  );
  const seen = await page.evaluate(() => (window as unknown as { seen: string[] }).seen);
  assert.match(
    (await page.textContent('#result')) ?? '',
    /^installed V1\.8/,
    `states shown: ${seen.join(' → ')}\n${d.tail(40)}`,
  );
  assert.ok(
    seen.some((s) => s.startsWith('installing.')),
    `the page showed the install's states live: ${seen.join(' → ')}`,
  );
  const litAfter = await page.$$eval('#chart g.lit > title', (ts) => ts.map((x) => x.textContent));
  assert.ok(!litAfter.includes('update.awaitingInstall'), `lit now: ${litAfter.join(', ')}`);
  assert.equal(await appVersion(e), 'V1.8');

  // A refused action says why on the page.
  await page.click('button[data-action="install"]');
  await page.click('#confirm-yes');
  await page.waitForFunction(() =>
    /^install: refused/.test(document.getElementById('action-result')?.textContent ?? ''),
  );

  await d.stop();
  assert.equal(
    existsSync(join(e.agentData, 'console.json')),
    false,
    'console.json goes with the daemon',
  );
});
