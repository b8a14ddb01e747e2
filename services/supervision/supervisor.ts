// Runs one supervision machine per box service and implements its effects with the adapters.
import { join } from 'node:path';
import { createActor, fromPromise, type Actor } from 'xstate';
import type { BoxAppApi } from '../../adapters/box-app.ts';
import { errorMessage, ServiceError } from '../../adapters/errors.ts';
import type { FreeswitchCli } from '../../adapters/freeswitch.ts';
import type { Logger } from '../../adapters/logger.ts';
import type { ProcessControl, ProcInfo } from '../../adapters/processes.ts';
import {
  serviceMachine,
  serviceStatus,
  type DetectOutput,
  type EffectInput,
  type ServiceName,
  type StartOutput,
  type SupervisionPolicy,
} from '../../machines/service.machine.ts';
import { executableName } from '../agent/box-paths.ts';

/** What a service looks like from outside: how to find, start, probe and stop it. */
export interface ServiceSpec {
  name: ServiceName;
  /** Picks this service's process out of the process table. */
  matches: (p: ProcInfo) => boolean;
  start(): Promise<number>;
  /**
   * Why the service cannot be started now (e.g. its configuration file is broken), or null.
   * Checked before every start; a reason is reported as `not-startable`, not as a failure.
   */
  startProblem?(): Promise<string | null>;
  isReady(): Promise<boolean>;
  /** Asks the service to stop itself (FreeSWITCH: fs_cli shutdown); the supervisor then waits. */
  requestStop?(): Promise<void>;
}

export interface SupervisorDeps {
  processes: ProcessControl;
  logger: Logger;
  policy: SupervisionPolicy;
  intervalMs: number;
  readyTimeoutMs: number;
  stopTimeoutMs: number;
  now?: () => number;
}

export interface ServiceState {
  name: ServiceName;
  status: ReturnType<typeof serviceStatus>;
  pid: number | null;
  failures: number;
  lastError: string | null;
  since: string;
  /** Times it came up again under a new pid after first running under this agent. */
  restarts: number;
}

/** The service was not started because it cannot be (the machine's `notStartable` state). */
export class NotStartableError extends ServiceError {
  readonly notStartable = true;
  constructor(service: string, reason: string) {
    super(service, `not startable: ${reason}`);
  }
}

function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    const done = () => {
      clearTimeout(timer);
      signal?.removeEventListener('abort', done);
      resolve();
    };
    const timer = setTimeout(done, ms);
    signal?.addEventListener('abort', done, { once: true });
  });
}

/** Every this many watch ticks the process table is read (between them, a signal-0 probe). */
const GONE_EVERY = 12;

export class ServiceSupervisor {
  readonly spec: ServiceSpec;
  private readonly deps: SupervisorDeps;
  private readonly actor: Actor<typeof serviceMachine>;
  private since = new Date().toISOString();
  private restarts = 0;
  /** The pid it last ran under (null until it first ran). */
  private lastRunningPid: number | null = null;
  private readonly listeners = new Set<(s: ServiceState) => void>();

