//! What operational tests share: a small blocking HTTP client for the admin endpoints,
//! Prometheus text lookups, polling with a deadline, key placement from the library's own ring,
//! and /proc reads.

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use shardis::config::Config;
use shardis::router::Ring;

use super::{Redis, Shardis};

/// The proxy's `/status` document (asserting a 200).
pub fn status(shardis: &Shardis) -> serde_json::Value {
    let r = http_get(shardis.admin, "/status");
    assert_eq!(r.status, 200, "/status: {}", r.body);
    serde_json::from_str(&r.body).expect("status JSON")
}

/// Requests in flight to all backends together, from `/status`.
pub fn inflight(shardis: &Shardis) -> u64 {
    status(shardis)["backends"]
        .as_array()
        .expect("backends")
        .iter()
        .map(|b| b["inflight"].as_u64().expect("inflight"))
        .sum()
}

/// Backend names used by [`backends`], in order.
pub const NAMES: [&str; 4] = ["s1", "s2", "s3", "s4"];

/// `n` redis-servers.
pub fn start_redises(n: usize) -> Vec<Redis> {
    (0..n).map(|_| Redis::start()).collect()
}

/// (name, address) pairs for [`super::shardis_config`]: s1, s2, ... in order.
pub fn backends(redises: &[Redis]) -> Vec<(&'static str, String)> {
    redises
        .iter()
        .zip(NAMES)
        .map(|(r, name)| (name, r.addr()))
        .collect()
}

/// `config` with `lines` added to its `[server]` table.
pub fn with_server(config: &str, lines: &str) -> String {
    assert!(config.starts_with("[server]\n"), "not a shardis_config");
    config.replacen("[server]\n", &format!("[server]\n{lines}\n"), 1)
}

/// A key with `prefix` that `config` places on backend `index` (configuration order), found
/// with the library's ring, so tests do not hard-code placements.
pub fn key_on(config: &str, index: usize, prefix: &str) -> String {
    let config = Config::parse(config).expect("test config is valid");
    let ring = config.pools[0].ring();
    (0..100_000)
        .map(|i| format!("{prefix}:{i}"))
        .find(|k| ring.backend_for(k.as_bytes()) == index)
        .unwrap_or_else(|| panic!("no key with prefix {prefix} lands on backend {index}"))
}

/// One HTTP response.
#[derive(Debug)]
pub struct HttpReply {
    pub status: u16,
    /// Header names lowercased, in the order received.
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl HttpReply {
    /// The value of header `name` (any case), if present.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The body as JSON (panics naming the body if it is not).
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("{e}: {:?}", self.body))
    }
}

/// `GET path` on `addr` on a new connection, asking the server to close it afterwards.
pub fn http_get(addr: SocketAddr, path: &str) -> HttpReply {
    http_request(addr, "GET", path, b"")
}

/// `METHOD path` with `body` on `addr` on a new connection, closed afterwards.
pub fn http_request(addr: SocketAddr, method: &str, path: &str, body: &[u8]) -> HttpReply {
    let mut conn = HttpConn::connect(addr);
    conn.request(method, path, &[("Connection", "close")], body)
}

/// A blocking HTTP/1.1 client connection for the admin endpoints: requests one after another
/// on the same socket (keep-alive), or raw bytes for malformed and slow requests.
pub struct HttpConn {
    stream: TcpStream,
    /// Bytes read past the last response.
    buf: Vec<u8>,
}

impl HttpConn {
    /// Connects, with a 10 s read timeout.
    pub fn connect(addr: SocketAddr) -> HttpConn {
        let stream = TcpStream::connect(addr).unwrap_or_else(|e| panic!("connect {addr}: {e}"));
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .expect("set_read_timeout");
        HttpConn {
            stream,
            buf: Vec::new(),
        }
    }

