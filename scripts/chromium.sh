#!/usr/bin/env bash
# Makes sure a headless Chromium is installed (Debian's `chromium` package,
# which the cluster page's browser test drives over the DevTools protocol)
# and prints its path. Installing it the first time takes about a minute
# (apt-get, ~100 MB); afterwards this is instant.
set -euo pipefail

log() { echo "chromium.sh: $*" >&2; }

for c in chromium chromium-browser google-chrome; do
  if p=$(command -v "$c" 2>/dev/null); then
    echo "$p"
    exit 0
  fi
done
if [ "$(id -u)" = 0 ]; then SUDO=; else SUDO="sudo -n"; fi
log "installing Debian's chromium package for the cluster page's browser test (once; about a minute, ~100 MB)"
start=$(date +%s)
$SUDO apt-get update -qq >&2
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends chromium >&2
log "installed in $(($(date +%s) - start))s"
command -v chromium
