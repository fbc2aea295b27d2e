#!/usr/bin/env python3
"""Load comparison: shardis vs twemproxy (nutcracker) vs predixy vs one Redis,
measured with redis-benchmark on this machine (loopback only).

Starts its own redis-servers on free ports (each proxy gets its own set of
backends, so the connections a backend sees are that proxy's alone), shardis
and nutcracker with the same ketama ring (servers s1..sN, fnv1a_64), and
predixy when its binary is found (../shared/peers/predixy beside the
repository, $PREDIXY_BIN or --predixy-bin; a multi-threaded C++ proxy whose
standalone pools place keys with crc16 and modula, so compare its throughput
and latency, never its placement; by default one predixy runs with as many
threads as shardis has workers and another with one per CPU, as targets
predixy-1t, predixy-2t, ...), then runs each workload against each
target in turn (A B C D A B C D ...) for several rounds and reports medians,
with the CPU time each request cost the proxy and its Redis servers (from
/proc; tells a proxy that is cheaper from one that is merely luckier on a
noisy machine). Stops every process it started on exit, Ctrl-C included.
Only the Python standard library is used.

    python3 benches/load.py                        # all targets, 3 rounds
    python3 benches/load.py --targets twemproxy,direct --requests 20000
    python3 benches/load.py --shardis-args '--threads 1' --backends 8
    python3 benches/load.py --targets shardis,predixy --predixy-threads 1
    python3 benches/load.py --predixy-threads 1,2   # predixy at equal threads and at all CPUs
    python3 benches/load.py --markdown bench.md --json bench.json
"""

from __future__ import annotations

import argparse
import csv
import datetime
import io
import json
import os
import platform
import re
import shlex
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
HOST = "127.0.0.1"
TARGETS = ("shardis", "baseline", "twemproxy", "predixy", "direct")
# Where the predixy binary is looked for when neither --predixy-bin nor $PREDIXY_BIN says.
PREDIXY_DEFAULT = REPO.parent / "shared" / "peers" / "predixy"

# name -> (description, redis-benchmark arguments)
WORKLOADS = {
    "getset": ("GET/SET -c 50", ["-t", "get,set", "-c", "50"]),
    "pipeline": ("GET/SET -c 50 -P 16", ["-t", "get,set", "-c", "50", "-P", "16"]),
    "mset": ("MSET 10 keys -c 50", ["-t", "mset", "-c", "50"]),
    "get-c1": ("GET -c 1", ["-t", "get", "-c", "1"]),
    # A one-key script: forwarded unchanged to its key's backend (the fast path of scripts).
    "eval": ("EVAL 1 key -c 50", ["-c", "50", "EVAL", "return redis.call('GET', KEYS[1])",
                                  "1", "key:__rand_int__"]),
    # Not redis-benchmark: mass insertion of RESP-encoded SETs (twemproxy refuses the inline
    # form). "bulk" is the same file written by this script while a thread counts the replies,
    # for every target; "bulk-cli" is Redis's documented `redis-cli --pipe`, which ends with an
    # ECHO with 20 random bytes that twemproxy does not serve and predixy answers wrongly, so it
    # is run on shardis and direct only (see UNSUPPORTED). predixy serves MSET by splitting it.
    "bulk": ("mass insertion SETs", None),
    "bulk-cli": ("redis-cli --pipe SETs", None),
}
# Targets a workload cannot run on, and why.
UNSUPPORTED = {
    ("bulk-cli", "twemproxy"): "twemproxy has no ECHO, which redis-cli --pipe sends last",
    # Seen with predixy 1.0.5: ECHO "a\0b" is answered "$3\r\na\r\n", and after the empty line
    # redis-cli sends before its ECHO, a ' or " in the argument is dropped. Either way the
    # marker never comes back, and redis-cli waits 30 s and fails (about 1 run in 3 here).
    ("bulk-cli", "predixy"): "predixy's ECHO is not binary-safe (it cuts the reply at a NUL byte and "
                             "drops quotes), so redis-cli --pipe's random 20-byte ECHO marker often never "
                             "comes back",
}



def unsupported(workload: str, target: str) -> str | None:
    """Why `workload` cannot run on `target` (every predixy target is predixy), if it cannot."""
    return UNSUPPORTED.get((workload, "predixy" if target.startswith("predixy") else target))


START_DEADLINE_S = 10.0
STOP_DEADLINE_S = 5.0


class BenchError(Exception):
    """A failure that ends the run with a message and no traceback."""


# --- a minimal RESP client, enough for PING, SET, GET, INFO and DBSIZE -------


def _encode(args) -> bytes:
    out = [b"*%d\r\n" % len(args)]
    for a in args:
        b = a if isinstance(a, bytes) else str(a).encode()
        out.append(b"$%d\r\n%s\r\n" % (len(b), b))
    return b"".join(out)


def _read_reply(f):
    line = f.readline()
    if not line.endswith(b"\r\n"):
        raise ConnectionError("connection closed mid-reply")
    kind, rest = line[:1], line[1:-2]
    if kind == b"+":
        return rest.decode()
    if kind == b"-":
        return RuntimeError(rest.decode())
    if kind == b":":
        return int(rest)
    if kind == b"$":
        n = int(rest)
        if n < 0:
            return None
        data = f.read(n + 2)
        return data[:-2].decode(errors="replace")
    if kind == b"*":
        n = int(rest)
        return None if n < 0 else [_read_reply(f) for _ in range(n)]
    raise ConnectionError(f"unexpected reply {line!r}")


