#!/usr/bin/env python3
"""TLS overhead: shardis with and without TLS on each side, measured with
redis-benchmark (--tls where the port speaks TLS) on this machine (loopback only).

Targets, all over the same kind of backends (4 redis-servers each):
  plain        shardis plain_listen      -> plain redis-servers
  client-tls   shardis TLS listener      -> plain redis-servers
  backend-tls  shardis plain_listen      -> TLS redis-servers (--tls-port)
  both-tls     shardis TLS listener      -> TLS redis-servers
  redis        one redis-server, plain port (reference: Redis's own cost of TLS)
  redis-tls    one redis-server, TLS port
Two shardis processes serve the four shardis targets (one per kind of backend), each with a
TLS listener and a plain_listen beside it, so client-side TLS is the only difference between
plain and client-tls. Runs are interleaved round by round (A B C ... A B C ...), medians;
besides rps, the shardis process's CPU time per request (from /proc), which a busy machine
disturbs much less.

Certificates (a CA, and one certificate for 127.0.0.1 used by shardis and the redis-servers)
are made with the openssl command-line tool, for this script only: shardis itself uses rustls.
Reuses benches/load.py's helpers; only the Python standard library is used.

    python3 benches/tls.py                       # 3 rounds, getset and pipeline
    python3 benches/tls.py --rounds 5 --markdown tls.md
"""

from __future__ import annotations

import argparse
import atexit
import datetime
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import load  # noqa: E402
from load import HOST, BenchError, Processes, free_ports, tail  # noqa: E402

TARGETS = ("plain", "client-tls", "backend-tls", "both-tls", "redis", "redis-tls")
# Which targets' ports speak TLS (redis-benchmark gets --tls for them).
TLS_PORTS = {"client-tls", "both-tls", "redis-tls"}


def make_certs(workdir: Path) -> dict[str, Path]:
    """A CA and a server certificate (and key) for 127.0.0.1, as PEM files."""
    d = workdir / "tls"
    d.mkdir()
    ca_key, ca, key, csr, cert = (d / n for n in ("ca.key", "ca.crt", "server.key", "server.csr", "server.crt"))
    ext = d / "san.ext"
    ext.write_text("subjectAltName = IP:127.0.0.1, DNS:localhost\nextendedKeyUsage = serverAuth\n")

    def openssl(*args: str):
        r = subprocess.run(["openssl", *args], capture_output=True, text=True)
        if r.returncode != 0:
            raise BenchError(f"openssl {' '.join(args[:2])} failed: {r.stderr.strip()}")

    openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
            "-keyout", str(ca_key), "-out", str(ca), "-days", "2", "-subj", "/CN=shardis bench CA")
    openssl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
            "-keyout", str(key), "-out", str(csr), "-subj", "/CN=127.0.0.1")
    openssl("x509", "-req", "-in", str(csr), "-CA", str(ca), "-CAkey", str(ca_key),
            "-CAcreateserial", "-out", str(cert), "-days", "2", "-extfile", str(ext))
    return {"ca": ca, "cert": cert, "key": key}


def wait_ping(name: str, port: int, proc, log: Path, certs: dict | None):
    """Polls PING with redis-cli (over TLS with `certs`) until PONG or the deadline."""
    deadline = time.monotonic() + load.START_DEADLINE_S
    argv = ["redis-cli", "-h", HOST, "-p", str(port)]
    if certs:
        argv += ["--tls", "--cacert", str(certs["ca"])]
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise BenchError(f"{name} exited with status {proc.returncode}; {log}:\n{tail(log)}")
        r = subprocess.run([*argv, "PING"], capture_output=True, text=True)
        if r.stdout.strip() == "PONG":
            return
        time.sleep(0.05)
    raise BenchError(f"{name} did not answer PING on {port}; {log}:\n{tail(log)}")


