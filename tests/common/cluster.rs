//! A shardis in front of N real redis-servers, with direct access to each backend so tests can
//! check where a key really landed, not only what the proxy says.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::Command;
use std::time::Duration;

use super::{Client, Frame, Redis, Shardis, TempDir, shardis_config};

/// The pool settings every data-path test uses: twemproxy's defaults plus the `{}` hash tag.
pub const POOL: &str =
    "distribution = \"ketama\"\nhash = \"fnv1a_64\"\nhash_tag = \"{}\"\ntimeout_ms = 1000";

/// How long the proxy may take to close a connection it should close.
pub const CLOSE_DEADLINE: Duration = Duration::from_secs(10);

/// redis-servers s1..sN and a shardis over them; all killed on drop.
pub struct Cluster {
    /// The backends, in configuration order (s1 first).
    pub redis: Vec<Redis>,
    /// The proxy.
    pub proxy: Shardis,
    config: String,
}

impl Cluster {
    /// Starts `n` redis-servers named s1..sN and a shardis with [`POOL`] over them.
    pub fn start(n: usize) -> Cluster {
        Cluster::start_with(n, "", "")
    }

    /// Like [`Cluster::start`], with `server` lines added to `[server]` and `pool` lines to
    /// the pool (after [`POOL`]).
    pub fn start_with(n: usize, server: &str, pool: &str) -> Cluster {
        let redis: Vec<Redis> = (0..n).map(|_| Redis::start()).collect();
        let backends: Vec<(String, String)> = redis
            .iter()
            .enumerate()
            .map(|(i, r)| (format!("s{}", i + 1), r.addr()))
            .collect();
        let named: Vec<(&str, String)> = backends
            .iter()
            .map(|(n, a)| (n.as_str(), a.clone()))
            .collect();
        // Settings in `pool` replace the same ones in POOL.
        let base: Vec<&str> = POOL
            .lines()
            .filter(|l| {
                let key = l.split('=').next().unwrap_or("").trim();
                !pool
                    .lines()
                    .any(|p| p.split('=').next().unwrap_or("").trim() == key)
            })
            .collect();
        let mut config = shardis_config(&named, &format!("{}\n{pool}", base.join("\n")));
        if !server.is_empty() {
            config = super::ops::with_server(&config, server);
        }
        let proxy = Shardis::start(&config);
        Cluster {
            redis,
            proxy,
            config,
        }
    }

    /// A new client connection to the proxy.
    pub fn client(&self) -> Client {
        self.proxy.client()
    }

    /// A key with `prefix` that the proxy places on backend `index` (0 is s1).
    pub fn key_on(&self, index: usize, prefix: &str) -> String {
        super::ops::key_on(&self.config, index, prefix)
    }

    /// The proxy's URL for the `redis` crate, in RESP2 or RESP3.
    pub fn url(&self, resp3: bool) -> String {
        let proto = if resp3 { "?protocol=resp3" } else { "" };
        format!("redis://{}/{proto}", self.proxy.addr)
    }

    /// A `redis` crate multiplexed connection to the proxy.
    pub async fn connect(&self, resp3: bool) -> redis::aio::MultiplexedConnection {
        redis::Client::open(self.url(resp3))
            .expect("redis URL")
            .get_multiplexed_async_connection()
            .await
            .expect("connect with the redis crate")
    }

    /// Client connections each backend has, not counting the one asking.
    pub fn backend_clients(&self) -> Vec<usize> {
        self.redis.iter().map(super::ops::redis_clients).collect()
    }

    /// A direct connection to backend `i` (0 is s1).
    pub fn backend(&self, i: usize) -> Client {
        self.redis[i].client()
    }

    /// The backends that hold `key`, asked directly (EXISTS on each).
    pub fn holders(&self, key: &[u8]) -> Vec<usize> {
        (0..self.redis.len())
            .filter(|&i| match self.backend(i).cmd(&[b"EXISTS", key]) {
                Frame::Integer(n) => n == 1,
                other => panic!("EXISTS on s{}: {other:?}", i + 1),
            })
            .collect()
    }