def command(port: int, *args, timeout: float = 2.0):
    """Sends one command on a fresh connection and returns the reply."""
    with socket.create_connection((HOST, port), timeout=timeout) as s:
        s.sendall(_encode(args))
        with s.makefile("rb") as f:
            return _read_reply(f)


def connected_clients(port: int) -> int:
    """Clients connected to the redis at `port`, not counting this query's own."""
    info = command(port, "INFO", "clients")
    m = re.search(r"^connected_clients:(\d+)", info, re.M)
    if not m:
        raise BenchError(f"no connected_clients in INFO from port {port}")
    return int(m.group(1)) - 1


# --- processes ---------------------------------------------------------------


class Processes:
    """Every process this script started, stopped in reverse order."""

    def __init__(self, workdir: Path):
        self.workdir = workdir
        self.procs: list[tuple[str, subprocess.Popen, Path]] = []

    def start(self, name: str, argv: list[str]) -> tuple[subprocess.Popen, Path]:
        log = self.workdir / f"{name}.log"
        with open(log, "wb") as out:
            # A new session: Ctrl-C reaches only this script, which stops
            # the proxies before their backends.
            p = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self.procs.append((name, p, log))
        return p, log

    def stop_all(self):
        for _, p, _ in reversed(self.procs):
            if p.poll() is None:
                p.terminate()
        for name, p, _ in reversed(self.procs):
            try:
                p.wait(timeout=STOP_DEADLINE_S)
            except subprocess.TimeoutExpired:
                print(f"load: {name} did not stop in {STOP_DEADLINE_S}s; killing it", file=sys.stderr)
                p.kill()
                p.wait()
        self.procs.clear()


