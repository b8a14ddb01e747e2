// Creates a win32 fixture box for a Windows agent under Wine; prints its paths as JSON.
// Usage: tsx test/windows/make-box.ts <root> <standin.exe> <node_sqlite3.node> <cloud url>
import { createFixtureBox, winePath } from '../../fixtures/box/generate.ts';

const [root, standinExe, sqlite3Addon, hostAddr] = process.argv.slice(2);
if (root === undefined || standinExe === undefined || sqlite3Addon === undefined) {
  process.stderr.write(
    'usage: make-box.ts <root> <standin.exe> <node_sqlite3.node> [<cloud url>]\n',
  );
  process.exit(2);
}
const box = await createFixtureBox({
  root,
  hostAddr: hostAddr ?? 'http://127.0.0.1:9',
  platform: 'win32',
  standinExe,
  sqlite3Addon,
  boxPath: winePath,
  heartbeatSec: 2,
});
process.stdout.write(
  JSON.stringify({
    settings: winePath(box.settingsPath),
    boxRoot: box.boxRoot,
    fsDir: box.fsDir,
    javaDir: box.javaDir,
    appPort: box.appPort,
  }) + '\n',
);
