"""redis-py battery.

Every client is made with ``redis.Redis(host=H, port=P)`` and nothing else, so
the library's defaults apply (redis-py 8: RESP3 with HELLO 3, CLIENT SETINFO,
a connection pool, no socket timeout); ``--protocol 2`` adds only
``protocol=2``.

    .venv/bin/python py/redis_py.py --host 127.0.0.1 --port 6379
    .venv/bin/python py/redis_py.py --protocol 2 --host 127.0.0.1 --port 6379

One line per case (``PASS name`` / ``FAIL name: reason``), then
``SUMMARY {json}``.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import socket
import sys
import threading
import time
import traceback

import redis

CASE_TIMEOUT_S = float(os.environ.get("COMPAT_CASE_TIMEOUT_MS", "15000")) / 1000


class Ctx:
    def __init__(self, args, name: str):
        self.args = args
        self.prefix = f"compat:{name}:{secrets.token_hex(4)}:"
        self.keys: list[str] = []
        self.closers = []

    def key(self, suffix: str) -> str:
        k = self.prefix + suffix
        self.keys.append(k)
        return k

    def tagged_key(self, tag: str, suffix: str) -> str:
        k = f"{{{self.prefix}{tag}}}:{suffix}"
        self.keys.append(k)
        return k

    def client(self) -> redis.Redis:
        kwargs = {"host": self.args.host, "port": self.args.port}
        if self.args.protocol:
            kwargs["protocol"] = self.args.protocol
        r = redis.Redis(**kwargs)
        self.closers.append(r.close)
        return r

    def pubsub(self, r: redis.Redis):
        p = r.pubsub()
        self.closers.append(p.close)
        return p


class Fail(Exception):
    pass


def check(cond, msg):
    if not cond:
        raise Fail(msg)


def short(v, limit=160):
    s = repr(v)
    return s if len(s) <= limit else s[:limit] + "..."


def check_eq(actual, expected, what):
    if actual != expected:
        raise Fail(f"{what}: expected {short(expected)}, got {short(actual)}")


def raw_del(host, port, keys, timeout=5.0):
    """Deletes keys with single-key DELs over a plain RESP2 socket: cleanup
    must work even when redis-py cannot talk to the server. Best effort."""
    if not keys:
        return
    out = bytearray()
    for k in keys:
        kb = k.encode()
        out += b"*2\r\n$3\r\nDEL\r\n$%d\r\n%s\r\n" % (len(kb), kb)
    try:
        with socket.create_connection((host, port), timeout=timeout) as s:
            s.sendall(out)
            lines = 0
            buf = b""
            while lines < len(keys):
                chunk = s.recv(65536)
                if not chunk:
                    break
                buf += chunk
                lines = buf.count(b"\r\n")
    except OSError:
        pass


CASES = []


def case(fn):
    CASES.append((fn.__name__, fn))
    return fn


@case
def connect_ping(ctx):
    r = ctx.client()
    check_eq(r.ping(), True, "PING")


@case
def pipeline_1000(ctx):
    r = ctx.client()
    n = 500
    keys = [ctx.key(f"p{i}") for i in range(n)]
    p = r.pipeline(transaction=False)
    for i, k in enumerate(keys):
        p.set(k, f"v{i}")
    for k in keys:
        p.get(k)
    res = p.execute()
    check_eq(len(res), 2 * n, "reply count")
    for i in range(n):
        check_eq(res[i], True, f"SET #{i}")
    for i in range(n):
        check_eq(res[n + i], f"v{i}".encode(), f"GET #{i} (order)")


@case
def pipeline_default_tx(ctx):
    """r.pipeline() with no arguments is transaction=True in redis-py: the
    1,000 commands go inside MULTI/EXEC, over keys on every shard."""
    r = ctx.client()
    n = 500
    keys = [ctx.key(f"p{i}") for i in range(n)]
    p = r.pipeline()
    for i, k in enumerate(keys):
        p.set(k, f"v{i}")
    for k in keys:
        p.get(k)
    res = p.execute()
    check_eq(len(res), 2 * n, "reply count")
    for i in range(n):
        check_eq(res[i], True, f"SET #{i}")
    for i in range(n):
        check_eq(res[n + i], f"v{i}".encode(), f"GET #{i} (order)")


@case
def mset_mget(ctx):
    r = ctx.client()
    keys = [ctx.key(f"m{i}") for i in range(30)]
    check_eq(r.mset({k: f"mv{i}" for i, k in enumerate(keys)}), True, "MSET")
    missing = ctx.key("missing")
    got = r.mget(keys[:15] + [missing] + keys[15:])
    want = [f"mv{i}".encode() for i in range(15)] + [None] + [f"mv{i}".encode() for i in range(15, 30)]
    check_eq(got, want, "MGET")


@case
def multi_exec(ctx):
    r = ctx.client()
    a = ctx.tagged_key("user:1", "a")
    b = ctx.tagged_key("user:1", "b")
    with r.pipeline(transaction=True) as p:
        p.set(a, "1").incr(a).set(b, "x").get(b)
        res = p.execute()
    check_eq(res, [True, 2, True, b"x"], "EXEC result")
    check_eq(r.mget([a, b]), [b"2", b"x"], "values after EXEC")


@case
def multi_exec_abort(ctx):
    r = ctx.client()
    a = ctx.tagged_key("user:1", "a")
    b = ctx.tagged_key("user:1", "b")
    err = res = None
    with r.pipeline(transaction=True) as p:
        p.set(a, "1")
        p.execute_command("SET", b)  # wrong arity: refused at queue time
        try:
            res = p.execute()
        except redis.RedisError as e:
            err = e
    check(err is not None, f"EXEC did not fail (got {short(res)})")
    # redis-py raises the queue-time error of the bad command (the server's
    # EXEC reply is EXECABORT).
    check(
        "EXECABORT" in str(err) or "wrong number of arguments" in str(err),
        f"expected EXECABORT or the queue-time error, got {type(err).__name__}: {err}",
    )
    check_eq(r.exists(a, b), 0, "keys written by an aborted transaction")


@case
def multi_watch_abort(ctx):
    r = ctx.client()
    other = ctx.client()
    a = ctx.tagged_key("user:1", "a")
    b = ctx.tagged_key("user:1", "b")
    check_eq(r.set(a, "orig"), True, "SET")
    err = None
    with r.pipeline() as p:
        p.watch(a)
        check_eq(other.set(a, "changed"), True, "SET from another connection")
        p.multi()
        p.set(a, "tx")
        p.set(b, "tx")
        try:
            p.execute()
        except redis.WatchError as e:
            err = e
    check(err is not None, "EXEC succeeded although a WATCHed key changed")
    check_eq(r.mget([a, b]), [b"changed", None], "values after aborted EXEC")


@case
def script_evalsha(ctx):
    r = ctx.client()
    k = ctx.key("lua")
    s = r.register_script(
        f"-- {secrets.token_hex(6)}\nredis.call('SET', KEYS[1], ARGV[1]); return redis.call('GET', KEYS[1])"
    )
    check_eq(s(keys=[k], args=["one"]), b"one", "first call (EVALSHA -> NOSCRIPT -> SCRIPT LOAD -> EVALSHA)")
    check_eq(s(keys=[k], args=["two"]), b"two", "second call (EVALSHA)")
    check_eq(r.get(k), b"two", "GET")
    # Keys on other shards: there the script is not loaded yet (NOSCRIPT).
    for i in range(6):
        other = ctx.key(f"lua{i}")
        check_eq(s(keys=[other], args=[f"v{i}"]), f"v{i}".encode(), f"call on key {i} (another shard)")


@case
def script_keyless(ctx):
    r = ctx.client()
    s = r.register_script(f"-- {secrets.token_hex(6)}\nreturn ARGV[1] .. '!'")
    check_eq(s(args=["hi"]), b"hi!", "first call")
    check_eq(s(args=["ho"]), b"ho!", "second call")


def write_scan_keys(r, ctx, n):
    keys = [ctx.key(f"s{i}") for i in range(n)]
    p = r.pipeline(transaction=False)
    for k in keys:
        p.set(k, "1")
    p.execute()
    return keys


def compare_scan(keys, seen):
    want, got = set(keys), set(seen)
    return sorted(want - got), sorted(got - want), len(seen) - len(got)


@case
def scan_iter(ctx):
    r = ctx.client()
    keys = write_scan_keys(r, ctx, 500)
    seen = [k.decode() for k in r.scan_iter(match=ctx.prefix + "*")]
    missing, extra, dups = compare_scan(keys, seen)
    check(
        not missing and not extra,
        f"{len(missing)} missing, {len(extra)} unexpected (e.g. {(missing + extra)[:3]}), {dups} duplicates",
    )


@case
def scan_iter_no_dups(ctx):
    r = ctx.client()
    keys = write_scan_keys(r, ctx, 500)
    seen = [k.decode() for k in r.scan_iter(match=ctx.prefix + "*")]
    missing, _, dups = compare_scan(keys, seen)
    check(dups == 0, f"{dups} duplicate keys in {len(seen)} returned (SCAN allows some; informational)")
    check(not missing, f"{len(missing)} keys missing")


def wait_message(p, kind, timeout=5.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        m = p.get_message(timeout=0.2)
        if m and m["type"] == kind:
            return m
    raise Fail(f"no {kind} message within {timeout:.0f} s")


@case
def subscribe(ctx):
    r = ctx.client()
    p = ctx.pubsub(r)
    ch = ctx.prefix + "chan"
    p.subscribe(ch)
    m = wait_message(p, "subscribe")
    check_eq(m["data"], 1, "SUBSCRIBE count")
    receivers = r.publish(ch, "hello")
    check(receivers >= 1, f"PUBLISH reached {receivers} subscribers")
    m = wait_message(p, "message")
    check_eq((m["channel"], m["data"]), (ch.encode(), b"hello"), "message")
    p.unsubscribe(ch)
    m = wait_message(p, "unsubscribe")
    check_eq(m["data"], 0, "UNSUBSCRIBE count")


@case
def psubscribe(ctx):
    r = ctx.client()
    p = ctx.pubsub(r)
    pattern = ctx.prefix + "news.*"
    ch = ctx.prefix + "news.sport"
    p.psubscribe(pattern)
    m = wait_message(p, "psubscribe")
    check_eq(m["data"], 1, "PSUBSCRIBE count")
    receivers = r.publish(ch, "goal")
    check(receivers >= 1, f"PUBLISH reached {receivers} subscribers")
    m = wait_message(p, "pmessage")
    check_eq((m["pattern"], m["channel"], m["data"]), (pattern.encode(), ch.encode(), b"goal"), "pmessage")
    p.punsubscribe(pattern)
    m = wait_message(p, "punsubscribe")
    check_eq(m["data"], 0, "PUNSUBSCRIBE count")


@case
def blpop_wakeup(ctx):
    blocker = ctx.client()
    pusher = ctx.client()
    k = ctx.key("list")
    check_eq(blocker.ping(), True, "PING")
    pushed = []

    def push():
        time.sleep(0.3)
        try:
            pushed.append(pusher.lpush(k, "job"))
        except Exception as e:  # reported below
            pushed.append(e)

    t = threading.Thread(target=push, daemon=True)
    started = time.monotonic()
    t.start()
    res = blocker.blpop([k], timeout=5)
    took = time.monotonic() - started
    t.join(5)
    check_eq(pushed, [1], "LPUSH")
    check_eq(list(res) if res is not None else None, [k.encode(), b"job"], "BLPOP reply")
    check(took < 4, f"BLPOP woke after {took:.2f} s")


@case
def blpop_timeout(ctx):
    r = ctx.client()
    k = ctx.key("empty")
    started = time.monotonic()
    res = r.blpop([k], timeout=1)
    took = time.monotonic() - started
    check_eq(res, None, "BLPOP reply on timeout")
    check(0.9 <= took < 4, f"BLPOP returned after {took:.2f} s, expected ~1")


@case
def info(ctx):
    r = ctx.client()
    check("redis_version" in r.info(), "INFO has no redis_version")
    check("redis_version" in r.info("server"), "INFO server has no redis_version")


@case
def client_setname_getname(ctx):
    r = ctx.client()
    name = f"compat-{secrets.token_hex(3)}"
    check(r.client_setname(name), "CLIENT SETNAME did not answer OK")
    got = r.client_getname()  # redis-py decodes this reply to str itself
    check_eq(got.decode() if isinstance(got, bytes) else got, name, "CLIENT GETNAME")


@case
def select_0(ctx):
    r = ctx.client()
    check_eq(r.execute_command("SELECT", 0), True, "SELECT 0")
    check_eq(r.ping(), True, "PING after SELECT")


@case
def dbsize(ctx):
    r = ctx.client()
    for i in range(3):
        r.set(ctx.key(f"d{i}"), "1")
    n = r.dbsize()
    check(isinstance(n, int) and n >= 3, f"DBSIZE answered {n!r}, expected an integer >= 3")


def reason_of(e: BaseException) -> str:
    if isinstance(e, Fail):
        return str(e)
    return f"{type(e).__name__}: {e}"


def run_case(args, name, fn):
    ctx = Ctx(args, name)
    outcome = {}

    def body():
        try:
            fn(ctx)
            outcome["ok"] = True
        except BaseException as e:  # noqa: BLE001 - every failure is a result
            outcome["ok"] = False
            outcome["reason"] = reason_of(e)
            if os.environ.get("COMPAT_DEBUG"):
                traceback.print_exc()

    started = time.monotonic()
    t = threading.Thread(target=body, daemon=True)
    t.start()
    t.join(CASE_TIMEOUT_S)
    if t.is_alive():
        outcome = {"ok": False, "reason": f"timed out after {CASE_TIMEOUT_S * 1000:.0f} ms"}
    # Closing the clients also unblocks a case thread stuck in a read.
    for close in ctx.closers:
        try:
            close()
        except Exception:  # noqa: BLE001 - a broken client may fail to close
            pass
    raw_del(args.host, args.port, ctx.keys)
    reason = " ".join(outcome.get("reason", "").split())
    if len(reason) > 300:
        reason = reason[:300] + "..."
    return {"name": name, "ok": outcome["ok"], "reason": reason, "ms": round((time.monotonic() - started) * 1000)}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=6379)
    ap.add_argument("--protocol", type=int, choices=[2, 3], help="pass protocol=N (default: redis-py's default)")
    ap.add_argument("--only", help="comma-separated case names")
    ap.add_argument("--json", help="also write the summary to this file")
    args = ap.parse_args()

    from redis.utils import DEFAULT_RESP_VERSION

    variant = f"protocol={args.protocol}" if args.protocol else "default"
    protocol = f"RESP{args.protocol or DEFAULT_RESP_VERSION}"
    target = f"{args.host}:{args.port}"
    print(f"# redis-py {redis.__version__} ({variant}, {protocol}) against {target}", flush=True)
    only = set(args.only.split(",")) if args.only else None
    results = []
    for name, fn in CASES:
        if only and name not in only:
            continue
        r = run_case(args, name, fn)
        results.append(r)
        print(f"PASS {name}" if r["ok"] else f"FAIL {name}: {r['reason']}", flush=True)
    summary = {
        "client": "redis-py",
        "version": redis.__version__,
        "variant": variant,
        "protocol": protocol,
        "target": target,
        "passed": sum(r["ok"] for r in results),
        "failed": sum(not r["ok"] for r in results),
        "cases": results,
    }
    line = json.dumps(summary)
    print(f"SUMMARY {line}", flush=True)
    if args.json:
        with open(args.json, "w") as f:
            f.write(line + "\n")
    sys.stdout.flush()
    # Daemon threads stuck on a dead server must not hold the exit.
    os._exit(0)


if __name__ == "__main__":
    main()
