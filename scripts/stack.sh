# shellcheck shell=bash
# Library (source it): runs a whole RideShare stack in the background.
#
#   source scripts/stack.sh
#   stack_start NAME STATE_DIR PORT_BASE SCALE_WINDOW   # start, wait until ready
#   stack_print_urls
#   stack_stop                                          # stop what it started
#   stack_reap STATE_DIR                                # stop what a killed run left
#
# PORT_BASE is the orchestrator's port; the others follow from it:
#   orchestrator BASE, users BASE+81, rides BASE+82,
#   Traefik entry point BASE+80, Traefik API BASE+88
# (8000 gives 8000/8081/8082/8080/8088; 18000 gives 18000/18081/18082/...).
# NAME keeps stacks apart on the shared servers: ZooKeeper root /rideshare-NAME,
# RabbitMQ queue prefix "NAME.", and the RabbitMQ vhost and user
# rideshare-NAME (scripts/servers.sh broker-user), whose URL with its
# generated password is STATE_DIR/amqp.url (mode 0600; never on a command
# line). STATE_DIR gets logs/, pids/, dbaas/ (the workers' data) and traefik/
# (rendered config and Traefik's own logs).
#
# Stacks run in dev mode (the orchestrator's --dev): without an admin token
# crash/*, db/clear and scale are open, as the shared acceptance suite
# expects. With RIDESHARE_ADMIN_TOKEN_FILE (or RIDESHARE_ADMIN_TOKEN) in the
# environment, the orchestrator requires that token and the services send it.
#
# RUNTIME (process or docker; stack_pick_runtime resolves it, default:
# docker when the daemon answers) says how the stack runs. process: every
# component is a process of bin/, the workers too. docker: the orchestrator,
# users and rides run as containers of the images `make images` built
# (IMAGE_TAG, default dev; host network, so every port stays on 127.0.0.1),
# and the orchestrator runs the workers as containers (docker runtime), with
# bin/plugins mounted as their plugin folder; Traefik, RabbitMQ and ZooKeeper
# run as in process mode. Every container is labelled rideshare.stack=NAME,
# and stack_stop removes whatever container of NAME is left.
#
# Each process (for a container: its `docker run`) runs in its own session
# (setsid), so its pid is its process group: a Ctrl-C in the terminal reaches only the caller, whose trap calls
# stack_stop, which sends SIGTERM to each process, then to its whole group
# (whatever it left behind), then SIGKILL after a grace period.
#
# Callers use `set -euo pipefail`; the functions here return
# non-zero on failure after printing why (and the failing process's log tail).

STACK_REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
STACK_BIN=${RIDESHARE_BIN:-$STACK_REPO/bin}
STACK_ZK_SERVERS=${ZK_SERVERS:-127.0.0.1:2181}
# Seconds to wait for each component (the orchestrator's readyz includes
# starting the first master and slave), and for each to stop.
STACK_DEADLINE=${STACK_DEADLINE:-90}
STACK_STOP_GRACE=${STACK_STOP_GRACE:-15}

# Components in start order; stack_stop goes the other way.
STACK_COMPONENTS=(orchestrator users rides traefik)
STACK_RUNTIME=${RUNTIME:-process}
STACK_IMAGE_TAG=${IMAGE_TAG:-dev}

# stack_docker_ok: the Docker daemon answers.
stack_docker_ok() { command -v docker >/dev/null && timeout 20 docker info >/dev/null 2>&1; }

# stack_pick_runtime: resolves RUNTIME (empty: docker when the daemon
# answers, else process) into STACK_RUNTIME.
stack_pick_runtime() {
  case "${RUNTIME:-}" in
    process | docker) STACK_RUNTIME=$RUNTIME ;;
    "") if stack_docker_ok; then STACK_RUNTIME=docker; else STACK_RUNTIME=process; fi ;;
    *) stack_err "RUNTIME=$RUNTIME: want process or docker"; return 1 ;;
  esac
  if [ "$STACK_RUNTIME" = docker ] && ! stack_docker_ok; then
    stack_err "RUNTIME=docker, but the Docker daemon does not answer (docker info)"
    return 1
  fi
  stack_log "runtime: $STACK_RUNTIME"
}

