// The log file on a disk that fails (a real full tmpfs) and under its size cap: logging never
// throws at the caller, degrades to stderr with one note, says when the file works again, and
// debug logging cannot grow the day files beyond the cap.
import assert from 'node:assert/strict';
import { mkdir, mkdtemp, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { createLogger, DailyLogFile } from '../../adapters/logger.ts';
import { canMountTmpfs, fillDisk, mountTmpfs, NO_MOUNT } from '../helpers/tmpfs.ts';

async function withDir(fn: (dir: string) => Promise<void>): Promise<void> {
  const dir = await mkdtemp(join(tmpdir(), 'bk-logdisk-'));
  try {
    await fn(dir);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

test(
  'a full disk: log lines go to stderr with one note, and back to the file once space returns',
  { skip: !canMountTmpfs && NO_MOUNT },
  async (t) => {
    const disk = await mountTmpfs(t, 1);
    const logs = join(disk, 'logs');
    await mkdir(logs);
    const filler = await fillDisk(disk);
    let now = new Date(2026, 10, 22, 12, 0, 0);
    const fallback: string[] = [];
    const file = new DailyLogFile(logs, 30, () => now, {
      fallback: (text) => fallback.push(text),
      retryMs: 5000,
    });
    const big = 'x'.repeat(8192);
    assert.doesNotThrow(() => {
      for (let i = 0; i < 5; i++)
        file.write(`${JSON.stringify({ level: 30, msg: `m${i}`, big })}\n`);
    });
    assert.equal(file.degraded, true);
    const notes = fallback.filter((l) => l.startsWith('boxkeeper: log file unusable'));
    assert.equal(notes.length, 1, `one note, got: ${notes.join('')}`);
    assert.match(notes[0] as string, /no space left on the disk \(ENOSPC\)/);
    assert.match(notes[0] as string, new RegExp(`boxkeeper-2026-11-22\\.log`));
    assert.equal(fallback.filter((l) => l.includes('"msg":"m')).length, 5, 'every line on stderr');

    await rm(filler);
    // Before the retry time the file is not tried: lines keep going to stderr.
    file.write(`${JSON.stringify({ level: 30, msg: 'early' })}\n`);
    assert.equal(file.degraded, true);
    now = new Date(now.getTime() + 6000);
    file.write(`${JSON.stringify({ level: 30, msg: 'after space returned' })}\n`);
    assert.equal(file.degraded, false);
    assert.equal(
      fallback.filter((l) => l.startsWith('boxkeeper: the log file works again')).length,
      1,
    );
    file.end();
    const text = await readFile(join(logs, 'boxkeeper-2026-11-22.log'), 'utf8');
    const lines = text.split('\n').filter((l) => l !== '');
    // Every line in the file is whole JSON (a torn line was ended before the next one).
    const parsed = lines.map((l) => JSON.parse(l) as { msg: string });
    assert.ok(parsed.some((l) => l.msg.startsWith('the log file works again; 6 line(s)')));
    assert.equal(parsed.at(-1)?.msg, 'after space returned');
  },
);

test('a log dir that cannot be created: the logger goes on, lines go to stderr', () =>
  withDir(async (dir) => {
    const notADir = join(dir, 'file');
    await writeFile(notADir, 'a file where the logs dir should be');
    const fallback: string[] = [];
    const file = new DailyLogFile(join(notADir, 'logs'), 30, () => new Date(), {
      fallback: (text) => fallback.push(text),
    });
    assert.doesNotThrow(() => file.write('{"level":50,"msg":"an error to report"}\n'));
    assert.match(fallback[0] as string, /^boxkeeper: log file unusable, .*logs/);
    assert.equal(fallback[1], '{"level":50,"msg":"an error to report"}\n');
    file.end();
  }));

test('createLogger with a missing box does not create the log dir until a line is written', () =>
  withDir(async (dir) => {
    const logs = join(dir, 'box', 'boxkeeper', 'logs');
    const { close } = createLogger({ level: 'info', dir: logs, console: 'none' });
    close();
    await assert.rejects(stat(join(dir, 'box')), { code: 'ENOENT' });
  }));

test('the size cap: oldest day files go first, then lines below warn are dropped for the day', () =>
  withDir(async (dir) => {
    const MB = 1024 * 1024;
    // Older days take 3 MB; the cap is 2 MB.
    for (const day of ['2026-11-19', '2026-11-20', '2026-11-21'])
      await writeFile(join(dir, `boxkeeper-${day}.log`), Buffer.alloc(MB, 0x61));
    const now = new Date(2026, 10, 22, 12, 0, 0);
    const { logger, close } = createLogger({
      level: 'debug',
      dir,
      retentionDays: 30,
      maxBytes: 2 * MB,
      console: 'none',
      now: () => now,
    });
    logger.info('first line of the day');
    // Opening today's file already brought the day files under the cap.
    assert.deepEqual((await readdir(dir)).sort(), [
      'boxkeeper-2026-11-21.log',
      'boxkeeper-2026-11-22.log',
    ]);
    const pad = 'd'.repeat(1000);
    for (let i = 0; i < 5000; i++) logger.debug({ i, pad }, 'debug chatter');
    logger.warn('a warning after the cap');
    close();
    assert.deepEqual(await readdir(dir), ['boxkeeper-2026-11-22.log'], 'yesterday made room');
    const today = join(dir, 'boxkeeper-2026-11-22.log');
    const size = (await stat(today)).size;
    assert.ok(size <= 2 * MB + 0.2 * MB, `today's file ${size} bytes, cap 2 MB + reserve`);
    const lines = (await readFile(today, 'utf8')).trim().split('\n');
    const msgs = lines.map((l) => (JSON.parse(l) as { msg: string }).msg);
    assert.equal(msgs.filter((m) => m.startsWith('log size cap of 2 MB reached')).length, 1);
    assert.equal(msgs.at(-1), 'a warning after the cap', 'warnings still reach the file');
    assert.ok(msgs.filter((m) => m === 'debug chatter').length < 5000, 'debug lines were dropped');
  }));
