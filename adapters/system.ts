// Facts about the machine for the heartbeat: CPU and memory load, free disk, the IP address of
// the interface that carries the default route.
import { readFile, statfs } from 'node:fs/promises';
import { cpus, freemem, networkInterfaces, totalmem, uptime } from 'node:os';
import type { ProcessControl } from './processes.ts';

export interface SystemInfo {
  /** CPU busy percent since the previous call (since boot on the first). */
  cpuPercent(): number;
  memPercent(): number;
  freeDiskBytes(path: string): Promise<number>;
  hostIp(): Promise<string>;
}

/** Interface name of the default route in /proc/net/route (lowest metric wins). */
export function defaultRouteInterface(procNetRoute: string): string | undefined {
  let best: { iface: string; metric: number } | undefined;
  for (const line of procNetRoute.split('\n').slice(1)) {
    const cols = line.trim().split(/\s+/);
    if (cols.length < 8 || cols[1] !== '00000000' || cols[7] !== '00000000') continue;
    const metric = Number(cols[6]);
    if (best === undefined || metric < best.metric) best = { iface: cols[0] as string, metric };
  }
  return best?.iface;
}

/** Local address of the default route in Windows' `route print -4 0.0.0.0` table. */
export function defaultRouteAddressWindows(routePrint: string): string | undefined {
  let best: { ip: string; metric: number } | undefined;
  for (const line of routePrint.split(/\r?\n/)) {
    const m = /^\s*0\.0\.0\.0\s+0\.0\.0\.0\s+\S+\s+(\d+\.\d+\.\d+\.\d+)\s+(\d+)\s*$/.exec(line);
    if (m === null) continue;
    const metric = Number(m[2]);
    if (best === undefined || metric < best.metric) best = { ip: m[1] as string, metric };
  }
  return best?.ip;
}

function ipv4Of(iface: string | undefined): string | undefined {
  if (iface === undefined) return undefined;
  return networkInterfaces()[iface]?.find((a) => a.family === 'IPv4')?.address;
}

function firstExternalIpv4(): string | undefined {
  for (const addrs of Object.values(networkInterfaces())) {
    const a = addrs?.find((x) => x.family === 'IPv4' && !x.internal);
    if (a !== undefined) return a.address;
  }
  return undefined;
}

function cpuTimes(): { idle: number; total: number } {
  let idle = 0;
  let total = 0;
  for (const c of cpus()) {
    idle += c.times.idle;
    total += c.times.user + c.times.nice + c.times.sys + c.times.irq + c.times.idle;
  }
  return { idle, total };
}

/** Bytes available to this user on the file system holding `path`. */
export async function freeBytes(path: string): Promise<number> {
  const s = await statfs(path);
  return s.bavail * s.bsize;
}

export function createSystemInfo(platform: NodeJS.Platform, processes: ProcessControl): SystemInfo {
  let previous = { idle: 0, total: 0 };
  return {
    cpuPercent() {
      const now = cpuTimes();
      const total = now.total - previous.total;
      const idle = now.idle - previous.idle;
      previous = now;
      return total <= 0 ? 0 : Math.round((1000 * (total - idle)) / total) / 10;
    },
    memPercent() {
      return Math.round((1000 * (totalmem() - freemem())) / totalmem()) / 10;
    },
    freeDiskBytes: freeBytes,
    async hostIp() {
      let ip: string | undefined;
      if (platform === 'linux') {
        ip = ipv4Of(
          defaultRouteInterface(await readFile('/proc/net/route', 'utf8').catch(() => '')),
        );
      } else if (platform === 'win32') {
        const r = await processes.exec('route', ['print', '-4', '0.0.0.0'], { timeoutMs: 5000 });
        ip = defaultRouteAddressWindows(r.stdout);
      }
      return ip ?? firstExternalIpv4() ?? '127.0.0.1';
    },
  };
}

/**
 * Identifies the current boot: Linux's boot id; elsewhere the boot time (now − uptime),
 * rounded to a minute so clock jitter does not make two boots of one.
 */
export async function bootId(platform: NodeJS.Platform): Promise<string> {
  if (platform === 'linux') {
    const id = await readFile('/proc/sys/kernel/random/boot_id', 'utf8').catch(() => '');
    if (id.trim() !== '') return id.trim();
  }
  const bootedAt = Date.now() - uptime() * 1000;
  return `boot-${Math.round(bootedAt / 60_000)}`;
}
