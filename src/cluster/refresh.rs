//! Keeping the slot map current: one task per proxy fetches it every `refresh_interval_ms`
//! (every [`DEGRADED_INTERVAL`] while a node is down or no map was had), and at once when asked
//! ([`Shared::request_refresh`]: after a `-MOVED`, when a node is marked down, after a reload).
//! Requests that come while a fetch runs are coalesced into one more, and fetches are at
//! least [`MIN_SPACING`] apart, so a storm of redirections costs the cluster a few
//! `CLUSTER SHARDS` per second. A `-MOVED` also corrects the map at once, before the fetch.
//!
//! A fetch asks the known nodes (those not down first, primaries before replicas), then the
//! seeds, on a connection of its own, and takes the first answer.

use std::sync::{Arc, Weak};
use std::time::Duration;

use tokio::time::{Instant, sleep, sleep_until, timeout};
use tracing::{debug, info, warn};

use super::layout::Layout;
use super::{Role, Shared};
use crate::backend::{build, conn};
use crate::config::{Address, Config, PoolConfig};
use crate::protocol::out::Proto;
use crate::topology::Topology;

/// How often the map is fetched while a node is down or no map could be had.
pub const DEGRADED_INTERVAL: Duration = Duration::from_millis(250);
/// Least time between two fetches.
pub const MIN_SPACING: Duration = Duration::from_millis(100);
/// Largest slot map reply accepted.
const MAX_REPLY: usize = 16 * 1024 * 1024;
/// How often the task looks at the configuration while the pool is not a cluster.
const IDLE_CHECK: Duration = Duration::from_secs(1);

const CLUSTER_SHARDS: &[u8] = b"*2\r\n$7\r\nCLUSTER\r\n$6\r\nSHARDS\r\n";
const CLUSTER_SLOTS: &[u8] = b"*2\r\n$7\r\nCLUSTER\r\n$5\r\nSLOTS\r\n";

/// Runs until the topology is gone.
pub(crate) async fn run(topology: Weak<Topology>, shared: Arc<Shared>) {
    let mut last_fetch: Option<Instant> = None;
    // Which known node is asked first, turning, so that no one node answers every fetch.
    let mut turn = 0usize;
    loop {
        let every = {
            let Some(t) = topology.upgrade() else { return };
            interval(&t)
        };
        let Some(every) = every else {
            // Not a cluster pool (a reload may make it one).
            last_fetch = None;
            tokio::select! {
                () = shared.wake.notified() => {}
                () = sleep(IDLE_CHECK) => {}
            }
            continue;
        };
        let due = last_fetch.map_or_else(Instant::now, |at| at + every);
        tokio::select! {
            () = shared.wake.notified() => {}
            () = sleep_until(due) => {}
        }
        let Some(t) = topology.upgrade() else { return };
        let moves = shared.take_moves();
        if !moves.is_empty() {
            t.update_layout(|current| {
                let mut next: Option<Layout> = None;
                for (slot, addr) in &moves {
                    let base = next.as_ref().or(current)?;
                    if let Some(l) = base.moved(*slot, addr) {
                        next = Some(l);
                    }
                }
                next
            });
        }
        let wanted = shared.take_wanted();
        if !wanted && last_fetch.is_some_and(|at| at.elapsed() < every) {
            continue;
        }
        if let Some(at) = last_fetch
            && at + MIN_SPACING > Instant::now()
        {
            drop(t);
            sleep_until(at + MIN_SPACING).await;
            // Still wanted: the next turn fetches.
            shared.request_refresh();
            continue;
        }
        last_fetch = Some(Instant::now());
        turn = turn.wrapping_add(1);
        let config = t.config();
        let Some(pool) = config.pools.first().filter(|p| p.cluster.is_some()) else {
            continue;
        };
        let candidates = candidates(&t, pool, turn);
        drop(t);
        match fetch(&candidates, pool).await {
            Ok((layout, source)) => {
                shared.stats.refreshed(&source);
                let Some(t) = topology.upgrade() else { return };
                let changed =
                    t.update_layout(|current| (current != Some(&layout)).then_some(layout));
                if changed {
                    info!("cluster slot map changed (from {source}): {}", describe(&t));
                } else {
                    debug!("cluster slot map unchanged (from {source})");
                }
            }
            Err(e) => {
                shared.stats.refresh_failed(&e);
                warn!("cannot fetch the cluster slot map: {e}");
            }
        }
    }
}

/// How often to fetch now: `None` when the pool is not a cluster.
fn interval(t: &Topology) -> Option<Duration> {
    let config = t.config();
    let cluster = config.pools.first()?.cluster.as_ref()?;
    let table = t.routing().load();
    let degraded = t.layout().is_none()
        || table.states().iter().any(|s| s.is_down())
        || table
            .cluster
            .as_ref()
            .is_some_and(|r| r.shared.stats.failing());
    Some(if degraded {
        cluster.refresh_interval.min(DEGRADED_INTERVAL)
    } else {
        cluster.refresh_interval
    })
}

