//! Sentinel-managed shards of a hashed pool: one task per pool with `sentinels` keeps each
//! shard's backend on its master's current primary, and its replicas current.
//!
//! - Every sentinel is subscribed to (`+switch-master`, `+odown`, `+try-failover`, ...; see
//!   [`crate::backend::sentinel::EVENTS`]), and every `sentinel_refresh_ms` each master's
//!   address and replicas are asked for again (trying each sentinel in turn), in case a
//!   message was lost.
//! - A new primary is trusted only once it says `ROLE` master; then the backend's connections
//!   move to it ([`crate::backend::Spec::relocate`]) and what they held goes there. `name`
//!   stays the placement identity: no key moves.
//! - From the moment a failover is under way (`+odown`, `+try-failover`, or
//!   `+failover-state-send-slaveof-noone`), the shard's links finish what they sent and hold
//!   what comes ([`crate::backend::Spec::pause`]), so that no write lands on the old primary
//!   after the promotion: a planned `SENTINEL FAILOVER` loses no acknowledged write that
//!   replication had carried.

use std::collections::HashMap;
use std::sync::{Arc, Weak};
use std::time::Duration;

use bytes::BytesMut;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::{Instant, sleep};
use tracing::{debug, info, warn};

use super::Topology;
use crate::backend::conn::Target;
use crate::backend::sentinel::{Event, Sentinel, is_primary};
use crate::backend::{Backend, Spec, build};
use crate::config::{Address, BackendConfig, Credentials, PoolConfig, ReadFrom};

/// How soon to ask again while a new primary is named but not yet verified.
const RECHECK: Duration = Duration::from_millis(100);
/// Wait before subscribing again to a sentinel that failed.
const RESUBSCRIBE: Duration = Duration::from_millis(500);
/// Events queued from the subscriptions before more are dropped (a poll follows anyway).
const MAX_EVENTS: usize = 1024;

/// What the task keeps per master.
#[derive(Default)]
struct Master {
    /// When the failover under way was first seen (a pause, or the primary lost).
    since: Option<Instant>,
    /// Replica backends, by address (only with `read_from` other than primary).
    replicas: HashMap<String, Arc<Backend>>,
}

/// Watches the sentinels of pool `pool` until it is gone or has none.
pub(super) async fn watch(topology: Weak<Topology>, pool: String) {
    let (tx, mut events) = mpsc::channel::<Event>(MAX_EVENTS);
    let mut listeners: Vec<JoinHandle<()>> = Vec::new();
    let mut listening: Vec<Address> = Vec::new();
    let mut masters: HashMap<String, Master> = HashMap::new();
    let mut next_poll = Instant::now();
    loop {
        let Some(config) = topology.upgrade().and_then(|t| t.pool_config(&pool)) else {
            break;
        };
        let Some(sentinel) = config.sentinel.clone() else {
            break;
        };
        if sentinel.sentinels != listening {
            // New or changed sentinels (a reload): subscribe to those in force.
            listeners.drain(..).for_each(|h| h.abort());
            for addr in &sentinel.sentinels {
                let target = sentinel_target(addr, &config);
                listeners.push(tokio::spawn(listen(target, tx.clone())));
            }
            listening = sentinel.sentinels.clone();
        }
        let event = tokio::select! {
            e = events.recv() => e,
            () = tokio::time::sleep_until(next_poll) => None,
        };
        let recheck = match event {
            Some(event) => {
                debug!(pool = %pool, "sentinel: {} {}", event.channel, event.words.join(" "));
                on_event(&topology, &pool, &config, &event, &mut masters).await
            }
            None => {
                next_poll = Instant::now() + sentinel.refresh;
                poll(&topology, &pool, &config, &mut masters).await
            }
        };
        if recheck {
            next_poll = next_poll.min(Instant::now() + RECHECK);
        }
    }
    listeners.drain(..).for_each(|h| h.abort());
    if let Some(t) = topology.upgrade() {
        t.sentinel_stopped(&pool);
    }
}

