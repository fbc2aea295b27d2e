#!/usr/bin/env python3
"""Captures the exact bytes a client library writes on connect.

A logging TCP relay sits between each client and a real redis-server. The
client connects through it with its default settings and then sends one user
command, ``GET __shardis_handshake_marker__``; everything it wrote before that
command is its handshake. Each fixture lists those commands as escaped RESP,
each followed by the reply redis-server gave.

    tests/compat/.venv/bin/python tests/compat/handshake/capture.py            # all clients
    tests/compat/.venv/bin/python tests/compat/handshake/capture.py redis-py ioredis
    ... --out DIR          (default tests/fixtures/handshakes)
    ... --redis-port P     (use this redis-server instead of starting one)
    ... --list             (the clients it knows)
    ... --check            (only check the fixtures' format)

Run it with the venv's python (redis-py must be importable for the redis-py
captures; the node clients come from tests/compat/node_modules).
"""

from __future__ import annotations

import argparse
import datetime
import hashlib
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
COMPAT = HERE.parent
ROOT = COMPAT.parent.parent
MARKER = "__shardis_handshake_marker__"
REPLY_DELAY_S = 0.1
# Replies longer than this (COMMAND DOCS: ~200 KiB) are cut in the fixture.
MAX_REPLY_BYTES = 8192
TRUNCATED_REPLY_BYTES = 1024


# --- RESP -----------------------------------------------------------------------

class Incomplete(Exception):
    pass


def _line(buf: bytes, i: int) -> tuple[bytes, int]:
    j = buf.find(b"\r\n", i)
    if j < 0:
        raise Incomplete
    return buf[i:j], j + 2


def skip_frame(buf: bytes, i: int) -> int:
    """Returns the offset just past the RESP2/RESP3 frame at buf[i:]."""
    if i >= len(buf):
        raise Incomplete
    t = buf[i:i + 1]
    head, j = _line(buf, i + 1)
    if t in (b"+", b"-", b":", b"_", b",", b"#", b"("):
        return j
    if t in (b"$", b"!", b"="):
        n = int(head)
        if n < 0:
            return j
        if len(buf) < j + n + 2:
            raise Incomplete
        return j + n + 2
    if t in (b"*", b"~", b">", b"%", b"|"):
        n = int(head)
        if n < 0:
            return j
        count = n * 2 if t in (b"%", b"|") else n
        for _ in range(count):
            j = skip_frame(buf, j)
        if t == b"|":  # an attribute precedes the reply it describes
            j = skip_frame(buf, j)
        return j
    # inline command (a client typing plain text)
    return j


def split_frames(buf: bytes) -> list[tuple[int, int]]:
    out, i = [], 0
    while i < len(buf):
        try:
            j = skip_frame(buf, i)
        except Incomplete:
            break
        out.append((i, j))
        i = j
    return out


def command_words(frame: bytes) -> list[bytes]:
    if not frame.startswith(b"*"):
        return frame.rstrip(b"\r\n").split()
    n, i = _line(frame, 1)
    words = []
    for _ in range(int(n)):
        ln, i = _line(frame, i + 1)
        words.append(frame[i:i + int(ln)])
        i += int(ln) + 2
    return words


def escape(b: bytes) -> str:
    out = []
    for c in b:
        if c == 0x0D:
            out.append("\\r")
        elif c == 0x0A:
            out.append("\\n")
        elif c == 0x09:
            out.append("\\t")
        elif c == 0x5C:
            out.append("\\\\")
        elif 0x20 <= c < 0x7F:
            out.append(chr(c))
        else:
            out.append(f"\\x{c:02x}")
    return "".join(out)


def unescape(s: str) -> bytes:
    """Inverse of escape(); the fixture README documents the same rules."""
    out, i = bytearray(), 0
    while i < len(s):
        ch = s[i]
        if ch != "\\":
            out += ch.encode()
            i += 1
            continue
        nxt = s[i + 1]
        if nxt == "x":
            out.append(int(s[i + 2:i + 4], 16))
            i += 4
        else:
            out += {"r": b"\r", "n": b"\n", "t": b"\t", "\\": b"\\"}[nxt]
            i += 2
    return bytes(out)


