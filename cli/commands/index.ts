// The command table: every command's name, texts and options, and how to load its code. Only
// this light module loads at start; a command's module (and what it needs: the cloud client,
// SQLite, XState, the inspector) is imported when that command runs, so `--help` and `status`
// start about as fast as node itself (docs/benchmarks.md, start-up).
import { ExitCode } from '../exit-codes.ts';
import type { UpdateEvent } from '../../machines/update.machine.ts';

export interface CommandOption {
  type: 'string' | 'boolean';
  help: string;
}

export interface CommandArgs {
  values: Record<string, string | boolean | (string | boolean)[] | undefined>;
  positionals: string[];
}

export type CommandRun = (args: CommandArgs) => Promise<ExitCode>;

export interface Command {
  name: string;
  summary: string;
  usage: string;
  description: string;
  options: Record<string, CommandOption>;
  /** Whether the command takes positional arguments (subcommands, versions). */
  positionals?: boolean;
  /** Imports the command's module on demand and returns its run. */
  load(): Promise<CommandRun>;
}

export const settingsOption = {
  settings: {
    type: 'string',
    help: 'settings.ini to use (else $BOXKEEPER_SETTINGS, else ./settings/settings.ini)',
  },
} as const;

/** How long a patch signature is valid unless `patch pack --expires` says otherwise. */
export const DEFAULT_EXPIRY_DAYS = 180;

function updateOp(
  name: string,
  event: UpdateEvent['type'] | null,
  summary: string,
  description: string,
  extra: { usage?: string; options?: Record<string, CommandOption> } = {},
): Command {
  return {
    name,
    summary,
    usage: `${extra.usage ?? ''}[--no-wait] [--timeout SECONDS] [--settings PATH]`,
    description:
      `${description}\n` +
      'Goes to the running daemon over its local control channel; without a daemon it runs in\n' +
      'this process (services are stopped and started as needed) and waits until done.',
    options: {
      ...settingsOption,
      'no-wait': {
        type: 'boolean',
        help: 'With a daemon: return once the daemon took the command',
      },
      timeout: { type: 'string', help: 'Seconds to wait for the result (default 3600)' },
      ...extra.options,
    },
    load: () => import('./update-ops.ts').then((m) => m.opRunner(name, event)),
  };
}

