// Supervision of one box service (Java app or FreeSWITCH): detect → start → wait until ready
// → watch; on failure back off exponentially; too many starts inside a window is a crash loop,
// which is reported and retried only after a long pause (or never). A service that cannot be
// started at all (its configuration is broken) is `notStartable`: no start is counted, and the
// check is repeated every `notStartableRetryMs` until it passes. STOP puts the service in
// an intentional `stopped` state that nothing restarts until START (the installer uses it).
//
// This machine is not persisted (supervision restarts from detection after an agent restart),
// so `after` delays are fine here. All effects are invoked actors supplied by services/.
import { assign, fromPromise, setup } from 'xstate';

export type ServiceName = 'java' | 'freeswitch';

export interface SupervisionPolicy {
  backoffInitialMs: number;
  backoffMaxMs: number;
  crashLoopStarts: number;
  crashLoopWindowMs: number;
  /** 0: a crash loop stays stopped until an operator or the installer starts it. */
  crashLoopRetryMs: number;
  /** A service up this long has its failure count cleared. */
  stableAfterMs: number;
  /** How often a service that cannot be started (broken configuration) is looked at again. */
  notStartableRetryMs: number;
}

export interface ServiceContext {
  name: ServiceName;
  policy: SupervisionPolicy;
  pid: number | null;
  /** Start times (epoch ms) inside the crash-loop window. */
  starts: number[];
  /** Consecutive failures since the service was last stable. */
  failures: number;
  lastError: string | null;
  /** Whether the running process was found already running rather than started by us. */
  adopted: boolean;
  /** START arrived while stopping: start again once stopped (else it would be lost). */
  startAfterStop: boolean;
}

export type ServiceEvent = { type: 'STOP' } | { type: 'START' };

export interface DetectOutput {
  pid: number | null;
}
export interface StartOutput {
  pid: number;
  at: number;
}
export interface EffectInput {
  name: ServiceName;
  pid: number | null;
}

function backoffDelay(ctx: ServiceContext): number {
  const exp = Math.max(0, ctx.failures - 1);
  return Math.min(ctx.policy.backoffMaxMs, ctx.policy.backoffInitialMs * 2 ** exp);
}

function inCrashLoop(ctx: ServiceContext): boolean {
  const last = ctx.starts[ctx.starts.length - 1];
  if (last === undefined) return false;
  return (
    ctx.starts.filter((t) => t > last - ctx.policy.crashLoopWindowMs).length >=
    ctx.policy.crashLoopStarts
  );
}

const stub = <O>() =>
  fromPromise<O, EffectInput>(() => Promise.reject(new Error('effect not provided')));

