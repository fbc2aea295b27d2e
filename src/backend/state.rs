//! Shared, lock-free view of one backend's health, read by the sessions (to fail fast), the
//! admin server and INFO.
//!
//! Health is counted in consecutive failures of any kind (a failed connect or handshake, a
//! closed connection, a request past its timeout, a failed PING); `failure_limit` of them mark
//! the backend down, and one success (a handshake, a reply, a PING) marks it up again.

use std::sync::Mutex;

use crate::metrics::BackendErrorKind;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering};

/// Health and load of one backend, updated by its connection tasks.
#[derive(Debug)]
pub struct BackendState {
    /// Configured name (the placement identity).
    pub name: String,
    /// "host:port" as configured.
    pub address: String,
    connections: AtomicUsize,
    inflight: AtomicUsize,
    /// The backend's Redis version from its last handshake, packed (0: unknown).
    version: AtomicU64,
    /// The last error and its kind (the metric label: `connect`, `auth`, ...).
    last_error: Mutex<Option<(String, &'static str)>>,
    failures: AtomicU32,
    failure_limit: AtomicU32,
    down: AtomicBool,
    /// Taken out of the ring (auto_eject) while down.
    ejected: AtomicBool,
    /// A replicated shard's primary, replicas and last failover (for /status); `None` for a
    /// plain backend.
    pub shard: Mutex<Option<super::shard::ShardStatus>>,
}

/// A change of health.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    Down,
    Up,
}

impl BackendState {
    pub fn new(name: impl Into<String>, address: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            address: address.into(),
            connections: AtomicUsize::new(0),
            inflight: AtomicUsize::new(0),
            version: AtomicU64::new(0),
            last_error: Mutex::new(None),
            failures: AtomicU32::new(0),
            failure_limit: AtomicU32::new(u32::MAX),
            down: AtomicBool::new(false),
            ejected: AtomicBool::new(false),
            shard: Mutex::new(None),
        }
    }
    /// True while a shared link is connected (its handshake answered) and the backend is not
    /// marked down.
    pub fn is_up(&self) -> bool {
        self.connections() > 0 && !self.is_down()
    }
    /// Marked down: `failure_limit` consecutive failures and no success since.
    #[inline]
    pub fn is_down(&self) -> bool {
        self.down.load(Ordering::Relaxed)
    }
    /// Out of the ring while down (auto_eject).
    pub fn is_ejected(&self) -> bool {
        self.ejected.load(Ordering::Relaxed)
    }
    pub(crate) fn set_ejected(&self, ejected: bool) {
        self.ejected.store(ejected, Ordering::Relaxed);
    }
    /// Consecutive failures since the last success.
    pub fn failures(&self) -> u32 {
        self.failures.load(Ordering::Relaxed)
    }
    pub(crate) fn set_failure_limit(&self, limit: u32) {
        self.failure_limit.store(limit.max(1), Ordering::Relaxed);
    }
    /// Counts a failure; returns `Down` when it marks the backend down.
    pub(crate) fn failed(&self) -> Option<Change> {
        let n = self
            .failures
            .fetch_add(1, Ordering::Relaxed)
            .saturating_add(1);
        if n >= self.failure_limit.load(Ordering::Relaxed)
            && !self.down.swap(true, Ordering::Relaxed)
        {
            return Some(Change::Down);
        }
        None
    }
    /// Counts a success; returns `Up` when it ends a down period.
    #[inline]
    pub(crate) fn succeeded(&self) -> Option<Change> {
        if self.failures.load(Ordering::Relaxed) != 0 {
            self.failures.store(0, Ordering::Relaxed);
        }
        if self.down.load(Ordering::Relaxed) && self.down.swap(false, Ordering::Relaxed) {
            return Some(Change::Up);
        }
        None
    }
    pub fn connections(&self) -> usize {
        self.connections.load(Ordering::Relaxed)
    }
    pub fn inflight(&self) -> usize {
        self.inflight.load(Ordering::Relaxed)
    }
    /// The backend's Redis version, as its handshake gave it.
    pub fn version(&self) -> Option<[u32; 3]> {
        let v = self.version.load(Ordering::Relaxed);
        (v != 0).then_some([
            (v >> 40) as u32,
            (v >> 20 & 0xFFFFF) as u32,
            (v & 0xFFFFF) as u32,
        ])
    }
    pub(crate) fn set_version(&self, [major, minor, patch]: [u32; 3]) {
        let packed =
            (major as u64) << 40 | (minor as u64 & 0xFFFFF) << 20 | (patch as u64 & 0xFFFFF);
        self.version.store(packed.max(1), Ordering::Relaxed);
    }
    pub fn last_error(&self) -> Option<String> {
        self.last_error
            .lock()
            .ok()
            .and_then(|e| e.as_ref().map(|(msg, _)| msg.clone()))
    }
    /// The kind of the last error (`auth` for refused credentials).
    pub fn last_error_kind(&self) -> Option<&'static str> {
        self.last_error
            .lock()
            .ok()
            .and_then(|e| e.as_ref().map(|(_, kind)| *kind))
    }
    /// A shared link connected (its handshake answered).
    pub fn connection_opened(&self) {
        self.connections.fetch_add(1, Ordering::Relaxed);
    }
    /// A shared link lost its connection.
    pub fn connection_closed(&self) {
        self.connections.fetch_sub(1, Ordering::Relaxed);
    }
    pub(crate) fn add_inflight(&self, n: usize) {
        self.inflight.fetch_add(n, Ordering::Relaxed);
    }
    pub(crate) fn sub_inflight(&self, n: usize) {
        self.inflight.fetch_sub(n, Ordering::Relaxed);
    }
    pub(crate) fn set_error(&self, kind: BackendErrorKind, err: impl Into<String>) {
        if let Ok(mut e) = self.last_error.lock() {
            *e = Some((err.into(), kind.label()));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failures_mark_down_and_a_success_marks_up() {
        let s = BackendState::new("s1", "h:1");
        s.set_failure_limit(3);
        assert_eq!(s.failed(), None);
        assert_eq!(s.failed(), None);
        assert_eq!(s.succeeded(), None, "a success resets the count");
        assert_eq!(s.failed(), None);
        assert_eq!(s.failed(), None);
        assert_eq!(s.failed(), Some(Change::Down));
        assert!(s.is_down());
        assert_eq!(s.failed(), None, "down once");
        assert_eq!(s.succeeded(), Some(Change::Up));
        assert!(!s.is_down());
        assert_eq!(s.failures(), 0);
    }
}
