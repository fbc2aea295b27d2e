//! Proxy-wide state: readiness, drain, the connected clients and command count, and the
//! backends' health, shared by the sessions (INFO, CLIENT LIST), the server (drain) and the
//! admin endpoints.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Instant;

use crate::backend::BackendState;
use crate::clients::Clients;
use crate::routing::Routing;

/// Where the backends come from: a fixed list (tests, benches) or the live routing table.
enum Backends {
    Fixed {
        digest: String,
        list: Vec<Arc<BackendState>>,
    },
    Live(Arc<Routing>),
}

/// Proxy-wide state shared with the admin server and INFO.
pub struct ProxyState {
    pub started: Instant,
    backends: Backends,
    /// Every connected client.
    pub clients: Clients,
    ready: AtomicBool,
    draining: AtomicBool,
    commands: AtomicU64,
    /// Scripts and transactions across backends: the Lua engine, what runs now.
    pub scripting: crate::scripting::Scripting,
    /// Error replies by code, for `INFO errorstats`.
    pub errors: crate::errorstats::ErrorStats,
}

impl ProxyState {
    /// A state over a fixed list of backends (tests and benches).
    pub fn new(config_digest: String, backends: Vec<Arc<BackendState>>) -> Self {
        Self::with(Backends::Fixed {
            digest: config_digest,
            list: backends,
        })
    }

    /// A state that reads the backends and the configuration digest from the live table.
    pub fn live(routing: Arc<Routing>) -> Self {
        Self::with(Backends::Live(routing))
    }

    fn with(backends: Backends) -> Self {
        Self {
            started: Instant::now(),
            backends,
            clients: Clients::default(),
            ready: AtomicBool::new(false),
            draining: AtomicBool::new(false),
            commands: AtomicU64::new(0),
            scripting: crate::scripting::Scripting::new(),
            errors: crate::errorstats::ErrorStats::default(),
        }
    }
    /// Every configured backend, in configuration order.
    pub fn backends(&self) -> Vec<Arc<BackendState>> {
        match &self.backends {
            Backends::Fixed { list, .. } => list.clone(),
            Backends::Live(routing) => routing.load().states(),
        }
    }
    /// The routing table in force, when the state follows a live one.
    pub fn table(&self) -> Option<Arc<crate::routing::Table>> {
        match &self.backends {
            Backends::Fixed { .. } => None,
            Backends::Live(routing) => Some(routing.load()),
        }
    }
    /// Hex digest of the configuration in force.
    pub fn config_digest(&self) -> String {
        match &self.backends {
            Backends::Fixed { digest, .. } => digest.clone(),
            Backends::Live(routing) => routing.load().digest.clone(),
        }
    }
    /// What `view` makes of the cluster pool's slot map and counters, if a pool is a cluster.
    fn cluster<T>(&self, view: impl Fn(&crate::cluster::Route) -> T) -> Option<T> {
        let Backends::Live(routing) = &self.backends else {
            return None;
        };
        routing
            .load()
            .pools
            .iter()
            .find_map(|p| p.cluster_route().map(&view))
    }

    /// The `cluster` object of `/status`, for a cluster pool.
    pub fn cluster_status(&self) -> Option<serde_json::Value> {
        self.cluster(crate::cluster::Route::status)
    }

    /// The `# Cluster` section of `INFO`, for a cluster pool.
    pub fn cluster_info(&self) -> Option<String> {
        self.cluster(crate::cluster::Route::info)
    }

    /// `[server] max_client_memory` in force, when known and on.
    pub fn max_client_memory(&self) -> Option<usize> {
        match &self.backends {
            Backends::Fixed { .. } => None,
            Backends::Live(routing) => routing.load().settings.max_client_memory,
        }
    }

    /// When the configuration in force was loaded.
    pub fn config_loaded(&self) -> Option<std::time::SystemTime> {
        match &self.backends {
            Backends::Fixed { .. } => None,
            Backends::Live(routing) => Some(routing.load().loaded),
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
    /// Connected clients.
    pub fn client_count(&self) -> usize {
        self.clients.count()
    }
    pub fn commands(&self) -> u64 {
        self.commands.load(Ordering::Relaxed)
    }
    pub fn add_commands(&self, n: u64) {
        self.commands.fetch_add(n, Ordering::Relaxed);
    }
}
