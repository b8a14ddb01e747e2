// The local console as the daemon runs it: the console service (services/console/console.ts) on the
// loopback web server (adapters/console-server.ts), its chart rendered by Graphviz on first use.
import { startConsoleServer, type ConsoleServer } from '../adapters/console-server.ts';
import type { ControlReply } from '../adapters/control.ts';
import type { Agent } from '../services/agent/agent.ts';
import { consoleRoutes } from '../services/console/console.ts';
import { DIAGRAMS, toDot } from '../services/console/diagram.ts';
import { consolePath } from '../services/agent/agent-files.ts';
import type { Context } from './context.ts';

/** The update statechart as SVG: the same picture as docs/diagrams/update.svg. */
async function updateChart(): Promise<string> {
  const { loadDotRenderer } = await import('../adapters/graphviz.ts');
  const spec = DIAGRAMS.find((d) => d.name === 'update');
  if (spec === undefined) throw new Error('no update diagram');
  return (await loadDotRenderer())(toDot(spec.machine, spec.options));
}

/**
 * Serves the console while the daemon runs. `command` runs an operator command as the control
 * channel does (undefined when the update cycle is off).
 */
export async function serveConsole(
  ctx: Context,
  agent: Agent,
  command: ((body: unknown) => Promise<ControlReply>) | undefined,
): Promise<ConsoleServer> {
  const view = consoleRoutes({
    status: () => agent.currentStatus(),
    onStatus: (l) => agent.onStatus(l),
    ...(ctx.log.recent === undefined ? {} : { logs: ctx.log.recent }),
    chart: updateChart,
    command: (name) =>
      command === undefined
        ? Promise.resolve({
            status: 409,
            body: { error: 'the update cycle is off ([update] enabled = off)' },
          })
        : command({ command: name }),
  });
  const server = await startConsoleServer({
    port: ctx.settings.console.port,
    infoFile: consolePath(ctx.settings),
    routes: view.routes,
  });
  const detach = view.attach((event, data) => server.publish(event, data));
  return {
    info: server.info,
    publish: (e, d) => server.publish(e, d),
    close: async () => {
      detach();
      await server.close();
    },
  };
}