/// Subscribes to one sentinel's events, again after any failure, and passes them on.
async fn listen(target: Target, tx: mpsc::Sender<Event>) {
    loop {
        let limit = target.connect_timeout;
        match Sentinel::open(&target, limit).await {
            Ok(mut s) => {
                if let Err(e) = s.subscribe().await {
                    debug!(
                        "sentinel {}:{}: cannot subscribe: {e}",
                        target.host, target.port
                    );
                } else {
                    let mut buf = BytesMut::with_capacity(4096);
                    loop {
                        match s.next_event(&mut buf).await {
                            Ok(event) => {
                                if tx.is_closed() {
                                    return;
                                }
                                let _ = tx.try_send(event);
                            }
                            Err(e) => {
                                debug!("sentinel {}:{}: {e}", target.host, target.port);
                                break;
                            }
                        }
                    }
                }
            }
            Err(e) => debug!("sentinel {}:{}: {e}", target.host, target.port),
        }
        if tx.is_closed() {
            return;
        }
        sleep(RESUBSCRIBE).await;
    }
}

/// Acts on one event; returns whether to ask the sentinels again soon.
async fn on_event(
    topology: &Weak<Topology>,
    pool: &str,
    config: &PoolConfig,
    event: &Event,
    masters: &mut HashMap<String, Master>,
) -> bool {
    let Some(name) = event.master() else {
        return false;
    };
    let Some((_, backend)) = shard(topology, pool, name) else {
        return false;
    };
    let state = masters.entry(name.to_string()).or_default();
    if !event.about_master() {
        // A replica came or went: the next poll brings the list.
        return true;
    }
    match event.channel.as_str() {
        "+switch-master" => {
            if let Some((host, port)) = event.new_primary() {
                return !promote(topology, pool, config, &backend, name, &host, port, state).await;
            }
            true
        }
        "+odown" | "+try-failover" | "+failover-state-send-slaveof-noone" => {
            // A failover is under way: no request may reach the old primary after the
            // promotion, so hold them from now until the new primary is known.
            if state.since.is_none() {
                info!(pool, backend = %backend.spec.name, "sentinel {}: holding requests until the failover completes", event.channel);
                state.since = Some(Instant::now());
            }
            backend
                .spec
                .pause(Instant::now() + config.hold.failover.max(RECHECK));
            true
        }
        "-odown" | "-failover-abort-not-elected" => {
            if event.channel == "-odown" {
                // The primary is back without a failover.
                state.since = None;
                backend.spec.resume();
            }
            true
        }
        _ => true,
    }
}

/// Asks the sentinels about every master of the pool and applies what they say; returns
/// whether to ask again soon (a new primary not verified yet).
async fn poll(
    topology: &Weak<Topology>,
    pool: &str,
    config: &PoolConfig,
    masters: &mut HashMap<String, Master>,
) -> bool {
    let Some(sentinel) = &config.sentinel else {
        return false;
    };
    let mut recheck = false;
    for b in config.backends.iter() {
        let Some(name) = &b.sentinel_master else {
            continue;
        };
        let Some((_, backend)) = shard(topology, pool, name) else {
            continue;
        };
        let Some((primary, replicas)) = ask(config, &sentinel.sentinels, name).await else {
            continue;
        };
        let state = masters.entry(name.clone()).or_default();
        let (host, port) = primary;
        if !promote(topology, pool, config, &backend, name, &host, port, state).await {
            recheck = true;
        }
        let replicas: Vec<(String, u16)> = replicas
            .into_iter()
            .filter(|(h, p)| !(h == &host && *p == port))
            .collect();
        set_replicas(topology, config, b, &backend, &replicas, state);
    }
    recheck
}

