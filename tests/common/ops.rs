//! What operational tests share: a one-shot HTTP GET for the admin endpoints, Prometheus text
//! lookups, polling with a deadline, key placement from the library's own ring, and /proc reads.

use std::io::{Read, Write};
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
    let ring = Ring::new(&config.pools[0]);
    (0..100_000)
        .map(|i| format!("{prefix}:{i}"))
        .find(|k| ring.backend_for(k.as_bytes()) == index)
        .unwrap_or_else(|| panic!("no key with prefix {prefix} lands on backend {index}"))
}

/// One HTTP response.
#[derive(Debug)]
pub struct HttpReply {
    pub status: u16,
    pub body: String,
}

/// `GET path` on `addr`, one request per connection (the admin server closes after each).
pub fn http_get(addr: SocketAddr, path: &str) -> HttpReply {
    let mut stream = TcpStream::connect(addr).unwrap_or_else(|e| panic!("connect {addr}: {e}"));
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("set_read_timeout");
    write!(stream, "GET {path} HTTP/1.1\r\nHost: test\r\n\r\n").expect("write request");
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).expect("read response");
    let text = String::from_utf8(raw).expect("response is UTF-8");
    let (head, body) = text
        .split_once("\r\n\r\n")
        .unwrap_or_else(|| panic!("no header end in {text:?}"));
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("bad status line in {head:?}"));
    HttpReply {
        status,
        body: body.to_string(),
    }
}

/// The value of one series in Prometheus text, `series` written exactly as exported, e.g.
/// `shardis_backend_up{backend="s1"}` or `shardis_client_connections`.
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
