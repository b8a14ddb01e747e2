// A persisted install past its backup step without that backup is not resumed as if it were
// fine: it is reported as needing attention (the switch-over's backup-less finish excepted).
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { installProblems } from '../../services/update/install-consistency.ts';

const v18 = [{ versionCode: 'c18', versionNum: 'V1.8' }];

test('an install after its backup step without a backup needs attention', () => {
  for (const step of ['applying', 'finalizing', 'startingServices', 'committing']) {
    const p = installProblems(
      { installing: step },
      { job: 'install', backup: null, versions: v18, startup: { imported: null } },
    );
    assert.equal(p.length, 1, step);
    assert.match(
      p[0] ?? '',
      new RegExp(`installing\\.${step} without the pre-update backup.*needs attention`),
    );
  }
});

test('an install with no version needs attention', () => {
  const p = installProblems(
    { installing: 'listingTasks' },
    { job: 'install', backup: null, versions: [], startup: { imported: null } },
  );
  assert.match(p.join(), /no version to install.*needs attention/);
});

test('consistent states pass: before the backup, with a backup, a revert, the switch-over finish', () => {
  const ok: Array<[unknown, Parameters<typeof installProblems>[1]]> = [
    [{ installing: 'pausingTasks' }, { job: 'install', backup: null, versions: v18 }],
    [{ installing: 'applying' }, { job: 'install', backup: 'pre-V1.8.1', versions: v18 }],
    [{ installing: 'stoppingServices' }, { job: 'revert', backup: 'pre-V1.8.1', versions: [] }],
    [
      { installing: 'finalizing' },
      {
        job: 'install',
        backup: null,
        versions: v18,
        startup: { imported: 'SELF_UPDATE_COMPLETE' },
      },
    ],
    [{ rollingBack: 'releasingServices' }, { job: 'install', backup: null, versions: v18 }],
    ['idle', { job: null, backup: null, versions: [] }],
  ];
  for (const [value, context] of ok)
    assert.deepEqual(installProblems(value, context), [], JSON.stringify(value));
});
