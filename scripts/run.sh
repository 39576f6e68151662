#!/usr/bin/env bash
# `make run`: the whole stack in the foreground until Ctrl-C (or SIGTERM),
# which stops everything it started.
#
#   Traefik entry point 127.0.0.1:8080, Traefik API 8088, orchestrator 8000,
#   users 8081, rides 8082; NAME "run"; state and logs under .run/.
#
# RUN_PORT_BASE (default 8000) moves all the ports (see scripts/stack.sh),
# RUN_NAME (default run) names the stack (ZooKeeper root, queue prefix),
# RUN_SCALE_WINDOW (default 2m) sets the autoscaler's window,
# RUN_DIR (default .run) holds the state and logs,
# RUN_ORCH_ARGS adds orchestrator flags (words split on spaces, e.g.
# "--min-slaves 8 --max-slaves 8"), and RUN_SKIP_MAKE=1 skips `make servers
# build traefik` (the caller did it: make bench runs two stacks at once).
# RUNTIME=process|docker picks how it runs (default: docker when the Docker
# daemon answers, else process; see scripts/stack.sh): with docker, the
# workers, the orchestrator, users and rides are containers (`make images`).
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=scripts/stack.sh
source "$repo/scripts/stack.sh"

stack_pick_runtime
if [ "${RUN_SKIP_MAKE:-}" != 1 ]; then
  make -C "$repo" --no-print-directory servers build traefik
  [ "$STACK_RUNTIME" = docker ] && make -C "$repo" --no-print-directory images
fi
read -r -a STACK_ORCH_ARGS <<<"${RUN_ORCH_ARGS:-}"

finish() {
  local rc=$?
  trap '' INT TERM PIPE
  stack_stop
  exit "$rc"
}
trap finish EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

stack_start "${RUN_NAME:-run}" "${RUN_DIR:-$repo/.run}" "${RUN_PORT_BASE:-8000}" "${RUN_SCALE_WINDOW:-2m}"
stack_print_urls
echo
stack_log "running; Ctrl-C stops the stack"
stack_watch
