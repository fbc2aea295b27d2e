#!/usr/bin/env python3
"""Runs Redis's own Tcl test suite (Redis 7.0.15, external mode) against a
direct redis-server, shardis in front of N redis-servers, or twemproxy
(nutcracker) in front of N redis-servers, and reports pass/fail per unit file
and every failing test with its first error line, grouped by cause.

Called through scripts/redis-suite.sh; see --help. Standard library only.

What it does, in order:
  1. Makes sure a copy of the suite is cached in .redis-suite/ (gitignored).
     When missing it is taken from Debian's `redis` source package for the
     installed redis-server version with `apt-get source`, which may install
     dpkg-dev and tcl and add a deb-src entry (see ensure_suite), or copied
     from a Redis source tree given with --suite-src. The cached copy gets one
     patch, scripts/redis-suite-backends.patch (read it: it only lets the
     per-block setup go to the backends, and only for the proxy targets).
  2. Starts the redis-server backends and the target (shardis or nutcracker)
     on free loopback ports, each in its own process group.
  3. Runs each unit file on its own (`runtest --host --port --singledb
     --durable --clients 1 --tags ... --single FILE`) with a timeout, and
     parses its output.
  4. Prints a table and the failures grouped by cause, writes --json.
  5. Stops every process it started, on Ctrl-C and SIGTERM too.
"""

from __future__ import annotations

import argparse
import collections
import datetime
import hashlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
HOST = "127.0.0.1"
CACHE = REPO / ".redis-suite"
PATCH = REPO / "scripts" / "redis-suite-backends.patch"
SUITE_VERSION = "7.0.15"

# The 15 unit files: the data types, expire, keyspace, protocol, pub/sub,
# MULTI, scripting, INFO and AUTH. unit/auth and unit/info are tagged
# external:skip as a whole in 7.0.15, so they run no test in external mode;
# they stay in the list so that the set matches the calibration.
DEFAULT_FILES = [
    "unit/type/string",
    "unit/type/incr",
    "unit/type/list",
    "unit/type/set",
    "unit/type/zset",
    "unit/type/hash",
    "unit/type/stream",
    "unit/expire",
    "unit/keyspace",
    "unit/protocol",
    "unit/pubsub",
    "unit/multi",
    "unit/scripting",
    "unit/info",
    "unit/auth",
]

# Tests that need what no external server under test is asked to offer here:
# DEBUG, replication, CONFIG SET maxmemory, SAVE, RESET, CONFIG RESETSTAT,
# latency monitor, a local process, PFDEBUG. And -resp3, the suite's own switch
# (read in unit/type/list and unit/type/zset only) that leaves out the RESP3
# half of two `foreach resp {3 2}` loops (7 tests on a direct redis-server):
# those loops send HELLO 3 outside any test, so through a RESP2-only proxy the
# error would abort the rest of the block (about 200 list tests). HELLO 3 is
# still exercised by the tests that send it themselves.
DEFAULT_TAGS = (
    "-needs:debug -needs:repl -needs:config-maxmemory -needs:save -needs:reset "
    "-needs:config-resetstat -needs:latency -needs:local-process -needs:pfdebug -resp3"
)

START_DEADLINE_S = 10.0
STOP_DEADLINE_S = 5.0


class SuiteError(Exception):
    """A failure that ends the run with a message and no traceback."""


def say(msg: str):
    print(f"redis-suite: {msg}", flush=True)


# --- fetching the suite ---------------------------------------------------------------------


def run(argv: list[str], **kw) -> subprocess.CompletedProcess:
    return subprocess.run(argv, text=True, **kw)


def as_root(argv: list[str]) -> list[str]:
    if os.geteuid() == 0:
        return argv
    if shutil.which("sudo"):
        return ["sudo", "-n", *argv] if not sys.stdin.isatty() else ["sudo", *argv]
    raise SuiteError(f"need root (or sudo) to run: {' '.join(argv)}")


def apt_install(packages: list[str]):
    say(f"installing Debian packages: {' '.join(packages)} (apt-get install)")
    cmd = as_root(["env", "DEBIAN_FRONTEND=noninteractive", "apt-get", "install", "-y", "-q",
                   "--no-install-recommends", *packages])
    if run(cmd).returncode != 0:
        say("install failed; refreshing package lists (apt-get update) and retrying")
        run(as_root(["apt-get", "update", "-q"]))
        if run(cmd).returncode != 0:
            raise SuiteError(f"could not install {' '.join(packages)}")


def tclsh_ok() -> bool:
    # runtest looks for tclsh8.5, tclsh8.6 or tclsh8.7 by these names.
    return any(shutil.which(f"tclsh{v}") for v in ("8.5", "8.6", "8.7"))


def add_deb_src():
    """Adds deb-src entries mirroring the machine's deb entries, in a file of its own."""
    d = Path("/etc/apt/sources.list.d")
    stanzas = []
    for f in sorted(d.glob("*.sources")):
        for stanza in re.split(r"\n\s*\n", f.read_text()):
            if re.search(r"^Types:.*\bdeb\b", stanza, re.M) and not re.search(r"^Enabled:\s*no", stanza, re.M | re.I):
                stanzas.append(re.sub(r"^Types:.*$", "Types: deb-src", stanza.strip(), flags=re.M))
    if stanzas:
        target = d / "redis-suite-src.sources"
        text = "# added by shardis scripts/redis-suite.sh to fetch Redis's test suite (apt-get source redis)\n"
        text += "\n\n".join(stanzas) + "\n"
    else:
        lines = []
        for f in [Path("/etc/apt/sources.list"), *sorted(d.glob("*.list"))]:
            if f.exists():
                lines += [re.sub(r"^deb\s", "deb-src ", ln) for ln in f.read_text().splitlines()
                          if re.match(r"^deb\s", ln)]
        if not lines:
            raise SuiteError("no Debian package sources found to copy as deb-src")
        target = d / "redis-suite-src.list"
        text = "# added by shardis scripts/redis-suite.sh to fetch Redis's test suite\n" + "\n".join(lines) + "\n"
    say(f"adding deb-src entries in {target}, then apt-get update")
    tmp = Path(tempfile.mkstemp()[1])
    tmp.write_text(text)
    if run(as_root(["install", "-m", "0644", str(tmp), str(target)])).returncode != 0:
        raise SuiteError(f"could not write {target}")
    tmp.unlink()
    if run(as_root(["apt-get", "update", "-q"])).returncode != 0:
        raise SuiteError("apt-get update failed")


