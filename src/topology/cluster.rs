//! Keeping a cluster pool's slot map current: one task per cluster pool fetches it every
//! `refresh_interval_ms` (every [`DEGRADED_INTERVAL`] while a node is down or no map was had),
//! and at once when asked ([`Shared::request_refresh`]: after a `-MOVED`, when a node is
//! marked down, after a reload). Requests that come while a fetch runs are coalesced into one
//! more, and fetches are at least [`MIN_SPACING`] apart, so a storm of redirections costs the
//! cluster a few `CLUSTER SHARDS` per second. A `-MOVED` also corrects the map at once, before
//! the fetch. Each new map is put in force like a reload, keeping the nodes that stay.
//!
//! Fetching is [`crate::cluster::refresh`]'s; deciding when, and applying, is here.

use std::sync::{Arc, Weak};
use std::time::Duration;

use tokio::time::{Instant, sleep_until};
use tracing::{debug, info, warn};

use super::Topology;
use crate::backend::Backend;
use crate::cluster::refresh::{candidates, fetch};
use crate::cluster::{Layout, Shared};
use crate::config::Address;

/// How often the map is fetched while a node is down or no map could be had.
pub const DEGRADED_INTERVAL: Duration = Duration::from_millis(250);
/// Least time between two fetches.
pub const MIN_SPACING: Duration = Duration::from_millis(100);

/// Keeps the slot map of cluster pool `pool` current, until the pool is gone or no longer a
/// cluster.
pub(super) async fn refresh(topology: Weak<Topology>, pool: String, shared: Arc<Shared>) {
    let mut last_fetch: Option<Instant> = None;
    // Which known node is asked first, turning, so that no one node answers every fetch.
    let mut turn = 0usize;
    loop {
        let Some(every) = topology.upgrade().and_then(|t| interval(&t, &pool)) else {
            if let Some(t) = topology.upgrade() {
                t.refresh_stopped(&pool);
            }
            return;
        };
        let due = last_fetch.map_or_else(Instant::now, |at| at + every);
        tokio::select! {
            () = shared.woken() => {}
            () = sleep_until(due) => {}
        }
        let Some(t) = topology.upgrade() else { return };
        let moves = shared.take_moves();
        if !moves.is_empty() {
            t.update_layout(&pool, |current| {
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
        let Some(pool_config) = config.pools.iter().find(|p| p.name == pool) else {
            continue;
        };
        let table = t.routing().load();
        let route = table
            .pools
            .iter()
            .find(|p| p.name == pool)
            .and_then(|p| p.cluster_route());
        let candidates = candidates(route, pool_config, turn);
        drop((t, table));
        match fetch(&candidates, pool_config).await {
            Ok((layout, source)) => {
                shared.stats.refreshed(&source);
                let Some(t) = topology.upgrade() else { return };
                let handed = handovers(&t, &pool, &layout);
                let changed = t.update_layout(&pool, |current| {
                    (current != Some(&layout)).then_some(layout)
                });
                if changed {
                    hand_over(&t, &pool, handed);
                    info!(pool = %pool, "cluster slot map changed (from {source}): {}", describe(t.layout(&pool)));
                } else {
                    debug!(pool = %pool, "cluster slot map unchanged (from {source})");
                }
            }
            Err(e) => {
                shared.stats.refresh_failed(&e);
                warn!(pool = %pool, "cannot fetch the cluster slot map: {e}");
            }
        }
    }
}

/// The primaries of `pool`'s map in force that `next` replaces, each with its successor: the
/// primary that owns its first slot in `next`.
fn handovers(t: &Topology, pool: &str, next: &Layout) -> Vec<(Arc<Backend>, String)> {
    let table = t.routing().load();
    let Some(route) = table
        .pools
        .iter()
        .find(|p| p.name == pool)
        .and_then(|p| p.cluster_route())
    else {
        return Vec::new();
    };
    let current = &route.layout;
    let mut out = Vec::new();
    for (i, shard) in current.shards.iter().enumerate() {
        if next.shards.iter().any(|s| s.primary == shard.primary) {
            continue;
        }
        let Some(slot) = current.owner.iter().position(|&o| o as usize == i) else {
            continue;
        };
        let Some(successor) = next
            .owner
            .get(slot)
            .and_then(|&o| next.shards.get(o as usize))
        else {
            continue;
        };
        if let Some(old) = route.node(&shard.primary) {
            out.push((old.clone(), successor.primary.clone()));
        }
    }
    out
}

/// Moves what the replaced primaries hold to their successors: a request never written to a
/// failed primary, or a read it never answered, goes to the node that owns its slot now (any
/// other answers with a redirection that is followed).
fn hand_over(t: &Topology, pool: &str, handed: Vec<(Arc<Backend>, String)>) {
    let table = t.routing().load();
    let route = table
        .pools
        .iter()
        .find(|p| p.name == pool)
        .and_then(|p| p.cluster_route());
    for (old, successor) in handed {
        let Ok(addr) = successor.parse::<Address>() else {
            continue;
        };
        let took = old.spec.away_for().unwrap_or_default();
        old.spec.relocate(&addr.host, addr.port);
        // The shard's record goes with its new primary, which /status shows.
        let new = route.and_then(|r| r.node(&successor));
        let spec = new.map_or(&old.spec, |b| &b.spec);
        spec.failed_over(pool, &old.spec.address, &successor, took);
    }
}

/// How often to fetch now: `None` when the pool is gone or not a cluster.
fn interval(t: &Topology, pool: &str) -> Option<Duration> {
    let config = t.config();
    let cluster = config
        .pools
        .iter()
        .find(|p| p.name == pool)?
        .cluster
        .as_ref()?;
    let table = t.routing().load();
    let live = table.pools.iter().find(|p| p.name == pool);
    let degraded = t.layout(pool).is_none()
        || live.is_some_and(|p| p.states().any(|s| s.is_down()))
        || live
            .and_then(|p| p.cluster_route())
            .is_some_and(|r| r.shared.stats.failing());
    Some(if degraded {
        cluster.refresh_interval.min(DEGRADED_INTERVAL)
    } else {
        cluster.refresh_interval
    })
}

/// One line per shard, for the log.
fn describe(layout: Option<Arc<Layout>>) -> String {
    let Some(layout) = layout else {
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
