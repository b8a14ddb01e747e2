import assert from 'node:assert/strict';
import { test } from 'node:test';
import { parseLegacyPatchMeta } from '../../services/update/legacy-meta.ts';

// The example of §4 of the reference, byte for byte as the Python tool writes it.
const PYTHON_META =
  '{"state": 3, "list": [{"version_code": "9e9763d2baf4477180991667d19fe35d", "version_num": "V1.8", "file_MD5": "cd9f1d57fd7b792587d29e7826f4df0e", "remark": "\\u81ea\\u66f4\\u65b0\\u6d4b\\u8bd5", "status": 2, "argument_config_map": {}}], "retries": 5, "mark": 1, "self_update_version": null}';

test('a Python-era patch.meta is read with its phase and per-version statuses', () => {
  const r = parseLegacyPatchMeta(PYTHON_META);
  assert.equal(r.kind, 'python');
  assert.deepEqual(r.meta, {
    phase: 'PENDING',
    list: [
      {
        versionCode: '9e9763d2baf4477180991667d19fe35d',
        versionNum: 'V1.8',
        fileMd5: 'cd9f1d57fd7b792587d29e7826f4df0e',
        remark: '自更新测试',
        status: 'DOWNLOADED',
        argumentConfigMap: {},
      },
    ],
    retries: 5,
    mark: 1,
    selfUpdateVersion: null,
  });
});

test('the fork’s jsonpickle format is recognised and refused with the reason', () => {
  const fork = JSON.stringify({
    state: { 'py/object': 'misc.enumerators.PatchCyclePhase', value: 4 },
    list: [{ 'py/object': 'patching.patch_obj.PatchObject', version_num: 'V1.5' }],
    retries: 5,
    mark: 2,
  });
  const r = parseLegacyPatchMeta(fork);
  assert.equal(r.kind, 'fork');
  assert.match(r.reason, /jsonpickle object graph/);
});

test('corrupt or incomplete files list what is wrong', () => {
  const truncated = parseLegacyPatchMeta(PYTHON_META.slice(0, 60));
  assert.equal(truncated.kind, 'invalid');
  assert.match(truncated.problems[0] ?? '', /not JSON/);
  const bad = parseLegacyPatchMeta(
    JSON.stringify({
      state: 12,
      list: [{ version_num: 'V1', status: 9 }],
      retries: 5,
      mark: 1,
      self_update_version: null,
    }),
  );
  assert.equal(bad.kind, 'invalid');
  const problems = bad.problems.join('\n');
  assert.match(problems, /state: a PatchCyclePhase number 0–9/);
  assert.match(problems, /list\.0\.status: a PatchStatus number 0–4/);
  assert.match(problems, /list\.0\.version_code/);
});

test('boxkeeper’s own envelope is not mistaken for a legacy file', () => {
  assert.deepEqual(parseLegacyPatchMeta(JSON.stringify({ format: 1, seq: 3, snapshot: {} })), {
    kind: 'not-legacy',
  });
});
