// The local console (issue 11): what the page served on loopback shows and what it may do.
// The daemon's status (the update cycle, both services, heartbeats) is pushed to every open page
// as it changes, at most a few times a second; recent log lines follow with secrets masked; the
// update statechart is drawn from the machine definition, and the page lights the current
// state. Actions are the operator commands, through the same handler as the control channel.
import type { ConsoleAnswer, ConsoleRoutes } from '../../adapters/console-server.ts';
import { maskSecrets } from '../../adapters/secrets.ts';
import type { AgentStatus } from '../agent/agent.ts';
import { CONSOLE_CSS, CONSOLE_HTML, CONSOLE_JS } from './console-page.ts';

/** The operator actions the page offers, as control-channel command names. */
export const CONSOLE_ACTIONS = ['check', 'install', 'rollback', 'clear-cache'] as const;
export type ConsoleAction = (typeof CONSOLE_ACTIONS)[number];

export interface ConsoleDeps {
  status(): AgentStatus;
  onStatus(listener: (status: AgentStatus) => void): () => void;
  /** Recent log lines (pino's JSON lines), if the log keeps them. */
  logs?: { snapshot(): string[]; onLine(listener: (line: string) => void): () => void };
  /** The update statechart as SVG (rendered on first use). */
  chart(): Promise<string>;
  /** Runs an operator command as the control channel would. */
  command(name: ConsoleAction): Promise<{ status: number; body: unknown }>;
  /** Least time between two status pushes (default 250 ms). */
  pushEveryMs?: number;
}

export interface ConsoleLogLine {
  time: string;
  level: string;
  text: string;
}

const LEVELS: Record<number, string> = {
  10: 'trace',
  20: 'debug',
  30: 'info',
  40: 'warn',
  50: 'error',
  60: 'fatal',
};
/** Fields every line has, left out of the line's details. */
const PLUMBING = new Set(['level', 'time', 'pid', 'hostname', 'msg', 'service', 'component']);

/** One log line as the page shows it: time, level, `[service] message {details}`, masked. */
export function consoleLogLine(json: string): ConsoleLogLine {
  let entry: Record<string, unknown>;
  try {
    entry = maskSecrets(JSON.parse(json)) as Record<string, unknown>;
  } catch {
    return { time: '', level: 'info', text: json };
  }
  const details = Object.fromEntries(Object.entries(entry).filter(([k]) => !PLUMBING.has(k)));
  const tags = [entry.service, entry.component]
    .filter((t): t is string => typeof t === 'string')
    .map((t) => `[${t}] `)
    .join('');
  const extra = Object.keys(details).length === 0 ? '' : ` ${JSON.stringify(details)}`;
  return {
    time: typeof entry.time === 'string' ? entry.time : '',
    level: LEVELS[entry.level as number] ?? String(entry.level),
    text: `${tags}${typeof entry.msg === 'string' ? entry.msg : ''}${extra}`,
  };
}

/** The status as the page receives it: masked, and the update state as a chart path. */
export function consoleStatus(status: AgentStatus): unknown {
  return maskSecrets(status);
}

const asset = (type: string, body: string): ConsoleAnswer => ({ status: 200, type, body });

/**
 * The console's routes, and `attach`, which pushes changes to `publish` until the returned
 * function is called.
 */
export function consoleRoutes(deps: ConsoleDeps): {
  routes: ConsoleRoutes;
  attach(publish: (event: string, data: unknown) => void): () => void;
} {
  let chart: Promise<string> | undefined;
  const routes: ConsoleRoutes = {
    get(path) {
      if (path === '/') return asset('text/html; charset=utf-8', CONSOLE_HTML);
      if (path === '/console.js') return asset('text/javascript; charset=utf-8', CONSOLE_JS);
      if (path === '/console.css') return asset('text/css; charset=utf-8', CONSOLE_CSS);
      if (path === '/chart.svg') {
        // Rendered once; a failed render is tried again by the next page.
        chart ??= deps.chart().catch((err: unknown) => {
          chart = undefined;
          throw err;
        });
        return chart.then((svg) => asset('image/svg+xml', svg));
      }
      if (path === '/api/status')
        return asset('application/json', JSON.stringify(consoleStatus(deps.status())));
      return undefined;
    },
    async post(path, body) {
      if (path !== '/api/action') return { status: 404, body: { error: `no POST ${path}` } };
      const name = (body as { action?: unknown } | null)?.action;
      if (!CONSOLE_ACTIONS.includes(name as ConsoleAction))
        return {
          status: 400,
          body: { error: `unknown action ${String(name)}: one of ${CONSOLE_ACTIONS.join(', ')}` },
        };
      return deps.command(name as ConsoleAction);
    },
    hello() {
      return [
        { event: 'status', data: consoleStatus(deps.status()) },
        { event: 'logs', data: (deps.logs?.snapshot() ?? []).map(consoleLogLine) },
      ];
    },
  };

  const attach = (publish: (event: string, data: unknown) => void) => {
    const every = deps.pushEveryMs ?? 250;
    let timer: NodeJS.Timeout | undefined;
    let last = 0;
    const push = () => {
      timer = undefined;
      last = Date.now();
      publish('status', consoleStatus(deps.status()));
    };
    // Coalesced: a burst of changes (a supervisor tick, a heartbeat) is one push.
    const offStatus = deps.onStatus(() => {
      if (timer !== undefined) return;
      timer = setTimeout(push, Math.max(0, last + every - Date.now()));
      timer.unref();
    });
    const offLogs = deps.logs?.onLine((line) => publish('log', consoleLogLine(line)));
    return () => {
      offStatus();
      offLogs?.();
      if (timer !== undefined) clearTimeout(timer);
    };
  };
  return { routes, attach };
}