# --- relay ----------------------------------------------------------------------

class Relay:
    """Accepts clients on a free port and pipes each to the upstream server,
    logging every chunk in both directions, in one global order."""

    def __init__(self, upstream_port: int):
        self.upstream_port = upstream_port
        self.lock = threading.Lock()
        self.events: list[tuple[int, str, bytes]] = []  # (conn, "c2s"/"s2c", bytes)
        self.conns = 0
        self.srv = socket.socket()
        self.srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.srv.bind(("127.0.0.1", 0))
        self.srv.listen(16)
        self.port = self.srv.getsockname()[1]
        self.closed = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while not self.closed:
            try:
                c, _ = self.srv.accept()
            except OSError:
                return
            with self.lock:
                self.conns += 1
                cid = self.conns
            u = socket.create_connection(("127.0.0.1", self.upstream_port))
            for s in (c, u):
                s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            threading.Thread(target=self._pump, args=(cid, "c2s", c, u), daemon=True).start()
            threading.Thread(target=self._pump, args=(cid, "s2c", u, c), daemon=True).start()

    def _pump(self, cid, direction, src, dst):
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                if direction == "s2c":
                    # Replies are held back a little, so that a command the
                    # client writes without waiting for the previous reply
                    # is logged before that reply.
                    time.sleep(REPLY_DELAY_S)
                # Log before forwarding, so that a reply is always logged
                # before anything the client sends after reading it.
                with self.lock:
                    self.events.append((cid, direction, data))
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def close(self):
        self.closed = True
        self.srv.close()


def analyse(events, cid):
    """Splits connection cid's traffic into commands (with the number of
    complete replies the client had been sent before writing each one, and
    the write it came in) and replies."""
    c2s = bytearray()
    s2c = bytearray()
    cmd_meta = []  # (start offset in c2s, replies before, write number)
    writes = 0
    for conn, direction, data in events:
        if conn != cid:
            continue
        if direction == "s2c":
            s2c += data
        else:
            writes += 1
            replies_before = len(split_frames(bytes(s2c)))
            cmd_meta.append((len(c2s), replies_before, writes))
            c2s += data
    commands = []
    for start, end in split_frames(bytes(c2s)):
        # the write that carried the command's first byte
        meta = max((m for m in cmd_meta if m[0] <= start), key=lambda m: m[0])
        commands.append({"raw": bytes(c2s[start:end]), "replies_before": meta[1], "write": meta[2]})
    replies = [bytes(s2c[a:b]) for a, b in split_frames(bytes(s2c))]
    return commands, replies


# --- clients --------------------------------------------------------------------

def node_version(pkg: str) -> str:
    return json.loads((COMPAT / "node_modules" / pkg / "package.json").read_text())["version"]


def py_version() -> str:
    import redis

    return redis.__version__


def cli_version() -> str:
    out = subprocess.run(["redis-cli", "--version"], capture_output=True, text=True).stdout
    return out.split()[1] if out else "?"


NODE_REDIS = """
const { createClient } = require('redis');
(async () => {
  const opts = { socket: { host: '127.0.0.1', port: PORT } };
  EXTRA
  const c = createClient(opts);
  c.on('error', (e) => { console.error(e.message); process.exit(1); });
  await c.connect();
  await c.get('MARKER');
  await c.close();
})();
"""

IOREDIS = """
const mod = require('MODULE');
const Redis = mod.default || mod.Redis || mod;
(async () => {
  const opts = { host: '127.0.0.1', port: PORT };
  EXTRA
  const r = new Redis(opts);
  await r.get('MARKER');
  await r.quit();
})();
"""

REDIS_PY = """
import redis
r = redis.Redis(host='127.0.0.1', port=PORT EXTRA)
r.get('MARKER')
r.close()
"""


def js(template, **subs):
    def build(port):
        src = template
        for k, v in {**subs, "PORT": str(port), "MARKER": MARKER}.items():
            src = src.replace(k, v)
        return ["node", "-e", src]
    return build


