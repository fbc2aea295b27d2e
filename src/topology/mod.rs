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
//! map that [`crate::cluster::refresh`] fetches, and each new map is put in force here, like a
//! reload, keeping the nodes that stay.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};

use arc_swap::ArcSwap;
use serde_json::json;
use tokio::sync::mpsc;
use tracing::{error, info, warn};

use crate::auth::Auth;
use crate::backend::build;
use crate::backend::{Backend, Change, HealthEvent, Routing, Settings, Spec, Table};
use crate::config::{Config, Overrides, PoolConfig};
use crate::protocol::request::RequestLimits;
use crate::tls::ServerTls;

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
    /// The cluster pool's refresh trigger and counters (idle for a hashed pool).
    cluster: Arc<crate::cluster::Shared>,
}

struct Inner {
    config: Config,
    /// The users of `config` (kept across rebuilds, replaced by a reload).
    auth: Arc<Auth>,
    /// The backends in force, by name.
    backends: HashMap<String, Arc<Backend>>,
    /// With discovery = "dns": the addresses the pool's host name resolved to last.
    discovered: Vec<std::net::SocketAddr>,
    /// With kind = "cluster": the slot map in force, once one was fetched.
    layout: Option<Arc<crate::cluster::Layout>>,
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
        let discovered = discover(&config).await.unwrap_or_default();
        let auth = Arc::new(Auth::new(&config, None));
        let cluster = crate::cluster::Shared::new();
        let layout = crate::cluster::refresh::initial(&config, &cluster)
            .await
            .map(Arc::new);
        let mut inner = Inner {
            auth,
            config,
            backends: HashMap::new(),
            discovered,
            layout,
        };
        let table = build(&mut inner, &events, &cluster);
        crate::metrics::config_info(&inner.config.digest, None);
        let topology = Arc::new(Topology {
            path,
            overrides,
            routing: Arc::new(Routing::new(table)),
            server_tls,
            inner: Mutex::new(inner),
            events,
            cluster: cluster.clone(),
        });
        tokio::spawn(watch_health(Arc::downgrade(&topology), rx));
        tokio::spawn(refresh_dns(Arc::downgrade(&topology)));
        tokio::spawn(crate::cluster::refresh::run(
            Arc::downgrade(&topology),
            cluster,
        ));
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