def patch_tree(tree: Path):
    say(f"applying {PATCH.relative_to(REPO)} to {tree}")
    if run(["patch", "-p1", "-N", "-s", "-d", str(tree), "-i", str(PATCH)]).returncode != 0:
        raise SuiteError(f"could not apply {PATCH}")


def patch_id() -> str:
    return hashlib.sha256(PATCH.read_bytes()).hexdigest()[:16]


def copy_suite(src: Path, dest: Path):
    """Copies what runtest needs (runtest and tests/) from a Redis source tree."""
    shutil.rmtree(dest, ignore_errors=True)
    dest.mkdir(parents=True)
    shutil.copy2(src / "runtest", dest / "runtest")
    shutil.copytree(src / "tests", dest / "tests", symlinks=True)
    (dest / "tests" / "tmp").mkdir(exist_ok=True)


def fetch_debian_source(pristine: Path, need: list[str]):
    """apt-get source redis (the installed redis-server's version) into `pristine`."""
    say(f"Redis's test suite is not cached in {pristine}; fetching it from Debian's source package 'redis'")
    if not shutil.which("apt-get"):
        raise SuiteError("no apt-get: pass --suite-src DIR, an unpacked Redis 7.0.15 source tree")
    if not shutil.which("dpkg-source"):
        need.append("dpkg-dev")
    if need:
        apt_install(need)
        need.clear()
    q = run(["dpkg-query", "-W", "-f=${Version}", "redis-server"], capture_output=True)
    version = q.stdout.strip() if q.returncode == 0 else ""
    if version and not version.split(":")[-1].startswith(SUITE_VERSION):
        say(f"warning: the installed redis-server is {version}, not {SUITE_VERSION}")
    spec = f"redis={version}" if version else "redis"

    def can_fetch() -> bool:
        return run(["apt-get", "source", "--print-uris", "-q", spec], capture_output=True).returncode == 0

    if not can_fetch():
        add_deb_src()
        if not can_fetch():
            say(f"{spec} not found as a source package; trying the newest 'redis'")
            spec = "redis"
            if not can_fetch():
                raise SuiteError("apt-get source redis does not work here; pass --suite-src DIR")
    dl = CACHE / "download"
    shutil.rmtree(dl, ignore_errors=True)
    dl.mkdir(parents=True)
    say(f"apt-get source --download-only {spec} (about 3 MB) into {dl}")
    if run(["apt-get", "source", "--download-only", "-q", spec], cwd=dl).returncode != 0:
        raise SuiteError("apt-get source failed")
    dsc = sorted(dl.glob("redis_*.dsc"))
    if not dsc:
        raise SuiteError(f"no .dsc downloaded in {dl}")
    unpacked = dl / "src"
    # dpkg-source applies Debian's patches (security fixes; the tests are upstream's).
    if run(["dpkg-source", "-q", "-x", str(dsc[-1]), str(unpacked)], cwd=dl).returncode != 0:
        raise SuiteError("dpkg-source -x failed")
    m = re.search(r"redis_(?:\d+:)?([0-9.]+)", dsc[-1].name)
    upstream = m.group(1) if m else "?"
    if upstream != SUITE_VERSION:
        say(f"warning: the source package is Redis {upstream}, not {SUITE_VERSION}")
    # Only what runtest needs is kept; the rest of the source tree is removed.
    copy_suite(unpacked, pristine)
    shutil.rmtree(dl)
    (pristine / ".origin").write_text(f"Debian source package {dsc[-1].name}\n")


def ensure_suite(suite_src: str | None) -> Path:
    """A directory with runtest and the patched tests/, fetched, copied and patched when missing.

    .redis-suite/<name>-orig is the suite as fetched; .redis-suite/<name> is the
    patched copy the runs use, rebuilt from the former whenever the patch changes.
    """
    name = "redis-from-src" if suite_src else f"redis-{SUITE_VERSION}"
    pristine, tree = CACHE / f"{name}-orig", CACHE / name
    marker = tree / ".redis-suite-ready"
    want = f"patch {patch_id()}"
    if marker.exists() and marker.read_text().splitlines()[-1:] == [want]:
        return tree
    need = []
    if not tclsh_ok():
        need.append("tcl")
    if not shutil.which("patch"):
        need.append("patch")
    if not (pristine / ".origin").exists():
        if suite_src:
            src = Path(suite_src)
            if not (src / "runtest").exists() or not (src / "tests" / "test_helper.tcl").exists():
                raise SuiteError(f"{src} has no runtest and tests/test_helper.tcl")
            say(f"copying runtest and tests/ from {src} into {pristine}")
            copy_suite(src, pristine)
            (pristine / ".origin").write_text(f"copied from {src.resolve()}\n")
        else:
            fetch_debian_source(pristine, need)
    if need:
        apt_install(need)
    copy_suite(pristine, tree)
    patch_tree(tree)
    marker.write_text((pristine / ".origin").read_text() + want + "\n")
    say(f"suite ready in {tree}")
    return tree