def py(extra):
    def build(port):
        src = REDIS_PY.replace("PORT", str(port)).replace("EXTRA", extra).replace("MARKER", MARKER)
        return [sys.executable, "-c", src]
    return build


def cli(*flags):
    def build(port):
        return ["redis-cli", "-h", "127.0.0.1", "-p", str(port), *flags, "GET", MARKER]
    return build


# name -> (library label, version getter, settings note, argv builder)
CLIENTS = {
    "redis-py": ("redis-py", py_version, "redis.Redis(host, port): defaults (protocol unset = RESP3 in 8.x)", py("")),
    "redis-py-resp2": ("redis-py", py_version, "redis.Redis(host, port, protocol=2)", py(", protocol=2")),
    "node-redis": ("node-redis (npm `redis`)", lambda: node_version("redis"),
                   "createClient({ socket: { host, port } }): defaults (RESP3)", js(NODE_REDIS, EXTRA="")),
    "node-redis-resp2": ("node-redis (npm `redis`)", lambda: node_version("redis"),
                         "createClient({ socket: { host, port }, RESP: 2 })", js(NODE_REDIS, EXTRA="opts.RESP = 2;")),
    "ioredis": ("ioredis", lambda: node_version("ioredis"), "new Redis({ host, port }): defaults",
                js(IOREDIS, MODULE="ioredis", EXTRA="")),
    "ioredis6": ("ioredis", lambda: node_version("ioredis6"),
                 "new Redis({ host, port }): defaults (protocol: 3 in 6.x)", js(IOREDIS, MODULE="ioredis6", EXTRA="")),
    "redis-cli": ("redis-cli", cli_version, f"redis-cli -h HOST -p PORT GET {MARKER} (one-shot, not interactive)", cli()),
    "redis-cli-3": ("redis-cli", cli_version, f"redis-cli -3 -h HOST -p PORT GET {MARKER} (one-shot, not interactive)",
                    cli("-3")),
}


def cli_interactive(*flags):
    """redis-cli with a terminal (it reads commands from a pty), which is
    what a person typing at it gets; non-interactive runs differ."""
    def build(port):
        src = f"""
import os, pty, select, sys, time
pid, fd = pty.fork()
if pid == 0:
    os.execvp("redis-cli", ["redis-cli", "-h", "127.0.0.1", "-p", "{port}", *{list(flags)!r}])
def drain(t):
    end = time.time() + t
    while time.time() < end:
        r, _, _ = select.select([fd], [], [], 0.05)
        if r:
            try:
                data = os.read(fd, 65536)
            except OSError:
                return
            if b"\\x1b[6n" in data:  # linenoise asks where the cursor is
                os.write(fd, b"\\x1b[1;1R")
time.sleep(1.0); drain(0.5)
os.write(fd, b"GET {MARKER}\\r"); time.sleep(0.5); drain(0.5)
os.write(fd, b"quit\\r"); drain(1.0)
os.waitpid(pid, 0)
"""
        return [sys.executable, "-c", src]
    return build


CLIENTS["redis-cli-interactive"] = (
    "redis-cli", cli_version, "redis-cli -h HOST -p PORT, interactive (on a terminal), then GET typed in", cli_interactive())
CLIENTS["redis-cli-3-interactive"] = (
    "redis-cli", cli_version, "redis-cli -3 -h HOST -p PORT, interactive (on a terminal), then GET typed in",
    cli_interactive("-3"))


# --- reconstructed clients --------------------------------------------------------
#
# Lettuce (Java) and go-redis (Go) cannot be installed here (no Maven Central,
# no Go toolchain), so their handshakes were reconstructed from their source
# code. A small replay client sends exactly those bytes, write by write,
# waiting for every reply of a write before the next one as the library does,
# so the replies in the fixture are still what redis-server really answered.