    /// Sends `METHOD path` with `headers` (plus `Host`, and `Content-Length` when there is a
    /// body or the method is POST) and reads the response.
    pub fn request(
        &mut self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> HttpReply {
        let mut raw = format!("{method} {path} HTTP/1.1\r\nHost: test\r\n");
        for (name, value) in headers {
            raw.push_str(&format!("{name}: {value}\r\n"));
        }
        if !body.is_empty() || method == "POST" {
            raw.push_str(&format!("Content-Length: {}\r\n", body.len()));
        }
        raw.push_str("\r\n");
        let mut raw = raw.into_bytes();
        raw.extend_from_slice(body);
        self.send(&raw);
        self.read_reply(method == "HEAD")
    }

    /// Writes `raw` as is.
    pub fn send(&mut self, raw: &[u8]) {
        self.stream.write_all(raw).expect("write request");
    }

    /// Reads one response: the head, then `Content-Length` bytes of body (none after a HEAD
    /// request), or everything up to the close when there is no length.
    pub fn read_reply(&mut self, head_request: bool) -> HttpReply {
        let end = loop {
            if let Some(i) = self.buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break i;
            }
            assert!(
                self.fill() > 0,
                "connection closed before a response head; got {:?}",
                String::from_utf8_lossy(&self.buf)
            );
        };
        let head = String::from_utf8(self.buf[..end].to_vec()).expect("head is UTF-8");
        self.buf.drain(..end + 4);
        let mut lines = head.split("\r\n");
        let status_line = lines.next().unwrap_or_default();
        let status = status_line
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("bad status line in {head:?}"));
        let headers: Vec<(String, String)> = lines
            .filter_map(|l| l.split_once(':'))
            .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_string()))
            .collect();
        let length = headers
            .iter()
            .find(|(n, _)| n == "content-length")
            .map(|(_, v)| v.parse::<usize>().expect("numeric content-length"));
        let body = match (head_request, length) {
            (true, _) => Vec::new(),
            (false, Some(n)) => {
                while self.buf.len() < n {
                    assert!(self.fill() > 0, "connection closed inside a body");
                }
                self.buf.drain(..n).collect()
            }
            (false, None) => {
                while self.fill() > 0 {}
                std::mem::take(&mut self.buf)
            }
        };
        HttpReply {
            status,
            headers,
            body: String::from_utf8(body).expect("body is UTF-8"),
        }
    }

    /// Waits up to `deadline` for the server to close the connection; true if it did (end of
    /// stream or reset) with nothing more sent, false if it was still open then.
    pub fn closed_within(&mut self, deadline: Duration) -> bool {
        self.stream
            .set_read_timeout(Some(deadline))
            .expect("set_read_timeout");
        let mut chunk = [0u8; 4096];
        let closed = match self.stream.read(&mut chunk) {
            Ok(0) => true,
            Ok(n) => panic!(
                "expected a close, got {:?}",
                String::from_utf8_lossy(&chunk[..n])
            ),
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => false,
            Err(_) => true,
        };
        self.stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .expect("set_read_timeout");
        closed
    }

    /// Reads more into the buffer; 0 at end of stream (or a reset).
    fn fill(&mut self) -> usize {
        let mut chunk = [0u8; 16 * 1024];
        match self.stream.read(&mut chunk) {
            Ok(n) => {
                self.buf.extend_from_slice(&chunk[..n]);
                n
            }
            Err(e) if e.kind() == ErrorKind::ConnectionReset => 0,
            Err(e) => panic!("read response: {e}"),
        }
    }
}

/// An IPv4 address of this machine that is not loopback and can be bound (from `hostname -I`),
/// for tests of what a non-loopback admin listener refuses; `None` if there is none.
pub fn non_loopback_ipv4() -> Option<std::net::IpAddr> {
    let out = std::process::Command::new("hostname")
        .arg("-I")
        .output()
        .ok()?;
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .filter_map(|a| a.parse::<std::net::IpAddr>().ok())
        .filter(|ip| ip.is_ipv4() && !ip.is_loopback() && !ip.is_unspecified())
        .find(|ip| std::net::TcpListener::bind((*ip, 0)).is_ok())
}

/// The value of one series in Prometheus text, `series` written exactly as exported, e.g.
/// `shardis_backend_up{pool="main",backend="s1"}` or `shardis_client_connections`.
pub fn metric(text: &str, series: &str) -> Option<f64> {
    text.lines().find_map(|line| {
        let rest = line.strip_prefix(series)?;
        let value = rest.strip_prefix(' ')?;
        Some(value.trim().parse().expect("metric value is a number"))
    })
}

/// [`metric`], panicking with the whole text when the series is missing.
pub fn must_metric(text: &str, series: &str) -> f64 {
    metric(text, series).unwrap_or_else(|| panic!("no series {series} in:\n{text}"))
}

/// Polls `check` every 20 ms until it returns `Some`, or panics after `deadline` naming `what`.
pub fn wait_for<T>(deadline: Duration, what: &str, mut check: impl FnMut() -> Option<T>) -> T {
    let until = Instant::now() + deadline;
    loop {
        if let Some(v) = check() {
            return v;
        }
        assert!(
            Instant::now() < until,
            "timed out after {deadline:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A `kB` field of /proc/PID/status, such as `VmRSS` or `VmHWM` (peak RSS).
pub fn proc_kb(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_else(|e| panic!("read /proc/{pid}/status: {e}"));
    status
        .lines()
        .find_map(|l| l.strip_prefix(&format!("{field}:")))
        .and_then(|v| v.trim().strip_suffix("kB"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no {field} in /proc/{pid}/status"))
}

/// Client connections a redis-server has, not counting the one asking (from CLIENT LIST).
pub fn redis_clients(redis: &Redis) -> usize {
    let list = redis.client().cmd_str(&["CLIENT", "LIST"]).as_text();
    list.lines()
        .filter(|l| !l.contains("cmd=client|list"))
        .count()
}

/// tests/compat/node_modules, installed with `npm ci` from the lock file when missing (npm's
/// registry is reachable here and in CI); `None`, with a note, when it cannot be.
pub fn node_modules() -> Option<std::path::PathBuf> {
    let compat = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/compat");
    let modules = compat.join("node_modules");
    let ready = |m: &std::path::Path| m.join("ioredis").is_dir() && m.join("redis").is_dir();
    if !ready(&modules) {
        // Under a lock, and only if still missing: test binaries run in parallel, and a second
        // `npm ci` would delete the modules the first one's node process is using.
        let installed = std::process::Command::new("flock")
            .args([
                ".npm-install.lock",
                "sh",
                "-c",
                "[ -d node_modules/ioredis ] && [ -d node_modules/redis ] || \
                 npm ci --no-audit --no-fund --loglevel=error",
            ])
            .current_dir(&compat)
            .status()
            .is_ok_and(|s| s.success());
        if !installed || !ready(&modules) {
            eprintln!("skipped: no node_modules in tests/compat and `npm ci` failed there");
            return None;
        }
    }
    Some(modules)
}