# stack_docker_run NAME IMAGE ARGS...: sets CMD to run component NAME as a
# container in the foreground (`docker run` forwards SIGTERM to it and
# removes it when it ends), on the host network, read-only, unprivileged.
stack_docker_run() {
  local name=$1 image=$2
  shift 2
  CMD=(docker run --rm --name "rideshare-$STACK_NAME-$name"
    --label "rideshare.stack=$STACK_NAME" --label "rideshare.role=$name"
    --network host --read-only --cap-drop ALL --security-opt no-new-privileges
    "${STACK_DOCKER_EXTRA[@]}" "rideshare/$image:$STACK_IMAGE_TAG" "$@")
  STACK_DOCKER_EXTRA=()
}
STACK_DOCKER_EXTRA=()

# stack_docker_socket: the daemon's Unix socket on this host.
stack_docker_socket() {
  case "${DOCKER_HOST:-}" in
    unix://*) echo "${DOCKER_HOST#unix://}" ;;
    *) echo /var/run/docker.sock ;;
  esac
}

# ---- The binaries' command lines: the one place to adjust their flags. ----
# Each sets the array CMD. Ports and names come from stack_start's variables.
# STACK_ORCH_ARGS (an array, set before stack_start) adds orchestrator flags,
# e.g. (--min-slaves 8 --max-slaves 8 --pprof 127.0.0.1:48090).

cmd_orchestrator() {
  if [ "$STACK_RUNTIME" = docker ]; then
    # The daemon's socket, and the workers' data folder at its host path
    # (the daemon resolves bind mounts on the host); as 65534 with the
    # socket's group.
    local sock
    sock=$(stack_docker_socket)
    STACK_DOCKER_EXTRA=(--user 65534:65534 --group-add "$(stat -c %g "$sock")"
      -v "$sock:/var/run/docker.sock" -v "$STACK_DIR/dbaas:$STACK_DIR/dbaas")
    # The broker URL holds the stack's password: it reaches the container
    # through the environment of its `docker run` (-e NAME copies the
    # value), never on a command line; the orchestrator hands it to the
    # workers' containers the same way.
    RIDESHARE_AMQP_URL=$(cat "$STACK_DIR/amqp.url")
    export RIDESHARE_AMQP_URL
    STACK_DOCKER_EXTRA+=(-e RIDESHARE_AMQP_URL)
    stack_docker_run orchestrator orchestrator \
      --listen "127.0.0.1:$STACK_ORCH_PORT" \
      --dev \
      --traefik-api "$STACK_API_URL" \
      --zk-servers "$STACK_ZK_SERVERS" \
      --zk-root "/rideshare-$STACK_NAME" \
      --queue-prefix "$STACK_NAME." \
      --runtime docker \
      --stack "$STACK_NAME" \
      --worker-image "rideshare/worker:$STACK_IMAGE_TAG" \
      --worker-plugin-dir "$STACK_BIN/plugins" \
      --data-dir "$STACK_DIR/dbaas" \
      --scale-window "$STACK_SCALE_WINDOW" \
      ${STACK_ORCH_ARGS[@]+"${STACK_ORCH_ARGS[@]}"}
    return
  fi
  CMD=("$STACK_BIN/orchestrator"
    --listen "127.0.0.1:$STACK_ORCH_PORT"
    --dev
    --amqp-url-file "$STACK_DIR/amqp.url"
    --traefik-api "$STACK_API_URL"
    --zk-servers "$STACK_ZK_SERVERS"
    --zk-root "/rideshare-$STACK_NAME"
    --queue-prefix "$STACK_NAME."
    --runtime process
    --worker-binary "$STACK_BIN/worker"
    --data-dir "$STACK_DIR/dbaas"
    --scale-window "$STACK_SCALE_WINDOW"
    ${STACK_ORCH_ARGS[@]+"${STACK_ORCH_ARGS[@]}"})
}

cmd_users() {
  local args=(--listen "127.0.0.1:$STACK_USERS_PORT"
    --dbaas-url "$STACK_ORCH_URL")
  if [ "$STACK_RUNTIME" = docker ]; then
    stack_docker_run users users "${args[@]}"
  else
    CMD=("$STACK_BIN/users" "${args[@]}")
  fi
}

cmd_rides() {
  local args=(--listen "127.0.0.1:$STACK_RIDES_PORT"
    --dbaas-url "$STACK_ORCH_URL"
    --users-url "$STACK_LB_URL"
    --public-url "$STACK_RIDES_URL")
  if [ "$STACK_RUNTIME" = docker ]; then
    stack_docker_run rides rides "${args[@]}"
  else
    CMD=("$STACK_BIN/rides" "${args[@]}")
  fi
}

cmd_traefik() { # STATE_DIR
  CMD=("$STACK_BIN/traefik" "--configFile=$1/traefik.yml")
}

