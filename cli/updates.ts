// Wiring of the update lifecycle: real effects, the engine, the trace file, the control channel.
import { join } from 'node:path';
import type { InspectionEvent } from 'xstate';
import type { BoxAppApi } from '../adapters/box-app.ts';
import type { CloudApi } from '../adapters/cloud-client.ts';
import {
  startControlServer,
  type ControlHandler,
  type ControlReply,
  type ControlServer,
} from '../adapters/control.ts';
import type { Health } from '../services/agent/health.ts';
import type { PatchInfo } from '../machines/patch.machine.ts';
import { errorMessage } from '../adapters/errors.ts';
import { nodePatchFs, type PatchFs } from '../adapters/patch-fs.ts';
import { sqliteAdapter } from '../adapters/sqlite.ts';
import { openTraceFile } from '../adapters/trace-file.ts';
import { DEFAULT_ZIP_LIMITS, extractZipSafely } from '../adapters/zip.ts';
import type { TaskNo, UpdateEvent, UpdatePolicy } from '../machines/update.machine.ts';
import type { Agent } from '../services/agent/agent.ts';
import type { Settings } from '../services/agent/settings.ts';
import type { SnapshotService } from '../services/snapshot/snapshots.ts';
import { listUnfinishedTasks } from '../services/update/tasks.ts';
import { BoxUpdateEffects, type ServiceControl } from '../services/update/update-effects.ts';
import { UpdateEngine, type UpdateEffects } from '../services/update/update-engine.ts';
import { agentInstall, fsCliFor, type Context } from './context.ts';
import { selfUpdateWorld } from './self-update.ts';
import { createSelfUpdater } from '../services/update/self-update.ts';
import { updaterSnapshots } from './snapshot-wiring.ts';
import { controlPath, tracesDir } from '../services/agent/agent-files.ts';

export function updatePolicy(settings: Settings): UpdatePolicy {
  const u = settings.update;
  return {
    checkIntervalMs: settings.timer.versionCheckMs,
    checkJitterMs: u.checkJitterMs,
    healthTimeoutMs: u.healthTimeoutMs,
    healthSettleMs: u.healthSettleMs,
    callsRetryMs: u.callsRetryMs,
    retryDelayMs: u.retryDelayMs,
    maxFailedInstalls: u.maxFailedInstalls,
  };
}

export function controlFile(settings: Settings): string {
  return controlPath(settings);
}

export interface UpdateRuntimeHooks {
  /** false for operator commands run in-process: no version check on the timer. */
  periodicChecks?: boolean;
  /** Replay: file operations confined to a box copy, services and cloud tasks left alone. */
  fs?: PatchFs;
  services?: ServiceControl;
  cloud?: CloudApi;
  /** The box app's paused tasks (adopted when an install is taken over from the Python tool). */
  pausedTasks?: () => Promise<TaskNo[]>;
  trace?: { path: string; write: (line: string) => void };
  /** Extra inspection, e.g. the Stately inspector (`--inspect`). */
  inspect?: (event: InspectionEvent) => void;
  /** The daemon: a patch.meta write the disk refuses parks the update until it works. */
  waitForDisk?: boolean;
  // Test seams (the crash test kills the process inside an effect or a patch.meta write).
  wrapEffects?: (effects: UpdateEffects) => UpdateEffects;
  metaFs?: PatchFs;
}

export interface UpdateRuntime {
  engine: UpdateEngine;
  tracePath: string;
  /** Resolves when the update needs this process to exit (self-update hand-over). */
  exitRequested: Promise<string>;
  close(): Promise<void>;
}

