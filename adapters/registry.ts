// Windows registry access, behind an interface so Linux (no registry) and tests can supply
// their own. The real implementation shells out to reg.exe, which every Windows has.

export interface Registry {
  /** A REG_SZ/REG_EXPAND_SZ value, or undefined when the key or value does not exist. */
  readString(key: string, valueName: string): Promise<string | undefined>;
}

export const noRegistry: Registry = {
  readString: () => Promise.resolve(undefined),
};

/** Parses `reg query KEY /v NAME` output: `    NAME    REG_SZ    VALUE`. */
export function parseRegQuery(output: string, valueName: string): string | undefined {
  for (const line of output.split(/\r?\n/)) {
    const m = /^\s+(.+?)\s{2,}(REG_SZ|REG_EXPAND_SZ)\s{2,}(.*)$/.exec(line);
    if (m !== null && (m[1] as string).toLowerCase() === valueName.toLowerCase()) {
      return (m[3] as string).trim();
    }
  }
  return undefined;
}

function regQuery(
  key: string,
  valueName: string,
  view: '/reg:64' | '/reg:32',
): Promise<string | undefined> {
  return new Promise((resolve) => {
    // child_process loads at the first query (Windows only): not at every start.
    process
      .getBuiltinModule('node:child_process')
      .execFile(
        'reg',
        ['query', key, '/v', valueName, view],
        { windowsHide: true, timeout: 10_000 },
        (err, stdout) => {
          resolve(err === null ? parseRegQuery(stdout, valueName) : undefined);
        },
      );
  });
}

/** Reads the 64-bit view first, then the 32-bit one (a 32-bit installer writes WOW6432Node). */
export const windowsRegistry: Registry = {
  async readString(key, valueName) {
    return (
      (await regQuery(key, valueName, '/reg:64')) ?? (await regQuery(key, valueName, '/reg:32'))
    );
  },
};

export function platformRegistry(platform: NodeJS.Platform): Registry {
  return platform === 'win32' ? windowsRegistry : noRegistry;
}
