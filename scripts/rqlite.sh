#!/usr/bin/env bash
# Ensures bin/rqlited (repo root) is rqlite v8.43.4 and prints its path: the
# other side of `make bench` (docs/benchmarks.md), one node on loopback.
#
#   1. an existing bin/rqlited reporting the pinned version is kept;
#   2. else a build cached on this machine by an earlier clone is copied;
#   3. else rqlite is built from its Go module via the wrapper module
#      tools/rqlite (cgo: rqlite's SQLite driver is C).
#
# Not taken from PATH: the comparison is against this exact version.
# Idempotent and fast once bin/rqlited exists. Progress goes to stderr;
# stdout carries only the path, so `RQLITED=$(scripts/rqlite.sh)` works.
set -euo pipefail

RQLITE_VERSION=v8.43.4 # keep in sync with tools/rqlite/go.mod (v9 is off limits: licence)

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
bin="$root/bin/rqlited"
mkdir -p "$root/bin"

# shellcheck source=scripts/pinned.sh
source "$root/scripts/pinned.sh"

log() { echo "rqlite.sh: $*" >&2; }

# `rqlited -version` prints (on stderr) "rqlited v8.43.4 linux amd64 go1.26.8 sqlite3.50.4 (...)".
version_of() { "$1" -version 2>&1 | awk '$1 == "rqlited" {print $2; exit}'; }

# 1. and 2. (scripts/pinned.sh).
if pinned_ready rqlited "$RQLITE_VERSION" "$bin" log; then
  echo "$bin"
  exit 0
fi

# 3. build from the Go module.
command -v gcc >/dev/null || command -v cc >/dev/null || {
  log "a C compiler is needed (rqlite's SQLite driver uses cgo): apt-get install gcc"
  exit 1
}
log "building rqlite $RQLITE_VERSION from its Go module (cgo, SQLite's C amalgamation);"
log "the first build takes ~3 min on 2 idle cores (5-6 min on a busy machine)"
start=$(date +%s)
tmp="$bin.tmp.$$"
trap 'rm -f "$tmp"' EXIT
(
  cd "$root/tools/rqlite"
  log "go build: downloads its modules (~200 MB cold), then compiles (SQLite's C code alone takes 1-2 min of one core)..."
  CGO_ENABLED=1 go build -trimpath -o "$tmp" \
    -ldflags "-s -w \
      -X github.com/rqlite/rqlite/v8/cmd.Version=$RQLITE_VERSION \
      -X github.com/rqlite/rqlite/v8/cmd.Buildtime=$(date -u +%Y-%m-%dT%H:%M:%SZ)" \
    github.com/rqlite/rqlite/v8/cmd/rqlited
)
mv -f "$tmp" "$bin"
trap - EXIT
v=$(version_of "$bin" || true)
[ "$v" = "$RQLITE_VERSION" ] || { log "built $bin but it reports version '${v:-unknown}'"; exit 1; }
pinned_store rqlited "$RQLITE_VERSION" "$bin"
log "built $bin in $(($(date +%s) - start))s"
echo "$bin"
