// The daemon: supervises Java and FreeSWITCH, beats, and keeps status.json current for
// `boxkeeper status`. Heartbeats and supervision run independently of each other and of any
// update work (no shared lock: §13 W-LOCK-1/2).
import { join } from 'node:path';
import type { BoxAppApi } from '../../adapters/box-app.ts';
import type { CloudApi } from '../../adapters/cloud-client.ts';
import { describeStorageError, errorMessage, ServiceError } from '../../adapters/errors.ts';
import type { Files } from '../../adapters/files.ts';
import type { FreeswitchCli } from '../../adapters/freeswitch.ts';
import type { Logger } from '../../adapters/logger.ts';
import type { ProcessControl } from '../../adapters/processes.ts';
import type { SystemInfo } from '../../adapters/system.ts';
import type { UpdateEngine, UpdateStatus } from '../update/update-engine.ts';
import type { ServiceControl } from '../update/update-effects.ts';
import { appConfigProblem, loadBoxConfig, type BoxConfig } from './box-config.ts';
import { HeartbeatLoop, type HeartbeatOutcome } from './heartbeat.ts';
import type { EnvCapture } from '../../adapters/script-env.ts';
import type { Settings } from './settings.ts';
import {
  freeswitchService,
  javaService,
  ServiceSupervisor,
  type ServiceState,
} from '../supervision/supervisor.ts';
import { statusPath } from './agent-files.ts';

export { statusPath };

export interface AgentStatus {
  pid: number;
  agentVersion: string;
  startedAt: string;
  updatedAt: string;
  settingsFile: string;
  box: { version: string; code: string };
  debugMode: boolean;
  services: Partial<Record<'java' | 'freeswitch', ServiceState>>;
  heartbeat: { sent: number; failed: number; last: HeartbeatOutcome | null };
  /** The update lifecycle (null when this process runs no update engine). */
  update: UpdateStatus | null;
  /** The local control channel of this daemon (`boxkeeper check` etc. use it). */
  control: { url: string } | null;
}

export interface AgentStartOptions {
  /** The update state has the services down: supervise them, but keep them stopped. */
  holdServices?: boolean;
  /** Run heartbeats (off for in-process operator commands). */
  heartbeat?: boolean;
}

export interface AgentDeps {
  settings: Settings;
  logger: Logger;
  files: Files;
  processes: ProcessControl;
  cloud: CloudApi;
  fsCli: FreeswitchCli;
  system: SystemInfo;
  boxApp: BoxAppApi;
  /** This agent's version (its package.json). */
  agentVersion: string;
  /** The box config as loaded at start; kept fresh by every heartbeat. */
  boxConfig: BoxConfig;
  /** Runs the box's preparation script ([paths] path_bat) and returns what it left. */
  scriptEnvironment?: (script: string) => Promise<EnvCapture>;
}

export class Agent {
  private readonly deps: AgentDeps;
  private config: BoxConfig;
  private readonly supervisors: ServiceSupervisor[] = [];
  private heartbeat: HeartbeatLoop | undefined;
  private readonly status: AgentStatus;
  private writing: Promise<void> = Promise.resolve();
  /** Why status.json cannot be written, while it cannot (logged once, not on every save). */
  private statusWriteError: string | undefined;
  private readonly statusListeners = new Set<(status: AgentStatus) => void>();

  constructor(deps: AgentDeps) {
    this.deps = deps;
    this.config = deps.boxConfig;
    const now = new Date().toISOString();
    this.status = {
      pid: process.pid,
      agentVersion: deps.agentVersion,
      startedAt: now,
      updatedAt: now,
      settingsFile: deps.settings.file,
      box: { version: deps.boxConfig.version, code: deps.boxConfig.code },
      debugMode: deps.settings.general.debugMode,
      services: {},
      heartbeat: { sent: 0, failed: 0, last: null },
      update: null,
      control: null,
    };
  }

  /** Shows the update engine's state in status.json. */
  attachUpdates(engine: UpdateEngine): void {
    engine.onChange((u) => {
      this.status.update = u;
      this.saveStatus();
    });
  }

  setControl(control: { url: string } | null): void {
    this.status.control = control;
    this.saveStatus();
  }

  /** configuration.ini changed (an install or a rollback): read it again now. */
  async refreshBoxConfig(): Promise<void> {
    await this.reloadBoxConfig();
    this.saveStatus();
  }

