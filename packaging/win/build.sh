#!/usr/bin/env bash
# Cross-builds, on Linux, the native Windows parts of a boxkeeper package into OUTDIR:
#   launcher.exe       bin\boxkeeper.exe: runs ..\runtime\node.exe ..\lib\boxkeeper.mjs ARGS
#   standin.exe        the fixture box's java.exe / FreeSwitchConsole.exe / fs_cli.exe shim
#   entrypoint.exe     bin\entrypoint.exe: the switch-over launcher (patch pack bakes its version)
#   node_sqlite3.node  the sqlite3 addon for win32-x64 (N-API, so any Node >= 10.20 loads it)
# Results are cached under ${BOXKEEPER_CACHE:-$HOME/.cache/boxkeeper}/win-build, keyed by a hash
# of every input (sources, versions, compiler), so a second run only copies files.
#
# Needs: x86_64-w64-mingw32-gcc/g++ -posix (Debian g++-mingw-w64-x86-64-posix), dlltool
# (binutils-mingw-w64-x86-64, pulled in by it), npm (for node-api-headers on a cold build), and
# node_modules/sqlite3 + node_modules/node-addon-api (npm ci).
set -euo pipefail

if [ $# -ne 1 ]; then
  echo "usage: $0 OUTDIR" >&2
  exit 2
fi
OUT=$1
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
CACHE=${BOXKEEPER_CACHE:-$HOME/.cache/boxkeeper}/win-build

# node-api-headers provides node_api.h and the export list of node.exe (def/node_api.def), so
# the import library needs no node.exe. Pinned: it is part of the cache key.
NODE_API_HEADERS_VERSION=1.9.0
# The N-API level sqlite3's own Windows prebuilds use: Node >= 10.20 / 12.17 all load it.
NAPI_VERSION=6

CC=x86_64-w64-mingw32-gcc-posix
CXX=x86_64-w64-mingw32-g++-posix
DLLTOOL=x86_64-w64-mingw32-dlltool

die() {
  echo "build.sh: $*" >&2
  exit 1
}

for tool in "$CC" "$CXX" "$DLLTOOL"; do
  command -v "$tool" >/dev/null ||
    die "$tool not found (apt-get install g++-mingw-w64-x86-64-posix binutils-mingw-w64-x86-64)"
done

SQLITE3_DIR=$ROOT/node_modules/sqlite3
ADDON_API_DIR=$SQLITE3_DIR/node_modules/node-addon-api
[ -f "$ADDON_API_DIR/napi.h" ] || ADDON_API_DIR=$ROOT/node_modules/node-addon-api
[ -f "$SQLITE3_DIR/binding.gyp" ] || die "$SQLITE3_DIR/binding.gyp not found (run npm ci first)"
[ -f "$ADDON_API_DIR/napi.h" ] || die "$ADDON_API_DIR/napi.h not found (run npm ci first)"
# sqlite3 also calls libuv (uv_async_*), whose headers come with every Node install (also
# Debian's nodejs); libuv keeps its ABI within 1.x.
UV_INCLUDE=${UV_INCLUDE:-}
if [ -z "$UV_INCLUDE" ]; then
  for d in "$(dirname "$(dirname "$(command -v node)")")/include/node" /usr/include/node; do
    if [ -f "$d/uv/win.h" ]; then
      UV_INCLUDE=$d
      break
    fi
  done
fi
[ -f "$UV_INCLUDE/uv/win.h" ] ||
  die "libuv headers (uv.h, uv/win.h) not found: set UV_INCLUDE to a Node include dir"
SQLITE_TARBALL=$(ls "$SQLITE3_DIR"/deps/sqlite-autoconf-*.tar.gz 2>/dev/null | head -n 1)
[ -n "$SQLITE_TARBALL" ] || die "no deps/sqlite-autoconf-*.tar.gz in $SQLITE3_DIR"

# Hash of files and strings: the cache key of one product.
key_of() {
  {
    for f in "$@"; do
      if [ -f "$f" ]; then sha256sum "$f"; else echo "$f"; fi
    done
  } | sha256sum | cut -c1-24
}

TOOLCHAIN="$("$CC" --version | head -n 1) / $("$CXX" --version | head -n 1)"
LAUNCHER_KEY=$(key_of "$HERE/build.sh" "$HERE/launcher.c" "$TOOLCHAIN")
SQLITE_KEY=$(key_of "$HERE/build.sh" "$TOOLCHAIN" "$SQLITE_TARBALL" "$SQLITE3_DIR/package.json" \
  "$SQLITE3_DIR"/src/*.h "$SQLITE3_DIR"/src/*.cc "$ADDON_API_DIR/package.json" \
  "$UV_INCLUDE/uv.h" "$UV_INCLUDE/uv/win.h" "$UV_INCLUDE/uv/version.h" \
  "node-api-headers@$NODE_API_HEADERS_VERSION" "napi $NAPI_VERSION")

mkdir -p "$CACHE" "$OUT"

# Builds into a temp dir inside the cache, then renames it into place: a killed build never
# leaves a half-filled cache entry that a later run would trust.
cached() { # name key builder-function
  local name=$1 key=$2 builder=$3
  local dir=$CACHE/$name-$key
  if [ -d "$dir" ]; then
    echo "build.sh: $name: cached ($dir)" >&2
  else
    local tmp
    tmp=$(mktemp -d "$CACHE/.tmp-$name-XXXXXX")
    chmod 755 "$tmp"
    # shellcheck disable=SC2064
    trap "rm -rf '$tmp'" EXIT
    echo "build.sh: $name: building" >&2
    "$builder" "$tmp"
    rm -rf "$tmp/work"
    mv -T "$tmp" "$dir" 2>/dev/null || rm -rf "$tmp" # a parallel run won the race
    trap - EXIT
  fi
  cp -f "$dir"/* "$OUT"/
}

build_launchers() {
  local d=$1
  "$CC" -O2 -static -municode -Wall -Wextra -Werror -o "$d/launcher.exe" "$HERE/launcher.c"
  "$CC" -O2 -static -municode -Wall -Wextra -Werror -DBOXKEEPER_STANDIN \
    -o "$d/standin.exe" "$HERE/launcher.c"
  "$CC" -O2 -static -municode -mwindows -Wall -Wextra -Werror -DBOXKEEPER_ENTRYPOINT \
    -o "$d/entrypoint.exe" "$HERE/launcher.c" -lshell32
}

build_sqlite() {
  local d=$1 w=$1/work
  mkdir -p "$w"
  (cd "$w" && npm pack --silent "node-api-headers@$NODE_API_HEADERS_VERSION" >/dev/null) ||
    die "npm pack node-api-headers@$NODE_API_HEADERS_VERSION failed (is the npm registry reachable?)"
  tar -xzf "$w"/node-api-headers-*.tgz -C "$w"
  local napi=$w/package
  tar -xzf "$SQLITE_TARBALL" -C "$w"
  local amalgamation
  amalgamation=$(dirname "$(ls "$w"/sqlite-autoconf-*/sqlite3.c)")

  # node.exe's exports (N-API, plus libuv's functions as declared in uv.h) as an import
  # library: the addon binds to NODE.EXE at load time, so no node.exe is needed here.
  {
    cat "$napi/def/node_api.def"
    grep -ohE 'UV_EXTERN [^;]*\buv_[a-z0-9_]+\(' "$UV_INCLUDE/uv.h" | sed -E 's/.*\b(uv_[a-z0-9_]+)\($/\1/' | sort -u
  } >"$w/node.def"
  "$DLLTOOL" -d "$w/node.def" -l "$w/libnode.a"

  # Defines as in sqlite3's deps/sqlite3.gyp and binding.gyp.
  local sqlite_defs=(-DSQLITE_THREADSAFE=1 -DHAVE_USLEEP=1 -DSQLITE_ENABLE_FTS3 -DSQLITE_ENABLE_FTS4
    -DSQLITE_ENABLE_FTS5 -DSQLITE_ENABLE_RTREE -DSQLITE_ENABLE_DBSTAT_VTAB=1
    -DSQLITE_ENABLE_MATH_FUNCTIONS -DNDEBUG -DWIN32)
  # The amalgamation is the long part: compile it beside the C++ sources (2 cores).
  "$CC" -O2 -std=c99 -D_REENTRANT=1 "${sqlite_defs[@]}" -c "$amalgamation/sqlite3.c" \
    -o "$w/sqlite3.o" &
  local sqlite_pid=$!
  local objs=("$w/sqlite3.o")
  for src in "$SQLITE3_DIR"/src/*.cc; do
    local o
    o=$w/$(basename "$src" .cc).o
    "$CXX" -O2 -std=gnu++17 -fno-rtti -DNAPI_VERSION=$NAPI_VERSION -DNAPI_DISABLE_CPP_EXCEPTIONS=1 \
      -DNODE_GYP_MODULE_NAME=node_sqlite3 -DBUILDING_NODE_EXTENSION "${sqlite_defs[@]}" \
      -I"$napi/include" -I"$ADDON_API_DIR" -I"$UV_INCLUDE" -I"$amalgamation" -c "$src" -o "$o"
    objs+=("$o")
  done
  wait "$sqlite_pid" || die "compiling $amalgamation/sqlite3.c failed"
  "$CXX" -shared -static -s -o "$d/node_sqlite3.node" "${objs[@]}" "$w/libnode.a"
}

cached launchers "$LAUNCHER_KEY" build_launchers
cached sqlite3 "$SQLITE_KEY" build_sqlite
echo "build.sh: launcher.exe standin.exe entrypoint.exe node_sqlite3.node in $OUT" >&2