def free_ports(n: int) -> list[int]:
    """n distinct free loopback ports (all held open while choosing)."""
    socks = []
    try:
        for _ in range(n):
            s = socket.socket()
            s.bind((HOST, 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def tail(path: Path, lines: int = 20) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def settled_clients(ports: list[int]) -> list[int]:
    """Backend connection counts once they stop changing (a proxy's links connect in the
    background after it answers PING: shardis opens one per worker thread): unchanged over
    0.6 s, waiting at most 5 s."""
    counts = [connected_clients(p) for p in ports]
    stable = 0
    deadline = time.monotonic() + 5
    while stable < 3 and time.monotonic() < deadline:
        time.sleep(0.2)
        again = [connected_clients(p) for p in ports]
        stable = stable + 1 if again == counts else 0
        counts = again
    return counts


def wait_ready(name: str, port: int, proc: subprocess.Popen, log: Path):
    """Polls PING until it answers PONG, the process exits, or the deadline passes."""
    deadline = time.monotonic() + START_DEADLINE_S
    last = None
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise BenchError(f"{name} exited with status {proc.returncode} before answering PING; {log}:\n{tail(log)}")
        try:
            if command(port, "PING", timeout=0.5) == "PONG":
                return
        except OSError as e:
            last = e
        time.sleep(0.05)
    raise BenchError(f"{name} did not answer PING on {HOST}:{port} within {START_DEADLINE_S}s ({last}); {log}:\n{tail(log)}")


def start_redis(procs: Processes, name: str) -> int:
    for _ in range(3):  # a port picked free can be taken before redis binds it
        (port,) = free_ports(1)
        data = procs.workdir / name
        data.mkdir(exist_ok=True)
        p, log = procs.start(name, [
            "redis-server", "--bind", HOST, "--port", str(port), "--dir", str(data),
            "--save", "", "--appendonly", "no", "--daemonize", "no", "--logfile", "",
        ])
        try:
            wait_ready(name, port, p, log)
            return port
        except BenchError:
            if p.poll() is None:
                raise
    raise BenchError(f"could not start {name}; {log}:\n{tail(log)}")


def start_shardis(procs: Processes, binary: Path, extra_args: list[str], backends: list[int],
                  pool_lines: str = "", name: str = "shardis") -> int:
    port, admin = free_ports(2)
    servers = ",\n".join(
        f'  {{ name = "s{i}", address = "{HOST}:{p}", weight = 1 }}' for i, p in enumerate(backends, 1)
    )
    cfg = procs.workdir / f"{name}.toml"
    cfg.write_text(f"""# generated by benches/load.py
[server]
listen = "{HOST}:{port}"

[admin]
listen = "{HOST}:{admin}"

[[pools]]
name = "main"
distribution = "ketama"
hash = "fnv1a_64"
hash_tag = "{{}}"
timeout_ms = 1000
{pool_lines}
backends = [
{servers},
]
""")
    p, log = procs.start(name, [str(binary), "--config", str(cfg), *extra_args])
    wait_ready(name, port, p, log)
    return port


def start_nutcracker(procs: Processes, binary: str, backends: list[int]) -> int:
    port, stats = free_ports(2)
    servers = "\n".join(f"    - {HOST}:{p}:1 s{i}" for i, p in enumerate(backends, 1))
    cfg = procs.workdir / "nutcracker.yml"
    cfg.write_text(f"""# generated by benches/load.py; same ring as shardis.toml
bench:
  listen: {HOST}:{port}
  hash: fnv1a_64
  hash_tag: "{{}}"
  distribution: ketama
  redis: true
  timeout: 1000
  server_connections: 1
  preconnect: true
  auto_eject_hosts: false
  servers:
{servers}
""")
    p, log = procs.start("nutcracker", [
        binary, "-c", str(cfg), "-s", str(stats), "-a", HOST, "-o", str(procs.workdir / "nutcracker.log"),
    ])
    wait_ready("nutcracker", port, p, log)
    return port


def start_predixy(procs: Processes, binary: Path, threads: int, backends: list[int],
                  name: str = "predixy") -> int:
    """predixy with one group per backend, as shared/peers/predixy_conf.sh writes it
    (standalone pool, crc16 and modula: not the ketama ring the other proxies share), but
    with no Log line, so that its log goes to stdout (predixy.log here), and no per-connect
    notices. It connects lazily: up to one connection per worker thread to each backend.
    ServerTimeout is 1 s, like the other proxies' 1000 ms. predixy enforces it by closing the
    backend connection, failing every request queued on it ("-ERR server connection close"):
    seen in about 1 mass insertion in 3 on a busy 2-core machine, never with ServerTimeout 0."""
    (port,) = free_ports(1)
    groups = "\n".join(f"    Group shard{i:03d} {{\n        + {HOST}:{p}\n    }}"
                       for i, p in enumerate(backends, 1))
    cfg = procs.workdir / f"{name}.conf"
    cfg.write_text(f"""# generated by benches/load.py
Bind {HOST}:{port}
WorkerThreads {threads}
ClientTimeout 300
LogVerbSample 0
LogDebugSample 0
LogInfoSample 10000
LogNoticeSample 0
LogWarnSample 1
LogErrorSample 1
Authority {{
    Auth {{
        Mode write
    }}
}}
StandaloneServerPool {{
    RefreshMethod fixed
    Hash crc16
    HashTag "{{}}"
    Distribution modula
    MasterReadPriority 60
    StaticSlaveReadPriority 50
    DynamicSlaveReadPriority 50
    RefreshInterval 1
    ServerTimeout 1
    ServerFailureLimit 10
    ServerRetryTimeout 1
    KeepAlive 120
{groups}
}}
""")
    p, log = procs.start(name, [str(binary), str(cfg)])
    wait_ready(name, port, p, log)
    return port


# --- measuring ---------------------------------------------------------------

CLK_TCK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pids: list[int]) -> float:
    """User + system CPU time the processes have used so far (from /proc/PID/stat)."""
    total = 0
    for pid in pids:
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
        except OSError:
            continue
        # Fields after the command name (which may hold spaces) start at field 3 (state);
        # utime and stime are fields 14 and 15.
        fields = stat[stat.rindex(")") + 2:].split()
        total += int(fields[11]) + int(fields[12])
    return total / CLK_TCK



class ConnectionSampler:
    """Polls connected_clients on some redis-servers while a benchmark runs."""

    def __init__(self, ports: list[int], interval: float = 0.25):
        self.ports, self.interval = ports, interval
        self.peak = [0] * len(ports)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        while not self._stop.is_set():
            for i, p in enumerate(self.ports):
                try:
                    self.peak[i] = max(self.peak[i], connected_clients(p))
                except (OSError, BenchError):
                    pass
            self._stop.wait(self.interval)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()


def run_benchmark(port: int, workload: str, args, timeout: float) -> tuple[dict, list[str]]:
    """Runs redis-benchmark once; returns {test: metrics} and notable stderr lines."""
    argv = [
        "redis-benchmark", "-h", HOST, "-p", str(port), "-n", str(args.requests),
        "-r", str(args.keyspace), "-d", str(args.value_size), "--csv",
        *WORKLOADS[workload][1],
    ]
    try:
        r = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, text=True,
                           timeout=timeout, start_new_session=True)
    except subprocess.TimeoutExpired:
        return {}, [f"redis-benchmark timed out after {timeout:.0f}s"]
    # redis-benchmark asks for CONFIG GET at start; proxies may refuse it.
    notes = [ln for ln in r.stderr.splitlines() if ln.strip() and "CONFIG" not in ln]
    if r.returncode != 0:
        notes.append(f"redis-benchmark exited with status {r.returncode}")
    results = {}
    for row in csv.DictReader(io.StringIO(r.stdout)):
        try:
            results[row["test"]] = {
                "rps": float(row["rps"]),
                "avg_ms": float(row["avg_latency_ms"]),
                "p50_ms": float(row["p50_latency_ms"]),
                "p95_ms": float(row["p95_latency_ms"]),
                "p99_ms": float(row["p99_latency_ms"]),
                "max_ms": float(row["max_latency_ms"]),
            }
        except (KeyError, ValueError):
            notes.append(f"unparsed output line: {row}")
    if not results and not notes:
        notes.append("redis-benchmark printed no results")
    return results, notes


