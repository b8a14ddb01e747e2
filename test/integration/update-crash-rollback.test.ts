// Crash safety of the update lifecycle: the cases and what each must converge to are in
// test/helpers/update-crash.ts.
import { test } from 'node:test';
import { KILL_AFTER_AND_ROLLBACK_CASES, runCrashCases } from '../helpers/update-crash.ts';

test('SIGKILL after effects, during rollbacks, with calls active, patch.meta lost or signed patches: each run converges', (t) =>
  runCrashCases(t, KILL_AFTER_AND_ROLLBACK_CASES));
