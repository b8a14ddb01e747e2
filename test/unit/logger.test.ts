import assert from 'node:assert/strict';
import { mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { createLogger } from '../../adapters/logger.ts';

async function withDir(fn: (dir: string) => Promise<void>): Promise<void> {
  const dir = await mkdtemp(join(tmpdir(), 'bk-log-'));
  try {
    await fn(dir);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

test('logs are JSON lines in one file per local day, switching at midnight', () =>
  withDir(async (dir) => {
    let now = new Date(2026, 10, 21, 23, 59, 59);
    const { logger, close } = createLogger({
      level: 'info',
      dir,
      retentionDays: 30,
      console: 'none',
      now: () => now,
    });
    logger.info({ step: 1 }, 'before midnight');
    now = new Date(2026, 10, 22, 0, 0, 1);
    logger.info({ step: 2 }, 'after midnight');
    logger.debug('below the level, dropped');
    close();
    assert.deepEqual((await readdir(dir)).sort(), [
      'boxkeeper-2026-11-21.log',
      'boxkeeper-2026-11-22.log',
    ]);
    const day2 = (await readFile(join(dir, 'boxkeeper-2026-11-22.log'), 'utf8')).trim().split('\n');
    assert.equal(day2.length, 1);
    const line = JSON.parse(day2[0] as string) as Record<string, unknown>;
    assert.equal(line.msg, 'after midnight');
    assert.equal(line.step, 2);
    assert.equal(line.level, 30);
  }));

test('retention is by age in days, not by file count', () =>
  withDir(async (dir) => {
    for (const day of ['2026-10-01', '2026-11-10', '2026-11-12', '2026-11-21']) {
      await writeFile(join(dir, `boxkeeper-${day}.log`), '{}\n');
    }
    await writeFile(join(dir, 'unrelated.txt'), 'keep me');
    const now = new Date(2026, 10, 22, 12, 0, 0);
    const { logger, close } = createLogger({
      level: 'info',
      dir,
      retentionDays: 10,
      console: 'none',
      now: () => now,
    });
    logger.info('hello');
    close();
    assert.deepEqual((await readdir(dir)).sort(), [
      'boxkeeper-2026-11-12.log',
      'boxkeeper-2026-11-21.log',
      'boxkeeper-2026-11-22.log',
      'unrelated.txt',
    ]);
  }));

test('tokens, secrets and passwords never reach the log file', () =>
  withDir(async (dir) => {
    const { logger, close } = createLogger({ level: 'debug', dir, console: 'none' });
    logger.debug(
      {
        token: 'tok-SECRET1',
        headers: { token: 'tok-SECRET2', appkey: 'visible-appkey' },
        config: { accessSecret: 'SECRET3', password: 'SECRET4' },
        access_secret: 'SECRET5',
      },
      'request',
    );
    close();
    const [file] = await readdir(dir);
    const text = await readFile(join(dir, file as string), 'utf8');
    assert.doesNotMatch(text, /SECRET/);
    assert.match(text, /visible-appkey/);
    assert.match(text, /\[redacted\]/);
  }));
