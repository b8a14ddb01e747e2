// The progress view of a waiting update command: bars on a terminal, stamped lines elsewhere.
import assert from 'node:assert/strict';
import { PassThrough } from 'node:stream';
import { stripVTControlCharacters } from 'node:util';
import { test } from 'node:test';
import { progressView } from '../../cli/progress.ts';
import type { UpdateStatus } from '../../services/update/update-status.ts';

function status(state: string, bytes?: number): UpdateStatus {
  return {
    state,
    tags: [],
    phase: 'DOWNLOADING' as UpdateStatus['phase'],
    phaseNumber: 1,
    mark: 2,
    versions: [
      {
        versionNum: 'V1.8',
        versionCode: 'c18',
        status: bytes === undefined ? 'PENDING' : 'DOWNLOADING',
        state: bytes === undefined ? 'pending' : 'downloading',
        remark: '',
        lastError: null,
        ...(bytes === undefined
          ? {}
          : { progress: { done: bytes / 1e6, total: 100, bytes, totalBytes: 100e6 } }),
      },
    ],
    pausedTasks: null,
    backup: null,
    lastBackup: null,
    nextCheckAt: null,
    lastError: null,
    lastResult: null,
    policy: null,
    seq: 1,
    parked: null,
  };
}

test('not a terminal: one stamped line per step and per 10 % of the download', () => {
  const out: string[] = [];
  const view = progressView(
    { write: (t) => out.push(t) > 0, isTTY: false },
    { now: () => new Date('2026-12-06T04:00:00.000Z') },
  );
  view.update(status('checking'));
  for (const mb of [0, 5, 12, 13, 19, 55, 100]) view.update(status('downloading', mb * 1e6));
  view.stop();
  assert.deepEqual(out.join('').trimEnd().split('\n'), [
    '2026-12-06T04:00:00.000Z checking (phase 1 DOWNLOADING)',
    '2026-12-06T04:00:00.000Z   V1.8: PENDING pending',
    '2026-12-06T04:00:00.000Z downloading (phase 1 DOWNLOADING)',
    '2026-12-06T04:00:00.000Z   V1.8: DOWNLOADING downloading',
    '2026-12-06T04:00:00.000Z   V1.8: downloaded 0% (0.0 of 100.0 MB)',
    '2026-12-06T04:00:00.000Z   V1.8: downloaded 10% (12.0 of 100.0 MB)',
    '2026-12-06T04:00:00.000Z   V1.8: downloaded 50% (55.0 of 100.0 MB)',
    '2026-12-06T04:00:00.000Z   V1.8: downloaded 100% (100.0 of 100.0 MB)',
  ]);
});

test('on a terminal: a bar per downloading version with MB, steps as plain lines', async () => {
  const stream = Object.assign(new PassThrough(), { isTTY: true, columns: 100 });
  let text = '';
  stream.on('data', (b: Buffer) => (text += b.toString('utf8')));
  const view = progressView(stream);
  view.update(status('downloading', 25e6));
  // The bar library loads on first use.
  await new Promise((r) => setTimeout(r, 200));
  view.update(status('downloading', 50e6));
  await new Promise((r) => setTimeout(r, 200));
  // Then the zip is extracted: a bar of its own.
  const extracting = status('downloading', 100e6);
  const first = extracting.versions[0];
  if (first !== undefined) first.extraction = { bytes: 30e6, totalBytes: 120e6 };
  view.update(extracting);
  await new Promise((r) => setTimeout(r, 200));
  // The backup before the install: a snapshot bar, in files.
  view.update({
    ...status('installing.backingUp'),
    snapshot: { snapshot: 'pre-V1.8', done: 300, total: 1200, verb: 'hashed' },
  });
  await new Promise((r) => setTimeout(r, 200));
  view.stop();
  const plain = stripVTControlCharacters(text);
  assert.match(plain, /^downloading \(phase 1 DOWNLOADING\)$/m);
  assert.match(plain, /V1\.8 download +\[[█░]+\] 50% \| 50\.0\/100\.0 MB/);
  assert.match(plain, /V1\.8 extract +\[[█░]+\] 25% \| 30\.0\/120\.0 MB/);
  assert.match(plain, /snapshot pre-V1\.8 +\[[█░]+\] 25% \| 300\/1200 files/);
  assert.doesNotMatch(plain, /^\d{4}-\d\d-\d\dT/m, 'no timestamps on a terminal');
});
