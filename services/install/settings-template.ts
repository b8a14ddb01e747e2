// The commented settings.ini a package ships (settings/settings.ini.example): every key the
// agent reads, in FIELDS order, each with the meaning docs/settings.md gives it. Required keys
// carry working values (the Python tool's template, with paths for the target OS); keys with a
// default are written commented out at that default, so a later agent's defaults still apply.
import { FIELDS } from '../agent/settings.ts';

/** `section.key` → the meaning column of docs/settings.md's tables. */
export function settingsDocs(markdown: string): Map<string, string> {
  const docs = new Map<string, string>();
  let section: string | undefined;
  for (const line of markdown.split('\n')) {
    const heading = /^### \[(\w+)\]/.exec(line);
    if (heading !== null) section = heading[1];
    const row = /^\|\s*`(\w+)`\s*\|[^|]*\|(.*)\|\s*$/.exec(line);
    if (row !== null && section !== undefined) {
      docs.set(`${section}.${row[1] ?? ''}`, (row[2] ?? '').trim().replace(/\*\*|`/g, ''));
    }
  }
  return docs;
}

/** Values for the keys without a default: the deployed tool's template, per target OS. */
const REQUIRED_VALUES: Record<'linux' | 'win32', Record<string, string>> = {
  win32: {
    'general.host_addr': 'https://finear.ect888.com:6680',
    'paths.fs': 'C:\\Program Files\\FreeSWITCH',
    'paths.java': 'C:\\Program Files\\java',
  },
  linux: {
    'general.host_addr': 'https://finear.ect888.com:6680',
    'paths.fs': '/usr/local/freeswitch',
    'paths.java': '/usr/lib/jvm/default-java',
  },
};
const COMMON_VALUES: Record<string, string> = {
  'general.env': 'prod',
  'general.logging': 'info',
  'general.log_expiration': '30',
  'general.debug_mode': 'off',
  'paths.config': '\\conf\\configuration.ini',
  'paths.patch': '\\patch',
  'paths.patchmeta': '\\patch.meta',
  'paths.backup': '\\backup',
  'paths.fs_conf': '\\conf\\sip_profiles\\external\\',
  'paths.java_pid': '\\pid.txt',
  'paths.jar': '\\icb-box.jar',
  'paths.app_yml': '\\application.yml',
  'paths.path_bat': '\\DOS\\start.bat',
  'paths.data': '\\data',
  'timer.heartbeat': '30',
  'timer.versionCheck': '3600',
};

export function renderSettingsTemplate(os: 'linux' | 'win32', docs: Map<string, string>): string {
  const out = [
    '; boxkeeper settings. Copy to settings/settings.ini (or pass --settings PATH) and edit.',
    "; The Python box remote manager's settings.ini works unchanged; docs/settings.md has the rules.",
    '; Lines starting with ";" are comments; a commented key shows its default.',
  ];
  let section = '';
  for (const f of FIELDS) {
    const id = `${f.section}.${f.key}`;
    if (f.section !== section) {
      section = f.section;
      out.push('', `[${section}]`);
    }
    const meaning = docs.get(id);
    if (meaning === undefined) throw new Error(`docs/settings.md does not document [${id}]`);
    out.push(`; ${meaning}`);
    if (id === 'paths.box_root') {
      if (os === 'win32')
        out.push('; Empty: read from the registry (HKLM\\SOFTWARE\\Ect888\\Qthz QthzInstallPath).');
      out.push(os === 'win32' ? 'box_root =' : 'box_root = /opt/qthz');
      continue;
    }
    if (f.default !== undefined) {
      out.push(`;${f.key} = ${f.default}`);
      continue;
    }
    const value = REQUIRED_VALUES[os][id] ?? COMMON_VALUES[id];
    if (value === undefined) throw new Error(`no template value for required key [${id}]`);
    out.push(`${f.key} = ${value}`);
  }
  return out.join(os === 'win32' ? '\r\n' : '\n') + (os === 'win32' ? '\r\n' : '\n');
}
