#!/usr/bin/env bash
# Starts and stops the two servers the DBaaS needs, from Debian's packages, on
# loopback only: ZooKeeper on 127.0.0.1:2181 and RabbitMQ on 127.0.0.1:5672.
#
#   scripts/servers.sh up       install if missing, start, wait until ready
#   scripts/servers.sh down     stop both
#   scripts/servers.sh status   say what answers (exit 1 unless both do)
#   scripts/servers.sh packages install the packages only (make nomad runs the servers as jobs)
#
# State (configs, data, logs, pid files) lives outside the repo, in
# $RIDESHARE_SERVERS_DIR (default /var/tmp/rideshare-servers), so every clone
# and worktree on the machine shares one pair of servers.
# Details and reasons: /work/shared/notes/servers.md (beside the repo).
set -euo pipefail

STATE=${RIDESHARE_SERVERS_DIR:-/var/tmp/rideshare-servers}
DEADLINE=${RIDESHARE_SERVERS_DEADLINE:-60}
ZK_DIR=$STATE/zookeeper
RMQ_DIR=$STATE/rabbitmq
ZK_PORT=2181
RMQ_PORT=5672
RMQ_NODE=rabbit@localhost
# servers.md's class path, with slf4j-simple first: the wildcard alone binds
# slf4j-nop and the log stays empty (slf4j-log4j12 clashes with log4j-over-slf4j).
ZK_CLASSPATH="/usr/share/java/slf4j-simple.jar:/etc/zookeeper/conf:/usr/share/java/zookeeper.jar:/usr/share/java/*"

log() { printf 'servers: %s\n' "$*"; }
die() { printf 'servers: ERROR: %s\n' "$*" >&2; exit 1; }

# as_root runs a command as root (keeping the environment): directly when we
# are root, else through sudo.
as_root() {
  if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo -n -E "$@"; fi
}

# port_open PORT: true when 127.0.0.1:PORT accepts a TCP connection.
port_open() {
  # shellcheck disable=SC2016 # $1 expands in the inner bash
  timeout 5 bash -c 'exec 3<>"/dev/tcp/127.0.0.1/$1"' _ "$1" 2>/dev/null
}

zk_ok() {
  local reply
  # shellcheck disable=SC2016 # $1 expands in the inner bash
  reply=$(timeout 5 bash -c 'exec 3<>"/dev/tcp/127.0.0.1/$1" && printf ruok >&3 && cat <&3' _ "$ZK_PORT" 2>/dev/null) || true
  [ "$reply" = imok ]
}

rmq_ok() { port_open "$RMQ_PORT"; }

# pid_of FILE PATTERN: prints the pid in FILE when that process is alive and
# its command line contains PATTERN (a stale file or a reused pid prints
# nothing); without a live pid file, looks the process up by PATTERN.
pid_of() {
  local pid=""
  [ -s "$1" ] && pid=$(cat "$1" 2>/dev/null)
  if [[ "$pid" =~ ^[0-9]+$ ]] && tr '\0' ' ' 2>/dev/null <"/proc/$pid/cmdline" | grep -qF -- "$2"; then
    echo "$pid"
  else
    pgrep -o -f -- "$2" || true
  fi
}

# fail_with_log MESSAGE LOGFILE...: print the tail of each log and exit.
fail_with_log() {
  local f
  printf 'servers: ERROR: %s\n' "$1" >&2
  shift
  for f in "$@"; do
    [ -f "$f" ] || continue
    printf -- '--- last lines of %s ---\n' "$f" >&2
    tail -n 30 "$f" >&2
  done
  exit 1
}

# wait_for NAME CHECK ALIVE LOGFILE...: polls CHECK until it passes, the
# deadline passes, or ALIVE (a command) says the server's process died.
wait_for() {
  local name=$1 check=$2 alive=$3 end
  shift 3
  end=$((SECONDS + DEADLINE))
  "$check" && return 0
  log "waiting up to ${DEADLINE}s for $name"
  while ! "$check"; do
    if ! "$alive"; then
      fail_with_log "$name exited while starting" "$@"
    fi
    [ "$SECONDS" -lt "$end" ] || fail_with_log "$name did not come up within ${DEADLINE}s" "$@"
    sleep 0.5
  done
}

