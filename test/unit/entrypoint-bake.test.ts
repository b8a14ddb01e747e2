// The Windows switch-over launcher's version slot: `patch pack --switch-over` bakes the patch
// version into a copy of entrypoint.exe (packaging/win/launcher.c reads it at run time).
import assert from 'node:assert/strict';
import { test } from 'node:test';
import {
  bakeEntrypoint,
  ENTRYPOINT_VERSION_MARKER,
  ENTRYPOINT_VERSION_SLOT,
  hasVersionSlot,
} from '../../services/install/switch-over.ts';

const exe = (slot: Buffer = Buffer.alloc(ENTRYPOINT_VERSION_SLOT)) =>
  Buffer.concat([
    Buffer.from('MZ..code..'),
    Buffer.from(ENTRYPOINT_VERSION_MARKER),
    slot,
    Buffer.from('..more'),
  ]);

test('the version goes into the slot, NUL-padded; the rest of the file is unchanged', () => {
  const before = exe();
  const after = bakeEntrypoint(before, 'V2.0');
  assert.equal(after.length, before.length);
  const at = after.indexOf(ENTRYPOINT_VERSION_MARKER) + ENTRYPOINT_VERSION_MARKER.length;
  assert.equal(after.subarray(at, at + 5).toString('latin1'), 'V2.0\0');
  assert.ok(after.subarray(at + 4, at + ENTRYPOINT_VERSION_SLOT).every((b) => b === 0));
  assert.deepEqual(after.subarray(0, at), before.subarray(0, at));
  assert.deepEqual(
    after.subarray(at + ENTRYPOINT_VERSION_SLOT),
    before.subarray(at + ENTRYPOINT_VERSION_SLOT),
  );
  assert.equal(before.indexOf('V2.0'), -1, 'the input is not modified');
  // Baked again (a copy of a baked file): the old value is gone.
  const again = bakeEntrypoint(bakeEntrypoint(before, 'V10.25-long'), 'V3');
  assert.equal(again.subarray(at, at + 12).toString('latin1'), 'V3\0\0\0\0\0\0\0\0\0\0');
});

test('no slot, two slots, a version too long or not printable ASCII: refused', () => {
  assert.equal(hasVersionSlot(Buffer.from('MZ no slot')), false);
  assert.throws(() => bakeEntrypoint(Buffer.from('MZ no slot'), 'V2.0'), /no version slot/);
  assert.throws(() => bakeEntrypoint(Buffer.concat([exe(), exe()]), 'V2.0'), /more than one/);
  assert.throws(() => bakeEntrypoint(exe(), 'V'.repeat(ENTRYPOINT_VERSION_SLOT)), /does not fit/);
  assert.throws(() => bakeEntrypoint(exe(), 'V 2'), /does not fit/);
  assert.throws(() => bakeEntrypoint(exe(), 'Vü'), /does not fit/);
  assert.throws(() => bakeEntrypoint(exe(Buffer.alloc(3)).subarray(0, 40), 'V2.0'), /cut off/);
});