def bulk_file(workdir: Path, commands: int) -> Path:
    """The RESP-encoded SETs for the bulk workload, written once per run."""
    path = workdir / f"bulk-{commands}.resp"
    if not path.exists():
        with open(path, "wb") as f:
            for start in range(0, commands, 10_000):
                f.write(b"".join(_encode(["SET", f"bulk:{i}", f"value:{i}"])
                                 for i in range(start, min(start + 10_000, commands))))
    return path


def run_bulk(port: int, path: Path, commands: int, timeout: float) -> tuple[dict, list[str]]:
    """Writes `path` on one connection while a thread reads until `commands` replies are in;
    the result is commands per second. Every reply to these SETs is one line (+OK)."""
    data = path.read_bytes()
    got = {"lines": 0, "errors": 0, "first_error": ""}
    started = time.monotonic()
    try:
        with socket.create_connection((HOST, port), timeout=timeout) as s:
            def read():
                # Each chunk is counted with the byte before it, so that a "\r\n" or "\n-"
                # split between two reads is counted once; the first reply follows a "\n".
                tail = b"\n"
                while got["lines"] < commands:
                    chunk = s.recv(1 << 20)
                    if not chunk:
                        return
                    seen = tail + chunk
                    got["lines"] += seen.count(b"\r\n")
                    errors = seen.count(b"\n-")
                    if errors and not got["first_error"]:
                        at = seen.find(b"\n-") + 1
                        got["first_error"] = seen[at:at + 200].split(b"\r")[0].decode(errors="replace")
                    got["errors"] += errors
                    tail = chunk[-1:]
            reader = threading.Thread(target=read, daemon=True)
            reader.start()
            s.sendall(data)
            reader.join(timeout)
    except OSError as e:
        return {}, [f"mass insertion failed: {e}"]
    elapsed = time.monotonic() - started
    if got["lines"] != commands or got["errors"]:
        first = f", the first: {got['first_error']}" if got["first_error"] else ""
        return {}, [f"mass insertion got {got['lines']} replies ({got['errors']} errors{first}) of {commands}"]
    ms = elapsed * 1000
    return {"SET": {"rps": commands / elapsed, "avg_ms": ms, "p50_ms": 0.0, "p95_ms": 0.0,
                    "p99_ms": 0.0, "max_ms": ms}}, []


def run_redis_cli_pipe(port: int, path: Path, commands: int, timeout: float) -> tuple[dict, list[str]]:
    """Pipes `path` into `redis-cli --pipe` and times it; the result is commands per second."""
    argv = ["redis-cli", "-h", HOST, "-p", str(port), "--pipe"]
    started = time.monotonic()
    try:
        with open(path, "rb") as f:
            r = subprocess.run(argv, stdin=f, capture_output=True, text=True, timeout=timeout,
                               start_new_session=True)
    except subprocess.TimeoutExpired:
        return {}, [f"redis-cli --pipe timed out after {timeout:.0f}s"]
    elapsed = time.monotonic() - started
    expected = f"errors: 0, replies: {commands}"
    if r.returncode != 0 or expected not in r.stdout:
        last = (r.stdout.strip().splitlines() or ["no output"])[-1]
        return {}, [f"redis-cli --pipe did not report '{expected}': {last} {r.stderr.strip()}"]
    ms = elapsed * 1000
    return {"SET": {"rps": commands / elapsed, "avg_ms": ms, "p50_ms": 0.0, "p95_ms": 0.0,
                    "p99_ms": 0.0, "max_ms": ms}}, []


def smoke_test(name: str, port: int):
    """One SET and GET through the target, so a broken proxy fails loudly."""
    key, value = f"load.py:smoke:{name}", f"v-{time.time_ns()}"
    reply = command(port, "SET", key, value)
    if reply != "OK":
        raise BenchError(f"{name}: SET returned {reply!r}")
    reply = command(port, "GET", key)
    if reply != value:
        raise BenchError(f"{name}: GET returned {reply!r}, expected {value!r}")
    command(port, "DEL", key)


# --- reporting ---------------------------------------------------------------


def tool_version(argv: list[str]) -> str:
    try:
        r = subprocess.run(argv, capture_output=True, text=True, timeout=5, stdin=subprocess.DEVNULL)
        return (r.stdout + r.stderr).strip().splitlines()[0]
    except (OSError, subprocess.TimeoutExpired, IndexError):
        return "unknown"