export const serviceMachine = setup({
  types: {
    context: {} as ServiceContext,
    events: {} as ServiceEvent,
    input: {} as { name: ServiceName; policy: SupervisionPolicy },
  },
  actors: {
    detect: stub<DetectOutput>(),
    start: stub<StartOutput>(),
    waitReady: stub<undefined>(),
    watch: stub<undefined>(),
    stop: stub<undefined>(),
  },
  delays: {
    backoff: ({ context }) => backoffDelay(context),
    crashLoopRetry: ({ context }) => context.policy.crashLoopRetryMs,
    stableAfter: ({ context }) => context.policy.stableAfterMs,
    notStartableRetry: ({ context }) => context.policy.notStartableRetryMs,
  },
  guards: {
    found: (_, output: DetectOutput) => output.pid !== null,
    crashLoop: ({ context }) => inCrashLoop(context),
    startAfterStop: ({ context }) => context.startAfterStop,
    retryEnabled: ({ context }) => context.policy.crashLoopRetryMs > 0,
    // The start effect refused before spawning anything (errors carry `notStartable: true`).
    notStartable: (_, params: { error: unknown }) =>
      (params.error as { notStartable?: unknown } | null)?.notStartable === true,
  },
  actions: {
    recordFailure: assign({
      failures: ({ context }) => context.failures + 1,
      lastError: (_, params: { error: unknown }) =>
        params.error instanceof Error ? params.error.message : String(params.error),
    }),
  },
}).createMachine({
  id: 'service',
  context: ({ input }) => ({
    name: input.name,
    policy: input.policy,
    pid: null,
    starts: [],
    failures: 0,
    lastError: null,
    adopted: false,
    startAfterStop: false,
  }),
  initial: 'detecting',
  on: { STOP: '.stopping' },
  states: {
    detecting: {
      invoke: {
        id: 'detect',
        src: 'detect',
        input: ({ context }) => ({ name: context.name, pid: context.pid }),
        onDone: [
          {
            guard: { type: 'found', params: ({ event }) => event.output },
            target: 'running',
            actions: assign({ pid: ({ event }) => event.output.pid, adopted: true }),
          },
          { target: 'starting' },
        ],
        onError: {
          target: 'backoff',
          actions: { type: 'recordFailure', params: ({ event }) => ({ error: event.error }) },
        },
      },
    },
    starting: {
      invoke: {
        id: 'start',
        src: 'start',
        input: ({ context }) => ({ name: context.name, pid: null }),
        onDone: {
          target: 'waitingReady',
          actions: assign({
            pid: ({ event }) => event.output.pid,
            adopted: false,
            starts: ({ context, event }) => [
              ...context.starts.filter(
                (t) => t > event.output.at - context.policy.crashLoopWindowMs,
              ),
              event.output.at,
            ],
          }),
        },
        onError: [
          {
            guard: { type: 'notStartable', params: ({ event }) => ({ error: event.error }) },
            target: 'notStartable',
            actions: assign({
              lastError: ({ event }) =>
                event.error instanceof Error ? event.error.message : String(event.error),
            }),
          },
          {
            target: 'failed',
            actions: { type: 'recordFailure', params: ({ event }) => ({ error: event.error }) },
          },
        ],
      },
    },
    // Nothing was started, so nothing counts towards backoff or a crash loop: look again soon
    // (someone may fix the file, or start the service by hand).
    notStartable: {
      after: { notStartableRetry: 'detecting' },
      on: { START: 'detecting' },
    },
    waitingReady: {
      invoke: {
        id: 'waitReady',
        src: 'waitReady',
        input: ({ context }) => ({ name: context.name, pid: context.pid }),
        onDone: { target: 'running', actions: assign({ lastError: null }) },
        onError: {
          target: 'cleaningUp',
          actions: { type: 'recordFailure', params: ({ event }) => ({ error: event.error }) },
        },
      },
    },
    // A process that never became ready may still hold ports or files: remove it first.
    cleaningUp: {
      invoke: {
        id: 'stop',
        src: 'stop',
        input: ({ context }) => ({ name: context.name, pid: context.pid }),
        onDone: 'failed',
        onError: 'failed',
      },
    },
    running: {
      invoke: {
        id: 'watch',
        src: 'watch',
        input: ({ context }) => ({ name: context.name, pid: context.pid }),
        onDone: {
          target: 'failed',
          actions: [
            assign({ pid: null }),
            {
              type: 'recordFailure',
              params: ({ context }) => ({ error: new Error(`${context.name} exited`) }),
            },
          ],
        },
        onError: {
          target: 'failed',
          actions: { type: 'recordFailure', params: ({ event }) => ({ error: event.error }) },
        },
      },
      after: { stableAfter: { actions: assign({ failures: 0 }) } },
    },
    failed: {
      always: [{ guard: 'crashLoop', target: 'crashLoop' }, { target: 'backoff' }],
    },
    backoff: {
      after: { backoff: 'detecting' },
    },
    crashLoop: {
      after: {
        crashLoopRetry: {
          guard: 'retryEnabled',
          target: 'detecting',
          actions: assign({ starts: [], failures: 0 }),
        },
      },
      on: { START: { target: 'detecting', actions: assign({ starts: [], failures: 0 }) } },
    },
    stopping: {
      invoke: {
        id: 'stop',
        src: 'stop',
        input: ({ context }) => ({ name: context.name, pid: context.pid }),
        onDone: [
          {
            guard: 'startAfterStop',
            target: 'detecting',
            actions: assign({ pid: null, startAfterStop: false, starts: [], failures: 0 }),
          },
          { target: 'stopped', actions: assign({ pid: null }) },
        ],
        onError: [
          {
            guard: 'startAfterStop',
            target: 'detecting',
            actions: [
              assign({ pid: null, startAfterStop: false, starts: [], failures: 0 }),
              { type: 'recordFailure', params: ({ event }) => ({ error: event.error }) },
            ],
          },
          {
            target: 'stopped',
            actions: [
              assign({ pid: null }),
              { type: 'recordFailure', params: ({ event }) => ({ error: event.error }) },
            ],
          },
        ],
      },
      // A release right after a hold (a resumed install's first step) can come before the
      // stop is done: remember it; a later STOP takes it back.
      on: {
        STOP: { actions: assign({ startAfterStop: false }) },
        START: { actions: assign({ startAfterStop: true }) },
      },
    },
    stopped: {
      on: {
        STOP: {},
        START: { target: 'detecting', actions: assign({ starts: [], failures: 0 }) },
      },
    },
  },
});

/** A one-word status for status output and logs. */
export function serviceStatus(
  value: string,
): 'starting' | 'running' | 'backoff' | 'crash-loop' | 'not-startable' | 'stopping' | 'stopped' {
  switch (value) {
    case 'notStartable':
      return 'not-startable';
    case 'running':
      return 'running';
    case 'backoff':
    case 'failed':
    case 'cleaningUp':
      return 'backoff';
    case 'crashLoop':
      return 'crash-loop';
    case 'stopping':
      return 'stopping';
    case 'stopped':
      return 'stopped';
    default:
      return 'starting';
  }
}
