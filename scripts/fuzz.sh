#!/usr/bin/env bash
# Coverage-guided fuzzing of shardis' parsers with cargo-fuzz (libFuzzer) on the
# stable toolchain; see fuzz/README.md for the targets and why this tool.
#
# Usage: scripts/fuzz.sh [TARGET...]
#   TARGET        request, reply, reply_helpers, config (default: all, one after another)
# Environment:
#   FUZZ_SECONDS  how long each target runs (default 600)
#   FUZZ_ARGS     extra libFuzzer arguments, e.g. FUZZ_ARGS='-seed=1 -max_len=65536'
#   SHARDIS_FUZZ_STRICT=1|2|3  also check the invariants of the open bugs (fuzz/README.md)
#
# Installs cargo-fuzz from crates.io (and a C++ compiler from Debian's packages,
# which libfuzzer-sys needs) when they are missing. Builds with one job and runs
# one fuzzer process at a time. Each target's corpus grows in fuzz/corpus/TARGET
# (not committed), seeded from fuzz/regressions/TARGET; crashes go to
# fuzz/artifacts/TARGET and the output to fuzz/logs/TARGET.log. Exits 1 if any
# target found a crash, a hang or an oversized allocation.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

CARGO_FUZZ_VERSION=0.13.2
all_targets=(request reply reply_helpers config)
seconds=${FUZZ_SECONDS:-600}
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=("${all_targets[@]}")
for t in "${targets[@]}"; do
  case " ${all_targets[*]} " in
    *" $t "*) ;;
    *) echo "fuzz.sh: unknown target '$t' (targets: ${all_targets[*]})" >&2; exit 2 ;;
  esac
done
export CARGO_BUILD_JOBS=${CARGO_BUILD_JOBS:-1}

as_root() {
  if [ "$(id -u)" = 0 ]; then "$@"
  elif command -v sudo >/dev/null 2>&1; then sudo "$@"
  else return 1
  fi
}

if ! command -v c++ >/dev/null 2>&1; then
  echo "== installing g++ (libfuzzer-sys compiles libFuzzer's C++ sources)"
  if ! { as_root apt-get install -y g++ || { as_root apt-get update && as_root apt-get install -y g++; }; }; then
    echo "fuzz.sh: missing a C++ compiler: install g++ (Debian: apt-get install g++)" >&2
    exit 1
  fi
fi
if ! cargo fuzz --version >/dev/null 2>&1; then
  echo "== installing cargo-fuzz $CARGO_FUZZ_VERSION (cargo install, a few minutes)"
  if ! cargo install --locked cargo-fuzz --version "$CARGO_FUZZ_VERSION"; then
    echo "fuzz.sh: missing cargo-fuzz: run 'cargo install --locked cargo-fuzz'" >&2
    exit 1
  fi
fi
echo "== $(cargo fuzz --version), $(rustc --version)"

cd fuzz
# --sanitizer none: the one mode that builds on stable Rust (the sanitizers need -Z flags).
fuzz=(cargo fuzz run --sanitizer none --target-dir target)
echo "+ (cd fuzz && cargo fuzz build --sanitizer none --target-dir target)"
cargo fuzz build --sanitizer none --target-dir target

mkdir -p logs
failed=()
for t in "${targets[@]}"; do
  mkdir -p "corpus/$t"
  rm -rf "artifacts/$t"
  # -timeout: an input that takes over 10 s is a hang. -rss_limit_mb: the process may not
  # grow past 2 GiB. Single allocations above 64 MiB abort in the targets' own allocator
  # (fuzz/checks.rs), since -malloc_limit_mb needs a sanitizer's malloc hooks.
  args=("$t" "corpus/$t" "regressions/$t" --
        "-max_total_time=$seconds" -timeout=10 -rss_limit_mb=2048 -max_len=8192
        -print_final_stats=1 ${FUZZ_ARGS:-})
  echo
  echo "== $t: ${seconds}s (output in fuzz/logs/$t.log)"
  echo "+ (cd fuzz && ${fuzz[*]} ${args[*]})"
  start=$(date +%s)
  if "${fuzz[@]}" "${args[@]}" >"logs/$t.log" 2>&1; then
    status=ok
  else
    status=FAILED
    failed+=("$t")
  fi
  took=$(( $(date +%s) - start ))
  last=$(grep -E '^#[0-9]+' "logs/$t.log" | tail -n1 || true)
  execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "logs/$t.log")
  echo "$t: $status after ${took}s, ${execs:-?} executions; last status: ${last:-none}"
  if [ "$status" = FAILED ]; then
    grep -E 'panicked at|==fuzz==|ERROR: libFuzzer' -A1 "logs/$t.log" | head -n 8 || true
    for a in "artifacts/$t"/*; do
      [ -f "$a" ] || continue
      echo "  crash input: fuzz/$a"
      echo "  reproduce:   (cd fuzz && ${fuzz[*]} $t $a)"
      echo "  keep it:     copy it to fuzz/regressions/$t/ (tests/fuzz_regressions.rs runs it)"
    done
  fi
done
echo
if [ ${#failed[@]} -gt 0 ]; then
  echo "fuzz: FAILED: ${failed[*]}"
  exit 1
fi
echo "fuzz: ${targets[*]}: no crash, hang or oversized allocation in ${seconds}s each"
