#!/usr/bin/env bash
# Client-library compatibility: runs the batteries under tests/compat (ioredis
# 5 and 6, node-redis, redis-py; each with its default settings, and again
# with RESP2 where the default is RESP3) against one plain redis-server and
# against shardis over N redis-servers, then prints a side-by-side table
# (each cell direct/shardis) and every failure reason.
#
# Usage: scripts/compat.sh [--shardis-bin PATH] [--backends N] [--clients a,b]
#                          [--results DIR] [--markdown FILE] [--strict]
#
#   --shardis-bin PATH  shardis binary (default $SHARDIS_BIN, else
#                       $CARGO_TARGET_DIR/release/shardis or target/release/shardis)
#   --backends N        redis-servers behind shardis (default 3)
#   --clients LIST      run only these columns, e.g. redis-py,ioredis5
#                       (default: all; `--clients help` lists them)
#   --results DIR       keep each battery's output and JSON summary here
#                       (default: a temporary directory, removed at exit)
#   --markdown FILE     also write the table as Markdown
#   --strict            exit 1 if any case fails against shardis too
#
# Installs the node packages (npm ci) and the redis-py venv under tests/compat
# when they are missing. Every process it starts is stopped on exit.
# Exit status: 0 when every battery ran and passed against the direct
# redis-server (a failure there is a bug in the battery, not in shardis);
# shardis failures count only with --strict.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
compat="$root/tests/compat"
bin="${SHARDIS_BIN:-${CARGO_TARGET_DIR:-$root/target}/release/shardis}"
backends=3
only=""
results=""
markdown=""
strict=0
ready_deadline_s=10
battery_deadline_s=600

log() { echo "compat: $*" >&2; }
die() { echo "compat: error: $*" >&2; exit 2; }

# Columns: label, then the command run from tests/compat with --host/--port/--json appended.
declare -a labels=(ioredis5 ioredis6 ioredis6-resp2 node-redis node-redis-resp2 redis-py redis-py-resp2)
declare -A commands=(
  [ioredis5]="node js/ioredis.js --module ioredis"
  [ioredis6]="node js/ioredis.js --module ioredis6"
  [ioredis6-resp2]="node js/ioredis.js --module ioredis6 --protocol 2"
  [node-redis]="node js/node-redis.js"
  [node-redis-resp2]="node js/node-redis.js --resp 2"
  [redis-py]=".venv/bin/python py/redis_py.py"
  [redis-py-resp2]=".venv/bin/python py/redis_py.py --protocol 2"
)

while [ $# -gt 0 ]; do
  case "$1" in
    --shardis-bin) bin="${2:?--shardis-bin needs a path}"; shift 2 ;;
    --backends) backends="${2:?--backends needs a number}"; shift 2 ;;
    --clients) only="${2:?--clients needs a list}"; shift 2 ;;
    --results) results="${2:?--results needs a directory}"; shift 2 ;;
    --markdown) markdown="${2:?--markdown needs a file}"; shift 2 ;;
    --strict) strict=1; shift ;;
    -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) die "unknown argument '$1' (see --help)" ;;
  esac
done

if [ "$only" = help ]; then
  for l in "${labels[@]}"; do printf '  %-18s %s\n' "$l" "${commands[$l]}"; done
  exit 0
fi
if [ -n "$only" ]; then
  IFS=, read -r -a wanted <<<"$only"
  for l in "${wanted[@]}"; do [ -n "${commands[$l]:-}" ] || die "unknown client '$l' (--clients help lists them)"; done
  labels=("${wanted[@]}")
fi
[[ "$backends" =~ ^[1-9][0-9]*$ ]] || die "--backends must be a positive number, not '$backends'"
[ -x "$bin" ] || die "no shardis binary at $bin (cargo build --release, or pass --shardis-bin)"
bin="$(cd "$(dirname "$bin")" && pwd)/$(basename "$bin")"
command -v redis-server >/dev/null || die "redis-server not found (make deps installs it)"
command -v node >/dev/null || die "node not found (apt-get install nodejs npm)"
command -v python3 >/dev/null || die "python3 not found"

