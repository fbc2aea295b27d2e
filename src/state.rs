//! Proxy-wide state: readiness, drain, client and command counts, and the backends' health,
//! shared by the sessions (INFO), the server (drain) and the admin endpoints.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::Instant;

use crate::backend::BackendState;

/// Proxy-wide state shared with the admin server and INFO.
#[derive(Debug)]
pub struct ProxyState {
    pub started: Instant,
    /// Hex digest of the loaded configuration.
    pub config_digest: String,
    /// One entry per backend, in configuration order.
    pub backends: Vec<Arc<BackendState>>,
    ready: AtomicBool,
    draining: AtomicBool,
    clients: AtomicUsize,
    commands: AtomicU64,
}

impl ProxyState {
    pub fn new(config_digest: String, backends: Vec<Arc<BackendState>>) -> Self {
        Self {
            started: Instant::now(),
            config_digest,
            backends,
            ready: AtomicBool::new(false),
            draining: AtomicBool::new(false),
            clients: AtomicUsize::new(0),
            commands: AtomicU64::new(0),
        }
    }
    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Relaxed)
    }
    pub fn set_ready(&self) {
        self.ready.store(true, Ordering::Relaxed)
    }
    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::Relaxed)
    }
    pub fn set_draining(&self) {
        self.draining.store(true, Ordering::Relaxed)
    }
    pub fn clients(&self) -> usize {
        self.clients.load(Ordering::Relaxed)
    }
    pub fn client_connected(&self) {
        self.clients.fetch_add(1, Ordering::Relaxed);
    }
    pub fn client_disconnected(&self) {
        self.clients.fetch_sub(1, Ordering::Relaxed);
    }
    pub fn commands(&self) -> u64 {
        self.commands.load(Ordering::Relaxed)
    }
    pub fn add_commands(&self, n: u64) {
        self.commands.fetch_add(n, Ordering::Relaxed);
    }
}
