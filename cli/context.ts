// Composition root: loads settings, builds the real adapters and hands them to services.
import { dirname, extname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { findAgentInstall, type AgentInstall } from '../adapters/agent-install.ts';
import { createBoxAppClient, type BoxAppApi } from '../adapters/box-app.ts';
import { createCloudClient, type CloudApi } from '../adapters/cloud-client.ts';
import { nodeFiles } from '../adapters/files.ts';
import { createFreeswitchCli, type FreeswitchCli } from '../adapters/freeswitch.ts';
import { consoleModeFor, createLogger, loadPretty, type LogHandle } from '../adapters/logger.ts';
import { nodeProcesses } from '../adapters/processes.ts';
import { platformRegistry } from '../adapters/registry.ts';
import { captureScriptEnvironment } from '../adapters/script-env.ts';
import { createSystemInfo } from '../adapters/system.ts';
import { executableName } from '../services/box-paths.ts';
import { loadBoxConfig, readAppPort, type BoxConfig } from '../services/box-config.ts';
import { Agent } from '../services/agent.ts';
import { loadSettings, locateSettings, type Settings } from '../services/settings.ts';
import type { CommandArgs } from './commands/index.ts';

export interface Context {
  settings: Settings;
  log: LogHandle;
}

export const settingsOption = {
  settings: {
    type: 'string',
    help: 'settings.ini to use (else $BOXKEEPER_SETTINGS, else ./settings/settings.ini)',
  },
} as const;

export async function loadContext(args: CommandArgs, console: 'auto' | 'none'): Promise<Context> {
  const flag = typeof args.values.settings === 'string' ? args.values.settings : undefined;
  const file = locateSettings(flag, process.env, process.cwd(), process.platform);
  const { settings, warnings } = await loadSettings(file, {
    readFile: nodeFiles.readFile,
    registry: platformRegistry(process.platform),
    platform: process.platform,
  });
  const mode = console === 'auto' ? consoleModeFor(process.stdout) : 'none';
  const log = createLogger({
    level: settings.general.logLevel,
    dir: settings.paths.logs,
    retentionDays: settings.general.logExpirationDays,
    console: mode,
    ...(mode === 'pretty' ? { pretty: await loadPretty() } : {}),
  });
  for (const w of warnings) log.logger.warn(w);
  return { settings, log };
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
  const boxConfig = await loadBoxConfig(settings.paths.config, realWorld.files.readFile);
  const port = await readAppPort(settings.paths.appYml, realWorld.files.readFile);
  const current = { agent: undefined as Agent | undefined };
  const cloud = cloudFor(ctx, () => current.agent?.boxConfig ?? boxConfig);
  const boxApp = realWorld.boxApp(port);
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
