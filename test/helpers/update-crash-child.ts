// A boxkeeper daemon (supervision + update engine, no heartbeats) for the update crash test.
// It kills itself with SIGKILL:
//   CRASH_AT=<effect>[:<n>]          when the n-th (default 1st) call of that effect starts;
//   CRASH_AFTER=<effect>[:<n>]       when it has finished, before its result is recorded;
//   CRASH_BEFORE_RENAME=<state>      between the fsync and the rename of the patch.meta write
//                                    that enters <state> (a dotted state path).
// Without a crash it runs until the update cycle rests with a result, prints the update status
// as one JSON line and exits 0 (the box services keep running, as with `boxkeeper run`).
//
// Usage: node --import tsx test/helpers/update-crash-child.ts <settings.ini>
import { writeFileAtomic } from '../../adapters/fs-atomic.ts';
import { nodePatchFs } from '../../adapters/patch-fs.ts';
import { statePath } from '../../machines/update.machine.ts';
import type { UpdateEffects } from '../../services/update/update-engine.ts';
import { loadContext } from '../../cli/context.ts';
import { openSession } from '../../cli/session.ts';
import type { UpdateRuntime } from '../../cli/updates.ts';
import { leaveServicesRunning } from '../../cli/commands/update-ops.ts';

const settingsFile = process.argv[2];
if (settingsFile === undefined) throw new Error('usage: update-crash-child.ts <settings.ini>');
const [crashEffect, crashNth] = (process.env.CRASH_AT ?? '').split(':');
const [afterEffect, afterNth] = (process.env.CRASH_AFTER ?? '').split(':');
const crashState = process.env.CRASH_BEFORE_RENAME;
const die = (why: string) => {
  process.stderr.write(`CRASH ${why}\n`);
  process.kill(process.pid, 'SIGKILL');
};

const calls = new Map<string, number>();
function wrap(effects: UpdateEffects): UpdateEffects {
  return new Proxy(effects, {
    get(target, prop, receiver) {
      const value: unknown = Reflect.get(target, prop, receiver);
      if (typeof value !== 'function' || typeof prop !== 'string') return value;
      return (...args: unknown[]) => {
        const n = (calls.get(prop) ?? 0) + 1;
        calls.set(prop, n);
        if (prop === crashEffect && n === Number(crashNth ?? '1')) die(`in ${prop} #${n}`);
        const result = (value as (...a: unknown[]) => unknown).apply(target, args);
        if (prop !== afterEffect || n !== Number(afterNth ?? '1')) return result;
        return Promise.resolve(result).then((r) => {
          die(`after ${prop} #${n}`);
          return r;
        });
      };
    },
  });
}

const metaFs = {
  ...nodePatchFs,
  writeAtomic: (path: string, data: string | Uint8Array, options?: { mode?: number }) =>
    writeFileAtomic(path, data, {
      ...options,
      beforeRename: () => {
        if (crashState === undefined) return;
        const env = JSON.parse(String(data)) as { snapshot: { value: unknown } };
        if (statePath(env.snapshot.value) === crashState) die(`before rename into ${crashState}`);
      },
    }),
};

const ctx = await loadContext({ values: { settings: settingsFile }, positionals: [] }, 'none');
const session = await openSession(ctx, {
  holder: 'update crash child',
  updates: {
    onFatal: (err) => {
      process.stderr.write(`fatal: ${String(err)}\n`);
      process.exit(1);
    },
    hooks: { wrapEffects: wrap, metaFs },
  },
});
const { agent } = session;
const runtime = session.updates as UpdateRuntime;
agent.start({ holdServices: runtime.engine.servicesMustStayDown(), heartbeat: false });
runtime.engine.start();
const deadline = Date.now() + 90_000;
for (;;) {
  const s = runtime.engine.status();
  if ((s.state === 'idle' || s.state === 'awaitingInstall') && s.lastResult !== null) {
    await runtime.engine.settled(1000);
    // As an in-process command does: a rollback releases the services without waiting for them,
    // and this process then stops supervising (a slow Java start was left undone).
    await leaveServicesRunning(ctx, agent, runtime.engine);
    process.stdout.write(`${JSON.stringify({ status: s, calls: Object.fromEntries(calls) })}\n`);
    break;
  }
  if (Date.now() > deadline) {
    process.stderr.write(`no result after 90 s; state ${s.state}\n`);
    process.exitCode = 2;
    break;
  }
  await new Promise((r) => setTimeout(r, 100));
}
await session.close();
ctx.log.close();
