import { ExitCode } from '../exit-codes.ts';
import { readFile } from 'node:fs/promises';
import { describeStorageError, errorMessage, isErrnoCode } from '../../adapters/errors.ts';
import { ownerAlive, readLockOwner } from '../../adapters/instance-lock.ts';
import { nodeProcesses } from '../process-control.ts';
import type { AgentStatus } from '../../services/agent/agent.ts';
import { statusPath, lockPath } from '../../services/agent/agent-files.ts';
import type { Settings } from '../../services/agent/settings.ts';
import { PHASE } from '../../machines/phases.ts';
import { describe, type UpdateStatus } from '../../services/update/update-status.ts';
import { readCloudCa, readSettings } from '../settings-load.ts';
import type { CommandArgs } from './index.ts';

function ago(iso: string | undefined): string {
  if (iso === undefined) return 'never';
  const s = Math.round((Date.now() - Date.parse(iso)) / 1000);
  return s < 120 ? `${s}s ago` : `${Math.round(s / 60)}m ago`;
}

/** The update state from patch.meta itself (no daemon, or one without an update engine). */
async function updateFromMeta(
  settings: Settings,
): Promise<UpdateStatus | { error: string } | null> {
  let text: string;
  try {
    text = await readFile(settings.paths.patchMeta, 'utf8');
  } catch (err) {
    if (isErrnoCode(err, 'ENOENT')) return null;
    return { error: describeStorageError(err, settings.paths.patchMeta) ?? errorMessage(err) };
  }
  try {
    const env = JSON.parse(text) as { seq?: number; snapshot?: Parameters<typeof describe>[0] };
    if (env.snapshot === undefined) return await legacyPreview(settings.paths.patchMeta, text);
    // The state's tags come from the machine definition, the one place that knows them: the
    // statecharts load only for a patch.meta the agent is not running.
    const { tagsOfValue } = await import('../../machines/update.machine.ts');
    return describe(env.snapshot, env.seq ?? 0, tagsOfValue(env.snapshot.value));
  } catch (err) {
    return { error: `${settings.paths.patchMeta}: unreadable (${(err as Error).message})` };
  }
}

/**
 * What a patch.meta of the Python tool holds, shown as it stands (the agent imports it at its
 * next start). Its reader needs zod, so it loads only for such a file.
 */
async function legacyPreview(
  file: string,
  text: string,
): Promise<UpdateStatus | { error: string }> {
  const { parseLegacyPatchMeta } = await import('../../services/update/legacy-meta.ts');
  const parsed = parseLegacyPatchMeta(text);
  if (parsed.kind === 'fork')
    return {
      error: `${file}: the older fork's format, set aside at the next start (${parsed.reason})`,
    };
  if (parsed.kind !== 'python')
    return {
      error: `${file}: neither boxkeeper's nor the Python tool's format${parsed.kind === 'invalid' ? ` (${parsed.problems.join('; ')})` : ''}`,
    };
  const { meta } = parsed;
  return {
    state: "the Python tool's (imported at the agent's next start)",
    tags: [],
    phase: meta.phase,
    phaseNumber: PHASE[meta.phase],
    mark: meta.mark,
    versions: meta.list.map((v) => ({
      versionNum: v.versionNum,
      versionCode: v.versionCode,
      status: v.status,
      state: '',
      remark: v.remark,
      lastError: null,
    })),
    pausedTasks: null,
    backup: null,
    lastBackup: null,
    nextCheckAt: null,
    lastError: null,
    lastResult:
      meta.selfUpdateVersion === null ? null : `self-update to ${meta.selfUpdateVersion} pending`,
    policy: null,
    seq: 0,
    parked: null,
  };
}

const mb = (n: number) => (n / 1e6).toFixed(1);

/** "12.3 of 100.0 MB (12/100 chunks)"; older daemons report chunks only. */
export function progressText(p: NonNullable<UpdateStatus['versions'][number]['progress']>): string {
  const chunks = `${p.done}/${p.total} chunks`;
  return p.bytes === undefined || p.totalBytes === undefined
    ? chunks
    : `${mb(p.bytes)} of ${mb(p.totalBytes)} MB (${chunks})`;
}

