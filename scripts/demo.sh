#!/usr/bin/env bash
# Runs the demo: three redis-server shards on 127.0.0.1:7001-7003 (data under
# .demo/, nothing saved to disk) and shardis in the foreground with
# config/demo.toml. Ctrl-C stops shardis, then the shards.
#
# Usage: scripts/demo.sh          start (stops a previous demo first)
#        scripts/demo.sh stop     stop a demo left running
#
# Environment: SHARDIS_BIN (default target/release/shardis, or
# $CARGO_TARGET_DIR/release/shardis), DEMO_CONFIG (default config/demo.toml).
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

demo_dir="$root/.demo"
ports=(7001 7002 7003)
config="${DEMO_CONFIG:-config/demo.toml}"
bin="${SHARDIS_BIN:-${CARGO_TARGET_DIR:-target}/release/shardis}"
ready_deadline_s=10
stop_deadline_s=10

log() { echo "demo: $*"; }
die() { echo "demo: error: $*" >&2; exit 1; }

# True if something accepts TCP connections on 127.0.0.1:$1.
port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# True if redis-cli gets PONG from 127.0.0.1:$1.
answers_ping() { [ "$(redis-cli -h 127.0.0.1 -p "$1" ping 2>/dev/null)" = PONG ]; }

# Prints the pid in pidfile $1 if that process is alive and its command line
# contains $2 (so a recycled pid is never signalled).
live_pid() {
  local pidfile=$1 name=$2 pid
  [ -f "$pidfile" ] || return 1
  pid="$(cat "$pidfile" 2>/dev/null)" || return 1
  [[ "$pid" =~ ^[0-9]+$ ]] || return 1
  [ -r "/proc/$pid/cmdline" ] || return 1
  tr '\0' ' ' <"/proc/$pid/cmdline" | grep -q -- "$name" || return 1
  echo "$pid"
}

# Sends SIGTERM to $1, waits up to the deadline, then SIGKILL.
stop_pid() {
  local pid=$1 what=$2 i
  kill -TERM "$pid" 2>/dev/null || return 0
  for ((i = 0; i < stop_deadline_s * 10; i++)); do
    kill -0 "$pid" 2>/dev/null || return 0
    sleep 0.1
  done
  log "$what (pid $pid) did not stop within ${stop_deadline_s}s; killing it"
  kill -KILL "$pid" 2>/dev/null || true
}

# Stops whatever the pidfiles under .demo/ name: shardis first, then shards.
stop_demo() {
  local pid i found=0
  if pid="$(live_pid "$demo_dir/shardis.pid" shardis)"; then
    log "stopping shardis (pid $pid)"
    stop_pid "$pid" shardis
    found=1
  fi
  rm -f "$demo_dir/shardis.pid"
  for i in 1 2 3; do
    if pid="$(live_pid "$demo_dir/s$i/redis.pid" redis-server)"; then
      log "stopping shard s$i (pid $pid)"
      stop_pid "$pid" "shard s$i"
      found=1
    fi
    rm -f "$demo_dir/s$i/redis.pid"
  done
  return $((1 - found))
}

if [ "${1:-}" = stop ]; then
  stop_demo || log "no demo running"
  exit 0
elif [ -n "${1:-}" ]; then
  die "unknown argument '$1' (usage: scripts/demo.sh [stop])"
fi

# --- preflight: fail before starting anything ------------------------------
for prog in redis-server redis-cli; do
  command -v "$prog" >/dev/null 2>&1 ||
    die "$prog not found; run 'make deps' (Debian packages: redis-server redis-tools)"
done
[ -x "$bin" ] ||
  die "shardis binary not found at $bin; build it with 'make build' (cargo build --release)"
[ -f "$config" ] || die "config file $config not found"

if stop_demo; then log "stopped the previous demo"; fi

# The proxy's own addresses, read from the config so the check follows it.
proxy_ports=()
while read -r port; do proxy_ports+=("$port"); done < <(
  sed -nE 's/^[[:space:]]*listen[[:space:]]*=[[:space:]]*"[^"]*:([0-9]+)".*/\1/p' "$config")