# ---- helpers ----

# Never fail (a closed stdout must not abort a cleanup half-way).
stack_log() { printf 'stack: %s\n' "$*" 2>/dev/null || true; }
stack_err() { printf 'stack: ERROR: %s\n' "$*" >&2 2>/dev/null || true; }

# stack_tail FILE...: the last lines of each existing file, on stderr.
stack_tail() {
  local f
  for f in "$@"; do
    [ -s "$f" ] || continue
    {
      printf -- '--- last lines of %s ---\n' "$f"
      tail -n "${STACK_TAIL_LINES:-40}" "$f"
    } >&2 2>/dev/null || true
  done
}

# stack_logs NAME: the log files of a component (for the orchestrator, also
# those of the two workers that logged last).
stack_logs() {
  echo "$STACK_DIR/logs/$1.log"
  # shellcheck disable=SC2012 # worker log names are plain (w-ID.log)
  case "$1" in
    traefik) echo "$STACK_DIR/traefik/traefik.log" ;;
    orchestrator) ls -t "$STACK_DIR"/dbaas/*.log 2>/dev/null | head -n 2 || true ;;
  esac
}

# stack_tail_all: the tails of every component's logs.
stack_tail_all() {
  local c
  local -a logs
  for c in "${STACK_COMPONENTS[@]}"; do
    mapfile -t logs < <(stack_logs "$c")
    stack_tail "${logs[@]}"
  done
}

stack_port_open() { # PORT
  # shellcheck disable=SC2016
  timeout 5 bash -c 'exec 3<>"/dev/tcp/127.0.0.1/$1"' _ "$1" 2>/dev/null
}

# stack_http_status URL: prints the HTTP status of a GET (000 when there is no
# answer). Plain bash, so that no curl is needed. URL: http://HOST:PORT/PATH.
stack_http_status() {
  local rest=${1#http://} hostport path code
  hostport=${rest%%/*}
  path=${rest#"$hostport"}
  path=/${path#/}
  # shellcheck disable=SC2016
  code=$(timeout 10 bash -c '
    exec 3<>"/dev/tcp/${1%:*}/${1##*:}" || exit 1
    printf "GET %s HTTP/1.0\r\nHost: %s\r\nConnection: close\r\n\r\n" "$2" "$1" >&3
    read -r _ code _ <&3 && printf %s "$code"
    cat <&3 >/dev/null' _ "$hostport" "$path" 2>/dev/null) || true
  [[ "$code" =~ ^[0-9]{3}$ ]] || code=000
  echo "$code"
}

# Readiness predicates on an HTTP status.
stack_is_200() { [ "$1" = 200 ]; }
stack_is_routed() { case "$1" in 000 | 404 | 502 | 503 | 504) return 1 ;; esac; }

# stack_pid NAME: the pid of a running component of this STACK_DIR, from its
# pid file, checked against the process's command line (stale files and
# reused pids print nothing): it must hold the marker stack_spawn wrote (the
# binary's path, or the container's name for a `docker run`).
stack_pid() {
  local file=$STACK_DIR/pids/$1.pid pid mark=$STACK_BIN/$1
  [ -s "$file" ] || return 0
  pid=$(cat "$file" 2>/dev/null) || return 0
  [[ "$pid" =~ ^[0-9]+$ ]] || return 0
  [ -s "$STACK_DIR/pids/$1.mark" ] && mark=$(cat "$STACK_DIR/pids/$1.mark" 2>/dev/null)
  tr '\0' ' ' 2>/dev/null <"/proc/$pid/cmdline" | grep -qF -- "$mark" && echo "$pid"
  return 0
}

# stack_spawn NAME CMD...: starts CMD in the background, in its own session,
# logging to STATE_DIR/logs/NAME.log.
stack_spawn() {
  local name=$1 pid mark=$2
  shift
  command -v "$1" >/dev/null || { stack_err "$name: $1 is missing (make build / make traefik)"; return 1; }
  [ "$1" = docker ] && mark="--name rideshare-$STACK_NAME-$name"
  printf '%s' "$mark" >"$STACK_DIR/pids/$name.mark"
  stack_log "starting $name: $*"
  # Not a process-group leader (no job control here), so setsid does not fork:
  # $! is the component's pid and its process group.
  # The lock's descriptor stays here: an orphan must not keep the lock.
  setsid "$@" >"$STACK_DIR/logs/$name.log" 2>&1 </dev/null {STACK_LOCK_FD}>&- &
  pid=$!
  echo "$pid" >"$STACK_DIR/pids/$name.pid"
  # Until the child has exec'd, its command line is still this shell's, and
  # stack_pid would take it for a component that exited: wait for the exec
  # (or the child's end) before anyone asks.
  local end=$((SECONDS + 10))
  while [ "$SECONDS" -lt "$end" ] && stack_alive "$pid" && [ -z "$(stack_pid "$name")" ]; do
    sleep 0.05
  done
}

# stack_wait NAME URL PREDICATE WHAT: polls URL until PREDICATE accepts its
# status; fails at the deadline or as soon as the component exits.
stack_wait() {
  local name=$1 url=$2 pred=$3 what=$4 end code=000
  end=$((SECONDS + STACK_DEADLINE))
  local -a logs
  mapfile -t logs < <(stack_logs "$name")
  stack_log "waiting up to ${STACK_DEADLINE}s for $name: $what ($url)"
  while :; do
    code=$(stack_http_status "$url")
    "$pred" "$code" && break
    if [ -z "$(stack_pid "$name")" ]; then
      stack_err "$name exited while starting (last answer from $url: $code)"
      stack_tail "${logs[@]}"
      return 1
    fi
    if [ "$SECONDS" -ge "$end" ]; then
      stack_err "$name not ready within ${STACK_DEADLINE}s: $what (last answer from $url: $code)"
      stack_tail "${logs[@]}"
      return 1
    fi
    sleep 0.5
  done
  stack_log "$name ready: $url -> $code"
}

# stack_alive PID / stack_group_alive PGID: a live (not zombie) process, or
# one in the process group. An orphan's zombie can linger when nobody reaps it.
stack_alive() {
  local st
  st=$(ps -o stat= -p "$1" 2>/dev/null) || return 1
  [[ "$st" != Z* ]]
}
stack_group_alive() {
  ps -e -o pgid=,stat= 2>/dev/null | awk -v g="$1" '$1 == g && $2 !~ /^Z/ {found = 1} END {exit !found}'
}

# stack_kill NAME: SIGTERM to the component (the orchestrator then stops its
# workers), then to its process group, SIGKILL to the group after the grace.
stack_kill() {
  local name=$1 pid end pgid
  pid=$(stack_pid "$name")
  if [ -n "$pid" ]; then
    stack_log "stopping $name (pid $pid)"
    pgid=$(ps -o pgid= -p "$pid" 2>/dev/null | tr -d ' ') || true
    kill -TERM "$pid" 2>/dev/null || true
    end=$((SECONDS + STACK_STOP_GRACE))
    while stack_alive "$pid" && [ "$SECONDS" -lt "$end" ]; do sleep 0.2; done
    if [ "$pgid" = "$pid" ]; then
      kill -TERM -- "-$pgid" 2>/dev/null || true
      while stack_group_alive "$pgid" && [ "$SECONDS" -lt "$end" ]; do sleep 0.2; done
      if stack_group_alive "$pgid"; then
        stack_log "$name: still running after ${STACK_STOP_GRACE}s, killing its process group"
        kill -KILL -- "-$pgid" 2>/dev/null || true
      fi
    elif stack_alive "$pid"; then
      stack_log "$name: still running after ${STACK_STOP_GRACE}s, killing it"
      kill -KILL "$pid" 2>/dev/null || true
    fi
    # Reap it when it is our child, so that no zombie outlives the stack.
    wait "$pid" 2>/dev/null || true
  fi
  rm -f "$STACK_DIR/pids/$name.pid" "$STACK_DIR/pids/$name.mark"
}

# stack_docker_reap: removes every container of this stack's NAME that is
# left (a `docker run` killed before its container stopped; workers of an
# orchestrator that died). STACK_REAPED lists what it had to remove.
stack_docker_reap() {
  local ids
  STACK_REAPED=""
  command -v docker >/dev/null && [ -n "${STACK_NAME:-}" ] || return 0
  ids=$(timeout 30 docker ps -aq --filter "label=rideshare.stack=$STACK_NAME" 2>/dev/null) || return 0
  [ -n "$ids" ] || return 0
  STACK_REAPED=$(timeout 30 docker ps -a --filter "label=rideshare.stack=$STACK_NAME" --format '{{.Names}} ({{.State}})' 2>/dev/null | tr '\n' ' ') || true
  stack_log "removing the containers left by stack $STACK_NAME: $STACK_REAPED"
  # shellcheck disable=SC2086 # one id per word
  timeout 60 docker rm -f $ids >/dev/null 2>&1 || stack_err "could not remove containers $ids"
}

# ---- the stack ----

# stack_config NAME STATE_DIR PORT_BASE SCALE_WINDOW: sets the STACK_* variables.
stack_config() {
  STACK_NAME=$1
  mkdir -p "$2"
  STACK_DIR=$(cd "$2" && pwd)
  STACK_ORCH_PORT=$3
  STACK_LB_PORT=$(($3 + 80))
  STACK_USERS_PORT=$(($3 + 81))
  STACK_RIDES_PORT=$(($3 + 82))
  STACK_API_PORT=$(($3 + 88))
  STACK_SCALE_WINDOW=$4
  STACK_ORCH_URL=http://127.0.0.1:$STACK_ORCH_PORT
  STACK_LB_URL=http://127.0.0.1:$STACK_LB_PORT
  STACK_USERS_URL=http://127.0.0.1:$STACK_USERS_PORT
  STACK_RIDES_URL=http://127.0.0.1:$STACK_RIDES_PORT
  STACK_API_URL=http://127.0.0.1:$STACK_API_PORT
}

# start_traefik LB_PORT API_PORT USERS_URL RIDES_URL STATE_DIR: renders the
# config (traefik/render.sh) and starts bin/traefik on it.
start_traefik() {
  local render=$STACK_REPO/traefik/render.sh
  [ -x "$render" ] || { stack_err "$render is missing"; return 1; }
  "$render" "$@" >/dev/null || { stack_err "traefik/render.sh $* failed"; return 1; }
  cmd_traefik "$5"
  stack_spawn traefik "${CMD[@]}"
}

# stack_start NAME STATE_DIR PORT_BASE SCALE_WINDOW: stops what an earlier run
# in STATE_DIR left, checks the servers and ports, starts every component and
# waits until each is ready.
stack_start() {
  local port
  stack_config "$@"
  mkdir -p "$STACK_DIR/logs" "$STACK_DIR/pids" "$STACK_DIR/dbaas" "$STACK_DIR/traefik"
  if [ "$STACK_RUNTIME" = docker ]; then
    # The orchestrator's container (user 65534) makes the workers' folders.
    chown 65534:65534 "$STACK_DIR/dbaas" || { stack_err "cannot give $STACK_DIR/dbaas to uid 65534 (run as root)"; return 1; }
    local c
    for c in orchestrator worker users rides; do
      docker image inspect "rideshare/$c:$STACK_IMAGE_TAG" >/dev/null 2>&1 ||
        { stack_err "image rideshare/$c:$STACK_IMAGE_TAG is missing (make images)"; return 1; }
    done
  fi
  # One stack per STATE_DIR: the lock is held until this shell exits.
  exec {STACK_LOCK_FD}>>"$STACK_DIR/.lock"
  if ! flock -n "$STACK_LOCK_FD"; then
    stack_err "a stack is already running from $STACK_DIR: stop it first"
    return 1
  fi
  STACK_LOCKED=1
  # Holding the lock, whatever the pid files name was left by a run that
  # died without stopping its stack.
  stack_stop
  echo "$STACK_NAME" >"$STACK_DIR/pids/stack.name"

  # Retried: on a loaded machine a connect can miss its timeout.
  local end=$((SECONDS + 20))
  until stack_port_open 5672 && stack_port_open 2181; do
    if [ "$SECONDS" -ge "$end" ]; then
      stack_err "RabbitMQ (5672) or ZooKeeper (2181) does not answer: run scripts/servers.sh up"
      return 1
    fi
    sleep 1
  done
  # The stack's own RabbitMQ vhost and user (guest is never used).
  "$STACK_REPO/scripts/servers.sh" broker-user "$STACK_NAME" "$STACK_DIR/amqp.url" || return 1
  for port in "$STACK_ORCH_PORT" "$STACK_USERS_PORT" "$STACK_RIDES_PORT" "$STACK_LB_PORT" "$STACK_API_PORT"; do
    if stack_port_open "$port"; then
      stack_err "port 127.0.0.1:$port is already in use (another stack? see: ss -ltnp 'sport = :$port')"
      return 1
    fi
  done

  cmd_orchestrator
  stack_spawn orchestrator "${CMD[@]}" || return 1
  unset RIDESHARE_AMQP_URL # the orchestrator's container has it; nobody else needs it
  stack_wait orchestrator "$STACK_ORCH_URL/healthz" stack_is_200 "GET /healthz is 200" || return 1
  stack_wait orchestrator "$STACK_ORCH_URL/readyz" stack_is_200 "GET /readyz is 200 (a master is up)" || return 1

  cmd_users
  stack_spawn users "${CMD[@]}" || return 1
  cmd_rides
  stack_spawn rides "${CMD[@]}" || return 1
  stack_wait users "$STACK_USERS_URL/healthz" stack_is_200 "GET /healthz is 200" || return 1
  stack_wait rides "$STACK_RIDES_URL/healthz" stack_is_200 "GET /healthz is 200" || return 1

  start_traefik "$STACK_LB_PORT" "$STACK_API_PORT" "$STACK_USERS_URL" "$STACK_RIDES_URL" "$STACK_DIR/traefik" || return 1
  stack_wait traefik "$STACK_API_URL/api/rawdata" stack_is_200 "GET /api/rawdata is 200" || return 1
  stack_wait traefik "$STACK_LB_URL/api/v1/users" stack_is_routed "GET /api/v1/users through Traefik reaches users" || return 1
}

# stack_stop: stops every component of the stack this shell started (none
# when stack_start did not get STATE_DIR's lock), the last started first.
stack_stop() {
  local i stopped=""
  [ "${STACK_LOCKED:-}" = 1 ] && [ -d "$STACK_DIR/pids" ] || return 0
  for ((i = ${#STACK_COMPONENTS[@]} - 1; i >= 0; i--)); do
    [ -n "$(stack_pid "${STACK_COMPONENTS[i]}")" ] && stopped=1
    stack_kill "${STACK_COMPONENTS[i]}"
  done
  stack_docker_reap
  if [ -n "$stopped" ]; then stack_log "stopped the stack in $STACK_DIR"; fi
}

# stack_reap DIR: stops what a run that died (kill -9) left in DIR; a live
# run's stack (holding DIR's lock) is left alone.
stack_reap() {
  local STACK_DIR=$1 STACK_LOCKED=1 fd STACK_NAME=""
  [ -d "$STACK_DIR/pids" ] || return 0
  STACK_NAME=$(cat "$STACK_DIR/pids/stack.name" 2>/dev/null) || true
  exec {fd}>>"$STACK_DIR/.lock"
  if flock -n "$fd"; then stack_stop; fi
  exec {fd}>&-
}

# stack_watch: blocks until a component exits (then reports it, with its log
# tail, and returns 1) or a trapped signal interrupts the wait.
stack_watch() {
  local c pid
  local -a logs
  while :; do
    for c in "${STACK_COMPONENTS[@]}"; do
      pid=$(stack_pid "$c")
      if [ -z "$pid" ]; then
        stack_err "$c exited"
        mapfile -t logs < <(stack_logs "$c")
        stack_tail "${logs[@]}"
        return 1
      fi
    done
    # wait returns early when a signal with a trap arrives.
    sleep 2 {STACK_LOCK_FD}>&- &
    wait $! || true
  done
}

stack_print_urls() {
  local admin="DEV MODE: admin endpoints (crash/*, db/clear, scale) are open, no token"
  if [ -n "${RIDESHARE_ADMIN_TOKEN_FILE:-}${RIDESHARE_ADMIN_TOKEN:-}" ]; then
    admin="admin endpoints need the token of \$RIDESHARE_ADMIN_TOKEN_FILE / \$RIDESHARE_ADMIN_TOKEN"
  fi
  cat <<EOF

RideShare stack "$STACK_NAME" is up (state and logs in $STACK_DIR):
  entry point (Traefik)  $STACK_LB_URL      e.g. $STACK_LB_URL/api/v1/users
  Traefik API            $STACK_API_URL/api/rawdata
  orchestrator (DBaaS)   $STACK_ORCH_URL      e.g. $STACK_ORCH_URL/api/v1/worker/list
  cluster page           $STACK_ORCH_URL/ui/  (also: bin/rideshare --url $STACK_ORCH_URL status)
  metrics                $STACK_ORCH_URL/metrics, $STACK_USERS_URL/metrics, $STACK_RIDES_URL/metrics
  RabbitMQ               vhost rideshare-$STACK_NAME, its URL in $STACK_DIR/amqp.url (mode 0600)
  $admin
  users (direct)         $STACK_USERS_URL
  rides (direct)         $STACK_RIDES_URL
  logs                   $STACK_DIR/logs/*.log, $STACK_DIR/traefik/{traefik,access}.log
EOF
}
