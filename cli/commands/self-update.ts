// `boxkeeper self-update`: started (detached) by an agent that installs a new build of itself.
// Not for operators; the procedure is services/update/self-update.ts (docs/lifecycle.md).
import { ExitCode } from '../exit-codes.ts';
import { UsageError } from '../../adapters/errors.ts';
import { runSelfUpdate } from '../../services/update/self-update.ts';
import { serviceKindOf } from '../../services/install/service-definitions.ts';
import { loadContext } from '../context.ts';
import { selfUpdateWorld } from '../self-update.ts';
import { updatePolicy } from '../updates.ts';
import { serviceManagerFor } from './service.ts';
import type { CommandArgs } from './index.ts';

export async function run(args: CommandArgs): Promise<ExitCode> {
  const build = args.values.build;
  const home = args.values.home;
  const agentPid = Number(args.values['agent-pid']);
  if (typeof build !== 'string' || typeof home !== 'string' || !Number.isInteger(agentPid))
    throw new UsageError('self-update needs --build DIR, --home DIR and --agent-pid PID');
  const ctx = await loadContext(args, 'none');
  const { settings } = ctx;
  const logger = ctx.log.logger.child({ component: 'self-update' });
  // BOXKEEPER_SERVICE (inherited from the agent the service manager runs): who starts agents.
  const kind = serviceKindOf(process.env);
  const service = kind === undefined ? undefined : serviceManagerFor(kind, settings);
  if (service !== undefined) logger.info({ service: kind }, 'running under a service manager');
  try {
    await runSelfUpdate({
      settings,
      logger,
      policy: updatePolicy(settings),
      world: selfUpdateWorld(),
      service,
      build,
      home,
      agentPid,
    });
    return ExitCode.ok;
  } finally {
    ctx.log.close();
  }
}
