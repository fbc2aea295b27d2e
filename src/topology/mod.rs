//! The live topology: routing tables built from the configuration, backends kept across
//! reloads, and ejection of down backends.
//!
//! A backend is identified by its name: a reload keeps a backend whose name, address and
//! connection settings are unchanged (with its links, in-flight requests, exclusive
//! connections and subscriptions), starts the ones that are new or changed, and drops the ones
//! that are gone. A dropped backend's links finish the requests already sent to them and then
//! close, once no table or session holds the backend any more. The new table is swapped in
//! whole; sessions pick it up with their next command.
//!
//! A reload re-reads the TLS files: the client listener's certificate is swapped for new
//! connections (existing ones keep theirs), and a pool whose TLS files or settings changed
//! rebuilds its backends (their fingerprint holds the files' digest).
//!
//! With `auto_eject`, a backend marked down is taken out of the ring (its keys move to the
//! others) and put back when it is up again, like twemproxy's `auto_eject_hosts`.
//!
//! Backend host names are resolved on every connect and again every `dns_refresh_ms`: when a
//! name resolves to other addresses, its connections finish what they were sent and
//! reconnect to the new ones. With `discovery = "dns"` the pool's one host name stands for a
//! set of backends, one per address it resolves to, named by that address; when the set
//! changes, the table is rebuilt (and, since placement follows names, keys move).
//!
//! A cluster pool (`kind = "cluster"`) has no listed backends: its nodes come from the slot
//! map that `topology/cluster.rs` keeps current, and each new map is put in force here, like a reload,
//! keeping the nodes that stay.
//!
//! Each pool has its own state (`PoolState`, in `topology/pools.rs`): its backends by name, the addresses
//! DNS discovery found, and a cluster pool's slot map and refresh task.

mod cluster;
mod pools;
mod sentinel;
mod watch;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};

use arc_swap::ArcSwap;
use serde_json::json;
use tokio::sync::mpsc;
use tracing::{error, info, warn};

use crate::auth::Auth;
use crate::backend::{Backend, HealthEvent};
use crate::cluster::Layout;
use crate::config::{Config, Overrides};
use crate::routing::Routing;
use crate::tls::ServerTls;
use pools::PoolState;

/// The routing of one proxy and what it was built from.
pub struct Topology {
    /// The file reloads re-read; `None` when started from `--backend` flags.
    path: Option<PathBuf>,
    /// Command-line settings, applied to every configuration read.
    overrides: Overrides,
    routing: Arc<Routing>,
    /// The client listener's TLS, when it has TLS: swapped by reloads.
    server_tls: Option<Arc<ArcSwap<ServerTls>>>,
    inner: Mutex<Inner>,
    events: mpsc::UnboundedSender<HealthEvent>,
}

struct Inner {
    config: Config,
    /// The users of `config` (kept across rebuilds, replaced by a reload).
    auth: Arc<Auth>,
    /// Each pool's state, by name.
    pools: HashMap<String, PoolState>,
}

impl Inner {
    /// The table for the configuration and pool states in force, swapped into `routing`.
    fn swap_table(&mut self, routing: &Routing, events: &mpsc::UnboundedSender<HealthEvent>) {
        let Inner {
            config,
            auth,
            pools,
        } = self;
        let table = pools::table(config, auth, pools, events);
        routing.swap(table);
    }
}

