//! Building a routing table from the configuration and each pool's live state: the backends
//! kept across reloads, the addresses DNS discovery found, and a cluster pool's slot map.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;

use tokio::sync::mpsc;

use crate::auth::Auth;
use crate::backend::{Backend, HealthEvent, Spec, build};
use crate::cluster::{Layout, Shared};
use crate::config::{BackendConfig, Config, Discovery, PoolConfig};
use crate::routing::{Faults, Mirror, Pool, Routes, Settings, Table};

/// What one pool's part of the table is built from besides the configuration; kept across
/// reloads while a pool of that name stays.
pub(super) struct PoolState {
    /// The backends in force, by name.
    pub(super) backends: HashMap<String, Arc<Backend>>,
    /// With discovery = "dns": the addresses the pool's host name resolved to last.
    pub(super) discovered: Vec<SocketAddr>,
    /// A cluster pool: the slot map in force, once one was fetched.
    pub(super) layout: Option<Arc<Layout>>,
    /// A cluster pool: its refresh trigger and counters (idle for a hashed pool).
    pub(super) cluster: Arc<Shared>,
    /// A task keeps this cluster pool's slot map current.
    pub(super) refreshing: bool,
    /// While routes mirror to this pool: its budget and counters.
    pub(super) mirror: Option<Arc<Mirror>>,
    /// Its hot keys, big keys and near cache counters.
    pub(super) keys: Option<Arc<crate::hotkeys::Shared>>,
    /// With sentinels: each master's primary as last verified (`host`, `port`), by master
    /// name, for the backends a reload starts.
    pub(super) masters: HashMap<String, (String, u16)>,
    /// A task watches this pool's sentinels.
    pub(super) watching: bool,
}

impl PoolState {
    pub(super) fn new() -> PoolState {
        PoolState {
            backends: HashMap::new(),
            discovered: Vec::new(),
            layout: None,
            cluster: Shared::new(),
            refreshing: false,
            mirror: None,
            keys: None,
            masters: HashMap::new(),
            watching: false,
        }
    }
}

/// The table for `config`, reusing the backends of `states` that have not changed (and
/// making the states of pools that are new).
pub(super) fn table(
    config: &Config,
    auth: &Arc<Auth>,
    states: &mut HashMap<String, PoolState>,
    events: &mpsc::UnboundedSender<HealthEvent>,
) -> Table {
    let mut mirrors = Vec::with_capacity(config.pools.len());
    let pools: Vec<Pool> = config
        .pools
        .iter()
        .zip(crate::routing::mirror_pools(config))
        .map(|(p, (i, mirrored))| {
            let state = states.entry(p.name.clone()).or_insert_with(PoolState::new);
            let limit = config.routing.mirror_buffer_bytes;
            if !mirrored {
                state.mirror = None;
            }
            let mirror = mirrored.then(|| {
                state
                    .mirror
                    .get_or_insert_with(|| Mirror::new(&p.name, limit))
            });
            mirrors.push(mirror.map(|m| {
                m.set_limit(limit);
                m.clone()
            }));
            let mut pool = pool(p, state, events);
            pool.serves = config.routing.serves(i);
            let keys = state
                .keys
                .get_or_insert_with(|| crate::hotkeys::Shared::new(&p.name));
            pool.watch = Some(crate::hotkeys::Watch::new(p.keys, keys.clone()));
            pool
        })
        .collect();
    let catch_all = crate::routing::default_pool(config);
    let db = config.pools.get(catch_all).map_or(0, |p| p.db);
    let settings = Settings::of(config, auth.clone(), db);
    Table::new(pools, catch_all, settings, config.digest.clone()).with_routing(
        Routes::new(&config.routing),
        Faults::new(&config.faults),
        mirrors,
    )
}

/// One pool of the table.
fn pool(
    config: &PoolConfig,
    state: &mut PoolState,
    events: &mpsc::UnboundedSender<HealthEvent>,
) -> Pool {
    if let Some(c) = &config.cluster {
        let (primaries, route) = crate::cluster::assemble(
            config,
            c,
            state.layout.as_ref(),
            &mut state.backends,
            events,
            &state.cluster,
        );
        return Pool::cluster(config.name.clone(), primaries, route);
    }
    hashed(config, state, events)
}