REPLAY = """
import json, socket, sys
writes = json.loads(sys.argv[2])
def enc(args):
    out = b"*%d\\r\\n" % len(args)
    for a in args:
        a = a.encode()
        out += b"$%d\\r\\n%s\\r\\n" % (len(a), a)
    return out
sys.path.insert(0, sys.argv[3])
from capture import skip_frame, Incomplete
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])))
buf = b""
def read_replies(n):
    global buf
    got = 0
    while got < n:
        try:
            end = skip_frame(buf, 0)
        except Incomplete:
            chunk = s.recv(65536)
            if not chunk:
                raise SystemExit("connection closed")
            buf += chunk
            continue
        buf = buf[end:]
        got += 1
for group in writes:
    s.sendall(b"".join(enc(c) for c in group))
    read_replies(len(group))
s.sendall(enc(["GET", "MARKER"]))
read_replies(1)
s.close()
"""


def replay(writes):
    def build(port):
        return [sys.executable, "-c", REPLAY.replace("MARKER", MARKER), str(port), json.dumps(writes), str(HERE)]
    return build


# Values that depend on the build: stated in each fixture's notes.
LETTUCE_VERSION = "6.5.1.RELEASE"
GO_REDIS_VERSION = "9.23.0"
GO_VERSION = "go1.26.8"

NOTES = {
    "lettuce": [
        "RECONSTRUCTED from source, not captured from a running Lettuce: the request bytes below",
        "were written by a replay client following Lettuce's code; the replies are redis-server's.",
        "Source: redis/lettuce src/main/java/io/lettuce/core/RedisHandshake.java (initialize():",
        "  protocolVersion unset -> tryHandshakeResp3; applyPostHandshake; applyConnectionMetadataSafely),",
        "  RedisCommandBuilder.hello()/clientSetinfo(), RedisURIBuilder (libraryName = LettuceVersion.getName()",
        "  = \"Lettuce\", libraryVersion = the jar's Implementation-Version), ClientOptions defaults.",
        "Settings: RedisClient.create(\"redis://HOST:PORT\").connect(): defaults (protocol unset = try RESP3).",
        "Sequence: HELLO 3 alone (AUTH/SETNAME only when a password / client name is set); after its",
        "  reply, SELECT/READONLY only when configured (not by default); then CLIENT SETINFO lib-name and",
        "  lib-ver written together, their errors ignored (6.5+; 6.4 failed the connection on them,",
        f"  6.3 sent them only when HELLO reported version >= 7.2, 6.0-6.2 not at all). lib-ver shown as",
        f"  {LETTUCE_VERSION}; it is whatever the jar says.",
        "Fallback: Lettuce 6.0-6.2.x falls back to RESP2 (then sends PING, pingBeforeActivateConnection)",
        "  only when HELLO answers an error starting 'ERR unknown command'; -NOPROTO fails the connection",
        "  (lettuce issues #2170, #2455). Current sources (7.x) also fall back on NOPROTO, and 7.x adds",
        "  CLIENT MAINT_NOTIFICATIONS on moving-endpoint-type ... after SETINFO when configured.",
    ],
    "go-redis": [
        "RECONSTRUCTED from source, not captured from a running go-redis: the request bytes below",
        "were written by a replay client following go-redis's code; the replies are redis-server's.",
        "Source: redis/go-redis redis.go (baseClient.initConn), commands.go (Hello, ClientSetInfo:",
        "  LIB-NAME = fmt.Sprintf(\"go-redis(%s,%s)\", IdentitySuffix, runtime.Version())), options.go",
        "  (Protocol defaults to 3, MaintNotificationsConfig defaults to ModeAuto), maintnotifications",
        "  DetectEndpointType (a loopback IP without TLS -> internal-ip).",
        "Settings: redis.NewClient(&redis.Options{Addr: \"HOST:PORT\"}): defaults. Commands are lower case.",
        "Sequence: hello 3 alone; SELECT/READONLY/CLIENT SETNAME/CLIENT TRACKING only when configured",
        "  (none by default); client maint_notifications on ... alone (v9.15+, ModeAuto: an error",
        "  reply just turns the feature off for the client; since PR #3788 it is skipped when HELLO",
        "  failed); then CLIENT SETINFO LIB-NAME and LIB-VER pipelined in one write, Redis errors ignored.",
        f"  LIB-VER shown as {GO_REDIS_VERSION} (the newest v9 on the Go proxy when written) and runtime.Version() as",
        f"  {GO_VERSION}; both depend on the build.",
        "Fallback: when HELLO gets any Redis error reply (NOPROTO included), current v9 continues in",
        "  RESP2 (AUTH sent separately if a password is set); v9.0.x only did so for 'ERR unknown",
        "  command' and 'NOAUTH' errors and failed on anything else.",
    ],
}

