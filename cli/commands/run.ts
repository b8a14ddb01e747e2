import { ExitCode } from '../exit-codes.ts';
import { errorMessage } from '../../adapters/errors.ts';
import { platformRegistry } from '../../adapters/registry.ts';
import { HANDOVER_EXIT_CODE, serviceKindOf } from '../../services/install/service-definitions.ts';
import { loadSettings, securityWarnings } from '../../services/agent/settings.ts';
import { loadContext, realWorld } from '../context.ts';
import { openSession } from '../session.ts';
import { assessHealth } from '../../services/agent/health.ts';
import type { ControlReply } from '../../adapters/control.ts';
import { controlCommand, serveControl, updatePolicy } from '../updates.ts';
import type { CommandArgs } from './index.ts';

export async function run(args: CommandArgs): Promise<ExitCode> {
  const ctx = await loadContext(args, 'auto');
  // The inspector (and ws, superjson with it) loads only when asked for: an idle daemon holds
  // no developer tool.
  const inspectorModule =
    typeof args.values.inspect === 'string'
      ? await import('../../adapters/inspector.ts')
      : undefined;
  const inspector =
    inspectorModule !== undefined && typeof args.values.inspect === 'string'
      ? inspectorModule.connectInspector(args.values.inspect)
      : undefined;
  const { settings, log } = ctx;
  let stopRequested: (why: string) => void = () => undefined;
  const stopped = new Promise<string>((resolve) => (stopRequested = resolve));
  let exitCode: ExitCode = ExitCode.ok;
  try {
    const session = await openSession(ctx, {
      holder: 'boxkeeper run',
      ...(settings.update.enabled
        ? {
            updates: {
              onFatal: (err: unknown) => {
                // Fail-stop: nothing more can be made durable; the next start resumes from the file.
                log.logger.fatal(
                  { err: errorMessage(err) },
                  'update state cannot be saved; exiting',
                );
                process.exit(1);
              },
              hooks: {
                waitForDisk: true,
                // As the Python tool: debug mode runs nothing on a timer; operator commands
                // still work.
                periodicChecks: !settings.general.debugMode,
                ...(inspector === undefined ? {} : { inspect: inspector.inspect }),
              },
            },
          }
        : {}),
    });
    for (const w of securityWarnings(settings)) log.logger.warn(w);
    const { agent, updates } = session;
    let control: { close(): Promise<void> } | undefined;
    let command: ((body: unknown) => Promise<ControlReply>) | undefined;
    let consoleServer: { close(): Promise<void> } | undefined;
    if (updates !== undefined) {
      agent.start({ holdServices: updates.engine.servicesMustStayDown() });
      updates.engine.start();
      const engine = updates.engine;
      const reloadPolicy = async () => {
        await agent.refreshBoxConfig();
        const fresh = await loadSettings(settings.file, {
          readFile: realWorld.files.readFile,
          registry: platformRegistry(settings.platform),
          platform: settings.platform,
        });
        return updatePolicy(fresh.settings);
      };
      command = controlCommand(engine, reloadPolicy);
      const server = await serveControl(
        settings,
        engine,
        reloadPolicy,
        () => stopRequested('stop requested'),
        () =>
          assessHealth({
            running: true,
            status: agent.currentStatus(),
            heartbeatMs: settings.timer.heartbeatMs,
            now: Date.now(),
          }),
      );
      control = server;
      agent.setControl({ url: server.info.url });
    } else {
      log.logger.warn('the update cycle is off ([update] enabled = off)');
      agent.start();
    }
    if (settings.console.enabled) {
      // The console is a view: a port that cannot be had is said in the log, and the agent runs on.
      const { serveConsole } = await import('../console-wiring.ts');
      await serveConsole(ctx, agent, command).then(
        (server) => {
          consoleServer = server;
          log.logger.info(
            { url: server.info.url },
            'console served (`boxkeeper console` prints its link)',
          );
        },
        (err: unknown) =>
          log.logger.error({ err: errorMessage(err) }, 'the console cannot be served'),
      );
    }
    const signal = await new Promise<string>((resolve) => {
      process.once('SIGINT', () => resolve('SIGINT'));
      process.once('SIGTERM', () => resolve('SIGTERM'));
      void updates?.exitRequested.then(resolve);
      void stopped.then(resolve);
    });
    log.logger.info({ signal }, 'stopping (box services keep running)');
    await consoleServer?.close();
    await control?.close();
    await session.close();
    // Under systemd the hand-over exit must not look like an agent to restart: the updater
    // restarts the service once the new build is in place (docs/architecture.md).
    if (signal === 'self-update' && serviceKindOf(process.env) === 'systemd')
      exitCode = HANDOVER_EXIT_CODE;
  } finally {
    log.close();
    if (inspector !== undefined) {
      inspector.close();
      inspectorModule?.releaseProcess();
    }
  }
  return exitCode;
}
