//! Routing: the live table of pools, and the decisions the data path asks of it for one
//! request: which pool and backend own a command's keys ([`Table::route`]), how a multi-key
//! command is grouped ([`Pool::group_of`]), and what a backend's reply means for the request
//! that got it ([`followup`]: deliver it, or send the request elsewhere first).
//!
//! A [`Table`] is immutable: a list of [`Pool`]s, each with its backends and a [`Placement`]
//! (a hash ring, or a Redis Cluster slot map) that one `match` consults, and the session
//! [`Settings`] in force. Reloads, ejections and new slot maps build a whole new table and
//! swap it in ([`Routing`]); a session keeps the table it loaded and looks at the generation
//! (one atomic load per batch of commands) to know when to load again. A request in flight
//! holds its backend and its frame ([`Sent`]), never an index into a table that may be gone.
//!
//! Building tables from the configuration is [`crate::topology`]'s; connections are
//! [`crate::backend`]'s. Nothing here does I/O.

pub mod followup;
mod pool;
mod route;
mod settings;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::SystemTime;

use arc_swap::ArcSwap;
use tokio::sync::mpsc;

pub use followup::{Goal, Next, Retry, Sent};
pub use pool::{Placement, Pool};
pub use route::{Dest, RouteError, keyed_read, names_other_db};
pub use settings::Settings;

use crate::backend::{Backend, BackendState, Request, Spec, build};

/// A routing table: the pools, and the settings in force. Immutable; a reload, an ejection or
/// a new slot map builds a new one and swaps it whole.
pub struct Table {
    /// Every pool, in configuration order.
    pub pools: Vec<Pool>,
    /// The pool of keys that no route names: the catch-all (today, the one pool).
    catch_all: usize,
    /// Where each pool's backends start in the proxy-wide numbering that broadcasts and SCAN
    /// cursors use (pool `p`'s backend `i` is number `first[p] + i`).
    first: Vec<usize>,
    pub settings: Settings,
    /// The smallest `bigkey_reply_bytes` and `bigkey_request_bytes` of the pools (`usize::MAX`:
    /// none): what the request path compares a size with before looking further.
    pub bigkey_reply: usize,
    pub bigkey_request: usize,
    /// Digest of the configuration, and when it was loaded.
    pub digest: String,
    pub loaded: SystemTime,
}

impl Table {
    /// A table over `pools`; keys go to `catch_all` unless a route names another.
    pub fn new(pools: Vec<Pool>, catch_all: usize, settings: Settings, digest: String) -> Table {
        let mut first = Vec::with_capacity(pools.len());
        let mut at = 0;
        for p in &pools {
            first.push(at);
            at += p.backends.len();
        }
        let threshold = |f: fn(&crate::config::KeysConfig) -> usize| {
            pools
                .iter()
                .filter_map(|p| p.watch.as_ref())
                .map(|w| f(&w.settings))
                .filter(|&v| v > 0)
                .min()
                .unwrap_or(usize::MAX)
        };
        Table {
            bigkey_reply: threshold(|k| k.bigkey_reply_bytes),
            bigkey_request: threshold(|k| k.bigkey_request_bytes),
            pools,
            catch_all,
            first,
            settings,
            digest,
            loaded: SystemTime::now(),
        }
    }

    /// A table with no pool: every keyed command fails, every broadcast gets no reply part.
    pub fn empty(settings: Settings, digest: String) -> Table {
        Table::new(Vec::new(), 0, settings, digest)
    }

    /// A table of one hashed pool whose links are not started: each backend gets one queue
    /// (for both protocols) that the caller reads. For benches and tests without sockets.
    pub fn detached(pool: &crate::config::PoolConfig) -> (Table, Vec<mpsc::Receiver<Request>>) {
        let mut receivers = Vec::with_capacity(pool.backends.len());
        let backends = pool
            .backends
            .iter()
            .map(|b| {
                let target = build::target(b, pool, None, false);
                let spec = Spec::new(&b.name, &b.address.to_string(), target, pool.timeout);
                let (backend, rx) = Backend::detached(Arc::new(spec));
                receivers.push(rx);
                backend
            })
            .collect::<Vec<_>>();
        let slots = (0..backends.len()).collect();
        let pool = Pool::ring(pool.name.clone(), backends, pool.ring(), slots, pool.db);
        let table = Table::new(vec![pool], 0, Settings::default(), String::new());
        (table, receivers)
    }

    /// The pool that serves `key`.
    #[inline]
    pub fn pool_of(&self, _key: &[u8]) -> Option<&Pool> {
        self.pools.get(self.catch_all)
    }

    /// The pool that answers commands about no key that any one backend can answer.
    #[inline]
    pub fn default_pool(&self) -> Option<&Pool> {
        self.pools.get(self.catch_all)
    }

    /// Every backend of every pool, in the proxy-wide numbering (broadcasts, SCAN).
    pub fn backends(&self) -> impl Iterator<Item = &Arc<Backend>> {
        self.pools.iter().flat_map(|p| p.backends.iter())
    }

    /// How many backends [`Table::backends`] lists.
    pub fn backend_count(&self) -> usize {
        self.pools.iter().map(|p| p.backends.len()).sum()
    }

    /// Backend number `n` of [`Table::backends`], as a destination.
    pub fn dest_at(&self, n: usize) -> Option<Dest> {
        let p = self.first.iter().rposition(|&f| f <= n)?;
        let pool = self.pools.get(p)?;
        pool.dest(n - self.first[p])
    }

    /// The number [`Table::backends`] gives `backend`, if this table has it.
    pub fn number_of(&self, backend: &Arc<Backend>) -> Option<usize> {
        self.backends().position(|b| Arc::ptr_eq(b, backend))
    }

    /// Shared states of all backends: each pool's, in configuration order (for a cluster:
    /// the primaries, then the replicas).
    pub fn states(&self) -> Vec<Arc<BackendState>> {
        self.pools.iter().flat_map(Pool::states).collect()
    }
}

/// The live routing table, swapped atomically. Sessions keep the table they loaded and look
/// at the generation (one atomic load) to know when to load again.
pub struct Routing {
    table: ArcSwap<Table>,
    generation: AtomicU64,
}

impl Routing {
    pub fn new(table: Table) -> Routing {
        Routing {
            table: ArcSwap::from_pointee(table),
            generation: AtomicU64::new(1),
        }
    }

    /// The table in force.
    pub fn load(&self) -> Arc<Table> {
        self.table.load_full()
    }

    /// Bumped by every swap.
    #[inline]
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// Puts `table` in force.
    pub fn swap(&self, table: Table) {
        self.table.store(Arc::new(table));
        self.generation.fetch_add(1, Ordering::Release);
    }
}