CLIENTS["lettuce"] = (
    "Lettuce (Java)", lambda: LETTUCE_VERSION, "see the notes", replay([
        [["HELLO", "3"]],
        [["CLIENT", "SETINFO", "lib-name", "Lettuce"], ["CLIENT", "SETINFO", "lib-ver", LETTUCE_VERSION]],
    ]))
CLIENTS["go-redis"] = (
    "go-redis v9 (Go)", lambda: GO_REDIS_VERSION, "see the notes", replay([
        [["hello", "3"]],
        [["client", "maint_notifications", "on", "moving-endpoint-type", "internal-ip"]],
        [["client", "setinfo", "LIB-NAME", f"go-redis(,{GO_VERSION})"],
         ["client", "setinfo", "LIB-VER", GO_REDIS_VERSION]],
    ]))


def redis_version(port: int) -> str:
    with socket.create_connection(("127.0.0.1", port)) as s:
        s.sendall(b"*2\r\n$4\r\nINFO\r\n$6\r\nserver\r\n")
        buf = b""
        while True:
            buf += s.recv(65536)
            try:
                end = skip_frame(buf, 0)
                break
            except Incomplete:
                continue
    for line in buf[:end].decode().splitlines():
        if line.startswith("redis_version:"):
            return line.split(":", 1)[1]
    return "?"


def capture(name: str, upstream_port: int, out_dir: Path, server_version: str) -> Path:
    label, version_of, settings, build = CLIENTS[name]
    relay = Relay(upstream_port)
    argv = build(relay.port)
    proc = subprocess.run(argv, cwd=COMPAT, capture_output=True, text=True, timeout=60)
    time.sleep(0.2)  # let the relay log the last chunks
    relay.close()
    if proc.returncode != 0:
        raise RuntimeError(f"{name}: client exited {proc.returncode}: {proc.stderr.strip()[-500:]}")
    with relay.lock:
        events = list(relay.events)
    # The connection that carried the marker; any others are noted.
    conns = sorted({cid for cid, _, _ in events})
    target = None
    for cid in conns:
        cmds, _ = analyse(events, cid)
        if any(MARKER.encode() in c["raw"] for c in cmds):
            target = cid
            break
    if target is None:
        raise RuntimeError(f"{name}: no connection carried the marker command")
    cmds, replies = analyse(events, target)
    marker_at = next(i for i, c in enumerate(cmds) if MARKER.encode() in c["raw"])
    handshake = cmds[:marker_at]

    version = version_of()
    lines = [f"# client: {label} {version}"]
    if name in NOTES:
        lines += [f"# {n}" for n in NOTES[name]]
        lines.append(f"# replies recorded: {datetime.date.today().isoformat()} by tests/compat/handshake/capture.py "
                     f"through its logging relay, from redis-server {server_version}")
    else:
        lines += [
            f"# settings: {settings}",
            f"# captured: {datetime.date.today().isoformat()} by tests/compat/handshake/capture.py, a logging TCP relay",
            f"#   between the client and redis-server {server_version} (started with --save '' --appendonly no)",
        ]
    lines += [
        f"# connections opened: {len(conns)}; shown: the one that sent the first user command",
        f"#   (GET {MARKER}); the handshake is everything written on it before that command.",
        f"# commands in the handshake: {len(handshake)}",
        "# Each '>' line is one command as sent, each '<' line the reply redis-server gave to it.",
        "# 'write N': the socket write (as read by the relay) that carried the command; 'after R",
        f"# replies': how many replies the client had received when it wrote it. The relay holds each",
        f"# reply back {REPLY_DELAY_S * 1000:.0f} ms, so a command written without waiting for the reply before",
        "# it shows R smaller than its own position (commands sharing an R were pipelined).",
        "",
    ]
    if not handshake:
        lines.append("# (no handshake: the first thing written is the user command)")
    for i, c in enumerate(handshake):
        words = " ".join(w.decode("utf-8", "replace") for w in command_words(c["raw"]))
        lines.append(f"# {i + 1}. {words}   [write {c['write']}, after {c['replies_before']} replies]")
        lines.append(f"> {escape(c['raw'])}")
        if i >= len(replies):
            lines.append("# (no reply before the connection closed)")
        elif len(replies[i]) > MAX_REPLY_BYTES:
            r = replies[i]
            lines.append(f"# reply truncated: {len(r)} bytes, sha256 {hashlib.sha256(r).hexdigest()}; "
                         f"the first {TRUNCATED_REPLY_BYTES} shown")
            lines.append(f"<~ {escape(r[:TRUNCATED_REPLY_BYTES])}")
        else:
            lines.append(f"< {escape(replies[i])}")
    lines.append("")
    path = out_dir / f"{name}.txt"
    path.write_text("\n".join(lines))
    return path


