// Files that may hold secrets are readable by the agent's user only (issue 9): patch.meta and
// the copies set aside beside it (the cloud's config map, with its passwords, waits there for
// the install), traces, status.json and the control token. New ones are written private (mode
// 0600 on POSIX; on Windows they inherit their directory's ACL); this fixes what an older
// agent, the Python tool or an operator left readable, at every start.
import { mkdir, readdir } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import { errorMessage } from '../adapters/errors.ts';
import type { FileAccess } from '../adapters/file-acl.ts';
import type { Logger } from '../adapters/logger.ts';
import { consolePath, controlPath, statusPath, tracesDir } from '../services/agent/agent-files.ts';
import type { Settings } from '../services/agent/settings.ts';

export async function makeAgentFilesPrivate(
  settings: Settings,
  access: FileAccess,
  logger: Logger,
  platform: NodeJS.Platform = process.platform,
): Promise<void> {
  const agentData = settings.paths.agentData;
  const metaDir = dirname(settings.paths.patchMeta);
  const metaName = basename(settings.paths.patchMeta);
  const targets: Array<{ path: string; recursive?: boolean }> = [];
  if (platform === 'win32') {
    // Modes mean nothing there: the directories' inherited ACL makes every new file private.
    for (const dir of [agentData, metaDir]) {
      await mkdir(dir, { recursive: true }).catch(() => undefined);
      targets.push({ path: dir });
    }
  }
  targets.push(
    { path: tracesDir(settings), recursive: true },
    { path: statusPath(settings) },
    { path: controlPath(settings) },
    { path: consolePath(settings) },
  );
  for (const name of await readdir(metaDir).catch(() => [])) {
    if (name.startsWith(metaName) || name.startsWith(`.${metaName}`))
      targets.push({ path: join(metaDir, name) });
  }
  for (const t of targets) {
    try {
      await access.makePrivate(t.path, { recursive: t.recursive === true });
    } catch (err) {
      // Not a reason to stop the agent; but say that the file stays readable.
      logger.warn(
        { file: t.path, err: errorMessage(err) },
        'cannot make the file readable by the agent only',
      );
    }
  }
}