    /// Re-reads the configuration file and applies it; on any problem the configuration in
    /// force stays and every problem is returned (and logged).
    pub fn reload(&self) -> Result<serde_json::Value, Vec<String>> {
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
    pub fn apply(&self, config: Config) -> serde_json::Value {
        let mut inner = self.lock();
        if config.pools.first().map(|p| (&p.discovery, &p.backends))
            != inner
                .config
                .pools
                .first()
                .map(|p| (&p.discovery, &p.backends))
        {
            // Another name to discover: its addresses come with the next DNS refresh.
            inner.discovered.clear();
        }
        let auth = Arc::new(Auth::new(&config, Some(&inner.auth)));
        let old_auth = std::mem::replace(&mut inner.auth, auth.clone());
        let old = std::mem::replace(&mut inner.config, config);
        let before: Vec<(String, String)> = inner
            .backends
            .iter()
            .map(|(n, b)| (n.clone(), b.fingerprint.clone()))
            .collect();
        let table = build(&mut inner, &self.events, &self.cluster);
        let after = &inner.backends;
        let mut added = Vec::new();
        let mut changed = Vec::new();
        let mut kept = Vec::new();
        for (name, b) in after {
            match before.iter().find(|(n, _)| n == name) {
                None => added.push(name.clone()),
                Some((_, fp)) if *fp != b.fingerprint => changed.push(name.clone()),
                Some(_) => kept.push(name.clone()),
            }
        }
        let removed: Vec<String> = before
            .iter()
            .filter(|(n, _)| !after.contains_key(n))
            .map(|(n, _)| n.clone())
            .collect();
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
        // New seeds or settings: fetch the slot map again (nothing happens for a hashed pool).
        self.cluster.request_refresh();
        for list in [&mut added, &mut changed, &mut kept] {
            list.sort();
        }
        json!({
            "digest": inner.config.digest,
            "previous_digest": old.digest,
            "added": added,
            "removed": removed,
            "changed": changed,
            "kept": kept,
            "restart_required": restart,
        })
    }

    /// Rebuilds the table (after a health change, for auto_eject).
    fn rebuild(&self) {
        let mut inner = self.lock();
        let table = build(&mut inner, &self.events, &self.cluster);
        self.routing.swap(table);
    }

    /// The cluster slot map in force, if the pool is a cluster and one was fetched.
    pub(crate) fn layout(&self) -> Option<Arc<crate::cluster::Layout>> {
        self.lock().layout.clone()
    }

    /// Puts in force the slot map `next` makes of the current one (when it makes one) and
    /// rebuilds the table; returns whether it did.
    pub(crate) fn update_layout(
        &self,
        next: impl FnOnce(Option<&crate::cluster::Layout>) -> Option<crate::cluster::Layout>,
    ) -> bool {
        let mut inner = self.lock();
        let Some(layout) = next(inner.layout.as_deref()) else {
            return false;
        };
        inner.layout = Some(Arc::new(layout));
        let table = build(&mut inner, &self.events, &self.cluster);
        self.routing.swap(table);
        true
    }
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

/// The table for `inner.config`, reusing the backends that have not changed.
fn build(
    inner: &mut Inner,
    events: &mpsc::UnboundedSender<HealthEvent>,
    cluster: &Arc<crate::cluster::Shared>,
) -> Table {
    let config = &inner.config;
    let Some(pool) = config.pools.first() else {
        return Table::new(
            String::new(),
            Vec::new(),
            PoolConfig::empty().ring(),
            Vec::new(),
            Settings::default(),
            config.digest.clone(),
        );
    };
    // With discovery = "dns", the backends are the addresses the one listed name resolves to.
    let listed: Vec<crate::config::BackendConfig> = match pool.discovery {
        crate::config::Discovery::Static => pool.backends.clone(),
        crate::config::Discovery::Dns => {
            let weight = pool.backends.first().map(|b| b.weight);
            inner
                .discovered
                .iter()
                .filter_map(|addr| {
                    Some(crate::config::BackendConfig {
                        name: addr.to_string(),
                        address: addr.to_string().parse().ok()?,
                        weight: weight?,
                        username: None,
                        password: None,
                    })
                })
                .collect()
        }
    };
    if let Some(c) = &pool.cluster {
        let (primaries, route) = crate::cluster::assemble(
            pool,
            c,
            inner.layout.as_ref(),
            &mut inner.backends,
            events,
            cluster,
        );
        let slots = (0..primaries.len()).collect();
        let mut table = Table::new(
            pool.name.clone(),
            primaries,
            PoolConfig::empty().ring(),
            slots,
            settings(config, &inner.auth),
            config.digest.clone(),
        );
        table.cluster = Some(Box::new(route));
        return table;
    }
    // With discovery = "dns", a backend's certificate is checked against the name listed,
    // not the address found.
    let listed_host = match pool.discovery {
        crate::config::Discovery::Static => None,
        crate::config::Discovery::Dns => pool.backends.first().map(|b| b.address.host.clone()),
    };
    let pool = &PoolConfig {
        backends: listed,
        ..pool.clone()
    };
    let mut keep = std::mem::take(&mut inner.backends);
    let mut backends = Vec::with_capacity(pool.backends.len());
    for b in &pool.backends {
        let fp = build::fingerprint(b, pool);
        let backend = match keep.remove(&b.name) {
            Some(existing) if existing.fingerprint == fp => existing,
            _ => start_backend(b, pool, listed_host.as_deref(), fp, events),
        };
        inner.backends.insert(b.name.clone(), backend.clone());
        backends.push(backend);
    }
    // In the ring: every backend, or with auto_eject those not down (all, if all are down:
    // an empty ring would serve nothing at all).
    let mut slots: Vec<usize> = (0..backends.len())
        .filter(|&i| !(pool.auto_eject && backends[i].state.is_down()))
        .collect();
    if slots.is_empty() {
        slots = (0..backends.len()).collect();
    }
    for (i, b) in backends.iter().enumerate() {
        b.state.set_ejected(!slots.contains(&i));
    }
    let ring_pool = PoolConfig {
        backends: slots.iter().map(|&i| pool.backends[i].clone()).collect(),
        ..pool.clone()
    };
    Table::new(
        pool.name.clone(),
        backends,
        ring_pool.ring(),
        slots,
        settings(config, &inner.auth),
        config.digest.clone(),
    )
}

/// The limits sessions read from the table.
fn settings(config: &Config, auth: &Arc<Auth>) -> Settings {
    let mut settings = Settings {
        max_pipeline: config.server.max_pipeline,
        slowlog: config.server.slowlog,
        max_subscriber_output: config.server.max_subscriber_output_bytes,
        max_keys_reply: config.server.max_keys_reply,
        request: RequestLimits {
            request_bytes: config.server.max_request_bytes,
            inline_bytes: config.server.max_inline_bytes,
            args: config.server.max_multibulk_length,
        },
        idle_timeout: config.server.client_idle_timeout,
        output_limit: config.server.client_output_limit_bytes,
        ..Settings::default()
    };
    settings.allow(&config.server.allow_commands);
    settings.auth = auth.clone();
    settings.db = config.pools.first().map_or(0, |p| p.db);
    settings
}

fn start_backend(
    b: &crate::config::BackendConfig,
    pool: &PoolConfig,
    listed_host: Option<&str>,
    fingerprint: String,
    events: &mpsc::UnboundedSender<HealthEvent>,
) -> Arc<Backend> {
    let target = build::target(b, pool, listed_host, false);
    let spec = Spec::new(&b.name, &b.address.to_string(), target, pool.timeout);
    build::start(spec, pool, fingerprint, events)
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

/// With discovery = "dns": the addresses the pool's host name resolves to now (sorted).
async fn discover(config: &Config) -> Option<Vec<std::net::SocketAddr>> {
    let pool = config.pools.first()?;
    if pool.discovery != crate::config::Discovery::Dns {
        return None;
    }
    let b = pool.backends.first()?;
    match crate::backend::conn::resolve(&b.address.host, b.address.port).await {
        Ok(mut addrs) => {
            addrs.sort();
            addrs.dedup();
            Some(addrs)
        }
        Err(e) => {
            warn!("discovery: cannot resolve {}: {e}", b.address);
            None
        }
    }
}

/// Every `dns_refresh_ms`: backends whose name resolves to other addresses move to them, and
/// with discovery = "dns" the backends follow the name's addresses.
async fn refresh_dns(topology: std::sync::Weak<Topology>) {
    loop {
        let Some(t) = topology.upgrade() else { return };
        let (config, backends) = {
            let inner = t.lock();
            (
                inner.config.clone(),
                inner.backends.values().cloned().collect::<Vec<_>>(),
            )
        };
        drop(t);
        let Some(every) = config.pools.first().and_then(|p| p.dns_refresh) else {
            tokio::time::sleep(std::time::Duration::from_secs(1)).await;
            continue;
        };
        tokio::time::sleep(every).await;
        if let Some(found) = discover(&config).await {
            let Some(t) = topology.upgrade() else { return };
            let changed = {
                let mut inner = t.lock();
                let changed = inner.discovered != found;
                if changed {
                    info!("discovery: {} addresses now: {found:?}", found.len());
                    inner.discovered = found;
                }
                changed
            };
            if changed {
                t.rebuild();
            }
            continue;
        }
        for b in backends {
            let target = &b.spec.target;
            if target.host.parse::<std::net::IpAddr>().is_ok() {
                continue;
            }
            let Ok(mut now) = crate::backend::conn::resolve(&target.host, target.port).await else {
                continue;
            };
            now.sort();
            let moved = {
                let mut last = b.spec.resolved.lock().unwrap_or_else(|e| e.into_inner());
                let moved = !last.is_empty() && *last != now;
                *last = now;
                moved
            };
            if moved {
                info!(backend = %b.spec.name, "{} resolves to other addresses: moving its connections", target.host);
                b.spec.moved();
            }
        }
    }
}

/// Acts on health changes: with auto_eject, a change of a backend in the ring rebuilds it.
async fn watch_health(
    topology: std::sync::Weak<Topology>,
    mut events: mpsc::UnboundedReceiver<HealthEvent>,
) {
    while let Some(event) = events.recv().await {
        let Some(t) = topology.upgrade() else { return };
        if event.change == Change::Down {
            // A cluster node down may be failing over: learn the new primary soon.
            t.cluster.request_refresh();
        }
        let eject = t.lock().config.pools.first().is_some_and(|p| p.auto_eject);
        if eject {
            match event.change {
                Change::Down => {
                    warn!(backend = %event.backend, "ejected from the ring: its keys go to the other backends until it is up")
                }
                Change::Up => info!(backend = %event.backend, "back in the ring"),
            }
            t.rebuild();
        }
    }
}
