import { ExitCode } from '../exit-codes.ts';
import { loadBoxConfig } from '../../services/agent/box-config.ts';
import { sendHeartbeat } from '../../services/agent/heartbeat.ts';
import { freeswitchMatcher, javaMatcher } from '../../services/supervision/supervisor.ts';
import { cloudFor, fsCliFor, loadContext, realWorld } from '../context.ts';
import type { CommandArgs } from './index.ts';

export async function run(args: CommandArgs): Promise<ExitCode> {
  const ctx = await loadContext(args, 'none');
  const { settings, log } = ctx;
  try {
    const boxConfig = await loadBoxConfig(settings.paths.config, realWorld.files.readFile);
    const fsCli = fsCliFor(settings);
    const report = await sendHeartbeat({
      cloud: cloudFor(ctx, () => boxConfig),
      boxConfig: () => Promise.resolve(boxConfig),
      fsCli,
      processes: realWorld.processes,
      system: realWorld.system,
      isJava: javaMatcher(settings.paths.jar, settings.platform),
      isFreeswitch: freeswitchMatcher(settings.paths.fs, settings.platform),
      boxRoot: settings.paths.boxRoot,
      sendAccessSecret: settings.general.sendAccessSecret,
      logger: log.logger,
    });
    const shown = report.items.map(
      (i) =>
        `  ${i.key.padEnd(15)}${i.key === 'access_secret' && i.value !== '' ? '(sent)' : JSON.stringify(i.value)}`,
    );
    process.stdout.write(
      `heartbeat sent (versionCode ${report.versionCode}):\n${shown.join('\n')}\n`,
    );
    return ExitCode.ok;
  } finally {
    log.close();
  }
}