  /**
   * The installer's handle on the services. With supervision off the services are still
   * stopped and started for an install, by supervisors that exist only for that.
   */
  readonly serviceControl: ServiceControl = {
    stopAll: async () => {
      if (this.supervisors.length === 0) this.createSupervisors({ held: true });
      const timeout = this.deps.settings.supervise.stopTimeoutMs + 15_000;
      await Promise.all(this.supervisors.map((s) => s.stopAndHold(timeout)));
    },
    startAll: async (deadline, settleMs) => {
      if (this.supervisors.length === 0) this.createSupervisors({ held: false });
      for (const s of this.supervisors) s.resume();
      const left = Math.max(1, deadline - Date.now());
      const up = await Promise.all(this.supervisors.map((s) => s.waitFor(['running'], left)));
      // Ready is not enough: a build that dies right after start must fail the gate too.
      const until = Date.now() + settleMs;
      while (Date.now() < until) {
        await new Promise((r) => setTimeout(r, Math.min(200, settleMs)));
        for (const [i, s] of this.supervisors.entries()) {
          const now = s.state();
          if (now.status !== 'running' || now.pid !== up[i]?.pid) {
            throw new ServiceError(
              now.name,
              `stopped running within ${settleMs} ms of the update (${now.status}${now.lastError === null ? '' : `: ${now.lastError}`})`,
            );
          }
        }
      }
      if (!this.deps.settings.supervise.enabled) this.dropSupervisors();
    },
    releaseAll: async () => {
      for (const s of this.supervisors) s.resume();
      const sv = this.deps.settings.supervise;
      // Bounded like a start that fails its way into a crash loop.
      const bound = sv.readyTimeoutMs * 3 + sv.backoffMaxMs + 15_000;
      await Promise.all(
        this.supervisors.map((s) =>
          s.waitFor(['running', 'crash-loop', 'not-startable'], bound).catch(() => undefined),
        ),
      );
      if (!sv.enabled) this.dropSupervisors();
    },
    isRunning: async (name) => {
      const sup = this.supervisor(name);
      if (sup !== undefined) return sup.state().status === 'running';
      this.specs ??= this.buildSpecs();
      const spec = this.specs[name];
      return (await this.deps.processes.list()).some((p) => spec.matches(p));
    },
  };

  private dropSupervisors(): void {
    for (const s of this.supervisors) s.detach();
    this.supervisors.length = 0;
  }

  /** The configuration.ini values the cloud client signs and authenticates with. */
  get boxConfig(): BoxConfig {
    return this.config;
  }

  private async reloadBoxConfig(): Promise<BoxConfig> {
    try {
      this.config = await loadBoxConfig(this.deps.settings.paths.config, (p) =>
        this.deps.files.readFile(p),
      );
    } catch (err) {
      // Keep working with the last good configuration; say loudly that the file is broken.
      this.deps.logger.error(
        { err: errorMessage(err) },
        'configuration.ini unreadable; using the last good values',
      );
    }
    this.status.box = { version: this.config.version, code: this.config.code };
    return this.config;
  }

  /** The status as status.json has it, now (a copy: the health check reads it). */
  currentStatus(): AgentStatus {
    return structuredClone(this.status);
  }

  /** Called after every change of the status (the console pushes it to its pages). */
  onStatus(listener: (status: AgentStatus) => void): () => void {
    this.statusListeners.add(listener);
    return () => this.statusListeners.delete(listener);
  }

  private saveStatus(): void {
    this.status.updatedAt = new Date().toISOString();
    for (const l of this.statusListeners) l(this.status);
    const text = JSON.stringify(this.status, null, 2);
    const file = statusPath(this.deps.settings);
    // A full or failing disk must not stop beats and supervision: say so once, and again when
    // the file works (status.json is a view; the next save brings it up to date).
    this.writing = this.writing
      .then(() => this.deps.files.writeAtomic(file, text, { mode: 0o600 }))
      .then(
        () => {
          if (this.statusWriteError === undefined) return;
          this.deps.logger.warn({ file }, 'status.json written again');
          this.statusWriteError = undefined;
        },
        (err: unknown) => {
          const why = describeStorageError(err, file) ?? errorMessage(err);
          if (this.statusWriteError !== undefined) return;
          this.statusWriteError = why;
          this.deps.logger.error(
            { file, err: why },
            'cannot write status.json; heartbeats and supervision go on (noted once)',
          );
        },
      )
      .catch(() => undefined);
  }

  private specs: ReturnType<Agent['buildSpecs']> | undefined;