def start_redis_tls(procs: Processes, name: str, certs: dict) -> int:
    """A redis-server whose only port speaks TLS (no client certificate asked)."""
    (port,) = free_ports(1)
    data = procs.workdir / name
    data.mkdir(exist_ok=True)
    p, log = procs.start(name, [
        "redis-server", "--bind", HOST, "--port", "0", "--tls-port", str(port),
        "--tls-cert-file", str(certs["cert"]), "--tls-key-file", str(certs["key"]),
        "--tls-ca-cert-file", str(certs["ca"]), "--tls-auth-clients", "no", "--dir", str(data),
        "--save", "", "--appendonly", "no", "--daemonize", "no", "--logfile", "",
    ])
    wait_ping(name, port, p, log, certs)
    return port


def start_shardis(procs: Processes, name: str, binary: Path, args: list[str], backends: list[int],
                  certs: dict, backend_tls: bool) -> tuple[int, int, int]:
    """A shardis with a TLS listener and a plain_listen; returns (tls port, plain port, pid)."""
    port, plain, admin = free_ports(3)
    servers = ",\n".join(f'  {{ name = "s{i}", address = "{HOST}:{p}" }}' for i, p in enumerate(backends, 1))
    pool_tls = f'tls = true\ntls_ca = "{certs["ca"]}"\n' if backend_tls else ""
    cfg = procs.workdir / f"{name}.toml"
    cfg.write_text(f"""# generated by benches/tls.py
[server]
listen = "{HOST}:{port}"
plain_listen = "{HOST}:{plain}"

[server.tls]
cert = "{certs['cert']}"
key = "{certs['key']}"

[admin]
listen = "{HOST}:{admin}"

[[pools]]
hash_tag = "{{}}"
{pool_tls}backends = [
{servers},
]
""")
    p, log = procs.start(name, [str(binary), "--config", str(cfg), *args])
    wait_ping(name, plain, p, log, None)
    wait_ping(name, port, p, log, certs)
    return port, plain, p.pid


def bench(port: int, workload: str, tls: bool, certs: dict, args) -> tuple[float, int] | None:
    """One redis-benchmark run: the mean of its tests' rps (GET and SET) and how many
    requests it sent in all; None when it failed."""
    argv = [
        "redis-benchmark", "-h", HOST, "-p", str(port), "-n", str(args.requests),
        "-r", "100000", "-d", "64", "--csv", *load.WORKLOADS[workload][1],
    ]
    if tls:
        argv += ["--tls", "--cacert", str(certs["ca"])]
    try:
        r = subprocess.run(argv, capture_output=True, text=True, timeout=args.run_timeout,
                           start_new_session=True)
    except subprocess.TimeoutExpired:
        print(f"tls: {workload} on port {port} timed out", file=sys.stderr)
        return None
    rps = []
    for line in r.stdout.splitlines()[1:]:
        cols = [c.strip('"') for c in line.split(",")]
        try:
            rps.append(float(cols[1]))
        except (IndexError, ValueError):
            pass
    if not rps:
        print(f"tls: no results for {workload} on port {port}: {r.stderr.strip()[:300]}", file=sys.stderr)
        return None
    return statistics.mean(rps), args.requests * len(rps)


