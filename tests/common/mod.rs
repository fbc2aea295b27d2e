//! Integration-test harness: real redis-server, nutcracker and shardis processes on free
//! loopback ports, each in its own temp dir, killed on drop; and a tiny RESP2 client.
//!
//! Use from a test file with `mod common;` and `use common::{Redis, Nutcracker, Shardis, ...};`.
// Each test file uses a different part of the harness.
#![allow(dead_code, unused_imports)]

mod client;
mod cluster;
pub mod load;
pub mod manifests;
mod mock;
pub mod ops;
mod procs;
pub mod redis_cluster;
pub mod sentinel;
mod shardis;
pub mod tls;

use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

pub use client::{Client, Frame};
pub use cluster::{CLOSE_DEADLINE, Cluster, POOL, bulk, bulks, err, int, ok, pong};
pub use mock::Mock;
pub use procs::{Nutcracker, Redis};
pub use redis_cluster::RedisCluster;
pub use sentinel::Replicated;
pub use shardis::{Shardis, shardis_config};
pub use tls::Pki;

/// How long a process may take to become ready.
pub const STARTUP_DEADLINE: Duration = Duration::from_secs(10);

/// How often a process is restarted on another port when it dies at startup (port race).
const START_ATTEMPTS: usize = 5;

/// A loopback port that was free a moment ago: bind 127.0.0.1:0 and release it.
pub fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    listener.local_addr().expect("local_addr").port()
}

/// A fresh, empty directory under the system temp dir, removed on drop (also when a start
/// fails with a panic, so failed runs leave nothing behind).
pub struct TempDir(PathBuf);

impl TempDir {
    /// Creates `<tmp>/shardis-test-<what>-<pid>-<n>`.
    pub fn new(what: &str) -> TempDir {
        static COUNTER: AtomicUsize = AtomicUsize::new(0);
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let name = format!("shardis-test-{what}-{}-{n}", std::process::id());
        let dir = std::env::temp_dir().join(name);
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("create {}: {e}", dir.display()));
        TempDir(dir)
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The path of an installed program, searched in PATH and then /usr/sbin and /usr/bin (Debian
/// installs nutcracker in /usr/sbin, which is not on every user's PATH).
pub fn find_program(name: &str, package: &str) -> PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain([
            "/usr/sbin".into(),
            "/usr/bin".into(),
            "/usr/local/bin".into(),
        ])
        .map(|dir| dir.join(name))
        .find(|p| p.is_file())
        .unwrap_or_else(|| {
            panic!(
                "{name} is not installed; the integration tests need it: apt-get install {package}"
            )
        })
}

/// The last few lines of a log file, for failure messages.
fn log_tail(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(20)..].join("\n")
}

/// True when something accepts TCP connections at `addr`.
fn accepts(addr: SocketAddr) -> bool {
    std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok()
}