# --- processes ------------------------------------------------------------------------------


def free_ports(n: int) -> list[int]:
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


def ping(port: int, timeout: float = 1.0) -> bool:
    try:
        with socket.create_connection((HOST, port), timeout=timeout) as s:
            s.sendall(b"*1\r\n$4\r\nPING\r\n")
            return s.recv(64).startswith(b"+PONG")
    except OSError:
        return False


def server_pid(port: int) -> int | None:
    """process_id from INFO server of the redis-server on `port`, or None."""
    try:
        with socket.create_connection((HOST, port), timeout=2.0) as s:
            s.sendall(b"*2\r\n$4\r\nINFO\r\n$6\r\nserver\r\n")
            data = b""
            while b"process_id:" not in data or not data.endswith(b"\r\n"):
                chunk = s.recv(65536)
                if not chunk:
                    break
                data += chunk
    except OSError:
        return None
    m = re.search(rb"process_id:(\d+)", data)
    return int(m.group(1)) if m else None


def tail(path: Path, lines: int = 15) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


class Processes:
    """Every process this script started, each in its own process group; stopped in reverse."""

    def __init__(self, workdir: Path):
        self.workdir = workdir
        self.procs: list[tuple[str, subprocess.Popen]] = []

    def start(self, name: str, argv: list[str], log: Path) -> subprocess.Popen:
        with open(log, "ab") as out:
            p = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                                 start_new_session=True)
        self.procs.append((name, p))
        return p

    def forget(self, p: subprocess.Popen):
        self.procs = [(n, q) for n, q in self.procs if q is not p]

    def stop(self, name: str, p: subprocess.Popen):
        if p.poll() is None:
            try:
                os.killpg(p.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                p.wait(timeout=STOP_DEADLINE_S)
            except subprocess.TimeoutExpired:
                say(f"{name} (pid {p.pid}) did not stop in {STOP_DEADLINE_S}s; killing it")
                try:
                    os.killpg(p.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                p.wait()
        self.forget(p)

    def stop_all(self):
        for name, p in reversed(list(self.procs)):
            self.stop(name, p)


def wait_ping(name: str, port: int, p: subprocess.Popen, log: Path):
    deadline = time.monotonic() + START_DEADLINE_S
    while time.monotonic() < deadline:
        if p.poll() is not None:
            raise SuiteError(f"{name} exited with status {p.returncode}; {log}:\n{tail(log)}")
        if ping(port, 0.5):
            return
        time.sleep(0.05)
    raise SuiteError(f"{name} did not answer PING on {HOST}:{port} within {START_DEADLINE_S}s; {log}:\n{tail(log)}")


class Target:
    """The backends and the server under test; can restart the latter if it dies."""

    def __init__(self, args, procs: Processes, workdir: Path):
        self.args, self.procs, self.workdir = args, procs, workdir
        self.backends: list[int] = []
        self.backend_procs: list[subprocess.Popen] = []
        self.port = 0
        self.proc: subprocess.Popen | None = None

    def start(self):
        n = 1 if self.args.target == "direct" else self.args.backends
        for i in range(1, n + 1):
            self.backends.append(self.start_redis(f"s{i}"))
        if self.args.target == "direct":
            self.port = self.backends[0]
        else:
            self.start_proxy()

    def start_redis(self, name: str) -> int:
        data = self.workdir / name
        data.mkdir(exist_ok=True)
        log = self.workdir / f"{name}.log"
        for _ in range(3):  # a port picked free can be taken before redis binds it
            (port,) = free_ports(1)
            p = self.procs.start(name, [
                "redis-server", "--bind", HOST, "--port", str(port), "--dir", str(data),
                "--save", "", "--appendonly", "no", "--enable-debug-command", "local",
                "--daemonize", "no", "--logfile", "",
            ], log)
            try:
                wait_ping(name, port, p, log)
                # The port was free when picked; make sure that the server answering on it is
                # the one just started and not another program's that took the port meanwhile.
                if server_pid(port) != p.pid:
                    self.procs.stop(name, p)
                    continue
                self.backend_procs.append(p)
                return port
            except SuiteError:
                if p.poll() is None:
                    raise
                self.procs.forget(p)
        raise SuiteError(f"could not start {name}; {log}:\n{tail(log)}")

    def start_proxy(self):
        if self.args.target == "shardis":
            self.start_shardis()
        else:
            self.start_nutcracker()

    def start_shardis(self):
        servers = ",\n".join(f'  {{ name = "s{i}", address = "{HOST}:{p}" }}'
                             for i, p in enumerate(self.backends, 1))
        cfg = self.workdir / "shardis.toml"
        cfg.write_text(f"""# generated by scripts/redis-suite.sh
[server]
listen = "{HOST}:0"
{self.args.extra_config}

[admin]
listen = "{HOST}:0"

[[pools]]
name = "main"
distribution = "ketama"
hash = "fnv1a_64"
hash_tag = "{{}}"
{self.args.extra_pool_config}
backends = [
{servers},
]
""")
        out = self.workdir / "shardis.out"
        log = self.workdir / "shardis.log"
        out.write_bytes(b"")
        with open(out, "wb") as o, open(log, "ab") as e:
            p = subprocess.Popen([self.args.shardis_bin, "--config", str(cfg)], stdin=subprocess.DEVNULL,
                                 stdout=o, stderr=e, start_new_session=True)
        self.procs.procs.append(("shardis", p))
        self.proc = p
        # First stdout line: "shardis listening on ADDR, admin on ADDR".
        deadline = time.monotonic() + START_DEADLINE_S
        while time.monotonic() < deadline:
            m = re.search(r"listening on [^\s,]*:(\d+)", out.read_text(errors="replace"))
            if m:
                self.port = int(m.group(1))
                wait_ping("shardis", self.port, p, log)
                return
            if p.poll() is not None:
                raise SuiteError(f"shardis exited with status {p.returncode}; {log}:\n{tail(log)}")
            time.sleep(0.05)
        raise SuiteError(f"shardis printed no 'listening on' line within {START_DEADLINE_S}s; {log}:\n{tail(log)}")

    def start_nutcracker(self):
        binary = shutil.which("nutcracker") or next(
            (b for b in ("/usr/sbin/nutcracker", "/usr/local/sbin/nutcracker") if os.access(b, os.X_OK)), None)
        if not binary:
            raise SuiteError("nutcracker not found: run 'make deps' (Debian package nutcracker)")
        servers = "\n".join(f"    - {HOST}:{p}:1 s{i}" for i, p in enumerate(self.backends, 1))
        log = self.workdir / "nutcracker.log"
        for _ in range(3):
            port, stats = free_ports(2)
            cfg = self.workdir / "nutcracker.yml"
            cfg.write_text(f"""# generated by scripts/redis-suite.sh; same ring as shardis (s1..sN, fnv1a_64, ketama)
suite:
  listen: {HOST}:{port}
  hash: fnv1a_64
  hash_tag: "{{}}"
  distribution: ketama
  redis: true
  timeout: {self.args.twemproxy_timeout}
  server_connections: 1
  preconnect: true
  auto_eject_hosts: false
  servers:
{servers}
""")
            p = self.procs.start("nutcracker", [binary, "-c", str(cfg), "-s", str(stats), "-a", HOST,
                                                "-o", str(log)], log)
            try:
                wait_ping("nutcracker", port, p, log)
                # nutcracker exits at once when it cannot listen: if it is still running a
                # moment later, the PONG came through it and not from another program's port.
                time.sleep(0.3)
                if p.poll() is not None:
                    self.procs.forget(p)
                    continue
                self.proc, self.port = p, port
                return
            except SuiteError:
                if p.poll() is None:
                    raise
                self.procs.forget(p)
        raise SuiteError(f"could not start nutcracker; {log}:\n{tail(log)}")

    def stop(self) -> str:
        """Stops the target and its backends; says which of them had died during the file."""
        died = []
        if self.proc is not None and self.proc.poll() is not None:
            died.append(f"{self.args.target} exited with status {self.proc.returncode} during the file")
        elif self.proc is not None and not ping(self.port, 2.0):
            died.append(f"{self.args.target} no longer answered PING at the end of the file")
        for i, p in enumerate(self.backend_procs, 1):
            if p.poll() is not None:
                died.append(f"backend s{i} exited with status {p.returncode} during the file")
        if self.proc is not None:
            self.procs.stop(self.args.target, self.proc)
        for i, p in reversed(list(enumerate(self.backend_procs, 1))):
            self.procs.stop(f"s{i}", p)
        return "; ".join(died)


# --- running and parsing ---------------------------------------------------------------------

ANSI = re.compile(r"\x1b\[[0-9;]*m")
STATUS = re.compile(r"^\[(ok|err|skip|ignore|exception|TIMEOUT|ready|\d+/\d+ [a-z]+)\]: ?(.*)$")
OK = re.compile(r"^(.*) \(\d+ ms\)$")


def first_error_line(body: list[str]) -> str:
    """The error text of an [err] or [exception] entry, from the lines after its header.

    Under --durable a non-assertion error is printed twice: first with its
    first 10 characters cut (the suite strips the "assertion:" prefix from
    every message), then whole as the start of Tcl's errorInfo, followed by
    "    while executing". The whole one is taken when that is the case.
    """
    body = [ln for ln in body if ln.strip()]
    if not body:
        return ""
    for k, ln in enumerate(body):
        if ln.startswith("    while executing") or ln.startswith("    invoked from within"):
            n = k // 2
            if k >= 2 and body[n].endswith(body[0]):
                return body[n].strip().removeprefix("assertion:")
            return body[0].strip()
    # An assertion message spread over lines (an `assert {...}` on several lines): joined.
    if body[0].strip() == "Expected" or (len(body) > 1 and "(context:" not in body[0]
                                          and any("(context:" in ln for ln in body)):
        joined = []
        for ln in body:
            joined.append(ln.strip())
            if "(context:" in ln:
                break
        return re.sub(r"\s+", " ", " ".join(joined))
    return body[0].strip()


def failing_command(body: list[str]) -> str:
    """The Redis command a Tcl error came from, read from the errorInfo trace, e.g.
    `"r object encoding $key"` or `"$rd blpop list 0"`; '' when there is none."""
    for ln in body:
        m = re.match(r'^"(?:r|R \d+|\$\w+|\[\w+\]|\[Rn \d+\])\s+(?:\d+\s+)?([A-Za-z_]+)\b', ln)
        if m and m.group(1).lower() not in ("eval", "uplevel", "catch", "read", "write", "flush", "readraw"):
            return m.group(1).lower()
    return ""


def parse_output(text: str, unit: str) -> dict:
    lines = [ANSI.sub("", ln) for ln in text.splitlines()]
    tests, counts = [], {"ok": 0, "err": 0, "exception": 0, "timeout": 0, "block-error": 0,
                          "ignore": 0, "skip": 0}
    done = False
    i = 0
    while i < len(lines):
        m = STATUS.match(lines[i])
        i += 1
        if not m:
            continue
        status, rest = m.groups()
        if status == "ok":
            mo = OK.match(rest)
            tests.append({"file": unit, "test": mo.group(1) if mo else rest, "status": "ok", "error": ""})
            counts["ok"] += 1
        elif status in ("skip", "ignore"):
            counts[status] += 1
        elif status in ("err", "exception"):
            body = []
            while i < len(lines) and not STATUS.match(lines[i]) and not lines[i].startswith("Testing ") \
                    and lines[i].strip() != "The End" and not lines[i].startswith("*** "):
                body.append(lines[i])
                i += 1
            if status == "exception":
                # "[exception]: Executing test client: MSG." then errorInfo
                msg = rest.removeprefix("Executing test client: ").rstrip(".")
                err = first_error_line([msg, *body]) if not msg else msg
                tests.append({"file": unit, "test": "(exception: rest of the file not run)",
                              "status": "exception", "error": err})
                counts["exception"] += 1
            else:
                suffix = f" in tests/{unit}.tcl"
                if rest.endswith(suffix):
                    tests.append({"file": unit, "test": rest[: -len(suffix)], "status": "err",
                                  "error": first_error_line(body), "command": failing_command(body)})
                    counts["err"] += 1
                else:
                    # An error outside any test inside a start_server block: --durable
                    # reports it (cut by 10 characters, see first_error_line) and
                    # skips the rest of that block.
                    tests.append({"file": unit, "test": "(start_server block: rest of the block not run)",
                                  "status": "block-error", "error": first_error_line([rest, *body]),
                                  "command": failing_command(body)})
                    counts["block-error"] += 1
        elif status == "TIMEOUT":
            # The suite's own no-progress timeout: "sockN => (IN PROGRESS) NAME" follows.
            name = "(unknown test)"
            while i < len(lines) and not STATUS.match(lines[i]):
                mt = re.search(r"=> \((?:IN PROGRESS|OK|ERR)\) (.*)$", lines[i])
                if mt:
                    name = mt.group(1)
                i += 1
            tests.append({"file": unit, "test": name, "status": "timeout",
                          "error": "no progress: the suite's --timeout expired (rest of the file not run)"})
            counts["timeout"] += 1
        elif re.match(r"\d+/\d+ done", status):
            done = True
    return {"tests": tests, "counts": counts, "done": done}


def run_once(args, suite: Path, target: Target, unit: str, log: Path, skip: list[str]) -> dict:
    """One runtest invocation for one unit file; returns its parsed output."""
    argv = ["./runtest", "--host", HOST, "--port", str(target.port), "--singledb", "--durable",
            "--clients", "1", "--timeout", str(args.test_timeout)]
    if args.tags:
        argv += ["--tags", args.tags]
    for name in skip:
        argv += ["--skiptest", name]
    argv += ["--single", unit]
    env = {k: v for k, v in os.environ.items()
           if k not in ("TERM", "REDIS_SUITE_BACKENDS", "REDIS_SUITE_BLOCK_CONFIG")}
    if args.target != "direct":
        # See scripts/redis-suite-backends.patch: setup that the suite does outside its tests
        # goes to the backends directly; the tests themselves talk to the proxy only.
        env["REDIS_SUITE_BACKENDS"] = " ".join(f"{HOST}:{p}" for p in target.backends)
        if not args.strict_setup:
            env["REDIS_SUITE_BLOCK_CONFIG"] = "1"
    with open(log, "wb") as out:
        out.write(f"# {' '.join(argv)}\n".encode())
        out.flush()
        p = subprocess.Popen(argv, cwd=suite, env=env, stdin=subprocess.DEVNULL, stdout=out,
                             stderr=subprocess.STDOUT, start_new_session=True)
        target.procs.procs.append((f"runtest {unit}", p))
        try:
            rc = p.wait(timeout=args.file_timeout)
            killed = False
        except subprocess.TimeoutExpired:
            rc, killed = None, True
        # runtest's test client is a child in the same process group: stop both.
        target.procs.stop(f"runtest {unit}", p)
    parsed = parse_output(log.read_text(errors="replace"), unit)
    parsed["rc"], parsed["killed"] = rc, killed
    return parsed


def run_unit(args, suite: Path, procs: Processes, unit: str, workdir: Path, logdir: Path) -> dict:
    """Runs one unit file, each attempt on freshly started backends and target.

    When a test hangs (the suite's own --timeout, i.e. no progress for --test-timeout
    seconds), the rest of the file would not run: the file is then run again from the
    start with that test skipped (runtest --skiptest NAME, an exact name, so a test of the
    same name elsewhere in the file is skipped too), up to --max-hangs times. The hung
    tests are reported with status "timeout"; everything else comes from the last attempt.
    """
    base = unit.replace("/", "_")
    start = time.monotonic()
    hung: list[dict] = []
    notes = []
    attempt = 0
    while True:
        attempt += 1
        filedir = workdir / (base if attempt == 1 else f"{base}.{attempt}")
        shutil.rmtree(filedir, ignore_errors=True)
        filedir.mkdir()
        log = logdir / (base + (".log" if attempt == 1 else f".{attempt}.log"))
        target = Target(args, procs, filedir)
        try:
            target.start()
            parsed = run_once(args, suite, target, unit, log, [h["test"] for h in hung])
        finally:
            died = target.stop()
        if died:
            notes.append(died)
        timeouts = [t for t in parsed["tests"] if t["status"] == "timeout"]
        if timeouts and timeouts[-1]["test"] != "(unknown test)" and len(hung) < args.max_hangs \
                and not parsed["killed"]:
            hung.append(timeouts[-1] | {"error": f"hung: no progress for {args.test_timeout}s "
                                                 "(--test-timeout); skipped on the file's next run"})
            continue
        break
    tests, c = parsed["tests"], parsed["counts"]
    tests[:0] = hung
    c["timeout"] += len(hung)
    if hung:
        notes.insert(0, f"{len(hung)} hung test(s) skipped, {attempt} runs")
    if parsed["killed"]:
        tests.append({"file": unit, "test": "(per-file timeout: rest of the file not run)", "status": "timeout",
                      "error": f"killed after --file-timeout {args.file_timeout}s"})
        c["timeout"] += 1
    elif not parsed["done"] and not c["exception"] and not timeouts:
        notes.append(f"runtest exited with status {parsed['rc']} before finishing the file; see {log}")
        tests.append({"file": unit, "test": "(runtest ended early)", "status": "exception",
                      "error": tail(log, 1)})
        c["exception"] += 1
    return {
        "file": unit,
        "passed": c["ok"],
        "failed": c["err"],
        "errors": c["exception"] + c["timeout"] + c["block-error"],
        "ignored": c["ignore"],
        "skipped": c["skip"],
        "seconds": round(time.monotonic() - start, 1),
        "runs": attempt,
        "exit_code": parsed["rc"],
        "log": str(log),
        "note": "; ".join(notes),
        "tests": tests,
    }


# --- causes ---------------------------------------------------------------------------------

BLOCKING = {"blpop", "brpop", "brpoplpush", "blmove", "blmpop", "bzpopmin", "bzpopmax", "bzmpop",
            "xread", "xreadgroup", "wait"}
PUBSUB = {"subscribe", "unsubscribe", "psubscribe", "punsubscribe", "publish", "pubsub",
          "ssubscribe", "sunsubscribe", "spublish"}
TXN = {"multi", "exec", "discard", "watch", "unwatch"}
FUNCTION = {"function", "fcall", "fcall_ro"}
SCRIPT = {"eval", "evalsha", "eval_ro", "evalsha_ro", "script"}
ERROR_REPLY = re.compile(r"'-?(ERR|WRONGTYPE|NOSCRIPT|BUSY|NOAUTH|OOM|EXECABORT|NOGROUP|BUSYGROUP|NOPROTO|"
                         r"NOTBUSY|UNKILLABLE|READONLY|NOPERM|WRONGPASS|CROSSSLOT|LOADING)\b")


def refused_command(err: str) -> str | None:
    """The command a proxy refused, from its error text (shardis's or Redis's own wording)."""
    for pat in (r"unsupported command '([^']+)'", r"unknown command [`']([^`']+)[`']"):
        m = re.search(pat, err, re.I)
        if m:
            return m.group(1).lower()
    m = re.search(r"unsupported (\w+) subcommand '([^']+)'", err, re.I)
    if m:
        return f"{m.group(1)} {m.group(2)}".lower()
    return None


def family(cmd: str) -> str | None:
    if cmd in TXN:
        return "MULTI / EXEC / WATCH"
    if cmd in FUNCTION:
        return "FUNCTION / FCALL"
    if cmd in PUBSUB:
        return "pub/sub"
    if cmd in BLOCKING:
        return "blocking commands"
    if cmd == "hello":
        return "HELLO 3 / RESP3"
    return None


def classify(name: str, err: str, status: str, command: str = "") -> str:
    """A cause for one failure: from its first error line first, then from its test name.

    `command` is the Redis command the error was raised by, when the trace tells it."""
    low_name, low = name.lower(), err.lower()
    if status == "timeout":
        return "timeout (test hung)"
    cmd = refused_command(err)
    if cmd:
        return family(cmd) or f"refused command {cmd.upper()}"
    if "noproto" in low or "unsupported protocol version" in low:
        return "HELLO 3 / RESP3"
    m = re.search(r"needs at least one key to route '([^']+)'", err)
    if m:
        keyless = m.group(1).lower()
        if keyless in SCRIPT:
            return "keyless EVAL"
        if low.startswith("expected"):
            # e.g. LMPOP 0 ... sent on purpose to get Redis's "numkeys" error.
            return "error text differs"
        return family(keyless) or f"command without a key refused ({keyless.upper()})"
    if "i/o error" in low or "connection reset" in low or "broken pipe" in low or "connection refused" in low:
        # twemproxy closes the connection on a command it does not serve (the suite's
        # client then reconnects by itself for the next command). The command named is
        # the one that met the closed connection: usually, not always, the refused one.
        if command:
            return family(command) or f"connection closed by the proxy (at {command.upper()})"
        return "connection closed by the proxy"
    if "database 0 only" in low:
        return "SELECT / databases"
    if "waiting for blocked clients" in low:
        return "blocking commands"
    if ERROR_REPLY.search(err) or "expected an error matching" in low:
        return "error text differs"
    # An assertion about a value: name the feature the test is about when it is clear.
    words = set(re.findall(r"[a-z_]+", low_name))
    if "resp3" in low_name or "hello 3" in low_name:
        return "HELLO 3 / RESP3"
    for group in (TXN, FUNCTION, PUBSUB, BLOCKING):
        if words & group:
            return family(next(iter(words & group)))
    if "keyspace events" in low_name or "notification" in low_name:
        return "pub/sub"
    if "blocking" in low_name or "blocked" in low_name:
        return "blocking commands"
    return "other"


# --- report ---------------------------------------------------------------------------------


def print_report(report: dict):
    files = report["files"]
    w = max([len(f["file"]) for f in files] + [5])
    nr = report.get("baseline") is not None
    head = f"{'file':<{w}}  {'passed':>6}  {'failed':>6}  {'errors':>6}  {'ignored':>7}  {'seconds':>7}" \
        + (f"  {'not run':>7}" if nr else "")
    print()
    print(f"Redis {SUITE_VERSION} test suite against {report['target_desc']}")
    print(head)
    print("-" * len(head))
    for f in files:
        print(f"{f['file']:<{w}}  {f['passed']:>6}  {f['failed']:>6}  {f['errors']:>6}  {f['ignored']:>7}  "
              f"{f['seconds']:>7.1f}" + (f"  {f['not_run']:>7}" if nr else "")
              + (f"  ({f['note']})" if f["note"] else ""))
    t = report["totals"]
    print("-" * len(head))
    print(f"{'total':<{w}}  {t['passed']:>6}  {t['failed']:>6}  {t['errors']:>6}  {t['ignored']:>7}  "
          f"{t['seconds']:>7.1f}" + (f"  {t['not_run']:>7}" if nr else ""))
    if nr:
        print(f"not run: tests that passed in the baseline {report['baseline']['path']} "
              f"({report['baseline']['passed']} in these files) but did not run here, because their file or "
              "start_server block ended early (an error outside any test, or a hang)")
    failures = [x for x in report["tests"] if x["status"] != "ok"]
    if failures:
        print()
        print("Failures by cause:")
        for cause, n in report["causes"].items():
            print(f"\n  {cause} ({n})")
            for x in failures:
                if x["cause"] == cause:
                    err = x["error"] if len(x["error"]) <= 200 else x["error"][:197] + "..."
                    print(f"    {x['file']}: {x['test']}\n        {err}")
    print()
    print(f"{t['passed']} passed, {t['failed']} failed, {t['errors']} errors ({report['target_desc']})")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(
        prog="scripts/redis-suite.sh",
        description="Run Redis's Tcl test suite (7.0.15, external mode) against redis-server, shardis or "
                    "twemproxy, and report pass/fail per unit file and the failures grouped by cause.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="default files: " + ",".join(DEFAULT_FILES) + "\ndefault tags: " + DEFAULT_TAGS,
    )
    ap.add_argument("--target", choices=("direct", "shardis", "twemproxy"), default="shardis")
    ap.add_argument("--backends", type=int, default=3, help="redis-servers behind a proxy (default 3; "
                    "direct always uses one)")
    ap.add_argument("--shardis-bin", default=os.environ.get("SHARDIS_BIN") or str(REPO / "target/release/shardis"),
                    help="shardis binary (default $SHARDIS_BIN or target/release/shardis)")
    ap.add_argument("--files", help="comma-separated unit files, e.g. unit/type/list,unit/expire "
                    "(default: the 15 listed below)")
    ap.add_argument("--tags", default=DEFAULT_TAGS, help="runtest --tags value (default below; '' for none)")
    ap.add_argument("--extra-config", default="", help="TOML lines appended to shardis's [server] table")
    ap.add_argument("--extra-pool-config", default="", help="TOML lines added to shardis's [[pools]] table, "
                    "e.g. 'timeout_ms = 5000'")
    ap.add_argument("--twemproxy-timeout", type=int, default=1000,
                    help="nutcracker pool timeout in ms (default 1000, shardis's default timeout_ms)")
    ap.add_argument("--strict-setup", action="store_true",
                    help="proxies: send only each block's FLUSHALL/FUNCTION FLUSH/CONFIG SET overrides to the "
                    "backends, not also the CONFIG commands the suite runs between tests")
    ap.add_argument("--json", help="write the machine-readable report here")
    ap.add_argument("--baseline", help="a --json report of an earlier run (e.g. direct): count the tests "
                    "that passed there but did not run here")
    ap.add_argument("--file-timeout", type=int, default=600, help="seconds per unit file (default 600)")
    ap.add_argument("--test-timeout", type=int, default=60,
                    help="runtest --timeout: seconds without progress (one test running that long) before "
                    "the suite gives up on the file (default 60; the slowest test takes about 8s direct)")
    ap.add_argument("--max-hangs", type=int, default=5,
                    help="per file: after a test hangs, run the file again skipping it, at most this many "
                    "times (default 5; 0 = stop the file at the first hang)")
    ap.add_argument("--suite-src", help="an unpacked Redis 7.0.15 source tree to take runtest and tests/ "
                    "from, instead of Debian's source package")
    ap.add_argument("--workdir", help="keep logs and backend data here (default: a temporary directory, "
                    "removed at the end unless --keep)")
    ap.add_argument("--keep", action="store_true", help="keep the temporary work directory")
    ap.add_argument("--fetch-only", action="store_true", help="fetch and patch the suite, then exit")
    args = ap.parse_args(argv)

    # Ctrl-C and SIGTERM both end in the finally below, which stops everything.
    def on_signal(signum, _frame):
        raise KeyboardInterrupt(f"signal {signum}")
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGHUP, on_signal)

    os.environ["PATH"] = os.environ.get("PATH", "") + ":/usr/local/sbin:/usr/sbin:/sbin"
    try:
        suite = ensure_suite(args.suite_src)
    except SuiteError as e:
        say(f"error: {e}")
        return 2
    if args.fetch_only:
        say(f"suite in {suite}")
        return 0

    files = [f.strip().removeprefix("tests/").removesuffix(".tcl") for f in args.files.split(",")] \
        if args.files else DEFAULT_FILES
    for f in files:
        if not (suite / "tests" / f"{f}.tcl").exists():
            say(f"error: no such unit file: tests/{f}.tcl")
            return 2
    if args.target == "shardis":
        if not os.access(args.shardis_bin, os.X_OK):
            say(f"error: shardis binary {args.shardis_bin} not found; build it (make build) or pass --shardis-bin")
            return 2
    if not shutil.which("redis-server"):
        say("error: redis-server not found: run 'make deps'")
        return 2
    if args.backends < 1:
        say("error: --backends must be at least 1")
        return 2

    if args.workdir:
        workdir = Path(args.workdir).resolve()
        workdir.mkdir(parents=True, exist_ok=True)
        remove_workdir = False
    else:
        workdir = Path(tempfile.mkdtemp(prefix="redis-suite-"))
        remove_workdir = not args.keep
    logdir = workdir / "logs"
    logdir.mkdir(exist_ok=True)

    procs = Processes(workdir)
    results = []
    started = datetime.datetime.now(datetime.timezone.utc)
    interrupted = False
    nback = 1 if args.target == "direct" else args.backends
    desc = "redis-server (direct)" if args.target == "direct" else \
        f"{args.target} over {nback} redis-server{'s' if nback > 1 else ''}"
    version = ""
    if args.target == "shardis":
        version = run([args.shardis_bin, "--version"], capture_output=True).stdout.strip()
    say(f"target: {desc}{' (' + version + ')' if version else ''}; logs in {logdir}")
    say("each unit file gets freshly started backends and target, on free loopback ports")
    if args.target != "direct":
        say("each start_server block's setup (FLUSHALL, FUNCTION FLUSH, CONFIG SET of its overrides)"
            + ("" if args.strict_setup else " and CONFIG commands sent outside any test")
            + " go to the backends directly, not through the proxy (see scripts/redis-suite-backends.patch)")
    try:
        for k, unit in enumerate(files, 1):
            print(f"[{k}/{len(files)}] {unit} ...", end=" ", flush=True)
            r = run_unit(args, suite, procs, unit, workdir, logdir)
            results.append(r)
            print(f"{r['passed']} passed, {r['failed']} failed, {r['errors']} errors, {r['ignored']} ignored "
                  f"({r['seconds']:.0f}s)" + (f" -- {r['note']}" if r["note"] else ""), flush=True)
    except KeyboardInterrupt:
        interrupted = True
        print()
        say("interrupted; stopping everything this script started")
    except SuiteError as e:
        say(f"error: {e}")
        procs.stop_all()
        say(f"logs kept in {workdir}")
        return 2
    finally:
        # A second Ctrl-C must not cut the cleanup short.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        procs.stop_all()

    if not results:
        if remove_workdir:
            shutil.rmtree(workdir, ignore_errors=True)
        return 130 if interrupted else 2

    tests = [t for r in results for t in r.pop("tests")]
    for t in tests:
        t["cause"] = "" if t["status"] == "ok" else \
            classify(t["test"], t["error"], t["status"], t.get("command", ""))
    causes: dict[str, int] = {}
    for t in tests:
        if t["cause"]:
            causes[t["cause"]] = causes.get(t["cause"], 0) + 1
    causes = dict(sorted(causes.items(), key=lambda kv: (-kv[1], kv[0])))
    totals = {k: sum(r[k] for r in results) for k in ("passed", "failed", "errors", "ignored", "skipped")}
    totals["seconds"] = round(sum(r["seconds"] for r in results), 1)
    report = {
        "suite": f"Redis {SUITE_VERSION} tests: " + "; ".join((suite / ".redis-suite-ready").read_text().split("\n")).strip("; "),
        "target": args.target,
        "target_desc": desc,
        "backends": nback,
        "shardis_bin": args.shardis_bin if args.target == "shardis" else None,
        "shardis_version": version or None,
        "extra_config": args.extra_config or None,
        "extra_pool_config": args.extra_pool_config or None,
        "runtest_flags": ["--singledb", "--durable", "--clients", "1", "--timeout", str(args.test_timeout),
                          "--tags", args.tags],
        "setup_on_backends": "none" if args.target == "direct" else
        ("start_server setup only (--strict-setup)" if args.strict_setup else
         "start_server setup and CONFIG outside tests"),
        "files_requested": files,
        "started": started.isoformat(timespec="seconds"),
        "interrupted": interrupted,
        "totals": totals,
        "causes": causes,
        "files": results,
        "tests": tests,
    }
    if args.baseline:
        base = json.loads(Path(args.baseline).read_text())
        # Counted by name: a name can occur more than once in a file (scripting runs its
        # tests twice, with EVAL and with FUNCTION).
        ran = collections.Counter((t["file"], t["test"]) for t in tests)
        base_ok = [(t["file"], t["test"]) for t in base["tests"] if t["status"] == "ok" and t["file"] in files]
        missing = []
        for x, n in collections.Counter(base_ok).items():
            missing += [x] * max(0, n - ran[x])
        totals["not_run"] = len(missing)
        for r in results:
            r["not_run"] = sum(1 for f, _ in missing if f == r["file"])
        report["baseline"] = {"path": args.baseline, "passed": len(base_ok),
                              "not_run": [{"file": f, "test": n} for f, n in missing]}
    print_report(report)
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=1) + "\n")
        say(f"JSON report written to {args.json}")
    if remove_workdir:
        shutil.rmtree(workdir, ignore_errors=True)
    else:
        say(f"logs kept in {logdir}")
    return 130 if interrupted else 0


if __name__ == "__main__":
    sys.exit(main())
