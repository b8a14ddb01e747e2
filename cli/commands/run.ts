import { join } from 'node:path';
import { ExitCode } from '../../adapters/errors.ts';
import { acquireInstanceLock } from '../../adapters/instance-lock.ts';
import { errorMessage } from '../../adapters/errors.ts';
import { connectInspector, releaseProcess } from '../../adapters/inspector.ts';
import { platformRegistry } from '../../adapters/registry.ts';
import { HANDOVER_EXIT_CODE, serviceKindOf } from '../../services/service-definitions.ts';
import { loadSettings } from '../../services/settings.ts';
import { loadContext, realWorld, settingsOption, createBoxAgent } from '../context.ts';
import { createUpdateRuntime, serveControl, updatePolicy, type UpdateRuntime } from '../updates.ts';
import type { Command } from './index.ts';

export const runCommand: Command = {
  name: 'run',
  summary: 'Run the agent (heartbeats, service supervision) until stopped',
  usage: '[--settings PATH]',
  description:
    'Runs the boxkeeper daemon for one box: keeps Java and FreeSWITCH running and sends\n' +
    'heartbeats to the cloud platform. One instance per box (a lock in [paths] agent_data).\n' +
    'Stops on SIGINT/SIGTERM; the box services keep running.',
  options: {
    ...settingsOption,
    inspect: {
      type: 'string',
      help: 'stream the update statecharts to a Stately inspector (ws://HOST:PORT)',
    },
  },
  async run(args) {
    const ctx = await loadContext(args, 'auto');
    const inspector =
      typeof args.values.inspect === 'string' ? connectInspector(args.values.inspect) : undefined;
    const { settings, log } = ctx;
    const lock = await acquireInstanceLock(
      join(settings.paths.agentData, 'agent.lock'),
      'boxkeeper run',
      realWorld.processes,
    );
    let stopRequested: (why: string) => void = () => undefined;
    const stopped = new Promise<string>((resolve) => (stopRequested = resolve));
    let exitCode: ExitCode = ExitCode.ok;
    try {
      const { agent, cloud, boxApp } = await createBoxAgent(ctx);
      let updates: UpdateRuntime | undefined;
      let control: { close(): Promise<void> } | undefined;
      if (settings.update.enabled) {
        updates = await createUpdateRuntime(
          ctx,
          agent,
          cloud,
          boxApp,
          (err) => {
            // Fail-stop: nothing more can be made durable; the next start resumes from the file.
            log.logger.fatal({ err: errorMessage(err) }, 'update state cannot be saved; exiting');
            process.exit(1);
          },
          inspector === undefined ? {} : { inspect: inspector.inspect },
        );
        agent.start({ holdServices: updates.engine.servicesMustStayDown() });
        updates.engine.start();
        const engine = updates.engine;
        const server = await serveControl(
          settings,
          engine,
          async () => {
            await agent.refreshBoxConfig();
            const fresh = await loadSettings(settings.file, {
              readFile: realWorld.files.readFile,
              registry: platformRegistry(settings.platform),
              platform: settings.platform,
            });
            return updatePolicy(fresh.settings);
          },
          () => stopRequested('stop requested'),
        );
        control = server;
        agent.setControl({ url: server.info.url });
      } else {
        log.logger.warn('the update cycle is off ([update] enabled = off)');
        agent.start();
      }
      const signal = await new Promise<string>((resolve) => {
        process.once('SIGINT', () => resolve('SIGINT'));
        process.once('SIGTERM', () => resolve('SIGTERM'));
        void updates?.exitRequested.then(resolve);
        void stopped.then(resolve);
      });
      log.logger.info({ signal }, 'stopping (box services keep running)');
      await control?.close();
      await updates?.close();
      await agent.stop();
      // Under systemd the hand-over exit must not look like an agent to restart: the updater
      // restarts the service once the new build is in place (docs/architecture.md).
      if (signal === 'self-update' && serviceKindOf(process.env) === 'systemd')
        exitCode = HANDOVER_EXIT_CODE;
    } finally {
      await lock.release();
      log.close();
      if (inspector !== undefined) {
        inspector.close();
        releaseProcess();
      }
    }
    return exitCode;
  },
};
