#!/usr/bin/env bash
# `make nomad`: the whole stack as Nomad jobs (jobs/*.nomad.hcl) on a Nomad
# agent, in the foreground until Ctrl-C, which stops the jobs and the agent
# this script started.
#
#   NOMAD_ADDR        the agent's API (default http://127.0.0.1:4646); when
#                     nothing answers there, `nomad agent -dev` is started
#                     (needs a nomad binary on PATH or in NOMAD_BIN)
#   NOMAD_DRIVER      raw_exec (default: the binaries of `make build`, no
#                     Docker needed) or docker (the rideshare/* images, and
#                     the official rabbitmq, zookeeper and traefik images)
#   NOMAD_HTTP_PORT   Traefik's entry point (default 8080)
#   NOMAD_API_PORT    Traefik's API (default 8088)
#   NOMAD_STATE       the dev agent's data and logs (default .nomad/)
#   NOMAD_KEEP=1      leave the jobs running on Ctrl-C (and the agent, if
#                     this script started it: its pid is in NOMAD_STATE)
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=scripts/stack.sh
source "$repo/scripts/stack.sh"

export NOMAD_ADDR=${NOMAD_ADDR:-http://127.0.0.1:4646}
driver=${NOMAD_DRIVER:-raw_exec}
http_port=${NOMAD_HTTP_PORT:-8080}
api_port=${NOMAD_API_PORT:-8088}
state=${NOMAD_STATE:-$repo/.nomad}
nomad=${NOMAD_BIN:-$(command -v nomad || true)}
# Start order (rides looks up Traefik, so Traefik comes first); stopped the
# other way.
jobs=(rabbitmq zookeeper worker orchestrator traefik users rides)

# Never fail: a closed stdout must not abort a cleanup half-way.
log() { printf 'nomad: %s\n' "$*" 2>/dev/null || true; }
die() {
  printf 'nomad: ERROR: %s\n' "$*" >&2 2>/dev/null || true
  exit 1
}

agent_answers() { [ "$(stack_http_status "$NOMAD_ADDR/v1/status/leader")" = 200 ]; }

if [ -z "$nomad" ]; then
  if agent_answers; then
    die "an agent answers at $NOMAD_ADDR, but the nomad CLI is needed to submit the jobs: install Nomad (v1.6+) and run again"
  fi
  echo "make nomad needs Nomad: install it (v1.6 or later, https://developer.hashicorp.com/nomad/install) or set NOMAD_ADDR to an agent; \`make run\` runs the same stack without Nomad and needs nothing." >&2
  exit 2
fi
case "$driver" in raw_exec | docker) ;; *) die "NOMAD_DRIVER must be raw_exec or docker, not $driver" ;; esac

