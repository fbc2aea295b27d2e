//! Integration-test harness: real redis-server, nutcracker and shardis processes on free
//! loopback ports, each in its own temp dir, killed on drop; and a tiny RESP2 client.
//!
//! Use from a test file with `mod common;` and `use common::{Redis, Nutcracker, Shardis, ...};`.
#![allow(dead_code)] // each test file uses a different part of the harness

mod client;
mod procs;
mod shardis;

use std::net::{SocketAddr, TcpListener};
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

pub use client::{Client, Frame};
pub use procs::{Nutcracker, Redis};
pub use shardis::{Shardis, shardis_config};

/// How long a process may take to become ready.
pub const STARTUP_DEADLINE: Duration = Duration::from_secs(10);

/// How often a process is restarted on another port when it dies at startup (port race).
const START_ATTEMPTS: usize = 5;

/// A loopback port that was free a moment ago: bind 127.0.0.1:0 and release it.
pub fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    listener.local_addr().expect("local_addr").port()
}

/// A fresh, empty directory under the system temp dir, removed by the owner's `Drop`.
fn temp_dir(what: &str) -> PathBuf {
    static COUNTER: AtomicUsize = AtomicUsize::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let dir = std::env::temp_dir().join(format!("shardis-test-{what}-{}-{n}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("create {}: {e}", dir.display()));
    dir
}

/// The path of an installed program, searched in PATH and then /usr/sbin and /usr/bin (Debian
/// installs nutcracker in /usr/sbin, which is not on every user's PATH).
fn find_program(name: &str, package: &str) -> PathBuf {
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
fn log_tail(path: &std::path::Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(20)..].join("\n")
}

/// True when something accepts TCP connections at `addr`.
fn accepts(addr: SocketAddr) -> bool {
    std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok()
}
