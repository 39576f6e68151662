#!/usr/bin/env bash
# `make acceptance`: runs the shared black-box acceptance suite against a
# throwaway stack of its own (NAME "acc", ports 18000/18080/18081/18082/18088,
# state in a mktemp dir, autoscaler window 10 s, dev mode: the suite calls
# crash/* and db/clear without a token), always tearing it down.
# Exits with the suite's status.
#
#   ACCEPTANCE_PY    the suite (default: ../shared/acceptance/acceptance.py beside the repo)
#   ACCEPTANCE_ARGS  extra arguments for it, e.g. "--section users,rides"
#   ACCEPTANCE_TIMEOUT  seconds the suite may take (default 480: keeps `make
#                    test` well under 20 min even when the DBaaS hangs)
#   ACCEPTANCE_NAME, ACCEPTANCE_PORT_BASE  the stack's NAME and port base
#                    (default acc and 18000), so that two checkouts on one
#                    machine can run the suite at once
#   RUNTIME          process (default) or docker: the stack's runtime (see
#                    scripts/stack.sh); with docker, the run also checks
#                    that no container of the stack is left at its end
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=scripts/stack.sh
source "$repo/scripts/stack.sh"

suite=${ACCEPTANCE_PY:-$repo/../shared/acceptance/acceptance.py}
[ -f "$suite" ] || { stack_err "acceptance suite not found at $suite (set ACCEPTANCE_PY)"; exit 2; }
command -v python3 >/dev/null || { stack_err "python3 is needed for $suite"; exit 2; }
name=${ACCEPTANCE_NAME:-acc}
port_base=${ACCEPTANCE_PORT_BASE:-18000}
scale_window_s=10

RUNTIME=${RUNTIME:-process}
stack_pick_runtime
make -C "$repo" --no-print-directory servers build traefik
[ "$STACK_RUNTIME" = docker ] && make -C "$repo" --no-print-directory images

# A run killed too hard to clean up leaves its stack behind: stop it first.
last=${TMPDIR:-/tmp}/rideshare-acceptance-$name.last
[ -s "$last" ] && stack_reap "$(cat "$last")"

state=$(mktemp -d "${TMPDIR:-/tmp}/rideshare-acceptance.XXXXXX")
echo "$state" >"$last"
ok=0
# shellcheck disable=SC2317 # called by the EXIT trap
finish() {
  local rc=$?
  trap '' INT TERM PIPE
  stack_stop
  # Stopping the stack must leave no container: the orchestrator stops
  # and removes its workers, `docker run --rm` the others.
  if [ "$STACK_RUNTIME" = docker ] && [ "$ok" -eq 1 ] && [ -n "${STACK_REAPED:-}" ]; then
    stack_err "containers of stack $name were left behind (removed now): $STACK_REAPED"
    ok=0
    rc=1
  fi
  if [ "$ok" -ne 1 ]; then
    stack_err "acceptance failed (status $rc); the stack's logs:"
    stack_tail_all
  fi
  if [ "$ok" -eq 1 ]; then
    # The stack's state is thrown away: so are its broker vhost and user.
    "$repo/scripts/servers.sh" broker-user-rm "$name" >/dev/null 2>&1 || true
    rm -rf "$state"
  else
    stack_log "state and logs kept in $state"
  fi
  exit "$rc"
}
trap finish EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

stack_start "$name" "$state" "$port_base" "${scale_window_s}s"
stack_print_urls
echo

set +e
# shellcheck disable=SC2086 # ACCEPTANCE_ARGS is split on purpose
RIDESHARE_URL=$STACK_LB_URL USERS_URL=$STACK_USERS_URL RIDES_URL=$STACK_RIDES_URL \
  DBAAS_URL=$STACK_ORCH_URL SCALE_WINDOW_S=$scale_window_s \
  timeout --foreground "${ACCEPTANCE_TIMEOUT:-480}" python3 "$suite" ${ACCEPTANCE_ARGS:-}
rc=$?
set -e
[ "$rc" -ne 124 ] || stack_err "the suite did not finish within ${ACCEPTANCE_TIMEOUT:-480}s"
[ "$rc" -eq 0 ] && ok=1
exit "$rc"
