// Reading a patch.meta the Python tool wrote (§4 of the reference), so a box moving to
// boxkeeper keeps its update state: which phase it was in and each version's status. The
// older fork's jsonpickle object format (§14) cannot be trusted and is only recognised.
import { z } from 'zod';
import {
  phaseName,
  patchStatusName,
  type PatchStatusName,
  type PhaseName,
} from '../../machines/phases.ts';

export interface LegacyPatch {
  versionCode: string;
  versionNum: string;
  fileMd5: string;
  remark: string;
  status: PatchStatusName;
  argumentConfigMap: Record<string, unknown>;
}

export interface LegacyMeta {
  phase: PhaseName;
  list: LegacyPatch[];
  retries: number;
  mark: number;
  selfUpdateVersion: string | null;
}

export type LegacyMetaParse =
  | { kind: 'python'; meta: LegacyMeta }
  /** The older fork's jsonpickle object graph: phases numbered differently (§14). */
  | { kind: 'fork'; reason: string }
  /** Not a Python-era file (e.g. boxkeeper's own envelope). */
  | { kind: 'not-legacy' }
  | { kind: 'invalid'; problems: string[] };

const patch = z.object({
  version_code: z.string(),
  version_num: z.string(),
  file_MD5: z.string(),
  remark: z.string().nullable(),
  status: z
    .number()
    .int()
    .refine((n) => patchStatusName(n) !== undefined, 'a PatchStatus number 0–4'),
  argument_config_map: z.record(z.string(), z.unknown()).nullable().optional(),
});

const meta = z.object({
  state: z
    .number()
    .int()
    .refine((n) => phaseName(n) !== undefined, 'a PatchCyclePhase number 0–9'),
  list: z.array(patch),
  retries: z.number().int(),
  mark: z.number().int().min(-1).max(2),
  self_update_version: z.string().nullable(),
});

// A stack of its own: recursion overflowed on a file nested 100,000 levels deep.
function hasPyTags(root: unknown): boolean {
  const pending: unknown[] = [root];
  while (pending.length > 0) {
    const value = pending.pop();
    if (value === null || typeof value !== 'object') continue;
    if (Array.isArray(value)) for (const v of value as unknown[]) pending.push(v);
    else
      for (const [k, v] of Object.entries(value)) {
        if (k.startsWith('py/')) return true;
        pending.push(v);
      }
  }
  return false;
}

export function parseLegacyPatchMeta(text: string): LegacyMetaParse {
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (err) {
    return { kind: 'invalid', problems: [`not JSON: ${(err as Error).message}`] };
  }
  // boxkeeper's envelope, also one missing a field (the Python tool wrote neither key).
  if (json !== null && typeof json === 'object' && ('format' in json || 'machineId' in json)) {
    return { kind: 'not-legacy' };
  }
  if (hasPyTags(json)) {
    return {
      kind: 'fork',
      reason:
        'a jsonpickle object graph ("py/object" tags) written by the older fork of the tool, whose phases are numbered differently; it cannot be imported safely',
    };
  }
  const parsed = meta.safeParse(json);
  if (!parsed.success) {
    return {
      kind: 'invalid',
      problems: parsed.error.issues.map((i) => `${i.path.join('.') || '(root)'}: ${i.message}`),
    };
  }
  const m = parsed.data;
  return {
    kind: 'python',
    meta: {
      phase: phaseName(m.state) as PhaseName,
      list: m.list.map((p) => ({
        versionCode: p.version_code,
        versionNum: p.version_num,
        fileMd5: p.file_MD5,
        remark: p.remark ?? '',
        status: patchStatusName(p.status) as PatchStatusName,
        argumentConfigMap: p.argument_config_map ?? {},
      })),
      retries: m.retries,
      mark: m.mark,
      selfUpdateVersion: m.self_update_version,
    },
  };
}
