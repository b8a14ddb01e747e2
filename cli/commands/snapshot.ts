import { ExitCode } from '../exit-codes.ts';
import { UsageError } from '../../adapters/errors.ts';
import { acquireInstanceLock, type InstanceLock } from '../../adapters/instance-lock.ts';
import { SnapshotRepo } from '../../adapters/snapshot-repo.ts';
import {
  defaultSnapshotPaths,
  type SnapshotPaths,
} from '../../services/snapshot/snapshot-config.ts';
import { SnapshotError } from '../../services/snapshot/snapshots.ts';
import { loadContext, realWorld } from '../context.ts';
import { boxVersion, loadPaths, service } from '../snapshot-wiring.ts';
import type { CommandArgs } from './index.ts';
import { lockPath } from '../../services/agent/agent-files.ts';

const WRITERS = new Set(['init', 'commit', 'rollback', 'delete', 'prune', 'repair']);

const out = (s: string) => process.stdout.write(`${s}\n`);

function mib(bytes: number): string {
  return `${(bytes / 1024 / 1024).toFixed(1)} MiB`;
}

export async function run(args: CommandArgs): Promise<ExitCode> {
  const [sub, ...rest] = args.positionals;
  if (sub === undefined)
    throw new UsageError('snapshot needs a subcommand; see "boxkeeper snapshot --help"');
  if (
    !['init', 'commit', 'list', 'diff', 'rollback', 'delete', 'prune', 'verify', 'repair'].includes(
      sub,
    )
  ) {
    throw new UsageError(`unknown snapshot subcommand "${sub}"; see "boxkeeper snapshot --help"`);
  }
  // Usage is checked before the settings, the lock or the repository are touched.
  const rollbackTo = typeof args.values.version === 'string' ? args.values.version : rest[0];
  if (sub === 'diff' && (rest[0] === undefined || rest[1] === undefined))
    throw new UsageError('snapshot diff needs two versions: diff A B');
  if (sub === 'rollback' && rollbackTo === undefined)
    throw new UsageError('snapshot rollback needs --version V');
  if (sub === 'delete' && rest[0] === undefined)
    throw new UsageError('snapshot delete needs a version');
  const ctx = await loadContext(args, 'none');
  const { settings } = ctx;
  let lock: InstanceLock | undefined;
  try {
    if (WRITERS.has(sub)) {
      lock = await acquireInstanceLock(
        lockPath(settings),
        `boxkeeper snapshot ${sub}`,
        realWorld.processes,
      );
    }
    const json = args.values.json === true;
    const version = await boxVersion(settings);
    if (sub === 'init') {
      let paths: SnapshotPaths;
      const exists = await realWorld.files.exists(settings.snapshot.config);
      if (exists && args.values.force !== true) {
        paths = await loadPaths(settings);
        out(`using the existing configuration ${settings.snapshot.config}`);
      } else {
        paths = defaultSnapshotPaths(settings);
        await realWorld.files.writeAtomic(
          settings.snapshot.config,
          `${JSON.stringify(paths, null, 2)}\n`,
        );
        out(
          `wrote ${settings.snapshot.config}: ${paths.subscribe.length} subscribed paths, ${paths.exclude.length} excluded`,
        );
      }
      const repo = await SnapshotRepo.init(settings.snapshot.repo);
      const s = service(ctx, repo, paths, version);
      const existing = await s.list();
      if (existing.length > 0) {
        out(`repository ${repo.dir} already has ${existing.length} version(s); nothing committed`);
        return ExitCode.ok;
      }
      const r = await s.commit({ subject: 'initial snapshot' });
      out(`repository ${repo.dir}\ninitial snapshot ${r.version}: ${r.files} entries`);
      return ExitCode.ok;
    }

    if (!SnapshotRepo.exists(settings.snapshot.repo)) {
      throw new SnapshotError(
        `no snapshot repository at ${settings.snapshot.repo}; run "boxkeeper snapshot init" first`,
      );
    }
    const repo = SnapshotRepo.open(settings.snapshot.repo);
    const s = service(ctx, repo, await loadPaths(settings), version);

    switch (sub) {
      case 'commit': {
        const r = await s.commit({
          ...(typeof args.values.version === 'string' ? { version: args.values.version } : {}),
          ...(typeof args.values.subject === 'string' ? { subject: args.values.subject } : {}),
          oncePerBoot: args.values['once-per-boot'] === true,
        });
        if (r.skipped) out(`skipped: ${r.reason ?? 'nothing to commit'} (${r.version})`);
        else {
          out(
            `committed ${r.version}: ${r.files} entries, ${r.hashed} re-read, ${r.newObjects} new objects`,
          );
          if (r.pruned.length > 0) out(`pruned ${r.pruned.join(', ')}`);
        }
        return ExitCode.ok;
      }
      case 'list': {
        const versions = await s.list();
        if (json) out(JSON.stringify(versions));
        else if (versions.length === 0) out('no snapshots');
        else {
          for (const v of versions) {
            const flags = [v.current ? 'current' : '', v.initial ? 'initial' : '']
              .filter(Boolean)
              .join(',');
            out(
              `${v.version.padEnd(28)} ${v.time}  ${String(v.files).padStart(6)} files ${mib(v.bytes).padStart(11)}  ${flags.padEnd(15)} ${v.subject}`,
            );
          }
        }
        return ExitCode.ok;
      }
      case 'diff': {
        const [a = '', b = ''] = rest;
        const d = await s.diff(a, b);
        for (const p of d.added) out(`+ ${p}`);
        for (const p of d.removed) out(`- ${p}`);
        for (const p of d.modified) out(`M ${p}`);
        out(`${d.added.length} added, ${d.removed.length} removed, ${d.modified.length} modified`);
        return ExitCode.ok;
      }
      case 'rollback': {
        const v = rollbackTo ?? '';
        const r = await s.rollback(v, {
          discardChanges: args.values['discard-changes'] === true,
        });
        if (r.saved !== null) out(`saved the uncommitted changes as ${r.saved}`);
        out(`rolled back to ${v}: ${r.changed} path(s) changed`);
        return ExitCode.ok;
      }
      case 'delete': {
        const [v = ''] = rest;
        await s.delete(v);
        out(`deleted ${v}`);
        return ExitCode.ok;
      }
      case 'prune': {
        await s.recover();
        const pruned = await s.prune();
        out(pruned.length === 0 ? 'nothing to prune' : `pruned ${pruned.join(', ')}`);
        return ExitCode.ok;
      }
      case 'verify': {
        const r = await s.verify();
        if (json) out(JSON.stringify(r));
        else {
          out(`version ${r.version ?? '(none)'}: ${r.objectsChecked} objects checked`);
          for (const k of r.damagedObjects) out(`damaged object ${k}`);
          for (const k of r.missingObjects) out(`missing object ${k}`);
          for (const p of r.tampered) out(`tampered   ${p}`);
          for (const p of r.missing) out(`missing    ${p}`);
          for (const p of r.unexpected) out(`unexpected ${p}`);
          out(
            r.ok
              ? 'ok'
              : 'problems found; "boxkeeper snapshot repair" restores tampered and missing files',
          );
        }
        return r.ok ? ExitCode.ok : ExitCode.snapshot;
      }
      case 'repair': {
        const r = await s.repair();
        if (json) out(JSON.stringify(r));
        else {
          for (const k of r.repairedObjects) out(`repaired object ${k}`);
          for (const p of r.restored) out(`restored ${p}`);
          for (const u of r.unrecoverable) out(`NOT RECOVERED ${u}`);
          out(
            `${r.repairedObjects.length} object(s) and ${r.restored.length} file(s) repaired, ${r.unrecoverable.length} not recoverable`,
          );
        }
        return r.unrecoverable.length === 0 ? ExitCode.ok : ExitCode.snapshot;
      }
      default:
        throw new UsageError(`unknown snapshot subcommand "${sub}"`);
    }
  } finally {
    await lock?.release();
    ctx.log.close();
  }
}
