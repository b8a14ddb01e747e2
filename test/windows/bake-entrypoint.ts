// Bakes a patch version into a copy of entrypoint.exe, as `boxkeeper patch pack --switch-over`
// does (services/install/switch-over.ts); for launcher-check.mjs.
// Usage: tsx test/windows/bake-entrypoint.ts <entrypoint.exe> <version> <out.exe>
import { readFileSync, writeFileSync } from 'node:fs';
import { bakeEntrypoint } from '../../services/install/switch-over.ts';

const [from, version, to] = process.argv.slice(2);
if (from === undefined || version === undefined || to === undefined) {
  process.stderr.write('usage: bake-entrypoint.ts <entrypoint.exe> <version> <out.exe>\n');
  process.exit(2);
}
writeFileSync(to, bakeEntrypoint(readFileSync(from), version));
