// Crash safety of the update lifecycle: the cases and what each must converge to are in
// test/helpers/update-crash.ts.
import { test } from 'node:test';
import { KILL_AT_EFFECT_CASES, runCrashCases } from '../helpers/update-crash.ts';

test('SIGKILL as each effect starts: each run converges', (t) =>
  runCrashCases(t, KILL_AT_EFFECT_CASES));
