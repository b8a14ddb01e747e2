#!/usr/bin/env bash
# Installs what bench/snapshots.ts compares against: ostree (Debian package), rsync and GNU time.
# Idempotent: installs only what is missing. Debian/Ubuntu, as root (or with sudo).
set -euo pipefail

need=()
command -v ostree >/dev/null 2>&1 || need+=(ostree)
command -v rsync >/dev/null 2>&1 || need+=(rsync)
[ -x /usr/bin/time ] || need+=(time)

if [ "${#need[@]}" -gt 0 ]; then
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -q
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q "${need[@]}"
fi

# The driver runs TypeScript through tsx (a devDependency).
cd "$(dirname "$0")/.."
[ -x node_modules/.bin/tsx ] || npm ci

if command -v dpkg-query >/dev/null 2>&1; then
  dpkg-query -W -f '${Package} ${Version}\n' ostree rsync time
fi
echo "node $(node --version)"