function updateLines(u: UpdateStatus | { error: string } | null): string[] {
  if (u === null) return ['update:     no update state yet'];
  if ('error' in u) return [`update:     ${u.error}`];
  const lines = [`update:     ${u.state} (phase ${u.phaseNumber} ${u.phase})`];
  // Older daemons' status.json has no `parked`.
  const parked = (u as Partial<UpdateStatus>).parked ?? null;
  if (parked !== null)
    lines.push(
      `  PARKED, ${parked.reason} since ${parked.since} (${parked.attempts} attempts, next ${parked.nextRetryAt}): ${parked.error}`,
    );
  for (const v of u.versions) {
    // While it is extracted (after the download): how far, in bytes.
    const x = v.extraction;
    const p =
      x !== undefined && x.bytes < x.totalBytes
        ? ` extracting ${mb(x.bytes)} of ${mb(x.totalBytes)} MB`
        : v.progress === undefined
          ? ''
          : ` ${progressText(v.progress)}`;
    lines.push(
      `  ${v.versionNum.padEnd(10)} ${v.status}${p}${v.lastError === null ? '' : ` — ${v.lastError}`}`,
    );
  }
  if (u.snapshot !== undefined)
    lines.push(
      `  snapshot ${u.snapshot.snapshot}: ${u.snapshot.done} of ${u.snapshot.total} changed files ${u.snapshot.verb}`,
    );
  if (u.pausedTasks !== null) lines.push(`  paused tasks: ${u.pausedTasks.join(', ') || '(none)'}`);
  if (u.nextCheckAt !== null) lines.push(`  next check: ${u.nextCheckAt}`);
  if (u.lastResult !== null) lines.push(`  last result: ${u.lastResult}`);
  if (u.lastError !== null) lines.push(`  last error: ${u.lastError}`);
  return lines;
}

export async function run(args: CommandArgs): Promise<ExitCode> {
  // Only what status shows is loaded: no cloud client, agent or statecharts; the logger only
  // when there are settings warnings to record.
  const { settings, warnings } = await readSettings(args);
  if (warnings.length > 0) {
    const { openLog } = await import('../context.ts');
    const log = await openLog(settings, 'none');
    for (const w of warnings) log.logger.warn(w);
    log.close();
  }
  await readCloudCa(settings);
  const owner = await readLockOwner(lockPath(settings));
  const running = await ownerAlive(owner, nodeProcesses);
  const status = await readFile(statusPath(settings), 'utf8').then(
    (text) => JSON.parse(text) as AgentStatus,
    () => null,
  );
  const update = running && status?.update != null ? status.update : await updateFromMeta(settings);
  if (args.values.json === true) {
    process.stdout.write(
      `${JSON.stringify({ running, pid: running ? owner?.pid : null, box: settings.paths.boxRoot, status, update })}\n`,
    );
    return ExitCode.ok;
  }
  const lines = [
    `agent:      ${running ? `running (pid ${owner?.pid})` : 'not running'}`,
    `box:        ${settings.paths.boxRoot}${status === null ? '' : ` (version ${status.box.version})`}`,
  ];
  if (status !== null) {
    if (!running) lines.push(`last seen:  ${ago(status.updatedAt)} (status below is from then)`);
    for (const name of ['java', 'freeswitch'] as const) {
      const s = status.services[name];
      lines.push(
        `${name.padEnd(11)} ${s === undefined ? 'not supervised' : `${s.status}${s.pid === null ? '' : ` (pid ${s.pid})`} since ${ago(s.since)}${s.lastError === null ? '' : `; last error: ${s.lastError}`}`}`,
      );
    }
    const hb = status.heartbeat;
    lines.push(
      `heartbeat:  ${hb.sent} sent, ${hb.failed} failed; last ${hb.last === null ? 'never' : `${ago(hb.last.at)} ${hb.last.ok ? 'ok' : `FAILED: ${hb.last.error ?? ''}`}`}`,
    );
  }
  lines.push(...updateLines(update));
  process.stdout.write(`${lines.join('\n')}\n`);
  return ExitCode.ok;
}