ensure_packages() {
  local missing=() p
  for p in rabbitmq-server zookeeper; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  log "installing ${missing[*]} from apt (once, about 30 s)"
  as_root apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq rabbitmq-server zookeeper >/dev/null
}

zk_pid() { pid_of "$ZK_DIR/zookeeper.pid" "QuorumPeerMain $ZK_DIR/zoo.cfg"; }
zk_alive() { [ -n "$(zk_pid)" ]; }

zk_up() {
  local logfile=$ZK_DIR/zookeeper.log pid
  if zk_ok; then
    log "zookeeper already up on 127.0.0.1:$ZK_PORT"
    return 0
  fi
  pid=$(zk_pid)
  if [ -n "$pid" ]; then
    log "zookeeper (pid $pid) is already starting"
  else
    port_open "$ZK_PORT" && die "127.0.0.1:$ZK_PORT is taken by something that does not answer ruok"
    mkdir -p "$ZK_DIR/data"
    cat >"$ZK_DIR/zoo.cfg" <<EOF
# Written by scripts/servers.sh; rewritten on every start.
tickTime=500
minSessionTimeout=1000
maxSessionTimeout=20000
initLimit=10
syncLimit=5
dataDir=$ZK_DIR/data
clientPort=$ZK_PORT
clientPortAddress=127.0.0.1
admin.enableServer=false
4lw.commands.whitelist=ruok,stat,srvr,mntr
autopurge.snapRetainCount=3
autopurge.purgeInterval=1
EOF
    log "starting zookeeper (log $logfile)"
    # setsid: its own session, so a Ctrl-C in the caller's terminal leaves it be.
    setsid java -Xmx512m -cp "$ZK_CLASSPATH" \
      org.apache.zookeeper.server.quorum.QuorumPeerMain "$ZK_DIR/zoo.cfg" \
      >"$logfile" 2>&1 </dev/null 9>&- &
    echo $! >"$ZK_DIR/zookeeper.pid"
  fi
  wait_for zookeeper zk_ok zk_alive "$logfile"
  log "zookeeper up on 127.0.0.1:$ZK_PORT (ruok: imok)"
}

zk_down() {
  local pid end
  pid=$(zk_pid)
  if [ -n "$pid" ]; then
    log "stopping zookeeper (pid $pid)"
    kill "$pid" 2>/dev/null || true
    end=$((SECONDS + 20))
    while kill -0 "$pid" 2>/dev/null && [ "$SECONDS" -lt "$end" ]; do sleep 0.2; done
    if kill -0 "$pid" 2>/dev/null; then kill -9 "$pid" 2>/dev/null || true; fi
  elif zk_ok; then
    log "zookeeper on 127.0.0.1:$ZK_PORT was not started by this script: left running"
  else
    log "zookeeper not running"
  fi
  rm -f "$ZK_DIR/zookeeper.pid"
}

# The environment of every rabbitmq command here; the su in Debian's wrapper
# keeps it when it drops to the rabbitmq user.
export RABBITMQ_NODENAME=$RMQ_NODE
export RABBITMQ_NODE_IP_ADDRESS=127.0.0.1
export RABBITMQ_NODE_PORT=$RMQ_PORT
export ERL_EPMD_ADDRESS=127.0.0.1
export RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS="-kernel inet_dist_use_interface {127,0,0,1}"
export RABBITMQ_MNESIA_BASE=$RMQ_DIR/mnesia
export RABBITMQ_LOG_BASE=$RMQ_DIR/log
export RABBITMQ_ENABLED_PLUGINS_FILE=$RMQ_DIR/enabled_plugins
export RABBITMQ_PID_FILE=$RMQ_DIR/rabbit.pid

# The node's Erlang VM (beam.smp), found by its pid file or its command line.
rmq_pid() { pid_of "$RABBITMQ_PID_FILE" "-s rabbit boot"; }
rmq_alive() { [ -n "$(rmq_pid)" ]; }