# --- dependencies --------------------------------------------------------------
install_deps() {
  cd "$compat"
  if [ ! -d node_modules ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
    log "installing node packages (npm ci)"
    npm ci --no-audit --no-fund --loglevel=error >&2
  fi
  if [ ! -x .venv/bin/python ] || [ requirements.txt -nt .venv/.installed ]; then
    log "installing redis-py into tests/compat/.venv"
    [ -x .venv/bin/python ] || python3 -m venv .venv
    .venv/bin/pip install --quiet --disable-pip-version-check -r requirements.txt >&2
    touch .venv/.installed
  fi
}
install_deps

# --- processes -----------------------------------------------------------------
work="$(mktemp -d "${TMPDIR:-/tmp}/shardis-compat.XXXXXX")"
declare -a pids=()

cleanup() {
  local pid i
  # shardis was started last: stop in reverse order, proxy before backends.
  for ((i = ${#pids[@]} - 1; i >= 0; i--)); do
    kill -TERM "${pids[$i]}" 2>/dev/null || true
  done
  for pid in "${pids[@]}"; do
    for ((i = 0; i < 50; i++)); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null || true
  done
  rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# Prints N ports that were free a moment ago (all bound at once, so distinct).
free_ports() {
  python3 - "$1" <<'EOF'
import socket, sys
socks = [socket.socket() for _ in range(int(sys.argv[1]))]
for s in socks:
    s.bind(("127.0.0.1", 0))
print(" ".join(str(s.getsockname()[1]) for s in socks))
EOF
}

answers_ping() { [ "$(redis-cli -h 127.0.0.1 -p "$1" ping 2>/dev/null)" = PONG ]; }

start_redis() {
  local port=$1 dir="$work/redis-$1" i
  mkdir -p "$dir"
  redis-server --port "$port" --bind 127.0.0.1 --save '' --appendonly no \
    --dir "$dir" --logfile "$dir/redis.log" --daemonize no >/dev/null 2>&1 &
  pids+=($!)
  for ((i = 0; i < ready_deadline_s * 10; i++)); do
    answers_ping "$port" && return 0
    kill -0 "${pids[-1]}" 2>/dev/null || break
    sleep 0.1
  done
  tail -n 20 "$dir/redis.log" >&2 || true
  die "redis-server on port $port did not start"
}

read -r -a ports <<<"$(free_ports $((backends + 1)))"
direct_port=${ports[0]}
backend_ports=("${ports[@]:1}")
for p in "${ports[@]}"; do start_redis "$p"; done
log "direct redis-server on 127.0.0.1:$direct_port; shardis backends on ${backend_ports[*]}"

config="$work/shardis.toml"
{
  echo "# generated by scripts/compat.sh"
  echo "[server]"
  echo 'listen = "127.0.0.1:0"'
  echo "[admin]"
  echo 'listen = "127.0.0.1:0"'
  echo "[[pools]]"
  echo 'name = "compat"'
  echo 'hash_tag = "{}"'
  echo "backends = ["
  i=0
  for p in "${backend_ports[@]}"; do
    i=$((i + 1))
    echo "  { name = \"s$i\", address = \"127.0.0.1:$p\" },"
  done
  echo "]"
} >"$config"

"$bin" --config "$config" >"$work/shardis.out" 2>"$work/shardis.log" &
pids+=($!)
shardis_addr=""
for ((i = 0; i < ready_deadline_s * 10; i++)); do
  line="$(head -n 1 "$work/shardis.out" 2>/dev/null || true)"
  if [[ "$line" =~ ^shardis\ listening\ on\ ([0-9.]+):([0-9]+), ]]; then
    shardis_addr="${BASH_REMATCH[1]}:${BASH_REMATCH[2]}"
    break
  fi
  kill -0 "${pids[-1]}" 2>/dev/null || break
  sleep 0.1
done
if [ -z "$shardis_addr" ]; then
  tail -n 20 "$work/shardis.log" >&2 || true
  die "shardis did not print its listen address (binary: $bin)"
fi
shardis_port="${shardis_addr##*:}"
for ((i = 0; i < ready_deadline_s * 10; i++)); do answers_ping "$shardis_port" && break; sleep 0.1; done
answers_ping "$shardis_port" || die "shardis on $shardis_addr does not answer PING"
log "shardis $("$bin" --version 2>/dev/null | awk '{print $NF}') on $shardis_addr over ${backends} backends ($bin)"

# --- batteries -----------------------------------------------------------------
out="${results:-$work/results}"
mkdir -p "$out"
out="$(cd "$out" && pwd)"
rm -f "$out"/*.json "$out"/*.log
crashed=0
for target in direct shardis; do
  if [ "$target" = direct ]; then port=$direct_port; else port=$shardis_port; fi
  for label in "${labels[@]}"; do
    log "$label against $target (127.0.0.1:$port)"
    set +e
    (cd "$compat" && timeout "$battery_deadline_s" ${commands[$label]} \
      --host 127.0.0.1 --port "$port" --json "$out/$label.$target.json") \
      >"$out/$label.$target.log" 2>&1
    rc=$?
    set -e
    grep -E '^(PASS|FAIL) ' "$out/$label.$target.log" | sed 's/^/    /' >&2 || true
    if [ $rc -ne 0 ] || [ ! -s "$out/$label.$target.json" ]; then
      log "$label against $target exited $rc without a summary; its output:"
      tail -n 20 "$out/$label.$target.log" | sed 's/^/    /' >&2
      rm -f "$out/$label.$target.json"
      crashed=1
    fi
  done
done

echo
report_args=("$out" --clients "$(IFS=,; echo "${labels[*]}")")
[ -n "$markdown" ] && report_args+=(--markdown "$markdown")
python3 "$compat/report.py" "${report_args[@]}"

status=0
if [ $crashed -ne 0 ]; then
  log "a battery crashed (see above)"
  status=1
fi
direct_failed="$(python3 - "$out" <<'EOF'
import json, pathlib, sys
print(sum(json.loads(p.read_text())["failed"] for p in pathlib.Path(sys.argv[1]).glob("*.direct.json")))
EOF
)"
if [ "$direct_failed" != 0 ]; then
  log "$direct_failed case(s) failed against the direct redis-server: a battery needs fixing"
  status=1
fi
if [ $strict -eq 1 ]; then
  shardis_failed="$(python3 - "$out" <<'EOF'
import json, pathlib, sys
print(sum(json.loads(p.read_text())["failed"] for p in pathlib.Path(sys.argv[1]).glob("*.shardis.json")))
EOF
)"
  [ "$shardis_failed" = 0 ] || { log "--strict: $shardis_failed case(s) failed against shardis"; status=1; }
fi
[ -n "$results" ] && log "outputs and JSON summaries kept in $out"
exit $status