def machine_line(args, nutcracker: str | None, shardis: Path | None, predixy: Path | None) -> str:
    model = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    redis = tool_version(["redis-server", "--version"])
    m = re.search(r"v=(\S+)", redis)
    redis = m.group(1) if m else redis
    nut = "n/a"
    if nutcracker:
        m = re.search(r"nutcracker-(\S+)", tool_version([nutcracker, "-V"]))
        nut = m.group(1) if m else "unknown"
    pdx = "predixy not run"
    if predixy:
        m = re.search(r"predixy-(\S+)", tool_version([str(predixy), "-v"]))
        pdx = f"predixy {m.group(1) if m else 'unknown'}"
    commit = tool_version(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"])
    load1 = os.getloadavg()[0]
    parts = [
        f"{os.cpu_count()} CPUs ({model})",
        f"Linux {platform.release()}",
        f"redis {redis}",
        f"nutcracker {nut}",
        pdx,
        f"shardis {commit}" + (f" {' '.join(args.shardis_args_list)}" if args.shardis_args_list else ""),
        f"load avg {load1:.2f} at start",
        datetime.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z"),
    ]
    if shardis is None:
        parts[5] = "shardis not run"
    return "; ".join(parts)


def settings_line(args) -> str:
    ran = [t for t in args.predixy_targets if t in args.targets]
    predixy = (f"predixy WorkerThreads {', '.join(str(args.predixy_targets[t]) for t in ran)} "
               f"({args.predixy_threads_from}), crc16/modula; " if ran else "")
    return (f"{args.rounds} rounds, median of each; {args.requests} requests per run, "
            f"-r {args.keyspace} -d {args.value_size}; {args.backends} backends per proxy; "
            f"nutcracker server_connections 1, preconnect; "
            f"shardis args '{args.shardis_args}' pool '{args.shardis_pool}'; {predixy}all on loopback")


def summarize(results, targets, workloads, ratio_targets):
    """One entry per (workload, test, target): medians of the runs and the ratios of this
    target's median rps to each of `ratio_targets`' (None where that is this target or absent)."""
    summary = []
    for w in workloads:
        tests = []
        for t in targets:
            for test in results.get(w, {}).get(t, {}):
                if test not in tests:
                    tests.append(test)
        for test in tests:
            med = {}
            for t in targets:
                runs = results[w].get(t, {}).get(test, [])
                if runs:
                    med[t] = {k: statistics.median(r[k] for r in runs) for k in ("rps", "p50_ms", "p99_ms")}
                    med[t]["runs"] = len(runs)
            for t in targets:
                if t not in med:
                    continue
                m = med[t]
                ratios = {other: (m["rps"] / med[other]["rps"]
                                  if other in med and other != t and med[other]["rps"] else None)
                          for other in ratio_targets}
                summary.append({"workload": w, "test": test, "target": t, **m,
                                **{f"x_{other}": r for other, r in ratios.items()}})
    return summary


def build_rows(summary, ratio_targets):
    """The summary as table rows (strings), in headers()' order."""
    ratio = lambda r: "" if r is None else f"{r:.2f}"
    return [[WORKLOADS[s["workload"]][0], s["test"], s["target"], f"{s['rps']:,.0f}", f"{s['p50_ms']:.3f}",
             f"{s['p99_ms']:.3f}", *(ratio(s[f"x_{o}"]) for o in ratio_targets), str(s["runs"])]
            for s in summary]


def headers(ratio_targets):
    """The columns of the throughput table: one "x TARGET" ratio per peer."""
    return ["workload", "test", "target", "rps", "p50 ms", "p99 ms",
            *(f"x {o}" for o in ratio_targets), "runs"]


def render_text(headers, rows, text_columns: int) -> str:
    widths = [max(len(str(x)) for x in col) for col in zip(headers, *rows)]
    fmt = lambda r: "  ".join(str(c).ljust(w) if i < text_columns else str(c).rjust(w)
                              for i, (c, w) in enumerate(zip(r, widths)))
    return "\n".join([fmt(headers), "  ".join("-" * w for w in widths), *map(fmt, rows)])


def render_markdown(headers, rows, text_columns: int) -> str:
    align = ["---" if i < text_columns else "---:" for i in range(len(headers))]
    lines = ["| " + " | ".join(headers) + " |", "| " + " | ".join(align) + " |"]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


def connection_rows(conns):
    rows = []
    for t, c in conns.items():
        for i in range(len(c["before"])):
            rows.append([t, f"s{i + 1}", str(c["before"][i]), str(c["peak"][i]), str(c["after"][i]), str(c["keys"][i])])
    return rows


CONN_HEADERS = ["proxy", "backend", "conns before", "conns max during runs", "conns after", "keys after"]

CPU_TITLE = ("CPU per request in microseconds (user + system time from /proc, median of rounds; "
             "redis-benchmark's own CPU not included)")
CPU_HEADERS = ["workload", "target", "proxy us/req", "redis-servers us/req"]


# --- main --------------------------------------------------------------------


def parse_args(argv):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--targets", default=None,
                    help=f"comma-separated subset of {','.join(TARGETS)} (default: all; predixy only "
                         "if its binary is found)")
    ap.add_argument("--workloads", default=",".join(WORKLOADS),
                    help="comma-separated subset of " + ", ".join(f"{k} ({v[0]})" for k, v in WORKLOADS.items()))
    ap.add_argument("--rounds", type=int, default=3, help="rounds of every workload on every target (default 3)")
    ap.add_argument("--requests", type=int, default=100_000, help="requests per redis-benchmark run (default 100000)")
    ap.add_argument("--bulk-commands", type=int, default=1_000_000,
                    help="SETs in the bulk workload's redis-cli --pipe run (default 1000000)")
    ap.add_argument("--keyspace", type=int, default=100_000, help="redis-benchmark -r (default 100000)")
    ap.add_argument("--value-size", type=int, default=64, help="redis-benchmark -d (default 64)")
    ap.add_argument("--backends", type=int, default=4, help="redis-servers behind each proxy (default 4)")
    ap.add_argument("--shardis-bin", default=None,
                    help="shardis binary (default $SHARDIS_BIN, else $CARGO_TARGET_DIR or target, /release/shardis)")
    ap.add_argument("--baseline-bin", default=None,
                    help="a second shardis binary (an earlier build) run as target 'baseline' with the "
                         "same settings, interleaved with the others: the 'x baseline' column is the "
                         "before/after ratio of a change")
    ap.add_argument("--shardis-args", default="", help="extra shardis arguments, e.g. '--threads 1'")
    ap.add_argument("--shardis-pool", default="",
                    help="extra lines for shardis's [[pools]] table, e.g. 'connections_per_backend = 2'")
    ap.add_argument("--predixy-bin", default=None,
                    help=f"predixy binary (default $PREDIXY_BIN, else {PREDIXY_DEFAULT})")
    ap.add_argument("--predixy-threads", default=None,
                    help="predixy WorkerThreads, or a comma-separated list to run one predixy per value "
                         "(targets predixy-1t, predixy-2t, ...). Default: shardis's worker count (its "
                         "--threads, else one per two CPUs) and the number of CPUs this script may run "
                         "on, so that one predixy runs at equal threads")
    ap.add_argument("--run-timeout", type=float, default=300, help="seconds before one redis-benchmark run is killed")
    ap.add_argument("--max-seconds", type=float, default=3600,
                    help="stop starting new runs after this many seconds and report what was measured")
    ap.add_argument("--markdown", metavar="FILE", help="also write the tables as Markdown to FILE")
    ap.add_argument("--json", metavar="FILE", help="also write every run's raw numbers as JSON to FILE")
    ap.add_argument("--keep", action="store_true", help="keep the work directory (configs and logs)")
    args = ap.parse_args(argv)

    # Named on the command line, a target that cannot run is an error; by default, predixy is
    # left out when its binary is missing (find_binaries).
    args.targets_explicit = args.targets is not None
    args.left_out = []
    default_targets = [t for t in TARGETS if t != "baseline" or args.baseline_bin]
    args.targets = [t.strip() for t in (args.targets or ",".join(default_targets)).split(",") if t.strip()]
    bad = [t for t in args.targets if t not in TARGETS]
    if bad or not args.targets:
        ap.error(f"--targets: unknown {bad}; choose from {','.join(TARGETS)}")
    if "baseline" in args.targets and not args.baseline_bin:
        ap.error("--targets baseline needs --baseline-bin")
    args.workloads = [w.strip() for w in args.workloads.split(",") if w.strip()]
    bad = [w for w in args.workloads if w not in WORKLOADS]
    if bad or not args.workloads:
        ap.error(f"--workloads: unknown {bad}; choose from {','.join(WORKLOADS)}")
    if args.rounds < 1 or args.requests < 1 or args.backends < 1 or args.bulk_commands < 1:
        ap.error("--rounds, --requests, --bulk-commands and --backends must be at least 1")
    try:
        cpus = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cpus = os.cpu_count() or 1
    if args.predixy_threads is None:
        m = re.search(r"--threads[ =](\d+)", args.shardis_args)
        workers = int(m.group(1)) if m else max(1, cpus // 2)
        args.predixy_threads = sorted({workers, cpus})
        args.predixy_threads_from = "shardis's workers and the number of CPUs"
    else:
        try:
            args.predixy_threads = sorted({int(t) for t in args.predixy_threads.split(",") if t.strip()})
        except ValueError:
            ap.error("--predixy-threads takes whole numbers, comma-separated")
        if not args.predixy_threads or min(args.predixy_threads) < 1:
            ap.error("--predixy-threads must be at least 1")
        args.predixy_threads_from = "--predixy-threads"
    # One target per thread count: "predixy" alone, else "predixy-1t", "predixy-2t", ...
    args.predixy_targets = ({"predixy": args.predixy_threads[0]} if len(args.predixy_threads) == 1
                            else {f"predixy-{t}t": t for t in args.predixy_threads})
    args.shardis_args_list = shlex.split(args.shardis_args)
    return args


def find_binaries(args):
    for prog in ("redis-server", "redis-benchmark", "redis-cli"):
        if not shutil.which(prog):
            raise BenchError(f"{prog} not found: run 'make deps' (Debian packages redis-server, redis-tools)")
    shardis = nutcracker = predixy = None
    if "baseline" in args.targets:
        args.baseline_path = Path(args.baseline_bin).resolve()
        if not (args.baseline_path.is_file() and os.access(args.baseline_path, os.X_OK)):
            raise BenchError(f"--baseline-bin {args.baseline_path} is not an executable file")
    if "shardis" in args.targets:
        default = Path(os.environ.get("CARGO_TARGET_DIR", REPO / "target")) / "release" / "shardis"
        shardis = Path(args.shardis_bin or os.environ.get("SHARDIS_BIN") or default)
        if not shardis.is_absolute():
            shardis = (Path.cwd() / shardis).resolve()
        if not (shardis.is_file() and os.access(shardis, os.X_OK)):
            raise BenchError(f"shardis binary not found at {shardis}: run 'make build' "
                             "(cargo build --release), or leave it out with --targets twemproxy,direct")
    if "twemproxy" in args.targets:
        nutcracker = shutil.which("nutcracker") or next(
            (p for p in ("/usr/sbin/nutcracker", "/usr/local/sbin/nutcracker") if os.access(p, os.X_OK)), None)
        if not nutcracker:
            raise BenchError("nutcracker not found: run 'make deps' (Debian package nutcracker), "
                             "or leave it out with --targets shardis,predixy,direct")
    if "predixy" in args.targets:
        predixy = Path(args.predixy_bin or os.environ.get("PREDIXY_BIN") or PREDIXY_DEFAULT)
        if not predixy.is_absolute():
            predixy = (Path.cwd() / predixy).resolve()
        if not (predixy.is_file() and os.access(predixy, os.X_OK)):
            if args.targets_explicit or args.predixy_bin or os.environ.get("PREDIXY_BIN"):
                raise BenchError(f"predixy not found at {predixy}: point --predixy-bin or PREDIXY_BIN at "
                                 "its binary, or leave predixy out of --targets")
            args.left_out.append(f"predixy not found at {predixy}: leaving it out "
                                 "(--predixy-bin or PREDIXY_BIN to include it)")
            print(f"load: {args.left_out[-1]}", flush=True)
            args.targets.remove("predixy")
            predixy = None
    return shardis, nutcracker, predixy


def main(argv) -> int:
    args = parse_args(argv)
    shardis_bin, nutcracker_bin, predixy_bin = find_binaries(args)
    if "predixy" in args.targets:
        at = args.targets.index("predixy")
        args.targets[at:at + 1] = list(args.predixy_targets)
    ratio_targets = ["baseline", "twemproxy",
                     *(t for t in args.predixy_targets if t in args.targets), "direct"]
    started = time.monotonic()
    machine = machine_line(args, nutcracker_bin, shardis_bin, predixy_bin)

    workdir = Path(tempfile.mkdtemp(prefix="shardis-load-"))
    procs = Processes(workdir)
    try:
        ports: dict[str, int] = {}
        backends: dict[str, list[int]] = {}
        print(f"load: starting servers (work dir {workdir})", flush=True)
        for t in args.targets:
            if t == "direct":
                ports[t] = start_redis(procs, "direct-redis")
                continue
            backends[t] = [start_redis(procs, f"{t}-s{i}") for i in range(1, args.backends + 1)]
            if t in ("shardis", "baseline"):
                binary = shardis_bin if t == "shardis" else args.baseline_path
                ports[t] = start_shardis(procs, binary, args.shardis_args_list, backends[t],
                                         args.shardis_pool.replace("\\n", "\n"), name=t)
            elif t in args.predixy_targets:
                ports[t] = start_predixy(procs, predixy_bin, args.predixy_targets[t], backends[t], name=t)
            else:
                ports[t] = start_nutcracker(procs, nutcracker_bin, backends[t])
        for t in args.targets:
            smoke_test(t, ports[t])
            print(f"load: {t} ready on {HOST}:{ports[t]}", flush=True)

        conns = {t: {"before": settled_clients(b), "peak": [0] * len(b)} for t, b in backends.items()}
        # The processes whose CPU each target's requests cost: the proxy, and the Redis servers
        # behind it (for direct, the one Redis).
        pid_of = {name: p.pid for name, p, _ in procs.procs}
        proxy_pids = {"shardis": [pid_of.get("shardis")], "baseline": [pid_of.get("baseline")],
                      "twemproxy": [pid_of.get("nutcracker")],
                      **{t: [pid_of.get(t)] for t in args.predixy_targets}, "direct": []}
        server_pids = {t: [pid_of[f"{t}-s{i}"] for i in range(1, args.backends + 1)] for t in backends}
        server_pids["direct"] = [pid_of.get("direct-redis")]
        cpu: dict[tuple[str, str], list[tuple[float, float]]] = {}
        peaks: dict[tuple[str, str], int] = {}
        results: dict[str, dict[str, dict[str, list]]] = {}
        notes: list[str] = []
        raw = []
        truncated = False
        total = args.rounds * len(args.workloads) * len(args.targets)
        n = 0
        for rnd in range(1, args.rounds + 1):
            for w in args.workloads:
                for t in args.targets:
                    elapsed = time.monotonic() - started
                    if elapsed > args.max_seconds:
                        truncated = True
                        break
                    n += 1
                    print(f"load: [{n}/{total}] round {rnd} {WORKLOADS[w][0]:<20} {t:<9}", end=" ", flush=True)
                    timeout = min(args.run_timeout, max(1.0, args.max_seconds - elapsed))
                    pp = [p for p in proxy_pids.get(t, []) if p]
                    sp = [p for p in server_pids.get(t, []) if p]
                    cpu0 = (cpu_seconds(pp), cpu_seconds(sp))
                    with ConnectionSampler(backends.get(t, [])) as sampler:
                        if unsupported(w, t):
                            res, run_notes = {}, [f"not run: {unsupported(w, t)}"]
                        elif w in ("bulk", "bulk-cli"):
                            run = run_bulk if w == "bulk" else run_redis_cli_pipe
                            res, run_notes = run(ports[t], bulk_file(workdir, args.bulk_commands),
                                                 args.bulk_commands, timeout)
                        else:
                            res, run_notes = run_benchmark(ports[t], w, args, timeout)
                    if res:
                        requests = (args.bulk_commands if w.startswith("bulk") else args.requests) * len(res)
                        cpu.setdefault((w, t), []).append(
                            ((cpu_seconds(pp) - cpu0[0]) * 1e6 / requests,
                             (cpu_seconds(sp) - cpu0[1]) * 1e6 / requests))
                    if t in conns:
                        conns[t]["peak"] = [max(a, b) for a, b in zip(conns[t]["peak"], sampler.peak)]
                        peaks[(w, t)] = max(peaks.get((w, t), 0), max(sampler.peak, default=0))
                    print("  ".join(f"{k} {v['rps']:,.0f} rps p99 {v['p99_ms']:.2f} ms" for k, v in res.items())
                          or "no result", flush=True)
                    for note in run_notes:
                        msg = f"round {rnd} {WORKLOADS[w][0]} {t}: {note}"
                        print(f"load:   {note}", flush=True)
                        notes.append(msg)
                    for test, m in res.items():
                        results.setdefault(w, {}).setdefault(t, {}).setdefault(test, []).append(m)
                        raw.append({"round": rnd, "workload": w, "target": t, "test": test, **m})
                    if procs.procs and any(p.poll() is not None for _, p, _ in procs.procs):
                        dead = [name for name, p, _ in procs.procs if p.poll() is not None]
                        raise BenchError(f"{', '.join(dead)} exited during the run; logs in {workdir}")
                if truncated:
                    break
            if truncated:
                break

        for t, b in backends.items():
            conns[t]["after"] = [connected_clients(p) for p in b]
            conns[t]["keys"] = [command(p, "DBSIZE") for p in b]

        summary = summarize(results, args.targets, args.workloads, ratio_targets)
        rows = build_rows(summary, ratio_targets)
        for r in rows:  # backend connections seen during that workload
            key = next(((w, r[2]) for w in args.workloads if WORKLOADS[w][0] == r[0]), None)
            r.append(str(peaks[key]) if key in peaks else "")
        table_headers = headers(ratio_targets) + ["max conns/backend"]
        crow = connection_rows(conns)
        cpu_rows = [[WORKLOADS[w][0], t,
                     f"{statistics.median(r[0] for r in cpu[(w, t)]):.1f}" if t != "direct" else "",
                     f"{statistics.median(r[1] for r in cpu[(w, t)]):.1f}"]
                    for w in args.workloads for t in args.targets if (w, t) in cpu]

        print()
        print(machine)
        print(settings_line(args))
        for msg in args.left_out:
            print(f"NOTE: {msg}")
        if truncated:
            print(f"NOTE: stopped early at --max-seconds {args.max_seconds:.0f}; not every run happened")
        print()
        print(render_text(table_headers, rows, 3))
        if crow:
            print()
            print("Connections each backend sees (connected_clients, not counting this script's query):")
            print(render_text(CONN_HEADERS, crow, 2))
        if cpu_rows:
            print()
            print(CPU_TITLE + ":")
            print(render_text(CPU_HEADERS, cpu_rows, 2))
        if notes:
            print()
            print("Notes from redis-benchmark:")
            for note in dict.fromkeys(notes):
                print(f"  {note}")

        if args.markdown:
            md = [f"Machine: {machine}.", "", f"Settings: {settings_line(args)}.", ""]
            md += [f"Note: {msg}.\n" for msg in args.left_out]
            if truncated:
                md += [f"**Stopped early at {args.max_seconds:.0f} s: not every run happened.**", ""]
            md += [render_markdown(table_headers, rows, 3), ""]
            if crow:
                md += ["Connections each backend sees:", "", render_markdown(CONN_HEADERS, crow, 2), ""]
            if cpu_rows:
                md += [CPU_TITLE + ":", "", render_markdown(CPU_HEADERS, cpu_rows, 2), ""]
            Path(args.markdown).write_text("\n".join(md))
            print(f"\nload: wrote {args.markdown}")
        if args.json:
            Path(args.json).write_text(json.dumps(
                {"machine": machine, "settings": settings_line(args), "targets": args.targets,
                 "predixy_threads": ({t: args.predixy_targets[t] for t in args.predixy_targets
                                      if t in args.targets} or None),
                 "summary": summary, "runs": raw, "connections": conns,
                 "cpu_us_per_request": [{"workload": w, "target": t, "proxy": [r[0] for r in v],
                                         "servers": [r[1] for r in v]} for (w, t), v in cpu.items()],
                 "notes": notes}, indent=1))
            print(f"load: wrote {args.json}")
        print(f"load: done in {time.monotonic() - started:.0f}s")
        missing = [f"{WORKLOADS[w][0]} on {t}" for w in args.workloads for t in args.targets
                   if not results.get(w, {}).get(t) and not unsupported(w, t)]
        if missing and not truncated:
            print(f"load: error: no result for {', '.join(missing)}", file=sys.stderr)
            return 1
        return 0
    finally:
        procs.stop_all()
        if args.keep:
            print(f"load: kept {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)


def _terminate(signum, _frame):
    raise SystemExit(128 + signum)


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, _terminate)
    signal.signal(signal.SIGHUP, _terminate)
    try:
        sys.exit(main(sys.argv[1:]))
    except BenchError as e:
        print(f"load: error: {e}", file=sys.stderr)
        sys.exit(1)
    except KeyboardInterrupt:
        print("\nload: interrupted; stopped every process it started", file=sys.stderr)
        sys.exit(130)
