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

pub mod faults;
pub mod followup;
pub mod mirror;
mod pool;
mod prefix;
mod route;
mod routes;
mod settings;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::SystemTime;

use arc_swap::ArcSwap;
use tokio::sync::mpsc;

pub use faults::{Fault, Faults};
pub use followup::{Goal, Next, Retry, Sent};
pub use mirror::Mirror;
pub use pool::{Placement, Pool};
pub use prefix::Prefixes;
pub use route::{Dest, RouteError, keyed_read, names_other_db};
pub use routes::{Located, MirrorRule, NO_ROUTE, Routes, Target};
pub use settings::Settings;

use crate::backend::{Backend, BackendState, Request, Spec, build};

/// A routing table: the pools, the prefix routes, mirrors and faults, and the settings in
/// force. Immutable; a reload, an ejection or a new slot map builds a new one and swaps it
/// whole.
pub struct Table {
    /// Every pool, in configuration order.
    pub pools: Vec<Pool>,
    /// The pool of keys when there are no routes (the catch-all), and of commands about no key
    /// that any one backend answers (the catch-all, else the first route's pool).
    catch_all: usize,
    /// Where each pool's backends start in the proxy-wide numbering that broadcasts use (pool
    /// `p`'s backend `i` is number `first[p] + i`).
    first: Vec<usize>,
    /// The same for the pools that serve keys only (not those that are only mirrors): the
    /// numbering of SCAN cursors, KEYS, DBSIZE and RANDOMKEY. (pool, first number) each.
    keyspace: Vec<(usize, usize)>,
    /// Where each pool's groups ([`Pool::group_of`]) start in the numbering of a split
    /// command's groups, so keys of several pools split by pool and group.
    group_base: Vec<usize>,
    /// Prefix routes; `None`: every key goes to the catch-all as it is.
    routes: Option<Box<Routes>>,
    /// Injected errors and delays; `None`: off.
    faults: Option<Box<Faults>>,
    /// By pool: the mirror state of each pool that routes mirror to.
    mirrors: Vec<Option<Arc<Mirror>>>,
    /// A route removes a prefix or mirrors, or a fault is on: keyed commands take the
    /// session's slower path that handles them.
    special: bool,
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
        let mut keyspace = Vec::with_capacity(pools.len());
        let mut group_base = Vec::with_capacity(pools.len());
        let (mut at, mut served, mut groups) = (0, 0, 0);
        for (i, p) in pools.iter().enumerate() {
            first.push(at);
            at += p.backends.len();
            if p.serves {
                keyspace.push((i, served));
                served += p.backends.len();
            }
            group_base.push(groups);
            groups += p.groups();
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
            mirrors: vec![None; pools.len()],
            bigkey_reply: threshold(|k| k.bigkey_reply_bytes),
            bigkey_request: threshold(|k| k.bigkey_request_bytes),
            pools,
            catch_all,
            first,
            keyspace,
            group_base,
            routes: None,
            faults: None,
            special: false,
            settings,
            digest,
            loaded: SystemTime::now(),
        }
    }

    /// This table with prefix routes, faults and the mirror states by pool.
    pub fn with_routing(
        mut self,
        routes: Option<Routes>,
        faults: Option<Faults>,
        mirrors: Vec<Option<Arc<Mirror>>>,
    ) -> Table {
        self.special =
            routes.as_ref().is_some_and(|r| r.strips() || r.mirrors()) || faults.is_some();
        self.routes = routes.map(Box::new);
        self.faults = faults.map(Box::new);
        if mirrors.len() == self.pools.len() {
            self.mirrors = mirrors;
        }
        self
    }

    /// Whether keyed commands must take the slower path: a prefix to remove, a mirror or a
    /// fault.
    #[inline]
    pub fn special(&self) -> bool {
        self.special
    }

    /// The faults in force, if any.
    #[inline]
    pub fn faults(&self) -> Option<&Faults> {
        self.faults.as_deref()
    }

    /// The mirror state of pool `pool`, if routes mirror to it.
    pub fn mirror(&self, pool: usize) -> Option<&Arc<Mirror>> {
        self.mirrors.get(pool)?.as_ref()
    }

    /// Group `group` of pool `pool` in the numbering of split groups.
    #[inline]
    pub fn group_base(&self, pool: usize) -> usize {
        self.group_base.get(pool).copied().unwrap_or(0)
    }

    /// How many split groups all pools have together.
    pub fn groups(&self) -> usize {
        self.pools.iter().map(Pool::groups).sum()
    }

    /// The pool and its group of number `n` of the split-group numbering.
    pub fn group_at(&self, n: usize) -> Option<(usize, usize)> {
        let p = self.group_base.iter().rposition(|&b| b <= n)?;
        Some((p, n - self.group_base[p]))
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
                let address = b.address.to_string();
                let spec = Spec::new(&pool.name, &b.name, &address, target, pool.timeout);
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

    /// A table of every hashed pool of `config`, with its routes, faults and mirrors, whose
    /// links are not started (see [`Table::detached`]): the receivers of each pool's backends,
    /// by pool. For benches and tests without sockets.
    pub fn detached_config(
        config: &crate::config::Config,
    ) -> (Table, Vec<Vec<mpsc::Receiver<Request>>>) {
        let mut pools = Vec::with_capacity(config.pools.len());
        let mut receivers = Vec::with_capacity(config.pools.len());
        for (i, p) in config.pools.iter().enumerate() {
            let (mut one, rx) = Table::detached(p);
            let mut pool = one.pools.remove(0);
            pool.serves = config.routing.serves(i);
            pools.push(pool);
            receivers.push(rx);
        }
        let catch_all = default_pool(config);
        let mirrors = mirror_pools(config)
            .map(|(i, on)| on.then(|| Mirror::new(&config.pools[i].name, 0)))
            .collect();
        let table = Table::new(pools, catch_all, Settings::default(), String::new()).with_routing(
            Routes::new(&config.routing),
            Faults::new(&config.faults),
            mirrors,
        );
        (table, receivers)
    }

    /// [`Table::detached_config`]'s table alone.
    #[cfg(test)]
    pub(crate) fn for_tests(config: &crate::config::Config) -> Table {
        Table::detached_config(config).0
    }

    /// The pool that serves `key` (for a channel name: no prefix is removed from those).
    #[inline]
    pub fn pool_of(&self, key: &[u8]) -> Option<&Pool> {
        self.pools.get(self.locate(key).ok()?.pool)
    }

    /// The index of [`Table::default_pool`].
    #[inline]
    pub fn default_index(&self) -> usize {
        self.catch_all
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

    /// How many backends the pools that serve keys have: the numbering of SCAN cursors and of
    /// KEYS, DBSIZE and RANDOMKEY's parts ([`Table::keyspace_dest_at`]). Pools that are only
    /// mirrors hold copies, and are left out.
    pub fn keyspace_count(&self) -> usize {
        self.keyspace
            .iter()
            .map(|&(p, _)| self.pools[p].backends.len())
            .sum()
    }

    /// Backend number `n` of the pools that serve keys, as a destination, and its pool.
    pub fn keyspace_dest_at(&self, n: usize) -> Option<(usize, Dest)> {
        let i = self.keyspace.iter().rposition(|&(_, f)| f <= n)?;
        let (p, f) = self.keyspace[i];
        Some((p, self.pools.get(p)?.dest(n - f)?))
    }

    /// Whether some pool only mirrors (so the keyspace numbering differs from the backends').
    pub fn has_mirror_only_pools(&self) -> bool {
        self.pools.iter().any(|p| !p.serves)
    }

    /// Where pool `pool`'s backends start in the proxy-wide numbering of [`Table::backends`].
    pub fn first_of(&self, pool: usize) -> usize {
        self.first.get(pool).copied().unwrap_or(0)
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

/// The pool of keyless commands that any backend answers: the catch-all, else the first
/// route's pool, else the first pool.
pub fn default_pool(config: &crate::config::Config) -> usize {
    config
        .catch_all()
        .or_else(|| config.routing.routes.first().map(|r| r.pool))
        .unwrap_or(0)
}

/// Each pool of `config` (by index), and whether some route mirrors to it.
pub fn mirror_pools(config: &crate::config::Config) -> impl Iterator<Item = (usize, bool)> + '_ {
    let r = &config.routing;
    (0..config.pools.len())
        .map(move |i| {
            r.catch_all_mirror.iter().any(|m| m.pool == i)
                || r.routes
                    .iter()
                    .any(|route| route.mirror.iter().any(|m| m.pool == i))
        })
        .enumerate()
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
