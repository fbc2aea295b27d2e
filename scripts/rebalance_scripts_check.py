#!/usr/bin/env python3
"""Runs every Lua script of docs/rebalancing.md section 6 against a real redis-server.

The scripts are taken from the document itself (its ```lua blocks), so the specification and
this check cannot drift apart. Each script is exercised on its success path and on every
refusal it documents (MISMATCH, NEWER, CONFLICT, HELD, LOST, MOVED, NOT_DONE, ...).

Usage: rebalance_scripts_check.py --port PORT [--host 127.0.0.1] [--doc docs/rebalancing.md]
The server's database 0 is flushed.
"""

import argparse
import os
import re
import socket
import sys

HERE = os.path.dirname(os.path.abspath(__file__))


def load_scripts(doc_path):
    doc = open(doc_path, encoding="utf-8").read()
    blocks = [(m.start(), m.group(1)) for m in re.finditer(r"```lua\n(.*?)```", doc, re.S)]
    if not blocks:
        sys.exit("no ```lua blocks in %s" % doc_path)
    prelude = blocks[0][1]  # the ms() helper
    scripts = {}
    for start, body in blocks[1:]:
        m = re.match(r"-- (\w+)\.", body)
        if m:
            name = m.group(1)
        else:
            header = doc.rfind("### ", 0, start)
            name = re.search(r"`(\w+)`", doc[header:start]).group(1)
        scripts[name] = prelude + "\n" + body
    return scripts


class Conn:
    def __init__(self, host, port):
        self.sock = socket.create_connection((host, port), timeout=10)
        self.f = self.sock.makefile("rb")

    def cmd(self, *args):
        out = b"*%d\r\n" % len(args)
        for a in args:
            a = a if isinstance(a, bytes) else str(a).encode()
            out += b"$%d\r\n%s\r\n" % (len(a), a)
        self.sock.sendall(out)
        return self.read()

    def read(self):
        line = self.f.readline()
        kind, rest = line[:1], line[1:-2]
        if kind == b"+":
            return rest.decode()
        if kind == b"-":
            raise RuntimeError(rest.decode())
        if kind == b":":
            return int(rest)
        if kind == b"$":
            n = int(rest)
            return None if n < 0 else self.f.read(n + 2)[:-2].decode()
        if kind == b"*":
            n = int(rest)
            return None if n < 0 else [self.read() for _ in range(n)]
        raise RuntimeError("bad reply %r" % line)


