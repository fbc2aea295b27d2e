#!/usr/bin/env bash
# Runs Redis's own Tcl test suite (Redis 7.0.15, external mode) against a
# direct redis-server, shardis, or twemproxy (nutcracker) in front of N
# redis-servers, and reports pass/fail per unit file plus every failing test
# with its first error line, grouped by cause.
#
#   scripts/redis-suite.sh --target direct --json direct.json
#   scripts/redis-suite.sh --target shardis --backends 3 --json shardis.json
#   scripts/redis-suite.sh --target twemproxy --files unit/type/list,unit/expire
#   scripts/redis-suite.sh --target shardis --extra-config 'allow_commands = ["CONFIG"]'
#   scripts/redis-suite.sh --help            # every option, the default files and tags
#
# The first run fetches the suite into .redis-suite/ (gitignored): Debian's
# `redis` source package via `apt-get source`, which may install dpkg-dev and
# tcl and add a deb-src entry to /etc/apt/sources.list.d/ (it says so when it
# does). It then patches tests/support/server.tcl so that, for the proxy
# targets only, each start_server block's FLUSHALL / FUNCTION FLUSH / CONFIG SET
# setup goes to the backends directly (see scripts/redis-suite-backends.patch).
#
# The work is done by scripts/redis_suite.py (Python 3, standard library only).
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
exec "${PYTHON:-python3}" "$here/redis_suite.py" "$@"
