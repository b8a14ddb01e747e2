// What a waiting update command shows while the cycle works: on a terminal a progress bar per
// download, extraction and snapshot (cli-progress) and a line for each step; elsewhere (a log, a script) plain
// timestamped lines, each measured step every 10 %. Fed with the status the command polls (the
// daemon's /status, or the in-process engine's changes), so both paths show the same.
import type { MultiBar, SingleBar } from 'cli-progress';
import type { UpdateStatus, UpdateVersionStatus } from '../services/update/update-status.ts';

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

/** One measured step of a version: its download, then its extraction. */
interface Meter {
  what: 'download' | 'extract' | 'snapshot';
  past: 'downloaded' | 'extracted' | 'hashed' | 'restored';
  value: number;
  total: number;
  unit: 'MB' | 'chunks' | 'files';
}

/** The cycle's own meter: the snapshot it takes (backup before an install, commit after). */
function cycleMeter(s: UpdateStatus): { label: string; meter: Meter } | undefined {
  const w = s.snapshot;
  if (w === undefined || w.total === 0) return undefined;
  return {
    label: `snapshot ${w.snapshot}`,
    meter: { what: 'snapshot', past: w.verb, value: w.done, total: w.total, unit: 'files' },
  };
}

/** The version's meters, in MB (chunks when a download does not report bytes). */
function meters(v: UpdateVersionStatus): Meter[] {
  const out: Meter[] = [];
  const p = v.progress;
  if (p !== undefined) {
    const bytes = p.bytes !== undefined && p.totalBytes !== undefined && p.totalBytes > 0;
    out.push({
      what: 'download',
      past: 'downloaded',
      value: bytes ? (p.bytes as number) / MB : p.done,
      total: bytes ? (p.totalBytes as number) / MB : p.total,
      unit: bytes ? 'MB' : 'chunks',
    });
  }
  const x = v.extraction;
  if (x !== undefined)
    out.push({
      what: 'extract',
      past: 'extracted',
      value: x.bytes / MB,
      total: x.totalBytes / MB,
      unit: 'MB',
    });
  return out;
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

  // Rate and time left of each bar, from its first report (cli-progress's own ETA needs a value
  // every tick, and these come at most once a second).
  const firstSeen = new Map<string, { at: number; value: number }>();
  const rateOf = (key: string, m: Meter): string => {
    const t = now().getTime();
    const first = firstSeen.get(key);
    if (first === undefined) {
      firstSeen.set(key, { at: t, value: m.value });
      return '';
    }
    const perSecond = ((m.value - first.value) * 1000) / Math.max(1, t - first.at);
    if (m.value >= m.total) return 'done';
    if (!(perSecond > 0)) return '';
    const left = Math.round((m.total - m.value) / perSecond);
    const shown = m.unit === 'MB' ? perSecond.toFixed(1) : String(Math.round(perSecond));
    return `${shown} ${m.unit}/s, ${left} s left`;
  };

  const line = (text: string) => {
    if (bars !== undefined) bars.multi.log(`${text}\n`);
    else stream.write(tty ? `${text}\n` : `${now().toISOString()} ${text}\n`);
  };

  const drawBars = (s: UpdateStatus) => {
    if (bars === undefined) return;
    const cycle = cycleMeter(s);
    const rows = [
      ...s.versions.flatMap((v) =>
        meters(v).map((m) => ({
          key: `${v.versionCode} ${m.what}`,
          label: `${v.versionNum} ${m.what}`,
          m,
        })),
      ),
      ...(cycle === undefined ? [] : [{ key: cycle.label, label: cycle.label, m: cycle.meter }]),
    ];
    for (const { key, label, m } of rows) {
      const rate = rateOf(key, m);
      let bar = bars.byVersion.get(key);
      if (bar === undefined) {
        // Counts (files, chunks) as whole numbers; MB with one decimal (the bars' default).
        bar = bars.multi.create(
          m.total,
          m.value,
          { version: label.padEnd(20), unit: m.unit, rate },
          m.unit === 'MB'
            ? {}
            : {
                formatValue: (v, _o, type) =>
                  type === 'value' || type === 'total' ? String(Math.round(v)) : String(v),
              },
        );
        bars.byVersion.set(key, bar);
      }
      bar.setTotal(m.total);
      bar.update(m.value, { rate });
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
          format: '{version} [{bar}] {percentage}% | {value}/{total} {unit} | {rate}',
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
        const ms = meters(v);
        if (ms.length === 0) continue;
        if (tty) {
          ensureBars(s);
          continue;
        }
        for (const m of ms) {
          const key = `${v.versionCode} ${m.what}`;
          const t = m.total <= 0 ? 0 : Math.floor((10 * m.value) / m.total);
          if (t > (reported.get(key) ?? -1)) {
            reported.set(key, t);
            const amount =
              m.unit === 'chunks'
                ? `${m.value}/${m.total} chunks`
                : `${m.value.toFixed(1)} of ${m.total.toFixed(1)} MB`;
            line(`  ${v.versionNum}: ${m.past} ${t * 10}% (${amount})`);
          }
        }
      }
      const cycle = cycleMeter(s);
      if (cycle !== undefined) {
        if (tty) ensureBars(s);
        else {
          const m = cycle.meter;
          const t = Math.floor((10 * m.value) / m.total);
          if (t > (reported.get(cycle.label) ?? -1)) {
            reported.set(cycle.label, t);
            line(`  ${cycle.label}: ${m.past} ${t * 10}% (${m.value}/${m.total} files)`);
          }
        }
      }
    },
    stop() {
      stopped = true;
      bars?.multi.stop();
    },
  };
}
