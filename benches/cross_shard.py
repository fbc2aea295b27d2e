#!/usr/bin/env python3
"""Latency of a 2-key script across backends, against the same script on one backend.

Starts 3 redis-servers and a shardis (release build) over them on free loopback ports, then,
from one client connection, times N sequential requests of each kind and prints p50/p99:

  direct GET            GET sent to a redis-server directly: one backend round trip
  GET                   GET through shardis
  EVAL 2 keys, 1 backend    hash-tagged keys: forwarded unchanged
  EVAL 2 keys, 2 backends   run in shardis under locks (locks, 2 calls, release)

  python3 benches/cross_shard.py --shardis-bin target/release/shardis [--requests 5000]
"""

import argparse
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time

HOST = "127.0.0.1"
SCRIPT = "return {redis.call('GET', KEYS[1]), redis.call('GET', KEYS[2])}"


def free_port():
    s = socket.socket()
    s.bind((HOST, 0))
    port = s.getsockname()[1]
    s.close()
    return port


def encode(*args):
    out = [f"*{len(args)}\r\n".encode()]
    for a in args:
        a = a if isinstance(a, bytes) else str(a).encode()
        out.append(b"$%d\r\n%s\r\n" % (len(a), a))
    return b"".join(out)


class Conn:
    def __init__(self, port):
        self.s = socket.create_connection((HOST, port))
        self.s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buf = b""

    def reply(self):
        # Enough of RESP2 for these replies: simple, error, integer, bulk, flat arrays.
        def line():
            while b"\r\n" not in self.buf:
                self.buf += self.s.recv(65536)
            ln, self.buf = self.buf.split(b"\r\n", 1)
            return ln

        def one():
            ln = line()
            if ln[:1] == b"$":
                n = int(ln[1:])
                if n < 0:
                    return None
                while len(self.buf) < n + 2:
                    self.buf += self.s.recv(65536)
                v, self.buf = self.buf[:n], self.buf[n + 2:]
                return v
            if ln[:1] == b"*":
                return [one() for _ in range(int(ln[1:]))]
            if ln[:1] == b"-":
                raise RuntimeError(ln.decode())
            return ln[1:]

        return one()

    def cmd(self, *args):
        self.s.sendall(encode(*args))
        return self.reply()


def wait_port(port, deadline=10.0):
    end = time.time() + deadline
    while time.time() < end:
        try:
            socket.create_connection((HOST, port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.02)
    raise RuntimeError(f"nothing listens on {port}")


def timed(conn, n, *args):
    for _ in range(min(200, n)):
        conn.cmd(*args)
    samples = []
    for _ in range(n):
        t = time.perf_counter_ns()
        conn.cmd(*args)
        samples.append((time.perf_counter_ns() - t) / 1000.0)
    samples.sort()
    return statistics.median(samples), samples[int(len(samples) * 0.99)]


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--shardis-bin", default=os.environ.get("SHARDIS_BIN", "target/release/shardis"))
    ap.add_argument("--requests", type=int, default=5000)
    args = ap.parse_args()
    procs = []
    tmp = tempfile.mkdtemp(prefix="shardis-xbench-")
    try:
        ports = [free_port() for _ in range(3)]
        for p in ports:
            procs.append(subprocess.Popen(
                ["redis-server", "--port", str(p), "--bind", HOST, "--save", "", "--appendonly", "no"],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        for p in ports:
            wait_port(p)
        port, admin = free_port(), free_port()
        backends = ",\n".join(
            f'  {{ name = "s{i + 1}", address = "{HOST}:{p}" }}' for i, p in enumerate(ports))
        config = os.path.join(tmp, "shardis.toml")
        with open(config, "w") as f:
            f.write(f'[server]\nlisten = "{HOST}:{port}"\nthreads = 1\n[admin]\nlisten = "{HOST}:{admin}"\n'
                    f'[[pools]]\nname = "main"\ndistribution = "ketama"\nhash = "fnv1a_64"\n'
                    f'hash_tag = "{{}}"\nbackends = [\n{backends}\n]\n')
        procs.append(subprocess.Popen([args.shardis_bin, "--config", config],
                                      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        wait_port(port)
        proxy = Conn(port)
        # Two keys on different backends, and two hash-tagged keys on one.
        owners = {}
        for i in range(200):
            k = f"xk{i}"
            proxy.cmd("SET", k, "v")
            for j, p in enumerate(ports):
                if Conn(p).cmd("EXISTS", k) == b"1":
                    owners.setdefault(j, k)
        a, b = owners[0], owners[1]
        proxy.cmd("MSET", "{t}a", "v", "{t}b", "v")
        direct = Conn(ports[0])
        rows = [
            ("direct GET (one backend round trip)", timed(direct, args.requests, "GET", a)),
            ("GET through shardis", timed(proxy, args.requests, "GET", a)),
            ("EVAL 2 keys on 1 backend (hash tag)", timed(proxy, args.requests, "EVAL", SCRIPT, 2, "{t}a", "{t}b")),
            ("EVAL 2 keys on 2 backends", timed(proxy, args.requests, "EVAL", SCRIPT, 2, a, b)),
        ]
        print(f"{'request':<40} {'p50 us':>8} {'p99 us':>8}")
        for name, (p50, p99) in rows:
            print(f"{name:<40} {p50:>8.0f} {p99:>8.0f}")
        rt = rows[1][1][0]
        cross = rows[3][1][0]
        print(f"\ncross-backend p50 {cross:.0f} us = {cross / rt:.2f} round trips through shardis "
              f"(target: under 3 round trips + 200 us = {3 * rt + 200:.0f} us)")
    finally:
        for p in procs:
            p.kill()
        for p in procs:
            p.wait()


if __name__ == "__main__":
    sys.exit(main())
