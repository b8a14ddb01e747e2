// One agent session: the single-instance lock, the temp files of interrupted writes swept, the
// agent (supervision, heartbeats) and, when asked for, the update runtime over it. `run`, the
// in-process operator commands, `replay` and the crash test's child all start here, so the
// order (lock before any write, sweep before any read of what a write left) lives once.
import { dirname } from 'node:path';
import type { BoxAppApi } from '../adapters/box-app.ts';
import type { CloudApi } from '../adapters/cloud-client.ts';
import { removeStaleTemps } from '../adapters/fs-atomic.ts';
import { acquireInstanceLock, type InstanceLock } from '../adapters/instance-lock.ts';
import { lockPath } from '../services/agent/agent-files.ts';
import type { Agent } from '../services/agent/agent.ts';
import type { Settings } from '../services/agent/settings.ts';
import { createBoxAgent, realWorld, type Context } from './context.ts';
import { createUpdateRuntime, type UpdateRuntime, type UpdateRuntimeHooks } from './updates.ts';

export interface SessionOptions {
  /** Who holds agent.lock (a second instance is told); omitted: no lock (replay's box copy). */
  holder?: string;
  /** The update lifecycle over the agent; omitted: supervision and heartbeats only. */
  updates?: {
    onFatal: (err: unknown) => void;
    /** A function when a hook wraps the session's cloud client (replay). */
    hooks?: UpdateRuntimeHooks | ((cloud: CloudApi) => UpdateRuntimeHooks);
  };
}

export interface Session {
  agent: Agent;
  cloud: CloudApi;
  boxApp: BoxAppApi;
  updates?: UpdateRuntime;
  /** Stops the update runtime and the agent, then releases the lock; each step runs. */
  close(): Promise<void>;
}

/** The directories whose atomic writes a crash can interrupt between fsync and rename. */
function writtenDirs(settings: Settings): string[] {
  const p = settings.paths;
  return [
    ...new Set([
      p.agentData,
      dirname(p.config),
      dirname(p.appYml),
      dirname(p.jar),
      p.fsConf,
      p.managerDir,
      dirname(settings.file),
      p.patch,
    ]),
  ];
}

async function sweepTemps(ctx: Context): Promise<void> {
  for (const dir of writtenDirs(ctx.settings)) {
    const removed = await removeStaleTemps(dir, (pid) => realWorld.processes.isAlive(pid));
    if (removed.length > 0)
      ctx.log.logger.info({ files: removed }, 'removed temp files of interrupted writes');
  }
}

export async function openSession(ctx: Context, options: SessionOptions = {}): Promise<Session> {
  const lock: InstanceLock | undefined =
    options.holder === undefined
      ? undefined
      : await acquireInstanceLock(lockPath(ctx.settings), options.holder, realWorld.processes);
  const stack: (() => Promise<void>)[] = [async () => lock?.release()];
  const close = async (): Promise<void> => {
    const failures: unknown[] = [];
    for (const step of stack.splice(0).reverse())
      await step().catch((err: unknown) => {
        failures.push(err);
      });
    if (failures.length > 0)
      throw failures[0] instanceof Error ? failures[0] : new Error(String(failures[0]));
  };
  try {
    if (options.updates !== undefined) await sweepTemps(ctx);
    const { agent, cloud, boxApp } = await createBoxAgent(ctx);
    stack.push(() => agent.stop());
    let updates: UpdateRuntime | undefined;
    if (options.updates !== undefined) {
      const hooks = options.updates.hooks;
      updates = await createUpdateRuntime(
        ctx,
        agent,
        cloud,
        boxApp,
        options.updates.onFatal,
        typeof hooks === 'function' ? hooks(cloud) : hooks,
      );
      stack.push(() => (updates as UpdateRuntime).close());
    }
    return { agent, cloud, boxApp, ...(updates === undefined ? {} : { updates }), close };
  } catch (err) {
    await close().catch(() => undefined);
    throw err;
  }
}
