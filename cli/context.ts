// Composition root: loads settings, builds the real adapters and hands them to services.
import { dirname, extname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { findAgentInstall, type AgentInstall } from '../adapters/agent-install.ts';
import { createBoxAppClient, type BoxAppApi } from '../adapters/box-app.ts';
import { createCloudClient, type CloudApi } from '../adapters/cloud-client.ts';
import { ConfigError } from '../adapters/errors.ts';
import { fileAccessFor } from '../adapters/file-acl.ts';
import { nodeFiles } from '../adapters/files.ts';
import { createFreeswitchCli, type FreeswitchCli } from '../adapters/freeswitch.ts';
import { consoleModeFor, createLogger, loadPretty, type LogHandle } from '../adapters/logger.ts';
import { captureScriptEnvironment } from '../adapters/script-env.ts';
import { createSystemInfo } from '../adapters/system.ts';
import { executableName } from '../services/agent/box-paths.ts';
import {
  appConfigProblem,
  boxAppAtConfiguredPort,
  loadBoxConfig,
  type BoxConfig,
} from '../services/agent/box-config.ts';
import { Agent } from '../services/agent/agent.ts';
import type { Settings } from '../services/agent/settings.ts';
import type { CommandArgs } from './commands/index.ts';
import { makeAgentFilesPrivate } from './private-files.ts';
import { nodeProcesses } from './process-control.ts';
import { readCloudCa, readSettings } from './settings-load.ts';

export interface Context {
  settings: Settings;
  log: LogHandle;
  /** [security] ca_file's certificates (PEM), read at start. */
  cloudCa?: string;
}

export async function loadContext(
  args: CommandArgs,
  console: 'auto' | 'none',
  /** `false` for a command that only reads what is there (status): it works without the box. */
  options: { needsBox?: boolean } = {},
): Promise<Context> {
  const { settings, warnings } = await readSettings(args);
  // Before the log opens: a missing box must not gain a <box_root>/boxkeeper/logs of ours.
  if (options.needsBox !== false && !(await nodeFiles.exists(settings.paths.boxRoot))) {
    throw new ConfigError([
      {
        file: settings.file,
        section: 'paths',
        key: 'box_root',
        message: `the box install dir ${settings.paths.boxRoot} does not exist; set box_root to it`,
      },
    ]);
  }
  const log = await openLog(settings, console);
  for (const w of warnings) log.logger.warn(w);
  const cloudCa = await readCloudCa(settings);
  return cloudCa === undefined ? { settings, log } : { settings, log, cloudCa };
}

/** The agent's log ([paths] logs), and the console when `console` is 'auto' and one is there. */
export async function openLog(settings: Settings, console: 'auto' | 'none'): Promise<LogHandle> {
  const mode = console === 'auto' ? consoleModeFor(process.stdout) : 'none';
  return createLogger({
    level: settings.general.logLevel,
    dir: settings.paths.logs,
    retentionDays: settings.general.logExpirationDays,
    maxBytes: settings.general.logMaxMb * 1024 * 1024,
    console: mode,
    // The console's recent log lines (only kept when it is on).
    ...(settings.console.enabled ? { recent: 200 } : {}),
    ...(mode === 'pretty' ? { pretty: await loadPretty() } : {}),
  });
}

export function fsCliFor(settings: Settings): FreeswitchCli {
  return createFreeswitchCli(
    join(settings.paths.fs, executableName('fs_cli', settings.platform)),
    settings.paths.fs,
    nodeProcesses,
  );
}

export function cloudFor(ctx: Context, boxConfig: () => BoxConfig): CloudApi {
  return createCloudClient({
    hostAddr: ctx.settings.general.hostAddr,
    credentials: () => {
      const c = boxConfig();
      return { accessKeyId: c.accessId, accessKeySecret: c.accessSecret, appKey: c.appKey };
    },
    timeoutMs: ctx.settings.cloud.timeoutMs,
    retries: ctx.settings.cloud.retries,
    refreshMarginMs: ctx.settings.cloud.tokenRefreshMarginMs,
    logger: ctx.log.logger,
    limits: ctx.settings.limits,
    ...(ctx.cloudCa === undefined ? {} : { certificateAuthority: ctx.cloudCa }),
  });
}

/**
 * This agent's install: cli/context.ts sits next to the CLI entry (main.ts / main.js); in a
 * package it is bundled into lib/, whose entry is boxkeeper.mjs (packaging/package.ts).
 */
export function agentInstall(): AgentInstall {
  const here = fileURLToPath(import.meta.url);
  const ext = extname(here);
  return findAgentInstall(join(dirname(here), ext === '.mjs' ? 'boxkeeper.mjs' : `main${ext}`));
}

export const realWorld = {
  files: nodeFiles,
  processes: nodeProcesses,
  system: createSystemInfo(process.platform, nodeProcesses),
  boxApp: createBoxAppClient,
};

/**
 * The agent for this box with its cloud client and box app client. The cloud client signs with
 * whatever configuration.ini the agent last read.
 */
export async function createBoxAgent(
  ctx: Context,
): Promise<{ agent: Agent; cloud: CloudApi; boxApp: BoxAppApi }> {
  const { settings, log } = ctx;
  await makeAgentFilesPrivate(settings, fileAccessFor(process.platform), log.logger);
  const boxConfig = await loadBoxConfig(settings.paths.config, realWorld.files.readFile);
  // A broken application.yml stops Java from starting (the supervisor reports why), not the
  // agent: heartbeats and FreeSWITCH go on, and the port is read again once the file is fixed.
  const ymlProblem = await appConfigProblem(settings.paths.appYml, realWorld.files.readFile);
  if (ymlProblem !== null)
    log.logger.error({ problem: ymlProblem }, 'application.yml is unusable: Java cannot start');
  const current = { agent: undefined as Agent | undefined };
  const cloud = cloudFor(ctx, () => current.agent?.boxConfig ?? boxConfig);
  const boxApp = boxAppAtConfiguredPort(
    settings.paths.appYml,
    realWorld.files.readFile,
    realWorld.boxApp,
  );
  const agent = new Agent({
    settings,
    logger: log.logger,
    files: realWorld.files,
    processes: realWorld.processes,
    cloud,
    fsCli: fsCliFor(settings),
    system: realWorld.system,
    boxApp,
    boxConfig,
    agentVersion: agentInstall().version,
    scriptEnvironment: (script) => captureScriptEnvironment(script, settings.platform, process.env),
  });
  current.agent = agent;
  return { agent, cloud, boxApp };
}