/// The primary and replicas of `master`, from the first sentinel that knows it.
async fn ask(
    config: &PoolConfig,
    sentinels: &[Address],
    master: &str,
) -> Option<((String, u16), Vec<(String, u16)>)> {
    for addr in sentinels {
        let target = sentinel_target(addr, config);
        let mut s = match Sentinel::open(&target, config.timeout).await {
            Ok(s) => s,
            Err(e) => {
                debug!("sentinel {addr}: {e}");
                continue;
            }
        };
        match s.master_addr(master).await {
            Ok(Some(primary)) => {
                let replicas = s.replicas(master).await.unwrap_or_default();
                return Some((primary, replicas));
            }
            Ok(None) => debug!("sentinel {addr} does not know master {master:?}"),
            Err(e) => debug!("sentinel {addr}: {e}"),
        }
    }
    None
}

/// Moves shard `name`'s backend to `host:port` once that server says it is a primary (no
/// move when it is there already). Returns false when the server is not verified yet.
#[allow(clippy::too_many_arguments)]
async fn promote(
    topology: &Weak<Topology>,
    pool: &str,
    config: &PoolConfig,
    backend: &Arc<Backend>,
    name: &str,
    host: &str,
    port: u16,
    state: &mut Master,
) -> bool {
    let spec = &backend.spec;
    let to = Address {
        host: host.to_string(),
        port,
    }
    .to_string();
    let from = spec.address_now();
    if from == to {
        if spec.paused().is_none() {
            state.since = None;
        }
        return true;
    }
    let mut target = spec.target.clone();
    target.host = host.to_string();
    target.port = port;
    match is_primary(&target, config.timeout).await {
        Ok(true) => {}
        Ok(false) => {
            debug!(pool, backend = %spec.name, "{to} is named primary but is not one yet");
            return false;
        }
        Err(e) => {
            debug!(pool, backend = %spec.name, "cannot check {to}: {e}");
            return false;
        }
    }
    let took = state
        .since
        .take()
        .map(|s| s.elapsed())
        .or_else(|| spec.away_for())
        .unwrap_or_default();
    spec.relocate(host, port);
    if let Some(t) = topology.upgrade() {
        t.sentinel_primary(pool, name, host, port);
    }
    if !from.starts_with("sentinel:") {
        spec.failed_over(pool, &from, &to, took);
    } else {
        info!(pool, backend = %spec.name, "primary of {name:?} is {to}");
    }
    true
}

/// Records the replicas of shard `b` for /status, and with `read_from` other than primary,
/// starts backends for new ones and drops those gone.
fn set_replicas(
    topology: &Weak<Topology>,
    config: &PoolConfig,
    b: &BackendConfig,
    backend: &Arc<Backend>,
    replicas: &[(String, u16)],
    state: &mut Master,
) {
    let addrs: Vec<String> = replicas
        .iter()
        .map(|(h, p)| {
            Address {
                host: h.clone(),
                port: *p,
            }
            .to_string()
        })
        .collect();
    backend.spec.set_replicas(addrs.clone());
    if backend.read_from == ReadFrom::Primary {
        return;
    }
    let Some(t) = topology.upgrade() else { return };
    let fp = build::fingerprint(b, config);
    let mut next = HashMap::new();
    let mut list = Vec::with_capacity(replicas.len());
    for ((host, port), addr) in replicas.iter().zip(&addrs) {
        let replica = match state.replicas.remove(addr) {
            Some(r) if r.fingerprint == fp => r,
            _ => {
                let mut target = backend.spec.target.clone();
                target.host = host.clone();
                target.port = *port;
                let name = format!("{}@{addr}", b.name);
                let spec = Spec::new(&name, addr, target, config.timeout);
                build::start(spec, config, fp.clone(), &t.events)
            }
        };
        list.push(replica.clone());
        next.insert(addr.clone(), replica);
    }
    state.replicas = next;
    let current: Vec<String> = backend
        .replicas
        .load()
        .iter()
        .map(|r| r.spec.address.clone())
        .collect();
    if current != addrs {
        info!(backend = %backend.spec.name, "replicas: {addrs:?}");
        backend.replicas.store(Arc::new(list));
    }
}

