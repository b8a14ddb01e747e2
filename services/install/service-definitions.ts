// Service definitions for running `boxkeeper run` under the OS service manager: the systemd
// unit (Linux) and the WinSW XML (Windows). Pure: the CLI and the packaging script render the
// same text from the same options. docs/architecture.md ("Running as a service") says why each
// setting is what it is; docs/install.md is the operator's side.

/** The service's name: `boxkeeper.service` (systemd), service id `boxkeeper` (Windows). */
export const SERVICE_NAME = 'boxkeeper';

/**
 * Exit status of an agent that handed over to `boxkeeper self-update` under systemd. Listed in
 * the unit's RestartPreventExitStatus= (systemd must not start the old agent again while the
 * updater swaps the install: the updater restarts the service itself) and SuccessExitStatus=
 * (the hand-over is not a failure). Under WinSW the agent exits 0 instead: WinSW reports a
 * clean exit to Windows as "stopped", for which the service's failure actions do not apply.
 */
export const HANDOVER_EXIT_CODE = 10;

/** `BOXKEEPER_SERVICE`: set by the service definition, tells the agent who restarts it. */
export type ServiceKind = 'systemd' | 'winsw';

export function serviceKindOf(env: NodeJS.ProcessEnv): ServiceKind | undefined {
  const v = env.BOXKEEPER_SERVICE;
  return v === 'systemd' || v === 'winsw' ? v : undefined;
}

/** How to start the agent: an absolute program and the arguments before the command name. */
export interface Launcher {
  program: string;
  /** e.g. [`<home>/lib/boxkeeper.mjs`], or [`--import`, `<tsx>`, `<checkout>/cli/main.ts`]. */
  args: string[];
}

export interface ServiceOptions {
  launcher: Launcher;
  /** Absolute path of the box's settings.ini. */
  settingsFile: string;
  /** The agent's install (working directory). */
  home: string;
}

export interface SystemdOptions extends ServiceOptions {
  /** Seconds before systemd restarts the agent (default 5). */
  restartSec?: number;
  /** At most `startLimitBurst` starts within `startLimitIntervalSec` (defaults 5 in 300 s). */
  startLimitIntervalSec?: number;
  startLimitBurst?: number;
}

export interface WinswOptions extends ServiceOptions {
  /** Where WinSW writes its own log and the agent's captured stdout/stderr. */
  logDir: string;
}

/** Thrown for a value that cannot be written into the definition; the CLI maps it to exit 2. */
export class DefinitionError extends Error {}

function checkText(what: string, value: string): void {
  // eslint-disable-next-line no-control-regex
  if (/[\u0000-\u001f\u007f]/.test(value)) {
    throw new DefinitionError(`${what} contains a control character: ${JSON.stringify(value)}`);
  }
}

/**
 * One ExecStart= word (systemd.service(5) "Command lines"): quoted when it has anything but
 * plain path characters; `%` (specifiers) and `$` (variable expansion) doubled.
 */
export function systemdWord(value: string, what = 'a path'): string {
  checkText(what, value);
  if (value === '') return '""';
  const escaped = value.replace(/%/g, '%%').replace(/\$/g, '$$$$');
  if (/^[A-Za-z0-9_@%+=:,./-]+$/.test(value)) return escaped;
  return `"${escaped.replace(/\\/g, '\\\\').replace(/"/g, '\\"')}"`;
}

/** A path setting (WorkingDirectory=): the rest of the line, unquoted; `%` doubled. */
export function systemdPath(value: string, what = 'a path'): string {
  checkText(what, value);
  if (value.trim() !== value)
    throw new DefinitionError(`${what} starts or ends with a space: "${value}"`);
  return value.replace(/%/g, '%%');
}

