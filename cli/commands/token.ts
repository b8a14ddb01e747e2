import { ExitCode } from '../../adapters/errors.ts';
import { loadBoxConfig } from '../../services/box-config.ts';
import { cloudFor, loadContext, realWorld, settingsOption } from '../context.ts';
import type { Command } from './index.ts';

export const tokenCommand: Command = {
  name: 'token',
  summary: 'Acquire a cloud token and print its expiry (never the token)',
  usage: '[--settings PATH]',
  description:
    'Requests a token with the signed getUserToken call, using configuration.ini’s access id\n' +
    'and secret, and prints when it expires. Exit 4 if the cloud refuses.',
  options: { ...settingsOption },
  async run(args) {
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
  },
};