/// The backend of pool `pool` whose master is `master`.
fn shard(topology: &Weak<Topology>, pool: &str, master: &str) -> Option<(String, Arc<Backend>)> {
    let t = topology.upgrade()?;
    let inner = t.lock();
    let config = inner.config.pools.iter().find(|p| p.name == pool)?;
    let b = config
        .backends
        .iter()
        .find(|b| b.sentinel_master.as_deref() == Some(master))?;
    let backend = inner.pools.get(pool)?.backends.get(&b.name)?.clone();
    Some((b.name.clone(), backend))
}

/// Where a sentinel is reached: its address, the pool's connect timeout, the sentinel
/// credentials, and the pool's TLS when `sentinel_tls` is set.
pub(super) fn sentinel_target(addr: &Address, pool: &PoolConfig) -> Target {
    let sentinel = pool.sentinel.as_ref();
    let node = BackendConfig {
        name: addr.to_string(),
        address: addr.clone(),
        weight: std::num::NonZeroU32::MIN,
        username: None,
        password: None,
        sentinel_master: None,
    };
    let mut target = build::target(&node, pool, None, false);
    if !sentinel.is_some_and(|s| s.tls) {
        target.tls = None;
    }
    target.credentials = Credentials {
        username: sentinel.and_then(|s| s.username.clone()),
        password: sentinel.and_then(|s| s.password.as_ref().map(|p| p.secret.clone())),
        db: 0,
    };
    target
}

/// The primary of every master of `pool` from its sentinels, verified, for the first table
/// (a master none of them names is left out: the watcher finds it later).
pub(super) async fn initial(pool: &PoolConfig) -> HashMap<String, (String, u16)> {
    let mut found = HashMap::new();
    let Some(sentinel) = &pool.sentinel else {
        return found;
    };
    for b in &pool.backends {
        let Some(name) = &b.sentinel_master else {
            continue;
        };
        match ask(pool, &sentinel.sentinels, name).await {
            Some(((host, port), _)) => {
                let mut target = build::target(b, pool, None, false);
                target.host = host.clone();
                target.port = port;
                match is_primary(&target, pool.timeout).await {
                    Ok(true) => {
                        found.insert(name.clone(), (host, port));
                    }
                    other => {
                        warn!(pool = %pool.name, "{host}:{port}, named primary of {name:?}, is not one yet ({other:?}): its requests are held until it is")
                    }
                }
            }
            None => {
                warn!(pool = %pool.name, "no sentinel names a primary for {name:?} yet: its requests are held until one does")
            }
        }
    }
    found
}

impl Topology {
    /// The configuration in force of pool `pool`.
    fn pool_config(&self, pool: &str) -> Option<PoolConfig> {
        self.lock()
            .config
            .pools
            .iter()
            .find(|p| p.name == pool)
            .cloned()
    }

    /// Starts the Sentinel task of every pool with sentinels that has none.
    pub(super) fn start_sentinels(self: &Arc<Self>) {
        let mut inner = self.lock();
        let super::Inner { config, pools, .. } = &mut *inner;
        for pool in config.pools.iter().filter(|p| p.sentinel.is_some()) {
            if let Some(state) = pools.get_mut(&pool.name)
                && !state.watching
            {
                state.watching = true;
                tokio::spawn(watch(Arc::downgrade(self), pool.name.clone()));
            }
        }
    }

    /// The Sentinel task of `pool` ended.
    fn sentinel_stopped(&self, pool: &str) {
        if let Some(state) = self.lock().pools.get_mut(pool) {
            state.watching = false;
        }
    }

    /// Master `master` of `pool` is at `host:port` now (for backends a reload starts).
    fn sentinel_primary(&self, pool: &str, master: &str, host: &str, port: u16) {
        if let Some(state) = self.lock().pools.get_mut(pool) {
            state
                .masters
                .insert(master.to_string(), (host.to_string(), port));
        }
    }
}
