// What a waiting update command shows while the cycle works: on a terminal a progress bar per
// downloading version (cli-progress) and a line for each step; elsewhere (a log, a script) plain
// timestamped lines, download progress every 10 %. Fed with the status the command polls (the
// daemon's /status, or the in-process engine's changes), so both paths show the same.
import type { MultiBar, SingleBar } from 'cli-progress';
import type { UpdateStatus, UpdateVersionStatus } from '../services/update-status.ts';

export interface ProgressView {
  update(s: UpdateStatus): void;
  /** Stops any bar (before the command prints its result). */
  stop(): void;
}

export interface ProgressStream {
  write(text: string): boolean;
  isTTY?: boolean;
}

const MB = 1e6;

/** Fraction downloaded in whole tenths (chunks when bytes are not reported). */
function tenths(p: NonNullable<UpdateVersionStatus['progress']>): number {
  const [done, total] =
    p.bytes !== undefined && p.totalBytes !== undefined && p.totalBytes > 0
      ? [p.bytes, p.totalBytes]
      : [p.done, p.total];
  return total <= 0 ? 0 : Math.floor((10 * done) / total);
}

function step(s: UpdateStatus): string {
  return `${s.state} (phase ${s.phaseNumber} ${s.phase})`;
}

export function progressView(
  stream: ProgressStream,
  options: { now?: () => Date; loadBars?: () => Promise<typeof import('cli-progress')> } = {},
): ProgressView {
  const now = options.now ?? (() => new Date());
  const tty = stream.isTTY === true;
  let lastStep: string | undefined;
  const versionSteps = new Map<string, string>();
  const reported = new Map<string, number>();
  // Terminal bars: loaded on first use (a command that downloads nothing never pays for them).
  let bars: { multi: MultiBar; byVersion: Map<string, SingleBar> } | undefined;
  let loading: Promise<void> | undefined;
  let pending: UpdateStatus | undefined;
  let stopped = false;

  const line = (text: string) => {
    if (bars !== undefined) bars.multi.log(`${text}\n`);
    else stream.write(tty ? `${text}\n` : `${now().toISOString()} ${text}\n`);
  };

  const drawBars = (s: UpdateStatus) => {
    if (bars === undefined) return;
    for (const v of s.versions) {
      const p = v.progress;
      if (p === undefined) continue;
      const total = (p.totalBytes ?? p.total) / (p.totalBytes === undefined ? 1 : MB);
      const value = (p.bytes ?? p.done) / (p.bytes === undefined ? 1 : MB);
      let bar = bars.byVersion.get(v.versionCode);
      if (bar === undefined) {
        bar = bars.multi.create(total, value, {
          version: v.versionNum.padEnd(8),
          unit: p.bytes === undefined ? 'chunks' : 'MB',
        });
        bars.byVersion.set(v.versionCode, bar);
      }
      bar.setTotal(total);
      bar.update(value);
    }
  };

  const ensureBars = (s: UpdateStatus) => {
    pending = s;
    if (bars !== undefined) {
      drawBars(s);
      return;
    }
    loading ??= (options.loadBars ?? (() => import('cli-progress')))().then((m) => {
      if (stopped) return;
      const multi = new m.MultiBar(
        {
          stream: stream as NodeJS.WritableStream,
          format: '{version} [{bar}] {percentage}% | {value}/{total} {unit} | {eta_formatted} left',
          formatValue: (v, _o, type) =>
            type === 'value' || type === 'total' ? (Math.round(v * 10) / 10).toFixed(1) : String(v),
          hideCursor: true,
          clearOnComplete: false,
          stopOnComplete: false,
          noTTYOutput: false,
        },
        m.Presets.shades_classic,
      );
      bars = { multi, byVersion: new Map() };
      if (pending !== undefined) drawBars(pending);
    });
  };

  return {
    update(s) {
      const now = step(s);
      if (now !== lastStep) {
        lastStep = now;
        line(now);
      }
      for (const v of s.versions) {
        const prev = versionSteps.get(v.versionCode);
        const here = `${v.status}${v.state === '' ? '' : ` ${v.state}`}`;
        if (prev !== here) {
          versionSteps.set(v.versionCode, here);
          line(`  ${v.versionNum}: ${here}${v.lastError === null ? '' : ` — ${v.lastError}`}`);
        }
        if (v.progress === undefined) continue;
        if (tty) {
          ensureBars(s);
          continue;
        }
        const t = tenths(v.progress);
        if (t > (reported.get(v.versionCode) ?? -1)) {
          reported.set(v.versionCode, t);
          const p = v.progress;
          const amount =
            p.bytes === undefined || p.totalBytes === undefined
              ? `${p.done}/${p.total} chunks`
              : `${(p.bytes / MB).toFixed(1)} of ${(p.totalBytes / MB).toFixed(1)} MB`;
          line(`  ${v.versionNum}: downloaded ${t * 10}% (${amount})`);
        }
      }
    },
    stop() {
      stopped = true;
      bars?.multi.stop();
    },
  };
}