/** Builds the engine for `agent` (whose supervisors it stops and starts) and loads patch.meta. */
export async function createUpdateRuntime(
  ctx: Context,
  agent: Agent,
  cloud: CloudApi,
  boxApp: BoxAppApi,
  onFatal: (err: unknown) => void,
  hooks: UpdateRuntimeHooks = {},
): Promise<UpdateRuntime> {
  const { settings } = ctx;
  const logger = ctx.log.logger.child({ component: 'update' });
  let snapshots: { service: SnapshotService; close: () => Promise<void> } | undefined;
  const trace = hooks.trace ?? openTraceFile(tracesDir(settings), 'update');
  const engineRef: { engine?: UpdateEngine } = {};
  let requestExit: (why: string) => void = () => undefined;
  const exitRequested = new Promise<string>((resolve) => (requestExit = resolve));
  const boxEffects = new BoxUpdateEffects({
    settings,
    cloud: hooks.cloud ?? cloud,
    fs: hooks.fs ?? nodePatchFs,
    sqlite: sqliteAdapter,
    extractZip: (zip, dest, onProgress) =>
      extractZipSafely(
        zip,
        dest,
        {
          ...DEFAULT_ZIP_LIMITS,
          maxEntries: settings.limits.patchFiles,
          maxTotalBytes: settings.limits.unpackedBytes,
        },
        onProgress,
      ),
    snapshots: async () => {
      snapshots ??= await updaterSnapshots(ctx);
      return snapshots.service;
    },
    services: hooks.services ?? agent.serviceControl,
    unfinishedTasks: async () =>
      (
        await listUnfinishedTasks({
          boxApp,
          sqlite: sqliteAdapter,
          dbPath: () => join(settings.paths.data, agent.boxConfig.dbFileName),
          logger,
        })
      ).tasks,
    pausedTasks: hooks.pausedTasks ?? (() => boxApp.listPausedTasks()),
    fsCli: fsCliFor(settings),
    logger,
    onProgress: (code, p) => engineRef.engine?.reportProgress(code, p),
    onSnapshotProgress: (snapshot, done, total, verb = 'hashed') =>
      engineRef.engine?.reportSnapshot({ snapshot, done, total, verb }),
    onExtractProgress: (code, bytes, totalBytes) =>
      engineRef.engine?.reportExtraction(code, { bytes, totalBytes }),
    configChanged: () => {
      agent.refreshBoxConfig().catch((err: unknown) => {
        logger.warn({ err: errorMessage(err) }, 'cannot reload configuration.ini');
      });
    },
    agentVersion: agentInstall().version,
    selfUpdater: createSelfUpdater(settings, logger, selfUpdateWorld(), (why) => requestExit(why)),
  });
  const effects = hooks.wrapEffects?.(boxEffects) ?? boxEffects;
  const engine = new UpdateEngine({
    metaPath: settings.paths.patchMeta,
    metaFiles: { fs: hooks.metaFs ?? hooks.fs ?? nodePatchFs, now: () => new Date() },
    policy: updatePolicy(settings),
    effects,
    logger,
    trace,
    onFatal,
    periodicChecks: hooks.periodicChecks ?? true,
    waitForDisk: hooks.waitForDisk ?? false,
    ...(hooks.inspect === undefined ? {} : { inspect: hooks.inspect }),
  });
  engineRef.engine = engine;
  await engine.load();
  agent.attachUpdates(engine);
  return {
    engine,
    tracePath: trace.path,
    exitRequested,
    async close() {
      await engine.stop();
      await snapshots?.close();
    },
  };
}

const EVENTS: Record<string, UpdateEvent['type']> = {
  check: 'CHECK',
  install: 'INSTALL',
  rollback: 'ROLLBACK',
  'clear-cache': 'CLEAR_CACHE',
};

function isPatchInfo(x: unknown): x is PatchInfo {
  if (typeof x !== 'object' || x === null) return false;
  const p = x as Record<string, unknown>;
  return (
    ['versionCode', 'versionNum', 'fileMd5', 'remark'].every((k) => typeof p[k] === 'string') &&
    typeof p.argumentConfigMap === 'object' &&
    p.argumentConfigMap !== null
  );
}

/**
 * One operator command (`{ command, patch? }`), as the control channel and the console run it:
 * 200 and `accepted` when the cycle took it, 409 when its state refuses it.
 */
export function controlCommand(
  engine: UpdateEngine,
  reloadPolicy: () => Promise<UpdatePolicy>,
): (body: unknown) => Promise<ControlReply> {
  return async (body) => {
    const name = (body as { command?: unknown } | null)?.command;
    if (name === 'reload-config') {
      const policy = await reloadPolicy();
      engine.send({ type: 'RELOAD_CONFIG', policy });
      return { status: 200, body: { accepted: true, status: engine.status() } };
    }
    if (name === 'install-file') {
      const patch = (body as { patch?: unknown }).patch;
      if (!isPatchInfo(patch))
        return { status: 400, body: { error: 'install-file needs a patch' } };
      const accepted = engine.send({ type: 'INSTALL_FILE', patch });
      return { status: accepted ? 200 : 409, body: { accepted, status: engine.status() } };
    }
    const type = typeof name === 'string' ? EVENTS[name] : undefined;
    if (type === undefined)
      return { status: 400, body: { error: `unknown command ${String(name)}` } };
    let accepted = engine.send({ type } as UpdateEvent);
    // A version check takes a moment: the command waits for it rather than being refused.
    for (let i = 0; !accepted && i < 100 && engine.status().tags.includes('brief'); i++) {
      await new Promise((r) => setTimeout(r, 100));
      accepted = engine.send({ type } as UpdateEvent);
    }
    return { status: accepted ? 200 : 409, body: { accepted, status: engine.status() } };
  };
}

/** The daemon's side of `boxkeeper check|install|rollback|clear-cache|reload-config`. */
export function serveControl(
  settings: Settings,
  engine: UpdateEngine,
  reloadPolicy: () => Promise<UpdatePolicy>,
  requestStop: () => void = () => undefined,
  health?: () => Health,
): Promise<ControlServer> {
  const command = controlCommand(engine, reloadPolicy);
  const handler: ControlHandler = async (method, path, body) => {
    if (method === 'GET' && path === '/status') return { status: 200, body: engine.status() };
    // The probe for monitoring (balena-supervisor's /v1/healthy): no token, 503 when unhealthy.
    if (method === 'GET' && path === '/healthz' && health !== undefined) {
      const h = health();
      return { status: h.healthy ? 200 : 503, body: h };
    }
    // `boxkeeper service stop-agent` (the Windows service's stop command): a graceful stop
    // where signals cannot ask for one.
    if (method === 'POST' && path === '/stop') {
      requestStop();
      return { status: 200, body: { stopping: true } };
    }
    if (method === 'POST' && path === '/command') return command(body);
    return { status: 404, body: { error: `no ${method} ${path}` } };
  };
  return startControlServer(controlFile(settings), handler, new Set(['/healthz']));
}