def main(argv) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--requests", type=int, default=100000)
    ap.add_argument("--workloads", default="getset,pipeline",
                    help="comma-separated subset of load.py's redis-benchmark workloads "
                         "(getset, pipeline, mset, get-c1)")
    ap.add_argument("--backends", type=int, default=4)
    ap.add_argument("--shardis-bin", type=Path,
                    default=Path(os.environ.get("SHARDIS_BIN", "")) if os.environ.get("SHARDIS_BIN")
                    else Path(os.environ.get("CARGO_TARGET_DIR", load.REPO / "target")) / "release" / "shardis")
    ap.add_argument("--shardis-args", default="", help="extra shardis arguments, e.g. '--threads 1'")
    ap.add_argument("--run-timeout", type=float, default=120.0)
    ap.add_argument("--markdown", type=Path, help="also write the table as Markdown here")
    args = ap.parse_args(argv)
    workloads = args.workloads.split(",")
    for w in workloads:
        if w not in load.WORKLOADS or load.WORKLOADS[w][1] is None:
            ap.error(f"unknown workload {w!r}")
    if not args.shardis_bin.exists():
        ap.error(f"{args.shardis_bin} not found: cargo build --release first")

    workdir = Path(tempfile.mkdtemp(prefix="shardis-tls-bench-"))
    procs = Processes(workdir)
    atexit.register(procs.stop_all)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))
    certs = make_certs(workdir)
    extra = args.shardis_args.split()
    plain_backends = [load.start_redis(procs, f"redis-p{i}") for i in range(args.backends)]
    tls_backends = [start_redis_tls(procs, f"redis-t{i}", certs) for i in range(args.backends)]
    a_tls, a_plain, a_pid = start_shardis(procs, "shardis-a", args.shardis_bin, extra, plain_backends, certs, False)
    b_tls, b_plain, b_pid = start_shardis(procs, "shardis-b", args.shardis_bin, extra, tls_backends, certs, True)
    ref_plain = load.start_redis(procs, "redis-ref")
    ref_tls = start_redis_tls(procs, "redis-ref-tls", certs)
    ports = {"plain": a_plain, "client-tls": a_tls, "backend-tls": b_plain, "both-tls": b_tls,
             "redis": ref_plain, "redis-tls": ref_tls}
    # The shardis process each target runs through: its CPU time per request is the proxy's
    # cost, much steadier than rps on a shared machine.
    pids = {"plain": a_pid, "client-tls": a_pid, "backend-tls": b_pid, "both-tls": b_pid}

    load_avg = os.getloadavg()
    started = datetime.datetime.now().strftime("%Y-%m-%d %H:%M")
    results: dict[tuple[str, str], list[float]] = {}
    cpu: dict[tuple[str, str], list[float]] = {}
    for rnd in range(1, args.rounds + 1):
        for w in workloads:
            for t in TARGETS:
                before = load.cpu_seconds([pids[t]]) if t in pids else 0.0
                got = bench(ports[t], w, t in TLS_PORTS, certs, args)
                if got is None:
                    continue
                rps, requests = got
                results.setdefault((w, t), []).append(rps)
                us = ""
                if t in pids:
                    per = (load.cpu_seconds([pids[t]]) - before) / requests * 1e6
                    cpu.setdefault((w, t), []).append(per)
                    us = f"  {per:6.2f} us CPU/request"
                print(f"round {rnd} {w:<9} {t:<12} {rps:>10.0f} rps{us}", file=sys.stderr)

    head = (f"{started}, {os.cpu_count()} CPUs, load average at start {load_avg[0]:.1f}, "
            f"{args.requests} requests per run, {args.rounds} rounds, medians of GET/SET rps")
    rows = []
    for w in workloads:
        base = results.get((w, "plain"))
        ref = results.get((w, "redis"))
        for t in TARGETS:
            got = results.get((w, t))
            if not got:
                rows.append((load.WORKLOADS[w][0], t, "-", "-", "-", "-"))
                continue
            med = statistics.median(got)
            against = ref if t.startswith("redis") else base
            ratio = f"{med / statistics.median(against):.2f}" if against else "-"
            us, us_ratio = "-", "-"
            if cpu.get((w, t)):
                us_med = statistics.median(cpu[(w, t)])
                us = f"{us_med:.2f}"
                if cpu.get((w, "plain")):
                    us_ratio = f"{us_med / statistics.median(cpu[(w, 'plain')]):.2f}"
            rows.append((load.WORKLOADS[w][0], t, f"{med:,.0f}", ratio, us, us_ratio))
    headers = ("workload", "target", "rps (median)", "rps vs plain", "shardis CPU us/req",
               "CPU vs plain")
    print(head)
    print(load.render_text(headers, rows, 2))
    if args.markdown:
        args.markdown.write_text(head + "\n\n" + load.render_markdown(headers, rows, 2) + "\n")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main(sys.argv[1:]))
    except BenchError as e:
        print(f"tls: {e}", file=sys.stderr)
        sys.exit(1)
