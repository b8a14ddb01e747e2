// A daemon that survives its disk: the real `boxkeeper run` against the cloud simulator with
// its agent data, logs or patch dir on a small tmpfs that really fills up (ENOSPC). Heartbeats
// and supervision go on, the update parks visibly and finishes by itself once space is freed.
import assert from 'node:assert/strict';
import { mkdir, readdir, readFile, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { test } from 'node:test';
import { buildStandinJar } from '../../fixtures/box/generate.ts';
import type { AgentStatus } from '../../services/agent/agent.ts';
import type { UpdateStatus } from '../../services/update/update-engine.ts';
import { alive, itemsOf, setupE2E, type Daemon } from '../helpers/cli.ts';
import { canMountTmpfs, fillDisk, mountTmpfs, NO_MOUNT } from '../helpers/tmpfs.ts';
import { appVersion } from '../helpers/update.ts';

async function readJson<T>(path: string): Promise<T | null> {
  try {
    return JSON.parse(await readFile(path, 'utf8')) as T;
  } catch {
    return null;
  }
}

test(
  'agent data and logs on a disk that fills: heartbeats go on and a killed Java is restarted',
  { skip: !canMountTmpfs && NO_MOUNT },
  async (t) => {
    const disk = await mountTmpfs(t, 4);
    const agentData = join(disk, 'agent');
    const logs = join(agentData, 'logs');
    const statusFile = join(agentData, 'status.json');
    const h = await setupE2E({
      extraSettings: { paths: { agent_data: agentData, logs } },
    });
    t.after(() => h.close());
    const d: Daemon = h.startDaemon();
    const s0 = await d.waitUntil(
      async () => {
        const s = await readJson<AgentStatus>(statusFile);
        return s?.pid === d.pid &&
          s.services.java?.status === 'running' &&
          s.services.freeswitch?.status === 'running'
          ? s
          : undefined;
      },
      30_000,
      'java and freeswitch running in status.json',
    );
    const javaPid = s0.services.java?.pid ?? null;
    assert.ok(javaPid !== null);

    const filler = await fillDisk(disk);
    const filledAt = Date.now();
    // The daemon writes status.json after every beat and logs at debug: both now fail.
    await d.waitUntil(
      () => h.sim.records.heartbeats.filter((b) => b.at > filledAt).length >= 3,
      30_000,
      'three heartbeats after the disk filled',
    );
    await d.waitUntil(
      () => /log file unusable, logging to stderr/.test(d.stderr),
      30_000,
      'the note that logging went to stderr',
    );
    assert.match(d.stderr, /no space left on the disk \(ENOSPC\)/);

    const appStarts0 = await h.box.appStarts();
    process.kill(javaPid, 'SIGKILL');
    // The supervisor restarts Java (its new start line), and later heartbeats report it up.
    // Whether a beat falls inside the second Java was down is timing: not asserted.
    const appStarts = await d.waitUntil(
      async () => {
        const n = await h.box.appStarts();
        return n > appStarts0 ? n : undefined;
      },
      60_000,
      "the new Java's start line",
    );
    const restartedAt = Date.now();
    await d.waitUntil(
      () => h.sim.records.heartbeats.some((b) => b.at > restartedAt && itemsOf(b.body).Java === 1),
      60_000,
      'a heartbeat after the restart reporting Java up',
    );
    assert.equal(appStarts, appStarts0 + 1, 'Java started exactly once more');
    const javas = (await h.box.standinProcesses()).filter((p) => p.cmd.startsWith(h.box.javaExe));
    assert.equal(javas.length, 1, 'one Java');
    assert.notEqual(javas[0]?.pid, javaPid);
    assert.ok(d.running, 'the daemon still runs');
    assert.equal(
      d.stderr.match(/log file unusable/g)?.length,
      1,
      `noted once:\n${d.stderr.slice(0, 2000)}`,
    );

    // Space returns: status.json is current again and the log file says what happened.
    await rm(filler);
    const freedAt = Date.now();
    const s1 = await d.waitUntil(
      async () => {
        const s = await readJson<AgentStatus>(statusFile);
        return s !== null && Date.parse(s.updatedAt) > freedAt ? s : undefined;
      },
      30_000,
      'status.json written again after space returned',
    );
    assert.equal(s1.services.java?.pid, javas[0]?.pid);
    await d.waitUntil(
      () => /the log file works again; \d+ line\(s\) went to stderr/.test(d.stderr),
      30_000,
      'the note that the log file works again',
    );
    const dayFile = (await readdir(logs))
      .filter((n) => n.startsWith('boxkeeper-'))
      .sort()
      .at(-1);
    const day = await readFile(join(logs, dayFile ?? 'none'), 'utf8');
    assert.match(day, /the log file works again/);
    assert.ok(d.lines.some((l) => l.msg === 'status.json written again'));
    assert.ok(alive(d.pid));
  },
);

test(
  'a full patch dir: the update parks "waiting for disk space" and finishes once space is freed',
  { skip: !canMountTmpfs && NO_MOUNT },
  async (t) => {
    const disk = await mountTmpfs(t, 8);
    const patchDir = join(disk, 'patch');
    await mkdir(patchDir);
    const h = await setupE2E({
      extraSettings: {
        paths: { patch: patchDir },
        timer: { versionCheck: '2' },
        // An 8 MiB disk: the default 100 MiB reserve would refuse every download.
        limits: { disk_reserve: '0' },
        update: {
          enabled: 'on',
          check_jitter: '0',
          health_timeout: '8',
          health_settle: '1',
          retry_delay: '0.5',
        },
      },
      sim: {
        scenario: {
          upgradeMark: 2,
          versions: [
            { versionNum: 'V1.7' },
            {
              versionNum: 'V1.8',
              remark: 'after the disk was freed',
              files: { 'icb-box.jar': await buildStandinJar({ version: 'V1.8' }) },
              argumentConfigMap: {},
            },
          ],
        },
      },
    });
    t.after(() => h.close());
    const filler = await fillDisk(disk);
    const d = h.startDaemon();
    const parked = await d.waitUntil(
      async () => {
        const s = await h.readStatus();
        return s?.pid === d.pid && s.update?.parked != null ? s.update.parked : undefined;
      },
      30_000,
      'status.json showing the update parked',
    );
    assert.equal(parked.reason, 'waiting for disk space');
    assert.match(
      parked.error,
      new RegExp(
        `cannot write ${join(patchDir, 'patch.meta')}: no space left on the disk \\(ENOSPC\\)`,
      ),
    );
    // Persist, then act: nothing was asked of the cloud while the state could not be recorded.
    assert.equal(h.sim.records.checks.length, 0, 'no version check while parked');

    // The same, from the control channel and from `boxkeeper status`.
    const human = await h.cli(['status']);
    assert.equal(human.code, 0, human.stderr);
    assert.match(human.stdout, /PARKED, waiting for disk space since .*ENOSPC/);
    const heartbeats = h.sim.records.heartbeats.length;
    await d.waitUntil(
      () => h.sim.records.heartbeats.length > heartbeats + 2,
      30_000,
      'heartbeats go on while the update is parked',
    );

    await rm(filler);
    const done = await d.waitUntil(
      async () => {
        const u: UpdateStatus | null | undefined = (await h.readStatus())?.update;
        return u?.lastResult === 'installed V1.8' && u.state === 'idle' ? u : undefined;
      },
      120_000,
      'installed V1.8 after space was freed',
    );
    assert.equal(done.parked, null);
    assert.equal(await appVersion(h), 'V1.8');
    const meta = JSON.parse(await readFile(join(patchDir, 'patch.meta'), 'utf8')) as {
      seq: number;
    };
    assert.ok(meta.seq > 1, 'patch.meta kept current once space returned');
    assert.ok(
      d.lines.some((l) => l.msg.startsWith('cannot save patch.meta: the update is parked')),
      'the park is logged',
    );
    assert.ok(d.lines.some((l) => l.msg === 'patch.meta written again; the update goes on'));
    assert.ok(d.running);
  },
);