impl Topology {
    /// Builds the first table from `config` and starts its backends (on the current runtime).
    pub async fn start(
        config: Config,
        path: Option<PathBuf>,
        overrides: Overrides,
    ) -> Arc<Topology> {
        let (events, rx) = mpsc::unbounded_channel();
        warn_insecure(&config);
        let server_tls = config
            .server
            .tls
            .as_ref()
            .map(|t| Arc::new(ArcSwap::new(t.loaded.clone())));
        let mut states = HashMap::new();
        for pool in &config.pools {
            let mut state = PoolState::new();
            state.discovered = watch::discover(pool).await.unwrap_or_default();
            state.layout = crate::cluster::refresh::initial(pool, &state.cluster)
                .await
                .map(Arc::new);
            state.masters = sentinel::initial(pool).await;
            states.insert(pool.name.clone(), state);
        }
        let auth = Arc::new(Auth::new(&config, None));
        let table = pools::table(&config, &auth, &mut states, &events);
        crate::metrics::config_info(&config.digest, None);
        let topology = Arc::new(Topology {
            path,
            overrides,
            routing: Arc::new(Routing::new(table)),
            server_tls,
            inner: Mutex::new(Inner {
                config,
                auth,
                pools: states,
            }),
            events,
        });
        tokio::spawn(watch::watch_health(Arc::downgrade(&topology), rx));
        tokio::spawn(watch::refresh_dns(Arc::downgrade(&topology)));
        topology.start_refreshes();
        topology.start_sentinels();
        topology
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The live routing table.
    pub fn routing(&self) -> &Arc<Routing> {
        &self.routing
    }

    /// The client listener's TLS in force (`None`: the listener is plain).
    pub fn server_tls(&self) -> Option<Arc<ArcSwap<ServerTls>>> {
        self.server_tls.clone()
    }

    /// The configuration in force.
    pub fn config(&self) -> Config {
        self.lock().config.clone()
    }

    /// Every backend in force, of every pool.
    fn backends(&self) -> Vec<Arc<Backend>> {
        let inner = self.lock();
        inner
            .pools
            .values()
            .flat_map(|p| p.backends.values().cloned())
            .collect()
    }

    /// Starts the slot-map task of every cluster pool that has none.
    fn start_refreshes(self: &Arc<Self>) {
        let mut inner = self.lock();
        let Inner { config, pools, .. } = &mut *inner;
        for pool in config.pools.iter().filter(|p| p.cluster.is_some()) {
            if let Some(state) = pools.get_mut(&pool.name)
                && !state.refreshing
            {
                state.refreshing = true;
                tokio::spawn(cluster::refresh(
                    Arc::downgrade(self),
                    pool.name.clone(),
                    state.cluster.clone(),
                ));
            }
        }
    }

    /// The slot-map task of `pool` ended (the pool is gone or no longer a cluster).
    fn refresh_stopped(&self, pool: &str) {
        if let Some(state) = self.lock().pools.get_mut(pool) {
            state.refreshing = false;
        }
    }

    /// Asks every cluster pool for its slot map again (a node went down: maybe a failover).
    fn request_cluster_refresh(&self) {
        for state in self.lock().pools.values() {
            state.cluster.request_refresh();
        }
    }

    /// Whether a health change of backend `name` rebuilds the table: it is in a pool with
    /// `auto_eject`.
    fn ejects(&self, name: &str) -> bool {
        let inner = self.lock();
        inner.config.pools.iter().any(|p| {
            p.auto_eject
                && inner
                    .pools
                    .get(&p.name)
                    .is_some_and(|s| s.backends.contains_key(name))
        })
    }

    /// Records the addresses discovery found for `pool`; returns whether they changed.
    fn discovered(&self, pool: &str, found: Vec<std::net::SocketAddr>) -> bool {
        let mut inner = self.lock();
        let Some(state) = inner.pools.get_mut(pool) else {
            return false;
        };
        if state.discovered == found {
            return false;
        }
        info!(pool, "discovery: {} addresses now: {found:?}", found.len());
        state.discovered = found;
        true
    }

    /// Re-reads the configuration file and applies it; on any problem the configuration in
    /// force stays and every problem is returned (and logged).
    pub fn reload(self: &Arc<Self>) -> Result<serde_json::Value, Vec<String>> {
        let result = match &self.path {
            None => Err(vec![
                "no configuration file to reload: shardis was started with --backend".to_string(),
            ]),
            Some(path) => match Config::load(path) {
                Ok(mut config) => {
                    self.overrides.apply(&mut config);
                    Ok(self.apply(config))
                }
                Err(e) => Err(match e {
                    crate::config::ConfigError::Invalid(problems) => problems,
                    other => vec![other.to_string()],
                }),
            },
        };
        crate::metrics::config_reload(result.is_ok());
        match &result {
            Ok(report) => info!("configuration reloaded: {report}"),
            Err(problems) => {
                error!(
                    "configuration reload rejected, the running configuration stays ({} problem(s))",
                    problems.len()
                );
                for p in problems {
                    error!("  {p}");
                }
            }
        }
        result
    }

    /// Puts a validated configuration in force; returns what changed.
    pub fn apply(self: &Arc<Self>, config: Config) -> serde_json::Value {
        let mut inner = self.lock();
        // Pools that are gone lose their state; a pool whose name to discover changed finds
        // its addresses with the next DNS refresh.
        inner
            .pools
            .retain(|name, _| config.pools.iter().any(|p| &p.name == name));
        for pool in &config.pools {
            let old = inner.config.pools.iter().find(|p| p.name == pool.name);
            if old.map(|p| (&p.discovery, &p.backends)) != Some((&pool.discovery, &pool.backends))
                && let Some(state) = inner.pools.get_mut(&pool.name)
            {
                state.discovered.clear();
            }
        }
        let auth = Arc::new(Auth::new(&config, Some(&inner.auth)));
        let old_auth = std::mem::replace(&mut inner.auth, auth.clone());
        let old = std::mem::replace(&mut inner.config, config);
        let before = fingerprints(&inner.pools, old.pools.len() > 1);
        let Inner {
            config,
            auth: users,
            pools,
        } = &mut *inner;
        let table = pools::table(config, users, pools, &self.events);
        let after = fingerprints(&inner.pools, inner.config.pools.len() > 1);
        let restart = restart_required(&old, &inner.config);
        for key in &restart {
            warn!("{key} changed in the file; it takes effect only after a restart");
        }
        warn_insecure(&inner.config);
        if let (Some(live), Some(new)) = (&self.server_tls, &inner.config.server.tls) {
            // New connections get the files as they are now; open ones keep their session.
            if live.load().digest != new.loaded.digest {
                info!("server.tls: new certificate or settings in force for new connections");
            }
            live.store(new.loaded.clone());
        }
        crate::metrics::config_info(&inner.config.digest, Some(&old.digest));
        self.routing.swap(table);
        // After the swap, so that no session can log in to a removed user after its sessions
        // were closed (one that was mid-command re-checks its user with its next command).
        old_auth.revoke(&auth);
        // New seeds or settings: fetch the slot maps again (nothing happens for a hashed pool).
        for state in inner.pools.values() {
            state.cluster.request_refresh();
        }
        let digest = inner.config.digest.clone();
        drop(inner);
        self.start_refreshes();
        self.start_sentinels();
        let mut report = changes(&before, &after);
        report["digest"] = json!(digest);
        report["previous_digest"] = json!(old.digest);
        report["restart_required"] = json!(restart);
        report
    }

    /// Rebuilds the table (after a health change with auto_eject, or a new set of addresses
    /// from discovery).
    fn rebuild(&self) {
        self.lock().swap_table(&self.routing, &self.events);
    }

    /// The slot map in force of cluster pool `pool`, if one was fetched.
    pub(crate) fn layout(&self, pool: &str) -> Option<Arc<Layout>> {
        self.lock().pools.get(pool).and_then(|p| p.layout.clone())
    }

    /// Puts in force the slot map `next` makes of `pool`'s current one (when it makes one)
    /// and rebuilds the table; returns whether it did.
    pub(crate) fn update_layout(
        &self,
        pool: &str,
        next: impl FnOnce(Option<&Layout>) -> Option<Layout>,
    ) -> bool {
        let mut inner = self.lock();
        let Some(state) = inner.pools.get_mut(pool) else {
            return false;
        };
        let Some(layout) = next(state.layout.as_deref()) else {
            return false;
        };
        state.layout = Some(Arc::new(layout));
        inner.swap_table(&self.routing, &self.events);
        true
    }
}

/// Every backend in force with its fingerprint, named `pool/backend` when there are several
/// pools.
fn fingerprints(pools: &HashMap<String, PoolState>, qualified: bool) -> Vec<(String, String)> {
    let mut all = Vec::new();
    for (pool, state) in pools {
        for (name, b) in &state.backends {
            let shown = if qualified {
                format!("{pool}/{name}")
            } else {
                name.clone()
            };
            all.push((shown, b.fingerprint.clone()));
        }
    }
    all
}

/// The backends a reload added, removed, changed and kept, each list sorted.
fn changes(before: &[(String, String)], after: &[(String, String)]) -> serde_json::Value {
    let mut added = Vec::new();
    let mut changed = Vec::new();
    let mut kept = Vec::new();
    for (name, fp) in after {
        match before.iter().find(|(n, _)| n == name) {
            None => added.push(name.clone()),
            Some((_, old)) if old != fp => changed.push(name.clone()),
            Some(_) => kept.push(name.clone()),
        }
    }
    let mut removed: Vec<String> = before
        .iter()
        .filter(|(n, _)| !after.iter().any(|(a, _)| a == n))
        .map(|(n, _)| n.clone())
        .collect();
    for list in [&mut added, &mut changed, &mut kept, &mut removed] {
        list.sort();
    }
    json!({
        "added": added,
        "removed": removed,
        "changed": changed,
        "kept": kept,
    })
}

/// Settings a reload cannot change in the running process.
fn restart_required(old: &Config, new: &Config) -> Vec<String> {
    let mut keys = Vec::new();
    if old.server.listen != new.server.listen {
        keys.push("server.listen".to_string());
    }
    if old.server.plain_listen != new.server.plain_listen {
        keys.push("server.plain_listen".to_string());
    }
    if old.server.tls.is_some() != new.server.tls.is_some() {
        // Turning TLS on or off changes what the listener speaks: never while it runs.
        keys.push("server.tls".to_string());
    }
    if old.server.threads != new.server.threads {
        keys.push("server.threads".to_string());
    }
    if old.server.max_clients != new.server.max_clients {
        keys.push("server.max_clients".to_string());
    }
    if old.server.shutdown_grace != new.server.shutdown_grace {
        keys.push("server.shutdown_grace_ms".to_string());
    }
    if old.admin.listen != new.admin.listen {
        keys.push("admin.listen".to_string());
    }
    keys
}

/// Warns, at start and on every reload, about a pool that does not verify its backends.
fn warn_insecure(config: &Config) {
    for pool in &config.pools {
        if pool
            .tls
            .as_ref()
            .is_some_and(|t| t.files.insecure_skip_verify)
        {
            warn!(
                "pools {:?}: tls_insecure_skip_verify = true: the backends' certificates are NOT \
                 verified, so anyone on the network path can read and change the traffic; set \
                 tls_ca instead",
                pool.name
            );
        }
    }
}