def check_fixture(path: Path) -> list[str]:
    """Problems with a fixture file's format (empty when it is well formed)."""
    problems = []
    pending_request = False
    for n, line in enumerate(path.read_text().splitlines(), 1):
        if not line or line.startswith("#"):
            continue
        kind, _, body = line.partition(" ")
        if kind not in (">", "<", "<~"):
            problems.append(f"{path.name}:{n}: unknown line kind {kind!r}")
            continue
        data = unescape(body)
        if kind in (">", "<"):
            frames = split_frames(data)
            if len(frames) != 1 or frames[0] != (0, len(data)):
                problems.append(f"{path.name}:{n}: not exactly one RESP frame")
        if kind == ">":
            if pending_request:
                problems.append(f"{path.name}:{n}: request without a reply before it")
            pending_request = True
        else:
            if not pending_request:
                problems.append(f"{path.name}:{n}: reply without a request")
            pending_request = False
    return problems


def start_redis(workdir: Path) -> tuple[subprocess.Popen, int]:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    proc = subprocess.Popen(
        ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
         "--dir", str(workdir)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return proc, port
        except OSError:
            time.sleep(0.05)
    proc.kill()
    raise RuntimeError("redis-server did not start")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("clients", nargs="*", help="default: all")
    ap.add_argument("--out", type=Path, default=ROOT / "tests" / "fixtures" / "handshakes")
    ap.add_argument("--redis-port", type=int)
    ap.add_argument("--list", action="store_true")
    ap.add_argument("--check", action="store_true", help="only check the format of the fixtures in --out")
    args = ap.parse_args()
    if args.check:
        problems = [p for f in sorted(args.out.glob("*.txt")) for p in check_fixture(f)]
        print("\n".join(problems) or f"{len(list(args.out.glob('*.txt')))} fixtures well formed")
        sys.exit(1 if problems else 0)
    if args.list:
        for n, (label, _, settings, _) in CLIENTS.items():
            print(f"{n:18} {settings}")
        return
    names = args.clients or list(CLIENTS)
    for n in names:
        if n not in CLIENTS:
            sys.exit(f"capture: unknown client {n} (--list shows them)")
    args.out.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="shardis-handshake."))
    proc = None
    try:
        if args.redis_port:
            port = args.redis_port
        else:
            proc, port = start_redis(work)
        server_version = redis_version(port)
        failed = 0
        for n in names:
            try:
                print(f"captured {capture(n, port, args.out, server_version)}")
            except Exception as e:  # noqa: BLE001 - report and go on with the others
                failed += 1
                print(f"capture: {e}", file=sys.stderr)
        sys.exit(1 if failed else 0)
    finally:
        if proc:
            proc.terminate()
            proc.wait(5)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
