#!/usr/bin/env python3
"""Generates src/protocol/redis_commands.rs from a running redis-server's COMMAND reply.

    python3 scripts/gen-commands.py [--port 6379] > src/protocol/redis_commands.rs

The generated table holds what Redis says of each command and subcommand: arity, flags, ACL
categories and legacy key positions. shardis decides how to serve each command in
src/protocol/table.rs; this file only describes them, so that arity checks, ACL categories and
read/write flags are Redis's own. Regenerate it against the Redis version shardis targets
(the file header names it) and review the diff. Only the Python standard library is used.
"""

import argparse
import socket
import sys

FLAGS = ["write", "readonly", "denyoom", "admin", "pubsub", "noscript", "blocking", "loading",
         "stale", "skip_monitor", "skip_slowlog", "fast", "no_auth", "may_replicate",
         "no_mandatory_keys", "movablekeys", "no_multi", "allow_busy", "module",
         "no_async_loading", "asking"]
CATEGORIES = ["keyspace", "read", "write", "set", "sortedset", "list", "hash", "string", "bitmap",
              "hyperloglog", "geo", "stream", "pubsub", "admin", "fast", "slow", "blocking",
              "dangerous", "connection", "transaction", "scripting"]


def encode(*args):
    out = [b"*%d\r\n" % len(args)]
    for a in args:
        a = a.encode() if isinstance(a, str) else a
        out.append(b"$%d\r\n%s\r\n" % (len(a), a))
    return b"".join(out)


def read(f):
    line = f.readline()
    kind, rest = line[:1], line[1:-2]
    if kind in (b"+", b"-"):
        return rest.decode()
    if kind == b":":
        return int(rest)
    if kind == b"$":
        n = int(rest)
        if n < 0:
            return None
        data = f.read(n + 2)[:-2]
        return data.decode()
    if kind in (b"*", b"~", b"%"):
        n = int(rest)
        if kind == b"%":
            n *= 2
        return [read(f) for _ in range(n)]
    raise ValueError(f"unexpected reply {line!r}")


def kv(pairs):
    """A flat [name, value, name, value, ...] reply as a dict."""
    return dict(zip(pairs[::2], pairs[1::2])) if pairs else {}


ACCESS = {"": "access::KEY", "R": "access::R", "W": "access::W", "RW": "access::RW"}


def access_of(flags):
    """What Redis's ACL check asks of a key pattern for a key spec with these flags."""
    read = "access" in flags
    write = bool({"insert", "delete", "update"} & set(flags))
    return ("R" if read else "") + ("W" if write else "")


def key_access(name, specs):
    """The command's key access as `KeyAccess` Rust code.

    Keys before argument `split` need `first`, the others `rest`. Every multi-spec command of
    Redis 7 has a first spec for one key at a fixed index followed by specs for the keys after
    it; the script checks that this still holds. Specs that are not keys (shard channels), and
    SORT's BY/GET spec (its keys come out of a pattern, not the arguments; shardis checks those
    options separately, as Redis does) are left out.
    """
    keyed = []
    for spec in specs:
        d = kv(spec)
        flags = d["flags"]
        if "not_key" in flags:
            continue
        begin = kv(d["begin_search"])
        if begin["type"] == "unknown" and access_of(flags) == "R" and name in ("sort", "sort_ro"):
            continue
        keyed.append((access_of(flags), begin, kv(d["find_keys"]), "variable_flags" in flags))
    if not keyed:
        return "KeyAccess::NONE"
    variable = any(v for *_, v in keyed)
    first = keyed[0][0]
    if len(keyed) == 1:
        code = f"KeyAccess::all({ACCESS[first]})"
    else:
        begin, find = keyed[0][1], keyed[0][2]
        spec = kv(begin["spec"])
        if begin["type"] != "index" or find["type"] != "range" or kv(find["spec"])["lastkey"] != 0:
            sys.exit(f"{name}: the first of several key specs is not one key at an index")
        rest = "".join(sorted(set("".join(k[0] for k in keyed[1:]))))
        code = f"KeyAccess::split({ACCESS[first]}, {spec['index'] + 1}, {ACCESS[rest]})"
    return code + (".variable()" if variable else "")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=6379)
    args = ap.parse_args()
    s = socket.create_connection((args.host, args.port))
    f = s.makefile("rb")
    s.sendall(encode("INFO", "server"))
    info = read(f)
    version = next(l.split(":", 1)[1] for l in info.splitlines() if l.startswith("redis_version:"))
    s.sendall(encode("COMMAND"))
    commands = read(f)
    rows = []

    def add(entry):
        name, arity, flags, first, last, step, acl = entry[:7]
        for f_ in flags:
            if f_ not in FLAGS:
                sys.exit(f"unknown flag {f_!r} of {name}: add it to FLAGS and to command.rs")
        cats = [c.lstrip("@") for c in acl]
        for c in cats:
            if c not in CATEGORIES:
                sys.exit(f"unknown ACL category {c!r} of {name}")
        keys = key_access(name.lower(), entry[8] if len(entry) > 8 else [])
        rows.append((name.lower(), arity, flags, cats, first, last, step, keys))
        for sub in (entry[9] if len(entry) > 9 else []) or []:
            add(sub)

    for entry in commands:
        add(entry)
    rows.sort()
    out = sys.stdout
    out.write(f"""// @generated by scripts/gen-commands.py from redis-server {version}'s COMMAND reply.
// Do not edit: regenerate against the Redis version shardis targets and review the diff.

//! What Redis {version} says of each command and subcommand ("parent|sub"): arity, flags,
//! ACL categories, legacy key positions (first, last, step), and the access its keys need
//! under ACL key patterns. Sorted by name.

use super::command::{{KeyAccess, RedisCommand, access, acl, flag}};

/// The Redis version this table was generated from.
pub const REDIS_VERSION: &str = "{version}";

#[rustfmt::skip]
pub static REDIS_COMMANDS: &[RedisCommand] = &[
""")
    for name, arity, flags, cats, first, last, step, keys in rows:
        fl = " | ".join(f"flag::{f.upper()}" for f in flags) or "0"
        ca = " | ".join(f"acl::{c.upper()}" for c in cats) or "0"
        out.write(f"    RedisCommand {{ name: {name!r}, arity: {arity}, flags: {fl}, acl: {ca}, "
                  f"first: {first}, last: {last}, step: {step}, key_access: {keys} }},\n"
                  .replace("'", '"'))
    out.write("];\n")


if __name__ == "__main__":
    main()
