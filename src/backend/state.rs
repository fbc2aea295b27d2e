//! Shared, lock-free view of one backend's health, read by the admin server and INFO.

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};

/// Health and load of one backend, updated by its connection tasks.
#[derive(Debug)]
pub struct BackendState {
    /// Configured name (the placement identity).
    pub name: String,
    /// "host:port" as configured.
    pub address: String,
    up: AtomicBool,
    connections: AtomicUsize,
    inflight: AtomicUsize,
    /// The backend's Redis version from its last handshake, packed (0: unknown).
    version: AtomicU64,
    last_error: Mutex<Option<String>>,
}

impl BackendState {
    pub fn new(name: impl Into<String>, address: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            address: address.into(),
            up: AtomicBool::new(false),
            connections: AtomicUsize::new(0),
            inflight: AtomicUsize::new(0),
            version: AtomicU64::new(0),
            last_error: Mutex::new(None),
        }
    }
    /// True while at least one connection to the backend is established.
    pub fn is_up(&self) -> bool {
        self.connections() > 0
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
        self.last_error.lock().ok().and_then(|e| e.clone())
    }
    pub(crate) fn connection_opened(&self) {
        self.connections.fetch_add(1, Ordering::Relaxed);
        self.up.store(true, Ordering::Relaxed);
    }
    pub(crate) fn connection_closed(&self) {
        let before = self.connections.fetch_sub(1, Ordering::Relaxed);
        if before <= 1 {
            self.up.store(false, Ordering::Relaxed);
        }
    }
    pub(crate) fn add_inflight(&self, n: usize) {
        self.inflight.fetch_add(n, Ordering::Relaxed);
    }
    pub(crate) fn sub_inflight(&self, n: usize) {
        self.inflight.fetch_sub(n, Ordering::Relaxed);
    }
    pub(crate) fn set_error(&self, err: impl Into<String>) {
        if let Ok(mut e) = self.last_error.lock() {
            *e = Some(err.into());
        }
    }
}