/// A hashed pool: its backends (with discovery = "dns", one per address found), and the ring
/// over those in it (every backend, or with `auto_eject` those not down).
fn hashed(
    config: &PoolConfig,
    state: &mut PoolState,
    events: &mpsc::UnboundedSender<HealthEvent>,
) -> Pool {
    let listed = listed(config, &state.discovered);
    // With discovery = "dns", a backend's certificate is checked against the name listed,
    // not the address found.
    let listed_host = match config.discovery {
        Discovery::Static => None,
        Discovery::Dns => config.backends.first().map(|b| b.address.host.as_str()),
    };
    let mut keep = std::mem::take(&mut state.backends);
    let mut backends = Vec::with_capacity(listed.len());
    for b in &listed {
        let fp = build::fingerprint(b, config);
        let backend = match keep.remove(&b.name) {
            Some(existing) if existing.fingerprint == fp => existing,
            _ => start(b, config, listed_host, &state.masters, fp, events),
        };
        state.backends.insert(b.name.clone(), backend.clone());
        backends.push(backend);
    }
    // All down with auto_eject: an empty ring would serve nothing at all, so all stay.
    let mut slots: Vec<usize> = (0..backends.len())
        .filter(|&i| !(config.auto_eject && backends[i].state.is_down()))
        .collect();
    if slots.is_empty() {
        slots = (0..backends.len()).collect();
    }
    for (i, b) in backends.iter().enumerate() {
        b.state.set_ejected(!slots.contains(&i));
    }
    let ring = PoolConfig {
        backends: slots.iter().map(|&i| listed[i].clone()).collect(),
        ..config.clone()
    }
    .ring();
    Pool::ring(config.name.clone(), backends, ring, slots, config.db)
}

/// Starts backend `b` of hashed pool `config`: a Sentinel-managed one at its master's primary
/// as last verified (`masters`), holding requests across failovers.
fn start(
    b: &BackendConfig,
    config: &PoolConfig,
    listed_host: Option<&str>,
    masters: &HashMap<String, (String, u16)>,
    fp: String,
    events: &mpsc::UnboundedSender<HealthEvent>,
) -> Arc<Backend> {
    let mut target = build::target(b, config, listed_host, false);
    let Some(master) = &b.sentinel_master else {
        let mut spec = Spec::new(
            &config.name,
            &b.name,
            &b.address.to_string(),
            target,
            config.timeout,
        );
        spec.hold = build::hold(config, false);
        return build::start(spec, config, fp, events);
    };
    let address = match masters.get(master) {
        Some((host, port)) => {
            target.host = host.clone();
            target.port = *port;
            crate::config::Address {
                host: host.clone(),
                port: *port,
            }
            .to_string()
        }
        None => format!("sentinel:{master}"),
    };
    let mut spec = Spec::new(&config.name, &b.name, &address, target, config.timeout);
    spec.hold = build::hold(config, true);
    spec.read_from = config
        .sentinel
        .as_ref()
        .map_or(crate::config::ReadFrom::Primary, |s| s.read_from);
    *spec.state.shard.lock().unwrap_or_else(|e| e.into_inner()) =
        Some(crate::backend::shard::ShardStatus {
            master: Some(master.clone()),
            primary: spec.address.clone(),
            ..Default::default()
        });
    build::start(spec, config, fp, events)
}

/// The backends of a hashed pool: as listed, or with discovery = "dns" one per address the
/// listed name resolved to, named by that address.
fn listed(config: &PoolConfig, discovered: &[SocketAddr]) -> Vec<BackendConfig> {
    match config.discovery {
        Discovery::Static => config.backends.clone(),
        Discovery::Dns => {
            let Some(weight) = config.backends.first().map(|b| b.weight) else {
                return Vec::new();
            };
            discovered
                .iter()
                .filter_map(|addr| {
                    Some(BackendConfig {
                        name: addr.to_string(),
                        address: addr.to_string().parse().ok()?,
                        weight,
                        username: None,
                        password: None,
                        sentinel_master: None,
                    })
                })
                .collect()
        }
    }
}
