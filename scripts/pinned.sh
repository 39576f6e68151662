# shellcheck shell=bash
# Library (source it) for the scripts that make sure bin/NAME is a pinned
# build of a third-party program (scripts/traefik.sh, scripts/rqlite.sh):
# a build already in bin/, else one cached on this machine by an earlier
# clone (like Go's own build cache: a fresh clone does not rebuild), else
# the caller builds it and stores it with pinned_store.
#
# The caller defines version_of BINARY (prints the version it reports).

pinned_cache_dir() { echo "${RIDESHARE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/rideshare}"; }

# pinned_ready NAME VERSION BIN LOG: succeeds when BIN reports VERSION,
# copying the machine's cached NAME-VERSION into BIN first if need be.
pinned_ready() {
  local name=$1 version=$2 bin=$3 log=$4 cached
  if [ -x "$bin" ] && [ "$(version_of "$bin" || true)" = "$version" ]; then
    return 0
  fi
  cached="$(pinned_cache_dir)/$name-$version"
  if [ -x "$cached" ] && [ "$(version_of "$cached" || true)" = "$version" ]; then
    rm -f "$bin" # may be a stale symlink
    cp "$cached" "$bin"
    "$log" "using the cached build $cached"
    return 0
  fi
  return 1
}

# pinned_store NAME VERSION BIN: caches a fresh build for the next clone
# (best effort: a read-only cache is not an error).
pinned_store() {
  local dir
  dir=$(pinned_cache_dir)
  mkdir -p "$dir" && cp "$3" "$dir/$1-$2.tmp.$$" && mv -f "$dir/$1-$2.tmp.$$" "$dir/$1-$2" || true
}
