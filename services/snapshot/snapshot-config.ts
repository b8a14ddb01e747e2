// Which paths the snapshot store manages: a JSON file `boxkeeper snapshot init` generates from
// settings.ini, which an operator may then edit.
import { dirname, join } from 'node:path';
import { z } from 'zod';
import { ConfigError } from '../../adapters/errors.ts';
import type { Settings } from '../agent/settings.ts';
import type { SnapshotConfig } from './snapshots.ts';

const schema = z.object({
  subscribe: z.array(z.string().min(1)).min(1),
  exclude: z.array(z.string().min(1)).default([]),
});

export type SnapshotPaths = z.infer<typeof schema>;

/** A box's managed paths: everything an update can touch, nothing that is scratch or ours. */
export function defaultSnapshotPaths(settings: Settings): SnapshotPaths {
  const p = settings.paths;
  const subscribe = [
    p.jar,
    p.appYml,
    dirname(p.config),
    p.data,
    dirname(p.pathBat),
    p.managerDir,
    join(p.fsConf, 'callbox.xml'),
    join(p.fsConf, 'numconvert.xml'),
  ];
  if (!settings.file.startsWith(p.managerDir)) subscribe.push(settings.file);
  return {
    subscribe: [...new Set(subscribe)],
    exclude: [
      ...new Set([
        p.logs,
        p.patch,
        p.backup,
        p.agentData,
        settings.snapshot.repo,
        join(p.managerDir, 'logs'),
      ]),
    ],
  };
}

export function parseSnapshotPaths(file: string, text: string): SnapshotPaths {
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (err) {
    throw new ConfigError([{ file, message: `not valid JSON: ${(err as Error).message}` }]);
  }
  const parsed = schema.safeParse(json);
  if (!parsed.success) {
    throw new ConfigError(
      parsed.error.issues.map((i) => ({
        file,
        key: i.path.join('.') || '(root)',
        message: i.message,
      })),
    );
  }
  return parsed.data;
}

export function snapshotConfig(paths: SnapshotPaths, settings: Settings): SnapshotConfig {
  return {
    subscribe: paths.subscribe,
    exclude: [...new Set([...paths.exclude, settings.snapshot.repo])],
    retain: settings.snapshot.retain,
  };
}