  constructor(spec: ServiceSpec, deps: SupervisorDeps) {
    this.spec = spec;
    this.deps = deps;
    const now = deps.now ?? Date.now;
    const log = deps.logger.child({ service: spec.name });

    // Fresh unless `since` is given (detect and stop must see the table as it is now).
    const find = async (since?: number): Promise<ProcInfo | undefined> =>
      (await deps.processes.list(since === undefined ? {} : { since })).find((p) =>
        spec.matches(p),
      );
    const dead = (pid: number | null) => pid === null || !deps.processes.isAlive(pid);
    // The process table also catches a reused pid; it is read only every GONE_EVERY ticks, and
    // a listing someone else took since (the heartbeat's, the other supervisor's) will do, as
    // long as it started after `watchedFrom`: an older one may not show this pid yet.
    const gone = async (pid: number | null, watchedFrom: number) =>
      dead(pid) ||
      (await find(Math.max(watchedFrom, Date.now() - GONE_EVERY * deps.intervalMs)))?.pid !== pid;

    // A STOP while a start is in flight cancels the invoke, not the spawn: the stop waits for
    // the spawn and stops what it started (else that process runs on unsupervised and is
    // adopted later, e.g. the old jar's Java after an update replaced the jar).
    let startInFlight: Promise<number | null> | undefined;

    const machine = serviceMachine.provide({
      actors: {
        detect: fromPromise<DetectOutput, EffectInput>(async () => {
          const p = await find();
          return { pid: p?.pid ?? null };
        }),
        start: fromPromise<StartOutput, EffectInput>(async () => {
          const spawn = (async () => {
            const problem = (await spec.startProblem?.()) ?? null;
            if (problem !== null) throw new NotStartableError(spec.name, problem);
            const pid = await spec.start();
            log.info({ servicePid: pid }, 'started');
            return pid;
          })();
          const settled = spawn.catch(() => null);
          startInFlight = settled;
          void settled.then(() => {
            if (startInFlight === settled) startInFlight = undefined;
          });
          return { pid: await spawn, at: now() };
        }),
        waitReady: fromPromise<undefined, EffectInput>(async ({ input, signal }) => {
          const deadline = now() + deps.readyTimeoutMs;
          for (;;) {
            if (await spec.isReady()) return undefined;
            if (signal.aborted) return undefined;
            if (dead(input.pid)) throw new ServiceError(spec.name, 'exited while starting');
            if (now() >= deadline) {
              throw new ServiceError(spec.name, `not ready within ${deps.readyTimeoutMs} ms`);
            }
            await sleep(Math.min(250, deps.intervalMs), signal);
          }
        }),
        watch: fromPromise<undefined, EffectInput>(async ({ input, signal }) => {
          // The listing's clock (Date.now), not deps.now.
          const watchedFrom = Date.now();
          for (let tick = 0; !signal.aborted; tick++) {
            const check = tick % GONE_EVERY === GONE_EVERY - 1;
            if (check ? await gone(input.pid, watchedFrom) : dead(input.pid)) return undefined;
            await sleep(deps.intervalMs, signal);
          }
          return undefined;
        }),
        stop: fromPromise<undefined, EffectInput>(async ({ input }) => {
          const spawned = startInFlight === undefined ? null : await startInFlight;
          const target = input.pid ?? spawned ?? (await find())?.pid ?? null;
          if (target === null) return undefined;
          if (spec.requestStop !== undefined) {
            await spec
              .requestStop()
              .catch((err: unknown) =>
                log.warn({ err: errorMessage(err) }, 'graceful stop failed'),
              );
          } else {
            // A refused SIGTERM is not the end: the SIGKILL below reports what really failed.
            await deps.processes
              .killTree(target, 'SIGTERM')
              .catch((err: unknown) => log.warn({ err: errorMessage(err) }, 'SIGTERM failed'));
          }
          const deadline = now() + deps.stopTimeoutMs;
          while (deps.processes.isAlive(target) && now() < deadline) await sleep(100);
          if (deps.processes.isAlive(target)) {
            log.warn(
              { servicePid: target, timeoutMs: deps.stopTimeoutMs },
              'did not stop in time; killing the process tree',
            );
            await deps.processes.killTree(target, 'SIGKILL').catch((err: unknown) => {
              throw new ServiceError(spec.name, errorMessage(err), { cause: err });
            });
            const killDeadline = now() + 5000;
            while (deps.processes.isAlive(target) && now() < killDeadline) await sleep(50);
            if (deps.processes.isAlive(target))
              throw new ServiceError(spec.name, `pid ${target} survived SIGKILL`);
          }
          log.info({ servicePid: target }, 'stopped');
          return undefined;
        }),
      },
    });

    this.actor = createActor(machine, { input: { name: spec.name, policy: deps.policy } });
    let last = '';
    let reported: string | null = null;
    this.actor.subscribe((snap) => {
      const status = serviceStatus(snap.value);
      const key = `${status}|${String(snap.context.pid)}`;
      if (key === last) return;
      last = key;
      this.since = new Date(now()).toISOString();
      if (status === 'running' && snap.context.pid !== null) {
        if (this.lastRunningPid !== null && this.lastRunningPid !== snap.context.pid)
          this.restarts++;
        this.lastRunningPid = snap.context.pid;
      }
      const state = this.state();
      if (status === 'crash-loop') {
        log.error(
          {
            starts: snap.context.starts.length,
            windowMs: deps.policy.crashLoopWindowMs,
            lastError: snap.context.lastError,
          },
          'crash loop: not restarting',
        );
      } else if (status === 'not-startable') {
        // Looked at again every few seconds: say it once per reason.
        if (snap.context.lastError !== reported)
          log.error(
            { lastError: snap.context.lastError, retryMs: deps.policy.notStartableRetryMs },
            'cannot be started; checking again until it can',
          );
        reported = snap.context.lastError;
      } else if (status === 'backoff') {
        log.warn(
          { failures: snap.context.failures, lastError: snap.context.lastError },
          'failed; restarting after backoff',
        );
      } else if (status === 'running') {
        reported = null;
        log.info({ servicePid: snap.context.pid, adopted: snap.context.adopted }, 'running');
      } else {
        log.debug({ status, servicePid: snap.context.pid }, 'service state');
      }
      for (const l of this.listeners) l(state);
    });
  }

