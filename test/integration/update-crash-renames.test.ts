// Crash safety of the update lifecycle: the cases and what each must converge to are in
// test/helpers/update-crash.ts.
import { test } from 'node:test';
import { KILL_BEFORE_RENAME_CASES, runCrashCases } from '../helpers/update-crash.ts';

test('SIGKILL before each patch.meta rename: each run converges', (t) =>
  runCrashCases(t, KILL_BEFORE_RENAME_CASES));
