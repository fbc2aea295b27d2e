//! The big pipelines of the stall issue, with the default settings, timed against one direct
//! redis-server (issue 22: bounding memory must not bring the stall back). Each is written
//! whole before its replies are read, or, for `redis-cli --pipe`, written and read at once.
//!
//! The bounds here are generous, to catch a stall rather than measure speed (the machine is
//! shared); the times are printed, and the README's "Memory" section gives measured ones.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::ops::{backends, start_redises};
use common::{Client, Redis, Shardis, TempDir, find_program, ok, shardis_config};

/// One direct redis-server and a shardis with the default settings over two others.
struct Targets {
    direct: Redis,
    _backends: Vec<Redis>,
    shardis: Shardis,
}

impl Targets {
    fn start() -> Targets {
        let redis = start_redises(2);
        let shardis = Shardis::start(&shardis_config(&backends(&redis), ""));
        Targets {
            direct: Redis::start(),
            _backends: redis,
            shardis,
        }
    }

    /// `(name, "host:port")` of direct Redis, then shardis.
    fn both(&self) -> [(&'static str, String); 2] {
        [
            ("direct", self.direct.addr()),
            ("shardis", self.shardis.addr.to_string()),
        ]
    }

    /// Runs `case` on direct Redis, then on shardis, and checks shardis took at most 10x as
    /// long plus 30 s (the target is 3x plus 1 s; the README has the measured figures).
    fn compare(&self, what: &str, case: impl Fn(&str) -> Duration) {
        let [direct, shardis] = self.both().map(|(_, addr)| {
            Client::connect(&addr).cmd_str(&["FLUSHALL"]);
            case(&addr)
        });
        eprintln!(
            "{what}: direct Redis {direct:.2?}, shardis {shardis:.2?} ({:.2}x)",
            shardis.as_secs_f64() / direct.as_secs_f64()
        );
        assert!(
            shardis < direct * 10 + Duration::from_secs(30),
            "{what}: shardis took {shardis:?}, direct Redis {direct:?}"
        );
    }
}

/// Writes `requests` whole, then reads exactly `replies`; returns how long it took.
fn write_then_read(addr: &str, requests: &[u8], replies: &[u8]) -> Duration {
    let started = Instant::now();
    let mut s = TcpStream::connect(addr).expect("connect");
    s.set_write_timeout(Some(Duration::from_secs(120)))
        .expect("set_write_timeout");
    s.set_read_timeout(Some(Duration::from_secs(120)))
        .expect("set_read_timeout");
    s.write_all(requests)
        .unwrap_or_else(|e| panic!("{addr}: the write stalled or failed: {e}"));
    let mut got = vec![0u8; replies.len()];
    s.read_exact(&mut got)
        .unwrap_or_else(|e| panic!("{addr}: the replies stalled or stopped: {e}"));
    assert!(got == replies, "{addr}: the replies differ");
    started.elapsed()
}

/// `SET key:i value:i` for i in 0..n, RESP-encoded.
fn sets(n: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(n * 48);
    for i in 0..n {
        out.extend(Client::encode(&[
            b"SET",
            format!("key:{i}").as_bytes(),
            format!("value:{i}").as_bytes(),
        ]));
    }
    out
}

#[test]
fn a_million_sets_written_before_reading() {
    let targets = Targets::start();
    let requests = sets(1_000_000);
    let replies = b"+OK\r\n".repeat(1_000_000);
    targets.compare("1,000,000 SETs in one write, read after", |addr| {
        write_then_read(addr, &requests, &replies)
    });
}

#[test]
fn a_hundred_thousand_gets_of_1kb_in_one_write() {
    let targets = Targets::start();
    let value = |j: usize| format!("{j:<1024}").into_bytes();
    let (mut requests, mut replies) = (Vec::new(), Vec::new());
    for i in 0..100_000 {
        let j = i * 7919 % 1000;
        requests.extend(Client::encode(&[b"GET", format!("v:{j}").as_bytes()]));
        replies.extend(b"$1024\r\n");
        replies.extend(value(j));
        replies.extend(b"\r\n");
    }
    targets.compare("100,000 GETs of 1 KB in one write, read after", |addr| {
        let mut c = Client::connect(addr);
        for j in 0..1000 {
            assert_eq!(
                c.cmd(&[b"SET", format!("v:{j}").as_bytes(), &value(j)]),
                ok()
            );
        }
        write_then_read(addr, &requests, &replies)
    });
}

#[test]
fn redis_cli_pipe_of_a_million_sets() {
    let targets = Targets::start();
    let redis_cli = find_program("redis-cli", "redis-tools");
    let dir = TempDir::new("pipe");
    let input = dir.path().join("sets.resp");
    std::fs::write(&input, sets(1_000_000)).expect("write the input");
    targets.compare("redis-cli --pipe, 1,000,000 SETs", |addr| {
        let (host, port) = addr.rsplit_once(':').expect("host:port");
        let started = Instant::now();
        let out = Command::new(&redis_cli)
            .args(["-h", host, "-p", port, "--pipe"])
            .stdin(std::fs::File::open(&input).expect("open the input"))
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .output()
            .expect("run redis-cli --pipe");
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success() && text.contains("errors: 0, replies: 1000000"),
            "{addr}: {text}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        started.elapsed()
    });
}

/// A python3 that has redis-py: tests/compat's venv (`make compat` makes it), else the
/// system's.
fn python_with_redis_py() -> Option<PathBuf> {
    let venv = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/compat/.venv/bin/python");
    [venv, PathBuf::from("python3")].into_iter().find(|py| {
        Command::new(py)
            .args(["-c", "import redis"])
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    })
}

#[test]
fn redis_py_pipeline_of_a_million_commands() {
    // The same exchange as `a_million_sets_written_before_reading`, as redis-py makes it.
    let Some(python) = python_with_redis_py() else {
        eprintln!(
            "skipped: no redis-py (python3 -m venv tests/compat/.venv && \
             tests/compat/.venv/bin/pip install -r tests/compat/requirements.txt)"
        );
        return;
    };
    let script = r#"
import sys, time, redis
host, port = sys.argv[1].rsplit(":", 1)
r = redis.Redis(host=host, port=int(port))
p = r.pipeline(transaction=False)
for i in range(1_000_000):
    p.set("py:%d" % i, i)
started = time.monotonic()
replies = p.execute()
took = time.monotonic() - started
assert len(replies) == 1_000_000 and all(replies), "wrong replies"
assert r.get("py:999999") == b"999999"
print(took)
"#;
    let targets = Targets::start();
    targets.compare("redis-py pipeline().execute(), 1,000,000 SETs", |addr| {
        let out = Command::new(&python)
            .args(["-c", script, addr])
            .output()
            .expect("run python");
        assert!(
            out.status.success(),
            "{addr}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let secs: f64 = String::from_utf8_lossy(&out.stdout)
            .trim()
            .parse()
            .expect("seconds");
        Duration::from_secs_f64(secs)
    });
}
