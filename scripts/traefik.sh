#!/usr/bin/env bash
# Ensures bin/traefik (repo root) is a Traefik v3 binary and prints its path.
#
#   1. a `traefik` on PATH reporting v3 (e.g. the official release binary) is symlinked;
#   2. else an existing bin/traefik reporting the pinned version is kept;
#   3. else Traefik is built from its Go module via the wrapper module tools/traefik.
#
# Idempotent and fast once bin/traefik exists. Progress goes to stderr; stdout
# carries only the path, so `TRAEFIK=$(scripts/traefik.sh)` works.
# TRAEFIK_FORCE_BUILD=1 skips step 1 (always use the pinned build).
set -euo pipefail

TRAEFIK_VERSION=v3.6.12   # keep in sync with tools/traefik/go.mod
TRAEFIK_CODENAME=ramequin # upstream's codename for v3.6.x (release.yaml)

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
bin="$root/bin/traefik"
mkdir -p "$root/bin"

# shellcheck source=scripts/pinned.sh
source "$root/scripts/pinned.sh"

log() { echo "traefik.sh: $*" >&2; }

# `traefik version` prints "Version:      v3.6.12" among other lines.
version_of() { "$1" version 2>/dev/null | awk '/^Version:/ {print $2; exit}'; }

# 1. traefik on PATH (not our own bin/traefik) reporting v3.
if [ -z "${TRAEFIK_FORCE_BUILD:-}" ] && onpath=$(command -v traefik 2>/dev/null); then
  onpath=$(readlink -f "$onpath")
  if [ "$onpath" != "$(readlink -f "$bin" 2>/dev/null || true)" ]; then
    v=$(version_of "$onpath" || true)
    case "$v" in
      v3.*|3.*)
        if [ "$(readlink "$bin" 2>/dev/null || true)" != "$onpath" ]; then
          ln -sfn "$onpath" "$bin"
          log "using $onpath ($v) from PATH"
        fi
        echo "$bin"
        exit 0
        ;;
      *) log "ignoring $onpath on PATH (version '${v:-unknown}', need v3)" ;;
    esac
  fi
fi

# 2. cached build (or an earlier PATH symlink) with the pinned version;
# 2b. a build cached on this machine by an earlier clone (scripts/pinned.sh).
if pinned_ready traefik "$TRAEFIK_VERSION" "$bin" log; then
  echo "$bin"
  exit 0
fi

# 3. build from the Go module. It takes minutes: say what happens, how long
# it usually takes, and how far it is (the packages `go build -v` names as it
# compiles them, against the number it has to compile), every 20 s.
log "building Traefik $TRAEFIK_VERSION from its Go module (once; cached in $(pinned_cache_dir) afterwards)."
log "usually 7-11 min on 2 cores and ~3 GB of RAM, plus the module download the very first time; progress every 20 s"
start=$(date +%s)
tmp="$bin.tmp.$$"
progress="$bin.progress.$$"
trap 'rm -f "$tmp" "$progress" "$progress.total"; [ -n "${ticker:-}" ] && kill "$ticker" 2>/dev/null || true' EXIT
: >"$progress"
(
  while sleep 20; do
    # go build -v names each package it compiles on a line of its own.
    n=$(grep -cv '^go: ' "$progress" 2>/dev/null || true)
    total=$(cat "$progress.total" 2>/dev/null || true)
    elapsed=$(($(date +%s) - start))
    if [ -n "$total" ] && [ "$total" -gt 0 ]; then
      log "still building Traefik: ${n:-0} packages compiled of at most $total (packages in Go's build cache are not recompiled; linking comes last), $((elapsed / 60))m$((elapsed % 60))s elapsed (usually 7-11 min in all)"
    else
      log "still building Traefik: downloading modules or compiling (${n:-0} packages so far), $((elapsed / 60))m$((elapsed % 60))s elapsed (usually 7-11 min in all)"
    fi
  done
) &
ticker=$!
( cd "$root/tools/traefik" && go list -deps github.com/traefik/traefik/v3/cmd/traefik 2>/dev/null | wc -l >"$progress.total.tmp" && mv "$progress.total.tmp" "$progress.total" ) || true
(
  cd "$root/tools/traefik"
  CGO_ENABLED=0 go build -v -trimpath -o "$tmp" \
    -ldflags "-s -w \
      -X github.com/traefik/traefik/v3/pkg/version.Version=$TRAEFIK_VERSION \
      -X github.com/traefik/traefik/v3/pkg/version.Codename=$TRAEFIK_CODENAME \
      -X github.com/traefik/traefik/v3/pkg/version.BuildDate=$(date -u +%Y-%m-%dT%H:%M:%SZ)" \
    github.com/traefik/traefik/v3/cmd/traefik
) 2>"$progress" || {
  kill "$ticker" 2>/dev/null || true
  log "the Traefik build failed; its last output:"
  grep -v '^[a-z0-9.-]*/[^ ]*$\|^[a-z0-9_]*$' "$progress" | tail -n 30 >&2 || tail -n 30 "$progress" >&2
  exit 1
}
kill "$ticker" 2>/dev/null || true
wait "$ticker" 2>/dev/null || true
ticker=
rm -f "$progress"
rm -f "$bin"          # may be a stale symlink to a PATH binary
mv -f "$tmp" "$bin"
trap - EXIT
pinned_store traefik "$TRAEFIK_VERSION" "$bin"
log "built $bin in $(( $(date +%s) - start ))s"
trap - EXIT
echo "$bin"
