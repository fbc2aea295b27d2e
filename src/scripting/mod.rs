//! Scripts and transactions whose keys span backends, run in the proxy: what every session
//! shares for them. The [`crate::script`] engine (one per process), the registry of what runs
//! now (for `/status`), lock tokens, and where script texts are kept for every instance.
//!
//! The session decides when a script or a transaction runs here (`session/script.rs`,
//! `session/transaction_cross.rs`); this module gives it the pieces that know nothing of the
//! session: [`caller`] sends requests on the client's links and follows cluster redirections,
//! [`lock`] takes, renews and releases the locks on the backends.
//!
//! # Reserved keys
//! Everything shardis keeps on the backends is under the prefix `__shardis:` ([`PREFIX`]),
//! shared with online rebalancing:
//! - `__shardis:lock:<key>` (on a cluster pool `__shardis:lock:{<tag>}<key>`): the lock on a
//!   declared key, on that key's own backend; its value is the holder's token;
//! - `__shardis:scripts`: a hash from sha1 to script text, on the backend that owns that key,
//!   so that a script loaded or run through one shardis instance runs by its sha through any.

pub mod caller;
pub mod lock;

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, RwLock};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use bytes::{Bytes, BytesMut};

use crate::protocol::reply::{put_array_len, put_bulk};
use crate::script::{Engine, EngineConfig};

pub use lock::PREFIX;

/// The hash of script texts kept on the backends.
pub const SCRIPTS_KEY: &[u8] = b"__shardis:scripts";

/// A script or transaction running in the proxy now.
#[derive(Debug, Clone)]
pub struct Running {
    /// `script` or `transaction`.
    pub kind: &'static str,
    /// The script's sha or function name; for a transaction, its command count.
    pub what: String,
    /// The declared keys (the first 16).
    pub keys: Vec<String>,
    pub client: u64,
    pub started: Instant,
    /// 0 while it waits for its locks, 1 once it runs.
    pub running: bool,
}

/// What the sessions share for scripts and transactions across backends.
pub struct Scripting {
    pub engine: Engine,
    running: Mutex<HashMap<u64, Running>>,
    next: AtomicU64,
    /// This process's part of every lock token.
    instance: String,
    /// Script shas this instance has broadcast to the backends and stored.
    published: Mutex<HashSet<String>>,
    /// Bodies of forwarded EVALs seen (so each is cached and loaded everywhere once).
    seen: RwLock<HashSet<Bytes>>,
}

impl Default for Scripting {
    fn default() -> Self {
        Self::new()
    }
}

impl Scripting {
    pub fn new() -> Scripting {
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        let instance = format!("{:x}-{:x}", std::process::id(), nanos & 0xffff_ffff_ffff);
        Scripting {
            engine: Engine::new(EngineConfig::default()),
            running: Mutex::new(HashMap::new()),
            next: AtomicU64::new(1),
            instance,
            published: Mutex::new(HashSet::new()),
            seen: RwLock::new(HashSet::new()),
        }
    }

    /// A token no other lock holder has, on any instance.
    pub fn token(&self) -> Bytes {
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        Bytes::from(format!("{}:{n}", self.instance))
    }

    /// Registers a running script or transaction; it is listed until the guard is dropped.
    pub fn begin(&self, entry: Running) -> RunningGuard<'_> {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        if let Ok(mut m) = self.running.lock() {
            m.insert(id, entry);
        }
        RunningGuard { owner: self, id }
    }

    /// What runs now, oldest first.
    pub fn running(&self) -> Vec<Running> {
        let mut v: Vec<Running> = self
            .running
            .lock()
            .map(|m| m.values().cloned().collect())
            .unwrap_or_default();
        v.sort_by_key(|r| r.started);
        v
    }

    /// The `scripts` object of `/status`.
    pub fn status(&self) -> serde_json::Value {
        let running: Vec<serde_json::Value> = self
            .running()
            .iter()
            .map(|r| {
                serde_json::json!({
                    "kind": r.kind,
                    "what": r.what,
                    "keys": r.keys,
                    "client": r.client,
                    "state": if r.running { "running" } else { "locking" },
                    "elapsed_ms": r.started.elapsed().as_millis() as u64,
                })
            })
            .collect();
        serde_json::json!({
            "cached_scripts": self.engine.cached_scripts(),
            "running": running,
        })
    }

    /// Marks `sha` as published by this instance; false if it already was.
    pub fn first_publish(&self, sha: &str) -> bool {
        self.published
            .lock()
            .is_ok_and(|mut s| s.insert(sha.to_string()))
    }

    /// Whether `body` is seen for the first time (then it is remembered).
    pub fn first_sight(&self, body: &Bytes) -> bool {
        if self.seen.read().is_ok_and(|s| s.contains(body)) {
            return false;
        }
        self.seen.write().is_ok_and(|mut s| s.insert(body.clone()))
    }

    /// SCRIPT FLUSH: forget every script.
    pub fn flush(&self) {
        self.engine.flush_scripts();
        if let Ok(mut s) = self.published.lock() {
            s.clear();
        }
        if let Ok(mut s) = self.seen.write() {
            s.clear();
        }
    }
}

/// Removes its entry from the registry when dropped.
pub struct RunningGuard<'a> {
    owner: &'a Scripting,
    id: u64,
}

impl RunningGuard<'_> {
    /// The locks are taken: the script runs.
    pub fn started(&self) {
        if let Ok(mut m) = self.owner.running.lock()
            && let Some(r) = m.get_mut(&self.id)
        {
            r.running = true;
        }
    }
}

impl Drop for RunningGuard<'_> {
    fn drop(&mut self) {
        if let Ok(mut m) = self.owner.running.lock() {
            m.remove(&self.id);
        }
    }
}

/// A command as a RESP array of bulk strings.
pub fn command(args: &[&[u8]]) -> Bytes {
    let mut out = BytesMut::with_capacity(16 + args.iter().map(|a| a.len() + 16).sum::<usize>());
    put_array_len(&mut out, args.len());
    for a in args {
        put_bulk(&mut out, a);
    }
    out.freeze()
}

/// Keys as text for the registry and logs (at most 16, each cut at 64 bytes).
pub fn shown_keys(keys: &[Bytes]) -> Vec<String> {
    keys.iter()
        .take(16)
        .map(|k| String::from_utf8_lossy(&k[..k.len().min(64)]).into_owned())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_differ_and_registry_lists_until_dropped() {
        let s = Scripting::new();
        assert_ne!(s.token(), s.token());
        let g = s.begin(Running {
            kind: "script",
            what: "abc".into(),
            keys: vec!["k".into()],
            client: 3,
            started: Instant::now(),
            running: false,
        });
        assert_eq!(s.status()["running"][0]["state"], "locking");
        g.started();
        assert_eq!(s.status()["running"][0]["state"], "running");
        drop(g);
        assert!(s.running().is_empty());
        assert!(s.first_publish("x"));
        assert!(!s.first_publish("x"));
        s.flush();
        assert!(s.first_publish("x"));
        assert_eq!(
            &command(&[b"GET", b"k"])[..],
            b"*2\r\n$3\r\nGET\r\n$1\r\nk\r\n"
        );
    }
}
