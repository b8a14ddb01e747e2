import { ExitCode } from '../exit-codes.ts';
import { loadBoxConfig } from '../../services/agent/box-config.ts';
import { cloudFor, loadContext, realWorld } from '../context.ts';
import type { CommandArgs } from './index.ts';

export async function run(args: CommandArgs): Promise<ExitCode> {
  const ctx = await loadContext(args, 'none');
  try {
    const boxConfig = await loadBoxConfig(ctx.settings.paths.config, realWorld.files.readFile);
    const info = await cloudFor(ctx, () => boxConfig).refreshToken();
    const seconds = Math.round((info.expiresAt - Date.now()) / 1000);
    process.stdout.write(
      `token acquired from ${ctx.settings.general.hostAddr}\n` +
        `expires ${new Date(info.expiresAt).toISOString()} (in ${seconds} s; server sent expireTime in ${info.unit === 's' ? 'seconds' : 'milliseconds'})\n`,
    );
    return ExitCode.ok;
  } finally {
    ctx.log.close();
  }
}
