// Finding and reading settings.ini (and [security] ca_file) without the logger, the cloud
// client or the agent: what `boxkeeper status` needs, and the first step of every context.
import { ConfigError, errorMessage } from '../adapters/errors.ts';
import { nodeFiles } from '../adapters/files.ts';
import { platformRegistry } from '../adapters/registry.ts';
import { loadSettings, locateSettings, type Settings } from '../services/agent/settings.ts';
import type { CommandArgs } from './commands/index.ts';

/** settings.ini from --settings, else $BOXKEEPER_SETTINGS, else ./settings/settings.ini. */
export function readSettings(
  args: CommandArgs,
): Promise<{ settings: Settings; warnings: string[] }> {
  const flag = typeof args.values.settings === 'string' ? args.values.settings : undefined;
  const file = locateSettings(flag, process.env, process.cwd(), process.platform);
  return loadSettings(file, {
    readFile: nodeFiles.readFile,
    registry: platformRegistry(process.platform),
    platform: process.platform,
  });
}

/** [security] ca_file's certificates (PEM), or undefined when none is set. */
export async function readCloudCa(settings: Settings): Promise<string | undefined> {
  const caFile = settings.security.caFile;
  if (caFile === null) return undefined;
  const ca = await nodeFiles.readFile(caFile).catch((err: unknown) => {
    throw new ConfigError([
      {
        file: settings.file,
        section: 'security',
        key: 'ca_file',
        message: `cannot read ${caFile} (${errorMessage(err)})`,
      },
    ]);
  });
  const pem = Buffer.from(ca).toString('utf8');
  if (!pem.includes('-----BEGIN CERTIFICATE-----'))
    throw new ConfigError([
      {
        file: settings.file,
        section: 'security',
        key: 'ca_file',
        message: `${caFile} holds no PEM certificate (-----BEGIN CERTIFICATE-----)`,
      },
    ]);
  return pem;
}
