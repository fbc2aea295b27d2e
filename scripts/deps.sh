#!/usr/bin/env bash
# Checks for, and installs when it can, the external programs that the demo,
# the test suite and the load benchmark start: redis-server, redis-cli,
# redis-benchmark, nutcracker (twemproxy) and python3 (benches/load.py and its
# test), plus rustfmt and clippy.
#
# Usage: scripts/deps.sh [--check]
#   --check   only report; never install (exit 1 if something is missing)
#
# Idempotent: when everything is present it only prints what it found.
# Installs from Debian's packages with apt-get (as root, or through sudo when
# that exists); runs `apt-get update` only when a package cannot be found.
set -euo pipefail

check_only=0
case "${1:-}" in
  --check) check_only=1 ;;
  "") ;;
  -h|--help) sed -n '2,12p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
  *) echo "deps.sh: unknown argument '$1' (try --help)" >&2; exit 2 ;;
esac

# nutcracker lives in /usr/sbin on Debian, which is not on every user's PATH.
export PATH="$PATH:/usr/local/sbin:/usr/sbin:/sbin"

# program -> Debian package that ships it
programs=(redis-server redis-cli redis-benchmark nutcracker python3)
package_of() {
  case "$1" in
    redis-server) echo redis-server ;;
    redis-cli|redis-benchmark) echo redis-tools ;;
    nutcracker) echo nutcracker ;;
    python3) echo python3 ;;
  esac
}

version_of() {
  case "$1" in
    redis-server|redis-cli|redis-benchmark) "$1" --version 2>&1 | head -n1 ;;
    # nutcracker -V prints "This is nutcracker-0.5.0" on stderr
    nutcracker) nutcracker -V 2>&1 | head -n1 ;;
    python3) python3 --version 2>&1 | head -n1 ;;
  esac
}

missing_packages() {
  local p pkgs=()
  for p in "${programs[@]}"; do
    command -v "$p" >/dev/null 2>&1 || pkgs+=("$(package_of "$p")")
  done
  # unique, in order
  printf '%s\n' "${pkgs[@]+"${pkgs[@]}"}" | awk 'NF && !seen[$0]++' | tr '\n' ' ' | sed 's/ $//'
}

report() {
  local p
  for p in "${programs[@]}"; do
    if command -v "$p" >/dev/null 2>&1; then
      printf '  %-16s %s (%s)\n' "$p" "$(command -v "$p")" "$(version_of "$p")"
    else
      printf '  %-16s MISSING (Debian package: %s)\n' "$p" "$(package_of "$p")"
    fi
  done
}

echo "deps: external programs"
missing="$(missing_packages)"
if [ -n "$missing" ] && [ "$check_only" -eq 0 ]; then
  sudo_cmd=()
  if [ "$(id -u)" -ne 0 ]; then
    if command -v sudo >/dev/null 2>&1; then
      # Without a terminal sudo cannot ask for a password: fail instead of hanging.
      if [ -t 0 ]; then sudo_cmd=(sudo); else sudo_cmd=(sudo -n); fi
    else
      sudo_cmd=(false)
    fi
  fi
  if command -v apt-get >/dev/null 2>&1 && [ "${sudo_cmd[0]:-}" != false ]; then
    echo "deps: installing Debian packages: $missing"
    # shellcheck disable=SC2086  # $missing is a space-separated package list
    apt_install() {
      "${sudo_cmd[@]}" env DEBIAN_FRONTEND=noninteractive \
        apt-get install -y -q --no-install-recommends $missing
    }
    if ! apt_install; then
      echo "deps: install failed; refreshing package lists (apt-get update) and retrying"
      "${sudo_cmd[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -q || true
      apt_install || true
    fi
  else
    echo "deps: cannot install automatically (no apt-get, or not root and no sudo)"
  fi
  missing="$(missing_packages)"
fi
report

status=0
if [ -n "$missing" ]; then
  echo
  echo "deps: MISSING programs. On Debian/Ubuntu install them with:" >&2
  echo "    sudo apt-get update && sudo apt-get install -y $missing" >&2
  echo "  (packages: redis-server ships redis-server; redis-tools ships redis-cli" >&2
  echo "   and redis-benchmark; nutcracker ships nutcracker, i.e. twemproxy)" >&2
  status=1
fi

echo "deps: Rust toolchain"
rust_missing=()
if command -v cargo >/dev/null 2>&1; then
  printf '  %-16s %s\n' cargo "$(cargo --version)"
  for comp in fmt clippy; do
    if v="$(cargo "$comp" --version 2>/dev/null)"; then
      printf '  %-16s %s\n' "cargo $comp" "$v"
    else
      printf '  %-16s MISSING\n' "cargo $comp"
      case "$comp" in fmt) rust_missing+=(rustfmt) ;; *) rust_missing+=(clippy) ;; esac
    fi
  done
  if v="$(cargo nextest --version 2>/dev/null | head -n1)"; then
    printf '  %-16s %s\n' "cargo nextest" "$v"
  else
    printf '  %-16s not installed (optional; make test falls back to cargo test)\n' "cargo nextest"
  fi
else
  printf '  %-16s MISSING\n' cargo
  echo "deps: install the Rust toolchain (https://rustup.rs), then: rustup component add rustfmt clippy" >&2
  status=1
fi
if [ "${#rust_missing[@]}" -gt 0 ]; then
  echo "deps: missing Rust components; install them with: rustup component add ${rust_missing[*]}" >&2
  status=1
fi

if [ "$status" -eq 0 ]; then echo "deps: ok"; fi
exit "$status"