def record(epoch, state, from_digest, to_digest="", outcome="", history=""):
    return ["v", "1", "epoch", str(epoch), "state", state, "from", '{"backends":[]}',
            "from_digest", from_digest, "to", '{"backends":[]}' if to_digest else "",
            "to_digest", to_digest, "history", history, "proposer", "i1", "outcome", outcome]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--doc", default=os.path.join(HERE, "..", "docs", "rebalancing.md"))
    args = ap.parse_args()
    scripts = load_scripts(args.doc)
    expected = {"record_cas", "record_upgrade", "record_create", "record_undo", "heartbeat",
                "barrier_waiting", "sweep_acquire", "sweep_renew", "sweep_save", "sweep_finish",
                "client_dbsize", "client_randomkey"}
    missing = expected - set(scripts)
    if missing:
        sys.exit("scripts missing from the document: %s" % sorted(missing))

    c = Conn(args.host, args.port)
    failures = []

    def ev(name, keys, argv):
        return c.cmd("EVAL", scripts[name], len(keys), *keys, *argv)

    def check(what, got, want):
        ok = want(got) if callable(want) else got == want
        print("%-44s %s %r" % (what, "ok  " if ok else "FAIL", got))
        if not ok:
            failures.append(what)

    L, LIVE, ACKS, SW = ("__shardis:p:layout", "__shardis:p:live", "__shardis:p:acks",
                         "__shardis:p:sweep")
    c.cmd("FLUSHDB")
    r0 = record(0, "stable", "aaaa")
    check("record_create on an empty backend", ev("record_create", [L], r0), ["OK"])
    check("record_create again", ev("record_create", [L], r0), ["EXISTS", "0", "stable", "aaaa"])
    check("record_undo by another proposer digest", ev("record_undo", [L], ["bbbb", "i1"]), "KEPT")
    check("record_cas with a wrong expectation", ev("record_cas", [L], ["1", "stable", "aaaa"] + r0),
          ["MISMATCH", "0", "stable", "aaaa"])
    prep = record(1, "preparing", "aaaa", "bbbb")
    check("record_cas propose", ev("record_cas", [L], ["0", "stable", "aaaa"] + prep),
          lambda r: r[0] == "OK" and r[1].isdigit())
    check("record after propose", c.cmd("HMGET", L, "epoch", "state", "to_digest"),
          ["1", "preparing", "bbbb"])
    check("record_cas loses to the first proposer",
          ev("record_cas", [L], ["0", "stable", "aaaa"] + record(1, "preparing", "aaaa", "cccc")),
          ["MISMATCH", "1", "preparing", "aaaa"])
    check("record_upgrade with the same record",
          ev("record_upgrade", [L], ["1", "preparing", "aaaa", "bbbb"] + prep), ["SAME"])
    check("record_upgrade with an older record",
          ev("record_upgrade", [L], ["0", "stable", "aaaa", ""] + r0), ["NEWER", "1", "preparing"])
    check("record_upgrade with a rival layout",
          ev("record_upgrade", [L], ["1", "preparing", "aaaa", "cccc"] +
             record(1, "preparing", "aaaa", "cccc")),
          ["CONFLICT", "1", "preparing", "aaaa", "bbbb"])
    mig = record(1, "migrating", "aaaa", "bbbb")
    check("record_upgrade to migrating", ev("record_upgrade", [L], ["1", "migrating", "aaaa", "bbbb"]
                                            + mig), ["OK"])
    L2 = "__shardis:q:layout"
    check("record_upgrade creates a missing copy",
          ev("record_upgrade", [L2], ["1", "migrating", "aaaa", "bbbb"] + mig), ["OK"])
    hb = ev("heartbeat", [LIVE, L], ["i1", "2000"])
    check("heartbeat returns the record header", hb[1][:4], ["1", "migrating", "aaaa", "bbbb"])
    ev("heartbeat", [LIVE, L], ["i2", "2000"])
    ev("heartbeat", [LIVE, L], ["i3", "-1"])  # already expired
    c.cmd("HSET", ACKS, "i1", "1")
    check("barrier_waiting: live and not acked", ev("barrier_waiting", [LIVE, ACKS], ["1"]), ["i2"])
    check("barrier_waiting: acked an older epoch", sorted(ev("barrier_waiting", [LIVE, ACKS],
                                                             ["2"])), ["i1", "i2"])
    check("expired heartbeats are removed", c.cmd("ZSCORE", LIVE, "i3"), None)

    acq = ev("sweep_acquire", [SW, L], ["1", "i1", "t1", "5000", "s1", "s2"])
    check("sweep_acquire", acq[0], "OK")
    check("sweep_acquire creates the cursors", c.cmd("HMGET", SW, "cur:s1", "cur:s2"),
          ["0 0 0", "0 0 0"])
    check("sweep_acquire while held", ev("sweep_acquire", [SW, L], ["1", "i2", "t2", "5000", "s1"])[:2],
          ["HELD", "i1"])
    check("sweep_acquire for another epoch", ev("sweep_acquire", [SW, L], ["2", "i2", "t2", "5000"]),
          ["NOT_MIGRATING"])
    check("sweep_renew by the holder", ev("sweep_renew", [SW], ["i1", "t1", "5000"]), "OK")
    check("sweep_renew by another", ev("sweep_renew", [SW], ["i2", "t2", "5000"]), "LOST")
    check("sweep_save", ev("sweep_save", [SW], ["i1", "t1", "s1", "0 0 0", "0 17 0", 10, 3, 0, 300]),
          "OK")
    check("sweep_save from a stale cursor",
          ev("sweep_save", [SW], ["i1", "t1", "s1", "0 0 0", "0 17 0", 10, 3, 0, 300]), "MOVED")
    check("sweep_save with a stale token",
          ev("sweep_save", [SW], ["i1", "t0", "s1", "0 17 0", "done", 1, 1, 0, 1]), "LOST")
    check("sweep counters", c.cmd("HMGET", SW, "scanned", "moved", "bytes"), ["10", "3", "300"])
    done = record(1, "stable", "bbbb", outcome="finished", history="aaaa")
    check("sweep_finish before every backend is done",
          ev("sweep_finish", [SW, L], ["i1", "t1", "1", "2", "s1", "s2"] + done), ["NOT_DONE", "s1"])
    ev("sweep_save", [SW], ["i1", "t1", "s1", "0 17 0", "done", 1, 1, 0, 1])
    ev("sweep_save", [SW], ["i1", "t1", "s2", "0 0 0", "done", 1, 1, 0, 1])
    check("sweep_finish by another instance",
          ev("sweep_finish", [SW, L], ["i2", "t2", "1", "2", "s1", "s2"] + done), ["LOST"])
    check("sweep_finish", ev("sweep_finish", [SW, L], ["i1", "t1", "1", "2", "s1", "s2"] + done)[0],
          "OK")
    check("record after finish", c.cmd("HMGET", L, "epoch", "state", "from_digest", "history"),
          ["1", "stable", "bbbb", "aaaa"])
    check("sweep hash deleted", c.cmd("EXISTS", SW), 0)

    c.cmd("SET", "a", "1")
    c.cmd("SET", "b", "2")
    reserved = [L, LIVE, ACKS, SW, L2]
    check("client_dbsize leaves out reserved keys", (ev("client_dbsize", reserved, []),
                                                     c.cmd("DBSIZE")), (2, 6))
    keys = {ev("client_randomkey", reserved, ["__shardis:"]) for _ in range(50)}
    check("client_randomkey never a reserved key", sorted(keys), ["a", "b"])
    c.cmd("DEL", "a", "b")
    check("client_randomkey with only reserved keys", ev("client_randomkey", reserved,
                                                         ["__shardis:"]), None)
    c.cmd("FLUSHDB")
    check("record_undo of its own bootstrap", (ev("record_create", [L], r0),
                                               ev("record_undo", [L], ["aaaa", "i1"]),
                                               c.cmd("EXISTS", L)), (["OK"], "OK", 0))
    if failures:
        print("FAILED: %s" % ", ".join(failures))
        sys.exit(1)
    print("all %d scripts of the document behave as specified" % len(expected))


if __name__ == "__main__":
    main()