  private buildSpecs() {
    const { settings, processes } = this.deps;
    const java = javaService({
      javaDir: settings.paths.java,
      jar: settings.paths.jar,
      appYml: settings.paths.appYml,
      boxRoot: settings.paths.boxRoot,
      pidFile: settings.paths.javaPid,
      logFile: join(settings.paths.logs, 'java-console.log'),
      platform: settings.platform,
      processes,
      boxApp: () => this.deps.boxApp,
      fileExists: (p) => this.deps.files.exists(p),
      appConfigProblem: () => appConfigProblem(settings.paths.appYml, this.deps.files.readFile),
      writePidFile: (p, pid) => this.deps.files.writeAtomic(p, String(pid)),
      environment: async () => {
        const capture = await this.deps.scriptEnvironment?.(settings.paths.pathBat);
        if (capture?.ok === true) return capture.env;
        if (capture?.ok === false) {
          this.deps.logger.warn(
            { service: 'java', script: settings.paths.pathBat, reason: capture.reason },
            'the preparation script failed; Java starts with the agent environment',
          );
        }
        return undefined;
      },
    });
    const freeswitch = freeswitchService({
      fsDir: settings.paths.fs,
      platform: settings.platform,
      processes,
      cli: this.deps.fsCli,
      logFile: join(settings.paths.logs, 'freeswitch-console.log'),
    });
    return { java, freeswitch };
  }

  private createSupervisors(options: { held: boolean }): void {
    const { settings, logger, processes } = this.deps;
    const s = settings.supervise;
    this.specs ??= this.buildSpecs();
    const supervisorDeps = {
      processes,
      logger,
      intervalMs: s.intervalMs,
      readyTimeoutMs: s.readyTimeoutMs,
      stopTimeoutMs: s.stopTimeoutMs,
      policy: {
        backoffInitialMs: s.backoffInitialMs,
        backoffMaxMs: s.backoffMaxMs,
        crashLoopStarts: s.crashLoopStarts,
        crashLoopWindowMs: s.crashLoopWindowMs,
        crashLoopRetryMs: s.crashLoopRetryMs,
        stableAfterMs: Math.max(s.crashLoopWindowMs / 2, s.readyTimeoutMs),
        notStartableRetryMs: s.intervalMs,
      },
    };
    const { java, freeswitch } = this.specs;
    for (const spec of [freeswitch, java]) {
      const sup = new ServiceSupervisor(spec, supervisorDeps);
      sup.onChange((state) => {
        this.status.services[state.name] = state;
        this.saveStatus();
      });
      this.supervisors.push(sup);
      if (options.held) sup.startHeld();
      else sup.start();
    }
  }

  start(options: AgentStartOptions = {}): void {
    const { settings, logger, processes } = this.deps;
    this.specs ??= this.buildSpecs();
    const { java, freeswitch } = this.specs;
    if (settings.supervise.enabled) {
      if (options.holdServices === true)
        logger.warn('an update has the services down: they stay stopped until it continues');
      this.createSupervisors({ held: options.holdServices === true });
    } else {
      logger.warn('service supervision is off ([supervise] enabled = off)');
    }

    if (options.heartbeat === false) {
      // An operator command running the update in-process: no heartbeats of its own.
    } else if (settings.general.debugMode) {
      logger.warn(
        'debug_mode is on: no automatic heartbeats (as the original tool); use "boxkeeper heartbeat"',
      );
    } else {
      this.heartbeat = new HeartbeatLoop(
        {
          cloud: this.deps.cloud,
          boxConfig: () => this.reloadBoxConfig(),
          fsCli: this.deps.fsCli,
          processes,
          system: this.deps.system,
          isJava: java.matches,
          isFreeswitch: freeswitch.matches,
          // A supervisor's listing of the last second will do; never the previous beat's.
          listingMaxAgeMs: Math.min(1000, settings.timer.heartbeatMs / 2),
          boxRoot: settings.paths.boxRoot,
          sendAccessSecret: settings.general.sendAccessSecret,
          logger: logger.child({ component: 'heartbeat' }),
        },
        settings.timer.heartbeatMs,
        (outcome) => {
          if (outcome.ok) this.status.heartbeat.sent++;
          else this.status.heartbeat.failed++;
          this.status.heartbeat.last = outcome;
          this.saveStatus();
        },
      );
      this.heartbeat.start();
    }
    this.saveStatus();
    logger.info(
      {
        box: settings.paths.boxRoot,
        heartbeatMs: settings.timer.heartbeatMs,
        cloud: settings.general.hostAddr,
      },
      'boxkeeper running',
    );
  }

  supervisor(name: 'java' | 'freeswitch'): ServiceSupervisor | undefined {
    return this.supervisors.find((s) => s.spec.name === name);
  }

  /** Stops beating and supervising. The services themselves keep running. */
  async stop(): Promise<void> {
    await this.heartbeat?.stop();
    for (const s of this.supervisors) s.detach();
    this.saveStatus();
    await this.writing;
  }
}