export function renderSystemdUnit(opts: SystemdOptions): string {
  for (const [what, p] of [
    ['the launcher', opts.launcher.program],
    ['settings.ini', opts.settingsFile],
    ['the install dir', opts.home],
  ] as const) {
    if (!p.startsWith('/'))
      throw new DefinitionError(`${what} must be an absolute path, got "${p}"`);
  }
  const exec = [
    opts.launcher.program,
    ...opts.launcher.args,
    'run',
    '--settings',
    opts.settingsFile,
  ]
    .map((w) => systemdWord(w))
    .join(' ');
  const restartSec = opts.restartSec ?? 5;
  const interval = opts.startLimitIntervalSec ?? 300;
  const burst = opts.startLimitBurst ?? 5;
  return `# boxkeeper — keeps this box's Java and FreeSWITCH alive and up to date.
# Written by "boxkeeper service install"; "boxkeeper service uninstall" removes it.
[Unit]
Description=boxkeeper box agent
Documentation=man:systemd.service(5)
Wants=network-online.target
After=network-online.target
# At most ${burst} starts in ${interval} s, then the unit is left failed (see "systemctl status").
StartLimitIntervalSec=${interval}
StartLimitBurst=${burst}

[Service]
Type=simple
ExecStart=${exec}
WorkingDirectory=${systemdPath(opts.home, 'the install dir')}
Environment=BOXKEEPER_SERVICE=systemd
Restart=always
RestartSec=${restartSec}
# Exit ${HANDOVER_EXIT_CODE}: the agent handed over to "boxkeeper self-update", which restarts the
# service once the new build is in place. Not a failure, and no restart of the old build.
RestartPreventExitStatus=${HANDOVER_EXIT_CODE}
SuccessExitStatus=${HANDOVER_EXIT_CODE}
# Java and FreeSWITCH are started by the agent and must outlive it (agent restart, stop,
# self-update): a stop signals the agent only, never the rest of the control group.
KillMode=process
KillSignal=SIGTERM
TimeoutStopSec=60
# The agent writes JSON lines to stdout when it has no terminal: the journal keeps them,
# besides the day files in <box>/boxkeeper/logs.
StandardOutput=journal
StandardError=journal
SyslogIdentifier=${SERVICE_NAME}

[Install]
WantedBy=multi-user.target
`;
}

function xmlText(what: string, value: string): string {
  checkText(what, value);
  // WinSW expands %VARIABLES% in arguments and env values; a literal % cannot be written.
  if (value.includes('%'))
    throw new DefinitionError(`${what} contains "%", which WinSW would expand: ${value}`);
  if (value.includes('"')) throw new DefinitionError(`${what} contains a double quote: ${value}`);
  return value
    .replace(/&/g, '&amp;')
    .replace(/</g, '&lt;')
    .replace(/>/g, '&gt;')
    .replace(/'/g, '&apos;');
}

/**
 * The WinSW XML (WinSW 1.17 as shipped by node-windows; the same elements work in WinSW 2.x).
 * WinSW starts `<executable> <startargument>… <argument>…` and stops the service by running
 * `<stopexecutable> <stopargument>… <argument>…` and waiting for the agent to exit: with stop
 * arguments it does not kill the agent's process tree, so Java and FreeSWITCH survive.
 */
export function renderWinswXml(opts: WinswOptions): string {
  const arg = (tag: string, v: string) => `  <${tag}>${xmlText(`an argument`, v)}</${tag}>`;
  const prefix = opts.launcher.args;
  return `<?xml version="1.0" encoding="UTF-8"?>
<!-- boxkeeper: written by "boxkeeper service install"; "boxkeeper service uninstall" removes it. -->
<service>
  <id>${SERVICE_NAME}</id>
  <name>boxkeeper</name>
  <description>boxkeeper box agent: keeps this box's Java and FreeSWITCH alive and up to date.</description>
  <executable>${xmlText('the launcher', opts.launcher.program)}</executable>
${[...prefix, 'run'].map((v) => arg('startargument', v)).join('\n')}
  <stopexecutable>${xmlText('the launcher', opts.launcher.program)}</stopexecutable>
${[...prefix, 'service', 'stop-agent'].map((v) => arg('stopargument', v)).join('\n')}
${['--settings', opts.settingsFile].map((v) => arg('argument', v)).join('\n')}
  <workingdirectory>${xmlText('the install dir', opts.home)}</workingdirectory>
  <startmode>Automatic</startmode>
  <onfailure action="restart" delay="10 sec"/>
  <onfailure action="restart" delay="30 sec"/>
  <onfailure action="restart" delay="60 sec"/>
  <resetfailure>1 hour</resetfailure>
  <env name="BOXKEEPER_SERVICE" value="winsw"/>
  <logpath>${xmlText('the log dir', opts.logDir)}</logpath>
  <log mode="roll-by-size">
    <sizeThreshold>10240</sizeThreshold>
    <keepFiles>8</keepFiles>
  </log>
</service>
`;
}