/// The nodes to ask, in order: known nodes that are not down (primaries first, starting at a
/// turning offset), then the other known nodes, then the seeds.
fn candidates(t: &Topology, pool: &PoolConfig, turn: usize) -> Vec<String> {
    let table = t.routing().load();
    let mut up = Vec::new();
    let mut down = Vec::new();
    if let Some(route) = &table.cluster {
        let nodes = route.nodes();
        let primaries = nodes.iter().filter(|(_, r)| *r == Role::Primary).count();
        let order = (0..nodes.len()).map(|i| {
            if i < primaries {
                (i + turn) % primaries
            } else {
                i
            }
        });
        for i in order {
            let b = &nodes[i].0;
            let list = if b.state.is_down() {
                &mut down
            } else {
                &mut up
            };
            list.push(b.spec.address.clone());
        }
    }
    let seeds = pool
        .cluster
        .iter()
        .flat_map(|c| c.seeds.iter().map(Address::to_string));
    let mut all: Vec<String> = Vec::new();
    for a in up.into_iter().chain(down).chain(seeds) {
        if !all.contains(&a) {
            all.push(a);
        }
    }
    all
}

/// The first slot map one of `candidates` gives, and which one gave it.
async fn fetch(candidates: &[String], pool: &PoolConfig) -> Result<(Layout, String), String> {
    let mut errors = Vec::new();
    for addr in candidates {
        match query(addr, pool).await {
            Ok(layout) => return Ok((layout, addr.clone())),
            Err(e) => {
                debug!("cluster slot map from {addr}: {e}");
                errors.push(format!("{addr}: {e}"));
            }
        }
    }
    if errors.is_empty() {
        return Err("no seed and no known node to ask".into());
    }
    let shown = errors.len().min(3);
    let more = errors.len() - shown;
    let mut text = errors[..shown].join("; ");
    if more > 0 {
        text.push_str(&format!("; and {more} more"));
    }
    Err(text)
}

/// The slot map as node `addr` sees it: `CLUSTER SHARDS`, or `CLUSTER SLOTS` when the node
/// refuses that (Redis before 7).
async fn query(addr: &str, pool: &PoolConfig) -> Result<Layout, String> {
    let address: Address = addr.parse().map_err(|e| format!("{e}"))?;
    let node = crate::config::BackendConfig {
        name: addr.to_string(),
        address,
        weight: std::num::NonZeroU32::MIN,
        username: None,
        password: None,
    };
    let target = build::target(&node, pool, None, false);
    let mut conn = conn::open(&target, Proto::Resp2)
        .await
        .map_err(|e| e.to_string())?;
    let reply = exchange(&mut conn.stream, CLUSTER_SHARDS, pool.timeout).await?;
    match Layout::from_shards(&reply) {
        Ok(layout) => Ok(layout),
        Err(super::layout::LayoutError::Refused(first)) => {
            let reply = exchange(&mut conn.stream, CLUSTER_SLOTS, pool.timeout).await?;
            Layout::from_slots(&reply).map_err(|e| format!("{e} (CLUSTER SHARDS: {first})"))
        }
        Err(e) => Err(e.to_string()),
    }
}

/// Writes `request` and reads one reply, within `limit`.
async fn exchange(
    stream: &mut crate::net::Stream,
    request: &[u8],
    limit: Duration,
) -> Result<Vec<u8>, String> {
    match timeout(limit, conn::exchange(stream, request, MAX_REPLY)).await {
        Ok(r) => r.map_err(|e| e.to_string()),
        Err(_) => Err(format!("no reply within {} ms", limit.as_millis())),
    }
}

/// The slot map as the seeds of cluster pool `pool` give it now, and which seed gave it
/// (`shardis route`).
pub async fn from_seeds(pool: &PoolConfig) -> Result<(Layout, String), String> {
    let seeds: Vec<String> = pool
        .cluster
        .iter()
        .flat_map(|c| c.seeds.iter().map(Address::to_string))
        .collect();
    fetch(&seeds, pool).await
}

/// The first slot map, from the seeds, for the first routing table (none if no seed
/// answered: the refresh task keeps trying).
pub(crate) async fn initial(config: &Config, shared: &Shared) -> Option<Layout> {
    let pool = config.pools.first()?;
    let cluster = pool.cluster.as_ref()?;
    let seeds: Vec<String> = cluster.seeds.iter().map(Address::to_string).collect();
    match fetch(&seeds, pool).await {
        Ok((layout, source)) => {
            shared.stats.refreshed(&source);
            Some(layout)
        }
        Err(e) => {
            shared.stats.refresh_failed(&e);
            warn!("cannot fetch the cluster slot map from the seeds (retrying): {e}");
            None
        }
    }
}

/// One line per shard, for the log.
fn describe(t: &Topology) -> String {
    let Some(layout) = t.layout() else {
        return "empty".into();
    };
    let shards: Vec<String> = layout
        .shards
        .iter()
        .enumerate()
        .map(|(i, s)| {
            format!(
                "{} [{}] replicas {:?}",
                s.primary,
                layout.ranges_text(i),
                s.replicas
            )
        })
        .collect();
    shards.join(", ")
}