    /// The one backend that holds `key`; panics unless exactly one does.
    pub fn holder(&self, key: &[u8]) -> usize {
        let holders = self.holders(key);
        assert_eq!(
            holders.len(),
            1,
            "key {key:?} should be on exactly one backend, found on {holders:?}"
        );
        holders[0]
    }

    /// Where `shardis route` places each key (backend index), using the proxy's own config.
    pub fn route(&self, keys: &[&str]) -> Vec<usize> {
        let dir = TempDir::new("route");
        let path = dir.path().join("shardis.toml");
        std::fs::write(&path, &self.config).expect("write shardis.toml");
        let out = Command::new(env!("CARGO_BIN_EXE_shardis"))
            .arg("route")
            .arg("--config")
            .arg(&path)
            .arg("--") // keys may start with '-'
            .args(keys)
            .output()
            .expect("run shardis route");
        assert!(
            out.status.success(),
            "shardis route failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let text = String::from_utf8(out.stdout).expect("route output is UTF-8");
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), keys.len(), "one line per key: {text:?}");
        lines
            .iter()
            .zip(keys)
            .map(|(line, key)| {
                let fields: Vec<&str> = line.split('\t').collect();
                assert_eq!(fields.len(), 4, "route line {line:?}");
                assert_eq!(fields[0], *key, "route line {line:?}");
                let i = self
                    .redis
                    .iter()
                    .position(|r| r.addr() == fields[3])
                    .unwrap_or_else(|| panic!("route names an unknown address: {line:?}"));
                assert_eq!(fields[2], format!("s{}", i + 1), "route line {line:?}");
                i
            })
            .collect()
    }

    /// Every key on every backend (KEYS * on each, directly) and the backend holding it;
    /// panics if a key is on two backends.
    pub fn locate(&self) -> HashMap<Vec<u8>, usize> {
        let mut found = HashMap::new();
        for i in 0..self.redis.len() {
            let Frame::Array(keys) = self.backend(i).cmd_str(&["KEYS", "*"]) else {
                panic!("KEYS * on s{} did not return an array", i + 1);
            };
            for k in keys {
                let Frame::Bulk(k) = k else {
                    panic!("non-bulk key {k:?} on s{}", i + 1)
                };
                if let Some(other) = found.insert(k.clone(), i) {
                    panic!("key {k:?} is on both s{} and s{}", other + 1, i + 1);
                }
            }
        }
        found
    }

    /// DBSIZE of every backend, asked directly.
    pub fn dbsizes(&self) -> Vec<i64> {
        (0..self.redis.len())
            .map(|i| match self.backend(i).cmd_str(&["DBSIZE"]) {
                Frame::Integer(n) => n,
                other => panic!("DBSIZE on s{}: {other:?}", i + 1),
            })
            .collect()
    }
}

impl Cluster {
    /// Writes `bytes` on a fresh connection to the proxy and returns everything the proxy
    /// sends until it closes the connection (panics if it does not close it in time).
    pub fn send_until_closed(&self, bytes: &[u8]) -> Vec<u8> {
        let mut stream = TcpStream::connect(self.proxy.addr).expect("connect");
        stream
            .set_read_timeout(Some(CLOSE_DEADLINE))
            .expect("set_read_timeout");
        stream.write_all(bytes).expect("write");
        let mut out = Vec::new();
        stream.read_to_end(&mut out).unwrap_or_else(|e| {
            panic!(
                "connection not closed ({e}); got so far {:?}",
                String::from_utf8_lossy(&out)
            )
        });
        out
    }
}

/// `+PONG`.
pub fn pong() -> Frame {
    Frame::Simple("PONG".into())
}

/// `+OK`.
pub fn ok() -> Frame {
    Frame::Simple("OK".into())
}

/// A bulk string reply.
pub fn bulk(s: impl AsRef<[u8]>) -> Frame {
    Frame::Bulk(s.as_ref().to_vec())
}

/// An array of bulk strings.
pub fn bulks(items: &[&str]) -> Frame {
    Frame::Array(items.iter().map(bulk).collect())
}

/// An integer reply.
pub fn int(n: i64) -> Frame {
    Frame::Integer(n)
}

/// An error reply (the text after `-`).
pub fn err(s: &str) -> Frame {
    Frame::Error(s.into())
}