  start(): void {
    this.actor.start();
  }

  /** Starts supervising in the intentional `stopped` state (a running process is stopped). */
  startHeld(): void {
    this.actor.start();
    this.actor.send({ type: 'STOP' });
  }

  state(): ServiceState {
    const snap = this.actor.getSnapshot();
    return {
      name: this.spec.name,
      status: serviceStatus(snap.value),
      pid: snap.context.pid,
      failures: snap.context.failures,
      lastError: snap.context.lastError,
      since: this.since,
      restarts: this.restarts,
    };
  }

  onChange(listener: (s: ServiceState) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  /** Resolves when the service reaches one of the statuses (or rejects after timeoutMs). */
  waitFor(statuses: ServiceState['status'][], timeoutMs: number): Promise<ServiceState> {
    return new Promise((resolve, reject) => {
      const check = (s: ServiceState) => {
        if (!statuses.includes(s.status)) return false;
        clearTimeout(timer);
        off();
        resolve(s);
        return true;
      };
      const timer = setTimeout(() => {
        off();
        reject(
          new ServiceError(
            this.spec.name,
            `did not reach ${statuses.join('/')} within ${timeoutMs} ms`,
          ),
        );
      }, timeoutMs);
      const off = this.onChange(check);
      check(this.state());
    });
  }

  /** Stops the service and keeps it stopped (the intentional state) until resume(). */
  async stopAndHold(timeoutMs: number): Promise<void> {
    this.actor.send({ type: 'STOP' });
    await this.waitFor(['stopped'], timeoutMs);
  }

  resume(): void {
    this.actor.send({ type: 'START' });
  }

  /** Stops supervising; the service process itself keeps running. */
  detach(): void {
    this.actor.stop();
  }
}

// ---- the two box services --------------------------------------------------------------------

export interface JavaServiceOptions {
  javaDir: string;
  jar: string;
  appYml: string;
  boxRoot: string;
  pidFile: string;
  logFile: string;
  platform: NodeJS.Platform;
  processes: ProcessControl;
  boxApp: () => BoxAppApi;
  fileExists(path: string): Promise<boolean>;
  /** What is wrong with application.yml (unreadable, not YAML, no server.port), or null. */
  appConfigProblem?: () => Promise<string | null>;
  writePidFile(path: string, pid: number): Promise<void>;
  /** Environment prepared by DOS\start.bat (Windows); undefined to inherit ours. */
  environment?: () => Promise<NodeJS.ProcessEnv | undefined>;
}

const sameFile = (platform: NodeJS.Platform, a: string, b: string) =>
  platform === 'win32' ? a.toLowerCase() === b.toLowerCase() : a === b;

/**
 * Java is found by command line (`-jar <our jar>`), not by pid.txt: that survives pid reuse and
 * adopts a Java started by another launcher. Windows' fast process list has no command line,
 * so there it is found by image name.
 */
export function javaMatcher(jar: string, platform: NodeJS.Platform): (p: ProcInfo) => boolean {
  const jarArg = `-jar ${jar}`;
  return (p) =>
    p.cmd !== ''
      ? platform === 'win32'
        ? p.cmd.toLowerCase().includes(jarArg.toLowerCase())
        : p.cmd.includes(jarArg)
      : byNameOnly(platform, p) && /^javaw?(\.exe)?$/i.test(p.name);
}

/**
 * Whether a row without a command line may be matched by its name. Only on Windows, whose fast
 * listing has no command lines. Elsewhere a row without one is a process that exited between
 * ps-list's two `ps` runs (or a zombie): matching it by name adopted another box's dying Java.
 * A row with neither command line nor name (a bad listing row) matches nothing.
 */
const byNameOnly = (platform: NodeJS.Platform, p: ProcInfo) =>
  platform === 'win32' && p.name !== '';

/** FreeSWITCH is found as its console process; a full path in argv0 must be ours. */
export function freeswitchMatcher(
  fsDir: string,
  platform: NodeJS.Platform,
): (p: ProcInfo) => boolean {
  const consoleName = executableName('FreeSwitchConsole', platform);
  const consolePath = join(fsDir, consoleName);
  return (p) => {
    const argv0 = p.cmd.split(/\s+/)[0] ?? '';
    // Several FreeSWITCH trees may exist (tests run many boxes side by side).
    if (argv0.includes('/') || argv0.includes('\\')) return sameFile(platform, argv0, consolePath);
    return (
      (p.cmd !== '' || byNameOnly(platform, p)) &&
      p.name.toLowerCase() === consoleName.toLowerCase()
    );
  };
}

export function javaService(o: JavaServiceOptions): ServiceSpec {
  return {
    name: 'java',
    matches: javaMatcher(o.jar, o.platform),
    async startProblem() {
      if (!(await o.fileExists(o.jar))) return `jar not found: ${o.jar}`;
      return (await o.appConfigProblem?.()) ?? null;
    },
    async start() {
      if (!(await o.fileExists(o.jar))) throw new ServiceError('java', `jar not found: ${o.jar}`);
      const bundled = join(o.javaDir, 'bin', executableName('java', o.platform));
      const java = (await o.fileExists(bundled)) ? bundled : 'java';
      const env = await o.environment?.();
      const pid = await o.processes.spawnDetached(
        java,
        ['-jar', o.jar, `--spring.config.location=${o.appYml}`],
        {
          cwd: o.boxRoot,
          logFile: o.logFile,
          ...(env === undefined ? {} : { env }),
        },
      );
      await o.writePidFile(o.pidFile, pid);
      return pid;
    },
    isReady: () => o.boxApp().isReady(),
  };
}

export interface FreeswitchServiceOptions {
  fsDir: string;
  platform: NodeJS.Platform;
  processes: ProcessControl;
  cli: FreeswitchCli;
  logFile: string;
}

export function freeswitchService(o: FreeswitchServiceOptions): ServiceSpec {
  const consolePath = join(o.fsDir, executableName('FreeSwitchConsole', o.platform));
  return {
    name: 'freeswitch',
    matches: freeswitchMatcher(o.fsDir, o.platform),
    start: () =>
      o.processes.spawnDetached(consolePath, ['-nc'], { cwd: o.fsDir, logFile: o.logFile }),
    async isReady() {
      try {
        await o.cli.run('sofia status');
        return true;
      } catch {
        return false;
      }
    },
    async requestStop() {
      await o.cli.run('shutdown');
    },
  };
}
