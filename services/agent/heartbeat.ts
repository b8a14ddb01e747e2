// The heartbeat: 13 items in the original order and types (§2 of the reference), sent on a
// fixed-rate timer that shares no lock with updates, so it keeps beating while they run.
import type { CloudApi, HeartbeatItem } from '../../adapters/cloud-client.ts';
import { errorMessage } from '../../adapters/errors.ts';
import {
  parseSofiaStatus,
  registrationCode,
  type FreeswitchCli,
} from '../../adapters/freeswitch.ts';
import type { Logger } from '../../adapters/logger.ts';
import type { ProcessControl, ProcInfo } from '../../adapters/processes.ts';
import type { SystemInfo } from '../../adapters/system.ts';
import type { BoxConfig } from './box-config.ts';

export const HEARTBEAT_KEYS = [
  'version',
  'host_ip',
  'callbox_ip',
  'app_key',
  'access_id',
  'access_secret',
  'Freeswitch',
  'Reg_callbox',
  'Reg_numconvert',
  'Java',
  'cpu',
  'mem',
  'media_storage',
] as const;

export interface HeartbeatDeps {
  cloud: CloudApi;
  boxConfig: () => Promise<BoxConfig>;
  fsCli: FreeswitchCli;
  processes: ProcessControl;
  system: SystemInfo;
  isJava: (p: ProcInfo) => boolean;
  isFreeswitch: (p: ProcInfo) => boolean;
  boxRoot: string;
  /**
   * A process listing started this long ago or less is reused (a supervisor's, moments ago)
   * rather than read again; 0 (the default): the beat reads its own.
   */
  listingMaxAgeMs?: number;
  /** The Python tool sent the access secret in clear; boxkeeper only does so when asked. */
  sendAccessSecret: boolean;
  logger: Logger;
}

export interface GatewayStates {
  callbox: string | undefined;
  numconvert: string | undefined;
}

const CALLBOX = 'external::callbox';
const NUMCONVERT = 'external::numconvert';

/**
 * Reads gateway registration and keeps the upstream trunk `numconvert` registered only while
 * the local `callbox` gateway is (as the Python tool did on every beat).
 */
export async function syncGateways(cli: FreeswitchCli, logger: Logger): Promise<GatewayStates> {
  const gateways = parseSofiaStatus(await cli.run('sofia status'));
  const states = { callbox: gateways.get(CALLBOX), numconvert: gateways.get(NUMCONVERT) };
  const callboxUp = states.callbox === 'REGED';
  const numconvertUp = ['REGED', 'TRYING', 'REGISTER'].includes(states.numconvert ?? '');
  if (callboxUp && !numconvertUp) {
    logger.info(
      { callbox: states.callbox, numconvert: states.numconvert },
      'registering numconvert',
    );
    await cli.run('sofia profile external register numconvert');
  } else if (
    !callboxUp &&
    states.numconvert !== undefined &&
    !['NOREG', 'UNREGED'].includes(states.numconvert)
  ) {
    logger.info(
      { callbox: states.callbox, numconvert: states.numconvert },
      'unregistering numconvert',
    );
    await cli.run('sofia profile external unregister numconvert');
  }
  return states;
}

export function formatGigabytes(bytes: number): string {
  return `${(bytes / 1024 ** 3).toFixed(1)}G`;
}

export interface HeartbeatReport {
  items: HeartbeatItem[];
  versionCode: string;
}