for port in "${ports[@]}" "${proxy_ports[@]}"; do
  if port_open "$port"; then
    die "127.0.0.1:$port is in use by a process this demo did not start; stop it (e.g. 'ss -ltnp | grep :$port') and retry"
  fi
done

# --- start ------------------------------------------------------------------
shard_pids=()
shardis_pid=""
cleaning=0
cleanup() {
  [ "$cleaning" -eq 1 ] && return
  cleaning=1
  trap '' INT TERM HUP
  echo
  if [ -n "$shardis_pid" ] && kill -0 "$shardis_pid" 2>/dev/null; then
    log "stopping shardis (pid $shardis_pid)"
    stop_pid "$shardis_pid" shardis
  fi
  wait "$shardis_pid" 2>/dev/null || true
  # Only remove the pidfile if it is still ours.
  if [ -n "$shardis_pid" ] && [ "$(cat "$demo_dir/shardis.pid" 2>/dev/null)" = "$shardis_pid" ]; then
    rm -f "$demo_dir/shardis.pid"
  fi
  local pid
  for pid in "${shard_pids[@]+"${shard_pids[@]}"}"; do
    if kill -0 "$pid" 2>/dev/null; then stop_pid "$pid" "shard (pid $pid)"; fi
    wait "$pid" 2>/dev/null || true
  done
  log "stopped"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
trap 'exit 129' HUP

mkdir -p "$demo_dir"
for i in 1 2 3; do
  port=${ports[$((i - 1))]}
  dir="$demo_dir/s$i"
  mkdir -p "$dir"
  # setsid: Ctrl-C reaches only this script, which stops things in order.
  setsid redis-server --bind 127.0.0.1 --port "$port" --dir "$dir" \
    --save "" --appendonly no --daemonize no \
    --pidfile "$dir/redis.pid" --logfile "$dir/redis.log" </dev/null &
  shard_pids+=($!)
done

# Polls PING on port $1 until it answers, giving up at the deadline or if the
# process $2 exits.
wait_ready() {
  local port=$1 pid=$2 what=$3 logfile=$4 i
  for ((i = 0; i < ready_deadline_s * 20; i++)); do
    answers_ping "$port" && return 0
    if ! kill -0 "$pid" 2>/dev/null; then
      if [ -f "$logfile" ]; then
        echo "demo: $what exited before answering PING; last lines of $logfile:" >&2
        tail -n 20 "$logfile" >&2 || true
      else
        echo "demo: $what exited before answering PING; see its output above" >&2
      fi
      return 1
    fi
    sleep 0.05
  done
  echo "demo: $what did not answer PING on 127.0.0.1:$port within ${ready_deadline_s}s; see ${logfile:-its output above}" >&2
  return 1
}

for i in 1 2 3; do
  port=${ports[$((i - 1))]}
  wait_ready "$port" "${shard_pids[$((i - 1))]}" "shard s$i" "$demo_dir/s$i/redis.log" || exit 1
  log "shard s$i ready on 127.0.0.1:$port (pid ${shard_pids[$((i - 1))]}, data in .demo/s$i)"
done

log "starting $bin --config $config"
setsid "$bin" --config "$config" </dev/null &
shardis_pid=$!
echo "$shardis_pid" >"$demo_dir/shardis.pid"

proxy_port="${proxy_ports[0]:-6380}"
if ! wait_ready "$proxy_port" "$shardis_pid" shardis ""; then
  exit 1
fi
cat <<EOF

demo: shardis is up on 127.0.0.1:$proxy_port, shards on 127.0.0.1:${ports[0]}-${ports[2]}.
  try: redis-cli -p $proxy_port set foo bar
       redis-cli -p $proxy_port get foo
       redis-cli -p $proxy_port mset a 1 b 2 c 3 && redis-cli -p $proxy_port mget a b c
  then see where the keys went: for p in ${ports[*]}; do redis-cli -p \$p dbsize; done
  Ctrl-C stops shardis and the shards (or 'make demo-stop' from another terminal).

EOF

# Wait for shardis; Ctrl-C interrupts the wait and the EXIT trap cleans up.
set +e
wait "$shardis_pid"
status=$?
set -e
if [ "$status" -ne 0 ]; then log "shardis exited with status $status"; fi
exit "$status"
