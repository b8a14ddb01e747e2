// Secrets at rest (issue 9, item 4): the cloud's config map carries passwords. Traces, logs and
// status.json never show them; patch.meta keeps them (a resumed install applies them) but, like
// traces and status.json, is readable by the agent's user only — also files an older agent left
// readable. Real CLI, fixture box, cloud simulator.
import assert from 'node:assert/strict';
import { mkdir, readdir, readFile, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { test } from 'node:test';
import { setupE2E } from '../helpers/cli.ts';

const SECRETS = {
  callboxPassword: 'cb-SECRET-111',
  numconvertPassword: 'nc-SECRET-222',
  apiToken: 'tok-SECRET-333',
};

async function filesBelow(dir: string): Promise<string[]> {
  const out: string[] = [];
  for (const e of await readdir(dir, { withFileTypes: true, recursive: true }))
    if (e.isFile()) out.push(join(e.parentPath, e.name));
  return out;
}

const modeOf = async (path: string) => (await stat(path)).mode & 0o777;

test(
  'the config map is masked in traces and logs; patch.meta keeps it, mode 0600 like traces and status.json',
  {
    skip:
      process.platform === 'win32' ? 'modes are POSIX; Windows: test/unit/file-acl.test.ts' : false,
  },
  async (t) => {
    const e = await setupE2E({
      extraSettings: { update: { enabled: 'on', check_jitter: '0' } },
      sim: {
        scenario: {
          upgradeMark: 1,
          versions: [
            { versionNum: 'V1.7' },
            {
              versionNum: 'V1.8',
              configOnly: true,
              argumentConfigMap: { citynum: '010', ...SECRETS },
            },
          ],
        },
      },
    });
    t.after(() => e.close());
    // What an older agent left world-readable.
    const traces = join(e.agentData, 'traces');
    const patchDir = join(e.box.boxRoot, 'patch');
    await mkdir(traces, { recursive: true });
    await mkdir(patchDir, { recursive: true });
    const old = [
      join(traces, 'update-20240101T000000Z-1.ndjson'),
      join(e.agentData, 'status.json'),
      join(patchDir, 'patch.meta.rejected-20240101T000000Z'),
    ];
    for (const f of old) await writeFile(f, '{}', { mode: 0o644 });

    // Optional: downloaded, then waiting in patch.meta with its config map.
    const r = await e.cli(['check', '--timeout', '60'], { timeoutMs: 90_000 });
    assert.equal(r.code, 0, r.stderr + r.stdout);
    assert.match(r.stdout, /awaitingInstall/);
    const meta = join(patchDir, 'patch.meta');
    assert.match(await readFile(meta, 'utf8'), /cb-SECRET-111/, 'kept for the install');
    assert.equal(await modeOf(meta), 0o600, 'patch.meta');

    const i = await e.cli(['install', '--timeout', '60'], { timeoutMs: 90_000 });
    assert.equal(i.code, 0, i.stderr + i.stdout);
    assert.match(
      await readFile(e.box.configIniPath, 'utf8'),
      /callboxPassword\s*=\s*cb-SECRET-111/,
    );

    // The snapshot repository (repo/) holds copies of the box's own files, configuration.ini
    // included, by design: what the agent itself writes is checked.
    const kept = (await filesBelow(e.agentData)).filter(
      (f) => !f.startsWith(join(e.agentData, 'repo')),
    );
    const traceFiles = kept.filter((f) => f.startsWith(traces) && f.endsWith('.ndjson'));
    assert.ok(traceFiles.length >= 3, `traces: ${traceFiles.join(', ')}`);
    assert.match(
      (await Promise.all(traceFiles.map((f) => readFile(f, 'utf8')))).join(''),
      /"callboxPassword":"\*\*\*"/,
      'the trace shows the key, masked',
    );
    for (const f of kept) {
      const text = await readFile(f, 'latin1');
      for (const secret of Object.values(SECRETS))
        assert.ok(!text.includes(secret), `${f} shows ${secret}`);
    }
    for (const f of [...traceFiles, join(e.agentData, 'status.json'), ...old])
      assert.equal(await modeOf(f), 0o600, f);
  },
);
