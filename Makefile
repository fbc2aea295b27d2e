# shardis: developer entry points. `make` alone lists them.
#
# Every target that needs redis-server, redis-cli, redis-benchmark or
# nutcracker runs `deps` first, which installs them from Debian's packages
# when it can, or says exactly what to install.

SHELL := bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help
MAKEFLAGS += --no-print-directory

CARGO ?= cargo
PYTHON ?= python3
# Debian installs nutcracker in /usr/sbin, which is not on every user's PATH;
# the tests and scripts look it up by name.
export PATH := $(PATH):/usr/local/sbin:/usr/sbin:/sbin

# Honour CARGO_TARGET_DIR so the demo and benchmarks find the binary that
# `cargo build --release` just produced.
TARGET_DIR := $(or $(CARGO_TARGET_DIR),target)
export SHARDIS_BIN ?= $(TARGET_DIR)/release/shardis

# Extra arguments for the load comparison, e.g.
#   make bench-load LOAD_ARGS='--rounds 5 --markdown bench.md'
LOAD_ARGS ?=
# Extra arguments for the client-library comparison, e.g.
#   make compat COMPAT_ARGS='--backends 5 --clients redis-py,ioredis5'
COMPAT_ARGS ?=
# Arguments for Redis's own test suite run (default: shardis over 3 backends), e.g.
#   make redis-suite SUITE_ARGS='--target twemproxy --json twemproxy.json'
SUITE_ARGS ?=
# Seconds of fuzzing per target for `make fuzz`; FUZZ_TARGETS picks some of
# request, reply, reply_helpers, config (default: all four, one after another).
FUZZ_SECONDS ?= 600
FUZZ_TARGETS ?=

.PHONY: help deps build test demo demo-stop bench bench-load compat redis-suite fuzz k8s model

help: ## list the targets
	@echo "shardis make targets:"
	@grep -E '^[a-z0-9-]+:.*## ' $(MAKEFILE_LIST) \
	  | sed -E 's/^([a-z0-9-]+):.*## (.*)/  \1\t\2/' | expand -t 16
	@echo
	@echo "variables: CARGO_TARGET_DIR (binary at $(SHARDIS_BIN)), LOAD_ARGS (for bench-load),"
	@echo "           COMPAT_ARGS (for compat), SUITE_ARGS (for redis-suite; scripts/redis-suite.sh --help),"
	@echo "           FUZZ_SECONDS (per target, default 600) and FUZZ_TARGETS (for fuzz)"

deps: ## install or check redis-server, redis-tools, nutcracker, rustfmt, clippy
	@scripts/deps.sh

build: ## cargo build --release
	$(CARGO) build --release

test: deps ## deps, then fmt check, clippy -D warnings, the whole test suite
	$(CARGO) fmt --all --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings
	@# --all-targets leaves out doctests and nextest cannot run them; they go
	@# first so that the test runner's summary is the last thing printed.
	$(CARGO) test --workspace --doc
	@# The pub/sub test opens 10,000 client connections: raise the open-file limit to
	@# what the system allows.
	@ulimit -n "$$(ulimit -Hn)" 2>/dev/null || true; \
	if [ "$$(ulimit -n)" != unlimited ] && [ "$$(ulimit -n)" -lt 21000 ]; then \
	  echo "note: open-file limit $$(ulimit -n) is below 21000; the 10,000-subscriber test needs more"; \
	fi; \
	if $(CARGO) nextest --version >/dev/null 2>&1; then \
	  echo "+ $(CARGO) nextest run --workspace --all-targets --no-tests=warn"; \
	  $(CARGO) nextest run --workspace --all-targets --no-tests=warn; \
	else \
	  echo "(cargo-nextest not installed: using cargo test)"; \
	  echo "+ $(CARGO) test --workspace --all-targets"; \
	  $(CARGO) test --workspace --all-targets; \
	fi

demo: deps build ## three redis shards on 7001-7003 and shardis on 6380 (Ctrl-C stops all)
	@scripts/demo.sh

demo-stop: ## stop a demo left running (shards and shardis)
	@scripts/demo.sh stop

bench: ## criterion micro-benchmarks (cargo bench)
	$(CARGO) bench

bench-load: deps build ## redis-benchmark: shardis vs twemproxy vs predixy vs direct redis
	$(PYTHON) benches/load.py --shardis-bin "$(SHARDIS_BIN)" $(LOAD_ARGS)

compat: deps build ## ioredis, node-redis, redis-py batteries: direct redis vs shardis
	@scripts/compat.sh --shardis-bin "$(SHARDIS_BIN)" $(COMPAT_ARGS)

# Builds nothing: run `make build` first, or point SHARDIS_BIN at a binary.
redis-suite: deps ## Redis's own test suite against shardis (SUITE_ARGS='--target direct|twemproxy ...')
	scripts/redis-suite.sh --shardis-bin "$(SHARDIS_BIN)" $(SUITE_ARGS)

# kubectl's built-in kustomize renders each overlay; tests/k8s.rs validates the renders.
k8s: ## render every Kubernetes overlay to target/k8s/NAME.yaml (CARGO_TARGET_DIR/k8s if set)
	scripts/k8s.sh render "$(TARGET_DIR)/k8s"

# MODEL_BOUND picks the exhaustive run's bound: tiny (seconds), small (the default, minutes),
# medium, large (hours). The checker runs about 5x faster under PyPy (apt-get install pypy3),
# which is used when installed.
MODEL_BOUND ?= small
MODEL_PYTHON ?= $(shell command -v pypy3 2>/dev/null || echo $(PYTHON))

model: ## check the rebalancing protocol exhaustively, then that every mutation is caught
	$(MODEL_PYTHON) scripts/rebalance_model.py --bound $(MODEL_BOUND) --expect ok --no-trace
	$(MODEL_PYTHON) scripts/rebalance_model.py --scenario proposal --expect ok
	$(MODEL_PYTHON) scripts/rebalance_model.py --mutations --no-trace

fuzz: ## fuzz the request, reply and config parsers (cargo-fuzz on stable, FUZZ_SECONDS each)
	FUZZ_SECONDS=$(FUZZ_SECONDS) scripts/fuzz.sh $(FUZZ_TARGETS)
