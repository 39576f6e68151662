#!/usr/bin/env bash
# Renders Traefik's configuration for local (non-Nomad) runs:
#
#   traefik/render.sh LB_PORT API_PORT USERS_URL RIDES_URL STATE_DIR
#
# writes STATE_DIR/traefik.yml (static) and STATE_DIR/dynamic/routes.yml
# (dynamic, from traefik/routes.tsv) and prints the former's path. The work
# is done by the Go package traefik (command traefik/cmd/traefik-render,
# built by `make build` into bin/), the one implementation that also gives
# the Nomad jobspecs their tags. A *_URL may list several servers separated
# by commas; routes added later take theirs from <NAME>_URL in the
# environment. Re-running it rewrites routes.yml atomically; a running
# Traefik picks the change up without a restart.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
bin=${RIDESHARE_BIN:-$here/../bin}/traefik-render
if [ -x "$bin" ]; then
  exec "$bin" "$@"
fi
# Not built yet: build it into a temporary directory (the caller's working
# directory stays, so a relative STATE_DIR means what it says).
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
go build -C "$here/.." -o "$tmp/traefik-render" ./traefik/cmd/traefik-render
"$tmp/traefik-render" "$@"
