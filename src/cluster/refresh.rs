//! Fetching a cluster's slot map: ask the known nodes (those not down first, primaries before
//! replicas), then the seeds, each on a connection of its own, and take the first answer.
//! When and how often is [`crate::topology`]'s to decide.

use std::time::Duration;

use tokio::time::timeout;
use tracing::{debug, warn};

use super::layout::Layout;
use super::{Role, Route, Shared};
use crate::backend::{build, conn};
use crate::config::{Address, PoolConfig};
use crate::protocol::out::Proto;

/// Largest slot map reply accepted.
const MAX_REPLY: usize = 16 * 1024 * 1024;

const CLUSTER_SHARDS: &[u8] = b"*2\r\n$7\r\nCLUSTER\r\n$6\r\nSHARDS\r\n";
const CLUSTER_SLOTS: &[u8] = b"*2\r\n$7\r\nCLUSTER\r\n$5\r\nSLOTS\r\n";

/// The nodes to ask, in order: known nodes that are not down (primaries first, starting at a
/// turning offset), then the other known nodes, then the seeds.
pub fn candidates(route: Option<&Route>, pool: &PoolConfig, turn: usize) -> Vec<String> {
    let mut up = Vec::new();
    let mut down = Vec::new();
    if let Some(route) = route {
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
pub async fn fetch(candidates: &[String], pool: &PoolConfig) -> Result<(Layout, String), String> {
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
        sentinel_master: None,
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
pub async fn initial(pool: &PoolConfig, shared: &Shared) -> Option<Layout> {
    let cluster = pool.cluster.as_ref()?;
    let seeds: Vec<String> = cluster.seeds.iter().map(Address::to_string).collect();
    match fetch(&seeds, pool).await {
        Ok((layout, source)) => {
            shared.stats.refreshed(&source);
            Some(layout)
        }
        Err(e) => {
            shared.stats.refresh_failed(&e);
            warn!(pool = %pool.name, "cannot fetch the cluster slot map from the seeds (retrying): {e}");
            None
        }
    }
}
