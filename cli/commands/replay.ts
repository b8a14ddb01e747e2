// `boxkeeper replay <patch.meta> --box DIR`: a developer's tool for a stuck or failed update.
// Restores the given patch.meta against a COPY of a box and runs the update statecharts from
// there until they rest, printing every transition (NDJSON) on stdout. Safe by construction:
// files are written only inside DIR, the box services are neither stopped nor started, cloud
// tasks are neither paused nor resumed, and no version check runs on the timer.
import { ExitCode } from '../exit-codes.ts';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { isAbsolute, join, relative, resolve } from 'node:path';
import { decodeConfigText } from '../../adapters/ini.ts';
import { BoxkeeperError, UsageError } from '../../adapters/errors.ts';
import { nodePatchFs, type PatchFs } from '../../adapters/patch-fs.ts';
import { platformRegistry } from '../../adapters/registry.ts';
import { connectInspector, releaseProcess } from '../../adapters/inspector.ts';
import { createLogger } from '../../adapters/logger.ts';
import { mergeIniText } from '../../services/update/config-edit.ts';
import { loadSettings } from '../../services/agent/settings.ts';
import type { ServiceControl } from '../../services/update/update-effects.ts';
import { realWorld } from '../context.ts';
import { openSession } from '../session.ts';
import type { UpdateRuntime } from '../updates.ts';
import type { CommandArgs } from './index.ts';

function inside(dir: string, path: string): boolean {
  const rel = relative(dir, resolve(path));
  return rel === '' || (!rel.startsWith('..') && !isAbsolute(rel));
}

/** File operations confined to the box copy: a write elsewhere is reported, not done. */
function confined(dir: string, say: (what: string) => void): PatchFs {
  const outside = (path: string, what: string): boolean => {
    if (inside(dir, path)) return false;
    say(`outside the box copy, not done: ${what} ${path}`);
    return true;
  };
  return {
    ...nodePatchFs,
    writeAtomic: async (p, d, o) => {
      if (!outside(p, 'write')) await nodePatchFs.writeAtomic(p, d, o);
    },
    copyFileAtomic: async (s, d) =>
      outside(d, 'copy to') ? true : nodePatchFs.copyFileAtomic(s, d),
    rename: async (f, t) => {
      if (!outside(t, 'rename to') && !outside(f, 'rename')) await nodePatchFs.rename(f, t);
    },
    remove: async (p) => {
      if (!outside(p, 'remove')) await nodePatchFs.remove(p);
    },
    mkdir: async (p) => {
      if (!outside(p, 'mkdir')) await nodePatchFs.mkdir(p);
    },
  };
}

export async function run(args: CommandArgs): Promise<ExitCode> {
  const metaFile = args.positionals[0];
  const boxArg = args.values.box;
  if (metaFile === undefined || typeof boxArg !== 'string')
    throw new UsageError('usage: boxkeeper replay <patch.meta> --box DIR');
  const box = resolve(boxArg);
  const timeoutSec = typeof args.values.timeout === 'string' ? Number(args.values.timeout) : 600;
  if (!Number.isFinite(timeoutSec) || timeoutSec <= 0)
    throw new UsageError('--timeout must be a number of seconds > 0');
  const settingsFile =
    typeof args.values.settings === 'string'
      ? resolve(args.values.settings)
      : join(box, 'RemoteManagerDist', 'settings', 'settings.ini');
  // The copy's settings with box_root pointing at the copy (in a temp file: DIR stays as it is).
  const original = decodeConfigText(
    await readFile(settingsFile).catch(() => {
      throw new UsageError(`no settings.ini at ${settingsFile}; pass --settings`);
    }),
  );
  const inspector =
    typeof args.values.inspect === 'string' ? connectInspector(args.values.inspect) : undefined;
  const tmp = await mkdtemp(join(tmpdir(), 'bk-replay-'));
  try {
    const tmpSettings = join(tmp, 'settings.ini');
    await writeFile(tmpSettings, mergeIniText(original, `[paths]\nbox_root = ${box}\n`).text);
    const { settings } = await loadSettings(tmpSettings, {
      readFile: realWorld.files.readFile,
      registry: platformRegistry(process.platform),
      platform: process.platform,
    });
    if (!inside(box, settings.paths.patchMeta))
      throw new BoxkeeperError(
        `patch.meta path ${settings.paths.patchMeta} is outside ${box}`,
        'config',
      );
    // Read, then written (not copyFile): a failure names the side that failed. It holds the
    // cloud's config map, so the copy is private as the original (0600).
    const meta = await realWorld.files.readFile(resolve(metaFile));
    await realWorld.files.writeAtomic(settings.paths.patchMeta, meta, { mode: 0o600 });

    const log = createLogger({
      level: settings.general.logLevel,
      dir: join(tmp, 'logs'),
      retentionDays: 1,
      console: 'none',
    });
    const ctx = { settings, log };
    const say = (what: string): void => {
      process.stdout.write(`${JSON.stringify({ replay: what })}\n`);
    };
    try {
      const services: ServiceControl = {
        stopAll: () => Promise.resolve(say('services would be stopped')),
        startAll: () => Promise.resolve(say('services would be started and checked')),
        releaseAll: () => Promise.resolve(say('services would be released')),
        isRunning: () => Promise.resolve(false),
      };
      // No lock: the replay works on a copy, beside whatever agent runs on this machine.
      const session = await openSession(ctx, {
        updates: {
          onFatal: (err) => say(`patch.meta write failed: ${String(err)}`),
          hooks: (cloud) => ({
            periodicChecks: false,
            fs: confined(box, say),
            services,
            pausedTasks: () => {
              say("the box app's paused tasks would be adopted (none in a replay)");
              return Promise.resolve([]);
            },
            cloud: {
              ...cloud,
              setTaskStatus: (tasks, op) =>
                Promise.resolve(
                  say(`tasks ${tasks.join(', ')} would be ${op === 1 ? 'paused' : 'resumed'}`),
                ),
            },
            trace: { path: '(stdout)', write: (line) => process.stdout.write(`${line}\n`) },
            ...(inspector === undefined ? {} : { inspect: inspector.inspect }),
          }),
        },
      });
      const runtime = session.updates as UpdateRuntime;
      try {
        runtime.engine.start();
        const status = await Promise.race([
          runtime.engine.settled(timeoutSec * 1000),
          runtime.exitRequested.then(() => runtime.engine.status()),
        ]);
        process.stdout.write(`${JSON.stringify({ final: status })}\n`);
      } finally {
        await session.close();
      }
    } finally {
      log.close();
    }
    return ExitCode.ok;
  } finally {
    await rm(tmp, { recursive: true, force: true });
    if (inspector !== undefined) {
      inspector.close();
      releaseProcess();
    }
  }
}