mkdir -p "$state"
agent_pid=""
finish() {
  local rc=$? i
  trap '' INT TERM PIPE
  if [ "${NOMAD_KEEP:-}" != 1 ] && [ -n "${submitted:-}" ]; then
    for ((i = ${#jobs[@]} - 1; i >= 0; i--)); do
      "$nomad" job stop -purge -detach "rideshare-${jobs[i]}" >/dev/null 2>&1 && log "stopped rideshare-${jobs[i]}" || true
    done
  fi
  if [ -n "$agent_pid" ] && [ "${NOMAD_KEEP:-}" != 1 ]; then
    # Give the jobs' tasks their kill timeout, then stop the agent.
    local end=$((SECONDS + 40))
    while [ "$SECONDS" -lt "$end" ] && "$nomad" job status -short 2>/dev/null | grep -q ' running '; do sleep 1; done
    log "stopping the dev agent (pid $agent_pid)"
    kill -INT "$agent_pid" 2>/dev/null || true
    end=$((SECONDS + 30))
    while kill -0 "$agent_pid" 2>/dev/null && [ "$SECONDS" -lt "$end" ]; do sleep 0.5; done
    kill -KILL "$agent_pid" 2>/dev/null || true
    rm -f "$state/agent.pid"
  fi
  exit "$rc"
}
trap finish EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# ---- the agent ----
if agent_answers; then
  log "using the agent at $NOMAD_ADDR"
else
  case "$NOMAD_ADDR" in
    http://127.0.0.1:4646 | http://localhost:4646) ;;
    *) die "no Nomad agent answers at $NOMAD_ADDR" ;;
  esac
  # The docker driver must not delete our local images (nothing can be
  # pulled back); raw_exec runs the binaries of make build.
  cat >"$state/agent.hcl" <<HCL
data_dir  = "$state/data"
log_level = "INFO"
plugin "raw_exec" {
  config {
    enabled = true
  }
}
plugin "docker" {
  config {
    volumes {
      enabled = true
    }
    gc {
      image = false
    }
  }
}
HCL
  log "starting nomad agent -dev on 127.0.0.1 (log: $state/agent.log)"
  setsid "$nomad" agent -dev -bind 127.0.0.1 -config "$state/agent.hcl" >"$state/agent.log" 2>&1 </dev/null &
  agent_pid=$!
  echo "$agent_pid" >"$state/agent.pid"
  end=$((SECONDS + 60))
  until agent_answers && "$nomad" node status 2>/dev/null | grep -q ' ready'; do
    kill -0 "$agent_pid" 2>/dev/null || { tail -n 20 "$state/agent.log" >&2; die "the agent exited"; }
    [ "$SECONDS" -lt "$end" ] || die "the agent is not ready after 60 s (see $state/agent.log)"
    sleep 1
  done
fi

# ---- what the jobs need ----
if [ "$driver" = raw_exec ]; then
  make -C "$repo" --no-print-directory build traefik
  "$repo/scripts/servers.sh" packages
else
  make -C "$repo" --no-print-directory images ||
    die "the docker driver needs the rideshare/* images (make images, from the Docker deployment)"
fi

# ---- the jobs, in order; each run waits for its deployment ----
vars_for() { # the -var flags a jobspec declares
  local f=$repo/jobs/$1.nomad.hcl
  VARS=(-var "driver=$driver")
  grep -q '^variable "bin_dir"' "$f" && VARS+=(-var "bin_dir=$repo/bin")
  if [ "$1" = traefik ]; then VARS+=(-var "http_port=$http_port" -var "api_port=$api_port"); fi
  return 0
}
submitted=1
for j in "${jobs[@]}"; do
  vars_for "$j"
  log "nomad job run -preserve-counts ${VARS[*]} jobs/$j.nomad.hcl"
  # Not detached: returns once the deployment is healthy (or failed).
  # --foreground: a Ctrl-C reaches it.
  if ! timeout --foreground 300 "$nomad" job run -preserve-counts "${VARS[@]}" "$repo/jobs/$j.nomad.hcl" >"$state/run-$j.log" 2>&1; then
    cat "$state/run-$j.log" >&2
    die "rideshare-$j did not deploy (nomad job status rideshare-$j; nomad alloc logs -stderr <alloc>)"
  fi
done

# ---- traffic through Traefik ----
entry=http://127.0.0.1:$http_port
end=$((SECONDS + 120))
until stack_is_routed "$(stack_http_status "$entry/api/v1/users")"; do
  [ "$SECONDS" -lt "$end" ] || die "the API does not answer through Traefik at $entry after 120 s"
  sleep 1
done
orch=$("$nomad" service info -t '{{range .}}http://{{.Address}}:{{.Port}}{{end}}' rideshare-orchestrator 2>/dev/null || true)
cat <<EOT

RideShare runs on Nomad ($NOMAD_ADDR, driver $driver):
  entry point (Traefik)  $entry/api/v1/users, $entry/api/v1/rides
  Traefik API            http://127.0.0.1:$api_port/api/http/routers
  orchestrator (DBaaS)   $orch/api/v1/workers
  Nomad                  $NOMAD_ADDR/ui/jobs   (nomad job status rideshare-worker)

Ctrl-C stops the jobs${agent_pid:+ and the agent}.
EOT
while :; do
  sleep 5 &
  wait $! || true
  if [ -n "$agent_pid" ] && ! kill -0 "$agent_pid" 2>/dev/null; then die "the agent exited"; fi
done