const table: Command[] = [
  {
    name: 'run',
    summary: 'Run the agent (heartbeats, service supervision) until stopped',
    usage: '[--settings PATH]',
    description:
      'Runs the boxkeeper daemon for one box: keeps Java and FreeSWITCH running and sends\n' +
      'heartbeats to the cloud platform. One instance per box (a lock in [paths] agent_data).\n' +
      'Stops on SIGINT/SIGTERM; the box services keep running.',
    options: {
      ...settingsOption,
      inspect: {
        type: 'string',
        help: 'stream the update statecharts to a Stately inspector (ws://HOST:PORT)',
      },
    },
    load: () => import('./run.ts').then((m) => m.run),
  },
  {
    name: 'status',
    summary: 'Show whether the agent runs, service states and the last heartbeat',
    usage: '[--json] [--settings PATH]',
    description:
      'Reads the running agent’s status file ([paths] agent_data/status.json) and its lock.\n' +
      'With --json prints one JSON object (running, status) for scripts.',
    options: { ...settingsOption, json: { type: 'boolean', help: 'Print JSON' } },
    load: () => import('./status.ts').then((m) => m.run),
  },
  {
    name: 'health',
    summary: 'Exit 0 when the agent runs, both services run and heartbeats succeed',
    usage: '[--json] [--settings PATH]',
    description:
      'For scripts and monitoring: exits 0 only when the daemon runs, Java and FreeSWITCH are\n' +
      'running and the last heartbeat succeeded within 3 heartbeat intervals (at least 15 s);\n' +
      'otherwise exits 11. Prints one line with the reason. The running daemon answers the same\n' +
      'at GET /healthz on its control channel (loopback only, no token; 200 or 503).',
    options: { ...settingsOption, json: { type: 'boolean', help: 'Print JSON' } },
    load: () => import('./health.ts').then((m) => m.run),
  },
  {
    name: 'console',
    summary: "Print the link to the daemon's local web console",
    usage: '[--open] [--settings PATH]',
    description:
      'Prints the link (with its access token) to the local console the running daemon serves\n' +
      'on 127.0.0.1 when [console] enabled = on: the live update statechart, download progress,\n' +
      'both services, heartbeats, recent log lines and the operator actions. The token is\n' +
      'traded for a cookie on first use. Exits 1 when no daemon serves it, 2 when it is off.',
    options: {
      ...settingsOption,
      open: { type: 'boolean', help: 'Also open the link in the default browser' },
    },
    load: () => import('./console.ts').then((m) => m.run),
  },
  {
    name: 'heartbeat',
    summary: 'Send one heartbeat now and exit',
    usage: '[--settings PATH]',
    description:
      'Collects the 13 heartbeat items (as the daemon does, including keeping numconvert\n' +
      'registered while callbox is), sends them and prints what was sent. Exit 4 if the\n' +
      'cloud rejects or cannot be reached.',
    options: { ...settingsOption },
    load: () => import('./heartbeat.ts').then((m) => m.run),
  },
  {
    name: 'token',
    summary: 'Acquire a cloud token and print its expiry (never the token)',
    usage: '[--settings PATH]',
    description:
      'Requests a token with the signed getUserToken call, using configuration.ini’s access id\n' +
      'and secret, and prints when it expires. Exit 4 if the cloud refuses.',
    options: { ...settingsOption },
    load: () => import('./token.ts').then((m) => m.run),
  },
  {
    name: 'snapshot',
    positionals: true,
    summary:
      'Versioned snapshots of the box: init, commit, list, diff, rollback, prune, verify, repair',
    usage:
      'init [--force] | commit [--subject S] [--version V] [--once-per-boot] | list [--json]\n' +
      '                          | diff A B | rollback --version V [--discard-changes] | delete V | prune\n' +
      '                          | verify [--json] | repair [--json]   [--settings PATH]',
    description:
      'Commits the managed paths (from [snapshot] config, generated by "init" from settings.ini)\n' +
      'into a content-addressed repository ([snapshot] repo) and rolls the box back to any kept\n' +
      'version. Keeps the newest [snapshot] retain versions plus the initial one. Writing\n' +
      'subcommands take the same single-instance lock as "boxkeeper run". Exit 6 when a\n' +
      'snapshot operation is refused or verify/repair find problems.',
    options: {
      ...settingsOption,
      subject: { type: 'string', help: 'commit: a description of this snapshot' },
      version: {
        type: 'string',
        help: 'commit: the version name; rollback: the version to restore',
      },
      'once-per-boot': {
        type: 'boolean',
        help: 'commit: do nothing if a commit was made since boot',
      },
      'discard-changes': {
        type: 'boolean',
        help: 'rollback: do not save uncommitted changes first',
      },
      force: { type: 'boolean', help: 'init: regenerate the configuration from settings.ini' },
      json: { type: 'boolean', help: 'list/verify/repair: print JSON' },
    },
    load: () => import('./snapshot.ts').then((m) => m.run),
  },
  updateOp(
    'check',
    'CHECK',
    'Ask the cloud for updates now (and download them)',
    'Runs a version check now; a mandatory update is downloaded and installed at once.',
  ),
  updateOp(
    'install',
    'INSTALL',
    'Install the downloaded (optional) update now, or a patch file (--file)',
    'Installs the update that was downloaded and waits for the operator. With --file, installs\n' +
      'a patch zip from this machine instead (a box with no cloud link): the same backup, health\n' +
      'gate, rollback and signature rules. A signed patch names its version; an unsigned one\n' +
      'needs --version-num. Exit 0 installed, 8 not installed (refused, or rolled back).',
    {
      usage: '[--file PATCH.zip [--version-num V] [--version-code C]] ',
      options: {
        file: {
          type: 'string',
          help: 'A patch zip to install (the deployed layout, signed or not)',
        },
        'version-num': { type: 'string', help: 'With --file: the version it installs, e.g. V1.8' },
        'version-code': {
          type: 'string',
          help: 'With --file: its version code (default: the manifest’s, else local-<md5>)',
        },
      },
    },
  ),
  updateOp(
    'rollback',
    'ROLLBACK',
    'Undo the last installed update',
    'Restores the snapshot taken before the last installed update (services are\nstopped, the box rolled back, services started, paused tasks resumed).',
  ),
  updateOp(
    'clear-cache',
    'CLEAR_CACHE',
    'Delete downloaded updates and forget the update list',
    'Deletes the patch cache (downloads and extracted files; patch.meta stays) and\nforgets the current update list; the next check asks the cloud again.',
  ),
  updateOp(
    'reload-config',
    null,
    'Make the daemon read configuration.ini and settings.ini again',
    'The daemon reads configuration.ini and the [update]/[timer] settings again.',
  ),
  {
    name: 'service',
    summary: 'Install, remove or show boxkeeper as an OS service (systemd, Windows)',
    usage: 'install | uninstall | status [--dry-run] [--json] [--settings PATH]',
    description:
      'install    writes the service definition for "boxkeeper run --settings <settings.ini>"\n' +
      '           (Linux: /etc/systemd/system/boxkeeper.service; Windows: a WinSW service\n' +
      '           "boxkeeper" in <agent_data>\\service), enables and starts it.\n' +
      'uninstall  stops the agent, disables and removes the service. Java and FreeSWITCH keep\n' +
      '           running (the service manager signals the agent only).\n' +
      'status     installed? enabled? active? as the service manager reports it.\n' +
      '--dry-run  prints the definition and the commands it would run, and changes nothing.\n' +
      '(stop-agent is what the Windows service runs to stop the agent.)',
    positionals: true,
    options: {
      ...settingsOption,
      'dry-run': { type: 'boolean', help: 'print the definition and the commands; change nothing' },
      json: { type: 'boolean', help: 'status: print one JSON object' },
      manager: {
        type: 'string',
        help: 'systemd or winsw (default: by OS; winsw for --dry-run only)',
      },
      'unit-dir': {
        type: 'string',
        help: 'systemd: where the unit goes (default /etc/systemd/system)',
      },
      'service-dir': {
        type: 'string',
        help: 'Windows: where the WinSW exe and XML go (default <agent_data>\\service)',
      },
      wrapper: {
        type: 'string',
        help: 'Windows: the WinSW exe to install (default <install>\\vendor\\winsw\\winsw.exe)',
      },
    },
    load: () => import('./service.ts').then((m) => m.run),
  },
  {
    name: 'diagram',
    summary: 'Write pictures of the statecharts (Mermaid + SVG) into docs/diagrams/',
    usage: '[--out DIR] [--check]',
    description:
      'Draws the update cycle, the per-version patch machine and the service supervision machine\n' +
      'from their definitions: <name>.mmd (Mermaid stateDiagram-v2) and <name>.svg (Graphviz, rendered\n' +
      'offline) for update, patch and service. Output is deterministic. Needs no settings.ini.\n' +
      'With --check nothing is written: exit 11 and list the files that are missing or out of date.',
    options: {
      out: {
        type: 'string',
        help: 'directory to write to (default: docs/diagrams of the boxkeeper checkout, else of .)',
      },
      check: { type: 'boolean', help: 'only compare with the files in --out; exit 11 if stale' },
    },
    load: () => import('./diagram.ts').then((m) => m.run),
  },
  {
    name: 'self-update',
    summary: '(internal) Swap in a new agent build; started by the agent itself',
    usage: '--build DIR --home DIR --agent-pid PID [--settings PATH]',
    description:
      'Waits for the agent (--agent-pid) to exit, replaces the install --home with the build\n' +
      '--build (the old one is kept as <home>.previous), records the swap in patch.meta, starts\n' +
      'the new agent and waits until it runs the update on; otherwise restores the old install,\n' +
      'records the failure (the update is rolled back) and starts the old agent.',
    options: {
      ...settingsOption,
      build: { type: 'string', help: 'the new build (a boxkeeper install)' },
      home: { type: 'string', help: 'the install to replace' },
      'agent-pid': { type: 'string', help: 'the agent that handed over' },
    },
    load: () => import('./self-update.ts').then((m) => m.run),
  },
  {
    name: 'replay',
    summary: 'Re-run an update from a patch.meta against a copy of a box, printing its transitions',
    usage: '<patch.meta> --box DIR [--settings PATH] [--timeout SECONDS]',
    description:
      'Copies <patch.meta> into the box copy DIR and runs the update statecharts from that state\n' +
      'until they rest, printing each transition and effect as one JSON line. For debugging: files\n' +
      'are written only inside DIR (others are reported), services are not stopped or started, cloud\n' +
      'tasks are not paused\n' +
      'or resumed, calls count as none. The cloud of the box settings is asked for versions and\n' +
      'files. Settings: --settings, else DIR/RemoteManagerDist/settings/settings.ini; its\n' +
      '[paths] box_root is taken to be DIR.',
    options: {
      box: { type: 'string', help: 'a copy of the box directory (it is modified)' },
      settings: { type: 'string', help: 'settings.ini of the box copy' },
      timeout: { type: 'string', help: 'seconds to run at most (default 600)' },
      inspect: { type: 'string', help: 'also stream to a Stately inspector at ws://HOST:PORT' },
    },
    positionals: true,
    load: () => import('./replay.ts').then((m) => m.run),
  },
  {
    name: 'patch',
    summary: 'Build patches for the cloud: patch keygen, patch pack',
    usage:
      'keygen --out KEY | pack --from DIR --version-num V --version-code C --out ZIP [--key KEY [--counter N] [--expires DATE]] | pack --switch-over --package DIR|ARCHIVE --version-num V --version-code C --out ZIP [--entrypoint FILE] [--key KEY …]',
    description:
      'keygen: an Ed25519 key pair for signed patches: KEY (PKCS#8 PEM, mode 0600; never\n' +
      'overwritten) and KEY.pub; prints the public key for [security] patch_keys.\n' +
      "pack --from DIR: a patch zip in the deployed layout (DIR's content at the zip root: data/,\n" +
      'icb-box.jar, application.yml, settings.ini, boxkeeper/ …). With --key it carries\n' +
      'boxkeeper.manifest.json (every file with size and sha256, the version, --counter: default\n' +
      `the time in seconds, --expires: default ${DEFAULT_EXPIRY_DAYS} days) and its signature (docs/security.md).\n` +
      "pack --switch-over: a patch zip in the Python tool's layout that replaces the tool by\n" +
      'boxkeeper through its self-update: entrypoint.exe (the launcher: --entrypoint, else the\n' +
      "Windows package's bin/entrypoint.exe, else for a Linux package a generated sh launcher;\n" +
      'a Windows launcher gets V baked in) and the package under boxkeeper-package/. See\n' +
      'docs/install.md (switching a fleet).\n' +
      "Both print the MD5 (the cloud's fileMd5) and the size.",
    positionals: true,
    options: {
      'switch-over': { type: 'boolean', help: 'the switch-over patch' },
      from: { type: 'string', help: 'the folder whose content goes at the zip root' },
      package: { type: 'string', help: 'a boxkeeper release package: folder, .zip or .tar.gz' },
      'version-num': { type: 'string', help: 'the versionNum the cloud announces (e.g. V2.0)' },
      'version-code': { type: 'string', help: 'the versionCode the cloud announces' },
      out: { type: 'string', help: 'the patch zip to write (keygen: the private key)' },
      entrypoint: { type: 'string', help: 'the launcher to ship as entrypoint.exe' },
      key: { type: 'string', help: 'sign with this private key (from patch keygen)' },
      counter: { type: 'string', help: 'the release counter (default: seconds since 1970)' },
      expires: {
        type: 'string',
        help: `when the signature expires (default: in ${DEFAULT_EXPIRY_DAYS} days)`,
      },
      json: {
        type: 'boolean',
        help: 'also write <out>.json with versionNum, versionCode, fileMd5, size',
      },
    },
    load: () => import('./patch.ts').then((m) => m.run),
  },
  {
    name: 'switch-over',
    summary: '(internal) Take a box over from the Python tool; started by the patch entrypoint',
    usage: '[--settings PATH] [--from-patch V] [--timeout SECONDS]',
    description:
      'Installs the package it runs from as <manager_dir>/boxkeeper (verified against its\n' +
      'MANIFEST.json; an install that verifies is kept), registers and starts the service\n' +
      '(boxkeeper service install; without a service manager: the agent started detached), then\n' +
      "waits until the agent runs. Uses the Python tool's settings.ini unchanged: --settings, else\n" +
      './settings/settings.ini, else <box>\\RemoteManagerDist\\settings\\settings.ini (registry).\n' +
      'Safe to run again at any time. See docs/install.md, switching a fleet.',
    options: {
      settings: { type: 'string', help: "the Python tool's settings.ini" },
      'from-patch': {
        type: 'string',
        help: 'the patch version that carried this package (logged)',
      },
      timeout: { type: 'string', help: 'seconds to wait for the agent to run (default 120)' },
    },
    load: () => import('./switch-over.ts').then((m) => m.run),
  },
];

export const commands: Record<string, Command> = Object.fromEntries(table.map((c) => [c.name, c]));