rmq_up() {
  local pid
  if rmq_ok; then
    log "rabbitmq already up on 127.0.0.1:$RMQ_PORT"
    return 0
  fi
  pid=$(rmq_pid)
  if [ -n "$pid" ]; then
    log "rabbitmq (pid $pid) is already starting"
  else
    rm -f "$RABBITMQ_PID_FILE"
    as_root mkdir -p "$RABBITMQ_MNESIA_BASE" "$RABBITMQ_LOG_BASE"
    [ -f "$RABBITMQ_ENABLED_PLUGINS_FILE" ] || echo '[].' | as_root tee "$RABBITMQ_ENABLED_PLUGINS_FILE" >/dev/null
    # The server runs as rabbitmq: everything it writes must be rabbitmq's,
    # or it dies at once (cannot_log_to_file) while -detached still says 0.
    as_root chown -R rabbitmq:rabbitmq "$RMQ_DIR"
    log "starting rabbitmq (logs in $RABBITMQ_LOG_BASE)"
    # An epmd that already runs (an earlier start, another Erlang node) is
    # reused: the node registers with it; otherwise erl starts one.
    as_root rabbitmq-server -detached >"$STATE/rabbitmq-start.out" 2>&1 9>&- \
      || die "rabbitmq-server -detached failed: $(cat "$STATE/rabbitmq-start.out")"
    # -detached returns before the VM exists: let it appear before waiting
    # with a check that it is alive.
    sleep 2
  fi
  wait_for rabbitmq rmq_ok rmq_alive "$STATE/rabbitmq-start.out" "$RABBITMQ_LOG_BASE/$RMQ_NODE.log"
  log "rabbitmq up on 127.0.0.1:$RMQ_PORT (node $RMQ_NODE)"
}

rmq_down() {
  local pid
  pid=$(rmq_pid)
  if [ -n "$pid" ]; then
    log "stopping rabbitmq (node $RMQ_NODE, pid $pid)"
    # Given a pid file, stop returns only once that process has exited.
    echo "$pid" | as_root tee "$RABBITMQ_PID_FILE" >/dev/null
    as_root timeout 60 rabbitmqctl -n "$RMQ_NODE" -q stop "$RABBITMQ_PID_FILE" >/dev/null 2>&1 || {
      log "rabbitmqctl stop failed; killing pid $pid"
      as_root kill "$pid" 2>/dev/null || true
    }
  elif rmq_ok; then
    log "something that is not our rabbitmq answers on 127.0.0.1:$RMQ_PORT: left running"
  else
    log "rabbitmq not running"
  fi
  as_root rm -f "$RABBITMQ_PID_FILE"
}

status() {
  local rc=0
  if zk_ok; then log "zookeeper: up on 127.0.0.1:$ZK_PORT"; else log "zookeeper: down"; rc=1; fi
  if rmq_ok; then log "rabbitmq:  up on 127.0.0.1:$RMQ_PORT"; else log "rabbitmq:  down"; rc=1; fi
  return "$rc"
}

usage() { echo "usage: $0 up|down|status|packages" >&2; exit 2; }

# lock: one up/down at a time (two terminals, make -j), held until exit.
# The servers are started with fd 9 closed, or they would hold it for ever.
lock() {
  mkdir -p "$STATE"
  exec 9>>"$STATE/.lock"
  flock -w 180 9 || die "another servers.sh holds $STATE/.lock"
}

[ $# -eq 1 ] || usage
case "$1" in
  up)
    if zk_ok && rmq_ok; then
      log "already up: zookeeper 127.0.0.1:$ZK_PORT, rabbitmq 127.0.0.1:$RMQ_PORT"
      exit 0
    fi
    lock
    # World-traversable: the rabbitmq user works below it.
    chmod 755 "$STATE"
    ensure_packages
    zk_up
    rmq_up
    ;;
  packages) lock; ensure_packages ;; # install only (make nomad runs its own servers)
  down) lock; rmq_down; zk_down ;;
  status) status ;;
  *) usage ;;
esac