export async function collectHeartbeat(deps: HeartbeatDeps): Promise<HeartbeatReport> {
  const config = await deps.boxConfig();
  const maxAge = deps.listingMaxAgeMs ?? 0;
  const procs = await deps.processes.list(maxAge > 0 ? { since: Date.now() - maxAge } : {});
  const freeswitchUp = procs.some(deps.isFreeswitch);
  const javaUp = procs.some(deps.isJava);
  let gateways: GatewayStates = { callbox: undefined, numconvert: undefined };
  if (freeswitchUp) {
    try {
      gateways = await syncGateways(deps.fsCli, deps.logger);
    } catch (err) {
      deps.logger.warn({ err: errorMessage(err) }, 'cannot read FreeSWITCH gateway registration');
    }
  }
  const values: Record<(typeof HEARTBEAT_KEYS)[number], string | number> = {
    version: config.version,
    host_ip: await deps.system.hostIp(),
    callbox_ip: config.freeswitch.callboxRealm,
    app_key: config.appKey,
    access_id: config.accessId,
    access_secret: deps.sendAccessSecret ? config.accessSecret : '',
    Freeswitch: freeswitchUp ? 1 : 0,
    Reg_callbox: registrationCode(gateways.callbox),
    Reg_numconvert: registrationCode(gateways.numconvert),
    Java: javaUp ? 1 : 0,
    cpu: deps.system.cpuPercent().toFixed(1),
    mem: deps.system.memPercent(),
    media_storage: formatGigabytes(await deps.system.freeDiskBytes(deps.boxRoot)),
  };
  return {
    items: HEARTBEAT_KEYS.map((key) => ({ key, value: values[key] })),
    versionCode: config.code,
  };
}

export async function sendHeartbeat(deps: HeartbeatDeps): Promise<HeartbeatReport> {
  const report = await collectHeartbeat(deps);
  await deps.cloud.heartbeat(report.items, report.versionCode);
  return report;
}

export interface HeartbeatOutcome {
  at: string;
  ok: boolean;
  error?: string;
  /** Item values as sent, secret withheld. */
  items?: Record<string, string | number | null>;
}

/**
 * Beats at a fixed rate from start (the first at once). A beat that outlasts the interval makes
 * the next one wait rather than overlap; failures are logged and the loop goes on.
 */
export class HeartbeatLoop {
  private timer: NodeJS.Timeout | undefined;
  private running: Promise<void> | undefined;
  private stopped = true;
  private readonly deps: HeartbeatDeps;
  private readonly intervalMs: number;
  private readonly onOutcome: (o: HeartbeatOutcome) => void;

  constructor(deps: HeartbeatDeps, intervalMs: number, onOutcome: (o: HeartbeatOutcome) => void) {
    this.deps = deps;
    this.intervalMs = intervalMs;
    this.onOutcome = onOutcome;
  }

  start(): void {
    this.stopped = false;
    const origin = Date.now();
    let n = 0;
    const tick = () => {
      if (this.stopped) return;
      this.running = this.beat().finally(() => {
        this.running = undefined;
        if (this.stopped) return;
        n = Math.max(n + 1, Math.ceil((Date.now() - origin) / this.intervalMs));
        this.timer = setTimeout(tick, Math.max(0, origin + n * this.intervalMs - Date.now()));
      });
    };
    tick();
  }

  private async beat(): Promise<void> {
    const at = new Date().toISOString();
    try {
      const report = await sendHeartbeat(this.deps);
      // What is kept (status.json, logs) never holds the secret, even when it was sent.
      const items = Object.fromEntries(
        report.items.map((i) => [
          i.key,
          i.key === 'access_secret' && i.value !== '' ? '(sent)' : i.value,
        ]),
      );
      this.deps.logger.info(
        {
          Java: items.Java,
          Freeswitch: items.Freeswitch,
          Reg_callbox: items.Reg_callbox,
          Reg_numconvert: items.Reg_numconvert,
        },
        'heartbeat sent',
      );
      this.onOutcome({ at, ok: true, items });
    } catch (err) {
      this.deps.logger.error({ err: errorMessage(err) }, 'heartbeat failed');
      this.onOutcome({ at, ok: false, error: errorMessage(err) });
    }
  }

  async stop(): Promise<void> {
    this.stopped = true;
    clearTimeout(this.timer);
    await this.running;
  }
}
